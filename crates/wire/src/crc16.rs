//! CRC-16/X-25 (a.k.a. CRC-16/IBM-SDLC), sent high byte first (protocol.md §1.4).

use crc::{Crc, Digest, CRC_16_IBM_SDLC};

/// The frame CRC: poly 0x1021 reflected, init 0xFFFF, xorout 0xFFFF; check value 0x906E.
pub const X25: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// CRC of one contiguous byte string.
pub fn crc16(bytes: &[u8]) -> u16 {
    X25.checksum(bytes)
}

/// A running CRC over several pieces (the platform's "accumulate" call in host libraries).
pub fn crc16_digest() -> Digest<'static, u16> {
    X25.digest()
}
