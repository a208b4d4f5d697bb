"""StreamReader registrations (spec §2.3/§2.4): batches through the consumer group, trimming,
failure policies (continue / abort / retry), RG.PAUSEREGISTRATIONS / UNPAUSEREGISTRATIONS, the
backlog already in a stream when the registration is made, unacknowledged entries processed after
a reload, the estimated lag, and the 26-element RegistrationData with `status`. Every case runs in both modes."""
import time

import pytest
import redis

from events_helpers import debug_server, register, register_one, unregister
from gb_helpers import script, wait_until

RECORDER = script("""
    GB('StreamReader').foreach(lambda r: execute('RPUSH', 'seen', r['key'] + '=' + r['value']['n'])).register(
        prefix='s:*', {options})
""")


def recorder(**options):
    return RECORDER.replace("{options}", ", ".join(f"{k}={v!r}" for k, v in options.items()))


def add(r, key, *ns):
    for n in ns:
        r.xadd(key, {"n": str(n)})


def seen(r):
    return r.lrange("seen", 0, -1)


def wait_seen(r, expected, timeout=10.0):
    wait_until(lambda: seen(r) == expected, timeout=timeout, what=f"the stream records {expected}")


def data(r, reg_id):
    """RegistrationData of a StreamReader registration as a dict (26 elements, status last)."""
    entry = next(e for e in r.execute_command("RG.DUMPREGISTRATIONS") if e[1] == reg_id)
    assert len(entry) == 12 and entry[3] == "StreamReader", entry
    d = entry[7]
    assert len(d) == 26, d
    return dict(zip(d[0::2], d[1::2]))


def test_batches_trim_and_backlog(r):
    add(r, "s:old", 0)  # already there: processed when the registration is made
    reg_id = register_one(r, recorder(batch=2))
    wait_seen(r, ["s:old=0"])
    add(r, "s:1", 1)
    assert seen(r) == ["s:old=0"], "a batch of 2 waits for its second entry"
    add(r, "s:1", 2)
    wait_seen(r, ["s:old=0", "s:1=1", "s:1=2"])
    # Trimmed after the batch's steps ran, so possibly a moment after the records are seen.
    wait_until(lambda: r.xlen("s:1") == 0, what="processed entries to be trimmed")
    add(r, "other", 9)
    assert r.xlen("other") == 1
    d = data(r, reg_id)
    assert d["status"] == "OK" and d["mode"] == "async"
    assert d["args"] == ["batchSize", 2, "durationMS", 0, "stream", "s:*", "trimStream", 1,
                         "onFailedPolicy", "continue", "retryInterval", 1]


def test_sync_mode_and_no_trim(r):
    register(r, recorder(mode="sync", trimStream=False))
    add(r, "s:a", 1)
    assert seen(r) == ["s:a=1"], "sync: processed inside XADD"
    assert r.xlen("s:a") == 1
    assert r.xpending("s:a", "__gears_consumer_group__")["pending"] == 0, "acknowledged"


def test_duration_flushes_a_partial_batch(r):
    register(r, recorder(batch=100, duration=200))
    add(r, "s:d", 1, 2)
    wait_seen(r, ["s:d=1", "s:d=2"], timeout=5)


def test_abort_policy_stops_the_registration(r):
    reg_id = register_one(r, script("""
        GB('StreamReader').foreach(lambda r: 1 / 0).register(prefix='f', onFailedPolicy='abort')
    """))
    r.xadd("f", {"n": "1"})
    wait_until(lambda: data(r, reg_id)["status"] == "ABORTED", what="the registration to abort")
    assert data(r, reg_id)["numFailures"] == 1
    assert r.xlen("f") == 1, "a failed batch is neither acknowledged nor trimmed"


def test_retry_policy_retries_until_it_succeeds(r):
    reg_id = register_one(r, script("""
        def flaky(rec):
            if execute('INCR', 'attempts') < 2:
                raise Exception('not yet')
            execute('RPUSH', 'seen', rec['value']['n'])
        GB('StreamReader').foreach(flaky).register(prefix='rt', onFailedPolicy='retry', onFailedRetryInterval=1)
    """))
    r.xadd("rt", {"n": "7"})
    wait_until(lambda: seen(r) == ["7"], timeout=10, what="the retried batch")
    assert r.get("attempts") == "2"
    assert data(r, reg_id)["status"] == "OK"


def test_pause_and_unpause(r):
    reg_id = register_one(r, recorder())
    assert r.execute_command("RG.PAUSEREGISTRATIONS", reg_id) == "OK"
    assert data(r, reg_id)["status"] == "PAUSED"
    add(r, "s:p", 1)
    assert seen(r) == []
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == "OK"
    wait_seen(r, ["s:p=1"])
    assert data(r, reg_id)["status"] == "OK"


