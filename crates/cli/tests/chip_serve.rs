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

    // A second server on a live socket: refused, and the first one keeps its socket.
    let args = serve_args(&sock);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(sesame(&args, d), "a server is already listening on");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    signal(&live, Signal::TERM);
    assert!(live.wait_with_output().unwrap().status.success());

    // A regular file is never removed.
    std::fs::write(&sock, b"not a socket").unwrap();
    fails(sesame(&args, d), "exists and is not a socket");
    assert_eq!(std::fs::read(&sock).unwrap(), b"not a socket");
}
