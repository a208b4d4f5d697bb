"""gears_async: async records in gearbox's RedisGears API (`gearsFuture`, `async def` step
callbacks, and the asyncio helpers `createFuture`, `setFutureResults`, `setFutureException`,
`runCoroutine`), loaded into every session's interpreter before `gears_pipeline.py`.

An execution that meets an async record waits for it on its own thread, without holding the
interpreter's lock, while the rest of the session goes on: a coroutine runs on the session's
asyncio loop (a thread of its own in native mode; driven by the waiting execution in wasm mode,
which has no threads), a `gearsFuture` is continued from anywhere by `continueRun` /
`continueFailed`. Waiting is only allowed where it cannot hold up Redis: not in a sync
registration's inline run (nor inside MULTI or Lua), where RedisGears would move the execution
to the background and gearbox refuses with an error instead.

Errors and their texts follow RedisGears 1.2 (RedisGears 1.2's async records).
"""
import sys
import types

import _gearbox

_THREADS = sys.platform != "wasi"
if _THREADS:
    # `threading` itself is imported only when async records are used: importing it in every
    # interpreter would cost each session start time and memory.
    import _thread

    _ident = _thread.get_ident
    _loop_lock = _thread.allocate_lock()
else:
    def _ident():
        return 0

_INLINE = ("Creating async record is not allow in a sync execution in gearbox "
           "(register with mode='async_local' to use async records)")

# Futures created by a step callback that has not returned yet, by thread.
pending = {}
# Code objects of the pipeline's step loops, and whether their callbacks may be async (set by
# gears_pipeline at import): gearsFuture() finds its step by walking up the stack.
STEP_CODES = {}

_loop = None


def loop():
    """The session's asyncio loop (started on first use)."""
    global _loop
    if _loop is not None:
        return _loop
    import asyncio

    if not _THREADS:
        _loop = _wasi_loop()
        return _loop
    import threading

    with _loop_lock:
        if _loop is None:
            new = _pipe_loop()
            thread = threading.Thread(target=_serve, args=(new,), name="gears-asyncio")
            # Ending the interpreter joins its threads: stop the loop first.
            threading._register_atexit(lambda: new.call_soon_threadsafe(new.stop))
            thread.start()
            _loop = new
    return _loop


def _wasi_loop():
    """A selector loop without the self-pipe WASI cannot make (no socketpair); with no other
    thread, nothing needs to wake it."""
    import asyncio

    class WasiLoop(asyncio.SelectorEventLoop):
        def _make_self_pipe(self):
            pass

        def _close_self_pipe(self):
            pass

        def _write_to_self(self):
            pass

    return WasiLoop()


def _pipe_loop():
    """Native mode: a selector loop whose self-pipe is an os pipe the script's interpreter owns,
    not a socketpair (scripts may not make sockets unless the operator allows them)."""
    import asyncio
    import os

    class PipeEnd:
        def __init__(self, fd):
            self._fd = fd

        def fileno(self):
            return self._fd

        def recv(self, n):
            return os.read(self._fd, n)

        def send(self, data):
            return os.write(self._fd, data)

        def close(self):
            os.close(self._fd)

    class PipeLoop(asyncio.SelectorEventLoop):
        def _make_self_pipe(self):
            r, w = _gearbox.fd_pipe(os.O_NONBLOCK)
            self._ssock, self._csock = PipeEnd(r), PipeEnd(w)
            self._internal_fds += 1
            self._add_reader(r, self._read_from_self)

    return PipeLoop()


def _serve(lp):
    import asyncio

    asyncio.set_event_loop(lp)
    lp.run_forever()


def async_allowed():
    """Whether an async record may be waited for here (not on a thread holding Redis)."""
    return _gearbox.async_allowed()


