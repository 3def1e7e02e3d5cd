//! Unix manners: a closed pipe ends quietly, usage errors exit 2, errors under `--json` are JSON
//! on stdout, SIGTERM stops the cloud cleanly, `fleet run` fails on any error and prints its
//! summary (and removes its temporary directory) on Ctrl-C.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::{operator, text, Server};
use serde_json::Value;

fn signal(pid: u32, sig: &str) {
    let s = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let t = tempfile::tempdir().unwrap();
    let cloud = Server::start(t.path(), None);
    // The reader is gone before the command writes: its first line meets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = common::command(t.path())
        .args(["cloud", "devices", "--url", &cloud.url])
        .env("SESAME_CLOUD_ADMIN_TOKEN", common::TOKEN)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn usage_errors_exit_2_and_json_errors_go_to_stdout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Revoke what? One of --serial, --fingerprint, --family is required.
    let o = operator(&["cloud", "revoke"], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--serial"), "{}", text(&o));
    // A URL without its scheme: named, with an example of the right form.
    let o = operator(
        &["cloud", "devices", "--url", "127.0.0.1:8443", "--json"],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"], "usage");
    assert!(v["message"].as_str().unwrap().contains("https://"), "{v}");
    // Nobody listens: exit 1, JSON error on stdout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = operator(&["cloud", "devices", "--url", &url, "--json"], d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"], "unreachable", "{v}");
    assert!(v["message"].as_str().unwrap().contains(&url), "{v}");
    // A clap usage error under --json is JSON too.
    let o = operator(&["cloud", "devices", "--json", "--no-such-flag"], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"], "usage", "{v}");
    let o = operator(&["fleet", "run", "--devices", "0"], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn sigterm_stops_the_cloud_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let cloud = Server::start(t.path(), None);
    signal(cloud.pid(), "-TERM");
    let status = cloud.wait();
    assert!(status.success(), "{status:?}");
}

#[test]
fn fleet_run_fails_when_devices_fail() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    // A cloud with a command key, and a fleet that was not given its public half: every login
    // fails in the chip (it cannot check the cloud's key exchange).
    let cloud = Server::start(d, Some(&d.join("f/command.key.pem")));
    let o = operator(
        &[
            "fleet",
            "run",
            "--cloud",
            &cloud.url,
            "--devices",
            "3",
            "--duration",
            "2",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // One JSON document on stdout: the summary, with the errors.
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["error_total"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn fleet_run_prints_its_summary_on_ctrl_c_and_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = common::command(t.path())
        .args([
            "fleet",
            "run",
            "--devices",
            "4",
            "--duration",
            "300",
            "--json",
        ])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("devices running for"));
    assert!(started, "the fleet never started");
    // Its embedded cloud keeps a command key in the temporary directory while it runs.
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_some());
    signal(child.id(), "-INT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{rest:?}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["devices"], 4, "{v}");
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "temporary files left behind"
    );
}
