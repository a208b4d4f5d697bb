"""gearbox wasm guest: the app module of the guest component (componentize-py, see
build-guest.sh and wit/gearbox.wit). It is imported once, at build time, together with gears.py
and the standard library modules scripts may use, and the component is a snapshot of that state:
a new instance is a ready Python, not a Python start-up.

It provides `_gearbox` (the host functions gears.py uses, same API as the native builtin module),
then, in the `serve` export the host calls once per instance, serves the host's command frames
until the host closes the channel:
  S run_script(source)   P run_plan(id)   D drop_plan(id)   F fire(handle, record, profile)
  O on_registered(handle)   M profile([op, order])   U use_requirements(roots)
While a command runs, host calls are request frames (C call, K read_keys, Q scan_keys, N count_keys, J scan_close, L log, G config_get,
A atomic_begin, Z atomic_end, X register, T time_event, H command, W async_allowed, Y pause) answered by an `r` frame. Frame: b"GB", version, kind,
u32 tag, u32 length, then one value in marshal format (version 2: bytes = bulk, str = status, a
1-tuple holding a str = error), so both directions are encoded and decoded in C. Frames travel
through the component's `channel` imports (`send`, `recv`), one whole frame per call. Every frame
carries the tag of the host command it belongs to. A command may arrive while this guest waits
for a host reply (a sync registration firing while a job of this session waits for Redis): if its
tag is marked nestable it is run right there, nested, then the wait goes on; otherwise it waits
for the top loop. The host validates every frame: a script sending frames of its own can only
confuse its own session, which is then discarded.
sys.stdout / sys.stderr go to the Redis log (gears.py's _LogStream), so print() never touches the channel.
"""
import builtins
import marshal
import struct
import sys
import types

import wit_world
from wit_world.imports import channel as _channel

# This file's own copy of the builtins: a script patching `builtins.len` (its right, in its own
# instance) must not break the framing below. Functions defined after this line resolve builtins
# through the copy.
__builtins__ = dict(builtins.__dict__)

_HDR = struct.Struct("<2sBBII")
_VERSION = 3
_chan_send, _chan_recv = _channel.send, _channel.recv
_loads, _dumps = marshal.loads, marshal.dumps


class _Closed(BaseException):
    """The host closed the channel: the session is over (ends `serve`)."""


