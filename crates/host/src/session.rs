//! The host secure channel (protocol.md §6): an open session holds the host keys and the C-MAC
//! counter N; nothing outside this module can read them.
//!
//! Counter rules (§6.1): N is loaded from Query 0x17 and increased by 1 after every protected
//! exchange whose status is a chip status other than 0x16 (invalid C-MAC) and 0x01
//! (communication error). When a protected exchange ends without a trustworthy status (NACK
//! timeout, corrupted frame, bus error), the driver cannot know whether the chip accepted the
//! C-MAC: the session is marked out of step and the counter is read again before the next
//! protected command.

use sesame_wire::frame::MAC_LEN;
use sesame_wire::secure::{self, Direction, Key128};
use sesame_wire::{Header, Status};
use zeroize::Zeroize;

use crate::Error;

/// An open host session: the two host keys and the counter kept in step with the chip.
pub(crate) struct Session {
    mac: Key128,
    cipher: Key128,
    n: u32,
    /// An exchange ended without a chip status: the counter must be read again.
    out_of_step: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.mac.zeroize();
        self.cipher.zeroize();
    }
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("counter", &self.n)
            .field("out_of_step", &self.out_of_step)
            .finish_non_exhaustive()
    }
}

/// Constant-time comparison of two MACs.
fn mac_eq(a: &[u8; MAC_LEN], b: &[u8]) -> bool {
    if b.len() != MAC_LEN {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

impl Session {
    pub fn new(mac: &Key128, cipher: &Key128, counter: u32) -> Self {
        Self {
            mac: *mac,
            cipher: *cipher,
            n: counter,
            out_of_step: false,
        }
    }

    /// The counter the next C-MAC uses.
    pub fn counter(&self) -> u32 {
        self.n
    }

    pub fn is_out_of_step(&self) -> bool {
        self.out_of_step
    }

    /// Loads the counter the chip reported.
    pub fn resync(&mut self, counter: u32) {
        self.n = counter;
        self.out_of_step = false;
    }

    /// New host keys after a successful Put Attribute 0x17 (the counter carries on).
    pub fn replace_keys(&mut self, mac: &Key128, cipher: &Key128) {
        self.mac = *mac;
        self.cipher = *cipher;
    }

    /// Protects a command: encrypts `buf[..len]` in place when `encrypt` (the result is what is
    /// sent) and computes the C-MAC over the payload as sent.
    pub fn seal<E>(
        &self,
        header: Header,
        buf: &mut [u8],
        len: usize,
        encrypt: bool,
    ) -> Result<(usize, [u8; MAC_LEN]), Error<E>> {
        let len = if encrypt {
            secure::encrypt(&self.cipher, self.n, Direction::Command, buf, len)
                .map_err(|_| Error::RequestTooLarge)?
        } else {
            len
        };
        let payload = buf.get(..len).ok_or(Error::RequestTooLarge)?;
        let mac = secure::command_mac(&self.mac, self.n, header, payload)
            .map_err(|_| Error::RequestTooLarge)?;
        Ok((len, mac))
    }

    /// The protected command is about to be sent: out of step until [`Session::settle`] sees
    /// the chip's status.
    pub fn begin(&mut self) {
        self.out_of_step = true;
    }

    /// Applies §6.1 to a status the chip sent; returns the counter the exchange used (for the
    /// R-MAC and the response IV).
    pub fn settle(&mut self, status: Status) -> u32 {
        let used = self.n;
        self.out_of_step = false;
        if status != Status::INVALID_CMAC && status != Status::COMMUNICATION_ERROR {
            self.n = secure::next_counter(self.n);
        }
        used
    }

    /// Checks the R-MAC of an OK response to a command sent with counter `n`.
    pub fn check_rmac(
        &self,
        n: u32,
        header: Header,
        payload: &[u8],
        r: u8,
        data: &[u8],
        rmac: &[u8],
    ) -> bool {
        match secure::response_mac(&self.mac, n, header, payload, r, data) {
            Ok(expected) => mac_eq(&expected, rmac),
            Err(_) => false,
        }
    }

    /// Decrypts response data in place (exchange counter `n`); returns the plaintext length.
    pub fn decrypt_response(&self, n: u32, data: &mut [u8]) -> Result<usize, sesame_wire::Error> {
        secure::decrypt(&self.cipher, n, Direction::Response, data)
    }
}
