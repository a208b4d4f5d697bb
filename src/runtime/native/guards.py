"""Native-mode guards: run last when a gearbox sub-interpreter is prepared, before any script.

A native script shares redis-server's process, so what would end or hijack the process is taken
away, each refusal naming its rule (PermissionError / ImportError "… native-mode guard …"):
  * descriptors: os.open/pipe/dup/dup2/close/closerange/read/write/lseek/ftruncate/fsync act
    only on descriptors the script opened with them (`_gearbox.fd_*`, fd_guard.rs); wrapping a
    descriptor number in a file object (open(fd), os.fdopen), an mmap or fcntl call needs the same;
  * the process: _exit, abort, kill, fork, exec*, spawn*, system, posix_spawn, setrlimit, chdir,
    umask, putenv, signals (raise_signal, pthread_kill, alarm, setitimer …) are refused;
  * other interpreters: ctypes and the interpreter-management modules cannot be imported, and
    sys._current_frames() is refused; hand-made code objects (code.replace, CodeType(...)) too;
  * sockets, unless the operator loads gearbox with `NativeSockets 1`;
  * files: a script may read the Python installation (sys.prefix, sys.path, time zone data) and
    read and write its interpreter's private scratch directory (`_gearbox.scratch_dir`, also
    TMPDIR for tempfile), nothing else (checked on the real path; /proc, /sys, /dev included);
    os.symlink is refused;
  * time.sleep, and threading's lock waits (Lock, RLock, Condition, Event, Semaphore, queue.Queue,
    Thread.join), wait in short slices, so ScriptTimeoutMS and RG.ABORTEXECUTION stop them.
The audit hook is CPython's (sys.addaudithook: per interpreter, cannot be removed); the
functions that raise no audit event are replaced. This hardens, it does not sandbox: wasm mode
is the sandbox (see the README's security model).
"""
import sys

import _gearbox
import os
import posix


