//! One execution: its status, its plan's steps, its outcome and who waits for it.
//!
//! An execution holds its session only while it may still run Python; once done it keeps just
//! the converted results, so a finished execution never keeps an interpreter alive.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::errors;
use crate::port::{Job, RunControl, StepInfo};
use crate::session::Session;
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionStatus {
    Created,
    Running,
    Done,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Created => "created",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Done => "done",
            ExecutionStatus::Aborted => "aborted",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, ExecutionStatus::Done | ExecutionStatus::Aborted)
    }
}

/// What an execution produced: result records, error texts, and (with ProfileExecutions) the
/// milliseconds spent in each step of the plan, the reader first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub results: Vec<Value>,
    pub errors: Vec<String>,
    pub step_ms: Vec<u64>,
}

impl Outcome {
    pub fn new(results: Vec<Value>, errors: Vec<String>) -> Outcome {
        Outcome { results, errors, step_ms: Vec::new() }
    }

    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome::new(Vec::new(), vec![error.into()])
    }

    pub fn to_reply(&self) -> Value {
        Value::results_pair(&self.results, &self.errors)
    }
}

type Waiter = Box<dyn FnOnce(&Outcome) + Send>;

/// The message of a caught panic, when it has one.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default()
}

struct State {
    status: ExecutionStatus,
    job: Option<Box<dyn Job>>,
    session: Option<Arc<Session>>,
    outcome: Option<Arc<Outcome>>,
    waiters: Vec<Waiter>,
    started: Option<Instant>,
    duration: Duration,
}

pub struct Execution {
    pub id: String,
    /// Kept in RG.DUMPEXECUTIONS after it finishes (UNBLOCKING runs); blocking runs are not.
    pub kept: bool,
    /// Started by a registration (RG.DUMPEXECUTIONS' `registered` 1).
    pub registered: bool,
    /// Its session's owner (kept after the session is let go): who may see and control it.
    pub owner: Option<String>,
    steps: Vec<StepInfo>,
    control: RunControl,
    state: Mutex<State>,
}

/// A snapshot for RG.GETEXECUTION.
#[derive(Clone, Debug)]
pub struct ExecutionReport {
    pub status: ExecutionStatus,
    pub result_count: Option<usize>,
    pub errors: Vec<String>,
    pub total_ms: u64,
    pub steps: Vec<StepInfo>,
    /// Per step, aligned with `steps`; zeros unless profiled.
    pub step_ms: Vec<u64>,
}

impl Execution {
    pub fn new(id: String, session: Arc<Session>, job: Box<dyn Job>, kept: bool) -> Arc<Execution> {
        let steps = job.steps();
        Arc::new(Execution {
            id,
            kept,
            registered: false,
            owner: session.owner.clone(),
            steps,
            control: RunControl::default(),
            state: Mutex::new(State {
                status: ExecutionStatus::Created,
                job: Some(job),
                session: Some(session),
                outcome: None,
                waiters: Vec::new(),
                started: None,
                duration: Duration::ZERO,
            }),
        })
    }

