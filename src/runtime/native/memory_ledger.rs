//! Memory per sub-interpreter: what each script's interpreter holds, and its cap.
//!
//! Every interpreter of a process shares one C heap, so "how much does alice's script use?" has
//! no answer in CPython itself. gearbox counts it where Python's memory comes from: the object
//! arenas (`arenas.rs` reports each arena it hands out or takes back) and CPython's raw domain
//! (`PyMem_RawMalloc`, which also serves every object larger than pymalloc's 512-byte blocks),
//! wrapped here. Each allocation is charged to the interpreter of the calling thread's current
//! thread state (threads a script started included) and credited back when freed.
//!
//! A session's interpreter gets a cap (`NativeMemoryLimitMB`). Crossing it does not fail the
//! allocation that crossed: CPython's out-of-memory paths are not all safe (3.13 corrupts its
//! interned strings when an import fails for memory, and later crashes ending the interpreter).
//! Instead the crossing schedules a pending call in that interpreter, which raises `MemoryError`
//! in the script at its next bytecode boundary, a clean place. Allocations fail only past a
//! headroom above the cap (a quarter of it, at least 16 MiB): one request too big for it
//! (`'x' * 10**10`), or a script that keeps allocating after its MemoryError. The server and the
//! other sessions carry on. Interpreter start-up and teardown run without a cap.
//!
//! What is not counted: memory C extensions take from `malloc` directly, and the main
//! interpreter's (gearbox's own, shared by all).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3_ffi as ffi;

use super::interrupts;

/// Interpreters that can be counted at once; one more is refused a session (never met in
/// practice: each takes ~3 MiB).
const SLOTS: usize = 4096;

struct Slot {
    /// The interpreter's id, 0 while free.
    id: AtomicI64,
    bytes: AtomicI64,
    /// Bytes allowed; 0: no cap (start-up, teardown, or NativeMemoryLimitMB 0).
    limit: AtomicI64,
    /// The interpreter, for the pending call that raises MemoryError (set with the cap).
    interp: AtomicPtr<ffi::PyInterpreterState>,
    /// A MemoryError is on its way (a pending call is scheduled).
    signalled: AtomicBool,
    /// After a MemoryError, the next one comes only past this many bytes (or at a new crossing
    /// of the cap), so the script can unwind and format the first.
    rearm_at: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot = Slot {
    id: AtomicI64::new(0),
    bytes: AtomicI64::new(0),
    limit: AtomicI64::new(0),
    interp: AtomicPtr::new(std::ptr::null_mut()),
    signalled: AtomicBool::new(false),
    rearm_at: AtomicI64::new(0),
};
static TABLE: [Slot; SLOTS] = [FREE_SLOT; SLOTS];

/// Interpreter id → slot index, and the free slots. Taken on a thread's first allocation for an
/// interpreter it has not seen yet, never on the fast path.
struct Index {
    slots: HashMap<i64, usize>,
    free: Vec<usize>,
}

static INDEX: Mutex<Option<Index>> = Mutex::new(None);
/// Bumped whenever a slot is released, so a thread's cached slot is looked up again.
static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (interpreter id, slot index, generation) of this thread's last lookup.
    static CACHE: Cell<(i64, usize, u64)> = const { Cell::new((0, 0, 0)) };
}

fn current_interpreter_id() -> i64 {
    // SAFETY: the allocator is called by threads of this process; a thread without a current
    // thread state gets null, which is handled.
    unsafe {
        let ts = ffi::PyThreadState_GetUnchecked();
        if ts.is_null() {
            return 0;
        }
        ffi::PyInterpreterState_GetID(ffi::PyThreadState_GetInterpreter(ts))
    }
}

/// The slot of interpreter `id`, taking a free one on first sight. None for the main interpreter
/// (id 0) and when every slot is taken.
fn slot_of(id: i64) -> Option<&'static Slot> {
    if id <= 0 {
        return None;
    }
    let generation = GENERATION.load(Ordering::Acquire);
    let (cached_id, cached_slot, cached_generation) = CACHE.with(Cell::get);
    if cached_id == id && cached_generation == generation {
        return Some(&TABLE[cached_slot]);
    }
    let mut index = INDEX.lock().unwrap_or_else(|e| e.into_inner());
    let index = index.get_or_insert_with(|| Index { slots: HashMap::new(), free: (0..SLOTS).rev().collect() });
    let slot = match index.slots.get(&id) {
        Some(&slot) => slot,
        None => {
            let slot = index.free.pop()?;
            TABLE[slot].bytes.store(0, Ordering::SeqCst);
            TABLE[slot].limit.store(0, Ordering::SeqCst);
            TABLE[slot].interp.store(std::ptr::null_mut(), Ordering::SeqCst);
            TABLE[slot].signalled.store(false, Ordering::SeqCst);
            TABLE[slot].rearm_at.store(0, Ordering::SeqCst);
            TABLE[slot].id.store(id, Ordering::SeqCst);
            index.slots.insert(id, slot);
            slot
        }
    };
    CACHE.with(|c| c.set((id, slot, generation)));
    Some(&TABLE[slot])
}

