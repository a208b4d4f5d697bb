"""gears: the RedisGears 1.x Python API as gearbox scripts see it.

This file is loaded once into every session's interpreter (a CPython sub-interpreter in native
mode; later a wasm instance) after `_gearbox` (the host functions) and `gears_pipeline` (readers
and steps). The host runs a script with `_run_script(source)`; the names in `_EXPORTS` are the
script's globals, as in RedisGears' GearsBuilder.py. Semantics follow
RedisGears 1.2's documented API; quirks users depend on (flatmap order, sort() ascending,
aggregate's `a if a else zero`) are kept on purpose.
"""
import builtins
import sys
import types

import _gearbox
import gears_async as _async
import gears_events as _events
import gears_pipeline as _pipeline
from gears_pipeline import flat_error
from gears_requirements import use as _use_requirements  # noqa: F401 (the host calls it)


class _LogStream:
    """sys.stdout / sys.stderr of a script, in both modes: whole lines to the Redis log through
    log(), so print() counts against the session's log budget (LogLinesPerSecond) and never
    reaches the server's own stdout or the wasm guest's channel."""

    def __init__(self, level):
        self._level, self._buf = level, ""

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        self._buf += s
        while "\n" in self._buf or len(self._buf) > 65536:
            line, sep, rest = self._buf.partition("\n")
            if not sep:
                line, rest = self._buf[:65536], self._buf[65536:]
            self._buf = rest
            _gearbox.log(self._level, line)
        return len(s)

    def flush(self):
        if self._buf:
            line, self._buf = self._buf, ""
            _gearbox.log(self._level, line)

    def isatty(self):
        return False


sys.stdout, sys.stderr = _LogStream("notice"), _LogStream("warning")

error = _gearbox.error
forcestopped = _gearbox.forcestopped

_READERS = ("KeysReader", "KeysOnlyReader", "StreamReader", "PythonReader", "ShardsIDReader", "CommandReader")
_LOG_LEVELS = ("debug", "verbose", "notice", "warning")


class _ScriptState:
    """What the running top-level script has asked for (one run() at most)."""

    in_script = False
    pending = None


_state = _ScriptState()


# ---------------------------------------------------------------- runtime functions


# Run a Redis command as the user who ran RG.PYEXECUTE; errors raise gears.error; no
# arguments give []. The host function itself, not a wrapper: a Python frame per call cost
# ~10% of a loop of execute() calls.
execute = _gearbox.call


class atomic:
    """Hold the Redis lock for the whole block (nothing else runs meanwhile)."""

    def __enter__(self):
        if "asyncio" in sys.modules and _in_a_task():
            # RedisGears' rule in both runtimes: a block never spans an await (in wasm mode the
            # coroutine runs on the execution's own thread, where the host would allow it).
            raise error("await is not allow inside atomic block")
        _gearbox.atomic_begin()
        return self

    def __exit__(self, *exc):
        _gearbox.atomic_end()
        return False


def _in_a_task():
    import asyncio

    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no running loop on this thread
        return False


def hashtag():
    """A hashtag mapping to this shard's first slot (stand-alone: slot 0)."""
    return "06S"


def log(msg, level="notice"):
    if msg in _LOG_LEVELS and level not in _LOG_LEVELS:
        msg, level = level, msg
        _gearbox.log("warning", "log(level, msg) is deprecated, use log(msg, level=...)")
    if not isinstance(msg, str):
        raise error("log message must be a string")
    if level not in _LOG_LEVELS:
        raise error("log level must be one of %s" % ", ".join(_LOG_LEVELS))
    _gearbox.log(level, msg)


def configGet(key):
    return _gearbox.config_get(key)


def gearsConfigGet(key, default=None):
    value = _gearbox.config_get(key)
    return default if value is None else value


def _deprecated(name, f):
    def alias(*args, **kwargs):
        _gearbox.log("warning", "%s is deprecated, use %s" % (name, f.__name__))
        return f(*args, **kwargs)

    alias.__name__ = name
    return alias


Log = _deprecated("Log", log)
ConfigGet = _deprecated("ConfigGet", configGet)
GearsConfigGet = _deprecated("GearsConfigGet", gearsConfigGet)


