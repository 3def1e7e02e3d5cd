//! Running the `sesame` binary as a user does, shared by the CLI tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary in `dir`, with a clean environment for the variables it reads (each test passes
/// what it needs).
pub fn command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sesame"));
    c.current_dir(dir)
        .env_remove("SESAME_CHIP_KEY")
        .env_remove("SESAME_CLOUD_ADMIN_TOKEN");
    c
}

/// Runs `sesame ARGS` in `dir`.
pub fn sesame(args: &[&str], dir: &Path) -> Output {
    command(dir).args(args).output().unwrap()
}

/// Everything the command printed.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts success.
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// Asserts exit code 1 with `msg` in the output.
pub fn fails(o: Output, msg: &str) -> Output {
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(msg), "expected '{msg}' in: {}", text(&o));
    o
}

/// Asserts exit code 2 (a usage error) with `msg` in the output.
pub fn usage_error(o: Output, msg: &str) -> Output {
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(msg), "expected '{msg}' in: {}", text(&o));
    o
}

/// Operator token of the test clouds.
pub const TOKEN: &str = "cli-cloud-test-admin-token";

/// `sesame ARGS` in `dir` with the operator token.
pub fn operator(args: &[&str], dir: &Path) -> Output {
    command(dir)
        .args(args)
        .env("SESAME_CLOUD_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap()
}

/// `sesame cloud serve` on a free loopback port, killed when dropped (also when a test fails).
pub struct Server {
    child: std::process::Child,
    /// Its base URL, from its startup line.
    pub url: String,
    /// Its startup line.
    pub banner: String,
}

impl Server {
    /// Plain HTTP on SQLite in `dir`, with the command key if given.
    pub fn start(dir: &Path, command_key: Option<&Path>) -> Self {
        let mut args = vec!["--db".to_string(), "sqlite://cloud.db".to_string()];
        if let Some(k) = command_key {
            // The factory's keys: the command key and, beside it, the firmware public key.
            args.extend(["--command-key".to_string(), k.display().to_string()]);
            args.extend([
                "--firmware-key".to_string(),
                k.with_file_name("firmware.pub.pem").display().to_string(),
            ]);
        }
        Self::start_with(dir, &args)
    }

    /// `sesame cloud serve --listen 127.0.0.1:0 ARGS`; waits for its startup line.
    pub fn start_with(dir: &Path, args: &[String]) -> Self {
        use std::io::BufRead;
        let mut child = command(dir)
            .args(["cloud", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("SESAME_CLOUD_ADMIN_TOKEN", TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stderr to its end so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("sesame cloud on ") {
                    let _ = tx.send(line);
                }
            }
        });
        // Up to 60 s: a loaded CI machine may be slow to start it.
        let banner = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("cloud did not come up: {:?}", child.wait_with_output());
            }
        };
        let url = banner
            .strip_prefix("sesame cloud on ")
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_string();
        Self { child, url, banner }
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the server to exit by itself (e.g. after SIGTERM).
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database on the server `SESAME_TEST_PG` points to (CI starts one), as a
/// URL; `None` when it is not set (outside CI only).
pub fn postgres() -> Option<String> {
    use sqlx::Connection;
    let Ok(base) = std::env::var("SESAME_TEST_PG") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: set SESAME_TEST_PG"
        );
        eprintln!("SESAME_TEST_PG not set: no PostgreSQL case on this machine");
        return None;
    };
    let mut r = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    let name = format!("sesame_cli_{}", hex::encode(r));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut admin = sqlx::postgres::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let mut u = url::Url::parse(&base).unwrap();
    u.set_path(&name);
    Some(u.to_string())
}

/// SHA-256 of a PEM public key's SPKI DER, computed from the factory's file (what
/// `openssl pkey -pubin -outform DER | sha256sum` prints).
pub fn fingerprint(pem: &Path) -> String {
    use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
    use sha2::Digest;
    let pk = p256::PublicKey::from_public_key_pem(&std::fs::read_to_string(pem).unwrap()).unwrap();
    hex::encode(sha2::Sha256::digest(
        pk.to_public_key_der().unwrap().as_bytes(),
    ))
}

/// Personalizes one chip of `family-1` from the factory in `dir/f` into the batch `dir/b`;
/// returns its serial and its image path (relative to `dir`).
pub fn personalize_one(dir: &Path) -> (String, String) {
    let o = sesame(
        &[
            "factory",
            "personalize",
            "--dir",
            "f",
            "--family",
            "family-1",
            "--count",
            "1",
            "--out",
            "b",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let manifest = std::fs::read_to_string(dir.join("b/manifest.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    let serial = first["serial"].as_str().unwrap().to_string();
    let image = format!("b/chips/{serial}.chip");
    (serial, image)
}
