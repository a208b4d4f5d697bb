//! The Redis command layer: one file per command family. Every command enters through
//! [`dispatch`], which decodes arguments, catches panics (a panic must never reach Redis) and
//! writes the [`Reply`]. Error texts come from `gearbox_engine::errors`, the one catalogue.

pub mod config;
pub mod executions;
pub mod info;
pub mod misc;
pub mod pyexecute;
pub mod registrations;
pub mod requirements;
pub mod sessions;
pub mod trigger;
pub mod viewer;

use std::ffi::c_int;

use gearbox_engine::Value;
use redis_module::raw;

use crate::host::lock::Locked;
use crate::host::redis_ffi::{self, Ctx};

pub use crate::host::reply::Reply;

pub type Handler = fn(Ctx, &[Vec<u8>]) -> Reply;

/// Whether Redis put gearbox's admin commands in `@admin @dangerous` itself (7.2+). On older
/// servers (7.0 derives no category for a module command) [`admin_guard`] stands in.
static CATEGORIES_SET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stand-in for `@admin @dangerous` where Redis could not categorise gearbox's commands: the
/// caller must also be allowed `CONFIG SET` (which is `@admin @dangerous`), so an operator's
/// `-@admin` or `-@dangerous` reaches RG.CONFIGSET & co. Replication and loading have no user.
fn admin_guard(locked: Locked<'_>, ctx: Ctx, name: &str) -> Result<(), Reply> {
    if CATEGORIES_SET.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let Some(user) = redis_ffi::current_user(ctx) else { return Ok(()) };
    let config_set: [Vec<u8>; 4] = [b"CONFIG".to_vec(), b"SET".to_vec(), b"x".to_vec(), b"y".to_vec()];
    if redis_ffi::may_run(locked, ctx, &user, &config_set) {
        return Ok(());
    }
    Err(Reply::error(format!(
        "NOPERM {name} is an @admin @dangerous command: this user may not run it (gearbox grants it to users who may run CONFIG SET)"
    )))
}

/// The body of every command's C entry point.
///
/// # Safety
/// Called from a command's entry point with the context and `argc` arguments Redis gave it.
pub unsafe fn dispatch(ctx: *mut raw::RedisModuleCtx, argv: *mut *mut raw::RedisModuleString, argc: c_int, handler: Handler) -> c_int {
    let ctx = Ctx(ctx);
    let outcome = std::panic::catch_unwind(|| {
        // SAFETY: the command's arguments, as Redis passed them to this entry point.
        let args = unsafe { redis_ffi::args_of(argv, argc) };
        let name = args.first().map(Vec::as_slice).unwrap_or_default();
        if COMMANDS.iter().any(|(n, _, flags, _)| n.as_bytes().eq_ignore_ascii_case(name) && flags.contains("admin")) {
            // SAFETY: Redis runs commands on its main thread, holding its lock.
            let guard = unsafe { Locked::in_callback(|locked| admin_guard(locked, ctx, &text(name).to_ascii_uppercase())) };
            if let Err(refused) = guard {
                return refused;
            }
        }
        handler(ctx, &args)
    });
    match outcome {
        Ok(Reply::Value(v)) => redis_ffi::reply(ctx, &v),
        Ok(Reply::Blocked) => {}
        Ok(Reply::WrongArity) => redis_ffi::reply_wrong_arity(ctx),
        Err(_) => redis_ffi::reply(ctx, &Value::Error("ERR gearbox internal error (see the Redis log)".into())),
    }
    raw::REDISMODULE_OK as c_int
}

/// Defines `unsafe extern "C" fn $name` forwarding to `dispatch` with `$handler`.
macro_rules! entry_point {
    ($name:ident, $handler:path) => {
        unsafe extern "C" fn $name(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::ffi::c_int,
        ) -> std::ffi::c_int {
            // SAFETY: Redis calls the entry point with a live context and `argc` arguments.
            unsafe { $crate::commands::dispatch(ctx, argv, argc, $handler) }
        }
    };
}

entry_point!(c_pyexecute, pyexecute::pyexecute);
entry_point!(c_dumpexecutions, executions::dump);
entry_point!(c_getexecution, executions::get_execution);
entry_point!(c_getresults, executions::get_results);
entry_point!(c_getresultsblocking, executions::get_results_blocking);
entry_point!(c_dropexecution, executions::drop_execution);
entry_point!(c_abortexecution, executions::abort);
entry_point!(c_configget, config::config_get);
entry_point!(c_configset, config::config_set);
entry_point!(c_pydumpsessions, sessions::dump_sessions);
entry_point!(c_pystats, sessions::py_stats);
entry_point!(c_pydumpreqs, sessions::dump_requirements);
entry_point!(c_pyprofile, sessions::py_profile);
entry_point!(c_pyexportreq, requirements::export);
entry_point!(c_pyimportreq, requirements::import);
entry_point!(c_infocluster, misc::info_cluster);
entry_point!(c_refreshcluster, misc::ok);
entry_point!(c_networktest, misc::ok);
entry_point!(c_dumpplugins, misc::dump_plugins);
entry_point!(c_executeremote, misc::execute_remote);
entry_point!(c_dumpregistrations, registrations::dump);
entry_point!(c_unregister, registrations::unregister);
entry_point!(c_innerunregister, registrations::inner_unregister);
entry_point!(c_innerregister, registrations::inner_register);
entry_point!(c_clearregistrationsstats, registrations::clear_stats);
entry_point!(c_pauseregistrations, registrations::pause);
entry_point!(c_unpauseregistrations, registrations::unpause);
entry_point!(c_trigger, trigger::trigger);
entry_point!(c_triggeronkey, trigger::trigger_on_key);
entry_point!(c_freeinterpreter, misc::free_interpreter);
entry_point!(c_innerhook, crate::events::hooks::inner_hook);