def _plain(v):
    """A value for the host, by the rules the native runtime converts arguments with: None, bool
    and int (64-bit, else its text), float, bytes-like and str (both bulk), lists and tuples;
    anything else its str()."""
    if type(v) is int:
        return v if -(1 << 63) <= v < (1 << 63) else str(v).encode()
    if v is None or type(v) in (float, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, int):
        return _plain(int(v))
    if isinstance(v, float):
        return float(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return _plain(str(v))


# Tags of the host commands being run, innermost last; frames are stamped with the last one.
_cur = [0]
# Replies that arrived for an outer command while a nested one waited.
_stash = {}
# Commands that may run nested inside a wait carry this bit in their tag (their sender holds the
# Redis lock); any other command arriving during a wait waits here for the top loop.
_NESTABLE = 1 << 31
_deferred = []
# Tags of the commands pausing now (see `pause`).
_pausing = set()


def _send_payload(kind, payload):
    _chan_send(_HDR.pack(b"GB", _VERSION, ord(kind), _cur[-1], len(payload)) + payload)


def _send(kind, value):
    _send_payload(kind, _dumps(value, 2))


def _recv():
    data = _chan_recv()
    if not data:
        raise _Closed()
    magic, version, kind, tag, n = _HDR.unpack_from(data)
    if magic != b"GB" or version != _VERSION or len(data) != 12 + n:
        raise _Closed()  # the host broke the protocol: end the instance
    return chr(kind), tag, _loads(memoryview(data)[12:])


def _reply():
    """Wait for the host's answer to this command's host call, running any command that comes
    first (nested) and keeping answers meant for outer commands. While this command pauses
    (`pause`), any command of the session may run nested, those deferred before included."""
    mine = _cur[-1]
    pausing = mine in _pausing
    while True:
        if mine in _stash:
            return _stash.pop(mine)
        if pausing and _deferred:
            _dispatch(*_deferred.pop(0))
            continue
        kind, tag, value = _recv()
        if kind == "r":
            if tag == mine:
                return value
            _stash[tag] = value
        elif pausing or tag & _NESTABLE:
            _dispatch(kind, tag, value)
        else:
            _deferred.append((kind, tag, value))


# ------------------------------------------------------------------ _gearbox (host functions)
_gb = types.ModuleType("_gearbox", "gearbox host functions (wasm guest; use the names gears.py exports)")


def _exc(name, base):
    cls = type(name, (base,), {"__module__": "gears"})
    cls.__qualname__ = name
    return cls


_gb.error = _exc("error", Exception)
_gb.forcestopped = _exc("forcestopped", BaseException)
_gb.ScriptTimeout = _exc("ScriptTimeout", BaseException)


def _text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytearray(raw)


def _reply_obj(v):
    if type(v) is bytes:
        return _text(v)
    if type(v) is list:
        return [_reply_obj(x) for x in v]
    if type(v) is tuple:
        return v[0]  # an error inside an array: its text
    return v


def _host(kind, value):
    _send(kind, value)
    reply = _reply()
    if type(reply) is tuple:
        raise _gb.error(reply[0])
    return reply


def _arg(a):
    if isinstance(a, (bytes, bytearray)):
        return bytes(a)
    if isinstance(a, str):
        return a.encode("utf-8")
    return str(a).encode("utf-8")


def call(*args):
    if not args:
        return []
    if not isinstance(args[0], (str, bytes)):
        raise _gb.error("the given command must be a string")
    _send_payload("C", _dumps([a.encode("utf-8") if type(a) is str else _arg(a) for a in args], 2))
    reply = _reply()
    if type(reply) is bytes:
        return _text(reply)
    if type(reply) is tuple:
        raise _gb.error(reply[0])
    return _reply_obj(reply)


def read_keys(keys, read_value):
    if not isinstance(keys, list):
        raise TypeError("read_keys(keys: list, read_value: bool)")
    return _records(_host("K", [[_arg(k) for k in keys], int(bool(read_value))]))[1]


def scan_keys(scan, pattern, read_value):
    return _records(_host("Q", [int(scan), _arg(pattern), int(bool(read_value))]))


def count_keys(scan, pattern, read_value):
    following, n = _host("N", [int(scan), _arg(pattern), int(bool(read_value))])
    return following, n


def scan_close(scan):
    _host("J", int(scan))


def _records(batch):
    """The host sends KeysReader records as ready dicts: [next scan, has_binary, records]. Bytes
    stand for strings that are not UTF-8, which scripts get as bytearrays (as in native mode)."""
    following, binary, records = batch
    if binary:
        for rec in records:
            for name, v in rec.items():
                if type(v) is bytes:
                    rec[name] = bytearray(v)
                elif type(v) is dict:
                    rec[name] = {_ba(f): _ba(x) for f, x in v.items()}
                elif type(v) is list:
                    rec[name] = [_ba(x) for x in v]
    return following, records


def _ba(v):
    return bytearray(v) if type(v) is bytes else v


def log(level, message):
    if not isinstance(level, str) or not isinstance(message, str):
        raise TypeError("log(level: str, message: str)")
    if level.lower() not in ("debug", "verbose", "notice", "warning"):
        raise _gb.error("invalid log level")
    _send("L", [str(level), str(message)])


def config_get(name):
    if not isinstance(name, str):
        raise TypeError("config name must be a string")
    v = _host("G", name)
    return None if v is None else _text(v)


def atomic_begin():
    _host("A", None)


def atomic_end():
    _host("Z", None)


def register(spec):
    if not isinstance(spec, list):
        raise TypeError("register(spec: list)")
    return _text(_host("X", _plain(spec)))


def time_event(seconds, handle, key=None):
    return bool(_host("T", [int(seconds), int(handle)] + ([] if key is None else [_arg(key)])))


def async_allowed():
    return bool(_host("W", None))


def pause(ms):
    """Let the host run other commands of this session, nested, for up to `ms` milliseconds: this
    command waits for something one of them may bring (an async record's continue)."""
    mine = _cur[-1]
    _pausing.add(mine)
    try:
        _host("Y", int(ms))
    finally:
        _pausing.discard(mine)


def command(op, arg):
    if not isinstance(op, str):
        raise TypeError("command(op: str, arg)")
    return _reply_obj(_host("H", [op, _plain(arg)]))


for _f in (call, read_keys, scan_keys, count_keys, scan_close, log, config_get, atomic_begin, atomic_end, register, time_event, command, async_allowed, pause):
    setattr(_gb, _f.__name__, _f)
sys.modules["_gearbox"] = _gb




# ------------------------------------------------------------------ commands
def _result(obj):
    """A result record as an engine value, by RedisGears' rules (spec 2.7), as native convert.rs."""
    if isinstance(obj, str):
        if len(obj) > 1 and obj[0] == "+":
            return obj[1:]  # a status
        if len(obj) > 1 and obj[0] == "-":
            return (obj[1:],)  # an error
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError:
            return b""
    if isinstance(obj, int):
        return _plain(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, list):
        return [_result(x) for x in obj]
    return b"PY RECORD"


def _str(x):
    try:
        return str(x)
    except BaseException:
        return ""


_plans = {}
_next_plan = [0]


def _answer_plan(plan):
    try:
        results, errors, step_ms = plan()
        return [[_result(r) for r in results], [_str(e) for e in errors],
                [s if isinstance(s, int) and s >= 0 else 0 for s in step_ms]]
    except BaseException as e:
        return (_str(sys.modules["gears_pipeline"].format_exception(e)),)


def _run(kind, arg):
    """One host command; returns the value of its `R` answer."""
    if kind == "S":
        out = sys.modules["gears"]._run_script(arg.decode("utf-8"))
        if out is None:
            return ["done"]
        if out[0] == "run":
            _next_plan[0] += 1
            _plans[_next_plan[0]] = out[1]
            steps = [[_str(s[0]), _str(s[1]), _str(s[2])] for s in out[2] if isinstance(s, tuple) and len(s) >= 3]
            return ["run", _next_plan[0], steps]
        return ["error", _str(out[1])]
    if kind == "P":
        return _answer_plan(_plans.pop(arg, None))
    if kind == "F":
        gears = sys.modules["gears"]
        return _answer_plan(lambda: gears._fire(arg[0], _reply_obj(arg[1]), bool(arg[2])))
    if kind == "O":
        err = sys.modules["gears"]._on_registered(arg)
        return None if err is None else _str(err)
    if kind == "D":
        _plans.pop(arg, None)
        return None
    if kind == "U":
        try:
            sys.modules["gears"]._use_requirements(arg)
            return None
        except BaseException as e:
            return _str(e)
    if kind == "M":
        try:
            return sys.modules["gears"]._profile(_reply_obj(arg))
        except BaseException as e:
            return (_str(sys.modules["gears_pipeline"].format_exception(e)),)
    raise _Closed()  # not a command: the host broke the protocol


def _dispatch(kind, tag, arg):
    _cur.append(tag)
    try:
        answer = _run(kind, arg)
        _send("R", answer)
    finally:
        _cur.pop()


def _serve():
    while True:
        kind, tag, arg = _deferred.pop(0) if _deferred else _recv()
        if kind == "r":
            _stash[tag] = arg  # an answer nobody waits for any more
        else:
            _dispatch(kind, tag, arg)


# The gears modules and the standard library scripts may import, imported now: at build time,
# into the snapshot. Only what is imported here exists in the guest (it has no file system):
# anything else raises ModuleNotFoundError. Keep README's list in step.
import gears  # noqa: E402

SNAPSHOT_MODULES = (
    "abc", "argparse", "array", "asyncio", "atexit", "base64", "binascii", "bisect", "calendar",
    "cmath", "codecs", "collections", "collections.abc", "contextlib", "contextvars", "copy",
    "copyreg", "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "email.message",
    "email.parser", "email.utils", "enum", "fnmatch", "fractions", "functools", "gzip", "hashlib",
    "heapq", "hmac", "html", "html.parser", "inspect", "io", "ipaddress", "itertools", "json",
    "logging", "math", "numbers", "operator", "pathlib", "pickle", "pprint", "queue", "random", "re",
    "cProfile", "pstats",
    "secrets", "shlex", "socket", "statistics", "string", "stringprep", "struct", "tempfile",
    "textwrap", "threading", "time", "timeit", "traceback", "types", "typing", "unicodedata",
    "urllib.parse", "uuid", "warnings", "weakref", "zlib", "zoneinfo",
)
for _name in SNAPSHOT_MODULES:
    __import__(_name)


def _all_codecs():
    """Every codec of the standard library (`encodings.*`), so `str.encode('cp1252')` and friends
    work as they do outside the sandbox; the Windows-only ones do not import here."""
    import encodings
    import pkgutil

    for info in pkgutil.iter_modules(encodings.__path__):
        try:
            __import__("encodings." + info.name)
        except ImportError:
            pass


_all_codecs()


def _waiting_locks():
    """This CPython has no threads, so a blocking acquire (without a timeout) of a held lock can
    never succeed, and the C library traps on it, killing the instance. threading's locks (and
    with them Condition, Event, Semaphore, queue.Queue) wait with a timeout instead
    (python/gears_waits.py), which sleeps in the host's interruptible sleep: ScriptTimeoutMS and
    RG.ABORTEXECUTION stop them as they stop time.sleep(). One long slice is enough here."""
    import _thread
    import time

    import gears_waits

    gears_waits.install(time.monotonic, min(86400.0, _thread.TIMEOUT_MAX))


_waiting_locks()


def _lending_sleep():
    """time.sleep in a command lends the instance to the session's other commands while it
    sleeps, as a sleeping thread lets the others run in native mode. The host lends it only when
    the command's thread does not hold the Redis lock; elsewhere (top level, sync registrations,
    atomic blocks) a pause is the plain interruptible sleep."""
    import time

    plain, monotonic = time.sleep, time.monotonic

    def sleep(secs):
        if not _cur[-1] or not (secs > 0.001):
            return plain(secs)
        end = monotonic() + secs
        while True:
            left = end - monotonic()
            if left <= 0.001:
                return plain(max(left, 0))
            pause(min(left, 0.1) * 1000)

    sleep.__doc__ = plain.__doc__
    time.sleep = sleep


_lending_sleep()


class WitWorld(wit_world.WitWorld):
    def serve(self) -> None:
        try:
            _serve()
        except _Closed:
            pass
