//! Firing one registration with one event record: a `sync` registration runs here, inline, under
//! ScriptTimeoutMS (every entry takes the proof that the Redis lock is held); any other becomes a kept execution on the
//! pool. Shared by keyspace events, stream batches, RG.TRIGGER and command hooks. The job runs
//! under its command context (or none): see `command_ctx`.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gearbox_engine::errors::EngineError;
use gearbox_engine::{Execution, Job, Mode, Outcome, Registration, RunControl, Session, StepInfo, Value};

use super::command_ctx::{self, CommandCtx};
use crate::gearbox;
use crate::host::lock::{self, Locked};
use crate::host::redis_ffi::blocking_forbidden;
use crate::host::redis_ffi::{self, Ctx};
use crate::host::reply::Reply;
use crate::host::{acl_users, redis_hooks};

pub enum Fired {
    Inline(Arc<Outcome>),
    Started(Arc<Execution>),
}

thread_local! {
    /// How deep in a chain of registrations firing each other the job on this thread is (0:
    /// none runs here). A fired job's writes raise events on the thread that runs it, so the
    /// registrations they fire are one deeper.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

pub fn fire(locked: Locked<'_>, reg: &Arc<Registration>, record: Value, command: Option<Arc<CommandCtx>>) -> Fired {
    fire_as(locked, reg, record, command, None)
}

/// [`fire`], with the job's calls acting as the user `acting_as` instead of the registration's
/// owner (a shared trigger with invoker's rights, fired by another user).
pub fn fire_as(
    locked: Locked<'_>,
    reg: &Arc<Registration>,
    record: Value,
    command: Option<Arc<CommandCtx>>,
    acting_as: Option<String>,
) -> Fired {
    if let Err(why) = owner_may_act(locked, reg).and_then(|()| within_depth(reg)) {
        return Fired::Inline(Arc::new(Outcome { errors: vec![why], ..Outcome::default() }));
    }
    let depth = DEPTH.get() + 1;
    let gb = gearbox::get();
    let (timeout, max_executions, per_registration) = {
        let c = gb.config();
        (c.script_timeout(), c.max_executions(), c.max_executions_per_registration())
    };
    let inline = reg.spec.mode == Mode::Sync;
    let job = Box::new(FiredJob {
        job: reg.session.interpreter().event_job(reg.spec.handle, record, inline),
        command,
        reg: reg.clone(),
        depth,
        acting_as,
    });
    if inline {
        Fired::Inline(gb.engine.run_inline(reg, job, timeout, max_executions, per_registration))
    } else {
        Fired::Started(gb.engine.start_event(reg, job, max_executions, per_registration))
    }
}

/// A registration whose owner was deleted or disabled stops firing: the event gets the error
/// (a waiting client sees it) and the log says so once per registration and ACL change.
fn owner_may_act(locked: Locked<'_>, reg: &Registration) -> Result<(), String> {
    owner_usable(locked, &reg.session).map_err(|why| {
        static LOGGED: Mutex<Option<HashSet<(String, u64)>>> = Mutex::new(None);
        let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
        if logged.get_or_insert_with(HashSet::new).insert((reg.id.clone(), acl_users::generation())) {
            redis_ffi::log("warning", &format!("gearbox: registration {} does not fire: {why}", reg.id));
        }
        why
    })
}

/// Registrations that fire each other through their own writes stop at MaxTriggerDepth (a
/// registration whose writes fire itself would otherwise run forever); logged once per
/// registration.
fn within_depth(reg: &Registration) -> Result<(), String> {
    let max = gearbox::get().config().limit("MaxTriggerDepth").max(1) as u32;
    if DEPTH.get() < max {
        return Ok(());
    }
    static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if LOGGED.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashSet::new).insert(reg.id.clone()) {
        redis_ffi::log(
            "warning",
            &format!("gearbox: registration {} not fired: registrations fired each other {max} deep (MaxTriggerDepth)", reg.id),
        );
    }
    Err(format!("gearbox: registration {} not fired: chain of registrations deeper than MaxTriggerDepth ({max})", reg.id))
}

