//! The Redis global lock as seen from gearbox threads.
//!
//! Redis' main thread always holds it while it runs module code. A background (execution)
//! thread takes it per `execute()` call, or for a whole `atomic()` block; a thread-local depth
//! records that this thread already holds it so nested calls do not try to take it again.
//! Rule: never wait for this lock while holding an interpreter (the runtimes release their GIL
//! or store before calling in here; see `Host::may_wait_for_lock`).

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gearbox_engine::InterruptHandle;

use super::redis_ffi;
use gearbox_engine::watchdog::{Armed, Watchdog};

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// Whether a call from this thread would have to wait for the lock.
pub fn must_wait() -> bool {
    !redis_ffi::is_main_thread() && HELD.with(|h| h.get()) == 0
}

/// Holds the Redis lock (if this thread did not already) until dropped.
pub struct RedisLock {
    taken: bool,
}

/// Proof, checked by the compiler, that this thread holds the Redis lock for `'a`: every function
/// that reaches Redis' data or the detached context takes one instead of a "the caller holds the
/// Redis lock" comment. Made only by a held [`RedisLock`] ([`RedisLock::held`], free on Redis'
/// main thread, which always holds the lock) or inside a callback Redis makes holding it
/// ([`Locked::in_callback`], unsafe: the C entry points say why).
/// Not `Send`: a proof made on one thread says nothing about another.
#[derive(Clone, Copy)]
pub struct Locked<'a> {
    _held_for: PhantomData<&'a RedisLock>,
    _this_thread_only: PhantomData<*const ()>,
}

impl Locked<'static> {
    /// Run `f` with the proof inside a callback Redis makes while holding its lock; the proof
    /// cannot outlive the call.
    ///
    /// # Safety
    /// Only in a callback Redis runs with its lock held: a command, a keyspace notification, a
    /// timer, a blocked client's reply.
    pub unsafe fn in_callback<R>(f: impl for<'a> FnOnce(Locked<'a>) -> R) -> R {
        f(Locked { _held_for: PhantomData, _this_thread_only: PhantomData })
    }

    /// A proof without a lock, for unit tests whose fakes stand in for Redis.
    ///
    /// # Safety
    /// Nothing the proof is handed to may reach the real Redis module API.
    #[cfg(test)]
    pub unsafe fn for_fakes() -> Locked<'static> {
        Locked { _held_for: PhantomData, _this_thread_only: PhantomData }
    }
}

impl Locked<'_> {
    /// The detached context, usable only while the lock is held, as this proof says it is.
    pub fn detached(self) -> redis_ffi::Ctx {
        redis_ffi::detached()
    }
}

impl RedisLock {
    /// The lock if this thread has it already or can take it without waiting; None if taking
    /// it would mean waiting (the caller must then let go of its interpreter first).
    pub fn try_acquire() -> Option<RedisLock> {
        if !must_wait() {
            return Some(RedisLock::acquire());
        }
        if !redis_ffi::try_lock() {
            return None;
        }
        HELD.with(|h| h.set(h.get() + 1));
        Some(RedisLock { taken: true })
    }

    pub fn acquire() -> RedisLock {
        let taken = must_wait();
        if taken {
            redis_ffi::lock();
        }
        HELD.with(|h| h.set(h.get() + 1));
        RedisLock { taken }
    }

    /// The proof that the lock is held, for as long as this guard lives.
    pub fn held(&self) -> Locked<'_> {
        Locked { _held_for: PhantomData, _this_thread_only: PhantomData }
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
        if self.taken {
            redis_ffi::unlock();
        }
    }
}

/// An open `atomic()` block: the lock, and on an execution thread the watch that stops it
/// past ScriptTimeoutMS (dropped first, so it never fires after the lock is given back).
struct AtomicBlock {
    _watch: Option<Armed>,
    timed_out: Arc<AtomicBool>,
    _lock: RedisLock,
}

