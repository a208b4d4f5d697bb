"""threading's locks that wait in slices, shared by both runtimes.

A lock acquired without a timeout waits in one C call that nothing can interrupt: a script
waiting for a lock nobody will release would outlive ScriptTimeoutMS and RG.ABORTEXECUTION
(native mode), and in the wasm guest, whose CPython has no threads, the C library traps on it and
the instance dies. So threading.Lock (and with it Condition, Event, Semaphore, Barrier, RLock's
Python version and queue.Queue) waits in timed slices: native mode's guards.py installs it with
20 ms slices; the wasm guest with long ones, because its timed waits already sleep in the host's
interruptible sleep. A raw `_thread.allocate_lock()` still waits in one C call.
"""
import _thread
import threading


def install(monotonic, slice_):
    allocate = _thread.allocate_lock

    class Lock:
        """threading.Lock, waiting in slices."""

        __slots__ = ("_lock", "__weakref__")

        def __init__(self):
            self._lock = allocate()

        def acquire(self, blocking=True, timeout=-1):
            if not blocking:
                if timeout != -1:
                    raise ValueError("can't specify a timeout for a non-blocking call")
                return self._lock.acquire(False)
            if timeout < 0 and timeout != -1:
                raise ValueError("timeout value must be a non-negative number")
            end = None if timeout == -1 else monotonic() + timeout
            while True:
                wait = slice_ if end is None else max(0.0, min(slice_, end - monotonic()))
                if self._lock.acquire(True, wait):
                    return True
                if end is not None and monotonic() >= end:
                    return False

        __enter__ = acquire

        def __exit__(self, *exc):
            self._lock.release()

        def release(self):
            self._lock.release()

        def locked(self):
            return self._lock.locked()

        def _at_fork_reinit(self):
            self._lock._at_fork_reinit()

        def __repr__(self):
            return "<%s gearbox.Lock object at %#x>" % ("locked" if self.locked() else "unlocked", id(self))

    Lock.__module__ = "threading"
    threading.Lock = Lock
    threading._allocate_lock = Lock
    # RLock falls back to threading's Python version, built on _allocate_lock.
    threading._CRLock = None
    return Lock