/// How far past its cap an interpreter may go before allocations fail: room for the script to
/// unwind from its MemoryError, format it and free what it built.
fn headroom(limit: i64) -> i64 {
    (limit / 4).max(16 << 20)
}

/// Charge `size` bytes to interpreter `id`; false (nothing charged) if that would take it past
/// its cap and headroom. Crossing the cap itself schedules the script's MemoryError.
pub fn charge_to(id: i64, size: usize) -> bool {
    let Some(slot) = slot_of(id) else { return true };
    let limit = slot.limit.load(Ordering::Relaxed);
    let size = size as i64;
    let before = slot.bytes.fetch_add(size, Ordering::Relaxed);
    if limit <= 0 || before + size <= limit {
        return true;
    }
    if before + size > limit.saturating_add(headroom(limit)) {
        slot.bytes.fetch_sub(size, Ordering::Relaxed);
        return false;
    }
    let crossing = before <= limit;
    if (crossing || before + size > slot.rearm_at.load(Ordering::Relaxed)) && !slot.signalled.swap(true, Ordering::AcqRel) {
        let interp = slot.interp.load(Ordering::Acquire);
        // SAFETY: `interp` is the live interpreter this slot counts (set with its cap, which is
        // cleared before it ends); CPython's pending-call queue takes its own lock.
        let queued = !interp.is_null() && unsafe { interrupts::schedule(interp, raise_memory_error, id as usize as *mut c_void) };
        if !queued {
            slot.signalled.store(false, Ordering::Release);
        }
    }
    true
}

/// The pending call: raise MemoryError in the script if its interpreter is still over its cap.
extern "C" fn raise_memory_error(arg: *mut c_void) -> c_int {
    let id = arg as usize as i64;
    let Some(slot) = slot_of(id) else { return 0 };
    slot.signalled.store(false, Ordering::Release);
    let (limit, bytes) = (slot.limit.load(Ordering::Relaxed), slot.bytes.load(Ordering::Relaxed));
    if limit <= 0 || bytes <= limit {
        return 0;
    }
    slot.rearm_at.store(bytes.saturating_add(headroom(limit) / 2), Ordering::Relaxed);
    let text = format!("gearbox: this session's interpreter holds {} MiB, past NativeMemoryLimitMB ({} MiB)\0", bytes >> 20, limit >> 20);
    // SAFETY: pending calls run attached to their interpreter, holding its GIL; the text is a
    // NUL-terminated UTF-8 string that CPython copies.
    unsafe { ffi::PyErr_SetString(ffi::PyExc_MemoryError, text.as_ptr().cast()) };
    -1
}

/// Credit `size` freed bytes to interpreter `id`.
pub fn credit_to(id: i64, size: usize) {
    if let Some(slot) = slot_of(id) {
        slot.bytes.fetch_sub(size as i64, Ordering::Relaxed);
    }
}

/// Bytes interpreter `id` holds now (0 if it is not counted).
pub fn bytes_of(id: i64) -> u64 {
    slot_of(id).map(|s| s.bytes.load(Ordering::Relaxed).max(0) as u64).unwrap_or(0)
}

/// Whether interpreter `id` is counted (false only when every slot is taken).
pub fn is_counted(id: i64) -> bool {
    slot_of(id).is_some()
}