registerTE = _events.registerTE
gearsFuture = _async.gearsFuture
isAsyncAllow = _async.isAsyncAllow
def call_next(*args):
    """In a command hook's execution: run the next hook of the command, or the command itself,
    with these arguments (the command name is added); returns its reply, errors raise."""
    return _async.command("next", [a if isinstance(a, (str, bytes)) else str(a) for a in args])


def get_command():
    """The arguments of the command this execution was caused by (hooks, `commands=`)."""
    return _async.command("get", None)


def override_reply(reply):
    """For a KeysReader `commands=` registration: what the command's client gets instead of its
    reply ('-...' an error, '+...' a status)."""
    _async.command("override", reply)
createFuture = _async.createFuture
setFutureResults = _async.setFutureResults
setFutureException = _async.setFutureException
runCoroutine = _async.runCoroutine


# ---------------------------------------------------------------- the builder

_STEP_INFO = {
    "map": ("map", "RedisGearsPy_PyCallbackMapper"),
    "flatmap": ("flatmap", "RedisGearsPy_PyCallbackFlatMapper"),
    "foreach": ("foreach", "RedisGearsPy_PyCallbackForEach"),
    "filter": ("filter", "RedisGearsPy_PyCallbackFilter"),
    "accumulate": ("accumulate", "RedisGearsPy_PyCallbackAccumulate"),
    "count": ("accumulate", "RedisGearsPy_PyCallbackAccumulate"),
    "sum": ("accumulate", "RedisGearsPy_PyCallbackAccumulate"),
    "localgroupby": ("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey"),
    "groupby": ("accumulatebykey", "RedisGearsPy_PyCallbackAccumulateByKey"),
    "batchgroupby": ("group", "RedisGearsPy_PyCallbackReducer"),
    "limit": ("limit", "Limit"),
    "collect": ("collect", "Collect"),
    "repartition": ("repartition", "RedisGearsPy_PyCallbackExtractor"),
}


def _check_functions(op, args, count, label=None):
    if len(args) != count:
        raise error("wrong number of args to %s function" % op)
    for f in args:
        if not isinstance(f, types.FunctionType):
            raise error("%s argument must be a function" % (label or op))


def _zero_or(a, zero):
    # RedisGears' helpers use `a if a else deepcopy(zero)`: a falsy accumulator restarts.
    if a:
        return a
    import copy  # only the aggregate family needs it

    return copy.deepcopy(zero)


def _callback_op(name, count):
    """A builder method taking `count` callbacks: RedisGears' argument checks, then the step."""

    def op(self, *args):
        _check_functions(name, args, count)
        return self._add(name, *args)

    op.__name__ = op.__qualname__ = name
    return op


