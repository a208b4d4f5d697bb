"""Command hooks (spec §2.3 CommandReader `hook=`/`keyprefix=`, KeysReader `commands=`, §2.5 call_next,
get_command, override_reply): a hook replaces its command for every client, call_next() goes on to the
next hook and then to the command itself, the hook's single result is the client's reply; a KeysReader
registration with commands= fires only for events its commands caused and may override their reply.
Register-time errors, MULTI, ACL, unregister, DEBUG RELOAD and a replica are covered too."""
import pytest
import redis

from events_helpers import debug_server, register, register_error, register_one, registration, start_replica, unregister
from gb_helpers import script, wait_until

ALL_MODES = ["sync", "async", "async_local"]


def raw(r, *args):
    """A command's reply as sent, without redis-py's per-command conversion (SET's reply would
    become a bool)."""
    conn = r.connection_pool.get_connection(args[0])
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        r.connection_pool.release(conn)


def passthrough(command, mode="sync", **kw):
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    return (f"GB('CommandReader').map(lambda x: call_next(*x[1:]))"
            f".register(hook={command!r}, mode={mode!r}, convertToStr=False{extra})")


def upper_set(mode="sync", **kw):
    """A hook on SET that stores the value upper-cased."""
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    return (f"GB('CommandReader').map(lambda x: call_next(x[1], x[2].upper(), *x[3:]))"
            f".register(hook='set', mode={mode!r}, convertToStr=False{extra})")


# --- hook=: the hook runs instead of the command ----------------------------------------------

@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_a_hook_changes_what_the_command_does(r, reg_mode):
    register(r, upper_set(reg_mode))
    assert r.set("k", "value") is True
    assert r.get("k") == "VALUE"
    assert r.hset("h", "f", "v") == 1, "other commands are not hooked"


@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_the_hooks_result_is_the_reply_and_the_command_does_not_run_without_call_next(r, reg_mode):
    register(r, f"GB('CommandReader').map(lambda x: 'hooked ' + x[1]).register(hook='set', mode={reg_mode!r})")
    assert raw(r, "SET", "k", "v") == "hooked k"
    assert r.get("k") is None


def test_the_record_is_the_command_as_sent(r):
    register(r, "GB('CommandReader').map(lambda x: repr(x)).register(hook='hset', mode='sync')")
    assert raw(r, "HSET", "h", "f", "v") == repr(["HSET", "h", "f", "v"])


def test_call_next_replies_are_converted_like_execute(r):
    register(r, passthrough("hset"))
    assert raw(r, "HSET", "h", "a", "1", "b", "2") == 2
    assert r.hgetall("h") == {"a": "1", "b": "2"}
    register(r, passthrough("hgetall"))
    assert sorted(raw(r, "HGETALL", "h")) == ["1", "2", "a", "b"]


def test_a_failing_hook_replies_with_its_error(r):
    register(r, script("""
        def fail(x):
            raise Exception('no writes to ' + x[1])
        GB('CommandReader').map(fail).register(hook='set', mode='sync')
    """))
    with pytest.raises(redis.ResponseError, match="no writes to k"):
        r.set("k", "v")
    assert r.get("k") is None


def test_errors_of_the_command_itself_raise_in_the_hook(r):
    register(r, script("""
        def guarded(x):
            try:
                return call_next(*x[1:])
            except Exception as e:
                return 'caught: ' + str(e)
        GB('CommandReader').map(guarded).register(hook='incr', mode='sync')
    """))
    r.set("n", "abc")
    assert "caught:" in raw(r, "INCR", "n")
    r.set("m", "1")
    assert raw(r, "INCR", "m") == "2", "convertToStr=True turns the integer reply into a string"


def test_a_hook_must_give_exactly_one_result(r):
    register(r, "GB('CommandReader').flatmap(lambda x: x).register(hook='set', mode='sync')")
    with pytest.raises(redis.ResponseError, match="Command hook must return exactly one result"):
        r.set("k", "v")
    register(r, "GB('CommandReader').filter(lambda x: False).register(hook='hset', mode='sync')")
    with pytest.raises(redis.ResponseError, match="Command hook must return exactly one result"):
        r.hset("h", "f", "v")


