"""gears_events: the registration side of gearbox's RedisGears API, loaded into every session's
interpreter before `gears.py` (which exposes `register()` and `registerTE` from here).

A registration's callbacks stay in this interpreter under a *handle*; the host knows only the
handle and a flat spec (`_flat_spec`), and fires an event with `fire(handle, record)`: a
KeysReader key, a StreamReader batch read through the consumer group, a CommandReader trigger's
arguments, or a time event. Argument checks and their texts follow RedisGears 1.2
(RedisGears 1.2's register() checks).
"""
import types

import _gearbox
import gears_pipeline as _pipeline

_KEY_TYPES = ("string", "hash", "list", "set", "zset", "stream", "module", "empty")
# handle -> (reader, steps, onRegistered, options); options: readValue for KeysReader, the spec for
# StreamReader. The host knows registrations by handle.
_registrations = {}


def _str_list(value, what):
    if value is None:
        return None
    try:
        items = list(value)
    except TypeError:
        raise _gearbox.error("%s argument is not iterable" % what)
    for item in items:
        if not isinstance(item, str):
            raise _gearbox.error("%s type is not string" % what)
    return items


def _commands(value):
    """KeysReader `commands=`: the commands whose keyspace events fire the registration."""
    if value is None:
        return None
    try:
        items = list(value)
    except TypeError:
        raise _gearbox.error("given commands is not iterable")
    for item in items:
        if not isinstance(item, str):
            raise _gearbox.error("given command type is not string")
    return items or None


def _boolean(kwargs, name, default, message):
    value = kwargs.get(name, default)
    if not isinstance(value, bool):
        raise _gearbox.error(message)
    return value


