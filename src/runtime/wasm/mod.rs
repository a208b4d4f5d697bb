//! Wasm mode: every session is its own wasmtime instance of the guest component
//! (`gearbox-guest.wasm`, built by `wasm-python/build-guest.sh` with componentize-py: CPython
//! 3.14 for WASI with `wasm-python/guest.py`, `python/gears.py` & co and the standard library
//! modules scripts may use already imported, snapshotted at build time), behind the same engine
//! ports as native mode.
//!
//! Pieces: `artefact.rs` (find, verify, compile once, cache), `guest_world.rs` (the component's
//! WIT world), `wasi.rs` (the only capabilities the guest gets), `wire.rs` (binary framing of
//! values), `instance.rs` (one instance and its thread; how host calls are served without
//! deadlocks), `pool.rs` (pre-started instances), and `wasm-python/guest.py` (the guest's
//! `_gearbox` and command loop).
//!
//! Threads this mode starts inside redis-server: one `gearbox-wasm` thread per live or parked
//! instance (it owns the Store and blocks on its channel when idle), `gearbox-wasm-epoch` (bumps
//! the engine epoch every 10 ms so deadlines and aborts are noticed), `gearbox-wasm-pool` (refills
//! the warm pool), and wasmtime's rayon pool while the guest is first compiled. No tokio: the
//! WASI layer is gearbox's own, synchronous one.

mod artefact;
mod guest_world;
mod hostcalls;
mod instance;
mod marshal;
#[cfg(test)]
mod measure;
mod pool;
mod requirement_files;
mod routes;
mod turns;
mod wasi;
mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gearbox_engine::port::ScriptOutcome;
use gearbox_engine::requirements::Requirement;
use gearbox_engine::{errors, Host, Interpreter, Job, Outcome, ProfileRequest, RunControl, Runtime, StepInfo, Value};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

use guest_world::{Sandbox, SandboxPre};

use instance::{Failure, Guest, Instance, Stop};
use pool::Pool;
use wire::kind;

/// The guest's CPython (componentize-py's build).
pub const PYTHON_VERSION: &str = "3.14.0 (wasm)";

/// Memory a parked instance may use before a session sets its own limit.
const BOOT_MEMORY: usize = 1 << 30;
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Load-time settings of wasm mode (see `config.rs`).
pub struct Settings {
    pub python_path: Option<String>,
    pub warm_instances: usize,
}

struct Shared {
    engine: Engine,
    pre: SandboxPre<Guest>,
}

impl Shared {
    /// A started instance, ready for its first script: the snapshot already holds gears.py, so
    /// starting is instantiating. A first script, run now, checks that the guest answers and
    /// warms the instance: its first compile and run touch (copy-on-write) ~2 ms worth of memory
    /// pages, which a parked instance then no longer pays for on the request path. Every script
    /// gets fresh globals, so it leaves nothing behind. An instance made on the request path
    /// (`warm` false: the pool was empty) skips it: the request's own script warms it.
    fn new_instance(&self, warm: bool) -> Result<Arc<Instance>, String> {
        let instance = Instance::spawn(&self.engine, &self.pre, BOOT_MEMORY)?;
        if !warm {
            return Ok(instance);
        }
        let deadline = Some(Instant::now() + BOOT_TIMEOUT);
        match instance.command(kind::RUN_SCRIPT, &Value::bulk(WARM_UP), None, deadline, false) {
            Ok(Value::Array(items)) if matches!(items.as_slice(), [Value::Status(s)] if s == "done") => Ok(instance),
            Ok(other) => Err(format!("the wasm guest answered its first script with {}", wire::text_of(&other))),
            Err(Failure::Dead(reason)) => Err(reason),
            Err(Failure::Stopped(_)) => Err("the wasm guest did not start in time".into()),
        }
    }
}

/// The script every instance runs before it is handed out (see `Shared::new_instance`).
const WARM_UP: &str = "x = [str(i) for i in range(10)]\n";

pub struct WasmRuntime {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    live: Arc<AtomicUsize>,
    /// What happened at load (compiled or cache hit), for the log.
    pub load_note: String,
}

