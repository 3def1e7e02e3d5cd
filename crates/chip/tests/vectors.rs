//! protocol.md §1.7 (plain frames) and §6.7 (secure channel) byte for byte, through the chip
//! engine (`Chip::transceive`). The chips are personalized so that every published RX byte is
//! reproducible: zone 1 plain, zone 2 a counter at 1000, a host-AC zone for the 0x11 error, the
//! sheet's host keys with the counter brought to 5, and a counting random source.
#![allow(clippy::unwrap_used)]

mod common;

use hex_literal::hex;
use sesame_chip::{default_command_policy, Chip, CommandPolicy};
use sesame_wire::crc16::crc16;
use sesame_wire::resp::{self, command_ac, ChipModel, ENC_COMMAND, ENC_RESPONSE};
use sesame_wire::{CommandCode, QueryTag, Request, ResponseFrame, Status, ZoneOption};

use common::{frame, Session};

/// What zone 1 holds at personalization (read back by the §1.7 Read vector).
use sesame_chip::vectors::ZONE1;

fn vector_chip(policy: Vec<CommandPolicy>, host_keys: bool) -> Chip {
    sesame_chip::vectors::protocol_vector_chip(policy, host_keys.then_some(0))
}

/// `R 00 LEN data CRC` for an OK response without R-MAC (CRC over R and data, §1.4).
fn ok_frame(data: &[u8]) -> Vec<u8> {
    let mut crc_in = vec![0x00];
    crc_in.extend_from_slice(data);
    let mut out = vec![0x00];
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc16(&crc_in).to_be_bytes());
    out
}

#[test]
fn plain_frame_vectors() {
    let mut chip = vector_chip(default_command_policy(), false);

    // Query life-cycle.
    let tx = hex!("14 08 71 FE");
    assert_eq!(frame(&Request::Query(QueryTag::LIFE_CYCLE)), tx);
    assert_eq!(chip.transceive(&tx), hex!("00 00 03 03 3D DC"));

    // Query product data: the sheet gives only TX; the first TLV must classify as an A110.
    let tx = hex!("14 11 FC BE");
    assert_eq!(frame(&Request::Query(QueryTag::PRODUCT_DATA)), tx);
    let rx = chip.transceive(&tx);
    let r = ResponseFrame::decode(&rx, false).unwrap();
    assert_eq!(r.status(), Status::OK);
    let first = resp::product_data(r.data).next().unwrap().unwrap();
    assert_eq!(
        first.tag,
        resp::product_tag::MASK_ID,
        "STSELib needs TLV 01 first"
    );
    assert_eq!(resp::chip_model(first.value), Some(ChipModel::A110));
    // Every TLV parses (no trailing garbage).
    assert!(resp::product_data(r.data).all(|t| t.is_ok()));

    // Echo 01 02 03.
    let tx = hex!("00 01 02 03 A7 29");
    assert_eq!(frame(&Request::Echo(&[1, 2, 3])), tx);
    assert_eq!(chip.transceive(&tx), hex!("00 00 05 01 02 03 A7 29"));

    // Read zone 1, offset 0, len 5: RX is not in the sheet, so it is built from the zone's
    // known content and the sheet's CRC rule.
    let tx = hex!("05 00 01 00 00 00 05 20 3A");
    let read = Request::Read {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        len: 5,
    };
    assert_eq!(frame(&read), tx);
    assert_eq!(chip.transceive(&tx), ok_frame(&ZONE1));

    // Decrement zone 2 by 3 with data 55 66: 1000 - 3 = 997 = 0x3E5.
    let tx = hex!("04 00 02 00 00 00 00 00 03 55 66 8E 60");
    let dec = Request::Decrement {
        option: ZoneOption::NONE,
        zone: 2,
        offset: 0,
        amount: 3,
        data: &[0x55, 0x66],
    };
    assert_eq!(frame(&dec), tx);
    assert_eq!(chip.transceive(&tx), hex!("00 00 06 00 00 03 E5 55 BC"));
    // The data went in with the decrement; Read returns the counter first (§3.6).
    let (st, data) = common::call(
        &mut chip,
        &Request::Read {
            option: ZoneOption::NONE,
            zone: 2,
            offset: 0,
            len: 2,
        },
    );
    assert_eq!(
        (st, data.as_slice()),
        (Status::OK, &hex!("00 00 03 E5 55 66")[..])
    );
}

