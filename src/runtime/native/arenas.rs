//! Gives a dead sub-interpreter's memory back to the OS.
//!
//! CPython 3.13 frees an own-GIL interpreter's object arenas at `Py_EndInterpreter` only if not a
//! single block is still allocated; otherwise it keeps every arena of that interpreter forever.
//! On 3.13.0 a few thousand blocks always remain (measured: 2,744 blocks, 1.7 MiB of RSS per
//! bare interpreter, ~2.7 MiB once the stdlib modules gears.py needs are imported), so each
//! `RG.PYEXECUTE` would leak megabytes. Nothing can reach those blocks once their interpreter is
//! gone (its modules, types and interned strings died with it; extensions that keep global
//! state are refused in own-GIL interpreters), so gearbox wraps CPython's arena allocator,
//! remembers which interpreter each arena belongs to, and unmaps the arenas of an interpreter
//! after it ended. `tests/e2e` and the stress test in `test_sessions_stress.py` exercise this.
//!
//! Freed arenas are not unmapped right away: up to `SPARE_BYTES` of them are kept and handed to
//! the next interpreter that asks for one of the same size. A fresh mapping costs a page fault
//! and a zeroed page for every 4 KiB the interpreter touches; `perf` of back-to-back
//! `RG.PYEXECUTE`s put page faults at ~28% of all CPU time, most of it in interpreter start-up.
//! Reused arenas are not cleared (obmalloc initialises pools as it carves them; the old bytes
//! are unreachable from Python code).

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use pyo3_ffi as ffi;

use super::memory_ledger;

/// Arena address → (size, owning interpreter id).
static ARENAS: Mutex<BTreeMap<usize, (usize, i64)>> = Mutex::new(BTreeMap::new());

struct Default(ffi::PyObjectArenaAllocator);
// SAFETY: CPython's default arena allocator is a pair of plain functions with a null context.
unsafe impl Send for Default {}
// SAFETY: as above.
unsafe impl Sync for Default {}

static DEFAULT: OnceLock<Default> = OnceLock::new();

/// Freed arenas kept mapped for reuse: (address, size).
static SPARE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// At most this many bytes of spare arenas (a few interpreters' worth; CPython's arenas are 1 MiB).
const SPARE_BYTES: usize = 16 << 20;

fn take_spare(size: usize) -> Option<*mut c_void> {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    let i = spare.iter().rposition(|(_, s)| *s == size)?;
    Some(spare.swap_remove(i).0 as *mut c_void)
}

/// Keep `ptr` as a spare if there is room, else give it back to CPython's allocator.
fn keep_or_free(ptr: usize, size: usize) {
    {
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        if spare.iter().map(|(_, s)| s).sum::<usize>() + size <= SPARE_BYTES {
            spare.push((ptr, size));
            return;
        }
    }
    if let Some(default) = DEFAULT.get() {
        if let Some(f) = default.0.free {
            f(default.0.ctx, ptr as *mut c_void, size);
        }
    }
}

fn current_interpreter_id() -> i64 {
    // SAFETY: obmalloc asks for arenas while a thread state is current (it needs one to find
    // its per-interpreter state); a null state is handled.
    unsafe {
        let ts = ffi::PyThreadState_GetUnchecked();
        if ts.is_null() {
            return -1;
        }
        ffi::PyInterpreterState_GetID(ffi::PyThreadState_GetInterpreter(ts))
    }
}

extern "C" fn alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let Some(default) = DEFAULT.get() else {
        return std::ptr::null_mut();
    };
    let Some(f) = default.0.alloc else {
        return std::ptr::null_mut();
    };
    let owner = current_interpreter_id();
    // An interpreter at its NativeMemoryLimitMB gets no more arenas (Python raises MemoryError).
    if !memory_ledger::charge_to(owner, size) {
        return std::ptr::null_mut();
    }
    let ptr = take_spare(size).unwrap_or_else(|| f(default.0.ctx, size));
    if ptr.is_null() {
        memory_ledger::credit_to(owner, size);
    } else if owner > 0 {
        ARENAS.lock().unwrap_or_else(|e| e.into_inner()).insert(ptr as usize, (size, owner));
    }
    ptr
}

extern "C" fn free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    if let Some((_, owner)) = ARENAS.lock().unwrap_or_else(|e| e.into_inner()).remove(&(ptr as usize)) {
        memory_ledger::credit_to(owner, size);
    }
    keep_or_free(ptr as usize, size);
}

/// Wrap CPython's arena allocator. Call before `Py_Initialize`.
pub fn install() {
    // SAFETY: before Py_Initialize nothing allocates arenas concurrently; the default allocator is
    // read once and kept for delegation.
    unsafe {
        let mut default = ffi::PyObjectArenaAllocator { ctx: std::ptr::null_mut(), alloc: None, free: None };
        ffi::PyObject_GetArenaAllocator(&mut default);
        if DEFAULT.set(Default(default)).is_err() {
            return;
        }
        let mut ours = ffi::PyObjectArenaAllocator { ctx: std::ptr::null_mut(), alloc: Some(alloc), free: Some(free) };
        ffi::PyObject_SetArenaAllocator(&mut ours);
    }
}

/// Free (keep as spares, or unmap) the arenas CPython kept for interpreter `id`, which has
/// ended. Returns the bytes freed.
pub fn release_dead_interpreter(id: i64) -> usize {
    let dead: Vec<(usize, usize)> = {
        let mut arenas = ARENAS.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<usize> = arenas.iter().filter(|(_, (_, owner))| *owner == id).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| arenas.remove(&k).map(|(size, _)| (k, size))).collect()
    };
    let mut freed = 0;
    for (ptr, size) in dead {
        keep_or_free(ptr, size);
        freed += size;
    }
    if std::env::var_os("GEARBOX_DEBUG_ARENAS").is_some() {
        let left = ARENAS.lock().unwrap_or_else(|e| e.into_inner()).len();
        eprintln!("gearbox: interpreter {id}: returned {freed} bytes of arenas; {left} arenas tracked");
    }
    freed
}
