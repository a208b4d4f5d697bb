"""The async records of one step wait apart (issue 17 item 7), both modes: a map/filter/foreach/
flatmap callback that returns a gearsFuture does not hold back the next records, so one call that
continues every waiting future finishes the execution (RedisGears' pattern in test_async.py's
testAsyncWithRepartition2). Records that were not async come first, each async one when its
future is continued; a failed future fails only its record; one nobody holds fails at once."""
import threading

from events_helpers import register, trigger
from gb_helpers import script, wait_until

BLOCKING = script("""
    waiting = []
    def park(x):
        f = gearsFuture()
        waiting.append((f, x))
        return f
    def release(x):
        n = 0
        while waiting:
            f, v = waiting.pop()
            if v == '13':
                f.continueFailed('unlucky ' + v)
            else:
                f.continueRun(v)
            n += 1
        return n
    def odd_now_even_later(x):
        return park(x) if int(x) % 2 == 0 else x
    GB('CommandReader').flatmap(lambda x: [str(i) for i in range(20)]).map(odd_now_even_later).register(trigger='block', mode='async_local')
    GB('CommandReader').map(release).register(trigger='release', mode='async_local')
    GB('CommandReader').map(lambda x: len(waiting)).register(trigger='parked', mode='async_local')
""")


def test_one_continue_call_releases_every_waiting_record(r, server):
    register(r, BLOCKING)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("reply", server.client().execute_command("RG.TRIGGER", "block")))
    t.start()
    # All ten even records wait at once: the step did not stop at the first one.
    wait_until(lambda: trigger(r, "parked") == ["10"], timeout=10, what="all ten futures to be waiting")
    assert trigger(r, "release") == ["10"]
    t.join(timeout=20)
    assert not t.is_alive(), "the execution still waits after one release"
    results = out["reply"]
    assert sorted(results[:10], key=int) == [str(i) for i in range(1, 20, 2)]  # the odd ones, first
    assert sorted(results[10:], key=int) == [str(i) for i in range(0, 20, 2)]  # then each even one


def test_a_failed_future_fails_only_its_record(r, server):
    register(r, BLOCKING.replace("range(20)", "range(12, 16)").replace("int(x) % 2 == 0", "True"))
    out = {}

    def block():
        try:
            out["reply"] = server.client().execute_command("RG.TRIGGER", "block")
        except Exception as e:  # RG.TRIGGER answers an execution's first error as an error
            out["reply"] = e

    t = threading.Thread(target=block)
    t.start()
    wait_until(lambda: trigger(r, "parked") == ["4"], timeout=10, what="four futures to be waiting")
    assert trigger(r, "release") == ["4"]
    t.join(timeout=20)
    assert not t.is_alive(), "the execution still waits after one release"
    assert "unlucky 13" in str(out["reply"])
    # The others went on: the execution kept three results beside its one error.
    outcomes = [r.execute_command("RG.GETRESULTS", e[1]) for e in r.execute_command("RG.DUMPEXECUTIONS")]
    failed = [o for o in outcomes if any("unlucky 13" in str(err) for err in o[1])]
    assert len(failed) == 1 and sorted(failed[0][0], key=int) == ["12", "14", "15"], outcomes


def test_futures_nobody_holds_fail_their_records_and_the_rest_go_on(r):
    code = script("""
        def maybe(x):
            if x % 3 == 0:
                return gearsFuture()
            return x
        def numbers():
            yield from range(9)
        GB('PythonReader').map(maybe).run(numbers)
    """)
    results, errors = r.execute_command("RG.PYEXECUTE", code)
    assert sorted(int(x) for x in results) == [1, 2, 4, 5, 7, 8]
    assert len(errors) == 3 and all("Async record did not called continue" in e for e in errors)
