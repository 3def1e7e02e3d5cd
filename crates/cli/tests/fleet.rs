//! `sesame fleet run` and `sesame bench auth` end to end, small: every device authenticates,
//! messages flow, nothing fails. No timing is asserted.
#![allow(clippy::unwrap_used)]

mod common;

use common::text;
use std::process::Output;

fn sesame(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    common::sesame(args, dir.path())
}

#[test]
fn a_small_fleet_authenticates_and_sends_telemetry() {
    let o = sesame(&[
        "fleet",
        "run",
        "--devices",
        "20",
        "--duration",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["devices"], 20, "{v}");
    assert!(v["authentications"].as_u64().unwrap() >= 20, "{v}");
    assert_eq!(v["logged_in"], 20, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["error_total"], 0, "{v}");
    assert!(v["errors"].as_object().unwrap().is_empty(), "{v}");
    for k in ["login_ms", "telemetry_ms"] {
        let (p50, p99) = (v[k]["p50"].as_f64().unwrap(), v[k]["p99"].as_f64().unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "{k}: {v}");
    }
    assert!(v["authentications_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["messages_per_second"].as_f64().unwrap() > 0.0);
    // Peak memory is the process's high-water mark: at least what 20 chips and a cloud hold.
    assert!(v["peak_rss_mb"].as_f64().unwrap() >= 1.0, "{v}");
    // The human summary says it too.
    let o = sesame(&["fleet", "run", "--devices", "2", "--duration", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let mb: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("peak memory:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no peak memory in:\n{out}"))
        .parse()
        .unwrap();
    assert!(mb >= 1.0, "{out}");
    assert!(!out.contains("per cloud instance"), "{out}");
}

#[test]
fn bench_auth_reports_rates_and_ratios() {
    let o = sesame(&["bench", "auth", "--devices", "4", "--seconds", "1"]);
    let out = text(&o);
    // The verdict, whichever it is, decides the exit code.
    let verdict = out
        .lines()
        .find(|l| l.starts_with("ratio logins per cloud-CPU-second ÷ ring verify/s: "))
        .unwrap_or_else(|| panic!("no verdict in:\n{out}"));
    assert!(verdict.contains("(goal >= "), "{out}");
    assert_eq!(o.status.success(), verdict.ends_with(": PASS"), "{out}");
    assert!(
        verdict.ends_with(": PASS") || verdict.ends_with(": FAIL"),
        "{out}"
    );
    let number_after = |prefix: &str| -> f64 {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in:\n{out}"));
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(number_after("authentications: ") >= 4.0, "{out}");
    assert_eq!(number_after("errors: "), 0.0, "{out}");
    assert!(out.contains("latency: p50 "), "{out}");
    assert!(out.contains("ring (the cloud's backend) "), "{out}");
    assert!(out.contains("RustCrypto p256 "), "{out}");
    assert!(number_after("cloud CPU: ") > 0.0, "{out}");
    assert!(out.contains(" logins per cloud-CPU-second"), "{out}");
    assert!(
        out.contains("mTLS 1.3 handshake (rustls, device certificate), server side: "),
        "{out}"
    );
    assert!(out.contains("login vs the mTLS bar: "), "{out}");
}

#[test]
fn a_fleet_spreads_over_two_instances_sharing_one_database() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(common::operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    // One database for both: PostgreSQL when the suite has one, else an SQLite file (WAL).
    let db = common::postgres().unwrap_or_else(|| "sqlite://shared.db".into());
    let args = [
        "--db".to_string(),
        db,
        "--command-key".into(),
        "f/command.key.pem".into(),
    ];
    // One after the other: the first creates the schema.
    let a = common::Server::start_with(d, &args);
    let b = common::Server::start_with(d, &args);
    let pin = common::fingerprint(&d.join("f/command.pub.pem"));
    let o = common::operator(
        &[
            "fleet",
            "run",
            "--cloud",
            &format!("{},{}", a.url, b.url),
            "--command-key-sha256",
            &pin,
            "--devices",
            "6",
            "--duration",
            "2",
            "--json",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error_total"], 0, "{v}");
    let clouds = v["clouds"].as_array().unwrap();
    let urls: Vec<&str> = clouds.iter().map(|c| c["url"].as_str().unwrap()).collect();
    let mut want = vec![a.url.as_str(), b.url.as_str()];
    want.sort_unstable();
    assert_eq!(urls, want, "{v}");
    for c in clouds {
        // Round robin: three devices each, every one logged in and sending.
        assert_eq!(c["devices"], 3, "{v}");
        assert!(c["authentications"].as_u64().unwrap() >= 3, "{v}");
        assert!(c["messages"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(c["errors"], 0, "{v}");
    }
    let sum = |k: &str| clouds.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        sum("authentications"),
        v["authentications"].as_u64().unwrap()
    );
    assert_eq!(sum("messages"), v["messages"].as_u64().unwrap());
    // The family enrolled on the first was revoked at the end, as both instances see it.
    for url in [&a.url, &b.url] {
        let o = common::operator(&["cloud", "families", "--url", url, "--json"], d);
        let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let fleet = f["families"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"].as_str().unwrap().starts_with("fleet-"))
            .cloned()
            .unwrap_or_else(|| panic!("{f}"));
        assert_eq!(fleet["revoked"], true, "{f}");
    }
}
