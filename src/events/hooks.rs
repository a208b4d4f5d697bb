//! Command hooks: a CommandReader `hook=` registration runs instead of its command (the
//! newest hook first; `call_next()` goes on to the next one and, after the last, to the
//! command itself), and a KeysReader `commands=` registration fires only for keyspace events
//! its commands caused, with the command's reply in its hands (`override_reply()`).
//!
//! The command filter (`host::command_filter`) rewrites a concerned command to
//! `RG.INNERHOOK <command> <args...>`; [`inner_hook`] runs it. Commands arriving from a master
//! or while loading run unchanged, and the client's ACL is checked against the real command.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use gearbox_engine::command_hooks::{next_hook, watches};
use gearbox_engine::errors;
use gearbox_engine::{Mode, Outcome, Registration, Value};
use redis_module::raw;

use super::command_ctx::{self, command_name, CommandCtx};
use super::command_info;
use super::fire::{fire, fire_for_client, Fired};
use crate::gearbox;
use crate::host::command_filter::{self, FilteredCommand};
use crate::host::lock::{Locked, RedisLock};
use crate::host::redis_ffi::blocking_forbidden;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::reply::Reply;

pub const INNER_HOOK: &str = "RG.INNERHOOK";

/// A secret the filter puts after `RG.INNERHOOK`: a client that sends the command itself does
/// not know it and is refused (the command is internal, the filter's alone).
fn filter_secret() -> &'static [u8] {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET.get_or_init(|| {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        match random {
            Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes(),
            Err(_) => gearbox_engine::ids::random_session_id().into_bytes(),
        }
    })
}

/// The (lower-case) names of the commands some registration concerns, rebuilt when the
/// registrations change: most commands are answered by one look-up here.
#[derive(Default)]
struct Index {
    names: HashSet<Vec<u8>>,
}

fn index() -> &'static Mutex<Index> {
    static INDEX: OnceLock<Mutex<Index>> = OnceLock::new();
    INDEX.get_or_init(|| Mutex::new(Index::default()))
}

/// The generation the index was built for, and whether it names any command: most servers
/// have no hook, and then a command costs the filter two atomic loads.
static INDEXED: AtomicU64 = AtomicU64::new(u64::MAX);
static ANY: AtomicBool = AtomicBool::new(false);

/// Whether some registration may concern commands at all (rebuilding the index if needed).
fn any_concerned() -> bool {
    let generation = gearbox::get().engine.registrations.generation();
    if INDEXED.load(Ordering::Acquire) != generation {
        let mut index = index().lock().unwrap_or_else(|e| e.into_inner());
        let registrations = &gearbox::get().engine.registrations;
        let generation = registrations.generation();
        index.names = registrations
            .all()
            .iter()
            .flat_map(|r| r.spec.hook.iter().chain(r.spec.commands.iter().flatten()).map(|c| c.as_bytes().to_vec()).collect::<Vec<_>>())
            .collect();
        ANY.store(!index.names.is_empty(), Ordering::Release);
        INDEXED.store(generation, Ordering::Release);
    }
    ANY.load(Ordering::Acquire)
}

fn is_concerned_name(name: &[u8]) -> bool {
    let index = index().lock().unwrap_or_else(|e| e.into_inner());
    index.names.contains(&name.to_ascii_lowercase())
}

/// The hook that takes this call first, if any.
fn first_hook(argv: &[Vec<u8>]) -> Option<Arc<Registration>> {
    let name = command_name(argv);
    let chain = gearbox::get().engine.registrations.hooks_of(&name);
    next_hook(&chain, None, command_info::cached(&name).map(|i| i.keys).as_ref(), argv)
}

fn is_watched(argv: &[Vec<u8>]) -> bool {
    let keys = command_info::cached(&command_name(argv)).map(|i| i.keys);
    gearbox::get().engine.registrations.key_registrations().iter().any(|r| watches(&r.spec, keys.as_ref(), argv))
}

/// The command filter's decision (main thread, every command).
pub fn filter(command: &FilteredCommand) {
    if !any_concerned() || command.is_empty() || !is_concerned_name(&command.arg(0)) {
        return;
    }
    let argv = command.args();
    if first_hook(&argv).is_some() || is_watched(&argv) {
        command.prepend(&[INNER_HOOK.as_bytes(), filter_secret()]);
    }
}

pub fn install(ctx: Ctx) -> Result<(), String> {
    filter_secret();
    command_filter::install(ctx, filter)
}

