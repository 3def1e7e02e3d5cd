//! `sesame-wire`: the one source of truth for the bytes on an STSAFE-A110's I2C bus.
//!
//! `no_std`, no allocation, no I/O: CRC-16/X-25, command and response frames, command and status
//! codes, typed request and response codecs, curve identifiers, and the host secure channel
//! (block0, C-MAC, R-MAC, AES-CBC) as pure functions. The chip emulator and the host driver both
//! build on this crate and never on each other.
//!
//! ```
//! use sesame_wire::{CommandFrame, Header, CommandCode, Request};
//! let mut payload = [0u8; 8];
//! let n = Request::Echo(&[1, 2, 3]).encode(&mut payload).unwrap();
//! let frame = CommandFrame { header: Header::plain(CommandCode::ECHO), payload: &payload[..n], cmac: None };
//! let mut out = [0u8; 16];
//! let len = frame.encode(&mut out).unwrap();
//! assert_eq!(&out[..len], &[0x00, 0x01, 0x02, 0x03, 0xA7, 0x29]); // protocol.md §1.7
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cmd;
pub mod codec;
mod codes;
pub mod crc16;
pub mod ecc;
pub mod frame;
pub mod resp;
pub mod secure;

pub use cmd::{Attribute, KeyGeneration, Request, ZoneOption};
pub use codec::{Reader, Writer};
pub use codes::{AttributeTag, CommandCode, LifeCycle, QueryTag, Status};
pub use ecc::{Curve, PublicKey, Signature};
pub use frame::{CommandFrame, Header, ResponseFrame};

/// Why bytes could not be decoded or encoded. Positions are byte offsets in the input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before a field at `at`.
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// Bytes remain after the last field.
    TrailingBytes {
        /// Offset of the first extra byte.
        at: usize,
    },
    /// A frame longer than the protocol allows.
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A LEN field that cannot be right.
    BadLength {
        /// Offset of the field.
        at: usize,
    },
    /// The frame CRC does not match.
    Crc {
        /// CRC computed over the frame.
        expected: u16,
        /// CRC found in the frame.
        found: u16,
    },
    /// The output buffer is too small.
    BufferTooSmall,
    /// A command code the A110 does not execute.
    UnsupportedCommand {
        /// The code.
        code: u8,
    },
    /// An unknown tag (query, attribute, key type).
    UnknownTag {
        /// Offset of the tag.
        at: usize,
    },
    /// A curve identifier that names no known curve.
    UnknownCurve {
        /// Offset of the identifier.
        at: usize,
    },
    /// A field holds a value the protocol does not allow.
    InvalidValue {
        /// Offset of the field.
        at: usize,
    },
    /// Decrypted data does not end in valid `80 00..` padding.
    Padding,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { at } => write!(f, "input ends early at byte {at}"),
            Self::TrailingBytes { at } => write!(f, "unexpected bytes from byte {at}"),
            Self::TooLong { len } => write!(f, "frame of {len} bytes is too long"),
            Self::BadLength { at } => write!(f, "impossible length field at byte {at}"),
            Self::Crc { expected, found } => {
                write!(
                    f,
                    "CRC mismatch: computed {expected:04X}, frame has {found:04X}"
                )
            }
            Self::BufferTooSmall => f.write_str("output buffer too small"),
            Self::UnsupportedCommand { code } => write!(f, "command 0x{code:02X} not supported"),
            Self::UnknownTag { at } => write!(f, "unknown tag at byte {at}"),
            Self::UnknownCurve { at } => write!(f, "unknown curve identifier at byte {at}"),
            Self::InvalidValue { at } => write!(f, "invalid value at byte {at}"),
            Self::Padding => f.write_str("invalid padding after decryption"),
        }
    }
}

impl core::error::Error for Error {}
