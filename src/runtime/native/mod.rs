//! Native mode: every session is its own CPython sub-interpreter with its own GIL.
//!
//! An interpreter is created per script (never per execution), bootstrapped with the `_gearbox`
//! host module and `gears.py`, and ended when the session's last holder drops it. Executions run
//! on the engine's pool: each attaches to its session's interpreter for the length of the job.
//! Unsafe code lives in `cpython.rs` (interpreter and thread states), `convert.rs` and
//! `hostmodule.rs` (objects); this file only composes them.

mod arenas;
mod call_edge;
mod convert;
mod cpython;
mod fd_guard;
mod host_keys;
mod hostmodule;
mod import_guard;
mod interrupts;
mod job;
mod memory_ledger;
mod pool;
mod py_token;
mod scratch;
mod teardown;
mod thread_states;

use std::ffi::{c_ulong, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gearbox_engine::errors;
use gearbox_engine::port::ScriptOutcome;
use gearbox_engine::{Host, Interpreter, Job, ProfileRequest, Runtime, Value};
use pyo3_ffi as ffi;

use cpython::{Attached, InterpPtr};
use gearbox_engine::requirements::Requirement;
use gearbox_engine::watchdog::Watchdog;
use interrupts::Push;
use job::{NativeJob, Work};

/// The API every script sees, shared with the wasm runtime.
const GEARS_PY: &str = include_str!("../../../python/gears.py");
/// Async records (gearsFuture, coroutines), imported by `gears_pipeline.py`.
const ASYNC_PY: &str = include_str!("../../../python/gears_async.py");
/// Readers and steps, imported by `gears.py`.
const PIPELINE_PY: &str = include_str!("../../../python/gears_pipeline.py");
/// Registrations and time events, imported by `gears.py`.
const EVENTS_PY: &str = include_str!("../../../python/gears_events.py");
/// threading's locks waiting in slices, installed by `guards.py` (the wasm guest shares it).
const WAITS_PY: &str = include_str!("../../../python/gears_waits.py");
/// REQUIREMENTS made importable in one interpreter, imported by `gears.py`.
const REQUIREMENTS_PY: &str = include_str!("../../../python/gears_requirements.py");
/// Run first in every sub-interpreter: works around CPython versions known to crash.
const BOOT_PY: &str = include_str!("boot.py");
/// Run last when an interpreter is prepared: the native-mode guards (see guards.py).
const GUARDS_PY: &str = include_str!("guards.py");

/// A borrowed pointer to an object owned by one interpreter.
#[derive(Clone, Copy)]
struct ObjPtr(*mut ffi::PyObject);
// SAFETY: only dereferenced attached to the owning interpreter (see `interrupts::interrupt`).
unsafe impl Send for ObjPtr {}
// SAFETY: as above.
unsafe impl Sync for ObjPtr {}

impl ObjPtr {
    fn get(self) -> *mut ffi::PyObject {
        self.0
    }
}

/// An interpreter, ended when the last `Arc` goes: held by the session, by its jobs and by any
/// interrupter in flight, so none of them can outlive it.
struct InterpCore {
    interp: InterpPtr,
    id: i64,
    abort_exception: ObjPtr,
    timeout_exception: ObjPtr,
    live: Arc<AtomicUsize>,
    /// Freed by the reaper after the interpreter ended, so freeing the host (which takes the
    /// Redis lock) never happens while this interpreter's GIL is held.
    host: Option<Arc<dyn Host>>,
    reaper: pool::Reaper,
}

impl Drop for InterpCore {
    fn drop(&mut self) {
        self.reaper.bury(pool::Corpse {
            interp: self.interp,
            id: self.id,
            stop: self.abort_exception,
            host: self.host.take(),
            live: self.live.clone(),
        });
    }
}

impl InterpCore {
    /// Whether executions record per-step times (ProfileExecutions), asked of the host in Rust
    /// so an event costs no extra call from Python.
    fn profiling(&self) -> bool {
        self.host.as_ref().and_then(|h| h.config_get("ProfileExecutions")).is_some_and(|v| v != "0")
    }

    /// An interrupter for code running on `thread`: raises `exception` there while `active`.
    /// With `escalate`, every call after the first also makes every line raise (see
    /// `interrupts::Push`); `fired` counts the calls.
    fn interrupter(
        self: &Arc<Self>,
        thread: c_ulong,
        exception: ObjPtr,
        active: Arc<Mutex<bool>>,
        escalate: bool,
        fired: Arc<AtomicUsize>,
    ) -> Arc<dyn Fn() + Send + Sync> {
        let core = self.clone();
        Arc::new(move || {
            let n = fired.fetch_add(1, Ordering::SeqCst);
            let push = if escalate && n > 0 { Push::RaiseAtEveryLine } else { Push::Raise };
            let still_wanted = || *active.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: `exception` is one of the exception types of the core's `_gearbox` module,
            // alive as long as the interpreter, which `core` keeps alive.
            unsafe { interrupts::interrupt(core.interp, thread, exception.get(), push, still_wanted) };
        })
    }
}

/// Marks the end of a stretch of user code: must be called attached, so an interrupter (which
/// checks the flag attached) can never fire after it.
fn deactivate(active: &Mutex<bool>) {
    *active.lock().unwrap_or_else(|e| e.into_inner()) = false;
}

pub struct NativeRuntime {
    sources: Arc<Sources>,
    live: Arc<AtomicUsize>,
    watchdog: Watchdog,
    pool: pool::InterpreterPool,
    reaper: pool::Reaper,
}

impl NativeRuntime {
    /// Start CPython in this process. Call once, on Redis' main thread, at module load.
    pub fn start(pool_size: usize, requirements_dir: &str) -> Result<NativeRuntime, String> {
        let (major, minor, patch) = cpython::python_version();
        if (major, minor) < (3, 13) {
            return Err(format!("Python {major}.{minor}.{patch} is too old: gearbox needs 3.13+ (own-GIL sub-interpreters)"));
        }
        cpython::initialize(env!("GEARBOX_PYTHON_HOME"), hostmodule::MODULE_NAME, hostmodule::init_module)?;
        scratch::remove_stale();
        let sources = Arc::new(Sources::compile(requirements_dir)?);
        let watchdog = Watchdog::start("gearbox-watchdog", Duration::from_millis(100)).map_err(|e| e.to_string())?;
        let pool = pool::InterpreterPool::start(pool_size, sources.clone()).map_err(|e| e.to_string())?;
        let reaper = pool::Reaper::start(watchdog.clone()).map_err(|e| e.to_string())?;
        Ok(NativeRuntime { sources, live: Arc::new(AtomicUsize::new(0)), watchdog, pool, reaper })
    }

    pub fn python_version() -> String {
        let (a, b, c) = cpython::python_version();
        format!("{a}.{b}.{c}")
    }
}

/// The Python every interpreter loads, compiled once at start-up and kept marshalled.
pub struct Sources {
    boot: Vec<u8>,
    asyncs: Vec<u8>,
    pipeline: Vec<u8>,
    events: Vec<u8>,
    requirements: Vec<u8>,
    gears: Vec<u8>,
    waits: Vec<u8>,
    guards: Vec<u8>,
    /// Where REQUIREMENTS are installed: the guards let scripts read there.
    requirements_dir: CString,
}

impl Sources {
    fn compile(requirements_dir: &str) -> Result<Sources, String> {
        // The main interpreter runs without `site`; give every sub-interpreter the same
        // site-packages directories `site` would have added.
        let site_paths =
            cpython::eval_in_main("repr([p for p in __import__('site').getsitepackages() if __import__('os').path.isdir(p)])")?;
        let boot = format!("{BOOT_PY}\nsys.path.extend(p for p in {site_paths} if p not in sys.path)\n");
        freeze_start_up_modules();
        Ok(Sources {
            boot: cpython::compile_marshalled(&boot, c"boot.py")?,
            asyncs: cpython::compile_marshalled(ASYNC_PY, c"gears_async.py")?,
            pipeline: cpython::compile_marshalled(PIPELINE_PY, c"gears_pipeline.py")?,
            events: cpython::compile_marshalled(EVENTS_PY, c"gears_events.py")?,
            requirements: cpython::compile_marshalled(REQUIREMENTS_PY, c"gears_requirements.py")?,
            waits: cpython::compile_marshalled(WAITS_PY, c"gears_waits.py")?,
            gears: cpython::compile_marshalled(GEARS_PY, c"gears.py")?,
            guards: cpython::compile_marshalled(GUARDS_PY, c"guards.py")?,
            requirements_dir: CString::new(requirements_dir).map_err(|_| "RequirementsDir contains a NUL byte".to_string())?,
        })
    }
}

/// Standard-library modules every new interpreter imports (CPython's start-up: the codec
/// registry; gears.py: `types`), handed to CPython as frozen modules: found in memory instead
/// of through importlib's path finder (a directory listing, `stat`s and reading `.pyc` files
/// in each new interpreter). Session create+run+destroy 3.9-4.2 -> 3.5-3.6 ms.
const START_UP_MODULES: [&str; 5] = ["encodings", "encodings.aliases", "encodings.ascii", "encodings.utf_8", "types"];

/// Best effort: without them (no source found, say) interpreters import from `sys.path`.
fn freeze_start_up_modules() {
    match START_UP_MODULES.iter().map(|name| start_up_module(name)).collect::<Result<Vec<_>, String>>() {
        Ok(modules) => cpython::install_frozen(modules),
        Err(e) => eprintln!("gearbox: start-up modules are imported from sys.path: {e}"),
    }
}

fn start_up_module(name: &str) -> Result<cpython::FrozenModule, String> {
    // "<origin>\0<is a package>": NUL cannot occur in a path.
    let found = cpython::eval_in_main(&format!(
        "(lambda s: s.origin + chr(0) + str(s.submodule_search_locations is not None))(__import__('importlib.util').util.find_spec({name:?}))"
    ))?;
    let (origin, is_package) = found.rsplit_once('\0').ok_or_else(|| format!("no source for {name}"))?;
    let source = std::fs::read_to_string(origin).map_err(|e| format!("cannot read {origin}: {e}"))?;
    let filename = CString::new(origin).map_err(|_| format!("{name}: NUL in its path"))?;
    let code = cpython::compile_marshalled(&source, &filename)?;
    let name = CString::new(name).map_err(|_| "NUL in a module name".to_string())?;
    Ok(cpython::FrozenModule { name, code, is_package: is_package == "True" })
}

/// Load what every script needs into a fresh interpreter; returns its abort and timeout
/// exception types. No host yet: an interpreter may wait in the pool before a session adopts it.
fn bootstrap(py: &Attached, sources: &Sources) -> Result<(ObjPtr, ObjPtr), String> {
    // SAFETY: attached (proof `py`); every new reference is released.
    unsafe {
        ffi::Py_DecRef(cpython::exec_module(py, c"_gearbox_boot", &sources.boot, c"boot.py")?);
        let module = ffi::PyImport_ImportModule(hostmodule::MODULE_NAME.as_ptr());
        if module.is_null() {
            return Err(cpython::take_error_text());
        }
        let abort = hostmodule::exception_type(module, c"forcestopped");
        let timeout = hostmodule::exception_type(module, c"ScriptTimeout");
        // The guards (run last below) read it: the one directory the script may write.
        let id = ffi::PyInterpreterState_GetID(ffi::PyInterpreterState_Get());
        let dir =
            scratch::create(id).and_then(|p| CString::new(p.to_string_lossy().into_owned()).map_err(|_| "a NUL in the temp dir".into()));
        let dir = match dir {
            Ok(d) => d,
            Err(e) => {
                ffi::Py_DecRef(module);
                return Err(e);
            }
        };
        ffi::PyModule_AddStringConstant(module, c"scratch_dir".as_ptr(), dir.as_ptr());
        ffi::PyModule_AddStringConstant(module, c"requirements_dir".as_ptr(), sources.requirements_dir.as_ptr());
        // The guards' list of refused imports (import_guard.rs keeps the one copy).
        let refused = ffi::PyTuple_New(import_guard::REFUSED.len() as ffi::Py_ssize_t);
        for (i, name) in import_guard::REFUSED.iter().enumerate() {
            ffi::PyTuple_SetItem(
                refused,
                i as ffi::Py_ssize_t,
                ffi::PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as ffi::Py_ssize_t),
            );
        }
        if refused.is_null() || ffi::PyModule_AddObjectRef(module, c"refused_imports".as_ptr(), refused) < 0 {
            ffi::Py_XDECREF(refused);
            ffi::Py_DecRef(module);
            return Err(cpython::take_error_text());
        }
        ffi::Py_DecRef(refused);
        ffi::Py_DecRef(module);
        for (name, code, file) in [
            (c"gears_async", &sources.asyncs, c"gears_async.py"),
            (c"gears_pipeline", &sources.pipeline, c"gears_pipeline.py"),
            (c"gears_events", &sources.events, c"gears_events.py"),
            (c"gears_requirements", &sources.requirements, c"gears_requirements.py"),
            (c"gears", &sources.gears, c"gears.py"),
            (c"gears_waits", &sources.waits, c"gears_waits.py"),
            (c"_gearbox_guards", &sources.guards, c"guards.py"),
        ] {
            ffi::Py_DecRef(cpython::exec_module(py, name, code, file)?);
        }
        import_guard::install()?;
        Ok((ObjPtr(abort), ObjPtr(timeout)))
    }
}

