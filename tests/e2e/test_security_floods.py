"""Security I: floods are bounded (both modes) — log lines, registrations firing themselves,
executions left queued after RG.UNREGISTER, and per-user quotas."""
import time

import pytest

from gb_helpers import pyexec, pyexec_error, wait_until
from security_helpers import assert_healthy, error_of, make_tenants


@pytest.fixture
def t(server, r):
    return make_tenants(server, r)


def test_a_log_flood_is_cut_to_the_budget_and_counted(server, r, t):
    pyexec(t["alice"], "for i in range(20000):\n    log('flood-line %d' % i)")
    pyexec(t["alice"], "for i in range(20000):\n    print('print-line %d' % i)")
    wait_until(lambda: server.log_text().count("lines dropped") >= 2, what="two dropped-lines summaries")
    text = server.log_text()
    assert text.count("flood-line") <= 300, text.count("flood-line")
    assert text.count("print-line") <= 300, text.count("print-line")
    assert "LogLinesPerSecond" in text
    assert_healthy(server, r)


def test_the_log_budget_is_a_config(server, r, t):
    assert r.execute_command("RG.CONFIGSET", "LogLinesPerSecond", "5") == ["OK"]
    pyexec(t["alice"], "for i in range(50):\n    log('few-line %d' % i)")
    wait_until(lambda: "lines dropped" in server.log_text(), what="the dropped-lines summary")
    assert server.log_text().count("few-line") == 5
    assert_healthy(server, r)


@pytest.mark.parametrize("reg_mode", ["sync", "async", "async_local"])
def test_a_registration_firing_itself_stops_at_max_trigger_depth(server, r, t, reg_mode):
    alice = t["alice"]
    pyexec(alice, f"GB().foreach(lambda x: execute('INCR', 'a:n')).register(prefix='a:n', mode={reg_mode!r})")
    alice.set("a:n", "0")
    if reg_mode != "sync":  # a sync registration is never fired from inside itself
        wait_until(lambda: "MaxTriggerDepth" in server.log_text(), what="the MaxTriggerDepth log line")
    time.sleep(0.5)
    first = int(alice.get("a:n"))
    time.sleep(0.5)
    assert int(alice.get("a:n")) == first, "the chain went on"
    assert 1 <= first <= 16, first
    assert_healthy(server, r)


def test_max_trigger_depth_is_a_config(server, r, t):
    assert r.execute_command("RG.CONFIGSET", "MaxTriggerDepth", "3") == ["OK"]
    pyexec(t["alice"], "GB().foreach(lambda x: execute('INCR', 'a:m')).register(prefix='a:m', mode='async_local')")
    t["alice"].set("a:m", "0")
    wait_until(lambda: "MaxTriggerDepth" in server.log_text(), what="the MaxTriggerDepth log line")
    time.sleep(0.3)
    assert t["alice"].get("a:m") == "3"


def test_unregister_stops_queued_executions_at_once(server, r, t):
    alice = t["alice"]
    pyexec(alice, "import time\nGB().foreach(lambda x: (time.sleep(0.1), execute('INCR', 'a:runs'))).register(prefix='a:k*')")
    rid = alice.execute_command("RG.DUMPREGISTRATIONS")[0][1]
    for i in range(40):
        alice.set(f"a:k{i}", "v")
    time.sleep(0.15)
    assert alice.execute_command("RG.UNREGISTER", rid) == "OK"
    time.sleep(0.6)
    after = int(alice.get("a:runs") or 0)
    time.sleep(1.0)
    assert int(alice.get("a:runs") or 0) == after
    assert after <= 12, after
    assert_healthy(server, r)


# --- per-user quotas ------------------------------------------------------------------------

REGISTERS = "GB('CommandReader').register(trigger='{}')"


