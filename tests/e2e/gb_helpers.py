"""Small helpers shared by the end-to-end tests (no fixtures here: see conftest.py)."""
import ast
import re
import textwrap
import time

import redis

EID_RE = re.compile(r"^0{40}-\d+$")
SHARD_ID = "0" * 40
MULTI_LUA_ERR = "Can not run gears inside a multi exec, lua, or when blocking is not allowed"


def script(text):
    """Dedent a triple-quoted script so tests can indent it naturally."""
    return textwrap.dedent(text).strip("\n") + "\n"


def pyexec(r, code, *args):
    """RG.PYEXECUTE <code> [args...]; returns the raw reply (raises on an error reply)."""
    return r.execute_command("RG.PYEXECUTE", code, *args)


def run(r, code, *args):
    """RG.PYEXECUTE for a script that calls run(): asserts the [[results], [errors]] shape."""
    reply = pyexec(r, code, *args)
    assert isinstance(reply, list) and len(reply) == 2, f"expected [[results], [errors]], got {reply!r}"
    results, errors = reply
    assert isinstance(results, list) and isinstance(errors, list), reply
    return results, errors


def run_ok(r, code, *args):
    """Like run() but also asserts that the errors list is empty; returns the results."""
    results, errors = run(r, code, *args)
    assert errors == [], f"unexpected step errors: {errors!r}"
    return results


def pyexec_error(r, code, *args):
    """RG.PYEXECUTE that must reply with an error; returns the error text."""
    try:
        reply = pyexec(r, code, *args)
    except redis.ResponseError as e:
        return str(e)
    raise AssertionError(f"expected an error reply, got {reply!r}")


def literal(values):
    """Parse str(record) results (dicts, tuples, numbers) with ast.literal_eval."""
    return [ast.literal_eval(v) for v in values]


def key_value_map(results):
    """Results shaped "{'key': k, 'value': v}" -> {k: v}."""
    out = {}
    for rec in literal(results):
        assert set(rec) == {"key", "value"}, rec
        out[rec["key"]] = rec["value"]
    return out


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; returns it, or fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def execution_plan(r, eid):
    """The execution_plan array of RG.GETEXECUTION <eid> (stand-alone: one shard entry)."""
    res = r.execute_command("RG.GETEXECUTION", eid)
    return res[0][3]


def execution_status(r, eid):
    return execution_plan(r, eid)[1]


def wait_status(r, eid, statuses, timeout=10.0):
    if isinstance(statuses, str):
        statuses = (statuses,)
    return wait_until(lambda: execution_status(r, eid) in statuses and execution_status(r, eid),
                      timeout=timeout, what=f"execution {eid} to reach {statuses}")


def dump_executions(r):
    """RG.DUMPEXECUTIONS as {eid: status}."""
    out = {}
    for entry in r.execute_command("RG.DUMPEXECUTIONS"):
        assert entry[0] == "executionId" and entry[2] == "status" and entry[4] == "registered", entry
        out[entry[1]] = entry[3]
    return out


def is_error(x):
    return isinstance(x, redis.ResponseError)


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# A step that waits (bounded) until the key 'gate' exists, so a test can observe a running execution.
GATED_RUN = script("""
    import time
    def wait_gate(x):
        deadline = time.time() + 30
        while execute('GET', 'gate') is None and time.time() < deadline:
            time.sleep(0.01)
        return x
    GB('ShardsIDReader').map(wait_gate).run()
""")

# A step that never ends on its own: a pure-Python busy loop (after announcing it has started).
BUSY_LOOP_RUN = script("""
    def spin(x):
        execute('SET', 'spinning', '1')
        while True:
            pass
    GB('ShardsIDReader').map(spin).run()
""")
