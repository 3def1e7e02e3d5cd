//! Read, Update and Decrement over the data partition (protocol.md §3.6, §4).
//!
//! sesame choices where the sheet is silent: unknown zone 0x10; AC not met 0x11 (also for an AC
//! change once the change right is cleared); an AC change to a looser condition 0x03 (equal is
//! allowed, so the change right alone can be dropped); Update/Read range past the zone 0x14;
//! Update on a counter zone and Decrement on a plain zone 0x12; amount 0 0x03; decrement below
//! zero or on a zero counter 0x13; an atomic Update larger than the 64-byte atomicity buffer 0x06.

use sesame_wire::{CommandCode, Status, ZoneOption};

use crate::engine::{CmdResult, Ctx};
use crate::state::Zone;

/// The A1xx atomicity buffer (protocol.md §1.5).
pub(crate) const ATOMICITY_BUFFER: usize = 64;

/// Strictness order of zone ACs: always < host < admin (unreachable) < never.
fn rank(ac: u8) -> u8 {
    match ac {
        0..=3 => ac,
        _ => 7,
    }
}

pub(crate) fn ac_met(ac: u8, host_ok: bool) -> bool {
    match ac {
        0 => true,
        1 => host_ok,
        // Admin ACs need an admin key sesame chips do not have; 4..7 mean never.
        _ => false,
    }
}

fn zone_mut<'a>(ctx: &'a mut Ctx<'_>, index: u8) -> Result<&'a mut Zone, Status> {
    ctx.nvm
        .zones
        .get_mut(index as usize)
        .ok_or(Status::ENTRY_NOT_FOUND)
}

/// Validates and applies an AC change from the option byte to `(ac, right)`.
fn change_ac(option: ZoneOption, ac: &mut u8, right: &mut bool) -> CmdResult {
    if !option.changes_ac() {
        return Ok(());
    }
    if !*right {
        return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
    }
    if rank(option.new_ac()) < rank(*ac) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    *ac = option.new_ac();
    // The change right can only be cleared, never set back.
    *right = option.new_change_right();
    Ok(())
}

fn range(offset: u16, len: usize, size: usize) -> Result<core::ops::Range<usize>, Status> {
    let start = offset as usize;
    let end = start + len;
    if end > size {
        return Err(Status::BOUNDARY_EXCEEDED);
    }
    Ok(start..end)
}

pub(crate) fn read(
    ctx: &mut Ctx<'_>,
    option: ZoneOption,
    zone: u8,
    offset: u16,
    len: u16,
) -> CmdResult {
    if option.has_reserved_bits(CommandCode::READ) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    let host_ok = ctx.host_ok;
    let z = zone_mut(ctx, zone)?;
    if !ac_met(z.read_ac, host_ok) {
        return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
    }
    let r = range(offset, len as usize, z.data.len())?;
    let mut out = Vec::with_capacity(len as usize + 4);
    if z.counter_zone {
        out.extend_from_slice(&z.counter.to_be_bytes());
    }
    out.extend_from_slice(&z.data[r]);
    let changed = option.changes_ac();
    let (mut ac, mut right) = (z.read_ac, z.read_right);
    change_ac(option, &mut ac, &mut right)?;
    z.read_ac = ac;
    z.read_right = right;
    ctx.dirty |= changed;
    ctx.out = out;
    Ok(())
}

pub(crate) fn update(
    ctx: &mut Ctx<'_>,
    option: ZoneOption,
    zone: u8,
    offset: u16,
    data: &[u8],
) -> CmdResult {
    if option.has_reserved_bits(CommandCode::UPDATE) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    let host_ok = ctx.host_ok;
    let z = zone_mut(ctx, zone)?;
    if !ac_met(z.update_ac, host_ok) {
        return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
    }
    if z.counter_zone {
        return Err(Status::WRONG_ZONE_TYPE);
    }
    if option.atomic() && data.len() > ATOMICITY_BUFFER {
        return Err(Status::BUFFER_LENGTH_EXCEEDED);
    }
    let r = range(offset, data.len(), z.data.len())?;
    let (mut ac, mut right) = (z.update_ac, z.update_right);
    change_ac(option, &mut ac, &mut right)?;
    z.update_ac = ac;
    z.update_right = right;
    z.data[r].copy_from_slice(data);
    ctx.dirty = true;
    Ok(())
}

pub(crate) fn decrement(
    ctx: &mut Ctx<'_>,
    option: ZoneOption,
    zone: u8,
    offset: u16,
    amount: u32,
    data: &[u8],
) -> CmdResult {
    if option.has_reserved_bits(CommandCode::DECREMENT) {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    let host_ok = ctx.host_ok;
    let z = zone_mut(ctx, zone)?;
    if !ac_met(z.update_ac, host_ok) {
        return Err(Status::ACCESS_CONDITION_NOT_SATISFIED);
    }
    if !z.counter_zone {
        return Err(Status::WRONG_ZONE_TYPE);
    }
    if amount == 0 {
        return Err(Status::VALUE_OUT_OF_RANGE);
    }
    if z.counter == 0 || amount > z.counter {
        return Err(Status::COUNTER_LIMIT_EXCEEDED);
    }
    let r = range(offset, data.len(), z.data.len())?;
    let (mut ac, mut right) = (z.update_ac, z.update_right);
    change_ac(option, &mut ac, &mut right)?;
    z.update_ac = ac;
    z.update_right = right;
    z.counter -= amount;
    z.data[r].copy_from_slice(data);
    let counter = z.counter;
    ctx.out.extend_from_slice(&counter.to_be_bytes());
    ctx.dirty = true;
    Ok(())
}