def test_keyprefix_limits_the_hook_to_matching_keys(r):
    register(r, upper_set(keyprefix="user:"))
    r.set("user:1", "abc")
    r.set("other", "abc")
    assert r.get("user:1") == "ABC"
    assert r.get("other") == "abc"
    register(r, "GB('CommandReader').map(lambda x: 'seen').register(hook='mset', keyprefix='b', mode='sync')")
    assert raw(r, "MSET", "a1", "1", "b1", "2") == "seen", "any key of the command may match"
    assert raw(r, "MSET", "a1", "1", "a2", "2") == "OK"


def test_hooks_chain_newest_first_and_call_next_goes_on_to_older_ones(r):
    register(r, "GB('CommandReader').map(lambda x: call_next(x[1], x[2] + '-old')).register(hook='set', mode='sync', convertToStr=False)")
    register(r, "GB('CommandReader').map(lambda x: call_next(x[1], x[2] + '-new')).register(hook='set', mode='sync', convertToStr=False)")
    r.set("k", "v")
    assert r.get("k") == "v-new-old"


def test_get_command_in_a_hook(r):
    register(r, "GB('CommandReader').map(lambda x: '|'.join(get_command())).register(hook='set', mode='async')")
    assert raw(r, "SET", "k", "v") == "SET|k|v"


def test_hook_functions_outside_their_context_raise(r):
    register(r, script("""
        def probe(x):
            out = []
            for f in (lambda: call_next('a'), get_command, lambda: override_reply('x')):
                try:
                    f()
                    out.append('no error')
                except Exception as e:
                    out.append(str(e))
            return '|'.join(out)
        GB('CommandReader').map(probe).register(trigger='probe', mode='sync')
    """))
    assert r.execute_command("RG.TRIGGER", "probe") == [
        "Can not get CommandHook ctx|Can not get command ctx|Can not get command ctx"]
    register(r, "GB('CommandReader').map(lambda x: override_reply('x')).register(hook='set', mode='sync')")
    with pytest.raises(redis.ResponseError, match="Can not get command ctx"):
        r.set("k", "v")


def test_commands_a_hook_runs_through_execute_are_not_hooked(r):
    register(r, script("""
        def twice(x):
            execute('set', x[1] + ':copy', x[2])
            return call_next(*x[1:])
        GB('CommandReader').map(twice).register(hook='set', mode='sync', convertToStr=False)
    """))
    assert r.set("k", "v") is True
    assert r.get("k") == "v" and r.get("k:copy") == "v"
    assert r.get("k:copy:copy") is None


# --- modes, MULTI, ACL ------------------------------------------------------------------------

def test_a_non_sync_hook_refuses_inside_multi_and_a_sync_one_runs(r):
    register(r, passthrough("hset", "async"))
    register(r, upper_set())
    p = r.pipeline(transaction=True)
    p.hset("h", "f", "v")
    p.set("k", "abc")
    out = p.execute(raise_on_error=False)
    assert isinstance(out[0], redis.ResponseError) and "can not run a non-sync execution inside a MULTI" in str(out[0])
    assert out[1] is True
    assert r.get("k") == "ABC"


def test_the_clients_acl_is_checked_against_the_hooked_command(r):
    register(r, passthrough("set"))
    r.execute_command("ACL", "SETUSER", "reader", "on", "nopass", "+get", "+rg.innerhook", "~*")
    c = redis.Redis(host="127.0.0.1", port=r.connection_pool.connection_kwargs["port"], decode_responses=True)
    try:
        c.execute_command("AUTH", "reader", "x")
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run the 'set' command"):
            c.set("k", "v")
        assert r.get("k") is None
        assert c.get("k") is None
    finally:
        c.close()


