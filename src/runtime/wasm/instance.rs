//! One wasm instance of CPython and its own OS thread ("instance thread").
//!
//! The instance thread owns the `Store` and calls the guest component's `serve` export once
//! (`wasm-python/guest.py`), whose loop takes command frames from the channel imports and sends
//! answers back. The instance
//! thread never touches Redis: every frame the guest writes is parsed here and forwarded, by its
//! tag (`routes.rs`), to the thread that issued that command ([`Instance::command`]): the Redis
//! main thread for a script's top level or a sync registration, an execution thread for a job.
//! That thread serves host-call requests itself through the session's `Host` (which takes the
//! Redis lock where needed) and sends the reply back. Commands are serialised, except an
//! `inline` one (its thread holds the Redis lock): when the instance is busy it is sent anyway,
//! nested, and the guest runs it inside its current wait. So the instance only ever waits for a
//! thread that is waiting for it, and no cycle through the Redis lock can form.
//!
//! Limits: the epoch-deadline callback traps the guest when the command's deadline passed or the
//! command was aborted; the `ResourceLimiter` refuses memory growth past WasmMemoryLimitMB (the
//! guest sees a MemoryError). A guest that trapped or exited is dead: its instance answers every
//! later command with an error instead of running on corrupt state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gearbox_engine::{Host, Value};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

use super::guest_world::SandboxPre;
use super::hostcalls;
use super::marshal;
use super::routes::{Out, Routes};
use super::turns::{Turn, Turns};
use super::wire::{self, kind};

/// Why a guest was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Aborted,
}

/// Shared between an instance's handle and its store: what makes running guest code stop.
#[derive(Default)]
pub struct Interrupt {
    /// Per command tag; only commands the guest is running count.
    deadlines: Mutex<HashMap<u32, Instant>>,
    abort: AtomicBool,
    stopped: Mutex<Option<Stop>>,
}

impl Interrupt {
    /// `Err` (and the reason remembered) when the guest must stop now.
    pub fn check(&self, running: &[u32]) -> Result<(), String> {
        let now = Instant::now();
        let late = || {
            let d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
            running.iter().any(|t| d.get(t).is_some_and(|d| now >= *d))
        };
        let stop = if self.abort.load(Ordering::SeqCst) {
            Some(Stop::Aborted)
        } else if late() {
            Some(Stop::Timeout)
        } else {
            None
        };
        match stop {
            None => Ok(()),
            Some(s) => {
                *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                Err(format!("gearbox: guest stopped ({s:?})"))
            }
        }
    }

    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> Option<Stop> {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self, tag: u32, deadline: Option<Instant>) {
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        match deadline {
            Some(at) => d.insert(tag, at),
            None => d.remove(&tag),
        };
    }
}