/// Cap interpreter `id` (`interp`) at `bytes` (0: no cap).
///
/// # Safety
/// `interp` is NULL or the live interpreter counted as `id`, alive until [`release`]`(id)`: a
/// MemoryError is scheduled on it through a pending call when it crosses the cap.
pub unsafe fn set_limit(id: i64, interp: *mut ffi::PyInterpreterState, bytes: u64) {
    if let Some(slot) = slot_of(id) {
        if bytes > 0 {
            slot.interp.store(interp, Ordering::Release);
        }
        slot.limit.store(bytes.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }
}

/// Forget interpreter `id`, which has ended.
pub fn release(id: i64) {
    let mut index = INDEX.lock().unwrap_or_else(|e| e.into_inner());
    let Some(index) = index.as_mut() else { return };
    if let Some(slot) = index.slots.remove(&id) {
        TABLE[slot].id.store(0, Ordering::SeqCst);
        TABLE[slot].limit.store(0, Ordering::SeqCst);
        TABLE[slot].interp.store(std::ptr::null_mut(), Ordering::SeqCst);
        index.free.push(slot);
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
}

struct Raw(ffi::PyMemAllocatorEx);
// SAFETY: CPython's default raw allocator is a set of plain functions (malloc & co) with a null
// context, callable from any thread.
unsafe impl Send for Raw {}
// SAFETY: as above.
unsafe impl Sync for Raw {}

static DEFAULT_RAW: OnceLock<Raw> = OnceLock::new();

fn usable(ptr: *mut c_void) -> usize {
    // SAFETY: `ptr` is null or a live block of the default raw allocator, which is the C library's
    // malloc (the isolated configuration gearbox starts CPython with ignores PYTHONMALLOC).
    unsafe { libc::malloc_usable_size(ptr) }
}

extern "C" fn raw_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let Some(Raw(d)) = DEFAULT_RAW.get() else { return std::ptr::null_mut() };
    let id = current_interpreter_id();
    if !charge_to(id, size) {
        return std::ptr::null_mut();
    }
    let ptr = d.malloc.map(|f| f(d.ctx, size)).unwrap_or(std::ptr::null_mut());
    settle(id, size, ptr);
    ptr
}

extern "C" fn raw_calloc(_ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
    let Some(Raw(d)) = DEFAULT_RAW.get() else { return std::ptr::null_mut() };
    let id = current_interpreter_id();
    let asked = count.saturating_mul(size);
    if !charge_to(id, asked) {
        return std::ptr::null_mut();
    }
    let ptr = d.calloc.map(|f| f(d.ctx, count, size)).unwrap_or(std::ptr::null_mut());
    settle(id, asked, ptr);
    ptr
}

extern "C" fn raw_realloc(_ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    let Some(Raw(d)) = DEFAULT_RAW.get() else { return std::ptr::null_mut() };
    let id = current_interpreter_id();
    let old = usable(ptr);
    if !charge_to(id, size.saturating_sub(old)) {
        return std::ptr::null_mut();
    }
    let new = d.realloc.map(|f| f(d.ctx, ptr, size)).unwrap_or(std::ptr::null_mut());
    // Replace the estimate by what the block really is now (the old block is gone on success,
    // still there on failure), in one update.
    let now = if new.is_null() { old } else { usable(new) };
    adjust(id, now as i64 - old as i64 - size.saturating_sub(old) as i64);
    new
}

extern "C" fn raw_free(_ctx: *mut c_void, ptr: *mut c_void) {
    let Some(Raw(d)) = DEFAULT_RAW.get() else { return };
    if !ptr.is_null() {
        credit_to(current_interpreter_id(), usable(ptr));
    }
    if let Some(f) = d.free {
        f(d.ctx, ptr);
    }
}

/// Replace the estimate `asked` charged before an allocation by the block's real size.
fn settle(id: i64, asked: usize, ptr: *mut c_void) {
    let real = if ptr.is_null() { 0 } else { usable(ptr) };
    adjust(id, real as i64 - asked as i64);
}

/// Add `delta` (either sign) to interpreter `id`'s count without the cap check: the memory is
/// taken or given back already. One slot look-up and one atomic update.
fn adjust(id: i64, delta: i64) {
    if delta != 0 {
        if let Some(slot) = slot_of(id) {
            slot.bytes.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

/// Wrap CPython's raw allocator. Call before `Py_Initialize`, with `arenas::install`.
pub fn install() {
    // SAFETY: before Py_Initialize nothing allocates concurrently; the default allocator is read
    // once and kept for delegation. Blocks allocated before the switch are plain malloc blocks,
    // which the wrapper frees and measures like its own.
    unsafe {
        let mut default: ffi::PyMemAllocatorEx = std::mem::zeroed();
        ffi::PyMem_GetAllocator(ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_RAW, &mut default);
        if default.malloc.is_none() || DEFAULT_RAW.set(Raw(default)).is_err() {
            return;
        }
        let mut ours = ffi::PyMemAllocatorEx {
            ctx: std::ptr::null_mut(),
            malloc: Some(raw_malloc),
            calloc: Some(raw_calloc),
            realloc: Some(raw_realloc),
            free: Some(raw_free),
        };
        ffi::PyMem_SetAllocator(ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_RAW, &mut ours);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_and_its_headroom_requests_fail_and_frees_count_back() {
        let id = 1_000_001;
        let limit: i64 = 100 << 20;
        assert!(charge_to(id, 90 << 20));
        // No interpreter pointer: no MemoryError is scheduled, the counting is what is tested.
        // SAFETY: a NULL interpreter is allowed.
        unsafe { set_limit(id, std::ptr::null_mut(), limit as u64) };
        assert!(charge_to(id, 20 << 20), "past the cap, within the headroom");
        assert!(!charge_to(id, 20 << 20), "past the headroom");
        assert!(charge_to(id, 4096));
        assert_eq!(bytes_of(id), (110 << 20) + 4096);
        credit_to(id, bytes_of(id) as usize);
        assert_eq!(bytes_of(id), 0);
        release(id);
        assert!(charge_to(id, 1 << 40), "a released id starts again without a cap");
        release(id);
    }

    #[test]
    fn the_main_interpreter_is_never_counted() {
        assert!(charge_to(0, 1 << 40));
        assert_eq!(bytes_of(0), 0);
        assert!(!is_counted(0));
    }
}