/// The command table: name, entry point, Redis flags, ACL categories. Every RG command has no
/// keys and is `readonly`, as in RedisGears (so it is allowed inside MULTI/Lua, where
/// RG.PYEXECUTE then refuses with its own message). Configuration and control commands, and the
/// internal ones, are `admin`: Redis puts them in `@admin @dangerous`, so an operator's
/// `-@admin -@dangerous` reaches them. The internal commands are also `noscript` (no Lua script
/// or gearbox script may send them) and answer only replication and loading. On servers that
/// have `RedisModule_SetCommandACLCategories` (7.2+) the categories are also set by name.
type Entry = unsafe extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

const USER: &str = "readonly";
const ADMIN: &str = "readonly admin";
const INTERNAL: &str = "readonly admin deny-script";

/// (name, entry point, flags, ACL categories on 7.2+)
pub const COMMANDS: &[(&str, Entry, &str, &str)] = &[
    ("rg.pyexecute", c_pyexecute, USER, ""),
    ("rg.dumpexecutions", c_dumpexecutions, USER, ""),
    ("rg.getexecution", c_getexecution, USER, ""),
    ("rg.getresults", c_getresults, USER, ""),
    ("rg.getresultsblocking", c_getresultsblocking, USER, ""),
    ("rg.dropexecution", c_dropexecution, USER, ""),
    ("rg.abortexecution", c_abortexecution, USER, ""),
    ("rg.configget", c_configget, USER, ""),
    ("rg.configset", c_configset, ADMIN, "admin dangerous"),
    ("rg.pydumpsessions", c_pydumpsessions, USER, ""),
    ("rg.pystats", c_pystats, USER, ""),
    ("rg.pydumpreqs", c_pydumpreqs, USER, ""),
    ("rg.pyprofile", c_pyprofile, USER, ""),
    ("rg.pyexportreq", c_pyexportreq, USER, ""),
    // Installs what later sessions of any user get under that requirement's name.
    ("rg.pyimportreq", c_pyimportreq, ADMIN, "admin dangerous"),
    ("rg.infocluster", c_infocluster, USER, ""),
    ("rg.refreshcluster", c_refreshcluster, ADMIN, "admin dangerous"),
    ("rg.networktest", c_networktest, ADMIN, "admin dangerous"),
    ("rg.dumpplugins", c_dumpplugins, USER, ""),
    ("rg.pyexecuteremote", c_executeremote, INTERNAL, "admin dangerous"),
    ("rg.pyfreeinterpreter", c_freeinterpreter, INTERNAL, "admin dangerous"),
    ("rg.dumpregistrations", c_dumpregistrations, USER, ""),
    ("rg.unregister", c_unregister, USER, ""),
    ("rg.innerunregister", c_innerunregister, INTERNAL, "admin dangerous"),
    ("rg.innerregister", c_innerregister, INTERNAL, "admin dangerous"),
    ("rg.clearregistrationsstats", c_clearregistrationsstats, ADMIN, "admin dangerous"),
    ("rg.pauseregistrations", c_pauseregistrations, ADMIN, "admin dangerous"),
    ("rg.unpauseregistrations", c_unpauseregistrations, ADMIN, "admin dangerous"),
    ("rg.trigger", c_trigger, USER, ""),
    // What the command filter turns a hooked command into (see events::hooks): every client's
    // hooked command becomes this one, so it needs no category of its own; a client that sends
    // it itself is refused (it lacks the filter's secret).
    ("rg.innerhook", c_innerhook, USER, ""),
];

/// Register every command; `Err` names the one Redis refused.
pub fn register_all(ctx: Ctx) -> Result<(), String> {
    let mut categorised = true;
    for (name, f, flags, categories) in COMMANDS {
        if !redis_ffi::create_command(ctx, name, Some(*f), flags, 0, 0, 0) {
            return Err(format!("could not register command {name}"));
        }
        if !categories.is_empty() {
            categorised &= redis_ffi::set_acl_categories(ctx, name, categories);
        }
    }
    CATEGORIES_SET.store(categorised, std::sync::atomic::Ordering::Relaxed);
    // The key is the second argument, so cluster clients route it (spec §1.2).
    if !redis_ffi::create_command(ctx, "rg.triggeronkey", Some(c_triggeronkey), USER, 2, 2, 1) {
        return Err("could not register command rg.triggeronkey".into());
    }
    Ok(())
}

/// An argument as text (lossy: used for ids and option names, never for script bodies).
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}