/// WasmMemoryLimitMB, read at every memory growth.
pub struct Limiter {
    max_bytes: Arc<AtomicUsize>,
    /// The linear memory's size now (what RG.PYDUMPSESSIONS and INFO show per session).
    used_bytes: Arc<AtomicUsize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes.load(Ordering::SeqCst);
        if allowed {
            self.used_bytes.store(desired, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The store's data: everything the guest's imports (`wasi.rs`, `guest_world.rs`) may touch.
pub struct Guest {
    pub started: Instant,
    /// The WASI resources gearbox made for the guest (`wasi.rs`).
    pub table: ResourceTable,
    inbound: Receiver<Vec<u8>>,
    routes: Arc<Routes>,
    out_buf: Vec<u8>,
    interrupt: Arc<Interrupt>,
    limiter: Limiter,
}

impl Guest {
    /// The next frame for the guest; blocks until one comes; empty = the host closed the channel.
    pub fn channel_recv(&mut self) -> Vec<u8> {
        loop {
            let Ok(frame) = recv_until(&self.inbound, None) else { return Vec::new() };
            // Frames come from the host (trusted); a withdrawn command is skipped.
            if let Ok(Some(h)) = wire::header(&frame) {
                if kind::is_command(h.kind) && !self.routes.deliver(h.tag) {
                    continue;
                }
            }
            return frame;
        }
    }

    /// The guest wrote to the channel: forward every complete frame. `Err` (a trap) on a frame
    /// that is malformed or over the size cap.
    pub fn channel_write(&mut self, data: &[u8]) -> Result<(), String> {
        self.out_buf.extend_from_slice(data);
        while let Some(h) = wire::header(&self.out_buf).map_err(|e| format!("gearbox: bad frame from the guest: {e}"))? {
            if self.out_buf.len() < wire::HEADER + h.len {
                break;
            }
            let value = marshal::decode(&self.out_buf[wire::HEADER..wire::HEADER + h.len])
                .map_err(|e| format!("gearbox: bad frame from the guest: {e}"))?;
            self.out_buf.drain(..wire::HEADER + h.len);
            if h.kind == kind::RESULT {
                self.routes.finish(h.tag);
            }
            // Nobody listening (a forged tag, a withdrawn command): the frame is dropped.
            self.routes.send(h.tag, Out::Frame(h.kind, value));
        }
        Ok(())
    }

    /// Raw writes to descriptors 1 and 2 go to the Redis log of whoever waits for this guest.
    pub fn stdio_write(&mut self, fd: i32, data: &[u8]) {
        let level = if fd == 1 { "notice" } else { "warning" };
        let text = String::from_utf8_lossy(data).trim_end().to_string();
        if !text.is_empty() {
            let msg = Value::Array(vec![Value::Status(level.into()), Value::Bulk(text.into_bytes())]);
            self.routes.send(self.routes.innermost(), Out::Frame(kind::LOG, msg));
        }
    }

    pub fn check_interrupt(&self) -> Result<(), String> {
        self.interrupt.check(&self.routes.active())
    }
}

/// A store's data for measurements that instantiate without running the guest.
#[cfg(test)]
pub fn test_guest() -> Guest {
    let (_tx, rx) = channel();
    Guest {
        started: Instant::now(),
        table: ResourceTable::new(),
        inbound: rx,
        routes: Arc::new(Routes::default()),
        out_buf: Vec::new(),
        interrupt: Arc::new(Interrupt::default()),
        limiter: Limiter { max_bytes: Arc::new(AtomicUsize::new(1 << 30)), used_bytes: Arc::default() },
    }
}

/// The handle of a running instance; dropping it closes the channel and the guest exits.
pub struct Instance {
    cmd: Mutex<Option<Sender<Vec<u8>>>>,
    turns: Turns,
    routes: Arc<Routes>,
    next_tag: AtomicU32,
    pub interrupt: Arc<Interrupt>,
    pub max_memory: Arc<AtomicUsize>,
    used_memory: Arc<AtomicUsize>,
}

/// Why a command did not produce an answer.
pub enum Failure {
    /// Stopped by its deadline or an abort (the instance is dead now), or, for a nested command,
    /// withdrawn at its deadline before the guest took it (the instance lives on).
    Stopped(Stop),
    /// The guest trapped, exited or broke the protocol (the instance is dead now).
    Dead(String),
}

enum Ended {
    Answer(Value),
    Withdrawn,
    Dead(String),
}

impl Instance {
    /// Start an instance on its own thread, serving the guest's `serve` export.
    pub fn spawn(engine: &Engine, pre: &SandboxPre<Guest>, max_memory: usize) -> Result<Arc<Instance>, String> {
        let (cmd_tx, cmd_rx) = channel::<Vec<u8>>();
        let routes = Arc::new(Routes::default());
        let interrupt = Arc::new(Interrupt::default());
        let max_bytes = Arc::new(AtomicUsize::new(max_memory));
        let used_bytes = Arc::new(AtomicUsize::new(0));
        let guest = Guest {
            started: Instant::now(),
            table: ResourceTable::new(),
            inbound: cmd_rx,
            routes: routes.clone(),
            out_buf: Vec::new(),
            interrupt: interrupt.clone(),
            limiter: Limiter { max_bytes: max_bytes.clone(), used_bytes: used_bytes.clone() },
        };
        let (engine, pre, on_exit) = (engine.clone(), pre.clone(), routes.clone());
        std::thread::Builder::new()
            .name("gearbox-wasm".into())
            .stack_size(super::artefact::WASM_STACK + (8 << 20))
            .spawn(move || {
                let reason = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_guest(&engine, &pre, guest))) {
                    Ok(reason) => reason,
                    Err(_) => "gearbox: internal error (panic) on the instance thread".to_string(),
                };
                on_exit.kill(&reason);
            })
            .map_err(|e| format!("could not start a wasm instance thread: {e}"))?;
        Ok(Arc::new(Instance {
            cmd: Mutex::new(Some(cmd_tx)),
            turns: Turns::default(),
            routes,
            next_tag: AtomicU32::new(0),
            interrupt,
            max_memory: max_bytes,
            used_memory: used_bytes,
        }))
    }

    /// The instance's linear memory now, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.used_memory.load(Ordering::Relaxed) as u64
    }

