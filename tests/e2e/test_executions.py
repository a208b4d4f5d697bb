"""Execution management: RG.DUMPEXECUTIONS, GETEXECUTION, GETRESULTS(BLOCKING), DROPEXECUTION,
ABORTEXECUTION, MaxExecutions, INFO rg, RG.PYSTATS, RG.PYDUMPSESSIONS (spec §1.1, §1.3)."""
import threading
import time

import pytest
import redis

from gb_helpers import (BUSY_LOOP_RUN, EID_RE, GATED_RUN, SHARD_ID, dump_executions, execution_plan,
                        execution_status, pyexec, wait_status, wait_until)

STEP_TYPES = {"none", "map", "filter", "reader", "group", "extractkey", "repartition", "reduce", "collect",
              "foreach", "flatmap", "limit", "accumulate", "accumulatebykey"}


def start_unblocking(r, code="GB('ShardsIDReader').run()", *args):
    eid = pyexec(r, code, "UNBLOCKING", *args)
    assert EID_RE.match(eid), eid
    return eid


def finished(r, code="GB('ShardsIDReader').run()"):
    eid = start_unblocking(r, code)
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    return eid


def wait_started(r):
    wait_until(lambda: r.get("spinning") == "1", timeout=10, what="the busy step to start")


# --- DUMPEXECUTIONS ---------------------------------------------------------------------------

def test_dumpexecutions_empty(r):
    assert r.execute_command("RG.DUMPEXECUTIONS") == []


def test_dumpexecutions_entry_shape(r):
    eid = finished(r)
    assert r.execute_command("RG.DUMPEXECUTIONS") == [["executionId", eid, "status", "done", "registered", 0]]


def test_dumpexecutions_shows_running(r):
    eid = start_unblocking(r, GATED_RUN)
    assert dump_executions(r)[eid] in ("created", "running")
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert dump_executions(r)[eid] == "done"


# --- GETRESULTS / GETRESULTSBLOCKING ----------------------------------------------------------

def test_getresults_done(r):
    r.set("a", "1")
    eid = finished(r, "GB().map(lambda x: x['key']).run()")
    assert r.execute_command("RG.GETRESULTS", eid) == [["a"], []]


def test_getresults_includes_errors(r):
    eid = finished(r, "GB('ShardsIDReader').map(lambda x: notexists).run()")
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    assert results == [] and len(errors) == 1 and "notexists" in errors[0]


def test_getresults_unknown_id(r):
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):
        r.execute_command("RG.GETRESULTS", "0000000000000000000000000000000000000000-999")


def test_getresults_while_running(r):
    eid = start_unblocking(r, GATED_RUN)
    with pytest.raises(redis.ResponseError, match="execution is still running"):
        r.execute_command("RG.GETRESULTS", eid)
    r.set("gate", "1")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["1"], []]


def test_getresultsblocking_waits_for_completion(server, r):
    eid = start_unblocking(r, GATED_RUN)
    waiter = server.client()
    box = {}
    t = threading.Thread(target=lambda: box.update(res=waiter.execute_command("RG.GETRESULTSBLOCKING", eid)))
    t.start()
    t.join(0.5)
    assert t.is_alive(), "GETRESULTSBLOCKING returned before the execution finished"
    assert r.ping()  # the server is not blocked by the waiting client
    r.set("gate", "1")
    t.join(20)
    assert not t.is_alive()
    assert box["res"] == [["1"], []]


def test_getresultsblocking_unknown_id(r):
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):
        r.execute_command("RG.GETRESULTSBLOCKING", "nope")


def test_getresultsblocking_wrong_arity(r):
    with pytest.raises(redis.ResponseError):
        r.execute_command("RG.GETRESULTSBLOCKING")
    with pytest.raises(redis.ResponseError):
        r.execute_command("RG.GETRESULTSBLOCKING", "a", "b")


def test_blocking_run_does_not_block_other_clients(server, r):
    other = server.client()
    box = {}
    t = threading.Thread(target=lambda: box.update(res=other.execute_command("RG.PYEXECUTE", GATED_RUN)))
    t.start()
    t.join(0.5)
    assert t.is_alive(), "blocking RG.PYEXECUTE replied before its execution finished"
    assert r.ping()
    assert r.set("unrelated", "1")
    r.set("gate", "1")
    t.join(20)
    assert not t.is_alive()
    assert box["res"] == [["1"], []]
    assert r.execute_command("RG.DUMPEXECUTIONS") == []


