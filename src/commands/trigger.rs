//! RG.TRIGGER / RG.TRIGGERONKEY: fire a CommandReader registration by its trigger name. The reply
//! is the execution's result list, or an error with its first error (not the [results, errors]
//! pair). A sync registration runs inline; an async one blocks the client until it is done.

use gearbox_engine::errors::EngineError;
use gearbox_engine::{Outcome, Value};

use super::viewer::Viewer;
use super::{text, Reply};
use crate::events::fire::fire_for_client;
use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi::Ctx;

fn flat(outcome: &Outcome) -> Value {
    match outcome.errors.first() {
        Some(e) => Value::Error(e.clone()),
        None => Value::Array(outcome.results.clone()),
    }
}

fn trigger_named(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    let gb = gearbox::get();
    let viewer = Viewer::of(ctx);
    // Another owner's trigger is as good as unknown, unless it was registered shared.
    let reg = gb.engine.registrations.by_trigger(&text(&args[1])).filter(|r| r.spec.shared || viewer.sees(r.session.owner.as_deref()));
    let Some(reg) = reg else {
        return Reply::error(EngineError::TriggerNotFound.to_string());
    };
    // A shared trigger fired by another user acts as that user unless it asked for its owner's
    // rights (invoker's vs definer's rights).
    let acting_as = match viewer.name() {
        Some(caller) if reg.session.owner.as_deref() != Some(caller) && !reg.spec.owner_rights => Some(caller.to_string()),
        _ => None,
    };
    let lock = RedisLock::acquire();
    fire_for_client(lock.held(), ctx, &reg, Value::bulks(args[1..].iter().cloned()), None, acting_as, flat)
}

pub fn trigger(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 2 {
        return Reply::WrongArity;
    }
    trigger_named(ctx, args)
}

/// `RG.TRIGGERONKEY <trigger> <key> [arg ...]`: the key is an ordinary argument of the record.
pub fn trigger_on_key(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 3 {
        return Reply::WrongArity;
    }
    trigger_named(ctx, args)
}