    /// Send one command and serve the guest's host calls with `host` (on this thread) until its
    /// answer comes; `deadline` bounds the guest's running time. `inline`: the caller holds the
    /// Redis lock, so if the instance is busy the command is nested rather than queued.
    pub fn command(
        &self,
        k: u8,
        value: &Value,
        host: Option<&Arc<dyn Host>>,
        deadline: Option<Instant>,
        inline: bool,
    ) -> Result<Value, Failure> {
        let turn = self.turns.take(inline);
        let result = self.command_in_turn(turn, inline, k, value, host, deadline);
        self.turns.give(turn);
        result
    }

    fn command_in_turn(
        &self,
        turn: Turn,
        inline: bool,
        k: u8,
        value: &Value,
        host: Option<&Arc<dyn Host>>,
        deadline: Option<Instant>,
    ) -> Result<Value, Failure> {
        let n = self.next_tag.fetch_add(1, Ordering::SeqCst).wrapping_add(1) & !wire::NESTABLE;
        let tag = if inline { n | wire::NESTABLE } else { n };
        let (tx, rx) = channel();
        self.routes.open(tag, tx).map_err(Failure::Dead)?;
        self.interrupt.arm(tag, deadline);
        // A panic while serving (in a host call, say) must not leave the guest half-way through a
        // command for the next caller to misread: the instance is then discarded.
        let ended =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.exchange(tag, wire::frame(k, tag, value), &rx, host, deadline)))
                .unwrap_or_else(|_| Ended::Dead("gearbox: internal error (panic) while serving the wasm guest".to_string()));
        self.routes.close(tag);
        self.interrupt.arm(tag, None);
        if turn == Turn::Owner {
            self.interrupt.abort.store(false, Ordering::SeqCst);
        }
        match ended {
            Ended::Answer(v) => Ok(v),
            Ended::Withdrawn => Err(Failure::Stopped(Stop::Timeout)),
            Ended::Dead(reason) => {
                self.routes.kill(&reason);
                *self.cmd.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Err(match self.interrupt.stopped() {
                    Some(stop) => Failure::Stopped(stop),
                    None => Failure::Dead(reason),
                })
            }
        }
    }

    /// Whether a command could be sent now without waiting (used to skip optional clean-up).
    pub fn is_idle(&self) -> bool {
        self.turns.idle()
    }

    fn send(&self, frame: Vec<u8>) -> Result<(), String> {
        let cmd = self.cmd.lock().unwrap_or_else(|e| e.into_inner()).clone();
        cmd.ok_or("the wasm instance is closed")?.send(frame).map_err(|_| "the wasm instance has stopped".to_string())
    }

    fn exchange(&self, tag: u32, frame: Vec<u8>, rx: &Receiver<Out>, host: Option<&Arc<dyn Host>>, deadline: Option<Instant>) -> Ended {
        if let Err(e) = self.send(frame) {
            return Ended::Dead(e);
        }
        // Output of a guest that has no host yet (starting up): kept for the failure reason.
        let mut unhosted = String::new();
        loop {
            let out = match recv_until(rx, deadline) {
                Ok(out) => out,
                // Past the deadline: withdraw the command if the guest has not taken it (it is
                // busy elsewhere); otherwise the epoch check stops the guest and we hear so.
                Err(RecvTimeoutError::Timeout) if self.routes.cancel(tag) => return Ended::Withdrawn,
                Err(RecvTimeoutError::Timeout) => match recv_until(rx, None) {
                    Ok(out) => out,
                    Err(_) => return Ended::Dead("the wasm instance thread is gone".into()),
                },
                Err(RecvTimeoutError::Disconnected) => return Ended::Dead("the wasm instance thread is gone".into()),
            };
            match out {
                Out::Frame(kind::RESULT, value) => return Ended::Answer(value),
                Out::Frame(kind::LOG, value) if host.is_none() => {
                    if let Value::Array(items) = &value {
                        if unhosted.len() < 4096 {
                            unhosted.extend(items.get(1).map(|m| wire::text_of(m) + "\n"));
                        }
                    }
                }
                Out::Frame(kind::LOG, value) => hostcalls::log(host, &value),
                Out::Frame(kind::PAUSE, value) => {
                    // The guest waits for another command of its session: lend it the instance,
                    // unless this thread holds the Redis lock (a nested command that needs the
                    // lock would then wait forever); then it is a plain sleep.
                    let period = Duration::from_millis(if let Value::Int(ms) = value { ms.clamp(0, 100) as u64 } else { 0 });
                    if host.is_some_and(|h| h.may_wait_for_lock()) {
                        self.turns.pause(period);
                    } else {
                        std::thread::sleep(period);
                    }
                    if let Err(e) = self.send(wire::frame(kind::REPLY, tag, &Value::Nil)) {
                        return Ended::Dead(e);
                    }
                }
                Out::Frame(k, value) => {
                    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hostcalls::serve(host, k, &value)))
                        .unwrap_or_else(|_| marshal::value(&Value::Error("gearbox: internal error (panic) in a host call".into())));
                    if let Err(e) = self.send(wire::frame_with(kind::REPLY, tag, &reply)) {
                        return Ended::Dead(e);
                    }
                }
                Out::Dead(reason) if unhosted.is_empty() => return Ended::Dead(reason),
                Out::Dead(reason) => return Ended::Dead(format!("{reason}; guest output: {}", unhosted.trim_end())),
            }
        }
    }
}

