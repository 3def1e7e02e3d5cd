//! Finding 9 of the trust review: slow clients and too many connections do not stop the server.
//! The server runs in a child process (this test binary, re-run as `serve_child`) under a low
//! open-file limit; this process plays 1,100 idle connections and 50 slow clients, then checks
//! that a well-behaved client is served and the server is still up.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The open-file limit the server runs under.
const SERVER_NOFILE: u64 = 256;

/// The server side: run only as a child of `server_outlives_floods`.
#[test]
#[ignore = "run by server_outlives_floods as a child process"]
fn serve_child() {
    let Ok(limit) = std::env::var("SESAME_LIMITS_CHILD") else {
        return;
    };
    let limit: u64 = limit.parse().unwrap();
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.path().join("c.db").display()),
        admin_token: "limits-test-admin-token".into(),
        header_timeout_secs: 2,
        request_timeout_secs: 4,
        idle_timeout_secs: 3,
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let service = sesame_cloud::build(cfg).await.unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTEN {}", l.local_addr().unwrap());
        sesame_cloud::serve(service, l, std::future::pending())
            .await
            .unwrap();
    });
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthz(addr: &str) -> bool {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build()
        .get(&format!("http://{addr}/healthz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

#[test]
fn server_outlives_floods() {
    // This side holds over a thousand sockets.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: hard.map(|h| h.min(8192)),
            maximum: hard,
        },
    );
    let mut child = Child(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "serve_child", "--ignored", "--nocapture"])
            .env("SESAME_LIMITS_CHILD", SERVER_NOFILE.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the server did not start"
        );
        if let Some(a) = line.trim().strip_prefix("LISTEN ") {
            break a.to_string();
        }
    };
    assert!(healthz(&addr));

    // 50 slow clients: half a request head, then nothing; and a body announced but trickled.
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        } else {
            s.write_all(b"POST /v1/auth/challenge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{").unwrap();
        }
        slow.push(s);
    }
    // 1,100 idle connections against a 256-file limit (fewer if this side may not hold them).
    let room = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(1_100, |n| n.saturating_sub(200).min(1_100));
    assert!(
        room > 2 * SERVER_NOFILE,
        "this machine's file limit is too low for the test"
    );
    let mut idle = Vec::new();
    for _ in 0..room {
        let sock: std::net::SocketAddr = addr.parse().unwrap();
        if let Ok(s) = TcpStream::connect_timeout(&sock, Duration::from_millis(200)) {
            idle.push(s);
        }
    }
    // A well-behaved client is served (as soon as the timeouts free slots), and the server is
    // still running.
    let started = Instant::now();
    let mut served = false;
    while started.elapsed() < Duration::from_secs(60) {
        if healthz(&addr) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(served, "no answer for a well-behaved client");
    assert!(child.0.try_wait().unwrap().is_none(), "the server exited");
    // The slow clients were cut off by the server, not left hanging.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue, // a 408 answer, then the close
                Err(e) => {
                    break e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut
                }
            }
        };
        assert!(closed, "a slow client was never disconnected");
    }
    drop(idle);
    assert!(healthz(&addr));
}
