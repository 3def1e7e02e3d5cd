//! The driver's error: one small `Copy` enum, generic over the bus error.

use core::fmt;

use sesame_wire::Status;

/// Why a driver call failed. Nothing the bus returns makes the driver panic: every malformed,
/// corrupted or unexpected answer ends up here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The I2C bus failed with something other than a NACK.
    Bus(E),
    /// The chip NACKed every try (`Config::retries`): it is busy, asleep, absent, or it lost
    /// its response. After this on a protected command the session is resynchronized before the
    /// next protected command (or call [`Stsafe::reopen_session`](crate::Stsafe::reopen_session)).
    NackTimeout,
    /// The response failed its integrity check: a CRC mismatch, or a LEN field that cannot be
    /// right (LEN is not covered by the CRC, protocol.md §1.4).
    Crc,
    /// The chip answered with an error status (protocol.md §2).
    Status(Status),
    /// The R-MAC of a protected response is missing or wrong: the answer did not come from the
    /// chip holding the host keys, or was altered on the way.
    RmacMismatch,
    /// A caller-supplied output buffer is too small for the answer.
    BufferTooSmall,
    /// The request does not fit in one command frame (507 bytes, protocol.md §1.5).
    RequestTooLarge,
    /// A caller-supplied input has an impossible size (a key, signature or digest length).
    InvalidInput,
    /// The answer's data has a length the command cannot produce.
    UnexpectedLength,
    /// The product data does not name an STSAFE-A110 (protocol.md §3.5).
    NotA110,
    /// A protected command with no host session open, or a session asked of a chip without
    /// host keys. The bus is not touched for the former.
    NoSession,
    /// Verify Password answered "wrong password".
    PasswordRejected {
        /// Tries left before the password blocks.
        remaining: u8,
    },
    /// The answer's data could not be decoded.
    Decode(sesame_wire::Error),
}

impl<E> Error<E> {
    /// The chip status behind this error, if the chip answered with one.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// True when the bytes on the bus were lost or altered (NACK timeout, CRC, R-MAC): retrying
    /// the command may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NackTimeout | Self::Crc | Self::RmacMismatch)
    }

    /// True when the command may have run although no valid answer came back: the answer was
    /// lost (NACK timeout), damaged (CRC, R-MAC) or the bus broke. A state-changing command's
    /// outcome is then unknown: read the state before retrying, never report it as failed.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::NackTimeout | Self::Crc | Self::RmacMismatch | Self::Bus(_)
        )
    }

    /// Maps the bus error type, keeping every other variant.
    pub fn map_bus<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Self::Bus(e) => Error::Bus(f(e)),
            Self::NackTimeout => Error::NackTimeout,
            Self::Crc => Error::Crc,
            Self::Status(s) => Error::Status(s),
            Self::RmacMismatch => Error::RmacMismatch,
            Self::BufferTooSmall => Error::BufferTooSmall,
            Self::RequestTooLarge => Error::RequestTooLarge,
            Self::InvalidInput => Error::InvalidInput,
            Self::UnexpectedLength => Error::UnexpectedLength,
            Self::NotA110 => Error::NotA110,
            Self::NoSession => Error::NoSession,
            Self::PasswordRejected { remaining } => Error::PasswordRejected { remaining },
            Self::Decode(e) => Error::Decode(e),
        }
    }
}

impl<E> From<sesame_wire::Error> for Error<E> {
    fn from(e: sesame_wire::Error) -> Self {
        Self::Decode(e)
    }
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bus(e) => write!(f, "I2C bus error: {e:?}"),
            Self::NackTimeout => f.write_str("the chip did not acknowledge (NACK) in time"),
            Self::Crc => f.write_str("corrupted response (CRC or length mismatch)"),
            Self::Status(s) => write!(f, "the chip answered {s} (0x{:02X})", s.0),
            Self::RmacMismatch => f.write_str("R-MAC mismatch: the response is not authentic"),
            Self::BufferTooSmall => f.write_str("output buffer too small"),
            Self::RequestTooLarge => f.write_str("request does not fit in one command frame"),
            Self::InvalidInput => f.write_str("input has an impossible size"),
            Self::UnexpectedLength => f.write_str("response data has an unexpected length"),
            Self::NotA110 => f.write_str("the device is not an STSAFE-A110"),
            Self::NoSession => f.write_str("no host secure-channel session"),
            Self::PasswordRejected { remaining } => {
                write!(f, "wrong password ({remaining} tries left)")
            }
            Self::Decode(e) => write!(f, "malformed response: {e}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}
