//! The plain-frame vectors of protocol.md §1.7, byte for byte, and the CRC-16/X-25 parameters
//! checked against the reveng CRC catalogue (vectors/crc).
//!
//! Each vector is checked in both directions: encoding the typed request must give the TX bytes,
//! and decoding the TX bytes must give the request back (the chip's view of the same frame).
#![allow(clippy::unwrap_used)] // a panic is a test failure

use hex_literal::hex;
use sesame_wire::crc16::{crc16, X25};
use sesame_wire::frame::MAX_WRITE;
use sesame_wire::{
    CommandFrame, Header, LifeCycle, QueryTag, Request, ResponseFrame, Status, ZoneOption,
};

/// Encodes a plain (unprotected) command frame the way a host would send it.
fn plain_frame(req: &Request<'_>) -> Vec<u8> {
    let mut payload = [0u8; MAX_WRITE];
    let n = req.encode(&mut payload).unwrap();
    let frame = CommandFrame {
        header: Header::plain(req.code()),
        payload: &payload[..n],
        cmac: None,
    };
    let mut out = [0u8; MAX_WRITE];
    let len = frame.encode(&mut out).unwrap();
    out[..len].to_vec()
}

/// Checks one TX vector: host encoding equals the bytes, chip decoding gives the request back.
fn check_tx(req: Request<'_>, tx: &[u8]) {
    assert_eq!(plain_frame(&req), tx, "encoding of {req:?}");
    let frame = CommandFrame::decode(tx).unwrap();
    assert_eq!(frame.header, Header::plain(req.code()));
    assert_eq!(frame.cmac, None);
    assert_eq!(
        Request::decode(frame.header.code(), frame.payload).unwrap(),
        req
    );
}

/// Checks one RX vector: decodes to (status, data) and re-encodes to the same bytes.
fn check_rx(rx: &[u8], status: Status, data: &[u8]) {
    let resp = ResponseFrame::decode(rx, false).unwrap();
    assert_eq!(resp.status(), status);
    assert_eq!(resp.data, data);
    assert_eq!(resp.rmac, None);
    // The first three bytes announce the whole length (how STSELib sizes its second read).
    assert_eq!(ResponseFrame::total_len(rx).unwrap(), rx.len());
    let mut out = [0u8; 600];
    let n = resp.encode(&mut out).unwrap();
    assert_eq!(&out[..n], rx, "re-encoding");
}

#[test]
fn query_life_cycle() {
    let tx = hex!(
        "14"   // H: Query, no flags
        "08"   // tag: life cycle
        "71FE" // CRC, high byte first
    );
    check_tx(Request::Query(QueryTag::LIFE_CYCLE), &tx);

    let rx = hex!(
        "00"   // R: status OK
        "0003" // LEN: 1 data byte + 2 CRC bytes
        "03"   // data: LCS 0x03 = operational
        "3DDC" // CRC over R and data (not LEN)
    );
    check_rx(&rx, Status::OK, &[0x03]);
    assert_eq!(LifeCycle(rx[3]), LifeCycle::OPERATIONAL);
}

#[test]
fn query_product_data() {
    let tx = hex!(
        "14"   // H: Query
        "11"   // tag: product data
        "FCBE" // CRC
    );
    check_tx(Request::Query(QueryTag::PRODUCT_DATA), &tx);
}

#[test]
fn echo() {
    let tx = hex!(
        "00"     // H: Echo
        "010203" // payload
        "A729"   // CRC
    );
    check_tx(Request::Echo(&[1, 2, 3]), &tx);

    let rx = hex!(
        "00"     // R: OK
        "0005"   // LEN: 3 data + 2 CRC
        "010203" // data: the echoed bytes
        "A729"   // CRC (same as the TX one: same bytes covered)
    );
    check_rx(&rx, Status::OK, &[1, 2, 3]);
}

#[test]
fn error_without_data() {
    let rx = hex!(
        "11"   // R: status 0x11, access condition not satisfied
        "0002" // LEN: CRC only
        "F170" // CRC over R alone
    );
    assert_eq!(ResponseFrame::error(Status(0x11)), rx);
    assert_eq!(
        ResponseFrame::error(Status::ACCESS_CONDITION_NOT_SATISFIED),
        rx
    );
    check_rx(&rx, Status::ACCESS_CONDITION_NOT_SATISFIED, &[]);
    // An error response never carries an R-MAC, even when the command asked for one.
    let resp = ResponseFrame::decode(&rx, true).unwrap();
    assert_eq!(resp.rmac, None);
    assert!(resp.data.is_empty());
}

#[test]
fn read_zone() {
    let tx = hex!(
        "05"   // H: Read
        "00"   // option: no AC change
        "01"   // zone 1
        "0000" // offset 0
        "0005" // length 5
        "203A" // CRC
    );
    check_tx(
        Request::Read {
            option: ZoneOption::NONE,
            zone: 1,
            offset: 0,
            len: 5,
        },
        &tx,
    );
}

