"""Async records (spec §2.5 gearsFuture, `async def` callbacks, createFuture / setFutureResults /
setFutureException / runCoroutine, isAsyncAllow): a record waits for its coroutine or future while
the execution goes on with the others; the errors RedisGears gives for misuse; sync registrations
refuse (gearbox does not move them to the background); RG.ABORTEXECUTION stops an execution that
waits for a future nobody continues; run() inside an execution runs the nested plan and can be
awaited. wasm mode has no threads: coroutines run on the waiting execution, which lends the
instance to the session's other executions and commands while it waits (so one of them can
continue its future), and a future only a thread could continue is reported instead of hanging."""
import time

import pytest

from events_helpers import live_interpreters, register, trigger, trigger_error
from gb_helpers import execution_status, pyexec, pyexec_error, run, run_ok, script, wait_status, wait_until

PY3 = "GB('PythonReader')"
NUMBERS = "lambda: (n for n in [1, 2, 3])"


def test_async_def_map_filter_foreach_accumulate(r):
    results = run_ok(r, script(f"""
        import asyncio
        async def double(x):
            await asyncio.sleep(0.01)
            return x * 2
        async def even_only(x):
            return x % 4 == 0
        async def touch(x):
            execute('incr', 'touched')
        async def add(a, x):
            return (a or 0) + x
        {PY3}.map(double).filter(even_only).foreach(touch).accumulate(add).run({NUMBERS})
    """))
    assert results == ["4"]
    assert r.get("touched") == "1"


def test_async_groupby_reducer(r):
    results = run_ok(r, script(f"""
        async def count(k, a, x):
            return (a or 0) + 1
        {PY3}.groupby(lambda x: 'odd' if x % 2 else 'even', count).map(lambda g: (g['key'], g['value'])).run(lambda: (n for n in [1, 2, 3, 5]))
    """))
    assert sorted(results) == [str(("even", 1)), str(("odd", 3))]


def test_a_coroutines_error_fails_only_its_record(r):
    results, errors = run(r, script(f"""
        async def check(x):
            if x == 2:
                raise ValueError('bad record 2')
            return x
        {PY3}.map(check).run({NUMBERS})
    """))
    assert sorted(results) == ["1", "3"]
    assert errors == ["bad record 2"], "a coroutine's failure is its bare message, as in RedisGears"


def test_gears_future_continued_by_a_coroutine(r):
    results = run_ok(r, script(f"""
        import asyncio
        async def later(x):
            await asyncio.sleep(0.01)
            return x * 10
        def suspend(x):
            f = gearsFuture()
            runCoroutine(later(x), f)
            return f
        {PY3}.map(suspend).run({NUMBERS})
    """))
    assert sorted(results) == ["10", "20", "30"]


def continued_by_coroutines(pause=0):
    """Record 1's future is continued with a failure by a coroutine, the others with their value;
    the callback waits `pause` seconds before returning its future."""
    return script(f"""
        import time
        async def fail():
            raise Exception('no value')
        async def ok(x):
            return x
        def suspend(x):
            f = gearsFuture()
            runCoroutine(fail(), f) if x == 1 else runCoroutine(ok(x), f)
            time.sleep({pause})
            return f
        {PY3}.map(suspend).run({NUMBERS})
    """)


def test_gears_future_continue_failed_is_the_records_error(r):
    results, errors = run(r, continued_by_coroutines())
    assert sorted(results) == ["2", "3"]
    assert errors == ["no value"], "a future's failure is its bare message"


def test_create_future_and_set_results_or_exception(r):
    results, errors = run(r, script(f"""
        async def via_future(x):
            f = createFuture()
            if x == 3:
                setFutureException(f, 'three is refused')
            else:
                setFutureResults(f, x + 100)
            return await f
        {PY3}.map(via_future).run({NUMBERS})
    """))
    assert sorted(results) == ["101", "102"]
    assert errors == ["three is refused"]


