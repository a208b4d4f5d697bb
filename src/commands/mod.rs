//! The Redis command layer: one file per command family. Every command enters through
//! [`dispatch`], which decodes arguments, catches panics (a panic must never reach Redis) and
//! writes the [`Reply`]. Error texts come from `gearbox_engine::errors`, the one catalogue.

pub mod config;
pub mod executions;
pub mod info;
pub mod misc;
pub mod pyexecute;
pub mod registrations;
pub mod sessions;
pub mod trigger;

use std::ffi::c_int;

use gearbox_engine::Value;
use redis_module::raw;

use crate::host::redis_ffi::{self, Ctx};

/// What a command handler answers.
pub enum Reply {
    Value(Value),
    /// The client was blocked; someone replies later.
    Blocked,
    WrongArity,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Value(Value::Status("OK".into()))
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Value(Value::Error(text.into()))
    }
}

pub type Handler = fn(Ctx, &[Vec<u8>]) -> Reply;

/// The body of every command's C entry point.
pub fn dispatch(ctx: *mut raw::RedisModuleCtx, argv: *mut *mut raw::RedisModuleString, argc: c_int, handler: Handler) -> c_int {
    let ctx = Ctx(ctx);
    let outcome = std::panic::catch_unwind(|| {
        let args = redis_ffi::args_of(argv, argc);
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
            $crate::commands::dispatch(ctx, argv, argc, $handler)
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

/// The command table: name, entry point, flags. All RG commands are `readonly` with no keys,
/// as in RedisGears (so they are allowed inside MULTI/Lua, where RG.PYEXECUTE then refuses with
/// its own message).
type Entry = unsafe extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

const COMMANDS: &[(&str, Entry)] = &[
    ("rg.pyexecute", c_pyexecute),
    ("rg.dumpexecutions", c_dumpexecutions),
    ("rg.getexecution", c_getexecution),
    ("rg.getresults", c_getresults),
    ("rg.getresultsblocking", c_getresultsblocking),
    ("rg.dropexecution", c_dropexecution),
    ("rg.abortexecution", c_abortexecution),
    ("rg.configget", c_configget),
    ("rg.configset", c_configset),
    ("rg.pydumpsessions", c_pydumpsessions),
    ("rg.pystats", c_pystats),
    ("rg.pydumpreqs", c_pydumpreqs),
    ("rg.infocluster", c_infocluster),
    ("rg.refreshcluster", c_refreshcluster),
    ("rg.networktest", c_networktest),
    ("rg.dumpplugins", c_dumpplugins),
    ("rg.pyexecuteremote", c_executeremote),
    ("rg.pyfreeinterpreter", c_freeinterpreter),
    ("rg.dumpregistrations", c_dumpregistrations),
    ("rg.unregister", c_unregister),
    ("rg.innerunregister", c_innerunregister),
    ("rg.innerregister", c_innerregister),
    ("rg.clearregistrationsstats", c_clearregistrationsstats),
    ("rg.pauseregistrations", c_pauseregistrations),
    ("rg.unpauseregistrations", c_unpauseregistrations),
    ("rg.trigger", c_trigger),
    // What the command filter turns a hooked command into (see events::hooks).
    ("rg.innerhook", c_innerhook),
];

/// Register every command; `Err` names the one Redis refused.
pub fn register_all(ctx: Ctx) -> Result<(), String> {
    for (name, f) in COMMANDS {
        if !redis_ffi::create_command(ctx, name, Some(*f), "readonly", 0, 0, 0) {
            return Err(format!("could not register command {name}"));
        }
    }
    // The key is the second argument, so cluster clients route it (spec §1.2).
    if !redis_ffi::create_command(ctx, "rg.triggeronkey", Some(c_triggeronkey), "readonly", 2, 2, 1) {
        return Err("could not register command rg.triggeronkey".into());
    }
    Ok(())
}

/// An argument as text (lossy: used for ids and option names, never for script bodies).
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}
