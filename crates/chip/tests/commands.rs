//! Command semantics beyond the published vectors: life cycle, password, keys, envelopes,
//! access-condition changes, the authorization table, and persistence across reopen.
#![allow(clippy::unwrap_used)]

mod common;

use common::{call, chip, chip_with, options, Session, CIPHER_KEY, MAC_KEY, PASSWORD};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_chip::{
    default_command_policy, Chip, ChipConfig, Fab, FileStorage, MemStorage, ZoneSpec,
};
use sesame_wire::resp::{self, command_ac, HostKeySlot, KeySlotRecord, KeyTableHeader, ZoneRecord};
use sesame_wire::{
    Attribute, CommandCode, Curve, KeyGeneration, LifeCycle, PublicKey, QueryTag, Reader, Request,
    Signature, Status, ZoneOption,
};

fn read(zone: u8, offset: u16, len: u16) -> Request<'static> {
    Request::Read {
        option: ZoneOption::NONE,
        zone,
        offset,
        len,
    }
}

fn update(zone: u8, data: &[u8]) -> Request<'_> {
    Request::Update {
        option: ZoneOption::NONE,
        zone,
        offset: 0,
        data,
    }
}

fn gen(slot: u8, usage_limit: u16, curve: Curve) -> Request<'static> {
    Request::GenerateKey(KeyGeneration::Private {
        slot,
        usage_limit,
        mode: 0,
        curve,
    })
}

fn public(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut r = Reader::new(data);
    let pk = PublicKey::read(&mut r).unwrap();
    r.finish().unwrap();
    (pk.x.to_vec(), pk.y.to_vec())
}

fn signature(data: &[u8]) -> Vec<u8> {
    let mut r = Reader::new(data);
    let s = Signature::read(&mut r).unwrap();
    [s.r, s.s].concat()
}

fn verify_key(x: &[u8], y: &[u8]) -> p256::ecdsa::VerifyingKey {
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&[&[4u8][..], x, y].concat()).unwrap()
}

