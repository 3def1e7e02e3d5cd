//! Wycheproof vectors through the chip's command interface: ECDSA P1363 verification with
//! Verify Signature (0x17) and ECDH with Establish Key (0x18). Every case in each file is sent
//! as a real command frame; the file's exact case count and per-result breakdown are asserted
//! so that a silently shrinking loop cannot pass.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use sesame_chip::{Chip, ChipConfig, CurveName, Fab, MemStorage};
use sesame_wire::{Curve, PublicKey, Request, Signature, Status};
use sha2::{Digest, Sha256, Sha384};

fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../vectors/wycheproof/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// Every test of every group, with its group.
fn cases(doc: &Value) -> impl Iterator<Item = (&Value, &Value)> {
    doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap().iter().map(move |t| (g, t)))
}

/// Per-file tallies: by Wycheproof result, how the chip answered, and any skips with reasons.
#[derive(Default, Debug)]
struct Tally {
    by_result: BTreeMap<String, usize>,
    outcomes: BTreeMap<String, usize>,
    skipped: Vec<(u64, String)>,
}

impl Tally {
    fn count(&mut self, result: &str, outcome: String) {
        *self.by_result.entry(result.to_string()).or_default() += 1;
        *self
            .outcomes
            .entry(format!("{result}: {outcome}"))
            .or_default() += 1;
    }

    fn total(&self) -> usize {
        self.by_result.values().sum()
    }

    /// Prints the counts and asserts the exact number of cases of each result.
    fn check(&self, file: &str, valid: usize, invalid: usize, acceptable: usize) {
        println!("{file}: {} cases {:?}", self.total(), self.by_result);
        for (k, n) in &self.outcomes {
            println!("  {k}: {n}");
        }
        println!("  skipped: {} {:?}", self.skipped.len(), self.skipped);
        let get = |k: &str| self.by_result.get(k).copied().unwrap_or(0);
        assert_eq!(
            (get("valid"), get("invalid"), get("acceptable")),
            (valid, invalid, acceptable),
            "{file}: case counts"
        );
        assert_eq!(
            self.total(),
            valid + invalid + acceptable,
            "{file}: unknown results"
        );
    }
}

fn status_name(s: Status) -> String {
    format!("status 0x{:02X}", s.0)
}

// ---------------------------------------------------------------------------------------------
// ECDSA (P1363: the signature is the raw R || S the host API exchanges, §3.2).

fn ecdsa_file(file: &str, curve: Curve, hash: fn(&[u8]) -> Vec<u8>) -> Tally {
    let doc = load(file);
    let n = curve.coordinate_len();
    // Verify Signature uses no key slot, so one chip (every command free) serves the file.
    let (mut chip, _, _) = common::chip(0x1363);
    let mut tally = Tally::default();
    for (group, test) in cases(&doc) {
        let point = unhex(&group["publicKey"]["uncompressed"]);
        assert_eq!(
            (point.len(), point[0]),
            (1 + 2 * n, 0x04),
            "group key is uncompressed"
        );
        let (x, y) = point[1..].split_at(n);
        let sig = unhex(&test["sig"]);
        // Wrong-size signatures are split in half anyway and sent: the chip must refuse them.
        let (r, s) = sig.split_at(sig.len() / 2);
        let digest = hash(&unhex(&test["msg"]));
        let req = Request::VerifySignature {
            curve,
            key: PublicKey { x, y },
            signature: Signature { r, s },
            digest: &digest,
        };
        let (status, data) = common::call(&mut chip, &req);
        let id = test["tcId"].as_u64().unwrap();
        let result = test["result"].as_str().unwrap();
        // OK answers carry exactly one validity byte, 00 or 01 (§3.7).
        if status == Status::OK {
            assert!(data == [0] || data == [1], "tc {id}: validity {data:02X?}");
        }
        let accepted = status == Status::OK && data == [1];
        match result {
            "valid" => assert!(accepted, "tc {id} valid: {status:?} {data:02X?}"),
            "invalid" => assert!(!accepted, "tc {id} invalid but accepted"),
            // Either answer is allowed; the tally records which.
            _ => {}
        }
        let outcome = match (status, accepted) {
            (Status::OK, true) => "OK 01".to_string(),
            (Status::OK, false) => "OK 00".to_string(),
            (s, _) => status_name(s),
        };
        tally.count(result, outcome);
    }
    tally
}

fn sha256(m: &[u8]) -> Vec<u8> {
    Sha256::digest(m).to_vec()
}

fn sha384(m: &[u8]) -> Vec<u8> {
    Sha384::digest(m).to_vec()
}

#[test]
fn ecdsa_p256_sha256_p1363() {
    let file = "ecdsa_secp256r1_sha256_p1363_test.json";
    ecdsa_file(file, Curve::P256, sha256).check(file, 173, 89, 0);
}

#[test]
fn ecdsa_p384_sha384_p1363() {
    let file = "ecdsa_secp384r1_sha384_p1363_test.json";
    ecdsa_file(file, Curve::P384, sha384).check(file, 193, 87, 0);
}

// ---------------------------------------------------------------------------------------------
// ECDH (ecpoint encoding: the peer key is a bare SEC1 point).

/// A Wycheproof private key as a fixed-width scalar: the files use ASN.1-style integers (a
/// leading 00 when the top bit is set) and sometimes fewer bytes than the curve size.
fn scalar(bytes: &[u8], n: usize) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let trimmed = &bytes[first..];
    if trimmed.len() > n {
        // Too wide for the curve: passed as is so that the import refuses it.
        return trimmed.to_vec();
    }
    let mut out = vec![0u8; n - trimmed.len()];
    out.extend_from_slice(trimmed);
    out
}

