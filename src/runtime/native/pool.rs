//! Interpreter start-up and teardown off Redis' main thread.
//!
//! Creating and bootstrapping an own-GIL sub-interpreter costs tens of milliseconds (CPython
//! re-imports `encodings`, `site`, … for each one, then gears.py loads). A bounded pool of
//! ready interpreters, refilled by the `gearbox-interp-pool` thread, takes that off the
//! `RG.PYEXECUTE` path; ending an interpreter (`Py_EndInterpreter`, then returning its arenas)
//! happens on the `gearbox-reaper` thread for the same reason.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gearbox_engine::{Host, LogLevel};

use super::cpython::{self, InterpPtr};
use super::{arenas, bootstrap, memory_ledger, scratch, teardown, ObjPtr, Sources};
use crate::runtime::settle::settle_after;
use gearbox_engine::watchdog::Watchdog;

/// A bootstrapped interpreter that no session owns yet.
pub struct Prepared {
    pub interp: InterpPtr,
    pub id: i64,
    pub abort_exception: ObjPtr,
    pub timeout_exception: ObjPtr,
}

/// Create and bootstrap an interpreter on the calling thread.
pub fn prepare(sources: &Sources) -> Result<Prepared, String> {
    let (interp, (abort, timeout)) = cpython::new_interpreter(|py| bootstrap(py, sources))?;
    Ok(Prepared { interp, id: cpython::interpreter_id(interp), abort_exception: abort, timeout_exception: timeout })
}

#[derive(Default)]
struct Shared {
    ready: Mutex<VecDeque<Prepared>>,
    wake: Condvar,
}

pub struct InterpreterPool {
    shared: Arc<Shared>,
}

impl InterpreterPool {
    /// Keep up to `target` ready interpreters (0: none, every session creates its own).
    pub fn start(target: usize, sources: Arc<Sources>) -> std::io::Result<InterpreterPool> {
        let shared = Arc::new(Shared::default());
        if target > 0 {
            let worker = shared.clone();
            std::thread::Builder::new().name("gearbox-interp-pool".into()).spawn(move || refill(worker, target, sources))?;
        }
        Ok(InterpreterPool { shared })
    }

    /// A ready interpreter, if one is waiting; the refill thread is woken either way.
    pub fn take(&self) -> Option<Prepared> {
        let taken = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        self.shared.wake.notify_all();
        taken
    }

    pub fn ready(&self) -> usize {
        self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn refill(shared: Arc<Shared>, target: usize, sources: Arc<Sources>) {
    loop {
        let since = Instant::now();
        {
            let mut ready = shared.ready.lock().unwrap_or_else(|e| e.into_inner());
            while ready.len() >= target {
                ready = shared.wake.wait(ready).unwrap_or_else(|e| e.into_inner());
            }
        }
        settle_after(since);
        match prepare(&sources) {
            Ok(p) => shared.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(p),
            Err(e) => {
                eprintln!("gearbox: could not prepare an interpreter: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// An interpreter to end, with the host to free after it.
pub struct Corpse {
    pub interp: InterpPtr,
    pub id: i64,
    /// Its `gears.forcestopped` type, raised in what the teardown stops.
    pub stop: ObjPtr,
    pub host: Option<Arc<dyn Host>>,
    /// Decremented once the interpreter is really gone.
    pub live: Arc<AtomicUsize>,
}

/// Dead interpreters that may wait for the reaper; past this, an execution thread that drops one
/// ends it itself. Without a bound, back-to-back executions outran the reaper (ending one takes
/// about as long as creating one): 2,000 of them left 1,846 dead interpreters and 3.8 GB of RSS
/// behind. Redis' main thread never does (see `bury`).
const MAX_WAITING: usize = 4;

/// The thread that started the runtime: Redis' main thread.
static MAIN_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();

/// Ends interpreters on its own thread, in the order they died.
#[derive(Clone)]
pub struct Reaper {
    sender: Sender<Corpse>,
    waiting: Arc<AtomicUsize>,
    watchdog: Watchdog,
}

impl Reaper {
    /// Start the reaper thread; called on Redis' main thread. `watchdog` bounds each teardown.
    pub fn start(watchdog: Watchdog) -> std::io::Result<Reaper> {
        let _ = MAIN_THREAD.set(std::thread::current().id());
        let (sender, receiver) = channel::<Corpse>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let count = waiting.clone();
        let watchdog_for_inline = watchdog.clone();
        std::thread::Builder::new().name("gearbox-reaper".into()).spawn(move || {
            let mut since = Instant::now();
            while let Ok(corpse) = receiver.recv() {
                settle_after(since);
                for corpse in std::iter::once(corpse).chain(receiver.try_iter()) {
                    end(corpse, &watchdog);
                    count.fetch_sub(1, Ordering::SeqCst);
                }
                since = Instant::now();
            }
        })?;
        Ok(Reaper { sender, waiting, watchdog: watchdog_for_inline })
    }

    /// End `corpse` on the reaper thread, or right here when enough are waiting already, this
    /// thread holds no GIL (ending frees the host under the Redis lock, which must never be
    /// awaited while holding a GIL) and it is not Redis' main thread (which never waits for a
    /// teardown: one is bounded, but a script can make it last seconds).
    pub fn bury(&self, corpse: Corpse) {
        let on_main = MAIN_THREAD.get() == Some(&std::thread::current().id());
        if self.waiting.load(Ordering::SeqCst) >= MAX_WAITING && !on_main && !cpython::holds_a_gil() {
            end(corpse, &self.watchdog);
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.sender.send(corpse) {
            // The reaper thread is gone (it cannot panic out of `end`, but be safe): end it here.
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            end(e.0, &self.watchdog);
        }
    }
}

fn end(corpse: Corpse, watchdog: &Watchdog) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Teardown runs without a cap: CPython's own clean-up must not meet a failed allocation.
        // SAFETY: a NULL interpreter is allowed.
        unsafe { memory_ledger::set_limit(corpse.id, std::ptr::null_mut(), 0) };
        match teardown::end(corpse.interp, corpse.stop, watchdog) {
            teardown::Ended::Ended => {
                arenas::release_dead_interpreter(corpse.id);
                memory_ledger::release(corpse.id);
                scratch::remove(corpse.id);
            }
            teardown::Ended::LeftRunning(why) => {
                let text = format!(
                    "gearbox: interpreter {} of an ended session was left running: {why}; its memory stays until restart",
                    corpse.id
                );
                match &corpse.host {
                    Some(host) => host.log(LogLevel::Warning, &text),
                    None => eprintln!("{text}"),
                }
            }
        }
    }));
    if result.is_err() {
        eprintln!("gearbox: ending an interpreter panicked");
    }
    drop(corpse.host);
    corpse.live.fetch_sub(1, Ordering::SeqCst);
}