thread_local! {
    static ATOMIC: std::cell::RefCell<Option<AtomicBlock>> = const { std::cell::RefCell::new(None) };
    /// What interrupts the job running on this thread (see [`while_running`]).
    static RUN: std::cell::RefCell<Option<InterruptHandle>> = const { std::cell::RefCell::new(None) };
    /// An `atomic()` block of this thread's job was stopped for holding the lock too long.
    static TIMED_OUT: Cell<bool> = const { Cell::new(false) };
}

/// Run a job (`f`) on this thread with `handle` as what interrupts it: an `atomic()` block it
/// holds past ScriptTimeoutMS is interrupted through it.
pub fn while_running<R>(handle: InterruptHandle, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<InterruptHandle>);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUN.with(|r| *r.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(RUN.with(|r| r.replace(Some(handle))));
    f()
}

/// The watchdog of `atomic()` blocks on execution threads (Redis' main thread has its own
/// ScriptTimeoutMS watch around every script and sync callback).
fn watchdog() -> Option<&'static Watchdog> {
    static WATCHDOG: OnceLock<Option<Watchdog>> = OnceLock::new();
    WATCHDOG.get_or_init(|| Watchdog::start("gearbox-atomic-watch", Duration::from_millis(100)).ok()).as_ref()
}

/// Whether this thread may hold the Redis lock for an `atomic()` block: Redis' main thread and
/// gearbox's execution threads, whose blocks end with the callback that opened them
/// ([`atomic_end_if_open`]). Threads a script made itself, and the asyncio loop thread that runs
/// coroutines, may not: a block there could be kept open across an `await` or forever.
fn may_hold_atomic() -> bool {
    redis_ffi::is_main_thread() || std::thread::current().name().is_some_and(|n| n.starts_with(EXECUTION_THREAD_PREFIX))
}

/// The name every execution thread's name starts with (see `Engine::new`).
pub const EXECUTION_THREAD_PREFIX: &str = "gearbox-exec";

/// Enter an `atomic()` block on this thread; on an execution thread it is stopped (the job is
/// interrupted, the lock given back) after `timeout`.
pub fn atomic_begin(timeout: Duration) -> Result<(), String> {
    if !may_hold_atomic() {
        return Err(gearbox_engine::errors::ATOMIC_OFF_THREAD.to_string());
    }
    ATOMIC.with(|a| {
        let mut slot = a.borrow_mut();
        if slot.is_some() {
            return Err(gearbox_engine::errors::ATOMIC_NESTED.to_string());
        }
        let timed_out = Arc::new(AtomicBool::new(false));
        let handle = if redis_ffi::is_main_thread() { None } else { RUN.with(|r| r.borrow().clone()) };
        let watch = handle.and_then(|handle| {
            let flag = timed_out.clone();
            watchdog().map(|w| {
                w.arm(
                    timeout,
                    Arc::new(move || {
                        flag.store(true, Ordering::SeqCst);
                        handle.interrupt();
                    }),
                )
            })
        });
        *slot = Some(AtomicBlock { _lock: RedisLock::acquire(), _watch: watch, timed_out });
        Ok(())
    })
}

/// Leave the `atomic()` block of this thread (no-op when there is none).
pub fn atomic_end() {
    let block = ATOMIC.with(|a| a.borrow_mut().take());
    if block.as_ref().is_some_and(|b| b.timed_out.load(Ordering::SeqCst)) {
        TIMED_OUT.with(|t| t.set(true));
    }
    drop(block);
}

/// After a callback or step finished on this thread: give back the lock of an `atomic()` block
/// it left open. True when there was one (the callback then fails with [`ATOMIC_LEFT_OPEN`]).
pub fn atomic_end_if_open() -> bool {
    let open = ATOMIC.with(|a| a.borrow().is_some());
    atomic_end();
    open
}

/// Whether an `atomic()` block of the job that just ended on this thread was stopped for
/// holding the lock past ScriptTimeoutMS (asked once: the answer resets).
pub fn atomic_timed_out() -> bool {
    TIMED_OUT.with(|t| t.replace(false))
}

/// The error of a callback that left an `atomic()` block open.
pub const ATOMIC_LEFT_OPEN: &str = "atomic() block left open when the callback ended: gearbox gave the Redis lock back";
