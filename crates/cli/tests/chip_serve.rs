//! `sesame chip serve` on a Unix socket: the socket is removed on SIGINT and SIGTERM, a stale
//! one is replaced at start, and a live server's socket or a path that is not a socket is
//! refused, each with its own message.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::{fails, ok, sesame, text};
use rustix::process::{kill_process, Pid, Signal};

fn new_chip(d: &Path) {
    ok(sesame(&["chip", "key", "--out", "k"], d));
    ok(sesame(
        &["chip", "new", "--out", "c.chip", "--key-file", "k"],
        d,
    ));
}

fn serve_args(sock: &Path) -> Vec<String> {
    [
        "chip",
        "serve",
        "--image",
        "c.chip",
        "--key-file",
        "k",
        "--listen",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("unix:{}", sock.display())])
    .collect()
}

/// Starts a server and waits until it answers on `sock`.
fn start(d: &Path, sock: &Path) -> Child {
    let mut child = common::command(d)
        .args(serve_args(sock))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("server did not come up");
}

fn signal(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, sig).unwrap();
}

#[test]
fn sigint_and_sigterm_remove_the_socket() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    let sock = d.join("bus.sock");
    for (sig, name) in [(Signal::TERM, "SIGTERM"), (Signal::INT, "SIGINT")] {
        let child = start(d, &sock);
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("{name}: stopped")),
            "{}",
            text(&out)
        );
        assert!(!sock.exists(), "socket left behind after {name}");
    }
}

#[test]
fn stale_socket_replaced_live_server_and_other_files_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    let sock = d.join("bus.sock");

    // A socket nobody listens on any more (as a killed server leaves it): replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let live = start(d, &sock);

    // A second server (of another chip) on a live socket: refused, and the first one keeps
    // its socket.
    ok(sesame(
        &["chip", "new", "--out", "b.chip", "--key-file", "k"],
        d,
    ));
    let args = serve_args(&sock);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args[3] = "b.chip";
    fails(sesame(&args, d), "a server is already listening on");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    signal(&live, Signal::TERM);
    assert!(live.wait_with_output().unwrap().status.success());

    // A regular file is never removed.
    std::fs::write(&sock, b"not a socket").unwrap();
    fails(sesame(&args, d), "exists and is not a socket");
    assert_eq!(std::fs::read(&sock).unwrap(), b"not a socket");
}

#[test]
fn one_owner_per_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    let sock = d.join("bus.sock");
    let server = start(d, &sock);

    // A second server of the same image (on another socket) is refused, naming the lock.
    let other = d.join("other.sock");
    let args = serve_args(&other);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fails(sesame(&args, d), "holds its lock");
    assert!(text(&o).contains("c.chip.lock"), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("process {}", server.id())),
        "{}",
        text(&o)
    );
    // So is a device command on the image itself; inspecting it is fine.
    fails(
        sesame(
            &[
                "device",
                "random",
                "8",
                "--image",
                "c.chip",
                "--key-file",
                "k",
            ],
            d,
        ),
        "holds its lock c.chip.lock",
    );
    ok(sesame(&["chip", "inspect", "c.chip", "--key-file", "k"], d));

    signal(&server, Signal::TERM);
    assert!(server.wait_with_output().unwrap().status.success());
    // Once the server is gone the image is free again.
    ok(sesame(
        &["device", "info", "--image", "c.chip", "--key-file", "k"],
        d,
    ));
}

