//! General and administrative commands: Reset, Generate Random, Hibernate, Query, Put Attribute,
//! Verify Password, Delete (protocol.md §3.3–§3.5).
//!
//! sesame choices: an unknown Query or Put Attribute tag is 0x03; Verify Password with no
//! password set is 0x10 and with no tries left 0x1A (a wrong password answers OK with
//! `00 remaining`); a life-cycle change needs the password verified since the last reset when
//! one is set (0x11) and must follow born → operational → terminated, with lock/unlock of born
//! and operational (anything else 0x0F); I2C parameters are refused once their lock bit is set
//! (0x11) and take effect at the next reset or power-on; host keys can be provisioned once in
//! plain, and replaced only under a valid C-MAC with the current keys (0x11); Delete of the
//! password needs it verified (0x11).

use rand_core::RngCore;
use sesame_wire::resp::{
    product_tag, EnvelopeSlotRecord, HostKeySlot, I2cParameters, KeySlotRecord, KeyTableHeader,
    PasswordResult, ZoneRecord,
};
use sesame_wire::{Attribute, LifeCycle, QueryTag, Status, Writer};
use subtle::ConstantTimeEq;

use crate::engine::{CmdResult, Ctx};
use crate::state::HostKeys;

pub(crate) fn reset(ctx: &mut Ctx<'_>) -> CmdResult {
    ctx.vol.ephemeral = None;
    ctx.vol.password_ok = false;
    ctx.vol.reset = true;
    Ok(())
}

pub(crate) fn random(ctx: &mut Ctx<'_>, subject: u8, len: u8) -> CmdResult {
    if subject != 0 || len == 0 {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    let mut buf = vec![0u8; len as usize];
    ctx.rng.fill_bytes(&mut buf);
    ctx.out = buf;
    Ok(())
}

pub(crate) fn hibernate(ctx: &mut Ctx<'_>, wake: u8) -> CmdResult {
    if !(1..=2).contains(&wake) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    ctx.vol.hibernate = Some(wake);
    Ok(())
}

/// Writes into a scratch buffer big enough for any query answer, then copies out.
fn answer(ctx: &mut Ctx<'_>, f: impl FnOnce(&mut Writer<'_>, &Ctx<'_>)) -> CmdResult {
    let mut buf = vec![0u8; 2048];
    let mut w = Writer::new(&mut buf);
    f(&mut w, ctx);
    let n = w.finish().map_err(|_| Status::BUFFER_LENGTH_EXCEEDED)?;
    buf.truncate(n);
    ctx.out = buf;
    Ok(())
}

pub(crate) fn query(ctx: &mut Ctx<'_>, tag: QueryTag) -> CmdResult {
    match tag {
        QueryTag::LIFE_CYCLE => answer(ctx, |w, c| {
            w.u8(c.nvm.life_cycle);
        }),
        QueryTag::I2C_PARAMETERS => answer(ctx, |w, c| {
            w.put(&c.nvm.i2c);
        }),
        QueryTag::PRODUCT_DATA => answer(ctx, |w, c| {
            let p = &c.nvm.product;
            let size: usize = c.nvm.zones.iter().map(|z| z.data.len()).sum();
            let tlv = |w: &mut Writer<'_>, tag: u8, v: &[u8]| {
                w.u8(tag).u8(v.len() as u8).put(v);
            };
            tlv(w, product_tag::MASK_ID, &p.mask_id);
            tlv(w, product_tag::ST_NUMBER, &p.serial);
            tlv(w, product_tag::IO_BUFFER_SIZE, &507u16.to_be_bytes());
            tlv(w, product_tag::ATOMICITY_BUFFER_SIZE, &64u16.to_be_bytes());
            tlv(w, product_tag::NVM_SIZE, &(size as u16).to_be_bytes());
            tlv(w, 0x06, &p.perso_date[1..]);
            tlv(w, 0x07, &[0x01]);
            tlv(w, 0x08, &p.perso_date[1..]);
            tlv(w, 0x09, &p.batch_id);
            tlv(w, 0x0A, &p.batch_id);
            tlv(w, 0x0B, &p.serial[6..]);
            tlv(w, 0x0C, &p.batch_id);
            tlv(w, 0x0D, &p.perso_date);
        }),
        QueryTag::DATA_PARTITION => answer(ctx, |w, c| {
            w.u8(c.nvm.zones.len() as u8);
            for (i, z) in c.nvm.zones.iter().enumerate() {
                ZoneRecord {
                    index: i as u8,
                    zone_type: z.zone_type(),
                    ac: z.ac_byte(),
                    data_len: z.data.len() as u16,
                    counter: z.counter_zone.then_some(z.counter),
                }
                .write(w);
            }
        }),
        QueryTag::PRIVATE_KEYS => answer(ctx, |w, c| {
            KeyTableHeader {
                count: 3,
                change_right: 0,
                global_usage_limit: c.nvm.global_uses_left,
            }
            .write(w);
            for (slot, s) in c.nvm.private.iter().enumerate() {
                KeySlotRecord {
                    slot: slot as u8,
                    present: s.is_some(),
                    mode: s.as_ref().map_or(0, |s| s.mode),
                    curve: s.as_ref().map(|s| s.key.curve().wire()),
                }
                .write(w);
            }
            let e = c.vol.ephemeral.as_ref();
            KeySlotRecord {
                slot: 0xFF,
                present: e.is_some(),
                mode: if e.is_some() {
                    crate::state::mode::KEY_ESTABLISHMENT
                } else {
                    0
                },
                curve: e.map(|k| k.curve().wire()),
            }
            .write(w);
        }),
        QueryTag::LOCAL_ENVELOPE_KEYS => answer(ctx, |w, c| {
            w.u8(c.nvm.envelope.len() as u8);
            for (slot, k) in c.nvm.envelope.iter().enumerate() {
                EnvelopeSlotRecord {
                    slot: slot as u8,
                    key_len: k.as_ref().map(|k| k.0.len() as u8),
                }
                .write(w);
            }
        }),
        QueryTag::HOST_KEY => answer(ctx, |w, c| {
            HostKeySlot {
                present: c.nvm.host.is_some(),
                counter: c.nvm.host.as_ref().map_or(0, |h| h.counter),
            }
            .write(w);
        }),
        QueryTag::COMMAND_AUTHORIZATION => answer(ctx, |w, c| {
            w.u8(c.nvm.policy_rights).u8(c.nvm.policy.len() as u8);
            for p in &c.nvm.policy {
                p.record().write(w);
            }
        }),
        _ => Err(Status::VALUE_OUT_OF_RANGE),
    }
}