/// A hook execution's reply: its first error, else its one result.
fn hook_reply(outcome: &Outcome) -> Value {
    match (outcome.errors.first(), outcome.results.as_slice()) {
        (Some(e), _) => Value::Error(e.clone()),
        (None, [one]) => one.clone(),
        _ => Value::Error(errors::HOOK_ONE_RESULT.into()),
    }
}

/// `RG.INNERHOOK <secret> <command> <args...>`: the filter's rewrite of a concerned command.
pub fn inner_hook(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.get(1).map(Vec::as_slice) != Some(filter_secret()) {
        return Reply::error(gearbox_engine::errors::internal_command(INNER_HOOK));
    }
    if args.len() < 3 {
        return Reply::WrongArity;
    }
    let argv = args[2..].to_vec();
    let lock = RedisLock::acquire();
    let locked = lock.held();
    let flags = redis_ffi::context_flags(ctx);
    if flags & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) != 0 {
        return Reply::Value(redis_ffi::call(locked, ctx, None, &argv));
    }
    if let Err(e) = command_filter::acl_check(locked, ctx, &argv) {
        return Reply::error(e);
    }
    let read_only_replica = raw::REDISMODULE_CTX_FLAGS_SLAVE | raw::REDISMODULE_CTX_FLAGS_READONLY;
    if flags & read_only_replica == read_only_replica && command_info::cached(&command_name(&argv)).is_some_and(|i| i.write) {
        return Reply::error(errors::READONLY_REPLICA);
    }
    if let Some(reg) = first_hook(&argv) {
        return run_hook(locked, ctx, &reg, argv);
    }
    if is_watched(&argv) {
        return run_watched(locked, ctx, argv);
    }
    Reply::Value(redis_ffi::call(locked, ctx, None, &argv))
}

fn run_hook(locked: Locked<'_>, ctx: Ctx, reg: &Arc<Registration>, argv: Vec<Vec<u8>>) -> Reply {
    let record = Value::bulks(argv.iter().cloned());
    fire_for_client(locked, ctx, reg, record, Some(CommandCtx::hook(argv, &reg.id)), None, hook_reply)
}

/// Run a watched command, with its context current for the keyspace events it raises.
fn run_watched(locked: Locked<'_>, ctx: Ctx, argv: Vec<Vec<u8>>) -> Reply {
    let watched = CommandCtx::watched(argv);
    let own = command_ctx::watching(&watched, ctx, || redis_ffi::call(locked, ctx, None, &watched.argv));
    watched.set_own_reply(own);
    if watched.is_blocked() {
        // The last async registration holding the context replies (maybe this drop).
        Reply::Blocked
    } else {
        Reply::Value(watched.final_reply())
    }
}

/// The context a keyspace event's registration `reg` runs under, if it watches commands:
/// None when it must not fire (not caused by one of its commands). An async one blocks the
/// client until it is done, where blocking is allowed; elsewhere it runs without the context.
pub fn context_for_event(reg: &Registration, watched: &Option<(Arc<CommandCtx>, Ctx)>) -> Option<Option<Arc<CommandCtx>>> {
    let Some(commands) = &reg.spec.commands else { return Some(None) };
    let (command, client) = watched.as_ref()?;
    if !commands.contains(&command.name()) {
        return None;
    }
    if reg.spec.mode == Mode::Sync {
        return Some(Some(command.clone()));
    }
    if blocking_forbidden(*client) {
        return Some(None);
    }
    command.block_client(|| redis_ffi::block_client(*client));
    Some(Some(command.clone()))
}

/// `call_next(*args)` from a hook's execution: the next hook that takes the call (sync ones
/// only: they run inline), else the command itself through `original`.
pub fn call_next(
    locked: Locked<'_>,
    current: &CommandCtx,
    args: Vec<Vec<u8>>,
    original: impl FnOnce(Locked<'_>, &[Vec<u8>]) -> Value,
) -> Value {
    let mut argv = vec![current.argv[0].clone()];
    argv.extend(args);
    let name = current.name();
    let chain = gearbox::get().engine.registrations.hooks_of(&name);
    let keys = command_info::cached(&name).map(|i| i.keys);
    match next_hook(&chain, current.hook.as_deref(), keys.as_ref(), &argv) {
        Some(next) if next.spec.mode == Mode::Sync => {
            let record = Value::bulks(argv.iter().cloned());
            match fire(locked, &next, record, Some(CommandCtx::hook(argv, &next.id))) {
                Fired::Inline(outcome) => hook_reply(&outcome),
                Fired::Started(_) => Value::Error("gearbox: the next hook did not run inline".into()),
            }
        }
        _ => original(locked, &argv),
    }
}
