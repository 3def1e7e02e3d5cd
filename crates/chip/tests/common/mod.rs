//! A minimal host for chip tests: builds frames with sesame-wire (never with a host driver:
//! the chip is tested against bytes) and personalizes chips in memory.
#![allow(dead_code, clippy::unwrap_used)]

use sesame_chip::{Chip, ChipConfig, ChipOptions, CurveName, Fab, MemStorage, PublicKeyBytes};
use sesame_wire::secure::{self, Direction};
use sesame_wire::{CommandFrame, Header, Request, ResponseFrame, Status};

pub const MAC_KEY: [u8; 16] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F,
];
pub const CIPHER_KEY: [u8; 16] = [
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
];
pub const PASSWORD: [u8; 16] = *b"sesame-password!";

/// Encodes a plain command frame.
pub fn frame(req: &Request<'_>) -> Vec<u8> {
    let mut payload = vec![0u8; 600];
    let n = req.encode(&mut payload).unwrap();
    let f = CommandFrame {
        header: Header::plain(req.code()),
        payload: &payload[..n],
        cmac: None,
    };
    let mut out = vec![0u8; 620];
    let n = f.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

/// A host secure-channel session (protocol.md §6) kept in step with the chip.
#[derive(Clone, Debug)]
pub struct Session {
    pub mac: [u8; 16],
    pub cipher: [u8; 16],
    pub n: u32,
}

impl Session {
    pub fn new(n: u32) -> Self {
        Self {
            mac: MAC_KEY,
            cipher: CIPHER_KEY,
            n,
        }
    }

    /// Builds a protected frame (H = 0xE0 | code); `enc_cmd` encrypts the payload.
    pub fn frame(&self, req: &Request<'_>, enc_cmd: bool) -> Vec<u8> {
        let mut payload = vec![0u8; 640];
        let mut n = req.encode(&mut payload).unwrap();
        if enc_cmd {
            n = secure::encrypt(&self.cipher, self.n, Direction::Command, &mut payload, n).unwrap();
        }
        payload.truncate(n);
        let header = Header::protected(req.code());
        let mac = secure::command_mac(&self.mac, self.n, header, &payload).unwrap();
        let f = CommandFrame {
            header,
            payload: &payload,
            cmac: Some(mac),
        };
        let mut out = vec![0u8; 700];
        let len = f.encode(&mut out).unwrap();
        out.truncate(len);
        out
    }

    /// Checks the R-MAC of a response to `sent`, decrypts if `enc_rsp`, and advances the
    /// counter as STSELib does. Returns (status, plaintext data).
    pub fn open(&mut self, sent: &[u8], rsp: &[u8], enc_rsp: bool) -> (Status, Vec<u8>) {
        let cmd = CommandFrame::decode(sent).unwrap();
        let r = ResponseFrame::decode(rsp, true).unwrap();
        let status = r.status();
        if status != Status::INVALID_CMAC && status != Status::COMMUNICATION_ERROR {
            let n = self.n;
            self.n = secure::next_counter(self.n);
            if status == Status::OK {
                let mac = secure::response_mac(&self.mac, n, cmd.header, cmd.payload, r.r, r.data)
                    .unwrap();
                assert_eq!(Some(mac), r.rmac, "R-MAC mismatch");
                let mut data = r.data.to_vec();
                if enc_rsp && !data.is_empty() {
                    let len =
                        secure::decrypt(&self.cipher, n, Direction::Response, &mut data).unwrap();
                    data.truncate(len);
                }
                return (status, data);
            }
        }
        (status, r.data.to_vec())
    }

    /// Sends a protected command through `chip` and opens the answer.
    pub fn call(
        &mut self,
        chip: &mut Chip,
        req: &Request<'_>,
        enc_cmd: bool,
        enc_rsp: bool,
    ) -> (Status, Vec<u8>) {
        let f = self.frame(req, enc_cmd);
        let rsp = chip.transceive(&f);
        self.open(&f, &rsp, enc_rsp)
    }
}

/// Sends a plain command and decodes the answer.
pub fn call(chip: &mut Chip, req: &Request<'_>) -> (Status, Vec<u8>) {
    let rsp = chip.transceive(&frame(req));
    let r = ResponseFrame::decode(&rsp, false).unwrap();
    (r.status(), r.data.to_vec())
}

/// Options for deterministic tests.
pub fn options(seed: u64) -> ChipOptions {
    ChipOptions {
        rng_seed: Some(seed),
        ..Default::default()
    }
}

/// A personalized chip with the default layout, a P-256 key in slot 0, the host keys above,
/// the password above (3 tries), and zone 0 holding `30 82 ..` filler; life cycle operational.
pub fn chip_with(config: ChipConfig, seed: u64) -> (Chip, MemStorage, PublicKeyBytes) {
    let storage = MemStorage::new();
    let mut fab = Fab::new(config, Box::new(storage.clone()), options(seed)).unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap();
    fab.set_host_keys(MAC_KEY, CIPHER_KEY).unwrap();
    fab.set_password(PASSWORD, 3).unwrap();
    fab.write_zone(0, 0, &[0x30, 0x82, 0x01, 0x00]).unwrap();
    (fab.finish().unwrap(), storage, pk)
}

pub fn chip(seed: u64) -> (Chip, MemStorage, PublicKeyBytes) {
    chip_with(
        ChipConfig::new([0x02, 0, 0, 0, 0, 0, 0, 0, seed as u8]),
        seed,
    )
}
