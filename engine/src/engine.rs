//! The engine façade the command layer talks to: starts executions on the pool, finds, aborts
//! and drops them, and tracks live sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::errors::{self, EngineError};
use crate::execution::{Execution, Outcome};
use crate::executions::ExecutionRegistry;
use crate::ids::{IdGenerator, STANDALONE_SHARD_ID};
use crate::pool::Pool;
use crate::port::{Job, RunControl};
use crate::registration::Registration;
use crate::registrations::RegistrationRegistry;
use crate::session::{Session, SessionRegistry};

pub struct Engine {
    execution_ids: IdGenerator,
    pub executions: Arc<ExecutionRegistry>,
    pub sessions: SessionRegistry,
    pub registrations: RegistrationRegistry,
    pub requirements: crate::requirements::RequirementRegistry,
    pool: Arc<Pool>,
}

impl Engine {
    pub fn new(execution_threads: usize) -> std::io::Result<Engine> {
        Ok(Engine {
            execution_ids: IdGenerator::new(STANDALONE_SHARD_ID),
            executions: Arc::new(ExecutionRegistry::default()),
            sessions: SessionRegistry::default(),
            registrations: RegistrationRegistry::new(STANDALONE_SHARD_ID),
            requirements: Default::default(),
            pool: Arc::new(Pool::new(execution_threads, "gearbox-exec")?),
        })
    }

