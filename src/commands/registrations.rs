//! Registration commands: RG.DUMPREGISTRATIONS, RG.UNREGISTER, RG.CLEARREGISTRATIONSSTATS,
//! RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS, and the replicated RG.INNERREGISTER /
//! RG.INNERUNREGISTER. Reply shapes follow spec §1.1.

use gearbox_engine::errors::EngineError;
use gearbox_engine::{ReaderKind, Registration, Value};

use std::sync::Arc;

use super::viewer::Viewer;
use super::{text, Reply};
use crate::events::{install, streams};
use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::redis_hooks;

/// A Python string literal (the PD string is `eval()`ed by gears-cli).
fn py_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n"))
}

/// RedisGears' session descriptor ("PD") of a registration's session.
pub fn session_pd(reg: &Registration) -> String {
    let gb = gearbox::get();
    let s = &reg.session;
    let regs = gb.engine.registrations.ids_of_session(s.owner.as_deref(), &s.id);
    let ref_count = std::sync::Arc::strong_count(s);
    format!(
        "{{'sessionName':{}, 'sessionDescription':{}, 'refCount':{}, 'linkedTo':'primary', 'dead':{}, 'isInstallationNeeded':0, 'registrationsList':[{}], 'depsList':[]}}",
        py_str(&s.id),
        s.description.as_deref().map(py_str).unwrap_or_else(|| "None".into()),
        ref_count,
        if s.is_dead() { "True" } else { "False" },
        regs.iter().map(|r| py_str(r)).collect::<Vec<_>>().join(", "),
    )
}

/// RegistrationData of one registration.
fn registration_data(reg: &Registration) -> Value {
    let s = reg.stats();
    let stream = reg.spec.reader == ReaderKind::Stream;
    let mut items = vec![
        ("mode", Value::bulk(reg.spec.mode.as_str())),
        ("numTriggered", Value::Int(s.triggered as i64)),
        ("numSuccess", Value::Int(s.success as i64)),
        ("numFailures", Value::Int(s.failures as i64)),
        ("numAborted", Value::Int(s.aborted as i64)),
        ("lastRunDurationMS", Value::Int(s.last_ms as i64)),
        ("totalRunDurationMS", Value::Int(s.total_ms as i64)),
        ("avgRunDurationMS", Value::Double(s.avg_ms())),
    ];
    if stream {
        let (last, total) = reg.stream.lock().unwrap_or_else(|e| e.into_inner()).lag();
        let runs = s.success + s.failures + s.aborted;
        let avg = if runs == 0 { 0.0 } else { total.as_millis() as f64 / runs as f64 };
        items.extend([("lastEstimatedLagMS", Value::Int(last.as_millis() as i64)), ("avgEstimatedLagMS", Value::Double(avg))]);
    }
    items.extend([("lastError", s.last_error.clone().map(Value::bulk).unwrap_or(Value::Nil)), ("args", reg.spec.args_value())]);
    if stream {
        let status = reg.stream.lock().unwrap_or_else(|e| e.into_inner()).status();
        items.push(("status", Value::bulk(status.as_str())));
    }
    Value::pairs(items)
}

/// One RG.DUMPREGISTRATIONS entry; `with_pd` false for RG.PYDUMPSESSIONS VERBOSE.
pub fn registration_value(reg: &Registration, with_pd: bool) -> Value {
    let mut items = vec![
        ("id", Value::bulk(reg.id.clone())),
        ("reader", Value::bulk(reg.spec.reader.as_str())),
        ("desc", reg.spec.desc.clone().map(Value::bulk).unwrap_or(Value::Nil)),
        ("RegistrationData", registration_data(reg)),
    ];
    if with_pd {
        items.push(("PD", Value::bulk(session_pd(reg))));
    }
    items.push(("ExecutionThreadPool", Value::bulk("DefaultPool")));
    // A server running both runtimes says which one each registration's session runs in (a
    // single-runtime server keeps RedisGears' shape).
    if gearbox::get().runtimes.policy.is_mixed() {
        items.push(("runtime", Value::bulk(reg.session.interpreter().runtime().as_str())));
    }
    Value::pairs(items)
}

pub fn dump(ctx: Ctx, _: &[Vec<u8>]) -> Reply {
    let viewer = Viewer::of(ctx);
    let regs = gearbox::get().engine.registrations.all();
    Reply::Value(Value::Array(
        regs.iter().filter(|r| viewer.sees(r.session.owner.as_deref())).map(|r| registration_value(r, true)).collect(),
    ))
}

/// The registration `id` if `viewer` may see it (another owner's is as good as unknown).
fn visible(viewer: &Viewer, id: &str) -> Option<Arc<Registration>> {
    gearbox::get().engine.registrations.get(id).filter(|r| viewer.sees(r.session.owner.as_deref()))
}