def test_bad_arguments(r):
    for options, text in [({"onFailedPolicy": "explode"}, "onFailedPolicy must be Continue/Abort/Retry"),
                          ({"trimStream": 1}, "pyTrimmStream argument must be a boolean"),
                          ({"batch": "x"}, "batch argument must be a number"),
                          ({"mode": "sync", "onFailedPolicy": "retry"}, "sync mode only supports")]:
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command("RG.PYEXECUTE", recorder(**options))
        assert text in str(e.value)
    assert r.execute_command("RG.DUMPREGISTRATIONS") == []


def test_unacknowledged_entries_are_processed_after_a_reload(gears):
    r = debug_server(gears).client()
    reg_id = register_one(r, recorder())
    assert r.execute_command("RG.PAUSEREGISTRATIONS", reg_id) == "OK"
    add(r, "s:r", 1, 2)
    assert r.execute_command("DEBUG", "RELOAD") == "OK"
    wait_seen(r, ["s:r=1", "s:r=2"])
    add(r, "s:r", 3)
    wait_seen(r, ["s:r=1", "s:r=2", "s:r=3"])
    wait_until(lambda: data(r, reg_id)["numSuccess"] == 2, what="two successful batches")


def test_unregistered_stream_registration_stops(r):
    reg_id = register_one(r, recorder())
    add(r, "s:u", 1)
    wait_seen(r, ["s:u=1"])
    wait_until(lambda: r.xlen("s:u") == 0, what="the batch to be trimmed (after its steps ran)")
    assert unregister(r, reg_id) == "OK"
    add(r, "s:u", 2)
    assert r.xlen("s:u") == 1
    assert seen(r) == ["s:u=1"]


def test_estimated_lag_runs_from_the_first_entry_of_a_batch_to_its_end(r):
    reg_id = register_one(r, script("""
        import time
        def slow(rec):
            time.sleep(0.2)
            execute('RPUSH', 'seen', rec['value']['n'])
        GB('StreamReader').foreach(slow).register(prefix='lag:*', batch=2)
    """))
    assert data(r, reg_id)["lastEstimatedLagMS"] == 0
    add(r, "lag:1", 1)
    time.sleep(0.1)
    add(r, "lag:1", 2)
    wait_until(lambda: data(r, reg_id)["numSuccess"] == 1, what="the batch to finish")
    d = data(r, reg_id)
    # The batch's first entry waited ~0.1 s for the second, then two records took ~0.2 s each.
    assert 450 <= d["lastEstimatedLagMS"] < 5000, d
    assert float(d["avgEstimatedLagMS"]) == pytest.approx(d["lastEstimatedLagMS"], abs=1)


def test_a_pipelined_backlog_drains_batch_by_batch(r):
    """100 XADDs sent at once, while the first batch runs: every entry is processed, in order,
    one batch per entry (batch=1), with no later XADD needed to push the rest through."""
    reg_id = register_one(r, recorder())
    pipe = r.pipeline(transaction=False)
    for n in range(100):
        pipe.xadd("s:burst", {"n": str(n)})
    pipe.execute()
    wait_until(lambda: len(seen(r)) == 100, timeout=30, what="all 100 entries")
    assert seen(r) == [f"s:burst={n}" for n in range(100)]
    wait_until(lambda: data(r, reg_id)["numSuccess"] >= 100, what="the batches to be counted")
    assert r.xlen("s:burst") == 0


def test_flat_error_pause_pauses_the_registration_and_its_batch_runs_after_the_unpause(r):
    reg_id = register_one(r, script("""
        def step(x):
            if execute('GET', 'paused') == 'yes':
                flat_error('PAUSE')
            execute('INCR', 'counter')
        GB('StreamReader').foreach(step).register(prefix='p:*', mode='sync')
    """))
    add(r, "p:x", 1)
    assert r.get("counter") == "1"
    r.set("paused", "yes")
    add(r, "p:x", 2)
    assert r.get("counter") == "1"
    assert data(r, reg_id)["status"] == "PAUSED"
    add(r, "p:x", 3)
    assert r.get("counter") == "1", "paused: nothing runs"
    r.set("paused", "no")
    assert r.execute_command("RG.UNPAUSEREGISTRATIONS", reg_id) == "OK"
    wait_until(lambda: r.get("counter") == "3", what="the paused batch and the next entry")
    wait_until(lambda: r.xlen("p:x") == 0, what="everything acknowledged and trimmed")
