//! The binary as a user runs it: exit codes, messages, files, and the socket server.
#![allow(clippy::unwrap_used)]

mod common;

use common::{sesame, text};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

#[test]
fn chip_new_inspect_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(sesame(&["chip", "key", "--out", "k"], d).status.success());
    let o = sesame(&["chip", "new", "--out", "c.chip"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no chip key"), "{}", text(&o));
    let o = sesame(
        &[
            "chip",
            "new",
            "--out",
            "c.chip",
            "--key-file",
            "k",
            "--curve",
            "p384",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("c.chip.host-keys.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let o = sesame(&["chip", "new", "--out", "c.chip", "--key-file", "k"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("refusing to overwrite"));

    let o = sesame(
        &["chip", "inspect", "c.chip", "--key-file", "k", "--json"],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["life_cycle"], "OPERATIONAL");
    assert_eq!(v["private_keys"][0]["curve"], "P384");
    assert_eq!(
        v["private_keys"][0]["public_key"].as_str().unwrap().len(),
        2 * 97
    );
    assert_eq!(v["zones"][4]["counter"], 1_000_000);
    let cert = &v["certificate"];
    // Issued by the chip's own CA (written beside the image).
    let serial = v["serial"].as_str().unwrap();
    assert_eq!(cert["subject"], format!("CN={serial},O=sesame"));
    assert_eq!(cert["issuer"], format!("CN=chip {serial} CA,O=sesame"));
    assert!(cert["not_after"]
        .as_str()
        .unwrap()
        .starts_with("9999-12-31"));
    // No private material anywhere in the output: only public keys, named as such.
    assert!(!text(&o).to_lowercase().contains("private_key\""));
    assert!(!text(&o).contains("scalar"));

    // A wrong key, a damaged image, a missing image: clear errors, nonzero exit.
    sesame(&["chip", "key", "--out", "k2"], d);
    let o = sesame(&["chip", "inspect", "c.chip", "--key-file", "k2"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrong key"), "{}", text(&o));
    let mut img = std::fs::read(d.join("c.chip")).unwrap();
    img.truncate(img.len() / 2);
    std::fs::write(d.join("half.chip"), img).unwrap();
    let o = sesame(&["chip", "inspect", "half.chip", "--key-file", "k"], d);
    assert!(text(&o).contains("corrupted chip image"), "{}", text(&o));
    let o = sesame(&["chip", "inspect", "none.chip", "--key-file", "k"], d);
    assert_eq!(o.status.code(), Some(1));
    let o = sesame(
        &[
            "chip", "serve", "--image", "c.chip", "--listen", "unix:x", "--faults", "nack=7",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "bad fault spec is a usage error");
}

#[test]
fn serve_speaks_the_virtual_bus() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sesame(&["chip", "key", "--out", "k"], d);
    sesame(&["chip", "new", "--out", "a.chip", "--key-file", "k"], d);
    sesame(
        &[
            "chip",
            "new",
            "--out",
            "b.chip",
            "--key-file",
            "k",
            "--address",
            "0x21",
        ],
        d,
    );
    let sock = d.join("bus.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args([
            "chip",
            "serve",
            "--image",
            "a.chip",
            "--image",
            "b.chip",
            "--key-file",
            "k",
        ])
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .current_dir(d)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut s = None;
    for _ in 0..200 {
        if let Ok(c) = std::os::unix::net::UnixStream::connect(&sock) {
            s = Some(c);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut s = s.expect("server did not come up");
    // Echo 01 02 03 (protocol.md §1.7) to each chip; nothing at 0x22.
    for addr in [0x20u8, 0x21] {
        s.write_all(&[b'W', addr, 0, 6, 0x00, 0x01, 0x02, 0x03, 0xA7, 0x29])
            .unwrap();
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [0]);
        s.write_all(&[b'R', addr, 0, 8]).unwrap();
        let mut rsp = [0u8; 9];
        s.read_exact(&mut rsp).unwrap();
        assert_eq!(rsp, [0x00, 0x00, 0x00, 0x05, 0x01, 0x02, 0x03, 0xA7, 0x29]);
    }
    s.write_all(&[b'R', 0x22, 0, 5]).unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [2]);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn two_chips_at_one_address_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sesame(&["chip", "key", "--out", "k"], d);
    sesame(&["chip", "new", "--out", "a.chip", "--key-file", "k"], d);
    sesame(&["chip", "new", "--out", "b.chip", "--key-file", "k"], d);
    let o = sesame(
        &[
            "chip",
            "serve",
            "--image",
            "a.chip",
            "--image",
            "b.chip",
            "--key-file",
            "k",
            "--listen",
            "127.0.0.1:0",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("already uses address 0x20"),
        "{}",
        text(&o)
    );
}

#[test]
fn demo_runs_the_story_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let o = sesame(&["demo"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("summary:") && out.contains(" 0 failed"),
        "{out}"
    );
    assert!(!out.contains('✘'));
}
