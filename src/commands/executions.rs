//! Execution commands: RG.DUMPEXECUTIONS, RG.GETEXECUTION, RG.GETRESULTS,
//! RG.GETRESULTSBLOCKING, RG.DROPEXECUTION, RG.ABORTEXECUTION (shapes: spec §1.1).

use gearbox_engine::errors::{self, EngineError};
use gearbox_engine::execution::ExecutionReport;
use gearbox_engine::Value;

use std::sync::Arc;

use gearbox_engine::Execution;

use super::viewer::Viewer;
use super::{text, Reply};
use crate::gearbox;
use crate::host::lock::RedisLock;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::redis_hooks;

fn engine_error(e: EngineError) -> Reply {
    Reply::error(e.to_string())
}

/// The execution `id` if the caller may see it; another owner's answers `unknown` (the error an
/// unknown id gets from that command).
fn visible(ctx: Ctx, id: &[u8], unknown: EngineError) -> Result<Arc<Execution>, Reply> {
    let exec = gearbox::get().engine.executions.get(&text(id)).ok_or_else(|| engine_error(unknown.clone()))?;
    if !Viewer::of(ctx).sees(exec.owner.as_deref()) {
        return Err(engine_error(unknown));
    }
    Ok(exec)
}

pub fn dump(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 1 {
        return Reply::WrongArity;
    }
    let viewer = Viewer::of(ctx);
    let list = gearbox::get()
        .engine
        .executions
        .all()
        .iter()
        .filter(|e| viewer.sees(e.owner.as_deref()))
        .map(|e| {
            Value::Array(vec![
                Value::bulk("executionId"),
                Value::bulk(e.id.clone()),
                Value::bulk("status"),
                Value::bulk(e.status().as_str()),
                Value::bulk("registered"),
                Value::Int(e.registered as i64),
            ])
        })
        .collect();
    Reply::Value(Value::Array(list))
}

fn plan_value(report: &ExecutionReport) -> Value {
    let steps = report
        .steps
        .iter()
        .zip(&report.step_ms)
        .map(|(s, ms)| {
            Value::Array(vec![
                Value::bulk("type"),
                Value::bulk(s.kind.clone()),
                Value::bulk("duration"),
                Value::Int(*ms as i64),
                Value::bulk("name"),
                Value::bulk(s.name.clone()),
                Value::bulk("arg"),
                Value::bulk(s.arg.clone()),
            ])
        })
        .collect();
    let finished = report.status.is_finished();
    Value::Array(vec![
        Value::bulk("status"),
        Value::bulk(report.status.as_str()),
        Value::bulk("shards_received"),
        Value::Int(0),
        Value::bulk("shards_completed"),
        Value::Int(0),
        Value::bulk("results"),
        Value::Int(report.result_count.map(|n| n as i64).filter(|_| finished).unwrap_or(-1)),
        Value::bulk("errors"),
        Value::bulks(report.errors.iter().map(|e| e.as_bytes().to_vec())),
        Value::bulk("total_duration"),
        Value::Int(report.total_ms as i64),
        Value::bulk("read_duration"),
        Value::Int(report.step_ms.first().copied().unwrap_or(0) as i64),
        Value::bulk("steps"),
        Value::Array(steps),
    ])
}

pub fn get_execution(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 2 || args.len() > 3 {
        return Reply::WrongArity;
    }
    if let Some(scope) = args.get(2) {
        match text(scope).to_ascii_uppercase().as_str() {
            "SHARD" => {}
            "CLUSTER" => return Reply::error(errors::NO_CLUSTER),
            _ => return Reply::error(errors::UNKNOWN_SUBCOMMAND),
        }
    }
    let engine = &gearbox::get().engine;
    match visible(ctx, &args[1], EngineError::ExecutionPlanNotExist) {
        Ok(exec) => {
            let shard = Value::Array(vec![
                Value::bulk("shard_id"),
                Value::bulk(engine.shard_id()),
                Value::bulk("execution_plan"),
                plan_value(&exec.report()),
            ]);
            Reply::Value(Value::Array(vec![shard]))
        }
        Err(reply) => reply,
    }
}

pub fn get_results(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    match visible(ctx, &args[1], EngineError::ExecutionPlanNotExist) {
        Ok(exec) => match exec.outcome() {
            Some(outcome) => Reply::Value(outcome.to_reply()),
            None => engine_error(EngineError::StillRunning),
        },
        Err(reply) => reply,
    }
}

pub fn get_results_blocking(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    let exec = match visible(ctx, &args[1], EngineError::ExecutionPlanNotExist) {
        Ok(exec) => exec,
        Err(reply) => return reply,
    };
    if let Some(outcome) = exec.outcome() {
        return Reply::Value(outcome.to_reply());
    }
    if super::pyexecute::blocking_forbidden(ctx) {
        return Reply::error(errors::BLOCKING_NOT_ALLOWED);
    }
    let client = redis_ffi::block_client(ctx);
    exec.on_done(move |outcome| client.reply(&outcome.to_reply()));
    Reply::Blocked
}

pub fn drop_execution(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    if let Err(reply) = visible(ctx, &args[1], EngineError::ExecutionPlanNotExist) {
        return reply;
    }
    match gearbox::get().engine.executions.drop_finished(&text(&args[1])) {
        Ok(()) => Reply::ok(),
        Err(e) => engine_error(e),
    }
}

pub fn abort(ctx: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 2 {
        return Reply::WrongArity;
    }
    let exec = match visible(ctx, &args[1], EngineError::ExecutionNotExist) {
        Ok(exec) => exec,
        Err(reply) => return reply,
    };
    if let Err(e) = gearbox::get().engine.abort(&exec.id) {
        return engine_error(e);
    }
    if exec.status().is_finished() || redis_ffi::blocking_forbidden(ctx) {
        return Reply::ok();
    }
    // A running execution is being interrupted: answer once it has stopped, so that
    // RG.DROPEXECUTION right after succeeds (RedisGears). Bounded: a script stuck in one C call
    // for longer gets its OK after ABORT_WAIT and stays listed until it stops.
    let client = Arc::new(std::sync::Mutex::new(Some(redis_ffi::block_client(ctx))));
    let answer = |client: &Arc<std::sync::Mutex<Option<redis_ffi::BlockedClient>>>| {
        if let Some(c) = client.lock().unwrap_or_else(|e| e.into_inner()).take() {
            c.reply(&Value::Status("OK".into()));
        }
    };
    let stopped = client.clone();
    exec.on_done(move |_| answer(&stopped));
    let lock = RedisLock::acquire();
    redis_hooks::after(lock.held(), ABORT_WAIT.as_millis() as u64, Box::new(move |_| answer(&client)));
    Reply::Blocked
}

/// How long RG.ABORTEXECUTION waits for a running execution to stop before answering anyway.
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many executions are listed (INFO rg_nexecutions).
pub fn count() -> usize {
    gearbox::get().engine.executions.len()
}
