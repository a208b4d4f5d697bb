//! The file-descriptor functions a native script gets instead of `os`'s: a script may operate
//! only on descriptors it opened itself with them (`os.open`, `os.pipe`, `os.dup`), never on one
//! of redis-server's (a client's socket, the listening socket, the AOF) or another script's.
//! `guards.py` puts these in `os` / `posix` in place of the originals, which it drops.
//!
//! Ownership is per interpreter and checked by identity, not just by number: each owned
//! descriptor is remembered with its (device, inode); if the script let go of it some other way
//! (a file object's `close()`) and Redis reused the number, the identity differs and the call is
//! refused. Blocking calls (`read`, `write`) release the GIL like CPython's own.
//!
//! Functions (`_gearbox.fd_*`): `open(path, flags, mode=0o777)`, `pipe(flags=0)`, `dup(fd)`,
//! `dup2(fd, fd2)`, `close(fd)`, `closerange(lo, hi)`, `read(fd, n)`, `write(fd, data)`,
//! `lseek(fd, pos, how)`, `ftruncate(fd, length)`, `fsync(fd)`, `owned(fd)`.

use std::collections::HashMap;
use std::ffi::{c_int, c_long};
use std::ptr;

use pyo3_ffi as ffi;

use super::call_edge::{args_slice, entry, raise};
use super::hostmodule::fds_of;

/// The descriptors one interpreter opened, with their identity when they were recorded.
#[derive(Default, Debug)]
pub struct Owned {
    fds: HashMap<c_int, (u64, u64)>,
}

fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat writes only into the local struct; a bad fd just fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

impl Owned {
    pub fn record(&mut self, fd: c_int) {
        if let Some(id) = identity(fd) {
            self.fds.insert(fd, id);
        }
    }

    pub fn forget(&mut self, fd: c_int) {
        self.fds.remove(&fd);
    }

    /// Whether `fd` is this interpreter's and still the same open file.
    pub fn owns(&self, fd: c_int) -> bool {
        self.fds.get(&fd).is_some_and(|id| identity(fd) == Some(*id))
    }

    pub fn in_range(&self, lo: c_int, hi: c_int) -> Vec<c_int> {
        let mut fds: Vec<c_int> = self.fds.keys().copied().filter(|fd| *fd >= lo && *fd < hi).collect();
        fds.sort_unstable();
        fds
    }
}

/// The refusal a script gets for a descriptor it does not own.
fn refuse(call: &str, fd: c_int) -> *mut ffi::PyObject {
    // SAFETY: inside a call from CPython (attached).
    unsafe {
        raise(
            ffi::PyExc_PermissionError,
            &format!("gearbox: os.{call}({fd}) refused: file descriptor {fd} was not opened by this script (native-mode guard)"),
        )
    }
}

/// The OSError of the last failed system call.
fn os_error() -> *mut ffi::PyObject {
    // SAFETY: attached; sets the exception from errno and returns NULL.
    unsafe { ffi::PyErr_SetFromErrno(ffi::PyExc_OSError) }
}

/// # Safety
/// Attached; `args` are live borrowed references.
unsafe fn int_arg(args: &[*mut ffi::PyObject], i: usize) -> Option<c_long> {
    // SAFETY: the caller's contract (# Safety): attached; `args` are borrowed references from
    // CPython.
    unsafe {
        let obj = *args.get(i)?;
        let v = ffi::PyLong_AsLong(obj);
        if v == -1 && !ffi::PyErr_Occurred().is_null() {
            return None;
        }
        Some(v)
    }
}

fn type_error(usage: &str) -> *mut ffi::PyObject {
    // SAFETY: attached.
    unsafe { raise(ffi::PyExc_TypeError, usage) }
}

/// A `_gearbox.fd_*` function: its body returns the result object, or (as `Err`) the NULL of a
/// raised exception, so refusals propagate with `?`.
macro_rules! fd_function {
    ($name:ident, |$module:ident, $args:ident| $body:block) => {
        pub unsafe extern "C" fn $name(
            $module: *mut ffi::PyObject,
            args: *mut *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
        ) -> *mut ffi::PyObject {
            entry(|| {
                // SAFETY: called by CPython with the GIL of the module's interpreter.
                unsafe {
                    let $args = args_slice(args, nargs);
                    let result: Result<*mut ffi::PyObject, *mut ffi::PyObject> = (|| $body)();
                    result.unwrap_or_else(|raised| raised)
                }
            })
        }
    };
}

