"""KeysReader registrations: register() arguments and reply, ids, prefix/eventTypes/keyTypes/readValue
filtering, record shape, sync vs async modes, onRegistered, register-time argument errors, and the
registration admin commands: RG.DUMPREGISTRATIONS shape and stats, RG.CLEARREGISTRATIONSSTATS,
RG.UNREGISTER, RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS, INFO rg (spec §1.1, §1.3, §2.3, §2.4)."""
import pytest
import redis

from events_helpers import (STAT_KEYS, nregistrations, register, register_error, register_one,
                            registered_executions, registration, registration_ids, rid, stats, unregister,
                            wait_key, wait_stat)
from gb_helpers import dump_executions, execution_plan, literal, pyexec, script, wait_status, wait_until

ASYNC_MODES = ["async", "async_local"]
ALL_MODES = ["sync", "async", "async_local"]


def copier(prefix, mode, **kw):
    """A registration copying every string written under `prefix` to 'copy:<key>'."""
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    return (f"GB().foreach(lambda x: execute('SET', 'copy:' + x['key'], x['value']))"
            f".register(prefix={prefix!r}, mode={mode!r}{extra})")


def recorder(prefix="k*", mode="sync", **kw):
    """A registration appending str(record) to the list 'records'."""
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    return (f"GB().foreach(lambda x: execute('RPUSH', 'records', str(x)))"
            f".register(prefix={prefix!r}, mode={mode!r}{extra})")


def records(r):
    return literal(r.lrange("records", 0, -1))


# --- register() reply and ids -----------------------------------------------------------------

def test_register_replies_ok_and_returns_the_id(r):
    assert pyexec(r, "execute('SET', 'rid', GB().register(prefix='a*'))") == "OK"
    assert r.get("rid") == rid(1)
    assert registration_ids(r) == [rid(1)]


def test_unblocking_has_no_effect_on_registering_scripts(r):
    assert pyexec(r, "GB().register(prefix='a*')", "UNBLOCKING") == "OK"
    assert registration_ids(r) == [rid(1)]


def test_registration_ids_have_their_own_counter(r):
    for _ in range(3):
        assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]
    pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    register(r, "GB().register(prefix='a*')")
    register(r, "GB().register(prefix='b*')")
    assert registration_ids(r) == [rid(1), rid(2)]


def test_one_builder_registered_twice_gives_two_registrations(r):
    register(r, "b = GB().map(lambda x: x)\nb.register(prefix='a*')\nb.register(prefix='b*')")
    assert sorted(registration_ids(r)) == [rid(1), rid(2)]


# --- modes ------------------------------------------------------------------------------------

def test_sync_mode_runs_inside_the_writing_command(r):
    register(r, copier("src:*", "sync"))
    r.set("src:1", "v1")
    assert r.get("copy:src:1") == "v1"  # no waiting: the callback ran before SET replied


@pytest.mark.parametrize("reg_mode", ASYNC_MODES)
def test_async_modes_run_in_the_background(r, reg_mode):
    register(r, copier("src:*", reg_mode))
    r.set("src:1", "v1")
    wait_key(r, "copy:src:1", "v1")


@pytest.mark.parametrize("reg_mode", ASYNC_MODES)
def test_async_event_executions_are_listed_as_registered(r, reg_mode):
    register(r, copier("src:*", reg_mode))
    r.set("src:1", "a")
    r.set("src:2", "b")
    wait_until(lambda: len(registered_executions(r)) == 2, what="two registered executions")


@pytest.mark.gears_args("MaxExecutionsPerRegistration", "2")
def test_sync_runs_are_executions_too_and_capped(r):
    register(r, copier("src:*", "sync"))
    for i in range(4):
        r.set(f"src:{i}", "v")
    eids = registered_executions(r)
    assert len(eids) == 2, "a sync registration's runs are listed like RedisGears', two kept"
    assert all(dump_executions(r)[e] == "done" for e in eids)
    results, errors = r.execute_command("RG.GETRESULTS", eids[-1])
    assert errors == [] and literal(results)[0]["key"] == "src:3", "the newest run is kept, with its result"


@pytest.mark.gears_args("MaxExecutionsPerRegistration", "3")
def test_max_executions_per_registration(r):
    reg_id = register_one(r, copier("src:*", "async"))
    for i in range(6):
        r.set(f"src:{i}", "v")
    wait_stat(r, reg_id, "numSuccess", 6)
    wait_until(lambda: set(dump_executions(r).values()) == {"done"}, what="all executions to be done")
    assert len(registered_executions(r)) == 3


# --- records and filters ----------------------------------------------------------------------

def test_record_shape_for_each_key_type(r):
    register(r, recorder())
    r.set("k1", "v")
    r.hset("kh", mapping={"f": "1"})
    r.lpush("kl", "a")
    r.delete("k1")
    assert records(r) == [
        {"key": "k1", "event": "set", "type": "string", "value": "v"},
        {"key": "kh", "event": "hset", "type": "hash", "value": {"f": "1"}},
        {"key": "kl", "event": "lpush", "type": "list", "value": ["a"]},
        {"key": "k1", "event": "del", "type": "empty", "value": None},
    ]