/// Decompresses a SEC1 compressed point to `04 || X || Y`, if it is on the curve.
fn decompress(curve: CurveName, point: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    match curve {
        CurveName::P256 => p256::PublicKey::from_sec1_bytes(point)
            .ok()
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
        CurveName::P384 => p384::PublicKey::from_sec1_bytes(point)
            .ok()
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
    }
}

/// How a peer point goes on the wire, which only carries `04 | X | Y`: uncompressed points as
/// they are, compressed ones decompressed host-side when they lie on the curve (else X with
/// Y = 0), and anything else split in two halves after its prefix so that the chip sees (and
/// must refuse) it.
fn peer_coordinates(curve: CurveName, public: &[u8]) -> (Vec<u8>, Vec<u8>, &'static str) {
    let n = curve.coordinate_len();
    let split = |p: &[u8]| {
        let (x, y) = p.split_at(p.len() / 2);
        (x.to_vec(), y.to_vec())
    };
    match public.first() {
        Some(0x04) if public.len() == 1 + 2 * n => {
            let (x, y) = split(&public[1..]);
            (x, y, "uncompressed")
        }
        Some(0x02 | 0x03) if public.len() == 1 + n => match decompress(curve, public) {
            Some(p) => {
                let (x, y) = split(&p[1..]);
                (x, y, "compressed, decompressed by the host")
            }
            // No curve point has this X: sent full width with Y = 0, so that the chip's
            // on-curve check (not a length check) has to refuse it.
            None => (
                public[1..].to_vec(),
                vec![0; n],
                "compressed, off the curve, sent with Y = 0",
            ),
        },
        Some(_) => {
            let (x, y) = split(&public[1..]);
            (x, y, "malformed, sent split")
        }
        None => (Vec::new(), Vec::new(), "empty, sent as empty coordinates"),
    }
}

/// A fresh chip whose slot 0 holds `scalar`, or the fab's refusal.
fn chip_with_key(curve: CurveName, scalar: &[u8], id: u64) -> Option<Chip> {
    let config = ChipConfig::new([0x02, 0, 0, 0, 0, 0, 0, (id >> 8) as u8, id as u8]);
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), common::options(id)).unwrap();
    fab.import_private_key_for_tests(0, curve, scalar).ok()?;
    Some(fab.finish().unwrap())
}

fn ecdh_file(file: &str, curve: CurveName) -> Tally {
    let doc = load(file);
    let n = curve.coordinate_len();
    let mut tally = Tally::default();
    for (_, test) in cases(&doc) {
        let id = test["tcId"].as_u64().unwrap();
        let result = test["result"].as_str().unwrap();
        let key = scalar(&unhex(&test["private"]), n);
        let Some(mut chip) = chip_with_key(curve, &key, id) else {
            // Only an invalid case may carry an unusable private key.
            assert_ne!(
                result, "valid",
                "tc {id}: valid case with a refused private key"
            );
            tally
                .skipped
                .push((id, "private key refused by the fab".into()));
            tally.count(result, "private key refused".into());
            continue;
        };
        let public = unhex(&test["public"]);
        let (x, y, how) = peer_coordinates(curve, &public);
        let req = Request::EstablishKey {
            slot: 0,
            peer: PublicKey { x: &x, y: &y },
        };
        let (status, data) = common::call(&mut chip, &req);
        let shared = unhex(&test["shared"]);
        let mut expected = (n as u16).to_be_bytes().to_vec();
        expected.extend_from_slice(&shared);
        match result {
            "valid" => assert_eq!(
                (status, &data),
                (Status::OK, &expected),
                "tc {id} valid ({how})"
            ),
            // An invalid peer point must be refused outright: a "secret" computed from a point
            // off the curve or on its twist leaks the private key (invalid-curve attack), so an
            // OK answer is wrong whatever its bytes. The chip documents 0x19 for it.
            "invalid" => assert_eq!(
                status,
                Status::INVALID_PUBLIC_KEY,
                "tc {id} invalid ({how})"
            ),
            // Acceptable (a compressed encoding): the chip may refuse, but if it answers, the
            // secret must be the right one.
            _ => assert!(
                status != Status::OK || data == expected,
                "tc {id} acceptable ({how})"
            ),
        }
        let outcome = match status {
            Status::OK => format!("OK, shared secret matches ({how})"),
            s => format!("{} ({how})", status_name(s)),
        };
        tally.count(result, outcome);
    }
    tally
}

#[test]
fn ecdh_p256_ecpoint() {
    let file = "ecdh_secp256r1_ecpoint_test.json";
    let t = ecdh_file(file, CurveName::P256);
    t.check(file, 330, 24, 1);
    assert!(t.skipped.is_empty(), "every private key is importable");
    assert_eq!(t.total(), 355);
}

#[test]
fn ecdh_p384_ecpoint() {
    let file = "ecdh_secp384r1_ecpoint_test.json";
    let t = ecdh_file(file, CurveName::P384);
    t.check(file, 771, 18, 1);
    assert!(t.skipped.is_empty(), "every private key is importable");
    assert_eq!(t.total(), 790);
}

#[test]
fn scalar_normalization() {
    assert_eq!(scalar(&[0x03], 4), [0, 0, 0, 3]);
    assert_eq!(scalar(&[0x00, 0xFF, 0x01, 0x02, 0x03], 4), [0xFF, 1, 2, 3]);
    assert_eq!(
        scalar(&[0x01, 0, 0, 0, 0], 4).len(),
        5,
        "too wide stays too wide"
    );
}