fn transition_allowed(from: LifeCycle, to: LifeCycle) -> bool {
    use LifeCycle as L;
    from == to
        || to == L::TERMINATED
        || matches!(
            (from, to),
            (L::BORN, L::OPERATIONAL)
                | (L::BORN, L::BORN_LOCKED)
                | (L::BORN_LOCKED, L::BORN)
                | (L::OPERATIONAL, L::OPERATIONAL_LOCKED)
                | (L::OPERATIONAL_LOCKED, L::OPERATIONAL)
        )
}

pub(crate) fn put_attribute(ctx: &mut Ctx<'_>, attr: Attribute<'_>) -> CmdResult {
    match attr {
        Attribute::LifeCycle(to) => {
            if to.name().is_none() || to == LifeCycle::PATCHING {
                return Err(Status::VALUE_OUT_OF_RANGE);
            }
            if ctx.nvm.password.is_some() && !ctx.vol.password_ok {
                return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
            }
            if !transition_allowed(ctx.nvm.life_cycle(), to) {
                return Err(Status::INVALID_LIFE_CYCLE_STATE);
            }
            ctx.nvm.life_cycle = to.0;
        }
        Attribute::I2cParameters(bytes) => {
            if I2cParameters::from_bytes(ctx.nvm.i2c).locked {
                return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
            }
            let p = I2cParameters::from_bytes(bytes);
            let valid_address = (0x08..=0x77).contains(&p.address);
            if bytes[0] & 1 != 0 || !valid_address || !matches!(p.low_power, 0 | 2) {
                return Err(Status::VALUE_OUT_OF_RANGE);
            }
            ctx.nvm.i2c = bytes;
        }
        Attribute::HostKey { mac, cipher } => {
            let counter = match &ctx.nvm.host {
                Some(_) if !ctx.host_ok => return Err(Status::ACCESS_CONDITION_NOT_SATISFIED),
                // Replacing keys keeps the counter: it never goes back.
                Some(h) => h.counter,
                None => 0,
            };
            ctx.nvm.host = Some(HostKeys {
                mac: *mac,
                cipher: *cipher,
                counter,
            });
        }
    }
    ctx.dirty = true;
    Ok(())
}

pub(crate) fn verify_password(ctx: &mut Ctx<'_>, pw: &[u8; 16]) -> CmdResult {
    let Some(p) = ctx.nvm.password.as_mut() else {
        return Err(Status::ENTRY_NOT_FOUND);
    };
    if p.tries_left == 0 {
        return Err(Status::PASSWORD_BLOCKED);
    }
    let ok = bool::from(p.value.ct_eq(pw));
    if ok {
        p.tries_left = p.max_tries;
    } else {
        p.tries_left -= 1;
    }
    let result = PasswordResult {
        ok,
        remaining: p.tries_left,
    };
    ctx.vol.password_ok = ok;
    ctx.dirty = true;
    answer(ctx, |w, _| result.write(w))
}

pub(crate) fn delete(ctx: &mut Ctx<'_>, tag: u8) -> CmdResult {
    if tag != sesame_wire::cmd::DELETE_TAG_PASSWORD {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    if ctx.nvm.password.is_none() {
        return Err(Status::ENTRY_NOT_FOUND);
    }
    if !ctx.vol.password_ok {
        return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
    }
    ctx.nvm.password = None;
    ctx.dirty = true;
    Ok(())
}
