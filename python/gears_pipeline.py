"""The execution side of gearbox's RedisGears API: readers and steps, run as Python generators
inside the script's own interpreter (native sub-interpreter or wasm instance).

Records never cross the host boundary per step: readers fetch them from Redis in batches
(`_gearbox.scan_keys(...)`, `_gearbox.read_keys(...)`, `_gearbox.call('SCAN', ...)`), every step transforms a Python
iterator, and only the final results go back to the host.

An error raised by a callback drops that record and is appended, formatted, to the execution's
error list (RedisGears semantics); `_gearbox.forcestopped` (RG.ABORTEXECUTION) is a
BaseException and ends the whole execution.
"""
import itertools
import time
import types

import _gearbox
import gears_async as _async

_OWN_FILES = ("gears.py", "gears_pipeline.py", "gears_events.py", "gears_async.py")
# A callback's result needs a look only when it is a coroutine or some future is being created.
_pending = _async.pending
_Coroutine = types.CoroutineType


class flat_error(Exception):
    """An error whose text is reported exactly as given, without a traceback. As in RedisGears,
    calling `flat_error(msg)` raises it (so `raise flat_error(msg)` does too); `except
    flat_error` catches it. In a StreamReader registration, a text starting with PAUSE pauses
    the registration (its batch stays unacknowledged for after the unpause)."""

    def __new__(cls, *args):
        error = super().__new__(cls, *args)
        error.args = args
        raise error


def attempt_traceback():
    return _gearbox.config_get("PythonAttemptTraceback") not in ("0", None)


def format_exception(e):
    """Render an exception the way RedisGears does (PythonAttemptTraceback)."""
    if isinstance(e, (flat_error, _async.AsyncFailure)):
        return str(e.args[0]) if e.args else ""
    if attempt_traceback():
        import traceback  # imported on the first error only: it pulls in re, enum, textwrap, ...

        # Only the script's own frames: RedisGears' API was C and left none of its own.
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename not in _OWN_FILES]
        head = ["Traceback (most recent call last):\n"] if frames else []
        return str(head + traceback.format_list(frames) + traceback.format_exception_only(type(e), e))
    return "Error type: %s, Value: %s" % (type(e), e)


# ---------------------------------------------------------------- readers


def keys_reader(pattern, no_scan, read_value):
    if no_scan:
        yield from _gearbox.read_keys([pattern], read_value)
        return
    # The host walks the keyspace (Redis glob rules, like SCAN MATCH) and reads each batch of
    # about 1000 keys under one acquisition of the Redis lock.
    scan = 0
    try:
        while True:
            scan, records = _gearbox.scan_keys(scan, pattern, read_value)
            yield from records
            if not scan:
                return
    finally:
        if scan:
            _gearbox.scan_close(scan)


class KeysWalk:
    """The KeysReader over the keyspace. A plan whose first step is count() (`GB().count()`)
    asks the host only how many records the walk would give (`count_keys`: same keys, same ACL
    and expiry rules) instead of building each record to count it."""

    __slots__ = ("pattern", "read_value")

    def __init__(self, pattern, read_value):
        self.pattern, self.read_value = pattern, read_value

    def __call__(self):
        return keys_reader(self.pattern, False, self.read_value)

    def counted(self, errors):
        """The count step's output ([] or [n]) without the records; a failure ends the walk
        and is reported like a reader's own failure, keeping what was counted before it."""
        n = scan = 0
        try:
            while True:
                scan, batch = _gearbox.count_keys(scan, self.pattern, self.read_value)
                n += batch
                if not scan:
                    break
        except _gearbox.error as e:
            errors.append(str(e))
        except Exception as e:
            errors.append(format_exception(e))
        finally:
            if scan:
                _gearbox.scan_close(scan)
        return [n] if n else []


def keys_only_reader(pattern, count, no_scan, pattern_generator):
    if pattern_generator is not None:
        pattern, no_scan = pattern_generator()
    if no_scan:
        if _gearbox.call("EXISTS", pattern):
            yield pattern
        return
    cursor = "0"
    while True:
        cursor, keys = _gearbox.call("SCAN", cursor, "MATCH", pattern, "COUNT", str(count))
        yield from keys
        if cursor == "0":
            return


def stream_reader(key, from_id):
    last = from_id
    while True:
        reply = _gearbox.call("XREAD", "COUNT", "1000", "STREAMS", key, last)
        if not reply:
            return
        entries = reply[0][1]
        if not entries:
            return
        for entry_id, fields in entries:
            value = {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}
            yield {"key": key, "id": entry_id, "value": value}
            last = entry_id


