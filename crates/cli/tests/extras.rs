//! What users of such tools expect: completions, man pages, `--version` with the commit, an
//! example configuration that the cloud accepts as it is.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ok, sesame, text, Server};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    let t = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = ok(sesame(&["completions", shell], t.path()));
        let s = String::from_utf8(o.stdout).unwrap();
        for word in ["enroll-family", "personalize", "--cacert"] {
            assert!(s.contains(word), "{shell}: no {word}");
        }
    }
    common::usage_error(
        sesame(&["completions", "cmd.exe"], t.path()),
        "invalid value",
    );
}

#[test]
fn man_pages_for_every_command() {
    let t = tempfile::tempdir().unwrap();
    ok(sesame(&["man", "--out", "man"], t.path()));
    for page in [
        "sesame.1",
        "sesame-cloud-serve.1",
        "sesame-factory-personalize.1",
        "sesame-fleet-run.1",
    ] {
        let text = std::fs::read_to_string(t.path().join("man").join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
}

#[test]
fn version_names_the_commit() {
    let t = tempfile::tempdir().unwrap();
    let o = ok(sesame(&["--version"], t.path()));
    let v = String::from_utf8(o.stdout).unwrap();
    let commit = v
        .trim()
        .strip_prefix(concat!("sesame ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{v}"));
    // From a clone, the commit built; from a copy without .git (as CI tests), says so.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    match (
        std::env::var("SESAME_COMMIT")
            .ok()
            .filter(|c| !c.is_empty()),
        head,
    ) {
        (Some(given), _) => assert_eq!(commit, given),
        (None, Some(head)) => assert_eq!(commit, head),
        (None, None) => assert_eq!(commit, "unknown commit"),
    }
}

#[test]
fn the_example_configuration_parses_and_runs() {
    let path = repo().join("dist/cloud.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c: sesame_cloud::Config = toml::from_str(&text).unwrap();
    let d = sesame_cloud::Config::default();
    assert_eq!(
        (c.db.as_str(), c.listen.as_str()),
        (d.db.as_str(), d.listen.as_str())
    );
    // Every key is there, set or commented out.
    for key in [
        "db",
        "listen",
        "admin_token",
        "identity",
        "challenge_ttl",
        "session_ttl",
        "body_limit",
        "max_refusals_per_client",
        "max_logins_per_device",
        "rate_window",
        "audit_retention_days",
        "housekeeping_secs",
        "header_timeout_secs",
        "request_timeout_secs",
        "idle_timeout_secs",
        "max_connections",
        "firmware_limit",
        "firmware_key",
        "command_key",
        "tls_cert",
        "tls_key",
    ] {
        let present = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} = "))
        });
        assert!(present, "{key} is not in {}", path.display());
    }
    // The cloud starts with it as it is (in a scratch directory, on a free port).
    let t = tempfile::tempdir().unwrap();
    let cloud = Server::start_with(t.path(), &["--config".into(), path.display().to_string()]);
    assert!(
        cloud.banner.contains("sqlite://sesame-cloud.db"),
        "{}",
        cloud.banner
    );
    assert!(t.path().join("sesame-cloud.db").exists());
    drop(cloud);
}

#[test]
fn dist_files_start_the_cloud_with_its_config() {
    // The systemd unit and the container run `sesame cloud serve --config FILE`.
    let t = tempfile::tempdir().unwrap();
    for f in ["dist/sesame-cloud.service", "dist/Containerfile"] {
        let s = std::fs::read_to_string(repo().join(f)).unwrap();
        assert!(
            s.contains("cloud") && s.contains("serve") && s.contains("--config"),
            "{f}"
        );
    }
    let o = sesame(&["cloud", "serve", "--help"], t.path());
    assert!(text(&o).contains("--config"), "{}", text(&o));
}