class GearsBuilder:
    def __init__(self, reader="KeysReader", defaultArg="*", desc=None):
        if not isinstance(reader, str):
            raise error("reader argument must be a string")
        if reader not in _READERS:
            raise error("the given reader does not exists: %s" % reader)
        if desc is not None and not isinstance(desc, str):
            raise error("desc argument must be a string")
        self.reader = reader
        self.defaultArg = defaultArg
        self.desc = desc
        self.steps = []

    def _add(self, name, *args):
        self.steps.append((name, args))
        return self

    # The operations taking only callbacks: check the count and kind, then record the step.
    map = _callback_op("map", 1)
    flatmap = _callback_op("flatmap", 1)
    foreach = _callback_op("foreach", 1)
    filter = _callback_op("filter", 1)
    accumulate = _callback_op("accumulate", 1)
    localgroupby = _callback_op("localgroupby", 2)
    groupby = _callback_op("groupby", 2)
    batchgroupby = _callback_op("batchgroupby", 2)
    repartition = _callback_op("repartition", 1)

    def collect(self, *args):
        if args:
            raise error("wrong number of args to collect function")
        return self._add("collect")

    def limit(self, *args):
        if len(args) not in (1, 2):
            raise error("wrong number of args to limit function")
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise error("limit argument must be a number")
        length, start = args[0], (args[1] if len(args) == 2 else 0)
        return self._add("limit", length, start)

    def aggregate(self, zero, seqOp, combOp):
        _check_functions("aggregate", (seqOp, combOp), 2)
        self.accumulate(lambda a, r: seqOp(_zero_or(a, zero), r))
        self.collect()
        return self.accumulate(lambda a, r: combOp(_zero_or(a, zero), r))

    def __localAggregateby__(self, extractor, zero, seqOp):
        _check_functions("localAggregateby", (extractor, seqOp), 2)
        return self.localgroupby(extractor, lambda k, a, r: seqOp(k, _zero_or(a, zero), r))

    def aggregateby(self, extractor, zero, seqOp, combOp):
        _check_functions("aggregateby", (extractor, seqOp, combOp), 3)
        self.__localAggregateby__(extractor, zero, seqOp)
        return self.groupby(lambda r: r["key"], lambda k, a, r: combOp(k, _zero_or(a, zero), r["value"]))

    def count(self):
        # aggregate(0, a + 1, a + r) without a Python call per record: same results (nothing at
        # all for no records), same plan shape.
        return self._add("count")._add("collect")._add("sum")

    def countby(self, extractor=lambda x: x):
        _check_functions("countby", (extractor,), 1)
        return self.aggregateby(extractor, 0, lambda k, a, r: a + 1, lambda k, a, r: a + r)

    def sort(self, reverse=True):
        self.aggregate([], lambda a, r: a + [r], lambda a, r: a + r)
        self.map(lambda r: sorted(r, reverse=reverse))
        return self.flatmap(lambda r: r)

    def distinct(self):
        self.aggregate(set(), lambda a, r: a | set([r]), lambda a, r: a | r)
        return self.flatmap(lambda x: list(x))

    def avg(self, extractor=lambda x: float(x)):
        _check_functions("avg", (extractor,), 1, label="avg")
        self.map(extractor)
        self.aggregate((0, 0), lambda a, r: (a[0] + r, a[1] + 1), lambda a, r: (a[0] + r[0], a[1] + r[1]))
        return self.map(lambda x: x[0] / x[1])

    # ------------------------------------------------------------ actions

    def _reader(self, arg, kwargs):
        if self.reader == "KeysReader":
            if not isinstance(arg, str):
                raise error("regex argument must be a string")
            no_scan, read_value = kwargs.get("noScan", False), kwargs.get("readValue", True)
            if not isinstance(no_scan, bool):
                raise error("noScan argument must be a boolean")
            if not isinstance(read_value, bool):
                raise error("readValue argument must be a boolean")
            if not no_scan:
                return _pipeline.KeysWalk(arg, read_value)
            return lambda: _pipeline.keys_reader(arg, no_scan, read_value)
        if self.reader == "KeysOnlyReader":
            count, no_scan = kwargs.get("count", 1000), kwargs.get("noScan", False)
            generator = kwargs.get("patternGenerator")
            return lambda: _pipeline.keys_only_reader(arg, count, no_scan, generator)
        if self.reader == "StreamReader":
            if not isinstance(arg, str):
                raise error("regex argument must be a string")
            from_id = kwargs.get("fromId", "0-0")
            if not isinstance(from_id, str):
                raise error("fromId argument must be a string")
            return lambda: _pipeline.stream_reader(arg, from_id)
        if self.reader == "PythonReader":
            if arg is None:
                raise error("python reader function is not given")
            if not isinstance(arg, types.FunctionType):
                raise error("pyreader argument must be a function")
            return lambda: _pipeline.python_reader(arg)
        if self.reader == "ShardsIDReader":
            return _pipeline.shards_id_reader
        raise error("Given reader do not support run or not exists")

    def run(self, arg=None, convertToStr=True, collect=True, **kwargs):
        mode = kwargs.get("mode", "async")
        if not isinstance(mode, str):
            raise error("execution mode must be a string")
        if mode not in ("async", "async_local"):
            raise error("unknown execution mode")
        if _state.in_script and _state.pending is not None:
            raise error("Can not run more then 1 executions in a single script")
        reader = self._reader(self.defaultArg if arg is None else arg, kwargs)
        steps = list(self.steps)
        if convertToStr:
            steps.append(("map", (str,)))
        if collect:
            steps.append(("collect", ()))
        if not _state.in_script:
            # Inside an execution (a step, a coroutine, a registration or time event callback):
            # the nested plan runs here and now; `await` on the returned object gives its
            # [results, errors].
            results, errors, _ = _pipeline.run_plan(reader, steps, False)
            return _NestedRun([results, errors])
        info = _plan_info(self.reader, arg if arg is not None else self.defaultArg, steps)
        _state.pending = (lambda: _pipeline.run_plan(reader, steps, configGet("ProfileExecutions") not in ("0", None)), info)
        return None

    def register(self, prefix="*", convertToStr=True, collect=True, **kwargs):
        if "regex" in kwargs:
            _gearbox.log("warning", "regex argument is deprecated and will be removed, use prefix")
            prefix = kwargs["regex"]
        mode = kwargs.get("mode", "async")
        if not isinstance(mode, str):
            raise error("execution mode must be a string")
        if mode not in ("async", "async_local", "sync"):
            raise error("unknown execution mode")
        on_registered = kwargs.get("onRegistered")
        if on_registered is not None and not isinstance(on_registered, types.FunctionType):
            raise error("onRegistered argument must be a function")
        spec = {"reader": self.reader, "desc": self.desc, "mode": mode, "onRegistered": on_registered is not None}
        spec.update(_events.reader_spec(self.reader, prefix, kwargs))
        steps = list(self.steps)
        if convertToStr:
            steps.append(("map", (str,)))
        if collect:
            steps.append(("collect", ()))
        # What RG.GETEXECUTION shows for the executions it starts: (type, name, arg) triples, flat.
        spec["steps"] = [part for info in _plan_info(self.reader, prefix, steps) for part in info]
        return _events.register(self.reader, spec, steps, on_registered)