# --- GETEXECUTION -----------------------------------------------------------------------------

def test_getexecution_shape(r):
    for k in ("k1", "k2", "k3"):
        r.set(k, "v")
    eid = finished(r, "GB().map(lambda x: x['value']).run()")
    res = r.execute_command("RG.GETEXECUTION", eid)
    assert len(res) == 1
    shard = res[0]
    assert shard[0] == "shard_id" and shard[1] == SHARD_ID and shard[2] == "execution_plan"
    plan = shard[3]
    assert plan[0::2][:8] == ["status", "shards_received", "shards_completed", "results", "errors",
                              "total_duration", "read_duration", "steps"]
    assert plan[1] == "done"
    assert plan[7] == 3
    assert plan[9] == []
    assert all(isinstance(plan[i], int) for i in (3, 5, 11, 13))
    steps = plan[15]
    assert len(steps) >= 1
    for step in steps:
        assert len(step) == 8 and step[0::2] == ["type", "duration", "name", "arg"], step
        assert step[1] in STEP_TYPES, step
        assert step[3] == 0  # ProfileExecutions is 0 by default
    assert "map" in [s[1] for s in steps]


def test_getexecution_errors_listed(r):
    eid = finished(r, "GB('ShardsIDReader').map(lambda x: notexists(x)).run()")
    plan = execution_plan(r, eid)
    assert plan[1] == "done"
    assert len(plan[9]) == 1 and "name 'notexists' is not defined" in plan[9][0]


def test_getexecution_running_has_no_result_count(r):
    eid = start_unblocking(r, GATED_RUN)
    plan = execution_plan(r, eid)
    assert plan[1] in ("created", "running")
    assert plan[7] == -1
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert execution_plan(r, eid)[7] == 1


def test_getexecution_shard_subcommand_case_insensitive(r):
    eid = finished(r)
    assert len(r.execute_command("RG.GETEXECUTION", eid, "sHARD")) == 1


def test_getexecution_cluster_subcommand_standalone(r):
    eid = finished(r)
    with pytest.raises(redis.ResponseError, match="no cluster detected"):
        r.execute_command("RG.GETEXECUTION", eid, "CLUSTER")


def test_getexecution_unknown_subcommand(r):
    eid = finished(r)
    with pytest.raises(redis.ResponseError, match="unknown subcommand"):
        r.execute_command("RG.GETEXECUTION", eid, "FOO")


def test_getexecution_unknown_id(r):
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):
        r.execute_command("RG.GETEXECUTION", "NoSuchExecutionId")


@pytest.mark.gears_args("ProfileExecutions", "1")
def test_getexecution_step_durations_with_profiling(r):
    eid = finished(r, "GB('ShardsIDReader').map(lambda x: __import__('time').sleep(0.05) or x).run()")
    plan = execution_plan(r, eid)
    assert plan[9] == []
    assert sum(s[3] for s in plan[15]) > 0  # a 50 ms step is visible when profiling is on


# --- DROPEXECUTION ----------------------------------------------------------------------------

def test_dropexecution(r):
    eid = finished(r)
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert eid not in dump_executions(r)
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):
        r.execute_command("RG.GETRESULTS", eid)


def test_dropexecution_unknown(r):
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):
        r.execute_command("RG.DROPEXECUTION", "nope")


def test_dropexecution_running_refused(r):
    eid = start_unblocking(r, GATED_RUN)
    with pytest.raises(redis.ResponseError, match="can not drop a not yet finished execution, abort it first."):
        r.execute_command("RG.DROPEXECUTION", eid)
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"


# --- ABORTEXECUTION ---------------------------------------------------------------------------

def test_abort_stops_busy_python_loop(r):
    eid = start_unblocking(r, BUSY_LOOP_RUN)
    wait_started(r)
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    wait_status(r, eid, "done", timeout=10)
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    assert results == [] and len(errors) == 1
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"


