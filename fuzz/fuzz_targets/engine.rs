//! Fuzzes the command engine with sequences of frames against a personalized chip and checks,
//! after every frame, the invariants of `crates/chip/tests/robustness.rs`: the answer is a
//! well-formed frame with a valid CRC (5 bytes if an error), one-way counters never increase,
//! the host C-MAC counter only moves up by one on a C-MAC'd frame, private keys change only by
//! a successful Generate Key, and the stored image reopens with exactly the live state.
//!
//! Input: records `tag(1) len(1) bytes(len + 256 * (tag >> 6))`. `tag % 3` selects how the bytes
//! become a frame: 0 as is, 1 with a valid CRC appended, 2 as `header | payload` with a valid
//! C-MAC for the chip's current counter (payload encrypted if `tag & 4`) and CRC, so the fuzzer
//! reaches the protected paths it could never forge.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sesame_chip::{
    Chip, ChipConfig, ChipOptions, CurveName, Fab, Inspection, MemStorage, ZoneSpec,
};
use sesame_wire::crc16::crc16;
use sesame_wire::secure::{self, Direction};
use sesame_wire::{CommandCode, Header, ResponseFrame, Status};

const MAC_KEY: [u8; 16] = [0x10; 16];
const CIPHER_KEY: [u8; 16] = [0x20; 16];

fn options() -> ChipOptions {
    ChipOptions {
        rng_seed: Some(1),
        ..Default::default()
    }
}

/// The personalized seed image, built once per fuzzing process.
fn seed() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let storage = MemStorage::new();
        let mut config = ChipConfig::new([0xF0, 0, 0, 0, 0, 0, 0, 0, 1]);
        config.zones.push(ZoneSpec {
            read_ac: 1,
            update_ac: 1,
            ..ZoneSpec::plain(32)
        });
        config.zones.push(ZoneSpec::counter(8, 5));
        let mut fab = Fab::new(config, Box::new(storage.clone()), options()).expect("fab");
        fab.generate_key(0, CurveName::P256).expect("key");
        fab.set_host_keys(MAC_KEY, CIPHER_KEY).expect("host keys");
        fab.set_password(*b"sesame-password!", 3).expect("password");
        fab.write_zone(0, 0, &[0x30, 0x82, 0x01, 0x00])
            .expect("zone 0");
        fab.finish().expect("finish");
        storage.image().expect("image")
    })
}

fn open(image: &[u8]) -> (Chip, MemStorage) {
    let storage = MemStorage::new();
    storage.set_image(Some(image.to_vec()));
    let chip = Chip::open(Box::new(storage.clone()), options()).expect("image must reopen");
    (chip, storage)
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc16(&body).to_be_bytes();
    body.extend_from_slice(&crc);
    body
}

fn protected(bytes: &[u8], encrypt: bool, counter: u32) -> Vec<u8> {
    let Some((&h, payload)) = bytes.split_first() else {
        return Vec::new();
    };
    let header = Header(h | Header::CMAC);
    let mut p = payload.to_vec();
    if encrypt {
        let n = p.len();
        p.resize(secure::padded_len(n), 0);
        secure::encrypt(&CIPHER_KEY, counter, Direction::Command, &mut p, n).expect("encrypt");
    }
    let Ok(mac) = secure::command_mac(&MAC_KEY, counter, header, &p) else {
        return Vec::new();
    };
    with_crc([&[header.0], &p[..], &mac[..]].concat())
}

fn keys(i: &Inspection) -> Vec<Option<sesame_chip::PublicKeyBytes>> {
    i.private_keys
        .iter()
        .map(|k| k.public_key.clone())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (mut chip, storage) = open(seed());
    let mut view = chip.inspect();
    let mut image = storage.image().expect("image");
    let mut data = data;
    while let [tag, len, rest @ ..] = data {
        let n = (usize::from(tag >> 6) << 8 | usize::from(*len)).min(rest.len());
        let (bytes, tail) = rest.split_at(n);
        data = tail;
        let frame = match tag % 3 {
            0 => bytes.to_vec(),
            1 => with_crc(bytes.to_vec()),
            _ => protected(bytes, tag & 4 != 0, view.host_counter),
        };

        let rsp = chip.transceive(&frame);
        let r = ResponseFrame::decode(&rsp, false).expect("malformed response");
        assert_eq!(rsp[0] & 0xE0, 0);
        let ok = r.status() == Status::OK;
        assert!(ok || rsp.len() == 5, "error answer with data");

        let after = chip.inspect();
        for (b, a) in view.zones.iter().zip(&after.zones) {
            assert!(a.counter <= b.counter, "one-way counter increased");
        }
        let (hb, ha) = (view.host_counter, after.host_counter);
        assert!(
            ha == hb || (ha == hb + 1 && frame[0] & 0x80 != 0),
            "host counter {hb} -> {ha}"
        );
        if keys(&view) != keys(&after) {
            assert!(
                ok && frame[0] & 0x1F == CommandCode::GENERATE_KEY.0,
                "key changed"
            );
        }
        let now = storage.image().expect("image");
        if now != image {
            let (stored, _) = open(&now);
            assert_eq!(
                format!("{:?}", stored.inspect()),
                format!("{after:?}"),
                "image != state"
            );
            image = now;
        } else {
            assert_eq!(
                format!("{view:?}"),
                format!("{after:?}"),
                "state changed unstored"
            );
        }
        view = after;
    }
});
