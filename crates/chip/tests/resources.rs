//! The socket server under resource pressure: a lowered open-file limit, a connection cap, idle
//! connections, and huge requests. It keeps serving well-behaved clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesame_chip::server::{Listener, ServeOptions};
use sesame_chip::{Bus, Chip};
use sesame_wire::{Request, ResponseFrame};

/// The open-file limit the server child runs under.
const NOFILE: u64 = 64;
/// Connections the test opens against it: well past the limit.
const FLOOD: usize = 150;

fn chip() -> Chip {
    common::chip(1).0
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// One Echo through `s`: write, then read the whole answer.
fn echo(s: &mut TcpStream, byte: u8) -> std::io::Result<Vec<u8>> {
    let frame = common::frame(&Request::Echo(&[byte; 4]));
    let mut req = vec![b'W', 0x20, 0, frame.len() as u8];
    req.extend_from_slice(&frame);
    s.write_all(&req)?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)?;
    assert_eq!(ack, [0]);
    s.write_all(&[b'R', 0x20, 0, 9])?;
    let mut rsp = [0u8; 10];
    s.read_exact(&mut rsp)?;
    assert_eq!(rsp[0], 0);
    Ok(ResponseFrame::decode(&rsp[1..], false)
        .unwrap()
        .data
        .to_vec())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Not a test on its own: the server that `survives_a_low_open_file_limit` runs as a child
/// process (this same binary), under an open-file limit of [`NOFILE`].
#[test]
#[ignore = "run by survives_a_low_open_file_limit as its server process"]
fn server_child() {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let limit = Rlimit {
        current: Some(NOFILE),
        maximum: Some(NOFILE),
    };
    setrlimit(Resource::Nofile, limit).unwrap();
    let bus = Bus::new();
    bus.attach(chip()).unwrap();
    let listener = Listener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap());
    let options = ServeOptions {
        // The file limit, not the cap, is what this server runs into.
        max_connections: 10_000,
        ..ServeOptions::default()
    };
    listener.serve_with(&bus, &options).unwrap();
}

/// Under `ulimit -n 64`, 150 connections: accepting fails with EMFILE, the server backs off
/// and retries instead of exiting, and once the flood is gone it serves a client as before.
/// Each idle connection that stalls in the middle of a 64 KB write costs the server far less
/// than 64 KB.
#[test]
fn survives_a_low_open_file_limit() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "server child ended");
        // libtest's "test server_child ... " may share the line.
        if let Some(i) = line.find("127.0.0.1:") {
            break line[i..].trim().to_string();
        }
    };
    let log = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });

    let mut first = connect(&addr).unwrap();
    assert_eq!(echo(&mut first, 1).unwrap(), [1; 4]);
    let before = rss_kib(child.id());
    // The flood: each connection announces a 64 KB write and sends nothing more.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        if let Ok(mut s) = connect(&addr) {
            let _ = s.write_all(&[b'W', 0x20, 0xFF, 0xFF]);
            flood.push(s);
        }
    }
    // Give the server time to take what it can and run into its limit.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log.lock().unwrap().contains("accept failed") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = rss_kib(child.id()).saturating_sub(before);
    assert!(child.try_wait().unwrap().is_none(), "server exited");
    assert!(
        log.lock().unwrap().contains("accept failed"),
        "the server never ran out of descriptors: {}",
        log.lock().unwrap()
    );
    // The connection that was already served still works.
    assert_eq!(echo(&mut first, 2).unwrap(), [2; 4]);
    drop(first);

    // Served stalled connections: at most the limit, less the listener and std streams.
    let served = (NOFILE as usize).min(flood.len());
    eprintln!(
        "open-file limit {NOFILE}: {} of {FLOOD} connections made, server RSS +{grown} KiB \
         (about {} KiB per served connection)",
        flood.len(),
        grown / served as u64
    );
    assert!(
        grown / (served as u64) < 64,
        "{grown} KiB for about {served} idle connections"
    );
    drop(flood);

    // A well-behaved client is served again once the flood has gone.
    let mut ok = None;
    for _ in 0..300 {
        if let Ok(mut s) = connect(&addr) {
            if let Ok(d) = echo(&mut s, 3) {
                ok = Some(d);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ok, Some(vec![3; 4]), "server log: {}", log.lock().unwrap());
    assert!(child.try_wait().unwrap().is_none(), "server exited");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Serves a bus with `options` on a background thread.
fn serve(options: ServeOptions) -> String {
    let bus = Bus::new();
    bus.attach(chip()).unwrap();
    let listener = Listener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || listener.serve_with(&bus, &options));
    addr
}

/// True once the server has closed `s` (EOF or reset).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// Past the cap a connection is closed at once; a freed place is taken by the next client.
#[test]
fn connections_past_the_cap_are_refused() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let addr = serve(ServeOptions {
        max_connections: 2,
        log: Arc::new(move |l| sink.lock().unwrap().push(l.to_string())),
        ..ServeOptions::default()
    });
    let mut a = connect(&addr).unwrap();
    let mut b = connect(&addr).unwrap();
    assert_eq!(echo(&mut a, 1).unwrap(), [1; 4]);
    assert_eq!(echo(&mut b, 2).unwrap(), [2; 4]);
    let mut c = connect(&addr).unwrap();
    assert!(closed(&mut c), "a third connection was served");
    assert!(lines.lock().unwrap()[0].contains("2 connections already"));
    drop(a);
    let mut served = false;
    for _ in 0..300 {
        let mut d = connect(&addr).unwrap();
        if echo(&mut d, 4).is_ok_and(|r| r == [4; 4]) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served, "the freed place was never given out");
    assert_eq!(echo(&mut b, 5).unwrap(), [5; 4]);
}

/// A connection that sends nothing, or stops in the middle of a request, is closed after the
/// idle timeout.
#[test]
fn idle_connections_are_closed() {
    let addr = serve(ServeOptions {
        idle_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    });
    let mut silent = connect(&addr).unwrap();
    assert!(closed(&mut silent));
    let mut stalled = connect(&addr).unwrap();
    stalled.write_all(&[b'W', 0x20, 0x00, 0x10, 0x00]).unwrap();
    assert!(closed(&mut stalled));
    let mut busy = connect(&addr).unwrap();
    assert_eq!(echo(&mut busy, 6).unwrap(), [6; 4]);
}

/// A write longer than any frame is read and NACKed without being buffered; a long read is
/// padded with 0xFF; the connection stays in step.
#[test]
fn oversized_transfers_stay_in_step() {
    let addr = serve(ServeOptions::default());
    let mut s = connect(&addr).unwrap();
    let mut req = vec![b'W', 0x20, 0xFF, 0xFF];
    req.resize(4 + 0xFFFF, 0xAB);
    s.write_all(&req).unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x01]);
    assert_eq!(echo(&mut s, 7).unwrap(), [7; 4]);
    s.write_all(&[b'R', 0x20, 0x08, 0x00]).unwrap();
    let mut rsp = vec![0u8; 1 + 0x800];
    s.read_exact(&mut rsp).unwrap();
    assert_eq!(rsp[0], 0);
    assert_eq!(
        ResponseFrame::decode(&rsp[1..10], false).unwrap().data,
        [7; 4]
    );
    assert!(rsp[10..].iter().all(|&b| b == 0xFF));
    assert_eq!(echo(&mut s, 8).unwrap(), [8; 4]);
}
