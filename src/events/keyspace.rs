//! Keyspace events → KeysReader registrations. Redis calls this on the thread that changed the
//! key (the main thread, or an execution thread inside `execute()`), holding the Redis lock.
//!
//! A `sync` registration runs right here, inside the writing command, under ScriptTimeoutMS;
//! `async` / `async_local` ones become executions on the pool, which read the key's value when
//! they run. Nothing fires while loading or on a replica. A sync registration whose callback
//! writes a key it listens to is not fired again from inside itself (that would recurse until
//! the stack overflows); such nested events are skipped. A registration with `commands=` fires
//! only while RG.INNERHOOK runs one of its commands (see `hooks`).

use std::cell::RefCell;

use gearbox_engine::{Mode, Value};

use super::fire::fire;
use crate::gearbox;
use crate::host::lock::Locked;
use crate::host::quiet::{self, quietly};
use crate::host::redis_ffi::{self, Ctx};
use crate::host::{acl_users, redis_hooks};

thread_local! {
    /// Sync registrations running inline on this thread.
    static RUNNING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The key's type as `keyTypes` names it.
fn key_type(locked: Locked<'_>, key: &[u8]) -> &'static str {
    let reply = quietly(|| redis_ffi::call(locked, locked.detached(), None, &[b"TYPE".to_vec(), key.to_vec()]));
    let name = match &reply {
        Value::Status(s) => s.as_str(),
        _ => "",
    };
    match name {
        "none" => "empty",
        "string" => "string",
        "hash" => "hash",
        "list" => "list",
        "set" => "set",
        "zset" => "zset",
        "stream" => "stream",
        _ => "module",
    }
}

pub fn on_event(locked: Locked<'_>, ctx: Ctx, event: &str, key: &[u8]) {
    let gb = gearbox::get();
    if gb.engine.registrations.is_empty() || quiet::is_quiet() || redis_hooks::events_muted(ctx) {
        return;
    }
    if event == "xadd" {
        super::streams::on_xadd(locked, key);
    }
    let matching: Vec<_> = gb.engine.registrations.key_registrations().into_iter().filter(|r| r.spec.wants_event(key, event)).collect();
    if matching.is_empty() {
        return;
    }
    let watched = super::command_ctx::take_watched();
    let mut known_type = None;
    for reg in matching {
        if reg.spec.commands.is_some() && watched.is_none() {
            continue;
        }
        // A registration hears only of keys its owner may access: key names are private too.
        if !reg.session.owner.as_deref().is_some_and(|owner| acl_users::may_access_key(locked, owner, key)) {
            continue;
        }
        if reg.spec.key_types.is_some() && !reg.spec.wants_type(known_type.get_or_insert_with(|| key_type(locked, key))) {
            continue;
        }
        let sync = reg.spec.mode == Mode::Sync;
        if sync && RUNNING.with(|r| r.borrow().contains(&reg.id)) {
            continue;
        }
        let Some(command) = super::hooks::context_for_event(&reg, &watched) else { continue };
        if sync {
            RUNNING.with(|r| r.borrow_mut().push(reg.id.clone()));
        }
        fire(locked, &reg, Value::Array(vec![Value::Bulk(key.to_vec()), Value::bulk(event)]), command);
        if sync {
            RUNNING.with(|r| r.borrow_mut().retain(|id| id != &reg.id));
        }
    }
    super::command_ctx::put_back_watched(watched);
}
