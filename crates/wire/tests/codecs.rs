//! Request and response codecs and frame decoding: round trips for every `Request` variant and
//! every response record, the decode errors a chip must map to statuses, and proptest
//! properties (no panics on arbitrary bytes, frame round trips, CRC catches every single-bit flip).
#![allow(clippy::unwrap_used)] // a panic is a test failure

use hex_literal::hex;
use proptest::prelude::*;
use sesame_wire::cmd::{PASSWORD_LEN, SLOT_EPHEMERAL};
use sesame_wire::frame::{MAX_COMMAND_FRAME, MAX_WRITE};
use sesame_wire::resp::{self, *};
use sesame_wire::*;

static MAC: [u8; 16] = [0x10; 16];
static CIPHER: [u8; 16] = [0x20; 16];
static PASSWORD: [u8; PASSWORD_LEN] = *b"sixteen byte pw!";
static X: [u8; 32] = [0x11; 32];
static Y: [u8; 32] = [0x22; 32];
static R48: [u8; 48] = [0x33; 48];
static S48: [u8; 48] = [0x44; 48];
static DIGEST: [u8; 32] = [0xAB; 32];

/// One sample of every request shape (every query tag and every curve included).
#[rustfmt::skip] // one request per line reads as a table
fn cases() -> Vec<Request<'static>> {
    use Request as R;
    let key = PublicKey { x: &X, y: &Y };
    let (sig, p384) = (Signature { r: &R48, s: &S48 }, PublicKey { x: &R48, y: &S48 });
    let host_key = Attribute::HostKey { mac: &MAC, cipher: &CIPHER };
    let mut v = vec![
        R::Echo(&[1, 2, 3]),
        R::Echo(&[]),
        R::Reset,
        R::GenerateRandom { subject: 0, len: 255 },
        R::Hibernate { wake: 2 },
        R::PutAttribute(Attribute::LifeCycle(LifeCycle::OPERATIONAL_LOCKED)),
        R::PutAttribute(Attribute::I2cParameters([0x40, 0x05])),
        R::PutAttribute(host_key),
        R::Read { option: ZoneOption::change_ac(3, false), zone: 1, offset: 0x102, len: 0x304 },
        R::Update { option: ZoneOption(0x80), zone: 3, offset: 2, data: &DIGEST },
        R::Decrement { option: ZoneOption::NONE, zone: 2, offset: 0, amount: 0x0102_0304, data: &[] },
        R::GenerateKey(KeyGeneration::LocalEnvelope { slot: 1, key_type: 1 }),
        R::GenerateSignature { slot: 0, digest: &DIGEST },
        R::VerifySignature { curve: Curve::P384, key: p384, signature: sig, digest: &R48 },
        R::EstablishKey { slot: SLOT_EPHEMERAL, peer: key },
        R::Wrap { slot: 0, data: &X },
        R::Unwrap { slot: 1, envelope: &R48 },
        R::VerifyPassword(&PASSWORD),
        R::Delete { tag: 0x09 },
    ];
    v.extend(QueryTag::ALL.iter().map(|&t| R::Query(t)));
    v.extend(Curve::ALL.iter().map(|&curve| {
        R::GenerateKey(KeyGeneration::Private { slot: 1, usage_limit: 0xFFFF, mode: 5, curve })
    }));
    v
}

/// The variant's index, and the length of its free-length last field if it has one (such a
/// field takes every remaining byte, so extra bytes join it instead of being trailing bytes).
/// Exhaustive on purpose: a new `Request` variant fails to compile here until it has a case.
fn shape(req: &Request<'_>) -> (usize, Option<usize>) {
    match req {
        Request::Echo(data) => (0, Some(data.len())),
        Request::Reset => (1, None),
        Request::GenerateRandom { .. } => (2, None),
        Request::Hibernate { .. } => (3, None),
        Request::Query(_) => (4, None),
        Request::PutAttribute(_) => (5, None),
        Request::Read { .. } => (6, None),
        Request::Update { data, .. } => (7, Some(data.len())),
        Request::Decrement { data, .. } => (8, Some(data.len())),
        Request::GenerateKey(_) => (9, None),
        Request::GenerateSignature { .. } => (10, None),
        Request::VerifySignature { .. } => (11, None),
        Request::EstablishKey { .. } => (12, None),
        Request::Wrap { data, .. } => (13, Some(data.len())),
        Request::Unwrap { envelope, .. } => (14, Some(envelope.len())),
        Request::VerifyPassword(_) => (15, None),
        Request::Delete { .. } => (16, None),
    }
}

