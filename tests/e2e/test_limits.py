"""Limits: ScriptTimeoutMS (obeyed and violated), big results, many scripts, MaxExecutions at the edge."""
import threading
import time

import pytest
import redis

from gb_helpers import pyexec, pyexec_error, run_ok, script, wait_until


# --- ScriptTimeoutMS --------------------------------------------------------------------------

def test_script_within_default_timeout_succeeds(r):
    assert pyexec(r, "import time\ntime.sleep(0.3)\nexecute('SET', 'done', '1')") == "OK"
    assert r.get("done") == "1"


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_script_within_short_timeout_succeeds(r):
    code = script("""
        total = 0
        for i in range(10000):
            total += i
        execute('SET', 'total', total)
    """)
    assert pyexec(r, code) == "OK"
    assert r.get("total") == str(sum(range(10000)))


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_busy_loop_at_top_level_times_out(server, r):
    c = server.client(socket_timeout=15)
    start = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command("RG.PYEXECUTE", "while True:\n    pass\n")
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"timeout error came after {elapsed:.1f}s"
    assert "time" in str(e.value).lower(), str(e.value)
    assert r.ping()


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_server_serves_after_script_timeout(r):
    with pytest.raises(redis.ResponseError):
        pyexec(r, "while True:\n    pass\n")
    assert r.ping()
    assert r.set("k", "v") and r.get("k") == "v"
    assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_timed_out_script_top_level_side_effects_stop(r):
    code = script("""
        i = 0
        while True:
            i += 1
            if i % 100000 == 0:
                execute('SET', 'progress', i)
    """)
    with pytest.raises(redis.ResponseError):
        pyexec(r, code)
    before = r.get("progress")
    time.sleep(0.5)
    assert r.get("progress") == before, "the timed-out script is still running"


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_other_clients_answered_while_script_loops(server, r):
    """During a looping script the server must answer other clients no later than the timeout."""
    looping = server.client(socket_timeout=15)
    t = threading.Thread(target=lambda: pytest.raises(redis.ResponseError, looping.execute_command,
                                                      "RG.PYEXECUTE", "while True:\n    pass\n"))
    t.start()
    time.sleep(0.05)
    start = time.monotonic()
    assert r.ping()
    assert time.monotonic() - start < 5
    t.join(15)
    assert not t.is_alive()


def test_script_timeout_set_at_runtime(server, r):
    assert r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "300")[0].startswith("OK")
    c = server.client(socket_timeout=15)
    start = time.monotonic()
    with pytest.raises(redis.ResponseError):
        c.execute_command("RG.PYEXECUTE", "while True:\n    pass\n")
    assert time.monotonic() - start < 5
    assert r.ping()


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_several_timeouts_in_a_row(r):
    for _ in range(3):
        with pytest.raises(redis.ResponseError):
            pyexec(r, "while True:\n    pass\n")
    assert pyexec(r, "x = 1") == "OK"


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_timeout_does_not_apply_to_run_steps(r):
    # the limit bounds top-level code; a run() step that takes longer than it is a normal execution
    code = "import time\nGB('ShardsIDReader').map(lambda x: time.sleep(0.6) or 'slow').run()"
    assert pyexec(r, code) == [["slow"], []]


# --- big results / many scripts ---------------------------------------------------------------

def test_100k_records_result(r):
    results = run_ok(r, "GB('PythonReader').run(lambda: (i for i in range(100000)))")
    assert len(results) == 100000
    assert results[0] == "0" and results[-1] == "99999"


def test_100k_records_count(r):
    assert run_ok(r, "GB('PythonReader').count().run(lambda: (i for i in range(100000)))") == ["100000"]


def test_large_single_result(r):
    results = run_ok(r, "GB('ShardsIDReader').map(lambda x: 'x' * (8 * 1024 * 1024)).run()")
    assert len(results) == 1 and len(results[0]) == 8 * 1024 * 1024


def test_10k_keys_through_keysreader(r):
    p = r.pipeline(transaction=False)
    for i in range(10000):
        p.set(f"key:{i}", i)
    p.execute()
    assert run_ok(r, "GB().map(lambda x: int(x['value'])).aggregate(0, lambda a, x: a + x, lambda a, x: a + x).run()") \
        == [str(sum(range(10000)))]


def test_many_scripts_in_a_row(r):
    for i in range(100):
        assert pyexec(r, f"GB('ShardsIDReader').map(lambda x: {i}).run()") == [[str(i)], []]
    wait_until(lambda: r.execute_command("RG.PYDUMPSESSIONS") == [], timeout=5, what="all sessions to be freed")


def test_many_unblocking_executions(r):
    eids = [pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING") for _ in range(50)]
    for eid in eids:
        assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]
    for eid in eids:
        assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert r.execute_command("RG.DUMPEXECUTIONS") == []


def test_concurrent_clients_running_scripts(server):
    errors = []

    def worker(n):
        c = server.client()
        try:
            for i in range(10):
                res = c.execute_command("RG.PYEXECUTE", f"GB('ShardsIDReader').map(lambda x: '{n}-{i}').run()")
                if res != [[f"{n}-{i}"], []]:
                    errors.append(res)
        except Exception as e:  # noqa: BLE001 - report any failure
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


@pytest.mark.gears_args("MaxExecutions", "1")
def test_max_executions_one(r):
    a = pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    r.execute_command("RG.GETRESULTSBLOCKING", a)
    b = pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    r.execute_command("RG.GETRESULTSBLOCKING", b)
    assert [e[1] for e in r.execute_command("RG.DUMPEXECUTIONS")] == [b]


def test_deep_recursion_is_an_error(r):
    err = pyexec_error(r, "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert "RecursionError" in err
    assert r.ping()

