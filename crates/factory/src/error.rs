//! The factory's one error type.

use std::fmt;

/// What kind of failure, so a caller can tell its own mistake from the factory's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// The request itself is wrong (a bad name, a zero count): the caller's mistake.
    Usage,
    /// The factory or batch directory refuses the request (not a factory, exists, mismatch).
    Refused,
    /// Reading or writing a file failed.
    Io,
    /// A key, certificate or chip operation failed.
    Crypto,
}

/// A factory operation failed: what was being done, and why.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    msg: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A failure with a message only.
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
            source: None,
        }
    }

    /// The caller's mistake.
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::new(Kind::Usage, msg)
    }

    /// Refused by the state on disk.
    pub fn refused(msg: impl Into<String>) -> Self {
        Self::new(Kind::Refused, msg)
    }

    /// The kind of failure.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Adds what was being done in front of the message.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Attaches a kind and a message to any error.
pub(crate) trait Ctx<T> {
    fn ctx(self, kind: Kind, msg: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> Ctx<T> for Result<T, E> {
    fn ctx(self, kind: Kind, msg: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error {
            kind,
            msg: msg(),
            source: Some(e.into()),
        })
    }
}

/// Shorthand for I/O on a path.
pub(crate) fn io<T>(r: std::io::Result<T>, what: impl FnOnce() -> String) -> Result<T, Error> {
    r.ctx(Kind::Io, what)
}

impl From<sesame_pki::Error> for Error {
    fn from(e: sesame_pki::Error) -> Self {
        Self {
            kind: Kind::Crypto,
            msg: "certificate".into(),
            source: Some(Box::new(e)),
        }
    }
}

/// Result of a factory operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