fn encode(req: &Request<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_WRITE];
    let n = req.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn every_request_variant_round_trips() {
    let mut seen = [false; 17];
    for req in cases() {
        seen[shape(&req).0] = true;
        assert_eq!(Request::decode(req.code(), &encode(&req)), Ok(req));
    }
    assert!(seen.iter().all(|&s| s), "a variant has no sample: {seen:?}");
}

#[test]
fn truncated_and_trailing_payloads() {
    for req in cases() {
        let bytes = encode(&req);
        let tail = shape(&req).1;
        // Every prefix that cuts into the fixed fields is Truncated; cutting the tail is fine.
        let fixed_len = bytes.len() - tail.unwrap_or(0);
        for k in 0..bytes.len() {
            let decoded = Request::decode(req.code(), &bytes[..k]);
            if k < fixed_len {
                let truncated = matches!(decoded, Err(Error::Truncated { at }) if at <= k);
                assert!(truncated, "{req:?} prefix {k}: {decoded:?}");
            } else {
                assert!(decoded.is_ok(), "{req:?} prefix {k}: {decoded:?}");
            }
        }
        // A free-length tail absorbs an extra byte; a fixed layout must reject it.
        let mut longer = bytes.clone();
        longer.push(0xAA);
        let decoded = Request::decode(req.code(), &longer);
        match tail {
            Some(_) => assert!(decoded.is_ok(), "{req:?}: {decoded:?}"),
            None => assert_eq!(decoded, Err(Error::TrailingBytes { at: bytes.len() })),
        }
    }
}

#[test]
fn unknown_tags_curves_and_values() {
    use CommandCode as C;
    use Error::*;
    let d = Request::decode;
    assert_eq!(d(C::QUERY, &[0x99]), Err(UnknownTag { at: 0 }));
    assert_eq!(d(C::QUERY, &[0x48]), Err(UnknownTag { at: 0 })); // an A120-only table
    assert_eq!(d(C::PUT_ATTRIBUTE, &[0xEE, 0]), Err(UnknownTag { at: 0 }));
    assert_eq!(d(C::PUT_ATTRIBUTE, &[1; 17]), Err(UnknownTag { at: 0 })); // admin key: not implemented
    assert_eq!(d(C::GENERATE_KEY, &[0x42, 1, 0]), Err(UnknownTag { at: 0 }));

    // Ed448's OID (2B 65 71) is well formed but names no STSAFE curve.
    let gen = hex!("13" "01" "FFFF" "0000" "0003" "2B6571");
    assert_eq!(d(C::GENERATE_KEY, &gen), Err(UnknownCurve { at: 6 }));
    let verify = hex!("00" "0002" "0102");
    assert_eq!(d(C::VERIFY_SIGNATURE, &verify), Err(UnknownCurve { at: 1 }));

    // Verify Signature's subject must be 0; a public key must start with 04 (uncompressed).
    let verify = cases()
        .into_iter()
        .find(|r| r.code() == C::VERIFY_SIGNATURE);
    let mut bad_subject = encode(&verify.unwrap());
    bad_subject[0] = 0x01;
    assert_eq!(
        d(C::VERIFY_SIGNATURE, &bad_subject),
        Err(InvalidValue { at: 0 })
    );
    let compressed = hex!("FF" "02" "0001" "00");
    assert_eq!(
        d(C::ESTABLISH_KEY, &compressed),
        Err(InvalidValue { at: 1 })
    );
}

