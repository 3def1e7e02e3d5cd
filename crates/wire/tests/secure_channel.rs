//! The host secure channel (protocol.md §6): the verified vectors of §6.7 byte for byte, AES-CMAC
//! against Project Wycheproof, and the padding rules of the AES-CBC encryption.
#![allow(clippy::unwrap_used)] // a panic is a test failure

use hex_literal::hex;
use proptest::prelude::*;
use sesame_wire::frame::{MAC_LEN, MAX_WRITE};
use sesame_wire::secure::{
    self, aes_cmac, block0, next_counter, padded_len, Direction, Key128, Subject,
};
use sesame_wire::{CommandCode, CommandFrame, Error, Header, Request, ResponseFrame, ZoneOption};

/// §6.7 keys: MAC key 10..1F, cipher key 20..2F.
const MAC_KEY: Key128 = hex!("101112131415161718191A1B1C1D1E1F");
const CIPHER_KEY: Key128 = hex!("202122232425262728292A2B2C2D2E2F");

/// Encodes a command frame (header, payload as sent, C-MAC) with its CRC.
fn command_frame(header: Header, payload: &[u8], cmac: [u8; MAC_LEN]) -> Vec<u8> {
    let frame = CommandFrame {
        header,
        payload,
        cmac: Some(cmac),
    };
    let mut out = [0u8; MAX_WRITE];
    let n = frame.encode(&mut out).unwrap();
    out[..n].to_vec()
}