impl WasmRuntime {
    /// Find, verify and load the guest, start the epoch ticker and the warm pool. Any error is a
    /// sentence for the MODULE LOAD log line.
    pub fn start(settings: Settings) -> Result<WasmRuntime, String> {
        let path = artefact::locate(settings.python_path.as_deref())?;
        let engine = artefact::engine()?;
        let (component, load_note) = artefact::load_component(&engine, &path)?;
        eprintln!("gearbox: wasm mode: {load_note}");
        let link = |e: wasmtime::Error| format!("could not link the wasm guest {}: {e:#}", path.display());
        let mut linker = Linker::new(&engine);
        Sandbox::add_to_linker::<_, HasSelf<_>>(&mut linker, |g| g).map_err(link)?;
        wasi::add_to_linker(&mut linker, &engine, &component).map_err(link)?;
        linker.define_unknown_imports_as_traps(&component).map_err(link)?;
        let pre = linker.instantiate_pre(&component).and_then(SandboxPre::new).map_err(link)?;
        let shared = Arc::new(Shared { engine: engine.clone(), pre });
        std::thread::Builder::new()
            .name("gearbox-wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(10));
                engine.increment_epoch();
            })
            .map_err(|e| format!("could not start the wasm epoch thread: {e}"))?;
        // Fail the load now, with the guest's own words, if the guest cannot start at all; the
        // instance started for the check becomes the first parked one.
        let first = shared.new_instance(true)?;
        let maker = shared.clone();
        let pool = Pool::start(settings.warm_instances, Some(first), move || maker.new_instance(true))?;
        Ok(WasmRuntime { shared, pool, live: Arc::new(AtomicUsize::new(0)), load_note })
    }
}

impl Runtime for WasmRuntime {
    fn mode_name(&self) -> &'static str {
        "wasm"
    }

    fn create_interpreter(&self, host: Arc<dyn Host>) -> Result<Box<dyn Interpreter>, String> {
        let instance = match self.pool.take() {
            Some(instance) => instance,
            None => self.shared.new_instance(false)?,
        };
        let limit_mb = host.config_get("WasmMemoryLimitMB").and_then(|v| v.parse::<usize>().ok()).unwrap_or(256);
        instance.max_memory.store(limit_mb.saturating_mul(1 << 20), Ordering::SeqCst);
        self.live.fetch_add(1, Ordering::SeqCst);
        let session = Arc::new(Session { instance, host, live: self.live.clone() });
        Ok(Box::new(WasmInterpreter { session }))
    }

    fn live_interpreters(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn ready_interpreters(&self) -> usize {
        self.pool.parked()
    }
}

/// A claimed instance, held by the interpreter and its jobs; the instance exits with the last.
struct Session {
    instance: Arc<Instance>,
    host: Arc<dyn Host>,
    live: Arc<AtomicUsize>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn dead_text(reason: &str) -> String {
    format!("gearbox: this script's wasm instance is gone ({reason})")
}

struct WasmInterpreter {
    session: Arc<Session>,
}

impl Interpreter for WasmInterpreter {
    fn run_script(&self, source: &str, timeout: Duration) -> Result<ScriptOutcome, String> {
        let s = &self.session;
        let answer = s.instance.command(kind::RUN_SCRIPT, &Value::bulk(source), Some(&s.host), Some(Instant::now() + timeout), true);
        let items = match answer {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err("gearbox: the wasm guest answered run_script with an unexpected value".into()),
            Err(Failure::Stopped(_)) => return Err(errors::script_timeout(timeout.as_millis())),
            Err(Failure::Dead(reason)) => return Err(dead_text(&reason)),
        };
        match items.as_slice() {
            [Value::Status(s)] if s == "done" => Ok(ScriptOutcome::Done),
            [Value::Status(s), Value::Int(id), Value::Array(steps)] if s == "run" => {
                let steps = steps
                    .iter()
                    .filter_map(|step| match step {
                        Value::Array(p) if p.len() == 3 => {
                            Some(StepInfo { kind: wire::text_of(&p[0]), name: wire::text_of(&p[1]), arg: wire::text_of(&p[2]) })
                        }
                        _ => None,
                    })
                    .collect();
                Ok(ScriptOutcome::Run(Box::new(WasmJob {
                    session: self.session.clone(),
                    work: Some(Work::Plan(*id)),
                    steps,
                    inline: false,
                })))
            }
            [Value::Status(s), text] if s == "error" => Err(wire::text_of(text)),
            _ => Err("gearbox: the wasm guest answered run_script with an unexpected value".into()),
        }
    }

    fn event_job(&self, handle: i64, record: Value, inline: bool) -> Box<dyn Job> {
        Box::new(WasmJob { session: self.session.clone(), work: Some(Work::Event(handle, record)), steps: Vec::new(), inline })
    }

    fn on_registered(&self, handle: i64, timeout: Duration) -> Result<(), String> {
        let s = &self.session;
        match s.instance.command(kind::ON_REGISTERED, &Value::Int(handle), Some(&s.host), Some(Instant::now() + timeout), true) {
            Ok(Value::Nil) => Ok(()),
            Ok(other) => Err(wire::text_of(&other)),
            Err(Failure::Stopped(_)) => Err(errors::script_timeout(timeout.as_millis())),
            Err(Failure::Dead(reason)) => Err(dead_text(&reason)),
        }
    }

