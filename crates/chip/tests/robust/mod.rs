//! Shared by the robustness tests: the seed chip, the invariant-checking harness, and proptest
//! strategies for valid commands and frame mutations.

use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;
use sesame_chip::{
    Chip, ChipConfig, CurveName, Fab, Inspection, MemStorage, PublicKeyBytes, ZoneSpec,
};
use sesame_wire::crc16::crc16;
use sesame_wire::resp::{command_ac, ENC_COMMAND, ENC_RESPONSE};
use sesame_wire::*;

use crate::common;

/// Default layout plus zone 5 (host AC) and zone 6 (counter at 5); Generate Random, Wrap and
/// Unwrap need the host channel with encryption, so those paths are reachable too.
pub fn seed_config() -> ChipConfig {
    let mut c = ChipConfig::new([0x0F, 0, 0, 0, 0, 0, 0, 0, 1]);
    c.zones.push(ZoneSpec {
        read_ac: 1,
        update_ac: 1,
        ..ZoneSpec::plain(32)
    });
    c.zones.push(ZoneSpec::counter(8, 5));
    for p in &mut c.policy {
        let (ac, enc) = match CommandCode(p.code) {
            CommandCode::GENERATE_RANDOM => (command_ac::HOST, ENC_COMMAND | ENC_RESPONSE),
            CommandCode::WRAP_LOCAL_ENVELOPE => (command_ac::HOST, ENC_COMMAND),
            CommandCode::UNWRAP_LOCAL_ENVELOPE => (command_ac::HOST, ENC_RESPONSE),
            _ => continue,
        };
        (p.ac, p.encryption) = (ac, enc);
    }
    c
}

/// Like `common::chip_with`, with a hook for fab settings before the chip is finished.
pub fn build(
    config: ChipConfig,
    hook: impl FnOnce(&mut Fab),
) -> (Chip, MemStorage, PublicKeyBytes) {
    let storage = MemStorage::new();
    let mut fab = Fab::new(config, Box::new(storage.clone()), common::options(7)).unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap();
    fab.set_host_keys(common::MAC_KEY, common::CIPHER_KEY)
        .unwrap();
    fab.set_password(common::PASSWORD, 3).unwrap();
    hook(&mut fab);
    (fab.finish().unwrap(), storage, pk)
}

/// The seed image (built once per test binary) and slot 0's public key.
pub fn seed() -> &'static (Vec<u8>, PublicKeyBytes) {
    static SEED: OnceLock<(Vec<u8>, PublicKeyBytes)> = OnceLock::new();
    SEED.get_or_init(|| {
        let (mut chip, storage, pk) = build(seed_config(), |_| {});
        let env = Request::GenerateKey(KeyGeneration::LocalEnvelope {
            slot: 0,
            key_type: 0,
        });
        assert_eq!(common::call(&mut chip, &env).0, Status::OK);
        (storage.image().unwrap(), pk)
    })
}

pub fn reopen(image: Vec<u8>) -> (Chip, MemStorage) {
    let storage = MemStorage::new();
    storage.set_image(Some(image));
    (
        Chip::open(Box::new(storage.clone()), common::options(3)).unwrap(),
        storage,
    )
}

pub fn json(chip: &Chip) -> serde_json::Value {
    serde_json::to_value(chip.inspect()).unwrap()
}

pub fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut f = body.to_vec();
    f.extend_from_slice(&crc16(body).to_be_bytes());
    f
}

/// A chip opened from the seed image plus what was seen after the last frame, so that a step
/// inspects the live chip once and reopens the stored image only when it changed (public keys
/// are derived on every inspection, which is slow in debug builds).
pub struct Harness {
    pub chip: Chip,
    pub storage: MemStorage,
    view: Inspection,
    view_json: serde_json::Value,
    image: Vec<u8>,
}

impl Harness {
    pub fn new() -> Self {
        let (chip, storage) = reopen(seed().0.clone());
        let view = chip.inspect();
        let view_json = serde_json::to_value(&view).unwrap();
        let image = storage.image().unwrap();
        Self {
            chip,
            storage,
            view,
            view_json,
            image,
        }
    }

    /// The frame for `cmd` (a C-MAC'd one needs the chip's current counter).
    pub fn frame(&self, cmd: &Cmd) -> Vec<u8> {
        cmd.frame(&self.view)
    }