def test_read_value_false_gives_key_and_event_only(r):
    register(r, recorder(readValue=False))
    r.set("k1", "v")
    assert records(r) == [{"key": "k1", "event": "set"}]


def test_prefix_with_star_is_startswith(r):
    register(r, recorder(prefix="pre*"))
    for k in ("pre", "prefix", "xpre", "pr"):
        r.set(k, "v")
    assert [rec["key"] for rec in records(r)] == ["pre", "prefix"]


def test_prefix_without_star_is_an_exact_match(r):
    register(r, recorder(prefix="exact"))
    for k in ("exact", "exact2", "exactly", "xexact"):
        r.set(k, "v")
    assert [rec["key"] for rec in records(r)] == ["exact"]


def test_event_types_are_case_insensitive(r):
    register(r, recorder(eventTypes=["SET", "Del"]))
    r.set("k1", "v")
    r.hset("kh", "f", "v")
    r.lpush("kl", "a")
    r.delete("k1")
    assert [(rec["key"], rec["event"]) for rec in records(r)] == [("k1", "set"), ("k1", "del")]


def one_async_record(r, reg_id, what):
    """Wait for the first record of an async registration; it must be the only event it got."""
    wait_until(lambda: r.llen("records") >= 1, what=what)
    assert stats(r, reg_id)["numTriggered"] == 1 and r.llen("records") == 1, "one event must fire once"
    return records(r)[0]


def test_expired_event(r):
    reg_id = register_one(r, recorder(mode="async_local", eventTypes=["expired"]))
    r.set("k1", "v", px=30)
    rec = one_async_record(r, reg_id, "the expired event")
    assert (rec["key"], rec["event"]) == ("k1", "expired")


def test_keymiss_event(r):
    reg_id = register_one(r, recorder(mode="async_local", eventTypes=["keymiss"]))
    assert r.get("k_missing") is None
    rec = one_async_record(r, reg_id, "the keymiss event")
    assert (rec["key"], rec["event"], rec["type"]) == ("k_missing", "keymiss", "empty")


def test_keymiss_event_sync(r):
    register(r, recorder(eventTypes=["keymiss"]))
    assert r.get("k_missing") is None
    assert records(r) == [{"key": "k_missing", "event": "keymiss", "type": "empty", "value": None}]


def test_key_types_filter(r):
    register(r, recorder(keyTypes=["hash", "list"]))
    r.set("k1", "v")
    r.hset("kh", "f", "v")
    r.lpush("kl", "a")
    r.sadd("ks", "m")
    assert [rec["key"] for rec in records(r)] == ["kh", "kl"]


# --- onRegistered and argument errors ---------------------------------------------------------

def test_on_registered_is_called_once_at_install(r):
    register(r, script("""
        def installed():
            execute('INCR', 'onreg')
        GB().register(prefix='a*', onRegistered=installed)
    """))
    wait_key(r, "onreg", "1")
    r.set("a1", "x")
    assert r.get("onreg") == "1"


@pytest.mark.parametrize("kwargs,expected", [
    ("prefix=1", "regex argument must be a string"),
    ("keyTypes=['string', 'bogus']", "unknown key type"),
    ("readValue=1", "readValue is not boolean"),
    ("mode='bogus'", "unknown execution mode"),
    ("onRegistered=1", "must be a function"),
], ids=["prefix", "keyTypes", "readValue", "mode", "onRegistered"])
def test_register_argument_errors(r, kwargs, expected):
    assert expected in register_error(r, f"GB().register({kwargs})")
    assert nregistrations(r) == 0


# --- RG.DUMPREGISTRATIONS ---------------------------------------------------------------------

def test_dumpregistrations_empty(r):
    assert r.execute_command("RG.DUMPREGISTRATIONS") == []


def test_dumpregistrations_keysreader_entry(r):
    register(r, "GB(desc='my desc').map(lambda x: x).register(prefix='pre*', eventTypes=['set'], "
                "keyTypes=['string'], mode='async_local')", "ID", "s1", "DESCRIPTION", "sess desc")
    raw = r.execute_command("RG.DUMPREGISTRATIONS")
    assert len(raw) == 1
    reg = registration(r, rid(1))
    assert (reg["reader"], reg["desc"]) == ("KeysReader", "my desc")
    data = reg["data"]
    assert data["mode"] == "async_local"
    assert [data[k] for k in STAT_KEYS[:6]] == [0, 0, 0, 0, 0, 0]
    assert float(data["avgRunDurationMS"]) == 0
    assert data["lastError"] is None
    assert reg["args"] == ["regex", "pre*", "eventTypes", ["set"], "keyTypes", ["string"], "hookCommands", None]
    pd = reg["pd"]
    assert set(pd) == {"sessionName", "sessionDescription", "refCount", "linkedTo", "dead",
                       "isInstallationNeeded", "registrationsList", "depsList"}
    assert (pd["sessionName"], pd["sessionDescription"]) == ("s1", "sess desc")
    assert pd["registrationsList"] == [rid(1)] and pd["refCount"] == 1
    assert pd["dead"] is False and pd["isInstallationNeeded"] == 0 and pd["depsList"] == []