/// `recv` with an optional deadline, but first poll briefly: a host call is a ping-pong between
/// two threads, and parking and waking a thread costs tens of microseconds where the answer
/// usually takes a few.
fn recv_until<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
    let start = Instant::now();
    let (busy, spin) = (start + Duration::from_micros(10), start + Duration::from_micros(50));
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            // First without a system call (an answer usually takes a few microseconds), then
            // giving the core away between looks.
            Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < busy => std::hint::spin_loop(),
            Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < spin => std::thread::yield_now(),
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                return match deadline {
                    Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                }
            }
        }
    }
}

/// The instance thread's body: instantiate, run `serve` to its end; returns why it ended.
fn run_guest(engine: &Engine, pre: &SandboxPre<Guest>, guest: Guest) -> String {
    let mut store = Store::new(engine, guest);
    store.limiter(|g| &mut g.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| match ctx.data().check_interrupt() {
        Ok(()) => Ok(UpdateDeadline::Continue(1)),
        Err(e) => Err(wasmtime::Error::msg(e)),
    });
    let sandbox = match pre.instantiate(&mut store) {
        Ok(sandbox) => sandbox,
        Err(e) => return format!("could not instantiate the wasm guest: {e:#}"),
    };
    match sandbox.call_serve(&mut store) {
        Ok(()) => "the wasm guest returned".to_string(),
        Err(e) => match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("the wasm guest trapped: {trap}"),
            None => format!("the wasm guest stopped: {}", e.root_cause()),
        },
    }
}