#[test]
fn life_cycle_lock_needs_the_password_and_blocks_writes() {
    let (mut c, _, _) = chip(1);
    let lock = Request::PutAttribute(Attribute::LifeCycle(LifeCycle::OPERATIONAL_LOCKED));
    assert_eq!(
        call(&mut c, &lock).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    let (st, data) = call(&mut c, &Request::VerifyPassword(&PASSWORD));
    assert_eq!((st, data), (Status::OK, vec![1, 3]));
    assert_eq!(call(&mut c, &lock).0, Status::OK);
    assert_eq!(
        call(&mut c, &Request::Query(QueryTag::LIFE_CYCLE)).1,
        vec![0x83]
    );
    // Locked: reads work, writes and signatures do not.
    assert_eq!(call(&mut c, &read(1, 0, 4)).0, Status::OK);
    assert_eq!(
        call(&mut c, &update(1, &[1])).0,
        Status::INVALID_LIFE_CYCLE_STATE
    );
    let sign = Request::GenerateSignature {
        slot: 0,
        digest: &[1; 32],
    };
    assert_eq!(call(&mut c, &sign).0, Status::INVALID_LIFE_CYCLE_STATE);
    // Unlock, then an impossible transition back to BORN.
    let unlock = Request::PutAttribute(Attribute::LifeCycle(LifeCycle::OPERATIONAL));
    assert_eq!(call(&mut c, &unlock).0, Status::OK);
    let born = Request::PutAttribute(Attribute::LifeCycle(LifeCycle::BORN));
    assert_eq!(call(&mut c, &born).0, Status::INVALID_LIFE_CYCLE_STATE);
    let odd = Request::PutAttribute(Attribute::LifeCycle(LifeCycle(0x42)));
    assert_eq!(call(&mut c, &odd).0, Status::VALUE_OUT_OF_RANGE);
    // Terminated is final: only Echo/Query/Reset/Hibernate remain.
    let end = Request::PutAttribute(Attribute::LifeCycle(LifeCycle::TERMINATED));
    assert_eq!(call(&mut c, &end).0, Status::OK);
    assert_eq!(
        call(&mut c, &read(1, 0, 1)).0,
        Status::INVALID_LIFE_CYCLE_STATE
    );
    assert_eq!(call(&mut c, &Request::Echo(&[9])).1, vec![9]);
}

#[test]
fn password_tries_count_down_persist_and_block() {
    let storage = MemStorage::new();
    let mut fab = Fab::new(
        ChipConfig::new([2; 9]),
        Box::new(storage.clone()),
        options(2),
    )
    .unwrap();
    fab.set_password(PASSWORD, 3).unwrap();
    let mut c = fab.finish().unwrap();
    let wrong = [0u8; 16];
    assert_eq!(
        call(&mut c, &Request::VerifyPassword(&wrong)),
        (Status::OK, vec![0, 2])
    );
    // The decremented count survives a reopen (no free retries by cutting power).
    let mut c = Chip::open(Box::new(storage.clone()), options(2)).unwrap();
    assert_eq!(
        call(&mut c, &Request::VerifyPassword(&wrong)),
        (Status::OK, vec![0, 1])
    );
    assert_eq!(
        call(&mut c, &Request::VerifyPassword(&PASSWORD)),
        (Status::OK, vec![1, 3])
    );
    for left in [2, 1, 0] {
        assert_eq!(
            call(&mut c, &Request::VerifyPassword(&wrong)),
            (Status::OK, vec![0, left])
        );
    }
    assert_eq!(
        call(&mut c, &Request::VerifyPassword(&PASSWORD)).0,
        Status::PASSWORD_BLOCKED
    );
    // Delete needs a verified password, which a blocked one can no longer give.
    let del = Request::Delete { tag: 0x09 };
    assert_eq!(call(&mut c, &del).0, Status::ACCESS_CONDITION_NOT_SATISFIED);
}

#[test]
fn delete_password_after_verification() {
    let (mut c, _, _) = chip(3);
    let del = Request::Delete { tag: 0x09 };
    assert_eq!(
        call(&mut c, &Request::Delete { tag: 0x01 }).0,
        Status::VALUE_OUT_OF_RANGE
    );
    assert_eq!(call(&mut c, &del).0, Status::ACCESS_CONDITION_NOT_SATISFIED);
    call(&mut c, &Request::VerifyPassword(&PASSWORD));
    assert_eq!(call(&mut c, &del).0, Status::OK);
    assert_eq!(
        call(&mut c, &Request::VerifyPassword(&PASSWORD)).0,
        Status::ENTRY_NOT_FOUND
    );
    assert_eq!(call(&mut c, &del).0, Status::ENTRY_NOT_FOUND);
}

#[test]
fn slot1_keys_sign_and_regenerate_slot0_does_not() {
    let (mut c, _, pk0) = chip(4);
    assert_eq!(
        call(&mut c, &gen(0, 0xFFFF, Curve::P256)).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    assert_eq!(
        call(&mut c, &gen(5, 0xFFFF, Curve::P256)).0,
        Status::VALUE_OUT_OF_RANGE
    );
    assert_eq!(
        call(&mut c, &gen(1, 0xFFFF, Curve::BrainpoolP256r1)).0,
        Status::VALUE_OUT_OF_RANGE
    );
    let (st, data) = call(&mut c, &gen(1, 0xFFFF, Curve::P256));
    assert_eq!(st, Status::OK);
    let (x, y) = public(&data);
    let digest = [0x42u8; 32];
    let (st, sig) = call(
        &mut c,
        &Request::GenerateSignature {
            slot: 1,
            digest: &digest,
        },
    );
    assert_eq!(st, Status::OK);
    let sig = p256::ecdsa::Signature::from_slice(&signature(&sig)).unwrap();
    verify_key(&x, &y).verify_prehash(&digest, &sig).unwrap();
    // Slot 0's key is still the personalized one and signs too.
    let (_, sig0) = call(
        &mut c,
        &Request::GenerateSignature {
            slot: 0,
            digest: &digest,
        },
    );
    let sig0 = p256::ecdsa::Signature::from_slice(&signature(&sig0)).unwrap();
    verify_key(&pk0.x, &pk0.y)
        .verify_prehash(&digest, &sig0)
        .unwrap();
    // Slot 1 may be regenerated (change right), giving a different key.
    let (st, again) = call(&mut c, &gen(1, 0xFFFF, Curve::P256));
    assert_eq!(st, Status::OK);
    assert_ne!(public(&again).0, x);
    // Digest sizes: 32 and 48 only.
    let bad = Request::GenerateSignature {
        slot: 1,
        digest: &[1; 20],
    };
    assert_eq!(call(&mut c, &bad).0, Status::VALUE_OUT_OF_RANGE);
}

#[test]
fn p384_key_in_slot1_signs_48_byte_digests() {
    let (mut c, _, _) = chip(5);
    let (st, data) = call(&mut c, &gen(1, 0xFFFF, Curve::P384));
    assert_eq!(st, Status::OK);
    let (x, y) = public(&data);
    assert_eq!(x.len(), 48);
    let digest = [7u8; 48];
    let (st, sig) = call(
        &mut c,
        &Request::GenerateSignature {
            slot: 1,
            digest: &digest,
        },
    );
    assert_eq!(st, Status::OK);
    let rs = signature(&sig);
    assert_eq!(rs.len(), 96, "R and S are full width");
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&[&[4u8][..], &x, &y].concat()).unwrap();
    vk.verify_prehash(&digest, &p384::ecdsa::Signature::from_slice(&rs).unwrap())
        .unwrap();
    let (_, table) = call(&mut c, &Request::Query(QueryTag::PRIVATE_KEYS));
    let mut r = Reader::new(&table);
    assert_eq!(KeyTableHeader::read(&mut r).unwrap().count, 3);
    let slots: Vec<KeySlotRecord> = (0..3)
        .map(|_| KeySlotRecord::read(&mut r).unwrap())
        .collect();
    r.finish().unwrap();
    assert_eq!(slots[0].curve, Some(Curve::P256));
    assert_eq!(slots[1].curve, Some(Curve::P384));
    assert!(!slots[2].present);
}

#[test]
fn usage_limit_blocks_the_key() {
    let (mut c, _, _) = chip(6);
    assert_eq!(call(&mut c, &gen(1, 2, Curve::P256)).0, Status::OK);
    let sign = Request::GenerateSignature {
        slot: 1,
        digest: &[3; 32],
    };
    assert_eq!(call(&mut c, &sign).0, Status::OK);
    assert_eq!(call(&mut c, &sign).0, Status::OK);
    assert_eq!(call(&mut c, &sign).0, Status::KEY_BLOCKED);
    assert_eq!(c.inspect().private_keys[1].uses_left, Some(0));
}

#[test]
fn ephemeral_key_is_single_use_and_volatile() {
    let (mut c, _, _) = chip(7);
    let peer = p256::SecretKey::random(&mut rand_core::OsRng);
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&peer.public_key(), false);
    let ecdh = Request::EstablishKey {
        slot: 0xFF,
        peer: PublicKey {
            x: point.x().unwrap(),
            y: point.y().unwrap(),
        },
    };
    assert_eq!(call(&mut c, &ecdh).0, Status::KEY_NOT_FOUND);
    let (st, data) = call(&mut c, &gen(0xFF, 1, Curve::P256));
    assert_eq!(st, Status::OK);
    let (x, y) = public(&data);
    let sign = Request::GenerateSignature {
        slot: 0xFF,
        digest: &[1; 32],
    };
    assert_eq!(call(&mut c, &sign).0, Status::WRONG_MODE_OF_OPERATION);
    let (st, secret) = call(&mut c, &ecdh);
    assert_eq!(st, Status::OK);
    // The host computes the same secret from the chip's public key.
    let chip_pub = p256::PublicKey::from_sec1_bytes(&[&[4u8][..], &x, &y].concat()).unwrap();
    let expected = p256::ecdh::diffie_hellman(peer.to_nonzero_scalar(), chip_pub.as_affine());
    assert_eq!(&secret[..2], &[0, 32]);
    assert_eq!(&secret[2..], expected.raw_secret_bytes().as_slice());
    assert_eq!(call(&mut c, &ecdh).0, Status::KEY_NOT_FOUND, "single use");
    call(&mut c, &gen(0xFF, 1, Curve::P256));
    call(&mut c, &Request::Reset);
    assert_eq!(
        call(&mut c, &ecdh).0,
        Status::KEY_NOT_FOUND,
        "erased on reset"
    );
}