/// The owned-descriptor registry of `module`'s interpreter, locked for `f`.
///
/// # Safety
/// Attached to the interpreter that owns `module`, which is gearbox's `_gearbox` module.
unsafe fn with_owned<T>(module: *mut ffi::PyObject, f: impl FnOnce(&mut Owned) -> T) -> T {
    // SAFETY: the caller's contract (# Safety): `module` is our module, attached.
    unsafe {
        let fds = fds_of(module);
        let mut owned = fds.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut owned)
    }
}

/// A descriptor argument the script owns, or the exception raised.
///
/// # Safety
/// Attached to the interpreter that owns `module` (gearbox's `_gearbox` module); `args` are live
/// borrowed references.
unsafe fn owned_fd(module: *mut ffi::PyObject, args: &[*mut ffi::PyObject], i: usize, call: &str) -> Result<c_int, *mut ffi::PyObject> {
    // SAFETY: the caller's contract (# Safety): attached.
    unsafe {
        let Some(fd) = int_arg(args, i) else { return Err(type_error(&format!("os.{call}: file descriptor must be an int"))) };
        let fd = fd as c_int;
        if with_owned(module, |o| o.owns(fd)) {
            Ok(fd)
        } else {
            Err(refuse(call, fd))
        }
    }
}

extern "C" {
    /// CPython's audit event call (not in pyo3-ffi): runs the interpreter's audit hooks.
    fn PySys_Audit(event: *const std::ffi::c_char, format: *const std::ffi::c_char, ...) -> c_int;
}

fd_function!(fd_open, |module, args| {
    let Some(&path) = args.first() else { return Err(type_error("os.open(path, flags, mode=0o777)")) };
    let Some(flags) = int_arg(args, 1) else { return Err(type_error("os.open(path, flags, mode=0o777)")) };
    let mode = if args.len() > 2 { int_arg(args, 2) } else { Some(0o777) };
    let Some(mode) = mode else { return Err(ptr::null_mut()) };
    // The event os.open raises, so the guards' audit hook judges the path (files policy).
    if PySys_Audit(c"open".as_ptr(), c"OOi".as_ptr(), path, ffi::Py_None(), flags as c_int) < 0 {
        return Err(ptr::null_mut());
    }
    let mut encoded: *mut ffi::PyObject = ptr::null_mut();
    if ffi::PyUnicode_FSConverter(path, &mut encoded as *mut *mut ffi::PyObject as *mut std::ffi::c_void) == 0 {
        return Err(ptr::null_mut());
    }
    let fd = libc::open(ffi::PyBytes_AsString(encoded), flags as c_int | libc::O_CLOEXEC, mode as libc::c_uint);
    ffi::Py_DecRef(encoded);
    if fd < 0 {
        return Err(os_error());
    }
    with_owned(module, |o| o.record(fd));
    Ok(ffi::PyLong_FromLong(fd as c_long))
});

fd_function!(fd_pipe, |module, args| {
    // An optional argument adds pipe2 flags (O_NONBLOCK: gears_async's self-pipe).
    let extra = if args.is_empty() { Some(0) } else { int_arg(args, 0) };
    let Some(extra) = extra else { return Err(ptr::null_mut()) };
    let mut fds = [0 as c_int; 2];
    if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | (extra as c_int & libc::O_NONBLOCK)) != 0 {
        return Err(os_error());
    }
    with_owned(module, |o| {
        o.record(fds[0]);
        o.record(fds[1]);
    });
    let (r, w) = (ffi::PyLong_FromLong(fds[0] as c_long), ffi::PyLong_FromLong(fds[1] as c_long));
    let pair = ffi::PyTuple_Pack(2, r, w);
    ffi::Py_DecRef(r);
    ffi::Py_DecRef(w);
    Ok(pair)
});

fd_function!(fd_dup, |module, args| {
    let fd = owned_fd(module, args, 0, "dup")?;
    let new = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
    if new < 0 {
        return Err(os_error());
    }
    with_owned(module, |o| o.record(new));
    Ok(ffi::PyLong_FromLong(new as c_long))
});

fd_function!(fd_dup2, |module, args| {
    let fd = owned_fd(module, args, 0, "dup2")?;
    let fd2 = owned_fd(module, args, 1, "dup2")?;
    if libc::dup2(fd, fd2) < 0 {
        return Err(os_error());
    }
    with_owned(module, |o| o.record(fd2));
    Ok(ffi::PyLong_FromLong(fd2 as c_long))
});