def test_call_next_and_atomic_in_a_coroutine_fail_with_redisgears_texts(r):
    results, errors = run(r, script(f"""
        async def hook_less(x):
            return call_next()
        {PY3}.map(hook_less).run({NUMBERS})
    """))
    assert results == [] and errors == ["Can not get CommandHook ctx"] * 3
    results, errors = run(r, script(f"""
        import asyncio
        async def held(x):
            with atomic():
                return await asyncio.sleep(0.01)
        {PY3}.map(held).run({NUMBERS})
    """))
    assert results == [] and errors == ["await is not allow inside atomic block"] * 3


def test_run_coroutine_with_a_delay(r):
    results = run_ok(r, script(f"""
        import time
        async def stamp():
            return time.time()
        def suspend(x):
            f = gearsFuture()
            runCoroutine(stamp(), f, delay=0.2)
            return (time.time(), f)[1]
        def waited(t):
            return t - started[0]
        started = []
        def start():
            started.append(time.time())
            return 1
        {PY3}.map(suspend).map(waited).run(start)
    """))
    assert len(results) == 1 and float(results[0]) >= 0.19, results


def test_async_in_an_async_registration(r):
    register(r, script("""
        import asyncio
        async def slow_echo(x):
            await asyncio.sleep(0.01)
            return x[1]
        GB('CommandReader').map(slow_echo).register(trigger='aecho', mode='async_local')
    """))
    assert trigger(r, "aecho", "hello") == ["hello"]


def test_a_sync_registration_refuses_async_records(r):
    register(r, script("""
        async def co(x):
            return x
        def fut(x):
            return gearsFuture()
        GB('CommandReader').map(co).register(trigger='co', mode='sync')
        GB('CommandReader').map(fut).register(trigger='fut', mode='sync')
    """))
    assert "Creating async record is not allow" in trigger_error(r, "co")
    assert "Creating async record is not allow" in trigger_error(r, "fut")


def test_is_async_allow(r):
    register(r, "GB('CommandReader').map(lambda x: str(isAsyncAllow())).register(trigger='sync_q', mode='sync')")
    register(r, "GB('CommandReader').map(lambda x: str(isAsyncAllow())).register(trigger='async_q', mode='async_local')")
    assert trigger(r, "sync_q") == ["False"]
    assert trigger(r, "async_q") == ["True"]
    assert run_ok(r, "top = isAsyncAllow()\nGB('PythonReader').map(lambda x: (top, isAsyncAllow())).run(lambda: 1)") == [
        str((False, True))]


# --- misuse: RedisGears' errors ------------------------------------------------------------------

def test_gears_future_outside_a_step(r):
    assert "Future object can only be created inside certain execution steps" in pyexec_error(r, "gearsFuture()")
    results, errors = run(r, f"{PY3}.run(lambda: [gearsFuture()])")
    assert results == [] and "Future object can only be created inside certain execution steps" in errors[0]


@pytest.mark.parametrize("code,error", [
    (f"{PY3}.groupby(lambda x: gearsFuture(), lambda k, a, x: x).run({NUMBERS})", "Step does not support async"),
    (f"{PY3}.batchgroupby(lambda x: 'k', lambda k, xs: gearsFuture()).run({NUMBERS})", "Step does not support async"),
    ("async def key(x):\n    return 'k'\n" + f"{PY3}.groupby(key, lambda k, a, x: x).run({NUMBERS})",
     "coroutine are not allow on extractor"),
    ("async def red(k, xs):\n    return 1\n" + f"{PY3}.batchgroupby(lambda x: 'k', red).run({NUMBERS})",
     "coroutine are not allow on reduce"),
    ("def twice(x):\n    gearsFuture()\n    return gearsFuture()\n" + f"{PY3}.map(twice).run(lambda: 1)",
     "Can not create async record twice on the same step"),
    ("def early(x):\n    f = gearsFuture()\n    f.continueRun(x)\n    return f\n" + f"{PY3}.map(early).run(lambda: 1)",
     "Can not handle future untill it returned from the callback"),
])
def test_async_misuse_errors(r, code, error):
    results, errors = run(r, code)
    assert results == []
    assert errors and all(error in e for e in errors), errors