def _readable_roots():
    """Where a script may read: the Python installation, its import paths, installed requirements,
    time zone data."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(p for p in sys.path if p)
    roots.add(_gearbox.requirements_dir)  # REQUIREMENTS' installs (src/host/pip.rs)
    roots.update(("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo", "/etc/zoneinfo",
                  "/etc/localtime", "/etc/mime.types"))
    return tuple(sorted({os.path.realpath(r) for r in roots} - {"/"}))


def _install():
    # tempfile's directory is the scratch directory; set in this interpreter's os.environ only
    # (putenv would change redis-server's environment, and is refused below).
    os.environ._data[os.environ.encodekey("TMPDIR")] = os.environ.encodevalue(_gearbox.scratch_dir)

    def refused(name, rule):
        def refuse(*args, **kwargs):
            raise PermissionError("gearbox: %s is not allowed in a script (native-mode guard: %s)" % (name, rule))

        refuse.__name__ = name.rsplit(".", 1)[-1]
        return refuse

    fd_functions = {
        "open": _gearbox.fd_open, "pipe": _gearbox.fd_pipe, "dup": _gearbox.fd_dup, "dup2": _gearbox.fd_dup2,
        "close": _gearbox.fd_close, "closerange": _gearbox.fd_closerange, "read": _gearbox.fd_read,
        "write": _gearbox.fd_write, "lseek": _gearbox.fd_lseek, "ftruncate": _gearbox.fd_ftruncate,
        "fsync": _gearbox.fd_fsync,
    }
    process = ("_exit", "abort", "kill", "killpg", "fork", "forkpty", "execv", "execve", "system", "popen",
               "posix_spawn", "posix_spawnp", "spawnv", "spawnve", "spawnvp", "spawnvpe",
               "setsid", "setpgid", "setpgrp", "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid",
               "setresuid", "setresgid", "setgroups", "chroot", "chdir", "fchdir", "umask", "putenv", "unsetenv",
               "sched_setaffinity", "setpriority", "nice", "pidfd_open", "tcsetpgrp", "login_tty", "openpty",
               "pread", "pwrite", "preadv", "pwritev", "readv", "writev", "sendfile", "set_blocking", "set_inheritable",
               "fchmod", "fchown", "posix_fallocate", "posix_fadvise", "lockf", "fdatasync", "copy_file_range",
               "splice", "eventfd", "memfd_create")
    for module in (os, posix):
        for name, guarded in fd_functions.items():
            if hasattr(module, name):
                setattr(module, name, guarded)
        for name in process:
            if hasattr(module, name):
                setattr(module, name, refused("os." + name, "the process is redis-server's"))
        # threading and random register fork handlers at import; fork itself is refused.
        module.register_at_fork = lambda **handlers: None
    import signal
    import _signal
    for module in (signal, _signal):
        for name in ("raise_signal", "pthread_kill", "alarm", "setitimer", "pause", "sigwait", "sigwaitinfo",
                     "sigtimedwait", "pthread_sigmask", "siginterrupt", "set_wakeup_fd", "signal"):
            if hasattr(module, name):
                setattr(module, name, refused("signal." + name, "signals belong to redis-server"))
    # time.sleep in short slices, so ScriptTimeoutMS and RG.ABORTEXECUTION (asynchronous
    # exceptions, delivered between bytecodes) stop a sleeping script as they do a busy one.
    import time

    def sleep(secs, _sleep=time.sleep, _monotonic=time.monotonic):
        if secs < 0:
            raise ValueError("sleep length must be non-negative")
        end = _monotonic() + secs
        left = secs
        while left > 0:
            _sleep(min(left, 0.02))
            left = end - _monotonic()

    time.sleep = sleep
    _sliced_waits(time.monotonic)
    sys._current_frames = refused("sys._current_frames", "other interpreters' frames are not a script's")
    # subprocess (which asyncio imports) may be imported, never run: its fork_exec is refused,
    # and re-importing the module to get the original back is refused by the audit hook.
    import _posixsubprocess
    _posixsubprocess.fork_exec = refused("_posixsubprocess.fork_exec", "the process is redis-server's")


def _sliced_waits(monotonic):
    """threading's locks wait in slices like time.sleep (python/gears_waits.py), and so does
    Thread.join, so ScriptTimeoutMS and RG.ABORTEXECUTION stop a script that waits for a lock nobody
    will release or a thread that never ends. (A raw _thread.allocate_lock() still waits in one C
    call: see the README's known limits.)"""
    import threading

    import gears_waits

    slice_ = 0.02
    gears_waits.install(monotonic, slice_)
    join = threading.Thread.join

    def sliced_join(self, timeout=None):
        end = None if timeout is None else monotonic() + timeout
        while True:
            wait = slice_ if end is None else max(0.0, min(slice_, end - monotonic()))
            join(self, wait)
            if not self.is_alive() or (end is not None and monotonic() >= end):
                return

    sliced_join.__doc__ = join.__doc__
    threading.Thread.join = sliced_join


def _audit(event, args, isinstance=isinstance, int=int, owned=_gearbox.fd_owned, config=_gearbox.config_get,
           getframe=sys._getframe, realpath=os.path.realpath, fspath=os.fspath, fsdecode=os.fsdecode,
           readable=_readable_roots(), scratch=(os.path.realpath(_gearbox.scratch_dir),),
           writing=os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC,
           refused_imports=frozenset(_gearbox.refused_imports)):
    """Refuse what would reach outside the script's interpreter. Its data lives in constants of
    its own code and in its defaults; the function itself is unreachable once installed (its
    name is deleted, gc's object walks are refused), so a script cannot widen it by patching
    builtins, modules or the function."""
    if event == "import":
        name = args[0]
        if name in refused_imports or name.startswith("ctypes."):
            raise ImportError("gearbox: module %r is not allowed in a script (native-mode guard)" % name)
        return
    if event == "open":
        path = args[0]
        if isinstance(path, int):
            if path >= 0 and not owned(path):
                raise PermissionError("gearbox: open(%d) refused: file descriptor %d was not opened by this script (native-mode guard)" % (path, path))
            return
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        paths, writes = (path,), flags & writing
    elif event in {"os.listdir", "os.scandir"}:
        paths, writes = (args[0],), False
    elif event in {"os.truncate", "os.chmod", "os.chown", "os.remove", "os.rmdir", "os.mkdir", "os.utime"}:
        paths, writes = (args[0],), True
    elif event in {"os.rename", "os.link"}:
        paths, writes = (args[0], args[1]), True
    else:
        paths = ()
    for path in paths:
        # Files: the Python installation may be read, the scratch directory read and written,
        # nothing else (the process' own /proc, /sys and /dev are Redis' and every other
        # script's). The real path is checked, so a symlink or `..` does not help.
        if path is None or isinstance(path, int):
            continue
        try:
            real = realpath(fsdecode(fspath(path)))
        except Exception:
            raise PermissionError("gearbox: %s(%r) refused: not a path the guard can check (native-mode guard)" % (event, path))
        if real in {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}:
            continue
        inside = [root for root in scratch + (() if writes else readable) if real == root or real.startswith(root + "/")]
        if not inside:
            raise PermissionError("gearbox: %s of %s refused: a script may read the Python installation and read and write "
                                  "its scratch directory %s, nothing else (native-mode guard)" % (event, real, scratch[0]))
    if paths:
        return
    if event in {"os.symlink"}:
        raise PermissionError("gearbox: os.symlink is not allowed in a script (native-mode guard)")
    if event == "code.__new__" or (event == "object.__setattr__" and args[1] == "__code__"):
        # The standard library's own use: types.coroutine only sets a flag on a function's code.
        caller = getframe(1).f_code
        if caller.co_name == "coroutine" and caller.co_filename.endswith("types.py"):
            return
    if event in {"os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.kill", "os.killpg",
                 "subprocess.Popen", "resource.setrlimit", "resource.prlimit", "sys._current_frames", "code.__new__",
                 "pty.spawn", "os.chdir", "os.putenv", "os.unsetenv", "sys.addaudithook"} or event.startswith("ctypes."):
        raise PermissionError("gearbox: %s is not allowed in a script (native-mode guard)" % event)
    if event in {"mmap.__new__", "fcntl.fcntl", "fcntl.ioctl", "fcntl.flock", "fcntl.lockf"}:
        fd = args[0]
        if isinstance(fd, int) and fd >= 0 and not owned(fd):
            raise PermissionError("gearbox: %s(%d) refused: file descriptor %d was not opened by this script (native-mode guard)" % (event, fd, fd))
        return
    if event in {"gc.get_objects", "gc.get_referrers", "gc.get_referents"}:
        raise PermissionError("gearbox: %s is not allowed in a script (native-mode guard)" % event)
    if event == "object.__setattr__" and args[1] == "__code__":
        raise PermissionError("gearbox: replacing %s is not allowed in a script (native-mode guard)" % args[1])
    if event.startswith("socket.") and config("NativeSockets") != "1":
        raise PermissionError("gearbox: sockets are not allowed in a script (native-mode guard; an operator may load gearbox with NativeSockets 1)")


_install()
del _install, _sliced_waits, _readable_roots
sys.addaudithook(_audit)
del _audit