#[test]
fn decrement_zone() {
    let tx = hex!(
        "04"       // H: Decrement
        "00"       // option
        "02"       // zone 2
        "0000"     // offset 0 in the data segment
        "00000003" // amount 3
        "5566"     // data written with the decrement
        "8E60"     // CRC
    );
    check_tx(
        Request::Decrement {
            option: ZoneOption::NONE,
            zone: 2,
            offset: 0,
            amount: 3,
            data: &[0x55, 0x66],
        },
        &tx,
    );

    let rx = hex!(
        "00"       // R: OK
        "0006"     // LEN: 4 data + 2 CRC
        "000003E5" // new counter = 997
        "55BC"     // CRC
    );
    check_rx(&rx, Status::OK, &hex!("000003E5"));
    assert_eq!(u32::from_be_bytes(rx[3..7].try_into().unwrap()), 997);
}

// ---------------------------------------------------------------------------------------------
// CRC-16/X-25 against the catalogue

/// The catalogue entry for CRC-16/IBM-SDLC (alias X-25), found by name or alias.
fn catalogue_x25() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vectors/crc/crc_catalogue.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let algorithms = json["algorithms"].as_array().unwrap();
    let named = |a: &&serde_json::Value, n: &str| {
        a["name"] == n || a["aliases"].as_array().unwrap().iter().any(|x| x == n)
    };
    let hits: Vec<_> = algorithms
        .iter()
        .filter(|a| named(a, "CRC-16/IBM-SDLC") && named(a, "X-25"))
        .collect();
    assert_eq!(hits.len(), 1, "exactly one catalogue entry for X-25");
    hits[0].clone()
}

/// Parses a catalogue number such as "0x906e".
fn hex_u16(v: &serde_json::Value) -> u16 {
    let s = v.as_str().unwrap();
    u16::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn crc_check_value_matches_catalogue() {
    let entry = catalogue_x25();
    let check = hex_u16(&entry["check"]);
    assert_eq!(crc16(b"123456789"), check);
    assert_eq!(check, 0x906E); // protocol.md §1.4
}

#[test]
fn crc_parameters_match_catalogue() {
    // The crc crate's own constant must be the catalogue's model, field by field.
    let entry = catalogue_x25();
    let alg = X25.algorithm;
    assert_eq!(entry["width"], 16);
    assert_eq!(alg.width, 16);
    assert_eq!(alg.poly, hex_u16(&entry["poly"]));
    assert_eq!(alg.init, hex_u16(&entry["init"]));
    assert_eq!(alg.refin, entry["refin"].as_bool().unwrap());
    assert_eq!(alg.refout, entry["refout"].as_bool().unwrap());
    assert_eq!(alg.xorout, hex_u16(&entry["xorout"]));
    assert_eq!(alg.residue, hex_u16(&entry["residue"]));
}

#[test]
fn crc_residue_property() {
    // reveng's residue is the register after a whole valid codeword, before xorout. A reflected
    // CRC's natural codeword appends the CRC low byte first, so the CRC of `msg || crc_le`
    // is the constant residue ^ xorout (0xF0B8 ^ 0xFFFF = 0x0F47) for every message.
    let entry = catalogue_x25();
    let magic = hex_u16(&entry["residue"]) ^ hex_u16(&entry["xorout"]);
    assert_eq!(magic, 0x0F47);
    let messages: [&[u8]; 6] = [
        b"",
        b"123456789",
        &hex!("1408"),
        &hex!("00010203"),
        &hex!("0400020000000000035566"),
        &[0xFF; 300],
    ];
    for msg in messages {
        let mut codeword = msg.to_vec();
        codeword.extend_from_slice(&crc16(msg).to_le_bytes());
        assert_eq!(crc16(&codeword), magic, "codeword {codeword:02X?}");
    }
    // The wire sends the CRC high byte first (§1.4), so a frame is NOT a catalogue codeword:
    // receivers must recompute and compare, as CommandFrame::decode does.
    let tx = hex!("140871FE");
    assert_ne!(crc16(&tx), magic);
    assert_eq!(crc16(&tx[..2]).to_be_bytes(), tx[2..]);
}

#[test]
fn crc_of_the_vectors_covers_the_right_bytes() {
    // Command CRC covers H and payload; response CRC covers R and data but skips LEN.
    assert_eq!(crc16(&hex!("1408")), 0x71FE);
    assert_eq!(crc16(&hex!("0003")), 0x3DDC);
    assert_eq!(crc16(&hex!("11")), 0xF170);
    assert_eq!(crc16(&hex!("00000003E5")), 0x55BC);
}