def test_abort_answers_once_the_execution_stopped_so_drop_works_at_once(r, server):
    """RedisGears' pattern: ABORT then DROP with nothing in between."""
    eid = start_unblocking(r, BUSY_LOOP_RUN)
    wait_started(r)
    other = server.client()
    t0 = time.monotonic()
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    assert time.monotonic() - t0 < 2.5
    assert execution_status(r, eid) == "done", "stopped before the answer"
    assert len(execution_plan(r, eid)[9]) == 1
    assert r.execute_command("RG.DROPEXECUTION", eid) == "OK"
    assert other.ping()


def test_abort_of_an_execution_stuck_in_c_answers_after_a_bounded_wait(r, server, mode):
    if mode == "wasm":
        pytest.skip("wasm mode: the guest is stopped by epoch wherever it is (no call it cannot leave)")
    eid = start_unblocking(r, """
import _thread
def stuck(x):
    execute('SET', 'spinning', '1')
    lock = _thread.allocate_lock()
    lock.acquire()
    lock.acquire()  # never given back: one C call that no exception reaches
GB('ShardsIDReader').foreach(stuck).run()
""")
    wait_started(r)
    other = server.client()
    t0 = time.monotonic()
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    took = time.monotonic() - t0
    assert 1.5 < took < 4, f"answered after the bounded wait, not never: {took:.2f}s"
    t1 = time.monotonic()
    assert other.ping() and time.monotonic() - t1 < 1
    assert execution_status(r, eid) == "running"
    with pytest.raises(redis.ResponseError, match="can not drop a not yet finished execution"):
        r.execute_command("RG.DROPEXECUTION", eid)


def test_abort_then_server_keeps_running_scripts(r):
    eid = start_unblocking(r, BUSY_LOOP_RUN)
    wait_started(r)
    r.execute_command("RG.ABORTEXECUTION", eid)
    wait_status(r, eid, "done", timeout=10)
    assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]


def test_abort_done_execution_is_ok_and_stays_done(r):
    eid = finished(r)
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    assert execution_status(r, eid) == "done"
    assert r.execute_command("RG.GETRESULTS", eid) == [["1"], []]


def test_abort_unknown_execution(r):
    with pytest.raises(redis.ResponseError, match="execution does not exist"):
        r.execute_command("RG.ABORTEXECUTION", "0000000000000000000000000000000000000000-12345")


@pytest.mark.gears_args("ExecutionThreads", "1")
def test_abort_created_execution_becomes_aborted(r):
    first = start_unblocking(r, BUSY_LOOP_RUN)
    wait_started(r)
    second = start_unblocking(r, "GB('ShardsIDReader').run()")
    assert execution_status(r, second) == "created"
    assert r.execute_command("RG.ABORTEXECUTION", second) == "OK"
    assert execution_status(r, second) == "aborted"
    assert r.execute_command("RG.ABORTEXECUTION", first) == "OK"
    wait_status(r, first, "done", timeout=10)
    assert len(execution_plan(r, first)[9]) == 1
    assert r.execute_command("RG.DROPEXECUTION", first) == "OK"
    assert r.execute_command("RG.DROPEXECUTION", second) == "OK"


# --- MaxExecutions ----------------------------------------------------------------------------

@pytest.mark.gears_args("MaxExecutions", "3")
def test_max_executions_cap_drops_oldest(r):
    eids = [finished(r) for _ in range(5)]
    listed = dump_executions(r)
    assert len(listed) == 3
    assert set(listed) == set(eids[2:])
    with pytest.raises(redis.ResponseError, match="execution plan does not exist"):
        r.execute_command("RG.GETRESULTS", eids[0])


@pytest.mark.gears_args("MaxExecutions", "3")
def test_max_executions_holds_for_quick_events_that_queue_behind_each_other(r):
    """Six writes at once fire six executions that are all running or queued when listed (in
    wasm mode the session's instance runs them one by one): once done, three stay listed."""
    pyexec(r, "import time\nGB().foreach(lambda x: time.sleep(0.05)).register('mx:*', mode='async_local')")
    pipe = r.pipeline(transaction=False)
    for i in range(6):
        pipe.set(f"mx:{i}", i)
    pipe.execute()
    wait_until(lambda: len(dump_executions(r)) == 3 and set(dump_executions(r).values()) == {"done"},
               timeout=10, what="the list to come back to MaxExecutions")
    time.sleep(0.3)
    assert len(dump_executions(r)) == 3, "and it stays there"