def python_reader(fn):
    result = fn()
    if isinstance(result, types.GeneratorType):
        yield from result
    else:
        yield result


def shards_id_reader():
    yield "1"


# ---------------------------------------------------------------- steps
# Each step is a generator function (records, errors, *callbacks) -> records.


def _failed(errors, e):
    """Report a failed callback; a future it created dies with it."""
    if _pending:
        dead = _pending.pop(_async._ident(), None)
        if dead is not None:
            dead._drop()
    errors.append(format_exception(e))


def _calls(records, errors, f):
    """(record, f(record)) for every record whose call succeeded; a failing call's error is
    reported and its record dropped (RedisGears semantics for every callback step). The result
    may be async: a coroutine is waited for; a gearsFuture waits apart (`Deferred`) while the
    step goes on with the next records, and its record comes once the future is continued."""
    deferred = None
    for r in records:
        try:
            out = f(r)
            if _pending or type(out) is _Coroutine:
                if type(out) is _async.gearsFuture and _pending.get(_async._ident()) is out:
                    if deferred is None:
                        deferred = _async.Deferred()
                    deferred.add(r, out)
                    out = None  # the step holds its futures weakly (see Deferred)
                    continue
                out = _async.settle(out)
        except Exception as e:
            _failed(errors, e)
            continue
        yield r, out
    if deferred is not None:
        for r, out, error in deferred.results():
            if error is not None:
                errors.append(format_exception(_async.AsyncFailure(str(error))))
                continue
            yield r, out


def _extracted(records, errors, extractor):
    """(record, extractor(record)): like `_calls`, but an extractor may not be async."""
    for r in records:
        try:
            key = extractor(r)
            if _pending or type(key) is _Coroutine:
                key = _async.settle(key, "coroutine are not allow on extractor")
        except Exception as e:
            _failed(errors, e)
            continue
        yield r, key


def step_map(records, errors, f):
    return (out for _, out in _calls(records, errors, f))


def step_flatmap(records, errors, f):
    for _, out in _calls(records, errors, f):
        if isinstance(out, list):
            # RedisGears pops from the end of the list: elements come out reversed.
            yield from reversed(out)
        else:
            yield out


def step_foreach(records, errors, f):
    return (r for r, _ in _calls(records, errors, f))


def step_filter(records, errors, f):
    return (r for r, keep in _calls(records, errors, f) if keep)


def step_accumulate(records, errors, f):
    acc, have = None, False
    for r in records:
        try:
            out = f(acc, r)
            if _pending or type(out) is _Coroutine:
                out = _async.settle(out)
            acc, have = out, True
        except Exception as e:
            _failed(errors, e)
    if have:
        yield acc


def step_count(records, errors):
    n = 0
    for _ in records:
        n += 1
    if n:
        yield n


def step_sum(records, errors):
    total, have = 0, False
    for r in records:
        total, have = total + r, True
    if have:
        yield total


def _grouped(records, errors, extractor):
    for r, key in _extracted(records, errors, extractor):
        # RedisGears keys records by string: an int key 1 becomes '1'.
        yield (key if isinstance(key, str) else str(key)), r


def step_groupby(records, errors, extractor, reducer):
    groups = {}
    for key, r in _grouped(records, errors, extractor):
        try:
            out = reducer(key, groups.get(key), r)
            if _pending or type(out) is _Coroutine:
                out = _async.settle(out)
            groups[key] = out
        except Exception as e:
            _failed(errors, e)
    for key, value in groups.items():
        yield {"key": key, "value": value}


def step_batchgroupby(records, errors, extractor, reducer):
    groups = {}
    for key, r in _grouped(records, errors, extractor):
        groups.setdefault(key, []).append(r)
    for key, batch in groups.items():
        try:
            value = reducer(key, batch)
            if _pending or type(value) is _Coroutine:
                value = _async.settle(value, "coroutine are not allow on reduce")
        except Exception as e:
            _failed(errors, e)
            continue
        yield {"key": key, "value": value}


def step_limit(records, errors, length, start):
    return itertools.islice(records, start, start + length)


def step_collect(records, errors):
    # One shard: collecting to the initiator moves nothing.
    return records


def step_repartition(records, errors, extractor):
    # One shard: every record's shard is this one, but the extractor still runs (and may fail).
    for key, r in _grouped(records, errors, extractor):
        yield r


STEPS = {
    "map": step_map,
    "flatmap": step_flatmap,
    "foreach": step_foreach,
    "filter": step_filter,
    "accumulate": step_accumulate,
    "count": step_count,
    "sum": step_sum,
    "localgroupby": step_groupby,
    "groupby": step_groupby,
    "batchgroupby": step_batchgroupby,
    "limit": step_limit,
    "collect": step_collect,
    "repartition": step_repartition,
}