def test_dumpregistrations_defaults(r):
    register(r, "GB().register()")
    reg = registration(r, rid(1))
    assert reg["desc"] is None and reg["data"]["mode"] == "async"
    assert reg["args"] == ["regex", "*", "eventTypes", None, "keyTypes", None, "hookCommands", None]


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_stats_count_successes(r, reg_mode):
    reg_id = register_one(r, copier("src:*", reg_mode))
    for i in range(3):
        r.set(f"src:{i}", "v")
    wait_stat(r, reg_id, "numSuccess", 3)
    data = stats(r, reg_id)
    assert (data["numTriggered"], data["numFailures"], data["numAborted"]) == (3, 0, 0)
    assert data["lastError"] is None
    assert data["totalRunDurationMS"] >= data["lastRunDurationMS"] >= 0


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_stats_count_failures_and_last_error(r, reg_mode):
    reg_id = register_one(r, script(f"""
        def boom(x):
            raise Exception('boom on ' + x['key'])
        GB().foreach(boom).register(prefix='src:*', mode={reg_mode!r})
    """))
    r.set("src:1", "v")
    r.set("src:2", "v")
    wait_stat(r, reg_id, "numFailures", 2)
    data = stats(r, reg_id)
    assert data["numTriggered"] == 2 and data["numSuccess"] == 0
    assert "boom on src:" in data["lastError"]


def test_clear_registrations_stats(r):
    ok_id = register_one(r, copier("src:*", "sync"))
    bad_id = register_one(r, "GB().foreach(lambda x: 1 / 0).register(prefix='src:*', mode='sync')")
    r.set("src:1", "v")
    assert stats(r, bad_id)["numFailures"] == 1 and stats(r, ok_id)["numSuccess"] == 1
    assert r.execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"
    for reg_id in (ok_id, bad_id):
        data = stats(r, reg_id)
        assert [data[k] for k in STAT_KEYS[:6]] == [0, 0, 0, 0, 0, 0], data
        assert float(data["avgRunDurationMS"]) == 0 and data["lastError"] is None
    r.set("src:2", "v")
    assert stats(r, ok_id)["numTriggered"] == 1


# --- RG.UNREGISTER ----------------------------------------------------------------------------

def test_unregister_stops_firing(r):
    reg_id = register_one(r, copier("src:*", "sync"))
    r.set("src:1", "v")
    assert unregister(r, reg_id) == "OK"
    assert registration_ids(r) == []
    r.set("src:2", "v")
    assert r.get("copy:src:1") == "v" and r.get("copy:src:2") is None


def test_unregister_unknown_id(r):
    with pytest.raises(redis.ResponseError, match="execution is not registered"):
        unregister(r, rid(42))


def test_unregister_twice(r):
    reg_id = register_one(r, copier("src:*", "async"))
    assert unregister(r, reg_id) == "OK"
    with pytest.raises(redis.ResponseError, match="execution is not registered"):
        unregister(r, reg_id)


def test_unregister_abortpending(r):
    reg_id = register_one(r, copier("src:*", "async"))
    r.set("src:1", "v")
    assert unregister(r, reg_id, "abortpending") == "OK"
    assert registration_ids(r) == []


def test_info_rg_nregistrations(r):
    assert nregistrations(r) == 0
    a = register_one(r, copier("a*", "sync"))
    register_one(r, copier("b*", "async"))
    assert nregistrations(r) == 2
    unregister(r, a)
    assert nregistrations(r) == 1


# --- pause / unpause --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd,word", [("RG.PAUSEREGISTRATIONS", "pause"), ("RG.UNPAUSEREGISTRATIONS", "unpause")])
def test_pause_not_supported_by_keysreader(r, cmd, word):
    reg_id = register_one(r, copier("src:*", "sync"))
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(cmd, reg_id)
    assert f"does not support {word}" in str(e.value)
    r.set("src:1", "v")
    assert r.get("copy:src:1") == "v"


@pytest.mark.parametrize("cmd", ["RG.PAUSEREGISTRATIONS", "RG.UNPAUSEREGISTRATIONS"])
def test_pause_wrong_arity(r, cmd):
    register(r, copier("a*", "sync"))
    register(r, copier("b*", "sync"))
    for args in ([], [rid(1), rid(2)]):
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command(cmd, *args)
        assert "wrong number of arguments" in str(e.value).lower()


def test_getexecution_lists_the_registrations_plan(r):
    register(r, "GB().map(lambda x: x['key']).filter(lambda k: True).register(prefix='plan:*')")
    r.set("plan:1", "v")
    wait_until(lambda: len(registered_executions(r)) == 1, what="the registered execution")
    eid = registered_executions(r)[0]
    wait_status(r, eid, "done")
    steps = execution_plan(r, eid)[15]
    assert [s[1] for s in steps][:3] == ["reader", "map", "filter"], steps
    assert steps[0][5] == "KeysReader" and steps[0][7] == "plan:*", steps[0]