/// Whether `session`'s owner exists and is enabled (the error text when not).
pub fn owner_usable(locked: Locked<'_>, session: &Session) -> Result<(), String> {
    let Some(owner) = session.owner.as_deref() else {
        return Err("NOPERM gearbox: this session has no ACL user to act as".into());
    };
    acl_users::resolve(locked, owner).map(drop)
}

/// Fire `reg` for the command of client `ctx` (RG.TRIGGER, a hooked command) and answer the
/// client with `reply(outcome)`: right away for a sync registration, else once the execution
/// is done (the client is blocked). Where the client may not block (MULTI, Lua, loading), a
/// non-sync registration gets RedisGears' error instead.
pub fn fire_for_client(
    locked: Locked<'_>,
    ctx: Ctx,
    reg: &Arc<Registration>,
    record: Value,
    command: Option<Arc<CommandCtx>>,
    acting_as: Option<String>,
    reply: fn(&Outcome) -> Value,
) -> Reply {
    if reg.spec.mode != Mode::Sync && (blocking_forbidden(ctx) || redis_hooks::is_loading(ctx)) {
        return Reply::error(EngineError::TriggerNeedsBlocking.to_string());
    }
    match fire_as(locked, reg, record, command, acting_as) {
        Fired::Inline(outcome) => Reply::Value(reply(&outcome)),
        Fired::Started(exec) => {
            let client = redis_ffi::block_client(ctx);
            exec.on_done(move |outcome| client.reply(&reply(outcome)));
            Reply::Blocked
        }
    }
}

/// The outcome of a callback, failed if it left an `atomic()` block open (whose lock this
/// gives back: a block never outlives the callback that opened it).
pub fn atomic_given_back(mut outcome: Outcome) -> Outcome {
    if lock::atomic_end_if_open() {
        outcome.errors.push(lock::ATOMIC_LEFT_OPEN.to_string());
    }
    if lock::atomic_timed_out() {
        let ms = gearbox::get().config().script_timeout().as_millis();
        outcome.errors.push(format!("atomic() block held the Redis lock past ScriptTimeoutMS ({ms} ms) and was stopped"));
    }
    outcome
}

/// Run `job` with what interrupts it known to the host (an `atomic()` block held too long is
/// stopped through it), then close any `atomic()` block it left open.
pub fn run_job(job: Box<dyn Job>, control: &RunControl) -> Outcome {
    atomic_given_back(lock::while_running(control.interrupt_handle(), || job.run(control)))
}

/// A job of RG.PYEXECUTE's `run()`, whose `atomic()` blocks end with it.
pub struct PlanJob(pub Box<dyn Job>);

impl Job for PlanJob {
    fn steps(&self) -> Vec<StepInfo> {
        self.0.steps()
    }

    fn run(self: Box<Self>, control: &RunControl) -> Outcome {
        run_job(self.0, control)
    }
}

/// A fired job: the command context it runs under (none for most events) and the steps
/// RG.GETEXECUTION shows for it (the registration's plan).
struct FiredJob {
    job: Box<dyn Job>,
    command: Option<Arc<CommandCtx>>,
    /// Whose plan the steps are (read once, when the execution is made).
    reg: Arc<Registration>,
    /// Its place in a chain of registrations firing each other.
    depth: u32,
    /// Whom its calls act as (None: the registration's owner).
    acting_as: Option<String>,
}

impl Job for FiredJob {
    fn steps(&self) -> Vec<StepInfo> {
        self.reg.spec.steps.clone()
    }

    fn run(self: Box<Self>, control: &RunControl) -> Outcome {
        let FiredJob { job, command, reg, depth, acting_as } = *self;
        // Unregistered (or replaced) while this execution waited: it does not run.
        let current = gearbox::get().engine.registrations.get(&reg.id);
        if !current.is_some_and(|r| Arc::ptr_eq(&r, &reg)) {
            return Outcome::failed(format!("registration {} was unregistered before this execution ran", reg.id));
        }
        struct Restore(u32);
        impl Drop for Restore {
            fn drop(&mut self) {
                DEPTH.set(self.0);
            }
        }
        let _restore = Restore(DEPTH.replace(depth));
        acl_users::acting_as(acting_as, || command_ctx::run_under(command, || run_job(job, control)))
    }
}