fd_function!(fd_close, |module, args| {
    let fd = owned_fd(module, args, 0, "close")?;
    with_owned(module, |o| o.forget(fd));
    if libc::close(fd) != 0 {
        return Err(os_error());
    }
    Ok(ffi::Py_NewRef(ffi::Py_None()))
});

fd_function!(fd_closerange, |module, args| {
    let (Some(lo), Some(hi)) = (int_arg(args, 0), int_arg(args, 1)) else { return Err(type_error("os.closerange(fd_low, fd_high)")) };
    for fd in with_owned(module, |o| o.in_range(lo as c_int, hi as c_int)) {
        if with_owned(module, |o| o.owns(fd)) {
            with_owned(module, |o| o.forget(fd));
            libc::close(fd);
        }
    }
    Ok(ffi::Py_NewRef(ffi::Py_None()))
});

fd_function!(fd_read, |module, args| {
    let fd = owned_fd(module, args, 0, "read")?;
    let Some(n) = int_arg(args, 1).filter(|n| *n >= 0) else { return Err(type_error("os.read(fd, n): n must be a non-negative int")) };
    let mut buf = vec![0u8; n as usize];
    let save = ffi::PyEval_SaveThread();
    let got = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
    ffi::PyEval_RestoreThread(save);
    if got < 0 {
        return Err(os_error());
    }
    Ok(ffi::PyBytes_FromStringAndSize(buf.as_ptr() as *const std::ffi::c_char, got as ffi::Py_ssize_t))
});

fd_function!(fd_write, |module, args| {
    let fd = owned_fd(module, args, 0, "write")?;
    let Some(&data) = args.get(1) else { return Err(type_error("os.write(fd, data)")) };
    let mut view: ffi::Py_buffer = std::mem::zeroed();
    if ffi::PyObject_GetBuffer(data, &mut view, ffi::PyBUF_SIMPLE) != 0 {
        return Err(ptr::null_mut());
    }
    let save = ffi::PyEval_SaveThread();
    let wrote = libc::write(fd, view.buf as *const libc::c_void, view.len as usize);
    ffi::PyEval_RestoreThread(save);
    ffi::PyBuffer_Release(&mut view);
    if wrote < 0 {
        return Err(os_error());
    }
    Ok(ffi::PyLong_FromSsize_t(wrote as ffi::Py_ssize_t))
});

fd_function!(fd_lseek, |module, args| {
    let fd = owned_fd(module, args, 0, "lseek")?;
    let (Some(pos), Some(how)) = (int_arg(args, 1), int_arg(args, 2)) else { return Err(type_error("os.lseek(fd, pos, how)")) };
    let at = libc::lseek(fd, pos as libc::off_t, how as c_int);
    if at < 0 {
        return Err(os_error());
    }
    Ok(ffi::PyLong_FromLongLong(at as i64))
});

fd_function!(fd_ftruncate, |module, args| {
    let fd = owned_fd(module, args, 0, "ftruncate")?;
    let Some(length) = int_arg(args, 1) else { return Err(type_error("os.ftruncate(fd, length)")) };
    if libc::ftruncate(fd, length as libc::off_t) != 0 {
        return Err(os_error());
    }
    Ok(ffi::Py_NewRef(ffi::Py_None()))
});

fd_function!(fd_fsync, |module, args| {
    let fd = owned_fd(module, args, 0, "fsync")?;
    if libc::fsync(fd) != 0 {
        return Err(os_error());
    }
    Ok(ffi::Py_NewRef(ffi::Py_None()))
});

fd_function!(fd_owned, |module, args| {
    let Some(fd) = int_arg(args, 0) else { return Err(type_error("owned(fd)")) };
    Ok(ffi::PyBool_FromLong(with_owned(module, |o| o.owns(fd as c_int)) as c_long))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_by_identity_not_by_number() {
        let mut owned = Owned::default();
        let mut fds = [0 as c_int; 2];
        // SAFETY: a fresh pipe for the test; closed below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!owned.owns(fds[0]), "not recorded yet");
        owned.record(fds[0]);
        assert!(owned.owns(fds[0]));
        assert!(!owned.owns(fds[1]));
        // The number comes back as another file: no longer ours.
        // SAFETY: only this test's own descriptors are closed or replaced.
        unsafe {
            libc::close(fds[0]);
            let other = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            assert_eq!(libc::dup2(other, fds[0]), fds[0]);
            libc::close(other);
            assert!(!owned.owns(fds[0]), "a reused number is another file");
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(owned.in_range(0, c_int::MAX), vec![fds[0]]);
        owned.forget(fds[0]);
        assert!(owned.in_range(0, c_int::MAX).is_empty());
    }
}
