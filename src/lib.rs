//! gearbox: RedisGears 1.x compatible Python scripting for Redis, where every script runs in an
//! interpreter of its own (a CPython sub-interpreter, or later a wasm instance).
//!
//! This file is the module's entry: it reads the load-time arguments, starts the runtime and the
//! engine, and registers the commands. Everything else lives in the modules below; see
//! ARCHITECTURE.md for the map.

pub mod commands;
pub mod config;
pub mod events;
pub mod gearbox;
pub mod host;
pub mod memory;
pub mod runtime;

use std::ffi::c_int;

use gearbox_engine::Engine;
use redis_module::raw;

use host::redis_ffi::{self, Ctx};

/// The name clients look for in MODULE LIST (RedisGears registers as `rg`).
const MODULE_NAME: &std::ffi::CStr = c"rg";
const MODULE_VERSION: c_int = 1;

fn load(ctx: Ctx, argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Result<(), String> {
    // SAFETY: OnLoad's arguments, as Redis passed them.
    let args: Vec<String> = unsafe { redis_ffi::args_of(argv, argc) }
        .into_iter()
        .map(|a| String::from_utf8(a).map_err(|_| "module arguments must be UTF-8".to_string()))
        .collect::<Result<_, _>>()?;
    let mut config = config::Config::from_load_args(&args)?;
    config.settle_requirements_dir();
    redis_ffi::init_globals(ctx);
    let runtimes = runtime::Runtimes::start(&config)?;
    let engine = Engine::new(config.execution_threads()).map_err(|e| format!("could not start the execution threads: {e}"))?;
    let loaded = loaded_line(&runtimes.policy);
    gearbox::install(config, engine, runtimes)?;
    host::control::install(&events::control::CONTROL);
    commands::register_all(ctx)?;
    host::redis_hooks::install(
        ctx,
        host::redis_hooks::Hooks {
            keyspace: events::keyspace::on_event,
            loading: events::persistence::loading,
            promoted: events::streams::promoted,
            save: events::persistence::save,
            load: events::persistence::load,
        },
    )?;
    events::hooks::install(ctx)?;
    events::keyed_timers::install_type(ctx)?;
    redis_ffi::register_info(ctx, Some(commands::info::info));
    redis_ffi::log_with(ctx, "notice", &format!("{loaded}, {} execution threads", gearbox::get().engine.execution_threads()));
    Ok(())
}

/// The load log line's start: the mode, the policy if any, the Python version of each runtime.
fn loaded_line(policy: &gearbox_engine::RuntimePolicy) -> String {
    let mode = policy.default;
    match &policy.native_users {
        None => format!("gearbox loaded: mode {}, Python {}", mode.as_str(), runtime::python_version(mode)),
        Some(users) => format!(
            "gearbox loaded: native and wasm sessions (native allowed to {}, default {}; everyone else wasm), Python {} and {}",
            users.join(","),
            mode.as_str(),
            runtime::python_version(gearbox_engine::RuntimeKind::Native),
            runtime::python_version(gearbox_engine::RuntimeKind::Wasm)
        ),
    }
}

/// Called by Redis on `--loadmodule` / `MODULE LOAD`.
///
/// # Safety
/// Called by Redis with a valid context and `argc` module arguments.
#[no_mangle]
pub unsafe extern "C" fn RedisModule_OnLoad(ctx: *mut raw::RedisModuleCtx, argv: *mut *mut raw::RedisModuleString, argc: c_int) -> c_int {
    let err = raw::REDISMODULE_ERR as c_int;
    // SAFETY: the first call of OnLoad, with Redis' context.
    if !unsafe { redis_ffi::init_api(ctx, MODULE_NAME, MODULE_VERSION) } {
        return err;
    }
    let ctx = Ctx(ctx);
    match std::panic::catch_unwind(|| load(ctx, argv, argc)) {
        Ok(Ok(())) => raw::REDISMODULE_OK as c_int,
        Ok(Err(message)) => {
            redis_ffi::log_with(ctx, "warning", &format!("gearbox failed to load: {message}"));
            err
        }
        Err(_) => {
            redis_ffi::log_with(ctx, "warning", "gearbox failed to load: internal error (panic)");
            err
        }
    }
}

/// Refuse `MODULE UNLOAD`: an embedded CPython cannot be finalised and started again in one
/// process, and interpreters may be running.
///
/// # Safety
/// Called by Redis with a valid context.
#[no_mangle]
pub unsafe extern "C" fn RedisModule_OnUnload(ctx: *mut raw::RedisModuleCtx) -> c_int {
    let _ = std::panic::catch_unwind(|| {
        redis_ffi::log_with(
            Ctx(ctx),
            "warning",
            "gearbox cannot be unloaded (embedded Python cannot restart); restart redis-server instead",
        );
    });
    raw::REDISMODULE_ERR as c_int
}