    /// Sends one frame; checks the answer and every state invariant against the state before.
    pub fn step(&mut self, frame: &[u8]) {
        let rsp = self.chip.transceive(frame);
        // A well-formed frame with a valid CRC; status only in bits 4..0; errors are 5 bytes.
        let r = ResponseFrame::decode(&rsp, false).unwrap_or_else(|e| panic!("{e:?}: {rsp:02X?}"));
        assert_eq!(rsp[0] & 0xE0, 0, "{rsp:02X?}");
        let ok = r.status() == Status::OK;
        assert!(ok || rsp.len() == 5, "error answer with data: {rsp:02X?}");

        let (before, after) = (&self.view, self.chip.inspect());
        for (b, a) in before.zones.iter().zip(&after.zones) {
            assert!(
                a.counter <= b.counter,
                "one-way counter increased: {frame:02X?}"
            );
        }
        // The host counter moves only forward, by one, and only for a C-MAC'd frame.
        let (hb, ha) = (before.host_counter, after.host_counter);
        assert!(
            ha == hb || (ha == hb + 1 && frame[0] & 0x80 != 0),
            "host counter {hb} -> {ha}"
        );
        let keys = |i: &Inspection| -> Vec<_> {
            i.private_keys
                .iter()
                .map(|k| k.public_key.clone())
                .collect()
        };
        if keys(before) != keys(&after) {
            assert!(
                ok && frame[0] & 0x1F == CommandCode::GENERATE_KEY.0,
                "key changed: {frame:02X?}"
            );
        }
        // The stored image reopens and holds exactly the state the chip runs on; an image
        // that did not change must mean a state that did not change.
        let after_json = serde_json::to_value(&after).unwrap();
        let image = self.storage.image().unwrap();
        if image != self.image {
            let (stored, _) = reopen(image.clone());
            assert_eq!(
                json(&stored),
                after_json,
                "image and live state differ after {frame:02X?}"
            );
            self.image = image;
        } else {
            assert_eq!(
                self.view_json, after_json,
                "state changed unstored by {frame:02X?}"
            );
        }
        (self.view, self.view_json) = (after, after_json);
    }
}
/// A command as plaintext payload; the frame is built at send time (the C-MAC needs the
/// chip's current counter).
#[derive(Clone, Debug)]
pub struct Cmd {
    code: CommandCode,
    payload: Vec<u8>,
    protect: bool,
}

pub fn enc(req: Request<'_>) -> Cmd {
    let mut buf = vec![0u8; 600];
    let n = req.encode(&mut buf).unwrap();
    buf.truncate(n);
    Cmd {
        code: req.code(),
        payload: buf,
        protect: false,
    }
}

impl Cmd {
    /// The frame from the raw payload (never re-decoded: wild values must reach the chip).
    pub fn frame(&self, i: &Inspection) -> Vec<u8> {
        if !self.protect {
            return with_crc(&[&[self.code.0], &self.payload[..]].concat());
        }
        let enc = i
            .command_policy
            .iter()
            .any(|p| p.code == self.code.0 && p.encryption & ENC_COMMAND != 0);
        let mut p = self.payload.clone();
        if enc {
            let n = p.len();
            p.resize(secure::padded_len(n), 0);
            secure::encrypt(
                &common::CIPHER_KEY,
                i.host_counter,
                secure::Direction::Command,
                &mut p,
                n,
            )
            .unwrap();
        }
        let h = Header::protected(self.code);
        let mac = secure::command_mac(&common::MAC_KEY, i.host_counter, h, &p).unwrap();
        with_crc(&[&[h.0], &p[..], &mac[..]].concat())
    }
}

pub fn curve() -> impl Strategy<Value = Curve> {
    prop_oneof![4 => Just(Curve::P256), 1 => Just(Curve::P384), 1 => Just(Curve::BrainpoolP256r1)]
}