#[test]
fn local_envelopes_wrap_and_unwrap() {
    let (mut c, _, _) = chip(8);
    let genk =
        |slot, key_type| Request::GenerateKey(KeyGeneration::LocalEnvelope { slot, key_type });
    let data = [0x11u8; 32];
    assert_eq!(
        call(
            &mut c,
            &Request::Wrap {
                slot: 0,
                data: &data
            }
        )
        .0,
        Status::KEY_NOT_FOUND
    );
    assert_eq!(call(&mut c, &genk(0, 0)).0, Status::OK);
    assert_eq!(call(&mut c, &genk(1, 1)).0, Status::OK);
    assert_eq!(
        call(&mut c, &genk(0, 0)).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    assert_eq!(call(&mut c, &genk(2, 0)).0, Status::VALUE_OUT_OF_RANGE);
    for slot in [0, 1] {
        let (st, env) = call(&mut c, &Request::Wrap { slot, data: &data });
        assert_eq!(st, Status::OK);
        assert_eq!(env.len(), 40);
        assert_eq!(
            call(
                &mut c,
                &Request::Unwrap {
                    slot,
                    envelope: &env
                }
            ),
            (Status::OK, data.to_vec())
        );
        let mut bad = env.clone();
        bad[5] ^= 1;
        assert_eq!(
            call(
                &mut c,
                &Request::Unwrap {
                    slot,
                    envelope: &bad
                }
            )
            .0,
            Status::INCONSISTENT_COMMAND_DATA
        );
    }
    assert_eq!(
        call(
            &mut c,
            &Request::Wrap {
                slot: 0,
                data: &[1; 12]
            }
        )
        .0,
        Status::VALUE_OUT_OF_RANGE
    );
    let (_, table) = call(&mut c, &Request::Query(QueryTag::LOCAL_ENVELOPE_KEYS));
    assert_eq!(table, vec![2, 0, 1, 16, 1, 1, 32]);
}

#[test]
fn access_condition_changes_only_get_stricter() {
    let (mut c, _, _) = chip(9);
    let mut s = Session::new(0);
    let to_host = Request::Read {
        option: ZoneOption::change_ac(1, false),
        zone: 2,
        offset: 0,
        len: 0,
    };
    assert_eq!(call(&mut c, &to_host).0, Status::OK);
    assert_eq!(
        call(&mut c, &read(2, 0, 4)).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    assert_eq!(s.call(&mut c, &read(2, 0, 4), false, false).0, Status::OK);
    // The change right is gone: even a stricter AC is refused now.
    let never = Request::Read {
        option: ZoneOption::change_ac(7, false),
        zone: 2,
        offset: 0,
        len: 0,
    };
    assert_eq!(
        s.call(&mut c, &never, false, false).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    // Zone 3: update AC host with right kept, then an attempt to loosen it.
    let up = Request::Update {
        option: ZoneOption::change_ac(1, true),
        zone: 3,
        offset: 0,
        data: &[1],
    };
    assert_eq!(call(&mut c, &up).0, Status::OK);
    assert_eq!(
        call(&mut c, &update(3, &[2])).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    let loosen = Request::Update {
        option: ZoneOption::change_ac(0, true),
        zone: 3,
        offset: 0,
        data: &[3],
    };
    assert_eq!(
        s.call(&mut c, &loosen, false, false).0,
        Status::VALUE_OUT_OF_RANGE
    );
    assert_eq!(
        s.call(&mut c, &read(3, 0, 1), false, false).1,
        vec![1],
        "refused change wrote nothing"
    );
    let (_, part) = call(&mut c, &Request::Query(QueryTag::DATA_PARTITION));
    let mut recs = [ZoneRecord {
        index: 0,
        zone_type: 0,
        ac: 0,
        data_len: 0,
        counter: None,
    }; 8];
    assert_eq!(resp::data_partition(&part, &mut recs).unwrap(), 5);
    assert_eq!((recs[2].read_ac(), recs[2].ac & 0x80), (1, 0));
    assert_eq!((recs[3].update_ac(), recs[3].ac & 0x08), (1, 0x08));
    assert_eq!(recs[4].counter, Some(1_000_000));
}

#[test]
fn decrement_writes_data_and_read_returns_counter_first() {
    let (mut c, _, _) = chip(10);
    let dec = Request::Decrement {
        option: ZoneOption::NONE,
        zone: 4,
        offset: 30,
        amount: 5,
        data: &[0xAB, 0xCD],
    };
    assert_eq!(
        call(&mut c, &dec),
        (Status::OK, 999_995u32.to_be_bytes().to_vec())
    );
    let (st, data) = call(&mut c, &read(4, 28, 4));
    assert_eq!(st, Status::OK);
    assert_eq!(
        data,
        [&999_995u32.to_be_bytes()[..], &[0, 0, 0xAB, 0xCD]].concat()
    );
    let past = Request::Decrement {
        option: ZoneOption::NONE,
        zone: 4,
        offset: 31,
        amount: 1,
        data: &[1, 2],
    };
    assert_eq!(call(&mut c, &past).0, Status::BOUNDARY_EXCEEDED);
    let zero = Request::Decrement {
        option: ZoneOption::NONE,
        zone: 4,
        offset: 0,
        amount: 0,
        data: &[],
    };
    assert_eq!(call(&mut c, &zero).0, Status::VALUE_OUT_OF_RANGE);
    assert_eq!(call(&mut c, &update(4, &[1])).0, Status::WRONG_ZONE_TYPE);
    let plain = Request::Decrement {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        amount: 1,
        data: &[],
    };
    assert_eq!(call(&mut c, &plain).0, Status::WRONG_ZONE_TYPE);
    assert_eq!(c.inspect().zones[4].counter, Some(999_995));
}

#[test]
fn command_policy_is_enforced_and_reported() {
    let mut config = ChipConfig::new([3; 9]);
    config.policy = default_command_policy();
    for p in config.policy.iter_mut() {
        match CommandCode(p.code) {
            CommandCode::UPDATE => p.ac = command_ac::HOST,
            CommandCode::WRAP_LOCAL_ENVELOPE => p.ac = command_ac::NEVER,
            CommandCode::GENERATE_KEY => p.ac = command_ac::ADMIN_OR_PASSWORD,
            _ => {}
        }
    }
    let (mut c, _, _) = chip_with(config, 11);
    let mut s = Session::new(0);
    assert_eq!(
        call(&mut c, &update(1, &[1])).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    assert_eq!(s.call(&mut c, &update(1, &[1]), false, false).0, Status::OK);
    assert_eq!(
        call(
            &mut c,
            &Request::Wrap {
                slot: 0,
                data: &[0; 16]
            }
        )
        .0,
        Status::COMMAND_NOT_AUTHORIZED
    );
    assert_eq!(
        call(&mut c, &gen(1, 0xFFFF, Curve::P256)).0,
        Status::ACCESS_CONDITION_NOT_SATISFIED
    );
    call(&mut c, &Request::VerifyPassword(&PASSWORD));
    assert_eq!(call(&mut c, &gen(1, 0xFFFF, Curve::P256)).0, Status::OK);
    let (_, table) = call(&mut c, &Request::Query(QueryTag::COMMAND_AUTHORIZATION));
    let mut r = Reader::new(&table);
    let (_cr, n) = (r.u8().unwrap(), r.u8().unwrap());
    let recs: Vec<_> = (0..n)
        .map(|_| resp::CommandAuthRecord::read(&mut r).unwrap())
        .collect();
    r.finish().unwrap();
    assert_eq!(recs.len(), CommandCode::A110.len());
    let upd = recs.iter().find(|r| r.code == CommandCode::UPDATE).unwrap();
    assert_eq!(upd.ac, command_ac::HOST);
}

#[test]
fn host_keys_replace_only_under_cmac_and_counter_hits_its_end() {
    let (mut c, _, _) = chip(12);
    let new = Request::PutAttribute(Attribute::HostKey {
        mac: &[0xAA; 16],
        cipher: &[0xBB; 16],
    });
    assert_eq!(call(&mut c, &new).0, Status::ACCESS_CONDITION_NOT_SATISFIED);
    let mut s = Session::new(0);
    assert_eq!(s.call(&mut c, &new, false, false).0, Status::OK);
    let (_, hk) = call(&mut c, &Request::Query(QueryTag::HOST_KEY));
    let slot = HostKeySlot::read(&mut Reader::new(&hk)).unwrap();
    assert_eq!(
        (slot.present, slot.counter),
        (true, 1),
        "counter kept, not reset"
    );
    // The old keys no longer work; the new ones do.
    assert_eq!(
        s.call(&mut c, &Request::Echo(&[1]), false, false).0,
        Status::INVALID_CMAC
    );
    let mut s2 = Session {
        mac: [0xAA; 16],
        cipher: [0xBB; 16],
        n: 1,
    };
    assert_eq!(
        s2.call(&mut c, &Request::Echo(&[1]), false, false).0,
        Status::OK
    );

    // A counter at its maximum refuses every C-MAC.
    let storage = MemStorage::new();
    let mut fab = Fab::new(ChipConfig::new([4; 9]), Box::new(storage), options(13)).unwrap();
    fab.set_host_keys(MAC_KEY, CIPHER_KEY).unwrap();
    fab.set_host_counter_for_tests(0xFF_FFFE).unwrap();
    let mut c = fab.finish().unwrap();
    let mut s = Session::new(0xFF_FFFE);
    assert_eq!(
        s.call(&mut c, &Request::Echo(&[1]), false, false).0,
        Status::OK
    );
    let (st, _) = s.call(&mut c, &Request::Echo(&[1]), false, false);
    assert_eq!(st, Status::CMAC_COUNTER_MAX);
    assert_eq!(c.inspect().host_counter, 0xFF_FFFF);
}

#[test]
fn random_bounds_and_state_survives_reopen_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.chip");
    let mut config = ChipConfig::new([5; 9]);
    config.zones = vec![ZoneSpec::plain(300), ZoneSpec::counter(8, 10)];
    let fab = Fab::new(config, Box::new(FileStorage::new(&path)), options(14)).unwrap();
    let mut c = fab.finish().unwrap();
    assert_eq!(
        call(&mut c, &Request::GenerateRandom { subject: 0, len: 0 }).0,
        Status::VALUE_OUT_OF_RANGE
    );
    assert_eq!(
        call(&mut c, &Request::GenerateRandom { subject: 1, len: 8 }).0,
        Status::VALUE_OUT_OF_RANGE
    );
    assert_eq!(
        call(
            &mut c,
            &Request::GenerateRandom {
                subject: 0,
                len: 255
            }
        )
        .1
        .len(),
        255
    );
    assert_eq!(call(&mut c, &update(0, b"persisted")).0, Status::OK);
    let dec = Request::Decrement {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        amount: 4,
        data: &[],
    };
    assert_eq!(call(&mut c, &dec).0, Status::OK);
    drop(c);
    let mut c = Chip::open(Box::new(FileStorage::new(&path)), options(14)).unwrap();
    assert_eq!(call(&mut c, &read(0, 0, 9)).1, b"persisted".to_vec());
    assert_eq!(c.inspect().zones[1].counter, Some(6));
    // A read whose answer cannot fit one frame is refused, not truncated.
    assert_eq!(call(&mut c, &read(0, 0, 300)).0, Status::OK);
    let mut big = ChipConfig::new([6; 9]);
    big.zones = vec![ZoneSpec::plain(600)];
    let (mut c2, _, _) = chip_with(big, 15);
    assert_eq!(
        call(&mut c2, &read(0, 0, 600)).0,
        Status::BUFFER_LENGTH_EXCEEDED
    );
}