def reader_spec(reader, prefix, kwargs):
    """register()'s reader-specific arguments, checked as RedisGears checks them."""
    if reader == "KeysReader":
        if not isinstance(prefix, str):
            raise _gearbox.error("regex argument must be a string")
        key_types = _str_list(kwargs.get("keyTypes"), "keyTypes")
        for t in key_types or ():
            if t not in _KEY_TYPES:
                raise _gearbox.error("unknown key type %s" % t)
        return {"prefix": prefix, "eventTypes": _str_list(kwargs.get("eventTypes"), "eventTypes"), "keyTypes": key_types,
                "readValue": _boolean(kwargs, "readValue", True, "readValue is not boolean"),
                "commands": _commands(kwargs.get("commands"))}
    if reader == "CommandReader":
        trigger, hook, keyprefix = kwargs.get("trigger"), kwargs.get("hook"), kwargs.get("keyprefix")
        if trigger is not None and not isinstance(trigger, str):
            raise _gearbox.error("trigger argument is not string")
        inorder = _boolean(kwargs, "inorder", False, "inorder argument must be a boolean")
        if keyprefix is not None and not isinstance(keyprefix, str):
            raise _gearbox.error("keyprefix argument is not string")
        if hook is not None and not isinstance(hook, str):
            raise _gearbox.error("hook argument is not string")
        shared = _boolean(kwargs, "shared", False, "shared argument must be a boolean")
        rights = kwargs.get("rights", "caller")
        if rights not in ("caller", "owner"):
            raise _gearbox.error("rights argument must be 'caller' or 'owner'")
        if trigger is not None:
            if keyprefix is not None or hook is not None:
                raise _gearbox.error("trigger argument can not be given with keyprefix or hook")
            return {"trigger": trigger, "inorder": inorder, "shared": shared, "ownerRights": rights == "owner"}
        if shared or rights != "caller":
            raise _gearbox.error("shared and rights apply to trigger registrations only")
        if hook is None:
            raise _gearbox.error("no trigger or hook argument was given")
        return {"hook": hook, "keyprefix": keyprefix or None, "inorder": inorder}
    if reader == "StreamReader":
        if not isinstance(prefix, str):
            raise _gearbox.error("regex argument must be a string")
        batch, duration = kwargs.get("batch", 1), kwargs.get("duration", 0)
        interval = kwargs.get("onFailedRetryInterval", 1)
        for name, value in (("batch", batch), ("duration", duration), ("onFailedRetryInterval", interval)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _gearbox.error("%s argument must be a number" % name)
        policy = kwargs.get("onFailedPolicy", "continue")
        if not isinstance(policy, str) or policy.lower() not in ("continue", "abort", "retry"):
            raise _gearbox.error("onFailedPolicy must be Continue/Abort/Retry")
        if kwargs.get("mode", "async") == "sync" and policy.lower() != "continue":
            raise _gearbox.error("sync mode only supports the continue onFailedPolicy")
        trim = kwargs.get("trimStream", True)
        if not isinstance(trim, bool):
            raise _gearbox.error("pyTrimmStream argument must be a boolean")
        return {"prefix": prefix, "batch": max(batch, 1), "duration": duration, "onFailedPolicy": policy.lower(),
                "onFailedRetryInterval": interval, "trimStream": trim}
    raise _gearbox.error("Given reader do not support register or not exists")


def _flat_spec(spec):
    """The spec as the host reads it: name/value pairs of bytes, ints and lists of bytes."""
    out = []
    for name, value in spec.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        elif isinstance(value, list):
            value = [v.encode("utf-8", "surrogateescape") for v in value]
        out += [name.encode(), value]
    return out


def _profiling():
    return _gearbox.config_get("ProfileExecutions") not in ("0", None)


def fire(handle, record, profile=None):
    """Run registration `handle`'s steps over one event (`profile`: ProfileExecutions, passed by the
    host so a trigger costs no extra host call). KeysReader: record is [key, event];
    CommandReader: the trigger's arguments. Returns (results, errors, step_ms) like a plan."""
    reader, steps, callback, read_value = _registrations[handle]
    if reader == "StreamReader":
        key, drain = record[0], len(record) > 2 and record[2] == "drain"
        while True:
            out = _fire_stream(key, read_value, steps, profile)
            if not drain or not out[0] and not out[1] or out[1] and read_value["onFailedPolicy"] != "continue":
                return out
    if reader == "TimeEvent":
        try:
            callback()
        except Exception as e:
            return [], [_pipeline.format_exception(e)], []
        return [], [], []
    if reader == "KeysReader":
        key, event = record
        records = _gearbox.read_keys([key], read_value)
        for r in records:
            r["event"] = event
    else:
        records = [list(record)]
    return _pipeline.run_plan(records, steps, _profiling() if profile is None else profile)


_GROUP, _CONSUMER = "__gears_consumer_group__", "__gears_client__"
# A StreamReader batch failing with an error that starts with this pauses its registration.
PAUSE = "PAUSE"


def _stream_batch(key, count):
    """Up to `count` entries of `key` for the consumer group: first the ones read before and never
    acknowledged (a failed batch, a restart), then new ones."""
    try:
        _gearbox.call("XGROUP", "CREATE", key, _GROUP, "0", "MKSTREAM")
    except _gearbox.error as e:
        if "BUSYGROUP" not in str(e):
            raise
    for start in ("0", ">"):
        reply = _gearbox.call("XREADGROUP", "GROUP", _GROUP, _CONSUMER, "COUNT", str(count), "STREAMS", key, start)
        entries = reply[0][1] if reply else []
        if entries:
            return entries
    return []


def _fire_stream(key, options, steps, profile):
    records = [{"key": key, "id": entry_id, "value": {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}}
               for entry_id, fields in _stream_batch(key, options["batch"])]
    if not records:
        return [], [], []
    results, errors, step_ms = _pipeline.run_plan(records, steps, _profiling() if profile is None else profile)
    pausing = any(e.startswith(PAUSE) for e in errors)  # flat_error('PAUSE…'): read again after the unpause
    if not pausing and (not errors or options["onFailedPolicy"] == "continue"):
        ids = [r["id"] for r in records]
        _gearbox.call("XACK", key, _GROUP, *ids)
        if options["trimStream"]:
            ms, seq = ids[-1].split("-")
            _gearbox.call("XTRIM", key, "MINID", "%s-%d" % (ms, int(seq) + 1))
    return results, errors, step_ms


def on_registered(handle):
    """Call registration `handle`'s onRegistered callback; the formatted error, or None."""
    callback = _registrations[handle][2]
    if callback is None:
        return None
    try:
        callback()
    except BaseException as e:
        return _pipeline.format_exception(e)
    return None

def _new_handle():
    """Handles only go up (a failed register() must not free one for a live registration); the
    script's top level makes the same ones in the same order when it is replayed."""
    _handles[0] += 1
    return _handles[0]


_handles = [0]


def register(reader, spec, steps, on_registered):
    """Hand a checked registration to the host; keep its callbacks under a new handle."""
    handle = _new_handle()
    spec["handle"] = handle
    options = spec if reader == "StreamReader" else spec.get("readValue", True)
    # Kept first: inside an execution the registration is live (may fire) once the host has it.
    _registrations[handle] = (reader, steps, on_registered, options)
    try:
        return _gearbox.register(_flat_spec(spec))
    except BaseException:
        del _registrations[handle]
        raise


def registerTE(seconds, fn, keyName=None):
    """Call fn() every `seconds` seconds in this script's session (RedisGears' time events)."""
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _gearbox.error("time argument must be a long")
    if not isinstance(fn, types.FunctionType):
        raise _gearbox.error("callback must be a function")
    handle = _new_handle()
    _registrations[handle] = ("TimeEvent", (), fn, False)
    # As in RedisGears, a keyName that is not a str is ignored.
    return _gearbox.time_event(seconds, handle, keyName if isinstance(keyName, str) else None)