/// Valid commands of every kind, most with plausible and some with wild parameters.
pub fn cmd() -> impl Strategy<Value = Cmd> {
    let bytes = |n: usize| vec(any::<u8>(), 0..n);
    let zone = prop_oneof![0u8..8, any::<u8>()];
    let option = prop_oneof![4 => Just(0u8), 1 => any::<u8>()];
    let req = prop_oneof![
        4 => bytes(80).prop_map(|d| enc(Request::Echo(&d))),
        1 => Just(enc(Request::Reset)),
        2 => (0u8..2, any::<u8>()).prop_map(|(subject, len)| enc(Request::GenerateRandom { subject, len })),
        1 => (0u8..4).prop_map(|wake| enc(Request::Hibernate { wake })),
        3 => prop_oneof![proptest::sample::select(QueryTag::ALL), any::<u8>().prop_map(QueryTag)]
            .prop_map(|t| enc(Request::Query(t))),
        1 => any::<[u8; 2]>().prop_map(|i| enc(Request::PutAttribute(Attribute::I2cParameters(i)))),
        1 => any::<u8>().prop_map(|l| enc(Request::PutAttribute(Attribute::LifeCycle(LifeCycle(l))))),
        1 => any::<[u8; 32]>().prop_map(|k| {
            let (mac, cipher) = (k[..16].try_into().unwrap(), k[16..].try_into().unwrap());
            enc(Request::PutAttribute(Attribute::HostKey { mac: &mac, cipher: &cipher }))
        }),
        4 => (option.clone(), zone.clone(), 0u16..300, 0u16..300)
            .prop_map(|(o, zone, offset, len)| enc(Request::Read { option: ZoneOption(o), zone, offset, len })),
        4 => (option.clone(), zone.clone(), 0u16..300, bytes(80))
            .prop_map(|(o, zone, offset, d)| enc(Request::Update { option: ZoneOption(o), zone, offset, data: &d })),
        3 => (option, zone, 0u16..40, prop_oneof![0u32..8, any::<u32>()], bytes(16)).prop_map(
            |(o, zone, offset, amount, d)| {
                enc(Request::Decrement { option: ZoneOption(o), zone, offset, amount, data: &d })
            }
        ),
        1 => (prop_oneof![Just(1u8), Just(0xFF), any::<u8>()], any::<u16>(), prop_oneof![Just(0u16), any::<u16>()], curve())
            .prop_map(|(slot, usage_limit, mode, curve)| {
                enc(Request::GenerateKey(KeyGeneration::Private { slot, usage_limit, mode, curve }))
            }),
        1 => (0u8..3, 0u8..3).prop_map(|(slot, key_type)| {
            enc(Request::GenerateKey(KeyGeneration::LocalEnvelope { slot, key_type }))
        }),
        2 => (0u8..3, prop_oneof![Just(32usize), Just(48), 0usize..64])
            .prop_map(|(slot, n)| enc(Request::GenerateSignature { slot, digest: &vec![0xD1; n] })),
        1 => (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(x, rs)| {
            let key = PublicKey { x: &x, y: &x };
            let signature = Signature { r: &rs, s: &rs };
            enc(Request::VerifySignature { curve: Curve::P256, key, signature, digest: &rs })
        }),
        1 => (prop_oneof![Just(0u8), Just(0xFF), any::<u8>()], any::<bool>(), any::<[u8; 32]>()).prop_map(|(slot, own, r)| {
            let pk = &seed().1;
            let (x, y) = if own { (&pk.x[..], &pk.y[..]) } else { (&r[..], &r[..]) };
            enc(Request::EstablishKey { slot, peer: PublicKey { x, y } })
        }),
        1 => (0u8..3, 0usize..8).prop_map(|(slot, n)| enc(Request::Wrap { slot, data: &vec![0xAB; 8 * n] })),
        1 => (0u8..3, bytes(64)).prop_map(|(slot, e)| enc(Request::Unwrap { slot, envelope: &e })),
        1 => any::<bool>().prop_map(|right| {
            let pw = if right { common::PASSWORD } else { [0; 16] };
            enc(Request::VerifyPassword(&pw))
        }),
        1 => prop_oneof![Just(9u8), any::<u8>()].prop_map(|tag| enc(Request::Delete { tag })),
    ];
    (req, any::<bool>()).prop_map(|(c, protect)| Cmd { protect, ..c })
}

#[derive(Clone, Debug)]
pub enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Header(u8),
    Set(usize, u8),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..40).prop_map(Mutation::Extend),
        any::<u8>().prop_map(Mutation::Header),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
    ]
}

/// Mutates the frame's body (without its CRC), then appends a valid CRC or the old one.
pub fn mutate(frame: &[u8], muts: &[Mutation], fix_crc: bool) -> Vec<u8> {
    let (body, crc) = frame.split_at(frame.len() - 2);
    let mut b = body.to_vec();
    for m in muts {
        match m {
            Mutation::Flip(i, bit) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= 1 << bit;
            }
            Mutation::Truncate(n) => b.truncate(n % (b.len() + 1)),
            Mutation::Extend(more) => b.extend_from_slice(more),
            Mutation::Header(h) if !b.is_empty() => b[0] = *h,
            Mutation::Set(i, v) if !b.is_empty() => {
                let i = i % b.len();
                b[i] = *v;
            }
            _ => {}
        }
    }
    if fix_crc {
        return with_crc(&b);
    }
    b.extend_from_slice(crc);
    b
}