class _Timer:
    """Accumulates the time spent inside callbacks (ProfileExecutions=1)."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, f):
        if not callable(f):
            return f

        def timed(*args):
            start = time.perf_counter()
            try:
                return f(*args)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def wrap_iterator(self, iterator):
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            yield item

    def ms(self):
        return int(self.seconds * 1000)


class _SessionProfile:
    """The cProfile data of this session's profiled plans (ProfileExecutions 1), for
    RG.PYPROFILE: one profiler, on while any profiled plan runs (it covers every thread)."""

    profiler = None
    running = 0


def _profile_on():
    """Start (or keep) the session's profiler; False if another profiler (the script's own) is on."""
    import cProfile

    p = _SessionProfile
    if p.profiler is None:
        p.profiler = cProfile.Profile()
    if p.running == 0:
        try:
            p.profiler.enable()
        except ValueError:
            return False
    p.running += 1
    return True


def _profile_off():
    p = _SessionProfile
    p.running -= 1
    if p.running == 0:
        p.profiler.disable()


def profile_request(op, order):
    """RG.PYPROFILE: "stats" answers the pstats text of what was collected (None: nothing);
    "reset" forgets it."""
    import io
    import pstats

    p = _SessionProfile
    if op == "reset":
        if p.profiler is not None and p.running:
            import cProfile

            p.profiler.disable()
            p.profiler = cProfile.Profile()  # the plans still running go on into a fresh one
            p.profiler.enable()
        else:
            p.profiler = None
        return None
    if p.profiler is None:
        return None
    out = io.StringIO()
    stats = pstats.Stats(p.profiler, stream=out)  # this stops the profiler...
    if p.running:
        p.profiler.enable()  # ...for plans still running
    if not stats.stats:
        return None
    stats.sort_stats(order or "tottime")
    stats.print_stats()
    stats.print_callers()
    stats.print_callees()
    return out.getvalue()


def run_plan(reader, steps, profile=False):
    """Run a plan; returns (results, errors, step_ms) for the host. `reader()` gives the records
    (a list, for an event's records, is taken as it is: it cannot fail), `steps` is a list of
    (name, args); step_ms has the reader's time first, then each step's (all zero unless
    `profile`, which also runs the plan under the session's profiler). The unprofiled path makes
    no timers: a sync trigger runs this for every call."""
    if not (profile and _profile_on()):
        return _run_plan(reader, steps, profile)
    try:
        return _run_plan(reader, steps, profile)
    finally:
        _profile_off()


def _run_plan(reader, steps, profile):
    errors = []
    results = []
    timers = [_Timer() for _ in range(len(steps) + 1)] if profile else None
    try:
        if not profile and steps and steps[0][0] == "count" and type(reader) is KeysWalk:
            records, first = reader.counted(errors), 1  # the count step's output, computed by the host
        else:
            records, first = reader if type(reader) is list else _guarded_reader(reader, errors), 0
        if profile:
            records = timers[0].wrap_iterator(iter(records))
            for (name, args), timer in zip(steps, timers[1:]):
                records = STEPS[name](records, errors, *tuple(timer.wrap(a) for a in args))
        else:
            for name, args in steps[first:]:
                records = STEPS[name](records, errors, *args)
        results.extend(records)  # what came out before a failure is kept (extend keeps it)
    except _gearbox.forcestopped:
        return [], errors + ["Execution was aborted"], _step_ms(timers, steps)
    except _gearbox.error as e:
        errors.append(str(e))
    except Exception as e:
        errors.append(format_exception(e))
    return results, errors, _step_ms(timers, steps)


def _step_ms(timers, steps):
    return [t.ms() for t in timers] if timers else [0] * (len(steps) + 1)


def _guarded_reader(reader, errors):
    """A reader's own failure (bad stream id, a raising PythonReader) ends reading and is
    reported once in the errors list."""
    try:
        yield from reader()
    except _gearbox.forcestopped:
        raise
    except _gearbox.error as e:
        errors.append(str(e))
    except Exception as e:
        errors.append(format_exception(e))


# Where gearsFuture() may be created: the innermost of these frames on the stack decides (a
# reader's frame means "not in a step").
_async.STEP_CODES.update({
    _calls.__code__: True,
    step_accumulate.__code__: True,
    step_groupby.__code__: True,
    _extracted.__code__: False,
    step_batchgroupby.__code__: False,
    _guarded_reader.__code__: None,
})