    /// An execution a registration's event started: kept, and marked `registered`; `control`
    /// carries the deadline of a sync registration's inline run.
    pub fn for_registration(id: String, session: Arc<Session>, job: Box<dyn Job>, control: RunControl) -> Arc<Execution> {
        let mut exec = Execution::new(id, session, job, true);
        if let Some(e) = Arc::get_mut(&mut exec) {
            e.registered = true;
            e.control = control;
        }
        exec
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> ExecutionStatus {
        self.state().status
    }

    pub fn outcome(&self) -> Option<Arc<Outcome>> {
        self.state().outcome.clone()
    }

    /// Whether the session is still held (the execution may still run Python).
    pub fn holds_session(&self) -> bool {
        self.state().session.is_some()
    }

    pub fn report(&self) -> ExecutionReport {
        let st = self.state();
        let total = match (st.status, st.started) {
            (ExecutionStatus::Running, Some(t)) => t.elapsed(),
            _ => st.duration,
        };
        ExecutionReport {
            status: st.status,
            result_count: st.outcome.as_ref().map(|o| o.results.len()),
            errors: st.outcome.as_ref().map(|o| o.errors.clone()).unwrap_or_default(),
            total_ms: total.as_millis() as u64,
            steps: self.steps.clone(),
            step_ms: (0..self.steps.len()).map(|i| st.outcome.as_ref().and_then(|o| o.step_ms.get(i).copied()).unwrap_or(0)).collect(),
        }
    }

    /// Call `f` with the outcome once done: now if already done, else from the finishing thread.
    pub fn on_done(&self, f: impl FnOnce(&Outcome) + Send + 'static) {
        let mut st = self.state();
        match st.outcome.clone() {
            Some(outcome) => {
                drop(st);
                f(&outcome);
            }
            None => st.waiters.push(Box::new(f)),
        }
    }

    /// Run the job on the calling (execution) thread. Called once, by the pool.
    pub fn run(&self) {
        let job = {
            let mut st = self.state();
            if st.status != ExecutionStatus::Created {
                // Aborted before it started: it concluded then (see `abort`); its job and session
                // are let go here, on the pool's thread, never on the thread that aborted it.
                let (job, session) = (st.job.take(), st.session.take());
                drop(st);
                drop(job);
                drop(session);
                return;
            }
            st.status = ExecutionStatus::Running;
            st.started = Some(Instant::now());
            st.job.take()
        };
        // A panic in the job (a bug of gearbox's, never a script's error) must not leave the
        // execution running and its client blocked forever: it fails the execution instead.
        let outcome = match job {
            Some(job) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&self.control)))
                .unwrap_or_else(|panic| Outcome::failed(errors::internal_panic(&panic_text(&panic)))),
            None => Outcome::failed(errors::EXECUTION_ABORTED),
        };
        self.finish(outcome);
    }

    fn finish(&self, outcome: Outcome) {
        let outcome = Arc::new(outcome);
        let (waiters, session, job) = {
            let mut st = self.state();
            if st.status != ExecutionStatus::Aborted {
                st.status = ExecutionStatus::Done;
            }
            if let Some(t) = st.started {
                st.duration = t.elapsed();
            }
            st.outcome = Some(outcome.clone());
            (std::mem::take(&mut st.waiters), st.session.take(), st.job.take())
        };
        // Dropped outside the lock: freeing a job or the last session reference runs runtime code.
        drop(job);
        drop(session);
        for w in waiters {
            w(&outcome);
        }
    }

    /// RG.ABORTEXECUTION: a created execution becomes `aborted` and concludes at once (its
    /// waiters hear "Execution was aborted" now, not when the pool reaches it); a running one is
    /// interrupted (it then ends `done` with an error); a finished one is left alone.
    pub fn abort(&self) {
        let interrupter = {
            let mut st = self.state();
            match st.status {
                ExecutionStatus::Created => {
                    st.status = ExecutionStatus::Aborted;
                    let outcome = Arc::new(Outcome::failed(errors::EXECUTION_ABORTED));
                    st.outcome = Some(outcome.clone());
                    let waiters = std::mem::take(&mut st.waiters);
                    drop(st);
                    for w in waiters {
                        w(&outcome);
                    }
                    return;
                }
                ExecutionStatus::Running => self.control.abort(),
                _ => None,
            }
        };
        if let Some(f) = interrupter {
            // The interrupter may wait for the interpreter's lock: never on the caller's thread,
            // which may be Redis' main thread.
            let spawned = std::thread::Builder::new().name("gearbox-abort".into()).spawn(move || f());
            if let Err(e) = spawned {
                eprintln!("gearbox: could not start the abort thread: {e}");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::tests::session;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct FixedJob(pub Outcome);
    impl Job for FixedJob {
        fn steps(&self) -> Vec<StepInfo> {
            vec![StepInfo { kind: "map".into(), name: "RedisGearsPy_PyCallbackMapper".into(), arg: String::new() }]
        }
        fn run(self: Box<Self>, _: &RunControl) -> Outcome {
            self.0
        }
    }

    fn ok_outcome() -> Outcome {
        Outcome::new(vec![Value::bulk("1")], vec![])
    }

    struct PanickingJob;
    impl Job for PanickingJob {
        fn steps(&self) -> Vec<StepInfo> {
            Vec::new()
        }
        fn run(self: Box<Self>, _: &RunControl) -> Outcome {
            panic!("bug in a job")
        }
    }

    #[test]
    fn a_panicking_job_fails_its_execution_and_wakes_its_waiters() {
        let s = session("s");
        let e = Execution::new("x-1".into(), s.clone(), Box::new(PanickingJob), false);
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        e.on_done(move |o| {
            assert!(o.errors[0].contains("bug in a job"), "{:?}", o.errors);
            w.fetch_add(1, Ordering::SeqCst);
        });
        e.run();
        assert_eq!(e.status(), ExecutionStatus::Done);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&s), 1, "the session is released");
    }

    #[test]
    fn runs_once_and_releases_the_session() {
        let s = session("s");
        let e = Execution::new("x-1".into(), s.clone(), Box::new(FixedJob(ok_outcome())), true);
        assert_eq!(Arc::strong_count(&s), 2);
        assert_eq!(e.status(), ExecutionStatus::Created);
        e.run();
        assert_eq!(e.status(), ExecutionStatus::Done);
        assert_eq!(Arc::strong_count(&s), 1, "a finished execution must not hold its session");
        assert_eq!(e.outcome().unwrap().results, vec![Value::bulk("1")]);
        assert_eq!(e.report().result_count, Some(1));
    }

    #[test]
    fn waiters_fire_once_whether_registered_before_or_after() {
        let e = Execution::new("x-1".into(), session("s"), Box::new(FixedJob(ok_outcome())), false);
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        e.on_done(move |o| {
            assert_eq!(o.results.len(), 1);
            h.fetch_add(1, Ordering::SeqCst);
        });
        e.run();
        let h = hits.clone();
        e.on_done(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn aborting_before_start_skips_the_job() {
        let e = Execution::new("x-1".into(), session("s"), Box::new(FixedJob(ok_outcome())), true);
        e.abort();
        assert_eq!(e.status(), ExecutionStatus::Aborted);
        e.run();
        assert_eq!(e.status(), ExecutionStatus::Aborted);
        assert_eq!(e.outcome().unwrap().errors, vec![errors::EXECUTION_ABORTED.to_string()]);
    }

    #[test]
    fn aborting_before_start_concludes_at_once_and_the_pool_lets_the_session_go() {
        let e = Execution::new("x-1".into(), session("s"), Box::new(FixedJob(ok_outcome())), true);
        let (tx, rx) = std::sync::mpsc::channel();
        e.on_done(move |o| tx.send(o.errors.clone()).unwrap());
        e.abort();
        assert_eq!(rx.try_recv().unwrap(), vec![errors::EXECUTION_ABORTED.to_string()], "heard at abort time");
        assert!(e.holds_session(), "the aborting thread does not drop the job or the session");
        e.run();
        assert!(!e.holds_session(), "the pool's run lets them go");
        assert!(rx.try_recv().is_err(), "waiters hear once");
    }

    #[test]
    fn aborting_a_done_execution_changes_nothing() {
        let e = Execution::new("x-1".into(), session("s"), Box::new(FixedJob(ok_outcome())), true);
        e.run();
        e.abort();
        assert_eq!(e.status(), ExecutionStatus::Done);
    }
}