#[test]
fn error_0x11_from_a_real_access_condition_failure() {
    let mut chip = vector_chip(default_command_policy(), false);
    // Zone 3 has read AC "host": a plain Read has no C-MAC, so the AC is not met.
    let tx = frame(&Request::Read {
        option: ZoneOption::NONE,
        zone: 3,
        offset: 0,
        len: 4,
    });
    assert_eq!(chip.transceive(&tx), hex!("11 00 02 F1 70"));
    assert_eq!(
        ResponseFrame::error(Status::ACCESS_CONDITION_NOT_SATISFIED),
        hex!("11 00 02 F1 70")
    );
}

/// The §6.7 policy: every command free in plain, except Generate Random with AC host and
/// command + response encryption.
fn random_encrypted_policy() -> Vec<CommandPolicy> {
    let mut policy = default_command_policy();
    let p = policy
        .iter_mut()
        .find(|p| p.code == CommandCode::GENERATE_RANDOM.0)
        .unwrap();
    p.ac = command_ac::HOST;
    p.encryption = ENC_COMMAND | ENC_RESPONSE;
    policy
}

#[test]
fn secure_channel_vectors() {
    let mut chip = vector_chip(random_encrypted_policy(), true);

    // Bring the chip's host counter from 0 to 5 with valid protected exchanges, as a host
    // that had already talked to it would have.
    let mut session = Session::new(0);
    for i in 0..5u8 {
        let (st, data) = session.call(&mut chip, &Request::Echo(&[i]), false, false);
        assert_eq!((st, data), (Status::OK, vec![i]));
    }
    assert_eq!(session.n, 5);
    // Query 0x17 reports presence and counter 5 (§6.1: the host loads N from here).
    let (st, data) = common::call(&mut chip, &Request::Query(QueryTag::HOST_KEY));
    assert_eq!(
        (st, data.as_slice()),
        (Status::OK, &hex!("01 00 00 05")[..])
    );

    // Echo 01 02 03, N = 5.
    let tx = hex!("E0 01 02 03 28 C6 B8 49 8C 7C");
    assert_eq!(session.frame(&Request::Echo(&[1, 2, 3]), false), tx);
    let rx = chip.transceive(&tx);
    assert_eq!(rx, hex!("00 00 09 01 02 03 8F 3D 50 2D C6 6A"));
    assert_eq!(session.open(&tx, &rx, false), (Status::OK, vec![1, 2, 3]));

    // Generate Random n = 20, command and response encrypted, N = 6.
    let tx = hex!("E2 24 F7 79 BE 3B 1D 92 5A BF BB 7D B5 4F DA 99 9F 71 18 51 9A 64 F5");
    let random = Request::GenerateRandom {
        subject: 0,
        len: 20,
    };
    assert_eq!(session.frame(&random, true), tx);
    let rx = chip.transceive(&tx);
    assert_eq!(
        rx,
        hex!(
            "00 00 26
             BF EE A5 25 75 3F 36 48 B0 C4 BB DD 58 77 09 5D
             FC 68 EA BF F4 82 47 B9 EB 06 AE 18 47 65 E1 67
             35 85 14 7B D7 04"
        )
    );
    let (st, plain) = session.open(&tx, &rx, true);
    assert_eq!(st, Status::OK);
    assert_eq!(plain, (0u8..20).collect::<Vec<_>>());

    // Update zone 1, offset 0, data 0A..0E, N = 7 (C-MAC + R-MAC, no data back).
    let tx = hex!("E6 00 01 00 00 0A 0B 0C 0D 0E FF 9F 77 5D D6 3D");
    let update = Request::Update {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        data: &hex!("0A 0B 0C 0D 0E"),
    };
    assert_eq!(session.frame(&update, false), tx);
    let rx = chip.transceive(&tx);
    assert_eq!(rx, hex!("00 00 06 BE 35 26 A0 6D 53"));
    assert_eq!(session.open(&tx, &rx, false), (Status::OK, vec![]));

    // The update landed and the chip's counter followed every accepted C-MAC.
    let (st, data) = common::call(
        &mut chip,
        &Request::Read {
            option: ZoneOption::NONE,
            zone: 1,
            offset: 0,
            len: 5,
        },
    );
    assert_eq!(
        (st, data.as_slice()),
        (Status::OK, &hex!("0A 0B 0C 0D 0E")[..])
    );
    let (_, data) = common::call(&mut chip, &Request::Query(QueryTag::HOST_KEY));
    assert_eq!(data, hex!("01 00 00 08"));
}

#[test]
fn encrypted_random_refused_without_host_channel() {
    // The same policy, seen from a host that sends Generate Random in plain: AC host not met.
    let mut chip = vector_chip(random_encrypted_policy(), true);
    let rx = chip.transceive(&frame(&Request::GenerateRandom {
        subject: 0,
        len: 20,
    }));
    assert_eq!(rx, hex!("11 00 02 F1 70"));
}