def test_sessions_per_user(server, r, t):
    r.execute_command("RG.CONFIGSET", "MaxSessionsPerUser", "2")
    pyexec(t["alice"], REGISTERS.format("q1"))
    pyexec(t["alice"], REGISTERS.format("q2"))
    err = pyexec_error(t["alice"], REGISTERS.format("q3"))
    assert "MaxSessionsPerUser" in err, err
    pyexec(t["bob"], REGISTERS.format("q4"))
    pyexec(r, REGISTERS.format("q5"))
    pyexec(r, REGISTERS.format("q6"))
    pyexec(r, REGISTERS.format("q7"))
    assert len(r.execute_command("RG.DUMPREGISTRATIONS")) == 6
    assert_healthy(server, r)


def test_registrations_per_user_install_nothing_past_the_quota(server, r, t):
    r.execute_command("RG.CONFIGSET", "MaxRegistrationsPerUser", "3")
    pyexec(t["alice"], REGISTERS.format("r1") + "\n" + REGISTERS.format("r2"))
    err = pyexec_error(t["alice"], REGISTERS.format("r3") + "\n" + REGISTERS.format("r4"))
    assert "MaxRegistrationsPerUser" in err, err
    assert len(r.execute_command("RG.DUMPREGISTRATIONS")) == 2
    pyexec(t["alice"], REGISTERS.format("r5"))
    assert len(r.execute_command("RG.DUMPREGISTRATIONS")) == 3
    assert_healthy(server, r)


def test_unblocking_executions_per_user(server, r, t):
    r.execute_command("RG.CONFIGSET", "MaxUnblockingExecutionsPerUser", "1")
    slow = "import time\nGB('ShardsIDReader').foreach(lambda x: time.sleep(1)).run()"
    eid = pyexec(t["alice"], slow, "UNBLOCKING")
    err = pyexec_error(t["alice"], slow, "UNBLOCKING")
    assert "MaxUnblockingExecutionsPerUser" in err, err
    assert pyexec(t["bob"], slow, "UNBLOCKING")
    wait_until(lambda: r.execute_command("RG.GETEXECUTION", eid)[0][3][1] == "done", what="the first execution to finish")
    assert pyexec(t["alice"], slow, "UNBLOCKING")
    assert_healthy(server, r)


def test_quota_configs_need_admin(t):
    err = error_of(t["dave"], "RG.CONFIGSET", "MaxSessionsPerUser", "100000")
    assert "may not run" in err, err


def test_time_events_per_user(server, r, t):
    r.execute_command("RG.CONFIGSET", "MaxTimeEventsPerUser", "2")
    te = "registerTE(60, lambda: None)\nGB('CommandReader').register(trigger='{}')"
    pyexec(t["alice"], te.format("te1"))
    pyexec(t["alice"], te.format("te2"))
    err = pyexec_error(t["alice"], te.format("te3"))
    assert "MaxTimeEventsPerUser" in err, err
    pyexec(t["bob"], te.format("te4"))
    pyexec(r, te.format("te5"))
    assert_healthy(server, r)


def test_a_time_event_sleeping_inside_atomic_cannot_freeze_the_server(server, r, t):
    r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "500")
    code = ("import time\ndef tick():\n    with atomic():\n        time.sleep(20)\n"
            "registerTE(1, tick)\nGB('CommandReader').register(trigger='sleeper')")
    pyexec(t["alice"], code)
    time.sleep(1.2)  # the time event is now inside atomic()
    probe_start = time.monotonic()
    assert_healthy_within(server, 3.0)
    assert time.monotonic() - probe_start < 3.0
    assert_healthy(server, r)


def assert_healthy_within(server, seconds):
    import redis as _redis
    probe = _redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=seconds)
    try:
        assert probe.ping()
    finally:
        probe.close()


def test_a_deleted_owners_time_event_stops(server, r, t):
    pyexec(t["alice"], "registerTE(1, lambda: execute('INCR', 'a:ticks'))\nGB('CommandReader').register(trigger='ticker')")
    wait_until(lambda: r.get("a:ticks") is not None, timeout=5, what="the time event to tick")
    t["alice"].close()
    r.execute_command("ACL", "DELUSER", "alice")
    wait_until(lambda: "time event of session" in server.log_text() and "stopped" in server.log_text(), timeout=5, what="the stop log line")
    ticks = r.get("a:ticks")
    time.sleep(1.5)
    assert r.get("a:ticks") == ticks
    assert_healthy(server, r)
