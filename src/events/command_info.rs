//! What Redis says about a command (`COMMAND INFO`): whether it exists, may run in a script,
//! has movable keys, writes, and where its keys are. Asked once per command when a hook or a
//! `commands=` registration is made, and kept for the command filter, which must not call Redis.
//!
//! The checks a registration gets here, and their texts, are RedisGears 1.2's.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use gearbox_engine::command_hooks::KeyPositions;
use gearbox_engine::errors;
use gearbox_engine::{Mode, RegistrationSpec, Replacing, Value};

use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi;

#[derive(Clone, Copy, Debug)]
pub struct CommandInfo {
    pub keys: KeyPositions,
    pub movable_keys: bool,
    pub noscript: bool,
    pub write: bool,
}

fn cache() -> &'static Mutex<HashMap<String, CommandInfo>> {
    static CACHE: OnceLock<Mutex<HashMap<String, CommandInfo>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The cached facts about `name` (lower-case), if a registration asked for them.
pub fn cached(name: &str) -> Option<CommandInfo> {
    cache().lock().unwrap_or_else(|e| e.into_inner()).get(name).copied()
}

fn parse(reply: &Value) -> Option<CommandInfo> {
    let Value::Array(entries) = reply else { return None };
    let Some(Value::Array(fields)) = entries.first() else { return None };
    let int = |i: usize| match fields.get(i) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let flags: Vec<String> = match fields.get(2) {
        Some(Value::Array(f)) => f.iter().map(gearbox_engine::codec::text_of).collect(),
        _ => Vec::new(),
    };
    let has = |flag: &str| flags.iter().any(|f| f.eq_ignore_ascii_case(flag));
    Some(CommandInfo {
        keys: KeyPositions { first: int(3)?, last: int(4)?, step: int(5)? },
        movable_keys: has("movablekeys"),
        noscript: has("noscript"),
        write: has("write"),
    })
}

/// Ask Redis about `name` (lower-case) and remember the answer. None: no such command.
pub fn lookup(name: &str) -> Option<CommandInfo> {
    if let Some(info) = cached(name) {
        return Some(info);
    }
    let reply = {
        let lock = RedisLock::acquire();
        redis_ffi::call(lock.held(), lock.held().detached(), None, &[b"COMMAND".to_vec(), b"INFO".to_vec(), name.as_bytes().to_vec()])
    };
    let info = parse(&reply)?;
    cache().lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), info);
    Some(info)
}

/// RedisGears says "override" for hooks and "hook" for `commands=` in these texts.
fn allowed_in_scripts(info: &CommandInfo, verb: &str) -> Result<(), String> {
    if info.noscript {
        return Err(errors::hook_not_in_scripts(verb));
    }
    Ok(())
}

/// Whether the command's keys can be found to match a key prefix against.
fn keys_by_prefix(info: &CommandInfo, verb: &str) -> Result<(), String> {
    if info.movable_keys {
        return Err(errors::hook_moveable_keys(verb));
    }
    if info.keys.first <= 0 {
        return Err(errors::hook_first_key(verb));
    }
    if info.keys.step <= 0 {
        return Err(errors::HOOK_PREFIX_JUMP.into());
    }
    Ok(())
}

/// The checks of a CommandReader `hook=` registration. `earlier` are the specs the same script
/// registered before; sessions in `replacing` are being replaced by this script.
pub fn check_hook(spec: &RegistrationSpec, earlier: &[&RegistrationSpec], replacing: Replacing<'_>) -> Result<(), String> {
    let Some(command) = spec.hook.as_deref() else { return Ok(()) };
    let info = lookup(command).filter(|_| command != "rg.innerhook").ok_or("Can not override an unexisting command")?;
    allowed_in_scripts(&info, "override")?;
    if spec.keyprefix.is_some() {
        keys_by_prefix(&info, "override")?;
    }
    let head = gearbox::get().engine.registrations.hooks_of(command).into_iter().find(|r| !replacing.covers(&r.session));
    if head.is_some_and(|h| h.spec.mode != Mode::Sync) {
        return Err(errors::HOOK_NOT_SYNC.into());
    }
    if earlier.iter().any(|e| e.hook.as_deref() == Some(command) && e.mode != Mode::Sync) {
        return Err(errors::HOOK_NOT_SYNC_IN_SESSION.into());
    }
    Ok(())
}

/// The checks of a KeysReader `commands=` registration.
pub fn check_commands(spec: &RegistrationSpec) -> Result<(), String> {
    for command in spec.commands.iter().flatten() {
        let info = lookup(command).filter(|_| command != "rg.innerhook").ok_or("bad reply on COMMAND command")?;
        allowed_in_scripts(&info, "hook")?;
        keys_by_prefix(&info, "hook")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_reply(flags: &[&str], first: i64, last: i64, step: i64) -> Value {
        Value::Array(vec![Value::Array(vec![
            Value::bulk("hset"),
            Value::Int(-4),
            Value::Array(flags.iter().map(|f| Value::Status(f.to_string())).collect()),
            Value::Int(first),
            Value::Int(last),
            Value::Int(step),
        ])])
    }

    #[test]
    fn command_info_replies_are_read_and_unknown_commands_are_none() {
        let info = parse(&info_reply(&["write", "denyoom", "fast"], 1, 1, 1)).unwrap();
        assert!(info.write && !info.noscript && !info.movable_keys);
        assert_eq!(info.keys, KeyPositions { first: 1, last: 1, step: 1 });
        assert!(parse(&info_reply(&["noscript"], 0, 0, 0)).unwrap().noscript);
        assert!(parse(&Value::Array(vec![Value::Nil])).is_none(), "COMMAND INFO of an unknown command");
        assert!(parse(&Value::Error("ERR".into())).is_none());
    }
}
