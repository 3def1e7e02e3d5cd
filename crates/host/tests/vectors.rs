//! The bytes the driver puts on the bus equal protocol.md §1.7 (plain frames) and §6.7 (secure
//! channel), and it reads every response as STSELib does: 5 bytes, then `3 + LEN` from offset 0.
//! A recording I2C wrapper sits between the driver and a chip set up as in
//! `crates/chip/tests/vectors.rs` (counting random source, host keys 10..1F / 20..2F, counter 5).
#![allow(clippy::unwrap_used)]

mod common;

use common::{policy, Recorder, Tx, CIPHER_KEY, MAC_KEY};
use hex_literal::hex;
use sesame_chip::{default_command_policy, Bus, BusDevice, Chip, CommandPolicy};
use sesame_host::{CommandCode, Error, LifeCycle, NoDelay, Status, Stsafe, ZoneAccess};

use sesame_chip::vectors::ZONE1;

fn vector_chip(policy: Vec<CommandPolicy>) -> Chip {
    sesame_chip::vectors::protocol_vector_chip(policy, Some(5))
}

fn driver(
    policy: Vec<CommandPolicy>,
) -> (Stsafe<Recorder<BusDevice>, NoDelay>, Recorder<BusDevice>) {
    let bus = Bus::new();
    bus.attach(vector_chip(policy)).unwrap();
    let rec = Recorder::new(bus.device());
    (Stsafe::new(rec.clone(), NoDelay, 0x20), rec)
}

/// The transactions of one exchange as STSELib makes them.
fn exchange(tx: &[u8], rx: &[u8]) -> Vec<Tx> {
    let mut v = vec![
        Tx::Write(0x20, tx.to_vec()),
        Tx::Read(0x20, rx[..5].to_vec()),
    ];
    if rx.len() > 5 {
        v.push(Tx::Read(0x20, rx.to_vec()));
    }
    v
}

#[test]
fn plain_frames_of_section_1_7() {
    let (mut se, rec) = driver(default_command_policy());
    se.init().unwrap();
    assert_eq!(rec.writes()[0], hex!("14 11 FC BE"), "Query product data");
    assert_eq!(rec.writes()[1][..2], hex!("14 24"), "then Query 0x24");
    rec.take();

    assert_eq!(se.query_life_cycle().unwrap(), LifeCycle::OPERATIONAL);
    assert_eq!(
        rec.take(),
        exchange(&hex!("14 08 71 FE"), &hex!("00 00 03 03 3D DC"))
    );

    let mut out = [0u8; 3];
    se.echo(&[1, 2, 3], &mut out).unwrap();
    assert_eq!(
        rec.take(),
        exchange(&hex!("00 01 02 03 A7 29"), &hex!("00 00 05 01 02 03 A7 29"))
    );

    let mut five = [0u8; 5];
    se.read(1, 0, &mut five).unwrap();
    assert_eq!(five, ZONE1);
    assert_eq!(
        rec.take()[0],
        Tx::Write(0x20, hex!("05 00 01 00 00 00 05 20 3A").to_vec())
    );

    assert_eq!(se.decrement(2, 0, 3, &hex!("55 66")).unwrap(), 997);
    assert_eq!(
        rec.take(),
        exchange(
            &hex!("04 00 02 00 00 00 00 00 03 55 66 8E 60"),
            &hex!("00 00 06 00 00 03 E5 55 BC")
        )
    );

    // Error 0x11 without data: the 5-byte first read is the whole frame.
    let mut four = [0u8; 4];
    assert_eq!(
        se.read(3, 0, &mut four),
        Err(Error::Status(Status::ACCESS_CONDITION_NOT_SATISFIED))
    );
    let log = rec.take();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1], Tx::Read(0x20, hex!("11 00 02 F1 70").to_vec()));
}

#[test]
fn secure_channel_frames_of_section_6_7() {
    // Echo with AC host; Generate Random with AC host and command + response encryption
    // (protocol.md §6.7); Update free in the table, protected by the caller (ZoneAccess::MAC).
    let (mut se, rec) = driver(policy(
        &[CommandCode::ECHO],
        &[CommandCode::GENERATE_RANDOM],
    ));
    se.init().unwrap();
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    assert_eq!(se.session_counter(), Some(5));
    assert_eq!(rec.writes().last().unwrap(), &hex!("14 17 99 88").to_vec());
    rec.take();

    let mut out = [0u8; 3];
    se.echo(&[1, 2, 3], &mut out).unwrap();
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(
        rec.take(),
        exchange(
            &hex!("E0 01 02 03 28 C6 B8 49 8C 7C"),
            &hex!("00 00 09 01 02 03 8F 3D 50 2D C6 6A")
        )
    );

    let mut random = [0u8; 20];
    se.generate_random(&mut random).unwrap();
    assert_eq!(random.to_vec(), (0u8..20).collect::<Vec<_>>());
    assert_eq!(
        rec.take(),
        exchange(
            &hex!("E2 24 F7 79 BE 3B 1D 92 5A BF BB 7D B5 4F DA 99 9F 71 18 51 9A 64 F5"),
            &hex!(
                "00 00 26
                 BF EE A5 25 75 3F 36 48 B0 C4 BB DD 58 77 09 5D
                 FC 68 EA BF F4 82 47 B9 EB 06 AE 18 47 65 E1 67
                 35 85 14 7B D7 04"
            )
        )
    );

    se.update_with(1, 0, &hex!("0A 0B 0C 0D 0E"), ZoneAccess::MAC)
        .unwrap();
    assert_eq!(
        rec.take(),
        exchange(
            &hex!("E6 00 01 00 00 0A 0B 0C 0D 0E FF 9F 77 5D D6 3D"),
            &hex!("00 00 06 BE 35 26 A0 6D 53")
        )
    );
    assert_eq!(se.session_counter(), Some(8));
    assert_eq!(se.query_host_key().unwrap().counter, 8);
}