def test_a_callback_that_makes_a_future_but_returns_a_value_goes_on_with_the_value(r):
    results, errors = run(r, script(f"""
        kept = []
        def made_but_not_returned(x):
            kept.append(gearsFuture())
            return x * 10
        def continue_it_later(x):
            try:
                kept[0].continueRun('late')
            except Exception as e:
                return '%s %s' % (x, e)
        {PY3}.map(made_but_not_returned).map(continue_it_later).run({NUMBERS})
    """))
    refused = "Can not handle future untill it returned from the callback"
    assert errors == [] and sorted(results) == [f"{n} {refused}" for n in (10, 20, 30)], (results, errors)


def test_continue_twice(r):
    results = run_ok(r, script(f"""
        async def cont(f, x):
            f.continueRun(x)
            try:
                f.continueRun(x)
            except Exception as e:
                execute('set', 'second_continue', str(e))
        def suspend(x):
            f = gearsFuture()
            runCoroutine(cont(f, x))
            return f
        {PY3}.map(suspend).run(lambda: 7)
    """))
    assert results == ["7"]
    # The coroutine goes on after the first continueRun released the record.
    wait_until(lambda: r.get("second_continue") is not None, what="the second continueRun")
    assert r.get("second_continue") == "Can not continue with the same future twice"


def test_a_future_only_a_thread_can_continue(r, mode):
    code = script(f"""
        import threading, time
        def suspend(x):
            f = gearsFuture()
            def later():
                time.sleep(0.05)
                f.continueRun(x + 1)
            threading.Thread(target=later).start()
            return f
        {PY3}.map(suspend).run({NUMBERS})
    """)
    results, errors = run(r, code)
    if mode == "native":
        assert sorted(results) == ["2", "3", "4"] and errors == []
    else:
        assert results == [] and len(errors) == 3, "wasm mode has no threads"


WAIT_AND_RELEASE = script("""
    blocked = []
    def wait(x):
        f = gearsFuture()
        blocked.append(f)
        return f
    GB('CommandReader').map(lambda x: x[1]).map(wait).register(trigger='WaitForIt', mode='async_local')
    def release(x):
        for f in blocked:
            f.continueRun('released by ' + x['key'])
        blocked.clear()
    GB().foreach(release).register(prefix='go*', mode='async_local', readValue=False)
""")


def test_a_future_continued_by_another_execution(server, r):
    """RedisGears' main async pattern: a command's record waits for a future, and an execution
    another event starts (here a write) continues it."""
    import threading

    assert pyexec(r, WAIT_AND_RELEASE) == "OK"
    replies = {}
    waiters = []
    for name in ("a", "b"):
        conn = server.client()

        def call(conn=conn, name=name):
            replies[name] = conn.execute_command("RG.TRIGGER", "WaitForIt", name)

        waiters.append(threading.Thread(target=call))
        waiters[-1].start()
    time.sleep(0.3)
    assert not replies, "the records wait for their futures"
    assert r.ping()
    r.set("go1", "x")
    for t in waiters:
        t.join(10)
    assert replies == {"a": ["released by go1"], "b": ["released by go1"]}, replies
    r.set("canary", "1")
    assert r.get("canary") == "1"


def test_a_future_nobody_can_continue_fails_its_record(r):
    # Returned and held by nothing else: as in RedisGears (a future freed without a continue),
    # the record fails instead of waiting forever.
    results, errors = run(r, script(f"""
        def forever(x):
            return gearsFuture()
        {PY3}.map(forever).run(lambda: 1)
    """))
    assert results == [] and "Async record did not called continue" in errors[0], (results, errors)