/// Remove a registration (and abort its queued executions with `abortpending`); `viewer` must
/// see it (None: replication, which acts for the master).
fn unregister_local(viewer: Option<&Viewer>, args: &[Vec<u8>]) -> Result<(), Reply> {
    let abort_pending = match args.get(2).map(|a| text(a).to_ascii_lowercase()) {
        None => false,
        Some(word) if word == "abortpending" => true,
        Some(word) => return Err(Reply::error(EngineError::UnknownArgument(word).to_string())),
    };
    let id = text(&args[1]);
    if let Some(viewer) = viewer {
        if visible(viewer, &id).is_none() {
            return Err(Reply::error(EngineError::NotRegistered.to_string()));
        }
    }
    let engine = &gearbox::get().engine;
    let reg = engine.registrations.remove(&id).map_err(|e| Reply::error(e.to_string()))?;
    // A StreamReader's queued batches never start once it is gone (RedisGears); other readers'
    // only with `abortpending`. Either way its executions leave RG.DUMPEXECUTIONS.
    engine.forget_executions_of(&reg, abort_pending || reg.spec.reader == ReaderKind::Stream);
    Ok(())
}

pub fn unregister(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 2 || args.len() > 3 {
        return Reply::WrongArity;
    }
    if let Err(reply) = unregister_local(Some(&Viewer::of(ctx)), args) {
        return reply;
    }
    let rest: Vec<&[u8]> = args[1..].iter().map(|a| a.as_slice()).collect();
    redis_hooks::replicate(ctx, "RG.INNERUNREGISTER", &rest);
    Reply::ok()
}

/// Whether `ctx` runs a command from the master link or from loading (RDB/AOF), the only
/// senders of gearbox's internal commands.
fn from_replication_or_loading(ctx: Ctx) -> bool {
    let flags = redis_ffi::context_flags(ctx);
    flags & (redis_module::raw::REDISMODULE_CTX_FLAGS_REPLICATED | redis_module::raw::REDISMODULE_CTX_FLAGS_LOADING) != 0
}

pub fn inner_unregister(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if !from_replication_or_loading(ctx) {
        return Reply::error(gearbox_engine::errors::internal_command("RG.INNERUNREGISTER"));
    }
    if args.len() < 2 || args.len() > 3 {
        return Reply::WrongArity;
    }
    match unregister_local(None, args) {
        Ok(()) => Reply::ok(),
        Err(reply) => reply,
    }
}

pub fn inner_register(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if !from_replication_or_loading(ctx) {
        return Reply::error(gearbox_engine::errors::internal_command("RG.INNERREGISTER"));
    }
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    let (saved, replacing, requirements) = match install::decode_inner(&args[1]) {
        Ok(v) => v,
        Err(e) => return Reply::error(format!("gearbox: bad RG.INNERREGISTER payload: {e}")),
    };
    let id = saved.id.clone();
    // One that fails is logged; the session then needs it installed here already.
    let _ = crate::events::requirements::import(&requirements);
    match install::restore(saved, replacing, redis_hooks::is_loading(ctx)) {
        Ok(()) => Reply::ok(),
        Err(e) => {
            redis_ffi::log("warning", &format!("gearbox: could not apply session {id}: {e}"));
            Reply::error(format!("gearbox: could not apply session {id}: {e}"))
        }
    }
}

pub fn clear_stats(ctx: Ctx, _: &[Vec<u8>]) -> Reply {
    let viewer = Viewer::of(ctx);
    for reg in gearbox::get().engine.registrations.all().into_iter().filter(|r| viewer.sees(r.session.owner.as_deref())) {
        reg.clear_stats();
    }
    Reply::ok()
}

fn pause_or_unpause(ctx: Ctx, args: &[Vec<u8>], pause: bool) -> Reply {
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    let gb = gearbox::get();
    let id = text(&args[1]);
    let Some(reg) = visible(&Viewer::of(ctx), &id) else {
        return Reply::error(format!("Execution {id} does not exists on shard {}", gb.engine.shard_id()));
    };
    let reader = reg.spec.reader.as_str().to_string();
    match (reg.spec.reader, pause) {
        (ReaderKind::Stream, true) => {
            streams::pause(&reg);
            Reply::ok()
        }
        (ReaderKind::Stream, false) => {
            streams::unpause(RedisLock::acquire().held(), &reg);
            Reply::ok()
        }
        (_, true) => Reply::error(EngineError::NoPause(reader).to_string()),
        (_, false) => Reply::error(EngineError::NoUnpause(reader).to_string()),
    }
}

pub fn pause(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    pause_or_unpause(ctx, args, true)
}

pub fn unpause(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    pause_or_unpause(ctx, args, false)
}