def _step_kind():
    """The step whose callback is running on this thread: None outside one, else whether it
    supports async records."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code in STEP_CODES:
            return STEP_CODES[frame.f_code]
        frame = frame.f_back
    return None


_CREATED, _RETURNED, _DONE, _DROPPED = range(4)

# References to a returned future while its record waits and nothing else holds it. CPython
# 3.13 counts the step loop's `out`, settle()'s `out`, _wait()'s `self` and getrefcount's
# argument; 3.14 (the wasm guest) passes arguments as borrowed references and counts only the
# step loop's `out` (measured; tests/e2e/test_async_records.py checks both modes).
_UNREACHABLE = 4 if sys.version_info < (3, 14) else 1


class gearsFuture:
    """Returned from a step callback, suspends its record until `continueRun(value)` (the
    step's result for the record) or `continueFailed(error)` (the record fails)."""

    def __init__(self):
        supported = _step_kind()
        if supported is None:
            raise _gearbox.error("Future object can only be created inside certain execution steps")
        if not supported:
            raise _gearbox.error("Step does not support async")
        if not async_allowed():
            raise _gearbox.error(_INLINE)
        if _ident() in pending:
            raise _gearbox.error("Can not create async record twice on the same step")
        pending[_ident()] = self
        self._owner = _ident()
        self._state, self._value, self._error = _CREATED, None, None
        if _THREADS:
            import threading

            self._cond = threading.Condition()
        else:
            self._cond = None

    def continueRun(self, value):
        self._finish(value, None)

    def continueFailed(self, error):
        self._finish(None, error if isinstance(error, BaseException) else Exception(str(error)))

    def _finish(self, value, error):
        if self._cond is None:
            return self._set(value, error)
        with self._cond:
            # Continued from another thread (a coroutine on the session's loop) before the
            # callback that made it has returned it: wait for that return, a moment away.
            while self._state == _CREATED and _ident() != self._owner:
                self._cond.wait(0.05)
            self._set(value, error)
            self._cond.notify_all()

    def _set(self, value, error):
        if self._state in (_CREATED, _DROPPED):
            raise _gearbox.error("Can not handle future untill it returned from the callback")
        if self._state == _DONE:
            raise _gearbox.error("Can not continue with the same future twice")
        self._state, self._value, self._error = _DONE, value, error
        deliver = self.__dict__.get("_deliver")
        if deliver is not None:
            deliver(value, error)

    def _returned(self):
        """The callback that made it has returned it (a continue may come from now on)."""
        if self._cond is None:
            if self._state == _CREATED:
                self._state = _RETURNED
            return
        with self._cond:
            if self._state == _CREATED:
                self._state = _RETURNED
                self._cond.notify_all()

    def _drop(self):
        """The callback returned something else: continuing this future is an error from now on
        (and a thread waiting to continue it stops waiting)."""
        if self._cond is None:
            self._state = _DROPPED
            return
        with self._cond:
            self._state = _DROPPED
            self._cond.notify_all()

    def _fail_if_unreachable(self, refs):
        """Nothing but the pipeline holds the future (`refs`, counted by the waiting loop): nobody
        can ever continue it. It fails, as RedisGears fails a future freed without a continue."""
        if refs <= _UNREACHABLE:
            self._state = _DROPPED
            raise _gearbox.error("Async record did not called continue")

    def _wait(self):
        """Wait (as the execution owning the record) until continued; its value, or its error
        raised."""
        if self._cond is not None:
            with self._cond:
                if self._state == _CREATED:
                    self._state = _RETURNED
                    self._cond.notify_all()
                while self._state != _DONE:
                    refs = sys.getrefcount(self)  # before the call below puts `self` on the stack
                    self._fail_if_unreachable(refs)
                    # Short waits: RG.ABORTEXECUTION's exception is seen between them.
                    self._cond.wait(0.05)
        else:
            if self._state == _CREATED:
                self._state = _RETURNED
            while self._state != _DONE:
                refs = sys.getrefcount(self)
                self._fail_if_unreachable(refs)
                _pause()
        if self._error is not None:
            raise self._error
        return self._value


class Deferred:
    """The futures a step's callbacks returned, waiting apart: the step goes on calling its
    callback for the next records instead of waiting for each record in turn (RedisGears: an
    async record does not hold back the others), then hands on each record once its future is
    continued, in the order they are continued. The step keeps only a weak reference to each
    future: one that nobody else holds can never be continued, and its record fails."""

    def __init__(self):
        import collections
        import weakref

        self._weak, self._done, self._waiting, self._n = weakref.ref, collections.deque(), {}, 0
        self._wake = __import__("threading").Event() if _THREADS else None

    def add(self, record, future):
        pending.pop(_ident(), None)
        key, self._n = self._n, self._n + 1
        done, waiting, wake = self._done, self._waiting, self._wake

        def finish(value, error):
            item = waiting.pop(key, None)
            if item is not None:
                done.append((item, value, error))
                if wake is not None:
                    wake.set()

        future._deliver = finish
        # Freed without a continue (nobody else held it): its record fails, as in RedisGears.
        waiting[key] = (record, self._weak(future, lambda _: finish(None, _gearbox.error("Async record did not called continue"))))
        future._returned()

    def results(self):
        """(record, value, error) for each record, as its future is continued."""
        while self._waiting or self._done:
            while self._done:
                (record, _), value, error = self._done.popleft()
                yield record, value, error
            if not self._waiting:
                break
            if self._wake is None:
                _pause()
            elif self._wake.wait(0.05):  # short waits: RG.ABORTEXECUTION is seen between them
                self._wake.clear()


def _pause(task=None):
    """wasm (no threads): one slice of a wait. Run the session's loop a moment (until `task` is
    done, at most 5 ms), then lend the instance to the session's other commands for 5 ms: one of
    them may continue what this execution waits for."""
    import asyncio

    lp = loop()
    if task is not None:
        lp.run_until_complete(asyncio.wait({task}, timeout=0.005))
        if task.done():
            return
    elif asyncio.all_tasks(lp):
        lp.run_until_complete(asyncio.sleep(0))
    _gearbox.pause(5)


class _Forwarder:
    """Native mode: the command a step's execution runs for (`override_reply`, `get_command`,
    `call_next`) is known on the execution's thread only, while its coroutine runs on the loop's
    thread. The coroutine's command requests are handed to the waiting execution thread, which
    makes them (RedisGears allows `override_reply` after an `await`)."""

    def __init__(self):
        import queue
        import threading

        self.requests = queue.SimpleQueue()
        self.wake = threading.Event()
        self.closed = False  # the execution stopped waiting: nobody serves requests any more

    def request(self, op, arg):
        import threading

        answered = threading.Event()
        slot = [None, None]
        self.requests.put((op, arg, slot, answered))
        self.wake.set()
        while not answered.wait(0.05):
            if self.closed:
                # A task the coroutine left behind, after its execution ended.
                raise _gearbox.error("Can not get Command ctx: the execution of this coroutine has ended")
        if slot[1] is not None:
            raise slot[1]
        return slot[0]

    def serve(self):
        while not self.requests.empty():
            op, arg, slot, answered = self.requests.get_nowait()
            try:
                slot[0] = _gearbox.command(op, arg)
            except BaseException as e:  # handed back to the coroutine, which raises it
                slot[1] = e
            answered.set()


_forwarder = None  # a contextvars.ContextVar, made on first use


def _forwarding(channel, coro):
    global _forwarder
    import contextvars

    if _forwarder is None:
        _forwarder = contextvars.ContextVar("gearbox_command_forwarder", default=None)

    async def run():
        _forwarder.set(channel)  # this task's own context (and tasks it creates)
        return await coro

    return run()


def command(op, arg):
    """`_gearbox.command` for gears.py: from a step's coroutine on the loop's thread, made by the
    execution thread that waits for it."""
    channel = _forwarder.get() if _forwarder is not None else None
    if channel is not None and _THREADS:
        return channel.request(op, arg)
    return _gearbox.command(op, arg)


def _run_coroutine(coro):
    import asyncio

    lp = loop()
    if not _THREADS:
        task = lp.create_task(coro)
        while not task.done():
            _pause(task)
        return task.result()

    channel = _Forwarder()
    fut = asyncio.run_coroutine_threadsafe(_forwarding(channel, coro), lp)
    fut.add_done_callback(lambda _: channel.wake.set())
    try:
        while not fut.done():
            channel.wake.wait(0.05)
            channel.wake.clear()
            channel.serve()
        channel.serve()
    except BaseException:
        fut.cancel()
        raise
    finally:
        channel.closed = True
    return fut.result()


class AsyncFailure(Exception):
    """A step's coroutine or gearsFuture failed: RedisGears reports the bare message (no
    traceback) in the execution's errors."""


def settle(out, no_async_text=None):
    """A step callback's return value once its async record is resolved. `no_async_text`: the
    step refuses coroutines with this text (extractors, batchgroupby reducers)."""
    created = pending.pop(_ident(), None)
    if type(out) is types.CoroutineType:
        if no_async_text is not None or not async_allowed():
            out.close()
            raise _gearbox.error(no_async_text or _INLINE)
        try:
            return _run_coroutine(out)
        except Exception as e:
            raise AsyncFailure(str(e)) from None
    if isinstance(out, gearsFuture):
        del created  # so that only the pipeline's own references remain (see _UNREACHABLE)
        try:
            return out._wait()
        except Exception as e:
            raise AsyncFailure(str(e)) from None
    if created is not None:
        # A future made and not returned (RedisGears: the record goes on with the value the
        # callback returned); continuing it later is refused.
        created._drop()
    return out


def isAsyncAllow():
    """Whether a step callback running here may return a coroutine or a gearsFuture."""
    return bool(_step_kind()) and async_allowed()


def createFuture():
    """An asyncio future of the session's loop (await it in a coroutine)."""
    return loop().create_future()


def _threadsafe(lp, fn, *args):
    if _THREADS:
        lp.call_soon_threadsafe(fn, *args)
    else:
        lp.call_soon(fn, *args)


def setFutureResults(f, res):
    _threadsafe(loop(), f.set_result, res)


def setFutureException(f, exception):
    if not isinstance(exception, BaseException):
        exception = Exception(str(exception))
    _threadsafe(loop(), f.set_exception, exception)


def runCoroutine(cr, f=None, delay=0):
    """Run coroutine `cr` on the session's loop (after `delay` seconds); continue gearsFuture `f`
    with its result or error."""
    import asyncio

    async def run():
        try:
            if delay:
                await asyncio.sleep(delay)
            res = await cr
        except Exception as e:
            if f is not None:
                f.continueFailed(e)
            return
        if f is not None:
            f.continueRun(res)

    lp = loop()
    if _THREADS:
        asyncio.run_coroutine_threadsafe(run(), lp)
    else:
        lp.create_task(run())
