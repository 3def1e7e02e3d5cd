//! Standard output that behaves in a pipe, and how a failure becomes an exit code.
//!
//! Rust ignores SIGPIPE, so a plain `println!` panics when the reader has gone
//! (`sesame cloud devices | head -1`). Every line goes through [`line`] instead: a closed pipe
//! ends the process quietly with 0 (the reader took what it wanted, as ripgrep does), any other
//! write failure with 1.

use std::fmt;
use std::io::{ErrorKind, Write};

/// `println!` that survives a closed pipe.
macro_rules! outln {
    () => { $crate::out::line(format_args!("")) };
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*)) };
}

/// Writes one line to stdout (see the module docs for failures).
pub fn line(args: fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.write_all(b"\n")) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// A mistake in how the command was called (exit 2, like clap's own usage errors).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error (exit 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// The command was interrupted (Ctrl-C) after it reported what it had done (exit 130).
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// The failure was already reported on stdout (e.g. a summary with its errors under `--json`):
/// exit 1 without a second message there.
#[derive(Debug)]
pub struct Reported(pub String);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

/// Exit code and short error name (the `error` field under `--json`) of a failure.
pub fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    if e.downcast_ref::<Usage>().is_some() {
        (2, "usage")
    } else if e.downcast_ref::<Interrupted>().is_some() {
        (130, "interrupted")
    } else if let Some(r) = e.downcast_ref::<sesame_agent::AgentError>() {
        match r {
            sesame_agent::AgentError::Refused { .. } => (1, "refused"),
            sesame_agent::AgentError::Transport(_) => (1, "unreachable"),
            _ => (1, "failed"),
        }
    } else if let Some(c) = e.downcast_ref::<crate::client::CallError>() {
        (1, c.kind())
    } else {
        (1, "failed")
    }
}

/// Reports a failure: on stderr, and under `--json` also as `{"error", "message"}` on stdout.
pub fn report(e: &anyhow::Error, json: bool) -> u8 {
    let (code, kind) = classify(e);
    let message = format!("{e:#}");
    let told = e.downcast_ref::<Reported>().is_some() || e.downcast_ref::<Interrupted>().is_some();
    if json && !told {
        line(format_args!(
            "{}",
            serde_json::json!({ "error": kind, "message": message })
        ));
    }
    if e.downcast_ref::<Interrupted>().is_none() {
        eprintln!("error: {message}");
    }
    code
}
