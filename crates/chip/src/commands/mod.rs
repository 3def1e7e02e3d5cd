//! Command handlers. Each validates everything before it changes anything; the engine restores
//! a snapshot on any error in any case, so a failed command never leaves a partial change.

mod admin;
mod crypto;
mod data;

use sesame_wire::Request;

use crate::engine::{CmdResult, Ctx};

pub(crate) fn dispatch(ctx: &mut Ctx<'_>, req: Request<'_>) -> CmdResult {
    match req {
        Request::Echo(data) => {
            ctx.out.extend_from_slice(data);
            Ok(())
        }
        Request::Reset => admin::reset(ctx),
        Request::GenerateRandom { subject, len } => admin::random(ctx, subject, len),
        Request::Hibernate { wake } => admin::hibernate(ctx, wake),
        Request::Query(tag) => admin::query(ctx, tag),
        Request::PutAttribute(attr) => admin::put_attribute(ctx, attr),
        Request::VerifyPassword(pw) => admin::verify_password(ctx, pw),
        Request::Delete { tag } => admin::delete(ctx, tag),
        Request::Read {
            option,
            zone,
            offset,
            len,
        } => data::read(ctx, option, zone, offset, len),
        Request::Update {
            option,
            zone,
            offset,
            data,
        } => data::update(ctx, option, zone, offset, data),
        Request::Decrement {
            option,
            zone,
            offset,
            amount,
            data,
        } => data::decrement(ctx, option, zone, offset, amount, data),
        Request::GenerateKey(g) => crypto::generate_key(ctx, g),
        Request::GenerateSignature { slot, digest } => crypto::sign(ctx, slot, digest),
        Request::VerifySignature {
            curve,
            key,
            signature,
            digest,
        } => crypto::verify(ctx, curve, key, signature, digest),
        Request::EstablishKey { slot, peer } => crypto::establish(ctx, slot, peer),
        Request::Wrap { slot, data } => crypto::wrap(ctx, slot, data),
        Request::Unwrap { slot, envelope } => crypto::unwrap(ctx, slot, envelope),
    }
}