/// Give a prepared interpreter its session's host.
fn adopt(interp: InterpPtr, host: Arc<dyn Host>) -> Result<(), String> {
    let _py = cpython::attach(interp);
    // SAFETY: attached; `_gearbox` was imported by `bootstrap`, so this is a sys.modules look-up.
    unsafe {
        let module = ffi::PyImport_ImportModule(hostmodule::MODULE_NAME.as_ptr());
        if module.is_null() {
            return Err(cpython::take_error_text());
        }
        hostmodule::install_host(module, host);
        ffi::Py_DecRef(module);
    }
    Ok(())
}

impl Runtime for NativeRuntime {
    fn mode_name(&self) -> &'static str {
        "native"
    }

    fn create_interpreter(&self, host: Arc<dyn Host>) -> Result<Box<dyn Interpreter>, String> {
        let prepared = match self.pool.take() {
            Some(p) => p,
            None => pool::prepare(&self.sources)?,
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        let core = Arc::new(InterpCore {
            interp: prepared.interp,
            id: prepared.id,
            abort_exception: prepared.abort_exception,
            timeout_exception: prepared.timeout_exception,
            live: self.live.clone(),
            host: Some(host.clone()),
            reaper: self.reaper.clone(),
        });
        if !memory_ledger::is_counted(core.id) {
            return Err("gearbox: too many live interpreters to count their memory; end some sessions first".into());
        }
        let limit_mb = host.config_get("NativeMemoryLimitMB").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: the core's interpreter is the one counted as `core.id`; it lives until the
        // reaper ends it, which releases the id first (pool.rs `end`).
        unsafe { memory_ledger::set_limit(core.id, core.interp.state(), limit_mb << 20) };
        adopt(core.interp, host)?;
        Ok(Box::new(NativeInterpreter { core, watchdog: self.watchdog.clone() }))
    }

    fn ready_interpreters(&self) -> usize {
        self.pool.ready()
    }

    fn live_interpreters(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

struct NativeInterpreter {
    core: Arc<InterpCore>,
    watchdog: Watchdog,
}

impl NativeInterpreter {
    /// Run `f` attached to this interpreter on this thread (which holds the Redis lock), stopped
    /// by ScriptTimeoutMS like top-level code.
    fn attached_call<T>(&self, timeout: Duration, f: impl FnOnce(&cpython::Attached) -> Result<T, String>) -> Result<T, String> {
        let py = cpython::attach(self.core.interp);
        let active = Arc::new(Mutex::new(true));
        let fired = Arc::new(AtomicUsize::new(0));
        let interrupter = self.core.interrupter(py.thread_ident(), self.core.timeout_exception, active.clone(), true, fired.clone());
        let armed = self.watchdog.arm(timeout, interrupter);
        let outcome = f(&py);
        deactivate(&active);
        drop(armed);
        drop(py);
        match outcome {
            Err(_) if fired.load(Ordering::SeqCst) > 0 => Err(errors::script_timeout(timeout.as_millis())),
            other => other,
        }
    }
}

impl Interpreter for NativeInterpreter {
    fn run_script(&self, source: &str, timeout: Duration) -> Result<ScriptOutcome, String> {
        // Compiling in the main interpreter, which has built its AST types once, spares each new
        // interpreter building its own (~11 M instructions); a script that does not compile is
        // compiled again below by its own interpreter, which reports the error.
        let compiled = cpython::compile_marshalled(source, c"<string>").ok();
        let py = cpython::attach(self.core.interp);
        let active = Arc::new(Mutex::new(true));
        let fired = Arc::new(AtomicUsize::new(0));
        let interrupter = self.core.interrupter(py.thread_ident(), self.core.timeout_exception, active.clone(), true, fired.clone());
        let armed = self.watchdog.arm(timeout, interrupter);
        let outcome = job::run_script(&py, source, compiled.as_deref());
        deactivate(&active);
        drop(armed);
        // A timeout raised after the script returned is discarded with the thread state.
        drop(py);
        match outcome {
            Err(_) if fired.load(Ordering::SeqCst) > 0 => Err(errors::script_timeout(timeout.as_millis())),
            Err(text) => Err(text),
            Ok(job::ScriptResult::Done) => Ok(ScriptOutcome::Done),
            Ok(job::ScriptResult::Run(plan)) => {
                Ok(ScriptOutcome::Run(Box::new(NativeJob::new(self.core.clone(), Work::Plan(plan), self.watchdog.clone()))))
            }
        }
    }

    fn event_job(&self, handle: i64, record: Value, _inline: bool) -> Box<dyn Job> {
        // Inline or not, a native job only ever waits for this interpreter's GIL, which nobody
        // holds while waiting for the Redis lock (see `hostmodule::maybe_without_gil`).
        Box::new(NativeJob::new(self.core.clone(), Work::Event { handle, record }, self.watchdog.clone()))
    }

    fn on_registered(&self, handle: i64, timeout: Duration) -> Result<(), String> {
        self.attached_call(timeout, |py| job::on_registered(py, handle))
    }

    fn profile(&self, request: &ProfileRequest, timeout: Duration) -> Result<Option<String>, String> {
        self.attached_call(timeout, |py| job::profile(py, &request.to_value()))
    }

    fn use_requirements(&self, requirements: &[Arc<Requirement>], timeout: Duration) -> Result<(), String> {
        let paths: Vec<String> = requirements.iter().map(|r| r.path.clone()).collect();
        self.attached_call(timeout, |py| job::use_requirements(py, &paths))
    }

    fn runtime(&self) -> gearbox_engine::RuntimeKind {
        gearbox_engine::RuntimeKind::Native
    }

    fn memory_bytes(&self) -> u64 {
        memory_ledger::bytes_of(self.core.id)
    }
}
