//! Puts the commit into `sesame --version`: `git rev-parse` when built from a clone,
//! `$SESAME_COMMIT` when given (a container or tarball build), else "unknown commit".

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    if !o.status.success() {
        return None;
    }
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SESAME_COMMIT");
    let commit = std::env::var("SESAME_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself, the branch it points to, packed refs.
            if let (Some(dir), Some(common)) = (
                git(&["rev-parse", "--absolute-git-dir"]),
                git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
            ) {
                let head = PathBuf::from(&dir).join("HEAD");
                println!("cargo:rerun-if-changed={}", head.display());
                if let Ok(text) = std::fs::read_to_string(&head) {
                    if let Some(r) = text.trim().strip_prefix("ref: ") {
                        println!("cargo:rerun-if-changed={common}/{r}");
                    }
                }
                println!("cargo:rerun-if-changed={common}/packed-refs");
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=SESAME_COMMIT={commit}");
}
