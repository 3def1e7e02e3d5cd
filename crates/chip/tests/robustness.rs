//! Robustness of the engine against any bytes: random frames, mutated valid frames (with the CRC
//! recomputed so the engine gets past it) and valid sequences, checking after every frame that
//! the answer is a well-formed frame and that the chip's state invariants hold. Then exact
//! status codes, with no state change, for each frame-level and command-level refusal.
#![allow(clippy::unwrap_used)]

mod common;
mod robust;

use proptest::collection::vec;
use proptest::prelude::*;
use robust::{build, cmd, json, mutate, mutation, reopen, seed, seed_config, with_crc, Harness};
use sesame_chip::{Chip, MemStorage};
use sesame_wire::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 8_000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, with the CRC made valid half of the time.
    #[test]
    fn random_frames(frames in vec((vec(any::<u8>(), 0..600), any::<bool>()), 1..5)) {
        let mut h = Harness::new();
        for (bytes, fix) in frames {
            let f = if fix && !bytes.is_empty() { with_crc(&bytes) } else { bytes };
            h.step(&f);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 9_000, ..ProptestConfig::default() })]

    /// Valid frames (plain or C-MAC'd), then bit flips, truncation, extension, a random header.
    #[test]
    fn mutated_valid_frames(seq in vec((cmd(), vec(mutation(), 0..3), prop::bool::weighted(0.8)), 1..5)) {
        let mut h = Harness::new();
        for (cmd, muts, fix) in seq {
            let f = mutate(&h.frame(&cmd), &muts, fix);
            h.step(&f);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Longer sequences of well-formed commands, so state builds up (keys, counters, AC changes).
    #[test]
    fn valid_sequences(seq in vec(cmd(), 1..8)) {
        let mut h = Harness::new();
        for cmd in seq {
            let f = h.frame(&cmd);
            h.step(&f);
        }
    }
}

// ---- exact refusals: the precise status, a 5-byte answer, and no state change ----

fn assert_refused(chip: &mut Chip, storage: &MemStorage, frame: &[u8], status: Status) {
    let (image, view) = (storage.image(), json(chip));
    let rsp = chip.transceive(frame);
    assert_eq!(rsp, ResponseFrame::error(status), "frame {frame:02X?}");
    assert_eq!(storage.image(), image, "stored image changed");
    assert_eq!(json(chip), view, "state changed");
}

fn read(zone: u8, offset: u16, len: u16) -> Vec<u8> {
    common::frame(&Request::Read {
        option: ZoneOption::NONE,
        zone,
        offset,
        len,
    })
}

fn update(zone: u8, offset: u16, data: &[u8]) -> Vec<u8> {
    common::frame(&Request::Update {
        option: ZoneOption::NONE,
        zone,
        offset,
        data,
    })
}

#[test]
fn frame_level_refusals() {
    let (mut chip, storage) = reopen(seed().0.clone());
    let mut bad_crc = common::frame(&Request::Echo(&[1, 2, 3]));
    *bad_crc.last_mut().unwrap() ^= 0x01;
    assert_refused(&mut chip, &storage, &bad_crc, Status::COMMUNICATION_ERROR);
    for short in [&[][..], &[0x00], &[0x00, 0x01]] {
        assert_refused(&mut chip, &storage, short, Status::COMMUNICATION_ERROR);
    }
    // 509 bytes (507 + CRC) is the largest write accepted; 510 is refused before the CRC.
    let max = common::frame(&Request::Echo(&[0x42; 506]));
    assert_eq!((max.len(), chip.transceive(&max)[0]), (509, 0x00));
    let over = with_crc(&[0u8; 508]);
    assert_refused(&mut chip, &storage, &over, Status::BUFFER_LENGTH_EXCEEDED);
    // Increment (0x07) and Start Session (0x03) are not executed by sesame's A110.
    for code in [0x07, 0x03, 0x1F] {
        assert_refused(
            &mut chip,
            &storage,
            &with_crc(&[code]),
            Status::COMMAND_CODE_NOT_SUPPORTED,
        );
    }
    // Read's payload is 6 bytes: shorter or longer is inconsistent.
    let r = read(1, 0, 4);
    let (body, _) = r.split_at(r.len() - 2);
    assert_refused(
        &mut chip,
        &storage,
        &with_crc(&body[..body.len() - 1]),
        Status::INCONSISTENT_COMMAND_DATA,
    );
    assert_refused(
        &mut chip,
        &storage,
        &with_crc(&[body, &[0]].concat()),
        Status::INCONSISTENT_COMMAND_DATA,
    );
}

#[test]
fn data_partition_refusals() {
    let (mut chip, storage) = reopen(seed().0.clone());
    assert_refused(&mut chip, &storage, &read(7, 0, 1), Status::ENTRY_NOT_FOUND);
    assert_refused(
        &mut chip,
        &storage,
        &update(0xFF, 0, &[1]),
        Status::ENTRY_NOT_FOUND,
    );
    assert_refused(
        &mut chip,
        &storage,
        &read(1, 125, 4),
        Status::BOUNDARY_EXCEEDED,
    );
    assert_refused(
        &mut chip,
        &storage,
        &update(1, 128, &[1]),
        Status::BOUNDARY_EXCEEDED,
    );
    // Zone 0 is never writable; zone 5 needs the host C-MAC.
    assert_refused(
        &mut chip,
        &storage,
        &update(0, 0, &[1]),
        Status::ACCESS_CONDITION_NOT_SATISFIED,
    );
    assert_refused(
        &mut chip,
        &storage,
        &read(5, 0, 1),
        Status::ACCESS_CONDITION_NOT_SATISFIED,
    );
    // Zone 6 counts down from 5: past zero and at zero are both refused.
    let dec = |amount| {
        common::frame(&Request::Decrement {
            option: ZoneOption::NONE,
            zone: 6,
            offset: 0,
            amount,
            data: &[],
        })
    };
    assert_refused(&mut chip, &storage, &dec(6), Status::COUNTER_LIMIT_EXCEEDED);
    assert_eq!(
        common::call(
            &mut chip,
            &Request::Decrement {
                option: ZoneOption::NONE,
                zone: 6,
                offset: 0,
                amount: 5,
                data: &[]
            }
        ),
        (Status::OK, vec![0; 4])
    );
    assert_refused(&mut chip, &storage, &dec(1), Status::COUNTER_LIMIT_EXCEEDED);
}

#[test]
fn bad_cmac_is_refused_and_leaves_the_host_counter() {
    let (mut chip, storage) = reopen(seed().0.clone());
    let echo = Request::Echo(&[1, 2, 3]);
    let mut s = common::Session::new(0);
    let good = s.frame(&echo, false);
    let mut bad = good[..good.len() - 2].to_vec();
    *bad.last_mut().unwrap() ^= 0x80; // last C-MAC byte
    assert_refused(&mut chip, &storage, &with_crc(&bad), Status::INVALID_CMAC);
    assert_eq!(chip.inspect().host_counter, 0);
    // The right C-MAC for the same counter is still accepted.
    assert_eq!(
        s.call(&mut chip, &echo, false, false),
        (Status::OK, vec![1, 2, 3])
    );
    assert_eq!(chip.inspect().host_counter, 1);
}

#[test]
fn key_refusals() {
    let sign = common::frame(&Request::GenerateSignature {
        slot: 1,
        digest: &[1; 32],
    });
    let (mut chip, storage) = reopen(seed().0.clone());
    assert_refused(&mut chip, &storage, &sign, Status::KEY_NOT_FOUND);

    // One use left in slot 0, then none; and a chip whose global limit is already spent.
    let sign0 = common::frame(&Request::GenerateSignature {
        slot: 0,
        digest: &[1; 32],
    });
    let (mut chip, storage, _) = build(seed_config(), |f| {
        f.set_usage_limits(0, 1, sesame_chip::UNLIMITED).unwrap()
    });
    assert_eq!(chip.transceive(&sign0)[0], 0x00);
    assert_eq!(chip.inspect().private_keys[0].uses_left, Some(0));
    assert_refused(&mut chip, &storage, &sign0, Status::KEY_BLOCKED);
    let (mut chip, storage, _) = build(seed_config(), |f| {
        f.set_usage_limits(0, sesame_chip::UNLIMITED, 0).unwrap()
    });
    assert_refused(&mut chip, &storage, &sign0, Status::KEY_BLOCKED);
}

#[test]
fn storage_failure_answers_0x05_and_keeps_the_zone() {
    let (mut chip, storage) = reopen(seed().0.clone());
    assert_eq!(
        common::call(
            &mut chip,
            &Request::Update {
                option: ZoneOption::NONE,
                zone: 1,
                offset: 0,
                data: &[7; 4]
            }
        )
        .0,
        Status::OK
    );
    storage.set_failing(true);
    assert_refused(
        &mut chip,
        &storage,
        &update(1, 0, &[9; 4]),
        Status::UNEXPECTED_ERROR,
    );
    storage.set_failing(false);
    let rsp = chip.transceive(&read(1, 0, 6));
    assert_eq!(
        ResponseFrame::decode(&rsp, false).unwrap().data,
        [7, 7, 7, 7, 0, 0]
    );
}
