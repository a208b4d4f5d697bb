//! One wasm instance of CPython and its own OS thread ("instance thread").
//!
//! The instance thread owns the `Store` and runs the guest's `_start` (`wasm-python/guest.py`),
//! whose loop reads command frames from the private channel and writes answers. The instance
//! thread never touches Redis: every frame the guest writes is parsed here and forwarded over a
//! channel to the thread that issued the current command ([`Instance::command`]): the Redis main
//! thread for a script's top level, an execution thread for a job. That thread serves host-call
//! requests itself through the session's `Host` (which takes the Redis lock where needed) and
//! sends the reply back. So "main thread holds Redis and waits for the instance" can never meet
//! "instance waits for Redis": the instance waits only for the thread that waits for it.
//!
//! Limits: the epoch-deadline callback traps the guest when the command's deadline passed or the
//! command was aborted; the `ResourceLimiter` refuses memory growth past WasmMemoryLimitMB (the
//! guest sees a MemoryError). A guest that trapped or exited is dead: its instance answers every
//! later command with an error instead of running on corrupt state.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gearbox_engine::{Host, LogLevel, Value};
use wasmtime::{Engine, InstancePre, ResourceLimiter, Store, UpdateDeadline};

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
    deadline: Mutex<Option<Instant>>,
    abort: AtomicBool,
    stopped: Mutex<Option<Stop>>,
}

impl Interrupt {
    /// `Err` (and the reason remembered) when the guest must stop now.
    pub fn check(&self) -> Result<(), String> {
        let stop = if self.abort.load(Ordering::SeqCst) {
            Some(Stop::Aborted)
        } else if self.deadline.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|d| Instant::now() >= d) {
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

    fn arm(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }
}

/// What the instance thread forwards to the waiting thread.
pub enum Out {
    Frame(u8, Value),
    Dead(String),
}

/// WasmMemoryLimitMB, read at every memory growth.
pub struct Limiter {
    max_bytes: Arc<AtomicUsize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_bytes.load(Ordering::SeqCst))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The store's data: everything the WASI imports (`wasi.rs`) may touch.
pub struct Guest {
    pub args: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub closed: [bool; 3],
    pub started: Instant,
    pub exit_code: Option<i32>,
    inbound: Receiver<Vec<u8>>,
    in_buf: Vec<u8>,
    in_pos: usize,
    outbound: Sender<Out>,
    out_buf: Vec<u8>,
    interrupt: Arc<Interrupt>,
    limiter: Limiter,
}

impl Guest {
    /// Bytes for the guest's read of the channel; blocks for the next frame; 0 = closed.
    pub fn channel_read(&mut self, dst: &mut [u8]) -> usize {
        if self.in_pos == self.in_buf.len() {
            match recv_soon(&self.inbound) {
                Ok(frame) => {
                    self.in_buf = frame;
                    self.in_pos = 0;
                }
                Err(_) => return 0,
            }
        }
        let n = dst.len().min(self.in_buf.len() - self.in_pos);
        dst[..n].copy_from_slice(&self.in_buf[self.in_pos..self.in_pos + n]);
        self.in_pos += n;
        n
    }

    /// The guest wrote to the channel: forward every complete frame. `Err` (a trap) on a frame
    /// that is malformed or over the size cap.
    pub fn channel_write(&mut self, data: &[u8]) -> Result<(), String> {
        self.out_buf.extend_from_slice(data);
        while let Some((k, len)) = wire::header(&self.out_buf).map_err(|e| format!("gearbox: bad frame from the guest: {e}"))? {
            if self.out_buf.len() < wire::HEADER + len {
                break;
            }
            let value = wire::decode(&self.out_buf[wire::HEADER..wire::HEADER + len])
                .map_err(|e| format!("gearbox: bad frame from the guest: {e}"))?;
            self.out_buf.drain(..wire::HEADER + len);
            // Nobody listening means the instance is being dropped; nothing to do.
            let _ = self.outbound.send(Out::Frame(k, value));
        }
        Ok(())
    }

    /// Raw writes to descriptors 1 and 2 go to the Redis log of whoever waits for this guest.
    pub fn stdio_write(&mut self, fd: i32, data: &[u8]) {
        let level = if fd == 1 { "notice" } else { "warning" };
        let text = String::from_utf8_lossy(data).trim_end().to_string();
        if !text.is_empty() {
            let msg = Value::Array(vec![Value::Status(level.into()), Value::Bulk(text.into_bytes())]);
            let _ = self.outbound.send(Out::Frame(kind::LOG, msg));
        }
    }

