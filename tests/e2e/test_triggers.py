"""CommandReader registrations: register(trigger=...), RG.TRIGGER / RG.TRIGGERONKEY records and reply
shape (flat results, first error as an error reply), unknown and duplicate triggers, register-time errors,
MULTI, RG.DUMPREGISTRATIONS entries and stats of trigger registrations, unregistering a trigger
(spec §1.1, §2.3, §2.4, §6.2)."""
import pytest
import redis

from events_helpers import (STAT_KEYS, nregistrations, register, register_error, register_one, registration,
                            registration_ids, stats, trigger, trigger_error, unregister, wait_stat)
from gb_helpers import script

ALL_MODES = ["sync", "async", "async_local"]
NON_SYNC_ERR = "can not run a non-sync execution inside a MULTI/LUA"


def joiner(name, mode="async", **kw):
    """A trigger whose single result is '|'.join(record)."""
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    return f"GB('CommandReader').map(lambda x: '|'.join(x)).register(trigger={name!r}, mode={mode!r}{extra})"


# --- RG.TRIGGER -------------------------------------------------------------------------------

@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_trigger_record_and_flat_reply(r, reg_mode):
    register(r, joiner("t1", reg_mode))
    assert trigger(r, "t1", "a", "b") == ["t1|a|b"]


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_trigger_record_is_a_list_of_strings(r, reg_mode):
    register(r, f"GB('CommandReader').map(lambda x: repr(x)).register(trigger='t1', mode={reg_mode!r})")
    assert trigger(r, "t1", "1", "x y") == [repr(["t1", "1", "x y"])]
    assert trigger(r, "t1") == [repr(["t1"])]


def test_trigger_results_of_several_records(r):
    register(r, "GB('CommandReader').flatmap(lambda x: x[1:]).register(trigger='split', mode='sync')")
    assert sorted(trigger(r, "split", "a", "b", "c")) == ["a", "b", "c"]


def test_trigger_filtered_out_gives_empty_list(r):
    register(r, "GB('CommandReader').filter(lambda x: False).register(trigger='none', mode='sync')")
    assert trigger(r, "none", "a") == []


def test_trigger_convert_to_str_false(r):
    register(r, "GB('CommandReader').map(lambda x: len(x)).register(trigger='n', mode='sync', convertToStr=False)")
    assert trigger(r, "n", "a", "b") == [3]


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_trigger_error_reply_carries_the_first_error(r, reg_mode):
    register(r, script(f"""
        def fail(x):
            raise Exception('failed on ' + x[1])
        GB('CommandReader').map(fail).register(trigger='bad', mode={reg_mode!r})
    """))
    assert "failed on a1" in trigger_error(r, "bad", "a1")


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_trigger_callback_can_write(r, reg_mode):
    register(r, f"GB('CommandReader').map(lambda x: execute('INCRBY', 'c', x[1])).register(trigger='inc', "
                f"mode={reg_mode!r})")
    assert trigger(r, "inc", "2") == ["2"]
    assert trigger(r, "inc", "3") == ["5"]
    assert r.get("c") == "5"


def test_unknown_trigger(r):
    assert "subcommand not found" in trigger_error(r, "nosuch", "a")
    register(r, joiner("t1"))
    assert "subcommand not found" in trigger_error(r, "t2")


def test_trigger_without_name_is_an_error(r):
    with pytest.raises(redis.ResponseError):
        r.execute_command("RG.TRIGGER")


# --- RG.TRIGGERONKEY --------------------------------------------------------------------------

@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_triggeronkey_record(r, reg_mode):
    register(r, joiner("tk", reg_mode))
    assert r.execute_command("RG.TRIGGERONKEY", "tk", "mykey", "arg") == ["tk|mykey|arg"]


def test_triggeronkey_unknown_trigger(r):
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("RG.TRIGGERONKEY", "nosuch", "mykey")
    assert "subcommand not found" in str(e.value)


# --- duplicate names and register errors ------------------------------------------------------

def test_trigger_name_registered_twice(r):
    register(r, joiner("dup"))
    assert "trigger already registered" in register_error(r, joiner("dup", "sync"))
    assert trigger(r, "dup", "x") == ["dup|x"]
    assert nregistrations(r) == 1


def test_trigger_name_twice_in_one_script(r):
    err = register_error(r, joiner("dup") + "\n" + joiner("dup"))
    assert "trigger already registered" in err
    assert "subcommand not found" in trigger_error(r, "dup")


@pytest.mark.parametrize("kwargs,expected", [
    ("", "no trigger or hook argument was given"),
    ("trigger=1", "trigger argument is not string"),
    ("trigger='t', mode='bogus'", "unknown execution mode"),
    ("trigger='t', onRegistered=len", "must be a function"),
], ids=["no-trigger", "non-str", "mode", "onRegistered"])
def test_trigger_register_errors(r, kwargs, expected):
    assert expected in register_error(r, f"GB('CommandReader').register({kwargs})")
    assert nregistrations(r) == 0


