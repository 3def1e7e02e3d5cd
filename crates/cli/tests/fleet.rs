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
