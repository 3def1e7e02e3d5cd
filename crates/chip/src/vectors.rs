//! **Tests only** (feature `test-keys`): the chip that reproduces protocol.md §1.7 and §6.7 byte
//! for byte, shared by the chip's and the host driver's conformance tests.

use crate::{Chip, ChipConfig, ChipOptions, CommandPolicy, Fab, MemStorage, ZoneSpec};

/// The sheet's host MAC key (`10 11 .. 1F`).
pub const MAC_KEY: [u8; 16] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F,
];
/// The sheet's host cipher key (`20 21 .. 2F`).
pub const CIPHER_KEY: [u8; 16] = [
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
];
/// Zone 1's content.
pub const ZONE1: [u8; 5] = [0xC0, 0xFF, 0xEE, 0x12, 0x34];

/// Zone 0 certificate filler (`30 82 00 3C`), zone 1 plain holding [`ZONE1`], zone 2 a counter at
/// 1000 with a 4-byte data segment, zone 3 readable only with a host C-MAC; a counting random
/// source (Generate Random answers `00 01 02 ..`, and no key draws from it first); with
/// `host_counter`, the sheet's host keys at that C-MAC counter. Life cycle operational.
pub fn protocol_vector_chip(policy: Vec<CommandPolicy>, host_counter: Option<u32>) -> Chip {
    let mut config = ChipConfig::new([0x02, 0, 0, 0, 0, 0, 0, 0, 0x17]);
    config.zones = vec![
        ZoneSpec::read_only(64),
        ZoneSpec::plain(32),
        ZoneSpec::counter(4, 1000),
        ZoneSpec {
            read_ac: 1,
            ..ZoneSpec::plain(16)
        },
    ];
    config.policy = policy;
    let options = ChipOptions {
        counting_rng: true,
        ..Default::default()
    };
    // In-memory personalization of a fixed layout cannot fail; a failure is a bug in the test
    // fixture itself, so it is reported loudly.
    let build = || -> Result<Chip, crate::PersoError> {
        let mut fab = Fab::new(config, Box::new(MemStorage::new()), options)?;
        fab.write_zone(0, 0, &[0x30, 0x82, 0x00, 0x3C])?;
        fab.write_zone(1, 0, &ZONE1)?;
        if let Some(n) = host_counter {
            fab.set_host_keys(MAC_KEY, CIPHER_KEY)?;
            fab.set_host_counter_for_tests(n)?;
        }
        fab.finish()
    };
    match build() {
        Ok(chip) => chip,
        Err(e) => panic!("protocol vector chip: {e}"),
    }
}