/// Encodes an OK response frame with data and R-MAC.
fn response_frame(data: &[u8], rmac: [u8; MAC_LEN]) -> Vec<u8> {
    let frame = ResponseFrame {
        r: 0x00,
        data,
        rmac: Some(rmac),
    };
    let mut out = [0u8; 600];
    let n = frame.encode(&mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn block0_layout() {
    // A110: 24-bit counter, subject, 0x80, eleven zero bytes (§6.2).
    assert_eq!(
        block0(5, Subject::Cmac),
        hex!("000005" "00" "80" "0000000000000000000000")
    );
    assert_eq!(
        block0(0x0012_3456, Subject::ResponseEncryption),
        hex!("123456" "C0" "80" "0000000000000000000000")
    );
    assert_eq!(block0(7, Subject::Rmac)[3], 0x40);
    assert_eq!(block0(7, Subject::CommandEncryption)[3], 0x80);
    // The counter stays inside 24 bits.
    assert_eq!(next_counter(5), 6);
    assert_eq!(next_counter(secure::COUNTER_MAX), 0);
}

#[test]
fn echo_with_cmac_and_rmac() {
    let n = 5; // the counter Query 0x17 reports
    let header = Header::protected(CommandCode::ECHO);
    assert_eq!(header.0, 0xE0);
    let payload = hex!("010203");

    let cmac = secure::command_mac(&MAC_KEY, n, header, &payload).unwrap();
    assert_eq!(cmac, hex!("28C6B849"));
    // Same value from the §6.3 input written out by hand: block0 || 00 || H || Lc || P.
    let by_hand = aes_cmac(
        &MAC_KEY,
        &[&block0(n, Subject::Cmac), &hex!("00" "E0" "0003"), &payload],
    );
    assert_eq!(by_hand[..MAC_LEN], cmac);

    let tx = hex!(
        "E0"       // H: C-MAC | R-MAC | host keys | Echo
        "010203"   // payload
        "28C6B849" // C-MAC
        "8C7C"     // CRC over H, payload and C-MAC
    );
    assert_eq!(command_frame(header, &payload, cmac), tx);
    let decoded = CommandFrame::decode(&tx).unwrap();
    assert_eq!(decoded.payload, payload);
    assert_eq!(decoded.cmac, Some(cmac));

    let rmac = secure::response_mac(&MAC_KEY, n, header, &payload, 0x00, &payload).unwrap();
    let rx = hex!(
        "00"       // R: OK
        "0009"     // LEN: 3 data + 4 R-MAC + 2 CRC
        "010203"   // data
        "8F3D502D" // R-MAC
        "C66A"     // CRC
    );
    assert_eq!(rmac, rx[6..10]);
    assert_eq!(response_frame(&payload, rmac), rx);
    let resp = ResponseFrame::decode(&rx, true).unwrap();
    assert_eq!((resp.data, resp.rmac), (&payload[..], Some(rmac)));
}

#[test]
fn random_with_command_and_response_encryption() {
    let n = 6;
    let header = Header::protected(CommandCode::GENERATE_RANDOM);
    assert_eq!(header.0, 0xE2);

    // Command: plaintext 00 14, padded to one block, encrypted with IV(ctr 7, subject 0x80).
    let mut cmd = [0u8; 16];
    let plain_len = Request::GenerateRandom {
        subject: 0,
        len: 20,
    }
    .encode(&mut cmd)
    .unwrap();
    assert_eq!(cmd[..plain_len], hex!("0014"));
    let ct_len = secure::encrypt(&CIPHER_KEY, n, Direction::Command, &mut cmd, plain_len).unwrap();
    assert_eq!(ct_len, 16);
    assert_eq!(cmd, hex!("24F779BE3B1D925ABFBB7DB54FDA999F"));

    let cmac = secure::command_mac(&MAC_KEY, n, header, &cmd).unwrap();
    let tx = hex!(
        "E2"                               // H: protected Generate Random
        "24F779BE3B1D925ABFBB7DB54FDA999F" // encrypted payload (00 14 80 00..)
        "7118519A"                         // C-MAC over the ciphertext
        "64F5"                             // CRC
    );
    assert_eq!(command_frame(header, &cmd, cmac), tx);

    // The chip's side: decrypt the payload and decode the request.
    let mut chip_view = cmd;
    let len = secure::decrypt(&CIPHER_KEY, n, Direction::Command, &mut chip_view).unwrap();
    assert_eq!(
        Request::decode(header.code(), &chip_view[..len]).unwrap(),
        Request::GenerateRandom {
            subject: 0,
            len: 20
        }
    );

    // Response: bytes 00..13, padded to two blocks, IV(ctr 7, subject 0xC0); R-MAC over ciphertext.
    let plain: Vec<u8> = (0u8..20).collect();
    let mut data = [0u8; 32];
    data[..20].copy_from_slice(&plain);
    let ct_len = secure::encrypt(&CIPHER_KEY, n, Direction::Response, &mut data, 20).unwrap();
    assert_eq!(ct_len, padded_len(20));
    let rmac = secure::response_mac(&MAC_KEY, n, header, &cmd, 0x00, &data).unwrap();
    let rx = hex!(
        "00"                               // R: OK
        "0026"                             // LEN: 32 ciphertext + 4 R-MAC + 2 CRC
        "BFEEA525753F3648B0C4BBDD5877095D" // ciphertext block 1
        "FC68EABFF48247B9EB06AE184765E167" // ciphertext block 2
        "3585147B"                         // R-MAC
        "D704"                             // CRC
    );
    assert_eq!(response_frame(&data, rmac), rx);

    let len = secure::decrypt(&CIPHER_KEY, n, Direction::Response, &mut data).unwrap();
    assert_eq!(data[..len], plain[..]);
}

#[test]
fn update_with_cmac_and_rmac() {
    let n = 7;
    let header = Header::protected(CommandCode::UPDATE);
    assert_eq!(header.0, 0xE6);
    let mut payload = [0u8; 16];
    let len = Request::Update {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        data: &hex!("0A0B0C0D0E"),
    }
    .encode(&mut payload)
    .unwrap();
    let payload = &payload[..len];

    let cmac = secure::command_mac(&MAC_KEY, n, header, payload).unwrap();
    let tx = hex!(
        "E6"         // H: protected Update
        "00"         // option
        "01"         // zone 1
        "0000"       // offset 0
        "0A0B0C0D0E" // data
        "FF9F775D"   // C-MAC
        "D63D"       // CRC
    );
    assert_eq!(command_frame(header, payload, cmac), tx);

    // No response data: the chip sends only the R-MAC (§6.5), covering Lr = 0.
    let rmac = secure::response_mac(&MAC_KEY, n, header, payload, 0x00, &[]).unwrap();
    let rx = hex!(
        "00"       // R: OK
        "0006"     // LEN: 4 R-MAC + 2 CRC
        "BE3526A0" // R-MAC
        "6D53"     // CRC
    );
    assert_eq!(response_frame(&[], rmac), rx);
}

#[test]
fn a_wrong_counter_changes_the_macs() {
    // The counter is what makes a replayed frame fail (§6.1).
    let header = Header::protected(CommandCode::ECHO);
    let p = hex!("010203");
    let good = secure::command_mac(&MAC_KEY, 5, header, &p).unwrap();
    assert_ne!(secure::command_mac(&MAC_KEY, 6, header, &p).unwrap(), good);
    let rgood = secure::response_mac(&MAC_KEY, 5, header, &p, 0, &p).unwrap();
    assert_ne!(
        secure::response_mac(&MAC_KEY, 4, header, &p, 0, &p).unwrap(),
        rgood
    );
}

// ---------------------------------------------------------------------------------------------
// Wycheproof AES-CMAC

#[test]
fn wycheproof_aes_cmac() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/wycheproof/aes_cmac_test.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let groups = json["testGroups"].as_array().unwrap();

    // Expected count straight from the file: every test of the AES-128 groups.
    let expected: usize = groups
        .iter()
        .filter(|g| g["keySize"] == 128)
        .map(|g| g["tests"].as_array().unwrap().len())
        .sum();

    let (mut run, mut valid, mut invalid, mut skipped_groups, mut skipped_tests) = (0, 0, 0, 0, 0);
    for group in groups {
        let tests = group["tests"].as_array().unwrap();
        // secure::aes_cmac is AES-128 only (the A110 host keys); other sizes are someone else's.
        if group["keySize"] != 128 {
            skipped_groups += 1;
            skipped_tests += tests.len();
            continue;
        }
        let tag_len = group["tagSize"].as_u64().unwrap() as usize / 8;
        for t in tests {
            let id = &t["tcId"];
            let key: Key128 = hex::decode(t["key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap_or_else(|k: Vec<u8>| panic!("tcId {id}: {}-byte key", k.len()));
            let msg = hex::decode(t["msg"].as_str().unwrap()).unwrap();
            let tag = hex::decode(t["tag"].as_str().unwrap()).unwrap();
            let full = aes_cmac(&key, &[&msg]);
            let matches = full[..tag_len] == tag[..];
            match t["result"].as_str().unwrap() {
                "valid" => {
                    assert!(matches, "tcId {id}: valid tag rejected");
                    valid += 1;
                }
                "invalid" => {
                    assert!(!matches, "tcId {id}: invalid tag accepted");
                    invalid += 1;
                }
                other => panic!("tcId {id}: unexpected result {other}"), // none in this file
            }
            run += 1;
        }
    }
    println!(
        "Wycheproof AES-CMAC: {run} run ({valid} valid, {invalid} invalid), \
         {skipped_groups} groups / {skipped_tests} tests skipped (keySize != 128)"
    );
    assert!(run > 0);
    assert_eq!(run, expected);
    assert_eq!(
        run + skipped_tests,
        json["numberOfTests"].as_u64().unwrap() as usize
    );
    // The file is pinned (SOURCE_COMMIT.txt): 102 AES-128 cases, 21 valid + 81 invalid.
    assert_eq!((run, valid, invalid, skipped_groups), (102, 21, 81, 7));
}

// ---------------------------------------------------------------------------------------------
// Padding and decryption failures

#[test]
fn padding_always_adds_one_to_sixteen_bytes() {
    assert_eq!(padded_len(0), 16); // STSELib encrypts an empty payload into one block
    assert_eq!(padded_len(15), 16);
    assert_eq!(padded_len(16), 32);
    assert_eq!(padded_len(17), 32);
    for n in 0..600 {
        let p = padded_len(n);
        assert_eq!(p % 16, 0);
        assert!((1..=16).contains(&(p - n)), "n = {n}");
    }
}

#[test]
fn encrypt_needs_room_for_the_padding() {
    let mut buf = [0u8; 16];
    assert_eq!(
        secure::encrypt(&CIPHER_KEY, 0, Direction::Command, &mut buf, 16),
        Err(Error::BufferTooSmall)
    );
}

#[test]
fn decrypt_rejects_wrong_lengths() {
    for len in [0, 1, 15, 17, 31, 33] {
        let mut buf = vec![0u8; len];
        assert_eq!(
            secure::decrypt(&CIPHER_KEY, 6, Direction::Response, &mut buf),
            Err(Error::Padding),
            "length {len}"
        );
    }
}

#[test]
fn tampered_ciphertext_never_decrypts_to_the_original() {
    let plain = hex!("0014");
    let mut ct = [0u8; 16];
    secure::encrypt(&CIPHER_KEY, 6, Direction::Command, &mut ct, 2).unwrap();
    for bit in 0..128 {
        let mut buf = ct;
        buf[bit / 8] ^= 1 << (bit % 8);
        match secure::decrypt(&CIPHER_KEY, 6, Direction::Command, &mut buf) {
            Err(e) => assert_eq!(e, Error::Padding),
            Ok(n) => assert_ne!(&buf[..n], &plain[..], "bit {bit}"),
        }
    }
    // Wrong direction or wrong counter means a wrong IV: never the original plaintext.
    for (n, dir) in [(6, Direction::Response), (5, Direction::Command)] {
        let mut buf = ct;
        if let Ok(len) = secure::decrypt(&CIPHER_KEY, n, dir, &mut buf) {
            assert_ne!(&buf[..len], &plain[..]);
        }
    }
}

proptest! {
    #[test]
    fn encrypt_decrypt_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..100),
        n in 0..=secure::COUNTER_MAX,
        response in any::<bool>(),
    ) {
        let dir = if response { Direction::Response } else { Direction::Command };
        let mut buf = vec![0u8; padded_len(data.len())];
        buf[..data.len()].copy_from_slice(&data);
        let ct_len = secure::encrypt(&CIPHER_KEY, n, dir, &mut buf, data.len()).unwrap();
        prop_assert_eq!(ct_len, buf.len());
        let len = secure::decrypt(&CIPHER_KEY, n, dir, &mut buf).unwrap();
        prop_assert_eq!(&buf[..len], &data[..]);
    }

    #[test]
    fn decrypt_never_panics(mut buf in proptest::collection::vec(any::<u8>(), 0..80), n: u32) {
        match secure::decrypt(&CIPHER_KEY, n, Direction::Response, &mut buf) {
            Ok(len) => prop_assert!(len < buf.len()), // at least one padding byte removed
            Err(e) => prop_assert_eq!(e, Error::Padding),
        }
    }
}