    pub fn shard_id(&self) -> &'static str {
        STANDALONE_SHARD_ID
    }

    pub fn execution_threads(&self) -> usize {
        self.pool.size()
    }

    /// Start `job` of `session` on the execution pool. A `kept` execution stays listed after it
    /// finishes; any other is removed before anyone waiting on it hears the outcome.
    pub fn start(&self, session: Arc<Session>, job: Box<dyn Job>, kept: bool, max_executions: usize) -> Arc<Execution> {
        let exec = Execution::new(self.execution_ids.next_id(), session, job, kept);
        self.executions.insert(exec.clone(), max_executions);
        let registry = self.executions.clone();
        if kept {
            exec.on_done(move |_| registry.trim(max_executions));
        } else {
            let id = exec.id.clone();
            exec.on_done(move |_| {
                registry.remove(&id);
            });
        }
        let runner = exec.clone();
        self.pool.spawn(move || runner.run());
        exec
    }

    /// Start an execution of registration `reg` for one event, on the pool. It is kept (at most
    /// `per_registration` finished ones per registration), counted in the registration's
    /// statistics, and, for an `inorder` registration, started only after the previous one.
    pub fn start_event(
        &self,
        reg: &Arc<Registration>,
        job: Box<dyn Job>,
        max_executions: usize,
        per_registration: usize,
    ) -> Arc<Execution> {
        reg.triggered();
        let exec = Execution::for_registration(self.execution_ids.next_id(), reg.session.clone(), job, RunControl::default());
        self.keep_event_execution(reg, &exec, max_executions, per_registration);
        let (stats, weak, registry) = (reg.clone(), Arc::downgrade(&exec), self.executions.clone());
        exec.on_done(move |outcome| {
            let took = weak.upgrade().map(|e| Duration::from_millis(e.report().total_ms)).unwrap_or_default();
            let aborted = outcome.errors.first().is_some_and(|e| e == errors::EXECUTION_ABORTED);
            stats.finished(outcome, took, aborted);
            // Finished now: older kept ones past the caps can go.
            for old in stats.trim(per_registration) {
                registry.remove(&old.id);
            }
            registry.trim(max_executions);
        });
        let runner = exec.clone();
        let pool = self.pool.clone();
        match reg.spec.inorder.then(|| reg.chain(&exec)).flatten() {
            Some(previous) => previous.on_done(move |_| pool.spawn(move || runner.run())),
            None => pool.spawn(move || runner.run()),
        }
        exec
    }

    /// Run `task` on the execution pool.
    pub fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        self.pool.spawn(task);
    }

    /// List a registration's execution (RG.DUMPEXECUTIONS, `registered` 1), keeping at most
    /// `per_registration` of that registration's.
    fn keep_event_execution(&self, reg: &Registration, exec: &Arc<Execution>, max_executions: usize, per_registration: usize) {
        self.executions.insert(exec.clone(), max_executions);
        for old in reg.keep(exec.clone(), per_registration) {
            self.executions.remove(&old.id);
        }
    }

    /// Run registration `reg`'s job on this thread (a sync registration, inside the command
    /// that caused the event), stopped at `timeout`. Like RedisGears, it is an execution of its
    /// own (an id, listed while the registration keeps it).
    pub fn run_inline(
        &self,
        reg: &Registration,
        job: Box<dyn Job>,
        timeout: Duration,
        max_executions: usize,
        per_registration: usize,
    ) -> Arc<Outcome> {
        reg.triggered();
        let exec = Execution::for_registration(self.execution_ids.next_id(), reg.session.clone(), job, RunControl::with_timeout(timeout));
        let start = Instant::now();
        exec.run();
        let outcome = exec.outcome().unwrap_or_else(|| Arc::new(Outcome::failed(errors::EXECUTION_ABORTED)));
        let aborted = outcome.errors.first().is_some_and(|e| e == errors::EXECUTION_ABORTED);
        reg.finished(&outcome, start.elapsed(), aborted);
        self.keep_event_execution(reg, &exec, max_executions, per_registration);
        outcome
    }

    /// Registration `reg` was removed: its executions leave the execution list, as in
    /// RedisGears (finished ones now, the others when they finish); with `abort_pending`, those
    /// that have not started are aborted first.
    pub fn forget_executions_of(&self, reg: &Registration, abort_pending: bool) {
        if abort_pending {
            reg.abort_pending();
        }
        for exec in reg.executions() {
            let (registry, id) = (self.executions.clone(), exec.id.clone());
            exec.on_done(move |_| {
                registry.remove(&id);
            });
        }
    }

    pub fn get(&self, id: &str) -> Result<Arc<Execution>, EngineError> {
        self.executions.get(id).ok_or(EngineError::ExecutionPlanNotExist)
    }

    pub fn abort(&self, id: &str) -> Result<(), EngineError> {
        let exec = self.executions.get(id).ok_or(EngineError::ExecutionNotExist)?;
        exec.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::tests::FixedJob;
    use crate::execution::{ExecutionStatus, Outcome};
    use crate::port::{RunControl, StepInfo};
    use crate::session::tests::session;
    use crate::value::Value;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocking_execution_is_gone_before_its_waiter_hears() {
        let engine = Engine::new(1).unwrap();
        let (tx, rx) = mpsc::channel();
        let exec = engine.start(session("s"), Box::new(FixedJob(Outcome::default())), false, 100);
        let registry = engine.executions.clone();
        let id = exec.id.clone();
        exec.on_done(move |_| tx.send(registry.get(&id).is_some()).unwrap());
        assert!(!rx.recv_timeout(Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn event_executions_are_kept_capped_and_counted() {
        use crate::registration::RegistrationSpec;
        let engine = Engine::new(1).unwrap();
        let spec = RegistrationSpec::from_value(&Value::Array(vec![])).unwrap();
        let reg = Registration::new(engine.registrations.next_id(), session("s"), spec);
        let mut last = None;
        for i in 0..3 {
            let out = if i == 1 { Outcome::failed("boom") } else { Outcome::default() };
            let exec = engine.start_event(&reg, Box::new(FixedJob(out)), 100, 2);
            let (tx, rx) = mpsc::channel();
            exec.on_done(move |_| tx.send(()).unwrap());
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(exec.registered);
            last = Some(exec);
        }
        // The stats waiter runs before ours (registered first).
        let s = reg.stats();
        assert_eq!((s.triggered, s.success, s.failures), (3, 2, 1));
        assert_eq!(engine.executions.len(), 2, "only MaxExecutionsPerRegistration kept");
        assert!(engine.get(&last.unwrap().id).is_ok());
        let inline = engine.run_inline(&reg, Box::new(FixedJob(Outcome::failed("x"))), Duration::from_secs(1), 100, 2);
        assert_eq!(inline.errors, vec!["x".to_string()]);
        assert_eq!(reg.stats().failures, 2);
        assert_eq!(engine.executions.len(), 2, "an inline run is listed too, within the cap");
        assert!(engine.executions.all().iter().any(|e| e.outcome().is_some_and(|o| o.errors == vec!["x".to_string()])));
    }

    #[test]
    fn a_kept_execution_stays_listed_with_its_results() {
        let engine = Engine::new(1).unwrap();
        let out = Outcome::new(vec![Value::Int(3)], vec![]);
        let exec = engine.start(session("s"), Box::new(FixedJob(out.clone())), true, 100);
        let (tx, rx) = mpsc::channel();
        exec.on_done(move |o| tx.send(o.clone()).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), out);
        assert_eq!(engine.get(&exec.id).unwrap().status(), ExecutionStatus::Done);
        assert!(exec.id.ends_with("-1"));
        assert_eq!(engine.get("nope").err(), Some(EngineError::ExecutionPlanNotExist));
        assert_eq!(engine.abort("nope").err(), Some(EngineError::ExecutionNotExist));
    }

    struct SpinJob;
    impl Job for SpinJob {
        fn steps(&self) -> Vec<StepInfo> {
            Vec::new()
        }
        fn run(self: Box<Self>, control: &RunControl) -> Outcome {
            let (tx, rx) = mpsc::channel::<()>();
            let tx = std::sync::Mutex::new(tx);
            control.set_interrupter(Some(Arc::new(move || {
                let _ = tx.lock().unwrap().send(());
            })));
            rx.recv_timeout(Duration::from_secs(5)).expect("interrupted");
            control.set_interrupter(None);
            Outcome::failed(if control.is_aborted() { "aborted" } else { "not aborted" })
        }
    }

    #[test]
    fn aborting_a_running_execution_calls_the_runtime_interrupter() {
        let engine = Engine::new(1).unwrap();
        let exec = engine.start(session("s"), Box::new(SpinJob), true, 100);
        while exec.status() == ExecutionStatus::Created {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The job installs its interrupter right after it starts: retry until it is seen.
        let (tx, rx) = mpsc::channel();
        exec.on_done(move |o| tx.send(o.errors.clone()).unwrap());
        let errors = loop {
            engine.abort(&exec.id).unwrap();
            if let Ok(e) = rx.recv_timeout(Duration::from_millis(20)) {
                break e;
            }
        };
        assert_eq!(errors, vec!["aborted".to_string()]);
        assert_eq!(exec.status(), ExecutionStatus::Done);
    }
}