#[test]
fn unsupported_command_codes() {
    let increment = Request::decode(CommandCode(0x07), &[]);
    assert_eq!(increment, Err(Error::UnsupportedCommand { code: 0x07 }));
    // Every 5-bit code outside the A110 set (Start Session included: no host library uses it).
    for code in (0..=0x1F).map(CommandCode) {
        let result = Request::decode(code, &[0u8; 40]);
        let unsupported = result == Err(Error::UnsupportedCommand { code: code.0 });
        assert_eq!(unsupported, !CommandCode::A110.contains(&code), "{code:?}");
    }
}

#[test]
fn command_frame_errors() {
    use Error::*;
    let (expected, found) = (0x71FE, 0x71FF);
    assert_eq!(
        CommandFrame::decode(&hex!("140871FF")),
        Err(Crc { expected, found })
    );
    for short in [&[][..], &[0x14], &[0x14, 0x08]] {
        assert_eq!(
            CommandFrame::decode(short),
            Err(Truncated { at: short.len() })
        );
    }
    assert_eq!(
        CommandFrame::decode(&[0; MAX_WRITE + 1]),
        Err(TooLong { len: 510 })
    );
    // The largest frame, header + 506 payload bytes + CRC = 509 bytes, is accepted ...
    let big = [0x5A; MAX_COMMAND_FRAME];
    let header = Header::plain(CommandCode::ECHO);
    let mut frame = CommandFrame {
        header,
        payload: &big[1..],
        cmac: None,
    };
    let mut out = [0u8; 600];
    let n = frame.encode(&mut out).unwrap();
    assert_eq!(n, MAX_WRITE);
    assert_eq!(CommandFrame::decode(&out[..n]), Ok(frame));
    // ... and one more byte is refused by the encoder.
    frame.payload = &big;
    assert_eq!(frame.encode(&mut out), Err(TooLong { len: 508 }));
    // A C-MAC flag with fewer than 4 bytes after the header.
    let mut short_mac = vec![0x80, 0x01];
    short_mac.extend_from_slice(&crc16::crc16(&short_mac).to_be_bytes());
    assert!(matches!(
        CommandFrame::decode(&short_mac),
        Err(Truncated { .. })
    ));
}

#[test]
fn response_frame_errors() {
    use Error::*;
    let echo = hex!("00" "0005" "010203" "A729");
    let decode = ResponseFrame::decode;
    assert_eq!(
        decode(&hex!("00" "0001" "00"), false),
        Err(BadLength { at: 1 })
    );
    assert_eq!(decode(&echo[..7], false), Err(Truncated { at: 7 }));
    let longer = [&echo[..], &[0]].concat();
    assert_eq!(decode(&longer, false), Err(TrailingBytes { at: 8 }));
    // An OK response too short to hold the R-MAC the command asked for.
    assert_eq!(decode(&echo, true), Err(Truncated { at: 6 }));
    let data = [0u8; 507];
    let frame = ResponseFrame {
        r: 0,
        data: &data,
        rmac: None,
    };
    assert_eq!(frame.encode(&mut [0u8; 600]), Err(TooLong { len: 508 }));
    // STSELib reads the status from bits 4..0; bit 6 (R-MAC marker on some chips) is ignored.
    let error_with_bit6 = decode(&hex!("51 0002 B374"), false).unwrap();
    assert_eq!(error_with_bit6.status(), Status(0x11));
}

// ---------------------------------------------------------------------------------------------
// Response records