def test_abort_an_execution_waiting_for_a_future(r):
    # The future is kept (so something could still continue it): the record waits until aborted.
    code = script(f"""
        kept = []
        def forever(x):
            f = gearsFuture()
            kept.append(f)
            return f
        {PY3}.map(forever).run(lambda: 1)
    """)
    eid = pyexec(r, code, "UNBLOCKING")
    time.sleep(0.3)
    assert execution_status(r, eid) == "running"
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    wait_status(r, eid, "done")  # a running execution that was aborted ends as done, as in RedisGears
    assert r.execute_command("RG.GETRESULTS", eid) == [[], ["Execution was aborted"]]
    assert run_ok(r, f"{PY3}.map(lambda x: x).run(lambda: 5)") == ["5"], "the session still works"


def test_a_session_that_used_its_asyncio_loop_still_ends(r):
    for _ in range(3):
        assert run_ok(r, script(f"""
            import asyncio
            async def later(x):
                await asyncio.sleep(0.01)
                return x
            {PY3}.map(later).run({NUMBERS})
        """)) != []
    wait_until(lambda: live_interpreters(r) == 0, what="the sessions' interpreters (and loop threads) to end")


def test_a_nested_run_is_awaited_for_its_results_and_errors(r):
    results = run_ok(r, script(f"""
        async def nested(x):
            res = await GB('PythonReader').map(lambda y: y * x).run(lambda: (n for n in [1, 2]))
            return sorted(res[0]), res[1]
        {PY3}.map(nested).run({NUMBERS})
    """))
    assert sorted(results) == sorted(str((sorted(str(v * x) for v in [1, 2]), [])) for x in [1, 2, 3])


def test_a_nested_run_reports_its_errors_and_runs_in_a_plain_step_too(r):
    results = run_ok(r, script(f"""
        def fails(y):
            raise Exception('nested failure')
        def nested(x):
            res = GB('PythonReader').map(fails).run(lambda: 1)
            return res.value[0], len(res.value[1]), 'nested failure' in res.value[1][0]
        {PY3}.map(nested).run(lambda: 1)
    """))
    assert results == [str(([], 1, True))]


def test_a_nested_run_in_a_registration(r):
    register(r, script("""
        async def count_keys(x):
            res = await GB('KeysOnlyReader').count().run(x[1] + '*')
            return res[0][0] if res[0] else '0'
        GB('CommandReader').map(count_keys).register(trigger='nkeys', mode='async_local')
    """))
    r.mset({"nk:1": 1, "nk:2": 2, "other": 3})
    assert trigger(r, "nkeys", "nk:") == ["2"]


def test_a_future_continued_before_its_callback_returned_it_is_not_lost(r):
    # The coroutine continues the future on the session's loop while the callback still runs
    # (the callback sleeps before returning it): the record waits for the return, then finishes.
    # Before the fix this raced and left the execution running forever (seen under load).
    results, errors = run(r, continued_by_coroutines(pause=0.2))
    assert sorted(results) == ["2", "3"]
    assert errors == ["no value"], "a future's failure is its bare message"


def test_a_future_dropped_by_its_callback_does_not_block_the_loop(r):
    # The callback made a future, had a coroutine continue it, and failed: the coroutine's
    # continue is refused instead of waiting for a return that never comes, so the execution
    # ends and a later one runs its coroutines.
    results, errors = run(r, script(f"""
        async def later(f):
            f.continueRun('late')
        def drop(x):
            f = gearsFuture()
            runCoroutine(later(f))
            raise Exception('callback failed')
        {PY3}.map(drop).run({NUMBERS})
    """))
    assert results == [] and len(errors) == 3, (results, errors)
    results, errors = run(r, script(f"""
        async def fine(x):
            return x
        def suspend(x):
            f = gearsFuture()
            runCoroutine(fine(x), f)
            return f
        {PY3}.map(suspend).run({NUMBERS})
    """))
    assert sorted(results) == ["1", "2", "3"] and errors == []