def test_commandreader_does_not_support_run(r):
    err = register_error(r, "GB('CommandReader').run()")
    assert "reader do not support run" in err


# --- MULTI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reg_mode", ["async", "async_local"])
def test_non_sync_trigger_inside_multi(r, reg_mode):
    register(r, joiner("t1", reg_mode))
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("RG.TRIGGER", "t1", "a")
    pipe.set("after", "1")
    res = pipe.execute(raise_on_error=False)
    assert isinstance(res[0], redis.ResponseError) and NON_SYNC_ERR in str(res[0]), res
    assert res[1] is True


def test_sync_trigger_inside_multi(r):
    register(r, joiner("t1", "sync"))
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("RG.TRIGGER", "t1", "a")
    pipe.execute_command("RG.TRIGGER", "t1", "b")
    assert pipe.execute() == [["t1|a"], ["t1|b"]]


# --- DUMPREGISTRATIONS / stats ----------------------------------------------------------------

@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_dumpregistrations_commandreader_entry(r, reg_mode):
    reg_id = register_one(r, joiner("t1", reg_mode))
    reg = registration(r, reg_id)
    assert reg["reader"] == "CommandReader" and reg["desc"] is None
    assert reg["data"]["mode"] == reg_mode
    assert reg["args"] == ["trigger", "t1", "inorder", 0]
    assert [reg["data"][k] for k in STAT_KEYS[:6]] == [0, 0, 0, 0, 0, 0]
    assert reg["data"]["lastError"] is None


def test_inorder_registration(r):
    reg_id = register_one(r, joiner("ordered", "async_local", inorder=True))
    assert registration(r, reg_id)["args"] == ["trigger", "ordered", "inorder", 1]
    assert [trigger(r, "ordered", str(i)) for i in range(3)] == [["ordered|0"], ["ordered|1"], ["ordered|2"]]


def test_desc_of_trigger_registration(r):
    reg_id = register_one(r, "GB('CommandReader', desc='counts').register(trigger='d')")
    assert registration(r, reg_id)["desc"] == "counts"


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_trigger_stats(r, reg_mode):
    reg_id = register_one(r, script(f"""
        def f(x):
            if x[1] == 'fail':
                raise Exception('asked to fail')
            return x[1]
        GB('CommandReader').map(f).register(trigger='st', mode={reg_mode!r})
    """))
    trigger(r, "st", "ok")
    trigger(r, "st", "ok")
    trigger_error(r, "st", "fail")
    wait_stat(r, reg_id, "numTriggered", 3)
    data = stats(r, reg_id)
    assert (data["numSuccess"], data["numFailures"], data["numAborted"]) == (2, 1, 0)
    assert "asked to fail" in data["lastError"]
    assert r.execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"
    data = stats(r, reg_id)
    assert (data["numTriggered"], data["numSuccess"], data["numFailures"], data["lastError"]) == (0, 0, 0, None)


# --- unregister -------------------------------------------------------------------------------

def test_unregistered_trigger_is_gone_and_name_reusable(r):
    reg_id = register_one(r, joiner("t1"))
    assert unregister(r, reg_id) == "OK"
    assert registration_ids(r) == []
    assert "subcommand not found" in trigger_error(r, "t1")
    register(r, "GB('CommandReader').map(lambda x: 'again').register(trigger='t1')")
    assert trigger(r, "t1") == ["again"]


ORDER_SCRIPT = script("""
    import time
    def slow_if_x(x):
        if x[2] == 'x':
            time.sleep(0.5)
    GB('CommandReader').foreach(slow_if_x).map(lambda x: execute('rpush', x[1], x[2])).register(trigger='in_order', mode='async_local', inorder=True)
    GB('CommandReader').foreach(slow_if_x).map(lambda x: execute('rpush', x[1], x[2])).register(trigger='any_order', mode='async_local')
""")


@pytest.mark.parametrize("trigger_name, expected", [("any_order", ["y", "x"]), ("in_order", ["x", "y"])])
def test_a_sleeping_execution_holds_back_the_next_one_only_in_order(server, r, trigger_name, expected):
    """While an async registration's execution sleeps, the next trigger's execution runs and
    finishes first (native: on another thread; wasm: the sleep lends the session's instance),
    unless the registration is `inorder`."""
    import threading
    import time

    assert r.execute_command("RG.PYEXECUTE", ORDER_SCRIPT) == "OK"
    key = f"list:{trigger_name}"
    first = threading.Thread(target=lambda: server.client().execute_command("RG.TRIGGER", trigger_name, key, "x"))
    first.start()
    time.sleep(0.1)
    server.client().execute_command("RG.TRIGGER", trigger_name, key, "y")
    first.join(10)
    assert r.lrange(key, 0, -1) == expected