/// Reads a record that must use every byte of `bytes`, and writes it back to the same bytes.
fn record<T: std::fmt::Debug>(
    bytes: &[u8],
    read: impl Fn(&mut Reader<'_>) -> Result<T, Error>,
    write: impl Fn(&T, &mut Writer<'_>),
) -> T {
    let mut r = Reader::new(bytes);
    let v = read(&mut r).unwrap();
    r.finish().unwrap();
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf);
    write(&v, &mut w);
    let n = w.finish().unwrap();
    assert_eq!(&buf[..n], bytes, "{v:?}");
    v
}

#[test]
#[rustfmt::skip] // bytes and expected fields side by side
fn response_records_round_trip() {
    let (zr, zw) = (ZoneRecord::read, ZoneRecord::write);
    let z = record(&hex!("01 00 13 0400"), zr, zw);
    assert_eq!((z.index, z.zone_type, z.ac, z.data_len, z.counter), (1, ZONE_PLAIN, 0x13, 0x400, None));
    assert_eq!((z.read_ac(), z.update_ac()), (1, 3));
    let z = record(&hex!("02 01 91 0040 000003E8"), zr, zw);
    assert_eq!((z.zone_type, z.data_len, z.counter), (ZONE_COUNTER, 0x40, Some(1000)));

    let (kr, kw) = (KeySlotRecord::read, KeySlotRecord::write);
    let k = record(&hex!("00 01 0000 0008 2A8648CE3D030107"), kr, kw);
    assert_eq!((k.slot, k.present, k.mode, k.curve), (0, true, 0, Some(Curve::P256)));
    let k = record(&hex!("01 00 8005"), kr, kw);
    assert_eq!((k.slot, k.present, k.mode, k.curve), (1, false, 0x8005, None));
    let h = record(&hex!("02 00 FFFF"), KeyTableHeader::read, KeyTableHeader::write);
    assert_eq!((h.count, h.change_right, h.global_usage_limit), (2, 0, 0xFFFF));

    let h = record(&hex!("01 000005"), HostKeySlot::read, HostKeySlot::write);
    assert_eq!(h, HostKeySlot { present: true, counter: 5 });

    let a = record(&hex!("05 03 03"), CommandAuthRecord::read, CommandAuthRecord::write);
    assert_eq!((a.code, a.ac, a.encryption), (CommandCode::READ, command_ac::HOST, ENC_COMMAND | ENC_RESPONSE));
    // A120 records carry an extended code after 1F; it is skipped on reading.
    let a = CommandAuthRecord::read(&mut Reader::new(&hex!("1F 0E 03 00"))).unwrap();
    assert_eq!((a.code, a.ac), (CommandCode::EXTENDED_PREFIX, command_ac::HOST));

    let p = record(&hex!("01 03"), PasswordResult::read, PasswordResult::write);
    assert_eq!(p, PasswordResult { ok: true, remaining: 3 });

    let (er, ew) = (EnvelopeSlotRecord::read, EnvelopeSlotRecord::write);
    assert_eq!(record(&hex!("00 01 10"), er, ew), EnvelopeSlotRecord { slot: 0, key_len: Some(16) });
    assert_eq!(record(&hex!("01 00"), er, ew), EnvelopeSlotRecord { slot: 1, key_len: None });
}

#[test]
fn i2c_parameters_round_trip() {
    let default = I2cParameters::from_bytes([0x40, 0x00]);
    assert_eq!((default.address, default.locked), (0x20, false));
    // Every byte pair with bit 0 of byte 0 clear (it is always 0: `address << 1`).
    for b0 in (0..=0xFFu8).step_by(2) {
        for b1 in 0..=0xFF {
            assert_eq!(I2cParameters::from_bytes([b0, b1]).to_bytes(), [b0, b1]);
        }
    }
}

#[test]
fn partition_and_product_data() {
    let answer = hex!("02" "01 00 13 0400" "02 01 91 0040 000003E8");
    let blank = ZoneRecord::read(&mut Reader::new(&[0; 5])).unwrap();
    let mut out = [blank; 4];
    assert_eq!(resp::data_partition(&answer, &mut out), Ok(2));
    assert_eq!(out[1].counter, Some(1000));
    assert_eq!(
        resp::data_partition(&answer, &mut out[..1]),
        Err(Error::BufferTooSmall)
    );
    let mut extra = answer.to_vec();
    extra.push(0);
    assert!(matches!(
        resp::data_partition(&extra, &mut out),
        Err(Error::TrailingBytes { .. })
    ));

    let tlvs = hex!("01 03 004601" "03 02 01FB" "05 02");
    let items: Vec<_> = resp::product_data(&tlvs).collect();
    assert_eq!(items.len(), 3); // the third is cut short: one error, then the iterator stops
    let mask = items[0].unwrap();
    assert_eq!(
        (mask.tag, mask.value),
        (product_tag::MASK_ID, &hex!("004601")[..])
    );
    assert_eq!(items[1].unwrap().value, hex!("01FB"));
    assert!(items[2].is_err());
}

#[test]
fn chip_model_from_mask_id() {
    assert_eq!(chip_model(&[0x00, 0x46, 0x01]), Some(ChipModel::A110));
    assert_eq!(chip_model(&[0x00, 0x60, 0x00]), Some(ChipModel::A120));
    assert_eq!(chip_model(&[0x00, 0x40, 0x00]), Some(ChipModel::A100));
    assert_eq!(chip_model(&[0x00, 0x3F, 0xFF]), None);
    assert_eq!(chip_model(&[0x46, 0x01]), None);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A valid command frame: C-MAC present exactly when header bit 7 says so, within 507 bytes.
fn command_frame() -> impl Strategy<Value = (u8, Vec<u8>, Option<[u8; 4]>)> {
    any::<u8>().prop_flat_map(|h| {
        let mac = h & Header::CMAC != 0;
        let max = MAX_COMMAND_FRAME - 1 - if mac { 4 } else { 0 };
        let cmac = if mac {
            any::<[u8; 4]>().prop_map(Some).boxed()
        } else {
            Just(None).boxed()
        };
        (
            Just(h),
            proptest::collection::vec(any::<u8>(), 0..=max),
            cmac,
        )
    })
}

fn encode_frame(h: u8, payload: &[u8], cmac: Option<[u8; 4]>) -> Vec<u8> {
    let frame = CommandFrame {
        header: Header(h),
        payload,
        cmac,
    };
    let mut out = [0u8; MAX_WRITE];
    let n = frame.encode(&mut out).unwrap();
    out[..n].to_vec()
}

proptest! {
    #[test]
    fn command_frame_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = CommandFrame::decode(&bytes);
    }

    #[test]
    fn response_frame_decode_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        rmac: bool,
    ) {
        let _ = ResponseFrame::decode(&bytes, rmac);
    }

    #[test]
    fn request_decode_never_panics_and_is_canonical(
        code: u8,
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // Whatever decodes must encode back to exactly the same payload.
        if let Ok(req) = Request::decode(CommandCode(code), &payload) {
            prop_assert_eq!(req.code(), CommandCode(code));
            prop_assert_eq!(encode(&req), payload);
        }
    }

    #[test]
    fn command_frames_round_trip((h, payload, cmac) in command_frame()) {
        let bytes = encode_frame(h, &payload, cmac);
        let frame = CommandFrame::decode(&bytes).unwrap();
        prop_assert_eq!(frame.header, Header(h));
        prop_assert_eq!(frame.payload, &payload[..]);
        prop_assert_eq!(frame.cmac, cmac);
    }

    #[test]
    fn any_single_bit_flip_is_a_crc_error((h, payload, cmac) in command_frame(), pick: usize) {
        let mut bytes = encode_frame(h, &payload, cmac);
        let bit = pick % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let result = CommandFrame::decode(&bytes);
        prop_assert!(matches!(result, Err(Error::Crc { .. })), "bit {}: {:?}", bit, result);
    }

    #[test]
    fn response_frames_round_trip_and_reject_bit_flips(
        r: u8,
        data in proptest::collection::vec(any::<u8>(), 0..300),
        rmac: Option<[u8; 4]>,
        pick: usize,
    ) {
        let frame = ResponseFrame { r, data: &data, rmac };
        let mut out = [0u8; 600];
        let n = frame.encode(&mut out).unwrap();
        // An R-MAC is split off only when expected and the status is OK.
        let ok_with_mac = rmac.is_some() && frame.status() == Status::OK;
        if rmac.is_none() || ok_with_mac {
            prop_assert_eq!(ResponseFrame::decode(&out[..n], rmac.is_some()), Ok(frame));
        }
        // A flipped bit in R, data or CRC is a CRC error; in LEN, a length error: never Ok.
        let bit = pick % (n * 8);
        out[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(ResponseFrame::decode(&out[..n], rmac.is_some()).is_err());
    }
}