    pub fn check_interrupt(&self) -> Result<(), String> {
        self.interrupt.check()
    }
}

struct Turn {
    cmd: Option<Sender<Vec<u8>>>,
    out: Receiver<Out>,
    dead: Option<String>,
}

/// A store's data for measurements that instantiate without running the guest.
#[cfg(test)]
pub fn test_guest() -> Guest {
    let (_tx, rx) = channel();
    let (tx, _rx) = channel();
    Guest {
        args: Vec::new(),
        env: Vec::new(),
        closed: [false; 3],
        started: Instant::now(),
        exit_code: None,
        inbound: rx,
        in_buf: Vec::new(),
        in_pos: 0,
        outbound: tx,
        out_buf: Vec::new(),
        interrupt: Arc::new(Interrupt::default()),
        limiter: Limiter { max_bytes: Arc::new(AtomicUsize::new(1 << 30)) },
    }
}

/// The handle of a running instance; dropping it closes the channel and the guest exits.
pub struct Instance {
    turn: Mutex<Turn>,
    pub interrupt: Arc<Interrupt>,
    pub max_memory: Arc<AtomicUsize>,
}

/// Why a command did not produce an answer.
pub enum Failure {
    /// Stopped by its deadline or an abort (the instance is dead now).
    Stopped(Stop),
    /// The guest trapped, exited or broke the protocol (the instance is dead now).
    Dead(String),
}

impl Instance {
    /// Start an instance thread running the guest's `_start`.
    pub fn spawn(engine: &Engine, pre: &InstancePre<Guest>, args: &[Vec<u8>], max_memory: usize) -> Result<Arc<Instance>, String> {
        let (cmd_tx, cmd_rx) = channel::<Vec<u8>>();
        let (out_tx, out_rx) = channel::<Out>();
        let interrupt = Arc::new(Interrupt::default());
        let max_bytes = Arc::new(AtomicUsize::new(max_memory));
        let guest = Guest {
            args: args.to_vec(),
            env: vec![b"PYTHONDONTWRITEBYTECODE=1".to_vec()],
            closed: [false; 3],
            started: Instant::now(),
            exit_code: None,
            inbound: cmd_rx,
            in_buf: Vec::new(),
            in_pos: 0,
            outbound: out_tx.clone(),
            out_buf: Vec::new(),
            interrupt: interrupt.clone(),
            limiter: Limiter { max_bytes: max_bytes.clone() },
        };
        let (engine, pre) = (engine.clone(), pre.clone());
        std::thread::Builder::new()
            .name("gearbox-wasm".into())
            .stack_size(8 << 20)
            .spawn(move || {
                let reason = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_guest(&engine, &pre, guest))) {
                    Ok(reason) => reason,
                    Err(_) => "gearbox: internal error (panic) on the instance thread".to_string(),
                };
                let _ = out_tx.send(Out::Dead(reason));
            })
            .map_err(|e| format!("could not start a wasm instance thread: {e}"))?;
        Ok(Arc::new(Instance {
            turn: Mutex::new(Turn { cmd: Some(cmd_tx), out: out_rx, dead: None }),
            interrupt,
            max_memory: max_bytes,
        }))
    }

    /// Send one command frame and serve the guest's host calls with `host` (on this thread)
    /// until its answer comes; `deadline` bounds the guest's running time.
    pub fn command(&self, frame: Vec<u8>, host: Option<&Arc<dyn Host>>, deadline: Option<Instant>) -> Result<Value, Failure> {
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &turn.dead {
            return Err(Failure::Dead(reason.clone()));
        }
        self.interrupt.arm(deadline);
        // A panic while serving (in a host call, say) must not leave the guest half-way through a
        // command for the next caller to misread: the instance is then discarded.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exchange(&mut turn, frame, host)))
            .unwrap_or_else(|_| Err("gearbox: internal error (panic) while serving the wasm guest".to_string()));
        self.interrupt.arm(None);
        self.interrupt.abort.store(false, Ordering::SeqCst);
        if let Err(reason) = &result {
            turn.dead = Some(reason.clone());
            turn.cmd = None;
            return Err(match self.interrupt.stopped() {
                Some(stop) => Failure::Stopped(stop),
                None => Failure::Dead(reason.clone()),
            });
        }
        result.map_err(Failure::Dead)
    }

    /// Whether a command could be sent now without waiting (used to skip optional clean-up).
    pub fn is_idle(&self) -> bool {
        self.turn.try_lock().is_ok()
    }
}