def test_max_executions_set_at_runtime(r):
    assert r.execute_command("RG.CONFIGSET", "MaxExecutions", "2") == ["OK"]
    eids = [finished(r) for _ in range(4)]
    assert set(dump_executions(r)) == set(eids[2:])


# --- INFO rg / RG.PYSTATS ---------------------------------------------------------------------

def test_info_rg_fields(r):
    info = r.info("rg")
    for field in ("rg_nexecutions", "rg_nregistrations", "rg_TotalAllocated", "rg_PeakAllocated",
                  "rg_CurrAllocated"):
        assert field in info, (field, info)
        assert isinstance(info[field], int), (field, info[field])
    assert info["rg_nexecutions"] == 0
    assert info["rg_nregistrations"] == 0


def test_info_rg_nexecutions_counts_stored_executions(r):
    a = finished(r)
    finished(r)
    assert r.info("rg")["rg_nexecutions"] == 2
    r.execute_command("RG.DROPEXECUTION", a)
    assert r.info("rg")["rg_nexecutions"] == 1


def test_info_everything_includes_rg(r):
    assert "rg_nexecutions" in r.info("everything")


def test_pystats_shape(r):
    pyexec(r, "x = [i for i in range(1000)]")
    res = r.execute_command("RG.PYSTATS")
    assert res[0::2] == ["TotalAllocated", "PeakAllocated", "CurrAllocated"]
    assert all(isinstance(v, int) and v >= 0 for v in res[1::2])


# --- RG.PYDUMPSESSIONS ------------------------------------------------------------------------

def session_entry(r, sid):
    for entry in r.execute_command("RG.PYDUMPSESSIONS"):
        if entry[1] == sid:
            return entry
    return None


def test_pydumpsessions_empty(r):
    assert r.execute_command("RG.PYDUMPSESSIONS") == []


def test_pydumpsessions_entry_of_live_session(r):
    eid = start_unblocking(r, GATED_RUN, "ID", "sess1", "DESCRIPTION", "my desc")
    entry = session_entry(r, "sess1")
    assert entry is not None
    assert entry[0::2] == ["ID", "sessionDescription", "refCount", "linked", "dead",
                           "requirementInstallationNeeded", "requirements", "registrations"]
    assert entry[1] == "sess1" and entry[3] == "my desc"
    assert isinstance(entry[5], int) and entry[5] >= 1
    assert entry[7] == "primary" and entry[9] == "false"
    assert entry[11] == 0 and entry[13] == [] and entry[15] == []
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)


def test_pydumpsessions_no_id_no_description(r):
    eid = start_unblocking(r, GATED_RUN)  # random session id, no description
    entries = r.execute_command("RG.PYDUMPSESSIONS")
    assert len(entries) == 1
    assert len(entries[0][1]) == 40 and entries[0][3] is None
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)


def test_session_freed_after_its_execution(r):
    eid = start_unblocking(r, GATED_RUN)
    assert len(r.execute_command("RG.PYDUMPSESSIONS")) == 1  # a running execution holds its session
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)
    r.execute_command("RG.DROPEXECUTION", eid)
    wait_until(lambda: r.execute_command("RG.PYDUMPSESSIONS") == [], timeout=5, what="session to be freed")


def test_session_of_blocking_run_is_freed(r):
    pyexec(r, "GB('ShardsIDReader').run()", "ID", "blocking_sess")
    wait_until(lambda: session_entry(r, "blocking_sess") is None, timeout=5, what="session to be freed")


def test_pydumpsessions_sessions_filter(r):
    eid = start_unblocking(r, GATED_RUN, "ID", "test1")
    res = r.execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "test1", "test3")
    assert res[0][0:2] == ["ID", "test1"]
    assert res[1] == "Session test3 does not exists"
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)


def test_pydumpsessions_verbose_and_dead_accepted(r):
    finished(r)
    assert isinstance(r.execute_command("RG.PYDUMPSESSIONS", "VERBOSE"), list)
    assert r.execute_command("RG.PYDUMPSESSIONS", "DEAD") == []


def test_pydumpsessions_unknown_option(r):
    with pytest.raises(redis.ResponseError, match="Unknown option"):
        r.execute_command("RG.PYDUMPSESSIONS", "foo")