def test_hooked_commands_are_not_hooked_after_unregister(r):
    rid = register_one(r, upper_set())
    r.set("k", "abc")
    assert r.get("k") == "ABC"
    assert unregister(r, rid) == "OK"
    r.set("k", "abc")
    assert r.get("k") == "abc"


def test_a_hook_shows_its_command_in_dumpregistrations(r):
    rid = register_one(r, upper_set())
    assert registration(r, rid)["reader"] == "CommandReader"
    assert registration(r, rid)["args"] == ["trigger", "set", "inorder", 0]


def test_a_hook_survives_debug_reload(gears):
    srv = debug_server(gears)
    c = srv.client()
    register(c, upper_set())
    assert c.execute_command("DEBUG", "RELOAD") == "OK"
    c.set("k", "abc")
    assert c.get("k") == "ABC"


def test_a_replica_applies_what_the_hook_did(gears):
    master = debug_server(gears)
    m = master.client()
    _, rc = start_replica(gears, master)
    register(m, upper_set())
    wait_until(lambda: len(rc.execute_command("RG.DUMPREGISTRATIONS")) == 1, what="the hook to reach the replica")
    m.set("k", "abc")
    wait_until(lambda: rc.get("k") == "ABC", what="the replica to get the hooked write")


# --- hook= register-time errors ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error", [
    ("hook='nosuchcommand'", "Can not override an unexisting command"),
    ("hook='multi'", "Can not override a command which are not allowed inside a script"),
    ("hook='zunionstore', keyprefix='a'", "Can not override a command with moveable keys by key prefix"),
    ("hook=5", "hook argument is not string"),
    ("hook='set', keyprefix=5", "keyprefix argument is not string"),
    ("trigger='t', hook='set'", "trigger argument can not be given with keyprefix or hook"),
    ("keyprefix='a'", "no trigger or hook argument was given"),
])
def test_hook_register_errors(r, kwargs, error):
    err = register_error(r, f"GB('CommandReader').register({kwargs})")
    assert error in err


def test_a_second_hook_over_a_non_sync_one_is_refused(r):
    register(r, passthrough("set", "async"))
    assert "Can not override a none sync registration" in register_error(r, passthrough("set"))
    err = register_error(r, passthrough("hset", "async") + "\n" + passthrough("hset"))
    assert "Can not override a none sync registration which already created on this session" in err


# --- KeysReader commands= and override_reply --------------------------------------------------

@pytest.mark.parametrize("reg_mode", ALL_MODES)
def test_override_reply_replaces_the_watched_commands_reply(r, reg_mode):
    register(r, f"GB().foreach(lambda x: override_reply('seen ' + x['key'])).register("
                f"prefix='h*', commands=['hset'], mode={reg_mode!r})")
    assert raw(r, "HSET", "h1", "f", "v") == "seen h1"
    assert r.hget("h1", "f") == "v", "the command itself ran"
    assert raw(r, "HSET", "x1", "f", "v") == 1, "a key outside the prefix is not watched"


def test_commands_registrations_fire_only_for_their_commands(r):
    register(r, "GB().foreach(lambda x: execute('incr', 'fired')).register(prefix='h*', commands=['hset'], mode='sync')")
    r.hset("h1", "f", "1")
    r.hincrby("h1", "f", 1)
    r.delete("h1")
    assert r.get("fired") == "1"


def test_without_override_the_client_gets_the_commands_own_reply(r):
    register(r, "GB().foreach(lambda x: execute('incr', 'fired')).register(prefix='*', commands=['hset'], mode='async')")
    assert r.hset("h", "f", "v") == 1
    assert r.get("fired") == "1", "the client waited for the async registration"