fn exchange(turn: &mut Turn, frame: Vec<u8>, host: Option<&Arc<dyn Host>>) -> Result<Value, String> {
    let Some(cmd) = turn.cmd.as_ref() else { return Err("the wasm instance is closed".into()) };
    cmd.send(frame).map_err(|_| "the wasm instance has stopped".to_string())?;
    // Output of a guest that has no host yet (starting up): kept for the failure reason.
    let mut unhosted = String::new();
    loop {
        match recv_soon(&turn.out) {
            Ok(Out::Frame(kind::RESULT, value)) => return Ok(value),
            Ok(Out::Frame(kind::LOG, value)) if host.is_none() => {
                if let Value::Array(items) = &value {
                    if unhosted.len() < 4096 {
                        unhosted.extend(items.get(1).map(|m| wire::text_of(m) + "\n"));
                    }
                }
            }
            Ok(Out::Frame(kind::LOG, value)) => log(host, &value),
            Ok(Out::Frame(k, value)) => {
                let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(host, k, &value)))
                    .unwrap_or_else(|_| Value::Error("gearbox: internal error (panic) in a host call".into()));
                cmd.send(wire::frame(kind::REPLY, &reply)).map_err(|_| "the wasm instance has stopped".to_string())?;
            }
            Ok(Out::Dead(reason)) if unhosted.is_empty() => return Err(reason),
            Ok(Out::Dead(reason)) => return Err(format!("{reason}; guest output: {}", unhosted.trim_end())),
            Err(_) => return Err("the wasm instance thread is gone".into()),
        }
    }
}

/// `recv`, but first poll briefly: a host call is a ping-pong between two threads, and parking
/// and waking a thread costs tens of microseconds where the answer usually takes a few.
fn recv_soon<T>(rx: &Receiver<T>) -> Result<T, std::sync::mpsc::RecvError> {
    let until = Instant::now() + std::time::Duration::from_micros(50);
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(std::sync::mpsc::RecvError),
            Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(std::sync::mpsc::TryRecvError::Empty) => return rx.recv(),
        }
    }
}

fn log(host: Option<&Arc<dyn Host>>, value: &Value) {
    let (Some(host), Value::Array(items)) = (host, value) else { return };
    if let [level, message] = items.as_slice() {
        if let Some(level) = LogLevel::parse(&wire::text_of(level)) {
            host.log(level, &wire::text_of(message));
        }
    }
}

/// One host call from the guest, performed on the waiting thread.
fn serve(host: Option<&Arc<dyn Host>>, k: u8, value: &Value) -> Value {
    let Some(host) = host else { return Value::Error("gearbox: this interpreter has no host".into()) };
    match (k, value) {
        (kind::CALL, Value::Array(args)) => {
            let args: Option<Vec<Vec<u8>>> = args.iter().map(|a| wire::bytes_of(a).map(<[u8]>::to_vec)).collect();
            match args {
                Some(args) => host.call(&args),
                None => Value::Error("gearbox: malformed call from the guest".into()),
            }
        }
        (kind::READ_KEYS, Value::Array(parts)) => match parts.as_slice() {
            [Value::Array(keys), Value::Int(read_value)] => {
                let keys: Vec<Vec<u8>> = keys.iter().filter_map(|k| wire::bytes_of(k).map(<[u8]>::to_vec)).collect();
                wire::key_records(&host.read_keys(&keys, *read_value != 0))
            }
            _ => Value::Error("gearbox: malformed read_keys from the guest".into()),
        },
        (kind::CONFIG_GET, name) => match host.config_get(&wire::text_of(name)) {
            Some(v) => Value::Bulk(v.into_bytes()),
            None => Value::Nil,
        },
        (kind::ATOMIC_BEGIN, _) => match host.atomic_begin() {
            Ok(()) => Value::Nil,
            Err(message) => Value::Error(message),
        },
        (kind::ATOMIC_END, _) => {
            host.atomic_end();
            Value::Nil
        }
        _ => Value::Error(format!("gearbox: unknown request {k} from the guest")),
    }
}

/// The instance thread's body: instantiate, run `_start` to its end; returns why it ended.
fn run_guest(engine: &Engine, pre: &InstancePre<Guest>, guest: Guest) -> String {
    let mut store = Store::new(engine, guest);
    store.limiter(|g| &mut g.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| match ctx.data().interrupt.check() {
        Ok(()) => Ok(UpdateDeadline::Continue(1)),
        Err(e) => Err(wasmtime::Error::msg(e)),
    });
    let start = pre
        .instantiate(&mut store)
        .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"));
    let result = match start {
        Ok(start) => start.call(&mut store, ()),
        Err(e) => return format!("could not instantiate the wasm guest: {e:#}"),
    };
    match (result, store.data().exit_code) {
        (_, Some(0)) => "the wasm guest exited".to_string(),
        (_, Some(code)) => format!("the wasm guest exited with code {code}"),
        (Ok(()), None) => "the wasm guest returned".to_string(),
        (Err(e), None) => match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("the wasm guest trapped: {trap}"),
            None => format!("the wasm guest stopped: {}", e.root_cause()),
        },
    }
}