/// An image copied over another chip's is refused, by `chip serve` and by `device --image`;
/// the images' modes survive writes.
#[test]
fn a_swapped_image_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    ok(sesame(
        &["chip", "new", "--out", "b.chip", "--key-file", "k"],
        d,
    ));
    let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("c.chip"), 0o600);
    // A decrement writes the image: its mode is kept.
    std::fs::set_permissions(d.join("b.chip"), std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(sesame(
        &[
            "device",
            "counter",
            "decrement",
            "--zone",
            "4",
            "--amount",
            "1",
            "--image",
            "b.chip",
            "--key-file",
            "k",
        ],
        d,
    ));
    assert_eq!(mode("b.chip"), 0o640);
    let b_serial = |d: &Path| -> String {
        let keys = std::fs::read_to_string(d.join("b.chip.host-keys.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&keys).unwrap()["serial"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let c_keys = std::fs::read_to_string(d.join("c.chip.host-keys.json")).unwrap();
    let c_serial = serde_json::from_str::<serde_json::Value>(&c_keys).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();

    std::fs::copy(d.join("c.chip"), d.join("b.chip")).unwrap();
    let msg = format!(
        "this is chip {c_serial}'s image, not chip {}'s",
        b_serial(d)
    );
    fails(
        sesame(
            &["device", "info", "--image", "b.chip", "--key-file", "k"],
            d,
        ),
        &msg,
    );
    let sock = d.join("bus.sock");
    let args = [
        "chip",
        "serve",
        "--image",
        "b.chip",
        "--key-file",
        "k",
        "--listen",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push(format!("unix:{}", sock.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(sesame(&args, d), &msg);
    // The original still opens.
    ok(sesame(
        &["device", "info", "--image", "c.chip", "--key-file", "k"],
        d,
    ));
}

/// `chip new` issues the chip's certificate from a CA of its own, written beside the image:
/// chain-checking hosts (`device authenticate --ca`) accept the chip, over the bus too.
#[test]
fn a_new_chip_authenticates_against_its_ca() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    let ca = std::fs::read_to_string(d.join("c.chip.ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let o = ok(sesame(
        &[
            "device",
            "authenticate",
            "--ca",
            "c.chip.ca.pem",
            "--image",
            "c.chip",
            "--key-file",
            "k",
            "--json",
        ],
        d,
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["authenticated"], true, "{v}");
    // Another chip's CA does not vouch for this one.
    ok(sesame(
        &["chip", "new", "--out", "b.chip", "--key-file", "k"],
        d,
    ));
    let o = sesame(
        &[
            "device",
            "authenticate",
            "--ca",
            "b.chip.ca.pem",
            "--image",
            "c.chip",
            "--key-file",
            "k",
            "--json",
        ],
        d,
    );
    assert!(!o.status.success(), "{}", text(&o));
}

/// `chip new --profile encrypted`: `chip inspect` shows the encrypting command table (the
/// driver's encrypted paths are tested in sesame-host's `encrypted_profile`).
#[test]
fn the_encrypted_profile_is_shown_and_used() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(sesame(&["chip", "key", "--out", "k"], d));
    ok(sesame(
        &[
            "chip",
            "new",
            "--out",
            "e.chip",
            "--key-file",
            "k",
            "--profile",
            "encrypted",
        ],
        d,
    ));
    let o = ok(sesame(&["chip", "inspect", "e.chip", "--key-file", "k"], d));
    let shown = text(&o);
    eprintln!("{shown}");
    for line in [
        "GENERATE_RANDOM    AC host C-MAC response encrypted",
        "READ               AC host C-MAC response encrypted",
        "UPDATE             AC host C-MAC command encrypted",
    ] {
        assert!(shown.contains(line), "{line} missing in {shown}");
    }
    // A plain chip has none.
    ok(sesame(
        &["chip", "new", "--out", "c.chip", "--key-file", "k"],
        d,
    ));
    let o = ok(sesame(&["chip", "inspect", "c.chip", "--key-file", "k"], d));
    assert!(text(&o).contains("    (none)"), "{}", text(&o));
}

/// One raw command over the socket protocol: the write's ack, then the response frame.
fn raw_command(s: &mut std::os::unix::net::UnixStream, addr: u8, frame: &[u8]) -> (u8, Vec<u8>) {
    use std::io::{Read, Write};
    let mut req = vec![b'W', addr];
    req.extend((frame.len() as u16).to_be_bytes());
    req.extend(frame);
    s.write_all(&req).unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
    if ack[0] != 0 {
        return (ack[0], Vec::new());
    }
    s.write_all(&[b'R', addr, 0, 64]).unwrap();
    let mut rsp = [0u8; 65];
    s.read_exact(&mut rsp).unwrap();
    assert_eq!(rsp[0], 0, "read NACKed");
    let len = 3 + u16::from_be_bytes([rsp[2], rsp[3]]) as usize;
    (0, rsp[1..1 + len].to_vec())
}

#[test]
fn verbose_logs_one_line_per_transaction_and_no_payload() {
    use sesame_wire::{CommandCode, CommandFrame, Header};
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    let sock = d.join("bus.sock");
    let mut args = serve_args(&sock);
    args.push("-v".into());
    let mut child = common::command(d)
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = loop {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
            break s;
        }
        assert!(child.try_wait().unwrap().is_none(), "server exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Five Echo commands with a payload that must never be logged, one frame with a bad CRC
    // (the chip answers an error), and a write to an address nobody answers (no transaction).
    let secret: Vec<u8> = (0..24u8).map(|i| 0xC3 ^ i.wrapping_mul(37)).collect();
    let mut frame = [0u8; 64];
    let n = CommandFrame {
        header: Header::plain(CommandCode::ECHO),
        payload: &secret,
        cmac: None,
    }
    .encode(&mut frame)
    .unwrap();
    let echo = &frame[..n];
    let mut rsp_len = 0;
    for i in 0..5 {
        if i == 3 {
            let mut bad = echo.to_vec();
            bad[n - 1] ^= 0xFF;
            let (ack, rsp) = raw_command(&mut s, 0x20, &bad);
            assert_eq!(ack, 0);
            assert_ne!(rsp[0] & 0x1F, 0, "a bad CRC is answered with an error");
            assert_eq!(raw_command(&mut s, 0x31, echo).0, 2, "no device at 0x31");
        }
        let (ack, rsp) = raw_command(&mut s, 0x20, echo);
        assert_eq!(ack, 0);
        assert_eq!(&rsp[3..3 + secret.len()], &secret[..]);
        rsp_len = rsp.len();
    }
    drop(s);
    // Device commands whose data is secret: random bytes out, a digest in, a signature out.
    let target = format!("unix:{}", sock.display());
    let random = ok(sesame(&["device", "random", "32", "--bus", &target], d));
    let random = String::from_utf8(random.stdout).unwrap().trim().to_string();
    let digest = hex::encode([0x6Bu8; 32]);
    let sig = ok(sesame(
        &[
            "device", "sign", "--digest", &digest, "--bus", &target, "--json",
        ],
        d,
    ));
    let sig: serde_json::Value = serde_json::from_slice(&sig.stdout).unwrap();
    let sig = sig["signature"].as_str().unwrap().to_string();
    signal(&child, Signal::TERM);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8(out.stderr).unwrap();
    let debug: Vec<&str> = log.lines().filter(|l| l.starts_with("debug: ")).collect();
    // The raw client's transactions come first, one line each, in order.
    let echo_line = format!("ECHO (0x00): request {n} B, response {rsp_len} B, status OK (0x00), ");
    for (i, l) in debug.iter().take(6).enumerate() {
        if i == 3 {
            assert!(l.contains("status COMMUNICATION_ERROR (0x01)"), "{log}");
        } else {
            assert!(l.contains(&echo_line), "line {i}: {l}\n{log}");
        }
        assert!(l.starts_with("debug: chip ") && l.ends_with(" us"), "{l}");
    }
    // Then the device commands' (init, random, sign, …): every line has the same shape.
    assert!(debug.len() > 6 + 2, "{log}");
    assert!(
        debug
            .iter()
            .any(|l| l.contains(" GENERATE_RANDOM (0x02): ")),
        "{log}"
    );
    assert!(
        debug
            .iter()
            .any(|l| l.contains(" GENERATE_SIGNATURE (0x16): ")),
        "{log}"
    );
    // No payload byte reaches the log, in any case.
    let upper = log.to_uppercase();
    for (what, h) in [
        ("echo payload", hex::encode(&secret)),
        ("random", random),
        ("digest", digest),
        ("signature", sig),
    ] {
        assert_eq!(h.len() % 2, 0);
        // The whole value and each half.
        for part in [&h[..], &h[..h.len() / 2], &h[h.len() / 2..]] {
            assert!(
                !upper.contains(&part.to_uppercase()),
                "{what} in the log:\n{log}"
            );
        }
    }
}
