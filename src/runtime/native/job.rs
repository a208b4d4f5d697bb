//! Calls into `gears.py`: running a script's top level (`gears._run_script`) and running an
//! execution's plan (the callable `run()` left behind) on an execution thread.
//!
//! `_run_script(source)` answers `None` (nothing to run), `("error", text)` (the exact reply
//! text, already formatted by PythonAttemptTraceback) or `("run", plan, steps)` where `plan()`
//! returns `(results, errors, step_ms)` and `steps` lists `(type, name, arg)` for RG.GETEXECUTION.

use std::ffi::c_char;
use std::sync::{Arc, Mutex};

use gearbox_engine::errors;
use gearbox_engine::{Job, Outcome, RunControl, StepInfo, Value};
use pyo3_ffi as ffi;

use super::convert;
use super::cpython::{self, utf8_of, Attached};
use super::py_token::{Obj, Py};
use super::{deactivate, InterpCore, ObjPtr};
use gearbox_engine::watchdog::Watchdog;

/// An owned reference to a plan callable, released attached to its interpreter.
pub struct Plan {
    callable: ObjPtr,
    steps: Vec<StepInfo>,
}

pub enum ScriptResult {
    Done,
    Run(Plan),
}

/// # Safety
/// Attached; `tuple` is a live tuple with more than `i` items.
unsafe fn tuple_str(tuple: *mut ffi::PyObject, i: ffi::Py_ssize_t) -> String {
    // SAFETY: the caller's contract (# Safety): attached; `tuple` is a live tuple with more than
    // `i` items.
    unsafe {
        let item = ffi::PyTuple_GetItem(tuple, i);
        if item.is_null() {
            ffi::PyErr_Clear();
            return String::new();
        }
        if ffi::PyUnicode_Check(item) != 0 {
            return utf8_of(item).unwrap_or_default();
        }
        let s = ffi::PyObject_Str(item);
        let out = utf8_of(s).unwrap_or_default();
        ffi::Py_DecRef(s);
        out
    }
}

/// # Safety
/// Attached; `list` is NULL or a live object (borrowed).
unsafe fn steps_of(list: *mut ffi::PyObject) -> Vec<StepInfo> {
    // SAFETY: the caller's contract (# Safety): attached; `list` is borrowed.
    unsafe {
        if list.is_null() || ffi::PyList_Check(list) == 0 {
            return Vec::new();
        }
        (0..ffi::PyList_Size(list))
            .filter_map(|i| {
                let step = ffi::PyList_GetItem(list, i);
                if ffi::PyTuple_Check(step) == 0 || ffi::PyTuple_Size(step) < 3 {
                    return None;
                }
                Some(StepInfo { kind: tuple_str(step, 0), name: tuple_str(step, 1), arg: tuple_str(step, 2) })
            })
            .collect()
    }
}

/// `gears.<name>`: a new reference, or the formatted error.
fn gears_function(_py: Py<'_>, name: &std::ffi::CStr) -> Result<*mut ffi::PyObject, String> {
    // SAFETY: attached (`_py`); the module reference is released once the attribute is taken.
    unsafe {
        let gears = ffi::PyImport_ImportModule(c"gears".as_ptr());
        if gears.is_null() {
            return Err(cpython::take_error_text());
        }
        let f = ffi::PyObject_GetAttrString(gears, name.as_ptr());
        ffi::Py_DecRef(gears);
        if f.is_null() {
            return Err(cpython::take_error_text());
        }
        Ok(f)
    }
}

