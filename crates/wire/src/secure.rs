//! The A110 host secure channel as pure functions (protocol.md §6): block0, C-MAC, R-MAC and
//! AES-CBC with ISO/IEC 7816-4 (`0x80 00..`) padding. Keys are AES-128 (host key slot v1).
//!
//! Counter convention: every function takes `n`, the C-MAC counter *before* the exchange (the
//! value Query 0x17 reports); the C-MAC uses `n`, the R-MAC and both IVs use `n + 1`.

use aes::cipher::{
    block_padding::Iso7816, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit,
};
use aes::Aes128;
use cmac::{Cmac, Mac};

use crate::frame::{Header, MAC_LEN};
use crate::Error;

/// An AES-128 host key (MAC key or cipher key).
pub type Key128 = [u8; 16];

/// The largest value of the A110's 24-bit C-MAC counter.
pub const COUNTER_MAX: u32 = 0x00FF_FFFF;

/// What a block0 is for (its SUBJECT byte).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Subject {
    /// Command MAC.
    Cmac = 0x00,
    /// Response MAC.
    Rmac = 0x40,
    /// Command encryption IV.
    CommandEncryption = 0x80,
    /// Response encryption IV.
    ResponseEncryption = 0xC0,
}

/// `CTR[2] CTR[1] CTR[0] | SUBJECT | 0x80 | 00 x 11` (A110, 24-bit counter).
pub fn block0(counter: u32, subject: Subject) -> [u8; 16] {
    let c = counter.to_be_bytes();
    let mut b = [0u8; 16];
    b[..3].copy_from_slice(&c[1..]);
    b[3] = subject as u8;
    b[4] = 0x80;
    b
}

/// The counter after `n`, wrapping inside 24 bits.
pub fn next_counter(n: u32) -> u32 {
    n.wrapping_add(1) & COUNTER_MAX
}

/// Full 16-byte AES-CMAC (RFC 4493) over the concatenation of `parts`.
pub fn aes_cmac(key: &Key128, parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn len16(n: usize) -> Result<[u8; 2], Error> {
    u16::try_from(n)
        .map(u16::to_be_bytes)
        .map_err(|_| Error::TooLong { len: n })
}

fn truncate(full: [u8; 16]) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// C-MAC: first 4 bytes of `CMAC(block0(C-MAC, n) || 00 || H || Lc || P)`; `payload` as sent.
pub fn command_mac(
    mac_key: &Key128,
    n: u32,
    header: Header,
    payload: &[u8],
) -> Result<[u8; MAC_LEN], Error> {
    let lc = len16(payload.len())?;
    let b0 = block0(n, Subject::Cmac);
    Ok(truncate(aes_cmac(
        mac_key,
        &[&b0, &[0x00, header.0], &lc, payload],
    )))
}

/// R-MAC: first 4 bytes of `CMAC(block0(R-MAC, n+1) || 80 || H || Lc || P || R || Lr || D)`.
pub fn response_mac(
    mac_key: &Key128,
    n: u32,
    header: Header,
    payload: &[u8],
    r: u8,
    data: &[u8],
) -> Result<[u8; MAC_LEN], Error> {
    let lc = len16(payload.len())?;
    let lr = len16(data.len())?;
    let b0 = block0(next_counter(n), Subject::Rmac);
    Ok(truncate(aes_cmac(
        mac_key,
        &[&b0, &[0x80, header.0], &lc, payload, &[r], &lr, data],
    )))
}

/// Which direction an encryption is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Host to chip (subject 0x80).
    Command,
    /// Chip to host (subject 0xC0).
    Response,
}

/// `IV = AES-ECB(cipher key, block0(subject, n + 1))`.
pub fn iv(cipher_key: &Key128, n: u32, dir: Direction) -> [u8; 16] {
    let subject = match dir {
        Direction::Command => Subject::CommandEncryption,
        Direction::Response => Subject::ResponseEncryption,
    };
    let mut block = block0(next_counter(n), subject).into();
    Aes128::new(cipher_key.into()).encrypt_block(&mut block);
    block.into()
}

/// Length of the ciphertext for `n` plaintext bytes: 1..16 padding bytes are always added.
pub const fn padded_len(n: usize) -> usize {
    (n / 16 + 1) * 16
}

/// Pads `buf[..len]` with `80 00..` and encrypts it in place; returns the ciphertext length.
/// `buf` must hold [`padded_len`]`(len)` bytes.
pub fn encrypt(
    cipher_key: &Key128,
    n: u32,
    dir: Direction,
    buf: &mut [u8],
    len: usize,
) -> Result<usize, Error> {
    let iv = iv(cipher_key, n, dir);
    let enc = cbc::Encryptor::<Aes128>::new(cipher_key.into(), (&iv).into());
    enc.encrypt_padded_mut::<Iso7816>(buf, len)
        .map(|ct| ct.len())
        .map_err(|_| Error::BufferTooSmall)
}

/// Decrypts `buf` in place and strips the `80 00..` padding; returns the plaintext length.
pub fn decrypt(
    cipher_key: &Key128,
    n: u32,
    dir: Direction,
    buf: &mut [u8],
) -> Result<usize, Error> {
    // Whole 16-byte blocks only (a mask, not `is_multiple_of`: that needs Rust 1.87, MSRV is 1.80).
    if buf.is_empty() || buf.len() & 0x0F != 0 {
        return Err(Error::Padding);
    }
    let iv = iv(cipher_key, n, dir);
    let dec = cbc::Decryptor::<Aes128>::new(cipher_key.into(), (&iv).into());
    dec.decrypt_padded_mut::<Iso7816>(buf)
        .map(|pt| pt.len())
        .map_err(|_| Error::Padding)
}
