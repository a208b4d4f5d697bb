//! Firing one registration with one event record: a `sync` registration runs here, inline, under
//! ScriptTimeoutMS (the caller holds the Redis lock); any other becomes a kept execution on the
//! pool. Shared by keyspace events, stream batches, RG.TRIGGER and command hooks. The job runs
//! under its command context (or none): see `command_ctx`.

use std::sync::Arc;

use gearbox_engine::errors::EngineError;
use gearbox_engine::{Execution, Job, Mode, Outcome, Registration, RunControl, StepInfo, Value};

use super::command_ctx::{self, CommandCtx};
use crate::commands::pyexecute::blocking_forbidden;
use crate::commands::Reply;
use crate::gearbox;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::redis_hooks;

pub enum Fired {
    Inline(Arc<Outcome>),
    Started(Arc<Execution>),
}

pub fn fire(reg: &Arc<Registration>, record: Value, command: Option<Arc<CommandCtx>>) -> Fired {
    let gb = gearbox::get();
    let (timeout, max_executions, per_registration) = {
        let c = gb.config();
        (c.script_timeout(), c.max_executions(), c.max_executions_per_registration())
    };
    let inline = reg.spec.mode == Mode::Sync;
    let job = Box::new(FiredJob { job: reg.session.interpreter().event_job(reg.spec.handle, record, inline), command, reg: reg.clone() });
    if inline {
        Fired::Inline(gb.engine.run_inline(reg, job, timeout, max_executions, per_registration))
    } else {
        Fired::Started(gb.engine.start_event(reg, job, max_executions, per_registration))
    }
}

/// Fire `reg` for the command of client `ctx` (RG.TRIGGER, a hooked command) and answer the
/// client with `reply(outcome)`: right away for a sync registration, else once the execution
/// is done (the client is blocked). Where the client may not block (MULTI, Lua, loading), a
/// non-sync registration gets RedisGears' error instead.
pub fn fire_for_client(ctx: Ctx, reg: &Arc<Registration>, record: Value, command: Option<Arc<CommandCtx>>, reply: fn(&Outcome) -> Value) -> Reply {
    if reg.spec.mode != Mode::Sync && (blocking_forbidden(ctx) || redis_hooks::is_loading(ctx)) {
        return Reply::error(EngineError::TriggerNeedsBlocking.to_string());
    }
    match fire(reg, record, command) {
        Fired::Inline(outcome) => Reply::Value(reply(&outcome)),
        Fired::Started(exec) => {
            let client = redis_ffi::block_client(ctx);
            exec.on_done(move |outcome| client.reply(&reply(outcome)));
            Reply::Blocked
        }
    }
}

/// A fired job: the command context it runs under (none for most events) and the steps
/// RG.GETEXECUTION shows for it (the registration's plan).
struct FiredJob {
    job: Box<dyn Job>,
    command: Option<Arc<CommandCtx>>,
    /// Whose plan the steps are (read once, when the execution is made).
    reg: Arc<Registration>,
}

impl Job for FiredJob {
    fn steps(&self) -> Vec<StepInfo> {
        self.reg.spec.steps.clone()
    }

    fn run(self: Box<Self>, control: &RunControl) -> Outcome {
        let FiredJob { job, command, .. } = *self;
        command_ctx::run_under(command, || job.run(control))
    }
}