/// Run a script's top level through `gears._run_script`, given its code compiled elsewhere
/// (marshalled) or, failing that, its source (then the script's interpreter compiles it and
/// reports any SyntaxError its own way).
pub fn run_script(_py: &Attached, source: &str, compiled: Option<&[u8]>) -> Result<ScriptResult, String> {
    // SAFETY: attached (proof `_py`); every new reference is released on every path.
    unsafe {
        let f = gears_function(_py.py(), c"_run_script")?;
        let code = compiled
            .map(|c| ffi::PyMarshal_ReadObjectFromString(c.as_ptr() as *const c_char, c.len() as ffi::Py_ssize_t))
            .unwrap_or(std::ptr::null_mut());
        if code.is_null() {
            ffi::PyErr_Clear();
        }
        let src = if code.is_null() {
            ffi::PyUnicode_FromStringAndSize(source.as_ptr() as *const c_char, source.len() as ffi::Py_ssize_t)
        } else {
            code
        };
        if src.is_null() {
            ffi::Py_DecRef(f);
            return Err(cpython::take_error_text());
        }
        let result = ffi::PyObject_CallOneArg(f, src);
        ffi::Py_DecRef(src);
        ffi::Py_DecRef(f);
        if result.is_null() {
            return Err(cpython::take_error_text());
        }
        let out = if result == ffi::Py_None() {
            Ok(ScriptResult::Done)
        } else if ffi::PyTuple_Check(result) != 0 && ffi::PyTuple_Size(result) >= 2 {
            match tuple_str(result, 0).as_str() {
                "run" if ffi::PyTuple_Size(result) >= 3 => {
                    let callable = ffi::PyTuple_GetItem(result, 1);
                    ffi::Py_IncRef(callable);
                    let steps = steps_of(ffi::PyTuple_GetItem(result, 2));
                    Ok(ScriptResult::Run(Plan { callable: ObjPtr(callable), steps }))
                }
                _ => Err(tuple_str(result, 1)),
            }
        } else {
            Err("gears._run_script returned an unexpected value".to_string())
        };
        ffi::Py_DecRef(result);
        out
    }
}

/// What a job runs: the plan `run()` left, or a registration's steps over one event.
pub enum Work {
    Plan(Plan),
    Event { handle: i64, record: Value },
}

/// An execution's work, run attached to the session's interpreter: on an execution thread, or
/// inline on a thread holding the Redis lock (a sync registration, stopped at its deadline).
pub struct NativeJob {
    core: Arc<InterpCore>,
    work: Option<Work>,
    watchdog: Watchdog,
}

impl NativeJob {
    pub(super) fn new(core: Arc<InterpCore>, work: Work, watchdog: Watchdog) -> NativeJob {
        NativeJob { core, work: Some(work), watchdog }
    }
}

/// A plan's `(results, errors, step_ms)` tuple as an outcome.
fn outcome_of(result: Obj<'_>) -> Outcome {
    // SAFETY: attached; `result` is live; the checks only read it.
    let triple = unsafe { ffi::PyTuple_Check(result.as_ptr()) != 0 && ffi::PyTuple_Size(result.as_ptr()) == 3 };
    if !triple {
        return Outcome::failed("gears plan returned an unexpected value");
    }
    Outcome {
        results: convert::result_list(result.tuple_item(0)),
        errors: convert::error_list(result.tuple_item(1)),
        step_ms: convert::u64_list(result.tuple_item(2)),
    }
}

/// Call `gears.<name>(handle[, record, profile])`: a new reference, or the formatted error.
fn call_registration(py: Py<'_>, name: &std::ffi::CStr, handle: i64, record: Option<(&Value, bool)>) -> Result<*mut ffi::PyObject, String> {
    // SAFETY: attached (`py`). Every new reference made here is released; the result is the
    // caller's.
    unsafe {
        let f = gears_function(py, name)?;
        let h = ffi::PyLong_FromLongLong(handle);
        let result = match record {
            Some((r, profile)) => {
                let rec = convert::reply_to_py(py, r);
                let prof = ffi::PyBool_FromLong(profile as std::ffi::c_long);
                let out = ffi::PyObject_CallFunctionObjArgs(f, h, rec, prof, std::ptr::null_mut::<ffi::PyObject>());
                ffi::Py_DecRef(prof);
                ffi::Py_DecRef(rec);
                out
            }
            None => ffi::PyObject_CallOneArg(f, h),
        };
        ffi::Py_DecRef(h);
        ffi::Py_DecRef(f);
        if result.is_null() {
            Err(cpython::take_error_text())
        } else {
            Ok(result)
        }
    }
}

/// Run registration `handle`'s onRegistered callback, attached on this thread.
pub fn on_registered(_py: &Attached, handle: i64) -> Result<(), String> {
    // SAFETY: attached (proof `_py`); the result is released.
    unsafe {
        let result = call_registration(_py.py(), c"_on_registered", handle, None)?;
        let out = if result == ffi::Py_None() { Ok(()) } else { Err(utf8_of(result).unwrap_or_default()) };
        ffi::Py_DecRef(result);
        out
    }
}

