"""Executions queued for a registration (created, not started), as RedisGears treats them: a
pause, a failed StreamReader batch (onFailedPolicy retry/abort) and an unregister abort them at
once (counted in numAborted, their entries kept for later), and an unregistered registration's
executions leave RG.DUMPEXECUTIONS. Also RG.CLEARREGISTRATIONSSTATS resetting the stream lag.
Every case runs in both modes."""
from events_helpers import register_one, unregister
from gb_helpers import dump_executions, pyexec, script, wait_until
from test_stream_registrations import add, data, seen

STREAMS = 12

SLOW_STREAMS = script("""
    import time
    def step(r):
        time.sleep(0.15)
        execute('RPUSH', 'seen', r['key'] + '=' + r['value']['n'])
    GB('StreamReader').foreach(step).register(prefix='q:*', batch=1, mode='async_local')
""")

FAILS_ONCE = script("""
    import time
    state = {'failed': False}
    def step(r):
        time.sleep(0.1)
        if r['key'] == 'q:0' and not state['failed']:
            state['failed'] = True
            raise Exception('boom')
        execute('RPUSH', 'seen', r['key'] + '=' + r['value']['n'])
    GB('StreamReader').foreach(step).register(prefix='q:*', batch=1, mode='async_local',
                                              onFailedPolicy='retry', onFailedRetryInterval=1)
""")

SLOW_KEYS = script("""
    import time
    def step(r):
        time.sleep(0.3)
    GB().foreach(step).register('k:*', mode='async_local')
""")


def every_entry():
    return sorted(f"q:{i}={i}" for i in range(STREAMS))


def accounted(d):
    return d["numAborted"] + d["numSuccess"] + d["numFailures"] == d["numTriggered"]


def test_a_pause_aborts_queued_batches_at_once_and_the_unpause_runs_their_entries(r):
    reg_id = register_one(r, SLOW_STREAMS)
    for i in range(STREAMS):
        add(r, f"q:{i}", i)
    wait_until(lambda: data(r, reg_id)["numSuccess"] > 0, what="a first batch")
    assert r.execute_command("RG.PAUSEREGISTRATIONS", reg_id) == "OK"
    d = data(r, reg_id)
    assert d["numAborted"] > 0, f"queued batches are aborted by the pause itself: {d}"
    assert "created" not in dump_executions(r).values(), "no queued execution is left"
    wait_until(lambda: accounted(data(r, reg_id)), what="the running batches to end")
    processed = len(seen(r))
    assert processed < STREAMS
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == "OK"
    wait_until(lambda: sorted(seen(r)) == every_entry(), timeout=20, what="every entry, each once")
    assert all(r.xlen(f"q:{i}") == 0 for i in range(STREAMS)), "every entry acknowledged and trimmed"


def test_a_failed_batch_aborts_the_queued_ones_and_the_retry_runs_everything(r):
    reg_id = register_one(r, FAILS_ONCE)
    for i in range(STREAMS):
        add(r, f"q:{i}", i)
    wait_until(lambda: data(r, reg_id)["lastError"], what="the failure")
    assert "boom" in data(r, reg_id)["lastError"]
    wait_until(lambda: data(r, reg_id)["numAborted"] > 0, timeout=5, what="queued batches aborted")
    wait_until(lambda: sorted(seen(r)) == every_entry(), timeout=20, what="every entry after the retry")
    d = wait_until(lambda: (lambda d: d if d["lastError"] is None and accounted(d) else None)(data(r, reg_id)),
                   what="the retry to clear lastError")
    assert d["status"] == "OK", d


def test_an_unregistered_registration_leaves_no_execution_behind(r):
    reg_id = register_one(r, SLOW_KEYS)
    for i in range(6):
        r.set(f"k:{i}", i)
    wait_until(lambda: "created" in dump_executions(r).values(), what="queued executions")
    unblocking = pyexec(r, "GB('KeysOnlyReader').run()", "UNBLOCKING")
    assert unregister(r, reg_id, "abortpending") == "OK"
    wait_until(lambda: list(dump_executions(r)) == [unblocking], timeout=5,
               what="only the UNBLOCKING run to stay listed")
    r.set("k:after", 1)
    assert list(dump_executions(r)) == [unblocking], "nothing fires any more"


def test_a_stream_registration_queued_batches_never_start_once_it_is_unregistered(r):
    reg_id = register_one(r, SLOW_STREAMS)
    for i in range(STREAMS):
        add(r, f"q:{i}", i)
    wait_until(lambda: data(r, reg_id)["numSuccess"] > 0, what="a first batch")
    assert unregister(r, reg_id) == "OK"
    wait_until(lambda: dump_executions(r) == {}, timeout=5, what="the executions to leave the list")
    processed = len(seen(r))
    assert processed < STREAMS, "queued batches did not run"
    assert sum(r.xlen(f"q:{i}") for i in range(STREAMS)) == STREAMS - processed, "their entries are kept"


def test_clearing_statistics_resets_the_estimated_lag(r):
    reg_id = register_one(r, script("""
        GB('StreamReader').foreach(lambda x: execute('RPUSH', 'seen', x['value']['n'])).register(
            prefix='lag:*', batch=5, duration=200)
    """))
    add(r, "lag:1", 1)
    wait_until(lambda: data(r, reg_id)["numSuccess"] == 1, what="the timed batch")
    assert data(r, reg_id)["lastEstimatedLagMS"] >= 150
    assert r.execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"
    d = data(r, reg_id)
    assert (d["numTriggered"], d["numSuccess"], d["lastEstimatedLagMS"]) == (0, 0, 0), d
    assert float(d["avgEstimatedLagMS"]) == 0, d
