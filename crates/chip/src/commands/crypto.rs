//! Generate Key, Generate Signature, Verify Signature, Establish Key, Wrap and Unwrap
//! (protocol.md §3.7, §5).
//!
//! sesame choices: a slot number other than 0, 1 (and 0xFF for private keys) is 0x03; an empty
//! slot 0x0A; a slot whose uses (or the chip's global uses) have run out 0x0B; a key whose mode
//! does not allow the operation 0x1C; regenerating a present key without the change right, or
//! an occupied envelope slot, 0x11; a curve other than P-256/P-384 0x03 (the A110's brainpool
//! curves are not implemented); a digest not 32 or 48 bytes long 0x03; a public key not on the
//! curve, or of the wrong size, 0x19; R or S not full width 0x02; Wrap data not a multiple of 8
//! in 16..=480 bytes, or an Unwrap envelope not a multiple of 8 in 24..=488, 0x03; an envelope
//! that fails its integrity check 0x02. A Generate Key mode of 0 (what STSELib sends) means the
//! slot's default: signature and key establishment for slots 0/1 (slot 1 regenerable), key
//! establishment only for 0xFF. A usage limit of 0xFFFF is unlimited; slot 0xFF is always
//! single-use.

use aes_kw::{KekAes128, KekAes256};
use rand_core::RngCore;
use sesame_wire::cmd::SLOT_EPHEMERAL;
use sesame_wire::{Curve, KeyGeneration, PublicKey, Signature, Status, Writer};

use crate::engine::{CmdResult, Ctx};
use crate::keys::{verify_prehash, CryptoError, CurveName, PrivateKey, PublicKeyBytes};
use crate::state::{mode, EnvelopeKey, PrivateSlot, UNLIMITED};

/// Largest Wrap input and Unwrap envelope (protocol.md §1.5).
const MAX_WRAP: usize = 480;

fn crypto_status(e: CryptoError) -> Status {
    match e {
        CryptoError::InvalidPublicKey => Status::INVALID_PUBLIC_KEY,
        CryptoError::BadDigest => Status::VALUE_OUT_OF_RANGE,
    }
}

fn write_public(out: &mut Vec<u8>, pk: &PublicKeyBytes) {
    let mut buf = vec![0u8; 5 + pk.x.len() + pk.y.len()];
    let mut w = Writer::new(&mut buf);
    PublicKey { x: &pk.x, y: &pk.y }.write(&mut w);
    out.extend_from_slice(w.written());
}

fn default_mode(slot: u8) -> u16 {
    match slot {
        SLOT_EPHEMERAL => mode::KEY_ESTABLISHMENT,
        0 => mode::KEY_ESTABLISHMENT | mode::SIGN_EXTERNAL,
        _ => mode::CHANGE_RIGHT | mode::KEY_ESTABLISHMENT | mode::SIGN_EXTERNAL,
    }
}

pub(crate) fn generate_key(ctx: &mut Ctx<'_>, g: KeyGeneration) -> CmdResult {
    match g {
        KeyGeneration::Private {
            slot,
            usage_limit,
            mode: requested,
            curve,
        } => {
            let curve = CurveName::from_wire(curve).ok_or(Status::VALUE_OUT_OF_RANGE)?;
            let mode = if requested == 0 {
                default_mode(slot)
            } else {
                requested
            };
            let key = match slot {
                SLOT_EPHEMERAL => {
                    let key = PrivateKey::generate(curve, ctx.rng);
                    write_public(&mut ctx.out, &key.public());
                    ctx.vol.ephemeral = Some(key);
                    return Ok(());
                }
                0 | 1 => {
                    if let Some(old) = &ctx.nvm.private[slot as usize] {
                        if old.mode & mode::CHANGE_RIGHT == 0 {
                            return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
                        }
                    }
                    PrivateKey::generate(curve, ctx.rng)
                }
                _ => return Err(Status::VALUE_OUT_OF_RANGE),
            };
            write_public(&mut ctx.out, &key.public());
            ctx.nvm.private[slot as usize] = Some(PrivateSlot {
                key,
                mode,
                uses_left: usage_limit,
            });
        }
        KeyGeneration::LocalEnvelope { slot, key_type } => {
            let len = match key_type {
                0 => 16,
                1 => 32,
                _ => return Err(Status::VALUE_OUT_OF_RANGE),
            };
            let s = ctx
                .nvm
                .envelope
                .get_mut(slot as usize)
                .ok_or(Status::VALUE_OUT_OF_RANGE)?;
            if s.is_some() {
                return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
            }
            let mut key = vec![0u8; len];
            ctx.rng.fill_bytes(&mut key);
            *s = Some(EnvelopeKey(key));
        }
    }
    ctx.dirty = true;
    Ok(())
}