/// RG.PYPROFILE's request to gears.py's `_profile`, attached on this thread: the pstats text, or
/// None when there is none (and for a reset).
pub fn profile(_py: &Attached, request: &Value) -> Result<Option<String>, String> {
    // SAFETY: attached (proof `_py`); the result is released.
    unsafe {
        let result = call_gears(_py, c"_profile", request)?;
        let out = if result == ffi::Py_None() { None } else { Some(utf8_of(result).unwrap_or_default()) };
        ffi::Py_DecRef(result);
        Ok(out)
    }
}

/// REQUIREMENTS: put these directories first on this interpreter's `sys.path`.
pub fn use_requirements(_py: &Attached, paths: &[String]) -> Result<(), String> {
    let roots = Value::Array(paths.iter().map(|p| Value::Status(p.clone())).collect());
    // SAFETY: attached (proof `_py`); the result is released.
    unsafe {
        ffi::Py_DecRef(call_gears(_py, c"_use_requirements", &roots)?);
    }
    Ok(())
}

/// gears.py's function `name` called with `arg`: a new reference to its result, or the
/// formatted exception.
fn call_gears(_py: &Attached, name: &std::ffi::CStr, arg: &Value) -> Result<*mut ffi::PyObject, String> {
    let py = _py.py();
    // SAFETY: attached (proof `_py`). Every new reference made here is released but the result.
    unsafe {
        let f = gears_function(py, name)?;
        let arg = convert::reply_to_py(py, arg);
        let result = ffi::PyObject_CallOneArg(f, arg);
        ffi::Py_DecRef(arg);
        ffi::Py_DecRef(f);
        if result.is_null() {
            return Err(cpython::take_error_text());
        }
        Ok(result)
    }
}

impl Job for NativeJob {
    fn steps(&self) -> Vec<StepInfo> {
        match &self.work {
            Some(Work::Plan(p)) => p.steps.clone(),
            _ => Vec::new(),
        }
    }

    fn run(mut self: Box<Self>, control: &RunControl) -> Outcome {
        let Some(work) = self.work.take() else {
            return Outcome::failed("execution plan already ran");
        };
        let profile = self.core.profiling();
        let py = cpython::attach(self.core.interp);
        let active = Arc::new(Mutex::new(true));
        let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        control.set_interrupter(Some(self.core.interrupter(py.thread_ident(), self.core.abort_exception, active.clone(), false, fired)));
        let timed_out = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let armed = control.deadline().map(|d| {
            let f = self.core.interrupter(py.thread_ident(), self.core.timeout_exception, active.clone(), true, timed_out.clone());
            self.watchdog.arm(d.saturating_duration_since(std::time::Instant::now()), f)
        });
        // SAFETY: attached; the plan callable is our owned reference, released here.
        let outcome = unsafe {
            let result = match (&work, control.is_aborted()) {
                (_, true) => Err(String::new()),
                (Work::Plan(plan), false) => {
                    let r = ffi::PyObject_CallNoArgs(plan.callable.0);
                    if r.is_null() {
                        Err(cpython::take_error_text())
                    } else {
                        Ok(r)
                    }
                }
                (Work::Event { handle, record }, false) => call_registration(py.py(), c"_fire", *handle, Some((record, profile))),
            };
            deactivate(&active);
            drop(armed);
            control.set_interrupter(None);
            let outcome = match result {
                Err(_) if control.is_aborted() => Outcome::failed(errors::EXECUTION_ABORTED),
                Err(_) if timed_out.load(std::sync::atomic::Ordering::SeqCst) > 0 => {
                    Outcome::failed(errors::script_timeout(control.timeout().unwrap_or_default().as_millis()))
                }
                Err(text) => Outcome::failed(text),
                Ok(r) => {
                    let o = Obj::borrowed(py.py(), r).map(outcome_of).unwrap_or_else(|| Outcome::failed("gears plan returned nothing"));
                    ffi::Py_DecRef(r);
                    o
                }
            };
            if let Work::Plan(plan) = work {
                ffi::Py_DecRef(plan.callable.0);
            }
            outcome
        };
        drop(py);
        outcome
    }
}

impl Drop for NativeJob {
    fn drop(&mut self) {
        if let Some(Work::Plan(plan)) = self.work.take() {
            let py = cpython::attach(self.core.interp);
            // SAFETY: attached to the interpreter that owns the callable.
            unsafe { ffi::Py_DecRef(plan.callable.0) };
            drop(py);
        }
    }
}