    fn profile(&self, request: &ProfileRequest, timeout: Duration) -> Result<Option<String>, String> {
        let s = &self.session;
        match s.instance.command(kind::PROFILE, &request.to_value(), Some(&s.host), Some(Instant::now() + timeout), true) {
            Ok(Value::Nil) => Ok(None),
            Ok(Value::Error(text)) => Err(text),
            Ok(stats) => Ok(Some(wire::text_of(&stats))),
            Err(Failure::Stopped(_)) => Err(errors::script_timeout(timeout.as_millis())),
            Err(Failure::Dead(reason)) => Err(dead_text(&reason)),
        }
    }

    fn use_requirements(&self, requirements: &[Arc<Requirement>], timeout: Duration) -> Result<(), String> {
        let roots = requirement_files::roots(requirements)?;
        let s = &self.session;
        match s.instance.command(kind::USE_REQUIREMENTS, &roots, Some(&s.host), Some(Instant::now() + timeout), true) {
            Ok(Value::Nil) => Ok(()),
            Ok(other) => Err(wire::text_of(&other)),
            Err(Failure::Stopped(_)) => Err(errors::script_timeout(timeout.as_millis())),
            Err(Failure::Dead(reason)) => Err(dead_text(&reason)),
        }
    }

    fn runtime(&self) -> gearbox_engine::RuntimeKind {
        gearbox_engine::RuntimeKind::Wasm
    }

    fn memory_bytes(&self) -> u64 {
        self.session.instance.memory_bytes()
    }
}

/// What a job runs in the guest: a plan kept there under an integer id, or a registration's
/// steps (by handle) over one event record.
enum Work {
    Plan(i64),
    Event(i64, Value),
}

struct WasmJob {
    session: Arc<Session>,
    work: Option<Work>,
    steps: Vec<StepInfo>,
    /// Runs on a thread holding the Redis lock (a sync registration): may nest (instance.rs).
    inline: bool,
}

fn outcome_of(value: Value) -> Outcome {
    let Value::Array(parts) = value else {
        return match value {
            Value::Error(text) => Outcome::failed(text),
            _ => Outcome::failed("gears plan returned an unexpected value"),
        };
    };
    let mut parts = parts.into_iter();
    let (Some(Value::Array(results)), Some(Value::Array(errors)), Some(Value::Array(step_ms))) = (parts.next(), parts.next(), parts.next())
    else {
        return Outcome::failed("gears plan returned an unexpected value");
    };
    Outcome {
        results,
        errors: errors.iter().map(wire::text_of).collect(),
        step_ms: step_ms.iter().map(|v| if let Value::Int(n) = v { (*n).max(0) as u64 } else { 0 }).collect(),
    }
}

impl Job for WasmJob {
    fn steps(&self) -> Vec<StepInfo> {
        self.steps.clone()
    }

    fn run(mut self: Box<Self>, control: &RunControl) -> Outcome {
        let Some(work) = self.work.take() else { return Outcome::failed("execution plan already ran") };
        let s = &self.session;
        let interrupt = s.instance.interrupt.clone();
        control.set_interrupter(Some(Arc::new(move || interrupt.abort())));
        if control.is_aborted() {
            control.set_interrupter(None);
            return Outcome::failed(errors::EXECUTION_ABORTED);
        }
        let (k, arg) = match work {
            Work::Plan(id) => (kind::RUN_PLAN, Value::Int(id)),
            Work::Event(handle, record) => {
                let profile = s.host.config_get("ProfileExecutions").is_some_and(|v| v != "0");
                (kind::FIRE, Value::Array(vec![Value::Int(handle), record, Value::Int(profile as i64)]))
            }
        };
        let answer = s.instance.command(k, &arg, Some(&s.host), control.deadline(), self.inline);
        control.set_interrupter(None);
        match answer {
            Ok(value) => outcome_of(value),
            Err(Failure::Stopped(Stop::Aborted)) => Outcome::failed(errors::EXECUTION_ABORTED),
            Err(Failure::Stopped(Stop::Timeout)) => match control.timeout() {
                Some(limit) => Outcome::failed(errors::script_timeout(limit.as_millis())),
                None => Outcome::failed("gearbox: the execution ran past its deadline"),
            },
            Err(Failure::Dead(reason)) => Outcome::failed(dead_text(&reason)),
        }
    }
}

impl Drop for WasmJob {
    fn drop(&mut self) {
        // A plan that never ran: free it in the guest unless the instance is busy (then it is
        // freed with the instance).
        if let Some(Work::Plan(id)) = self.work.take() {
            if self.session.instance.is_idle() {
                let _ = self.session.instance.command(kind::DROP_PLAN, &Value::Int(id), None, None, false);
            }
        }
    }
}
