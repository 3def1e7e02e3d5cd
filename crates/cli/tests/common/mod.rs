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