/// Takes one use of a static slot (or the single use of the ephemeral one) and returns its key.
fn use_key(ctx: &mut Ctx<'_>, slot: u8, needed: u16) -> Result<PrivateKey, Status> {
    if slot == SLOT_EPHEMERAL {
        if needed & mode::KEY_ESTABLISHMENT == 0 {
            return Err(Status::WRONG_MODE_OF_OPERATION);
        }
        // Single use: erased by the operation that uses it.
        return ctx.vol.ephemeral.take().ok_or(Status::KEY_NOT_FOUND);
    }
    let global = ctx.nvm.global_uses_left;
    let s = match slot {
        0 | 1 => ctx.nvm.private[slot as usize]
            .as_mut()
            .ok_or(Status::KEY_NOT_FOUND)?,
        _ => return Err(Status::VALUE_OUT_OF_RANGE),
    };
    if s.mode & needed == 0 {
        return Err(Status::WRONG_MODE_OF_OPERATION);
    }
    if s.uses_left == 0 || global == 0 {
        return Err(Status::KEY_BLOCKED);
    }
    if s.uses_left != UNLIMITED {
        s.uses_left -= 1;
        ctx.dirty = true;
    }
    let key = s.key.clone();
    if global != UNLIMITED {
        ctx.nvm.global_uses_left -= 1;
        ctx.dirty = true;
    }
    Ok(key)
}

fn check_digest(digest: &[u8]) -> CmdResult {
    if digest.len() == 32 || digest.len() == 48 {
        Ok(())
    } else {
        Err(Status::VALUE_OUT_OF_RANGE)
    }
}

pub(crate) fn sign(ctx: &mut Ctx<'_>, slot: u8, digest: &[u8]) -> CmdResult {
    check_digest(digest)?;
    if slot == SLOT_EPHEMERAL {
        return Err(Status::WRONG_MODE_OF_OPERATION);
    }
    let key = use_key(ctx, slot, mode::SIGN_EXTERNAL | mode::SIGN_INTERNAL)?;
    let rs = key.sign_prehash(digest, ctx.rng).map_err(crypto_status)?;
    let n = rs.len() / 2;
    let mut buf = vec![0u8; rs.len() + 4];
    let mut w = Writer::new(&mut buf);
    Signature {
        r: &rs[..n],
        s: &rs[n..],
    }
    .write(&mut w);
    ctx.out.extend_from_slice(w.written());
    Ok(())
}

pub(crate) fn verify(
    ctx: &mut Ctx<'_>,
    curve: Curve,
    key: PublicKey<'_>,
    sig: Signature<'_>,
    digest: &[u8],
) -> CmdResult {
    let curve = CurveName::from_wire(curve).ok_or(Status::VALUE_OUT_OF_RANGE)?;
    check_digest(digest)?;
    let n = curve.coordinate_len();
    if sig.r.len() != n || sig.s.len() != n {
        return Err(Status::INCONSISTENT_COMMAND_DATA);
    }
    let valid = verify_prehash(curve, key.x, key.y, sig.r, sig.s, digest).map_err(crypto_status)?;
    ctx.out.push(u8::from(valid));
    Ok(())
}

pub(crate) fn establish(ctx: &mut Ctx<'_>, slot: u8, peer: PublicKey<'_>) -> CmdResult {
    let key = use_key(ctx, slot, mode::KEY_ESTABLISHMENT)?;
    let shared = key.ecdh(peer.x, peer.y).map_err(crypto_status)?;
    ctx.out
        .extend_from_slice(&(shared.len() as u16).to_be_bytes());
    ctx.out.extend_from_slice(&shared);
    Ok(())
}

fn envelope_key<'a>(ctx: &'a Ctx<'_>, slot: u8) -> Result<&'a [u8], Status> {
    ctx.nvm
        .envelope
        .get(slot as usize)
        .ok_or(Status::VALUE_OUT_OF_RANGE)?
        .as_ref()
        .map(|k| k.0.as_slice())
        .ok_or(Status::KEY_NOT_FOUND)
}

pub(crate) fn wrap(ctx: &mut Ctx<'_>, slot: u8, data: &[u8]) -> CmdResult {
    let key = envelope_key(ctx, slot)?;
    if !data.len().is_multiple_of(8) || !(16..=MAX_WRAP).contains(&data.len()) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    let mut out = vec![0u8; data.len() + 8];
    let r = match key.len() {
        16 => KekAes128::new(key.into()).wrap(data, &mut out),
        _ => KekAes256::new(key.into()).wrap(data, &mut out),
    };
    r.map_err(|_| Status::UNEXPECTED_ERROR)?;
    ctx.out = out;
    Ok(())
}

pub(crate) fn unwrap(ctx: &mut Ctx<'_>, slot: u8, envelope: &[u8]) -> CmdResult {
    let key = envelope_key(ctx, slot)?;
    if !envelope.len().is_multiple_of(8) || !(24..=MAX_WRAP + 8).contains(&envelope.len()) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    let mut out = vec![0u8; envelope.len() - 8];
    let r = match key.len() {
        16 => KekAes128::new(key.into()).unwrap(envelope, &mut out),
        _ => KekAes256::new(key.into()).unwrap(envelope, &mut out),
    };
    r.map_err(|_| Status::INCONSISTENT_COMMAND_DATA)?;
    ctx.out = out;
    Ok(())
}