def test_override_reply_maps_errors_statuses_and_values(r):
    register(r, script("""
        def answer(x):
            override_reply({'e': '-ERR refused', 's': '+DONE', 'n': 42, 'l': ['a', 1]}[x['key']])
        GB().foreach(answer).register(prefix='*', commands=['set'], mode='sync')
    """))
    with pytest.raises(redis.ResponseError, match="^refused$"):
        r.set("e", "1")
    assert raw(r, "SET", "s", "1") == "DONE"
    assert raw(r, "SET", "n", "1") == 42
    assert raw(r, "SET", "l", "1") == ["a", 1]


def test_override_reply_and_get_command_after_an_await(r):
    """RedisGears' read-through pattern with async code: the coroutine (on the session's loop in
    native mode) still acts on the command it runs for."""
    register(r, script("""
        import asyncio
        async def answer(x):
            await asyncio.sleep(0.01)
            res = await GB('ShardsIDReader').run()
            override_reply('after await: %s %d' % (get_command()[0], len(res)))
        GB().foreach(answer).register(prefix='aw*', eventTypes=['keymiss'], commands=['get'], mode='async')
    """))
    assert raw(r, "GET", "aw1") == "after await: GET 2"
    assert raw(r, "GET", "other") is None, "a key outside the prefix is not watched"


def test_a_task_left_behind_by_a_coroutine_cannot_reach_an_ended_command(r, mode):
    if mode == "wasm":
        pytest.skip("wasm mode: the session's loop runs only while an execution drives it (no threads)")
    register(r, script("""
        import asyncio
        async def late():
            await asyncio.sleep(0.3)
            try:
                override_reply('too late')
            except Exception as e:
                execute('set', 'late_error', str(e))
        async def answer(x):
            asyncio.get_running_loop().create_task(late())
            override_reply('on time')
        GB().foreach(answer).register(prefix='lt*', eventTypes=['keymiss'], commands=['get'], mode='async')
    """))
    assert raw(r, "GET", "lt1") == "on time"
    wait_until(lambda: r.get("late_error"), what="the left-behind task to be refused")
    assert "Can not get Command ctx" in r.get("late_error")
    assert r.ping()


def test_override_reply_only_once(r):
    register(r, script("""
        def twice(x):
            override_reply('first')
            try:
                override_reply('second')
            except Exception as e:
                execute('set', 'second_error', str(e))
        GB().foreach(twice).register(prefix='k', commands=['set'], mode='sync')
    """))
    assert raw(r, "SET", "k", "v") == "first"
    assert r.get("second_error") == "Can only override reply once"


def test_keymiss_read_through(r):
    register(r, script("""
        def load(x):
            value = 'loaded:' + x['key']
            execute('set', x['key'], value)
            override_reply(value)
        GB().foreach(load).register(prefix='cache:*', eventTypes=['keymiss'], commands=['get'],
                                    mode='async_local', readValue=False)
    """))
    assert r.get("cache:1") == "loaded:cache:1"
    assert r.get("cache:1") == "loaded:cache:1", "second read: the key exists, no keymiss"
    assert r.get("plain") is None


def test_get_command_in_a_commands_registration(r):
    register(r, "GB().foreach(lambda x: override_reply('|'.join(get_command()))).register(prefix='*', commands=['hset'], mode='sync')")
    assert raw(r, "HSET", "h", "f", "v") == "HSET|h|f|v"


def test_commands_show_in_dumpregistrations(r):
    rid = register_one(r, "GB().register(prefix='h*', commands=['hset', 'HDEL'])")
    assert registration(r, rid)["args"] == ["regex", "h*", "eventTypes", None, "keyTypes", None,
                                            "hookCommands", ["hset", "hdel"]]


@pytest.mark.parametrize("commands,error", [
    ("5", "given commands is not iterable"),
    ("[1]", "given command type is not string"),
    ("['nosuchcommand']", "bad reply on COMMAND command"),
    ("['multi']", "Can not hook a command which are not allowed inside a script"),
    ("['zunionstore']", "Can not hook a command with moveable keys by key prefix"),
])
def test_commands_register_errors(r, commands, error):
    assert error in register_error(r, f"GB().register(prefix='*', commands={commands})")