GB = GearsBuilder


def _plan_info(reader, arg, steps):
    """A plan's steps as RG.GETEXECUTION lists them: (type, name, arg), the reader first."""
    return [("reader", reader, str(arg))] + [_STEP_INFO[name] + ("",) for name, _ in steps]


class _NestedRun:
    """What run() returns inside an execution: already done; awaiting it gives [results, errors]
    (RedisGears 1.2 returns an awaitable there too)."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: unreachable - makes __await__ a generator, as the protocol wants

    def __repr__(self):
        return "<nested run: %r>" % (self.value,)

# ---------------------------------------------------------------- registrations (gears_events.py)

_fire = _events.fire
_on_registered = _events.on_registered


# ---------------------------------------------------------------- scripts

# RedisGears' name for the generator behind ShardsIDReader (a PythonReader over this shard's id).
shardReaderCallback = _pipeline.shards_id_reader

_EXPORTS = (
    "GearsBuilder", "GB", "execute", "atomic", "hashtag", "log", "configGet", "gearsConfigGet",
    "registerTE", "gearsFuture", "call_next", "get_command", "override_reply", "isAsyncAllow",
    "flat_error", "createFuture", "setFutureResults", "setFutureException", "runCoroutine",
    "Log", "ConfigGet", "GearsConfigGet", "error", "forcestopped", "shardReaderCallback",
)


def _globals():
    g = {name: globals()[name] for name in _EXPORTS}
    g["__name__"] = "not_main"
    g["__builtins__"] = builtins
    g["redisgears"] = _redisgears
    return g


def _end_session():
    """Run by the host when the session has ended, before its interpreter does (the host stops
    it after a bound): the script's atexit callbacks run now, and none are left for the end."""
    import atexit

    try:
        atexit._run_exitfuncs()
    finally:
        atexit._clear()


def _profile(request):
    """RG.PYPROFILE, run by the host: request is [op, order] (see gears_pipeline.profile_request)."""
    op, order = request
    return _pipeline.profile_request(op, order)


def _run_script(source):
    """Run a script's top level (source text, or a code object the host compiled already).
    None: nothing to run; ("run", plan, steps); ("error", text)."""
    _state.pending = None
    _state.in_script = True
    try:
        code = source if isinstance(source, types.CodeType) else compile(source, "<string>", "exec")
        exec(code, _globals())
    except BaseException as e:
        _state.pending = None
        return ("error", _pipeline.format_exception(e))
    finally:
        _state.in_script = False
    pending, _state.pending = _state.pending, None
    if pending is None:
        return None
    return ("run",) + pending


# `redisgears`, the C module of RedisGears, for scripts that call it directly.
_redisgears = types.ModuleType("redisgears")
_redisgears.executeCommand = execute
_redisgears.log = lambda msg, level="notice": log(msg, level)
_redisgears.registerTimeEvent = registerTE
_redisgears.config_get = configGet
sys.modules["redisgears"] = _redisgears
