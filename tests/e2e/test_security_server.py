"""Security I: no script and no user can crash, freeze or take over the server (both modes).

Each test makes the attack as a hostile tenant would, checks it is refused with a clear error,
then checks the server's health (security_helpers.assert_healthy).
"""
import time

import pytest
import redis

from gb_helpers import pyexec, pyexec_error, run, script, wait_until
from security_helpers import assert_healthy, error_of, make_tenants


@pytest.fixture
def t(server, r):
    return make_tenants(server, r)


# --- execute() calls Redis the way a Lua script does ----------------------------------------

NOSCRIPT = [
    ("CLIENT", "KILL", "ID", "999999"),
    ("CLIENT", "LIST"),
    ("WAIT", "1", "0"),
    ("SYNC",),
    ("PSYNC", "?", "-1"),
    ("MULTI",),
    ("EXEC",),
    ("SUBSCRIBE", "ch"),
    ("MONITOR",),
    ("EVAL", "return 1", "0"),
    ("SHUTDOWN", "NOSAVE"),
]


def _call(args):
    return "execute(" + ", ".join(repr(a) for a in args) + ")"


@pytest.mark.parametrize("args", NOSCRIPT, ids=lambda a: "-".join(a[:2]))
def test_noscript_commands_are_refused_at_top_level(server, r, t, args):
    err = pyexec_error(t["dave"], _call(args))
    assert "not allowed" in err and "script" in err, err
    assert_healthy(server, r)


@pytest.mark.parametrize("args", NOSCRIPT[:5], ids=lambda a: "-".join(a[:2]))
def test_noscript_commands_are_refused_in_a_step_even_for_default(server, r, args):
    r.set("canary", "still-here")
    results, errors = run(r, f"GB('ShardsIDReader').map(lambda x: {_call(args)}).run()")
    assert results == [] and len(errors) == 1 and "not allowed" in errors[0], errors
    assert_healthy(server, r)


@pytest.mark.parametrize("args", [("BLPOP", "a:l", "0"), ("BRPOP", "a:l", "1"), ("BZPOPMIN", "a:z", "0"),
                                  ("XREAD", "BLOCK", "0", "STREAMS", "a:s", "$")], ids=lambda a: a[0])
def test_blocking_commands_are_refused(server, r, t, args):
    err = pyexec_error(t["alice"], _call(args))
    assert "blocking command" in err, err
    assert_healthy(server, r)


def test_non_blocking_stream_reads_still_work(r, t):
    t["alice"].xadd("a:s", {"f": "v"})
    assert pyexec(t["alice"], "GB('ShardsIDReader').map(lambda x: len(execute('XREAD', 'COUNT', '5', 'STREAMS', 'a:s', '0'))).run()") == [["1"], []]


@pytest.mark.parametrize("name", ["RG.INNERREGISTER", "RG.INNERUNREGISTER", "RG.INNERHOOK", "rg.innerregister"])
def test_internal_commands_are_refused_from_scripts(server, r, t, name):
    err = pyexec_error(t["alice"], _call((name, "x")))
    assert "internal to gearbox" in err, err
    assert_healthy(server, r)


# --- internal commands answer only replication and loading -----------------------------------

@pytest.mark.parametrize("who", ["default", "dave", "alice"])
@pytest.mark.parametrize("name", ["RG.INNERREGISTER", "RG.INNERUNREGISTER", "RG.INNERHOOK"])
def test_internal_commands_are_refused_from_clients(server, r, t, who, name):
    client = r if who == "default" else t[who]
    err = error_of(client, name, "x")
    assert "internal" in err or "may not run" in err, err
    assert_healthy(server, r)


def test_a_forged_inner_register_installs_nothing(server, r, t):
    # The blob a real RG.PYEXECUTE replicates, taken from the AOF-free way: a session's recipe is
    # not readable by clients, so the attacker makes one up; any blob is refused before decoding.
    for blob in [b"\x00" * 10, b"junk", b""]:
        for client in (t["dave"], r):
            err = error_of(client, "RG.INNERREGISTER", blob)
            assert "internal" in err or "may not run" in err, err
    assert r.execute_command("RG.DUMPREGISTRATIONS") == []
    assert_healthy(server, r)


def test_inner_hook_with_a_guessed_secret_is_refused(server, r, t):
    pyexec(r, "GB('CommandReader').map(lambda x: 'hooked').register(hook='get', mode='sync')")
    assert t["alice"].get("a:k") == "hooked"
    err = error_of(t["alice"], "RG.INNERHOOK", "0" * 32, "GET", "b:secret")
    assert "internal" in err, err
    r.execute_command("RG.UNREGISTER", r.execute_command("RG.DUMPREGISTRATIONS")[0][1])
    assert_healthy(server, r)


# --- RG.* commands carry flags that ACL rules reach -------------------------------------------

@pytest.mark.parametrize("command", [("RG.CONFIGSET", "ScriptTimeoutMS", "3600000"), ("RG.PAUSEREGISTRATIONS", "x"),
                                     ("RG.UNPAUSEREGISTRATIONS", "x"), ("RG.CLEARREGISTRATIONSSTATS",)],
                         ids=lambda c: c[0])
def test_admin_commands_are_refused_without_admin(server, r, t, command):
    err = error_of(t["dave"], *command)
    assert "@admin @dangerous" in err and "may not run" in err, err
    assert r.execute_command("RG.CONFIGGET", "ScriptTimeoutMS") != [3600000]
    assert_healthy(server, r)


def test_admin_commands_work_for_default_and_ops(r, t):
    assert r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "1500") == ["OK"]
    assert t["ops"].execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "1600") == ["OK"]
    assert r.execute_command("RG.CONFIGGET", "ScriptTimeoutMS") == [1600]


def test_command_info_shows_the_admin_flag(r):
    for name in ["rg.configset", "rg.pauseregistrations", "rg.clearregistrationsstats", "rg.innerregister"]:
        info = r.execute_command("COMMAND", "INFO", name)
        flags = info[0][2] if isinstance(info, list) else info[name]["flags"]
        assert "admin" in flags, (name, flags)
    info = r.execute_command("COMMAND", "INFO", "rg.pyexecute")
    flags = info[0][2] if isinstance(info, list) else info["rg.pyexecute"]["flags"]
    assert "admin" not in flags


# --- a deleted or disabled owner ------------------------------------------------------------

def test_firing_a_deleted_users_registrations_does_not_crash(server, r, t):
    alice = t["alice"]
    pyexec(alice, "GB('CommandReader').map(lambda x: execute('GET', 'a:k')).register(trigger='alicetrig', mode='sync')")
    pyexec(alice, "GB().foreach(lambda x: execute('SET', 'a:seen', x['key'])).register(prefix='a:*', mode='sync', readValue=False)")
    alice.close()
    assert r.execute_command("ACL", "DELUSER", "alice") == 1
    for _ in range(5):
        r.set("a:1", "v")
        err = error_of(r, "RG.TRIGGER", "alicetrig")
        assert "alice" in err and "no longer exists" in err, err
    assert r.get("a:seen") is None
    assert "does not fire" in server.log_text()
    assert_healthy(server, r)


def test_a_disabled_users_registration_stops_and_resumes(server, r, t):
    pyexec(t["alice"], "GB('CommandReader').map(lambda x: 'ran').register(trigger='alicetrig2', mode='sync')")
    assert r.execute_command("RG.TRIGGER", "alicetrig2") == ["ran"]
    r.execute_command("ACL", "SETUSER", "alice", "off")
    err = error_of(r, "RG.TRIGGER", "alicetrig2")
    assert "disabled" in err, err
    r.execute_command("ACL", "SETUSER", "alice", "on")
    assert r.execute_command("RG.TRIGGER", "alicetrig2") == ["ran"]
    assert_healthy(server, r)


def test_a_user_deleted_while_its_execution_runs(server, r, t):
    alice = t["alice"]
    eid = pyexec(alice, "GB('ShardsIDReader').foreach(lambda x: [execute('INCR', 'a:n') for _ in range(200000)]).run()", "UNBLOCKING")
    time.sleep(0.05)
    r.execute_command("ACL", "DELUSER", "alice")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ex = r.execute_command("RG.GETEXECUTION", eid)
        if ex[0][3][1] in ("done", b"done"):
            break
        time.sleep(0.05)
    errors = r.execute_command("RG.GETRESULTS", eid)[1]
    assert any("no longer exists" in e for e in errors), errors
    assert_healthy(server, r)


def test_scripts_cannot_change_acl_users_even_as_default(server, r, t):
    pyexec(t["alice"], "GB('CommandReader').map(lambda x: execute('GET', 'a:k')).register(trigger='t3', mode='sync')")
    for code in ["execute('ACL', 'DELUSER', 'alice')", "execute('ACL', 'SETUSER', 'dave', '+@all')"]:
        err = pyexec_error(r, code)
        assert "not allowed" in err, err
    assert r.execute_command("RG.TRIGGER", "t3") == ["None"]
    assert "NOPERM" in error_of_raw(t["dave"], "CONFIG", "SET", "maxmemory", "1")
    assert_healthy(server, r)


def error_of_raw(client, *command):
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError as e:
        return "NOPERM " + str(e)
    except redis.ResponseError as e:
        return str(e)
    raise AssertionError("expected an error")


# --- command hooks are an administrator's power ------------------------------------------------

@pytest.mark.parametrize("who", ["alice", "dave", "carol"])
@pytest.mark.parametrize("registration", [
    "GB('CommandReader').map(lambda x: 'forged').register(hook='get', mode='sync')",
    "GB('CommandReader').map(lambda x: 'x').register(hook='acl', mode='sync')",
    "GB().foreach(lambda x: override_reply('forged')).register(prefix='*', eventTypes=['keymiss'], commands=['get'], mode='sync')",
], ids=["hook-get", "hook-acl", "keymiss-get"])
def test_tenants_cannot_hook_commands(server, r, t, who, registration):
    err = pyexec_error(t[who], registration)
    assert "administrator" in err or "never" in err or "no permissions" in err, err
    assert r.execute_command("RG.DUMPREGISTRATIONS") == []
    t["bob"].set("b:k", "real")
    assert t["bob"].get("b:k") == "real"
    assert t["bob"].get("b:missing") is None
    assert_healthy(server, r)


@pytest.mark.parametrize("command", ["acl", "auth", "hello", "config", "client", "multi", "exec", "eval", "evalsha",
                                     "fcall", "function", "script", "module", "shutdown", "debug", "rg.pyexecute",
                                     "rg.unregister", "rg.configset"])
def test_security_commands_cannot_be_hooked_even_by_default(server, r, t, command):
    # RedisGears' own checks (noscript commands, commands without keys) answer first where they
    # refuse; gearbox's rule refuses the rest (e.g. a hook on an RG.* command)
    refusals = ("never", "not allowed inside a script", "none positive first key", "moveable keys")
    err = pyexec_error(r, f"GB('CommandReader').map(lambda x: 'x').register(hook={command!r}, mode='sync')")
    assert any(text in err for text in refusals), err
    if command.startswith("rg."):
        assert "never" in err, err
    err = pyexec_error(r, f"GB().register(prefix='*', commands=['set', {command!r}], mode='sync')")
    assert any(text in err for text in refusals), err
    assert r.execute_command("RG.DUMPREGISTRATIONS") == []
    assert_healthy(server, r)


def test_an_operator_designated_admin_may_hook(r, t):
    pyexec(t["ops"], "GB('CommandReader').map(lambda x: 'hooked').register(hook='get', mode='sync')")
    assert t["bob"].get("b:k") == "hooked"


# --- atomic() can never freeze the server ---------------------------------------------------

def test_an_atomic_block_left_open_is_closed_with_its_step(server, r, t):
    results, errors = run(t["alice"], "GB('ShardsIDReader').foreach(lambda x: atomic().__enter__()).run()")
    assert any("left open" in e for e in errors), errors
    assert_healthy(server, r)
    # and the lock is really free: another execution can take it (and is closed the same way)
    errors = run(t["alice"], "GB('ShardsIDReader').foreach(lambda x: atomic().__enter__()).run()")[1]
    assert any("left open" in e for e in errors), errors
    assert_healthy(server, r)


def test_a_loop_inside_atomic_is_stopped_at_script_timeout(server, r, t):
    r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "500")
    code = "def spin(x):\n    with atomic():\n        while True:\n            pass\nGB('ShardsIDReader').foreach(spin).run()"
    eid = pyexec(t["alice"], code, "UNBLOCKING")
    time.sleep(0.1)
    start = time.monotonic()
    probe = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10)
    assert probe.ping()
    assert time.monotonic() - start < 3.0, "the server stayed frozen past ScriptTimeoutMS"
    deadline = time.monotonic() + 10
    while r.execute_command("RG.GETEXECUTION", eid)[0][3][1] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    errors = r.execute_command("RG.GETRESULTS", eid)[1]
    assert any("ScriptTimeoutMS" in e for e in errors), errors
    assert_healthy(server, r)


def test_atomic_is_refused_in_a_thread_the_script_started(server, r, t, mode):
    if mode == "wasm":
        pytest.skip("wasm guests have no threads: nothing to refuse")
    code = ("import threading\nout = []\n"
            "def grab():\n    try:\n        atomic().__enter__()\n        out.append('took it')\n"
            "    except Exception as e:\n        out.append(str(e))\n"
            "th = threading.Thread(target=grab)\nth.start()\nth.join()\n"
            "GB('ShardsIDReader').map(lambda x: out[0]).run()")
    results, errors = run(t["alice"], code)
    assert results and "await is not allow inside atomic block" in results[0], (results, errors)
    assert_healthy(server, r)


def test_await_inside_atomic_cannot_hold_the_server(server, r, t):
    """atomic() inside a coroutine is refused in both runtimes (RedisGears' rule), before the
    lock is taken; behind it, native mode refuses a block on the coroutine loop's thread and wasm
    mode stops a block held past ScriptTimeoutMS."""
    r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "500")
    code = ("import asyncio\n"
            "async def f(x):\n    with atomic():\n        await asyncio.sleep(3)\n    return 1\n"
            "GB('ShardsIDReader').map(f).run()")
    start = time.monotonic()
    results, errors = run(t["alice"], code)
    assert time.monotonic() - start < 2.5
    assert results == [] and errors, (results, errors)
    assert errors == ["await is not allow inside atomic block"], errors
    assert_healthy(server, r)


# --- writes are refused where a Lua script's would be ------------------------------------------

def test_writes_under_oom_are_refused_like_a_scripts(server, r, t):
    r.execute_command("CONFIG", "SET", "maxmemory", "1")
    try:
        err = pyexec_error(t["alice"], "execute('SET', 'a:big', 'x' * 1000)")
        assert "OOM" in err, err
        assert pyexec(t["alice"], "GB('ShardsIDReader').map(lambda x: execute('GET', 'a:none')).run()") == [["None"], []]
    finally:
        r.execute_command("CONFIG", "SET", "maxmemory", "0")
    assert_healthy(server, r)


def test_writes_on_a_read_only_replica_are_refused(gears, server, r):
    from events_helpers import start_replica

    replica, rc = start_replica(gears, server)
    err = pyexec_error(rc, "execute('SET', 'k', 'v')")
    assert "READONLY" in err or "read only" in err.lower(), err
    assert rc.get("k") is None
    assert replica.alive() and rc.ping()


def test_a_sync_registration_cannot_lend_its_instance_while_it_holds_redis(server, r):
    """wasm's pause (an execution waiting for an async record lends its session's instance to the
    session's other commands) is refused to a command whose thread holds the Redis lock: a sync
    registration calling it while its own write queues an async execution of the same session
    would let that execution in, which would then wait for the lock the sync one holds, forever.
    Native mode has no pause; the same script sleeps there."""
    make_tenants(server, r)
    code = script("""
        import time
        import _gearbox
        GB().foreach(lambda rec: execute('set', 'b:seen', rec['key'])).register(prefix='b:in*', mode='async_local')
        def pauser(x):
            execute('set', 'b:in1', 'x')
            for _ in range(3):
                getattr(_gearbox, 'pause', lambda ms: time.sleep(ms / 1000))(100)
            return 'paused'
        GB('CommandReader').map(pauser).register(trigger='pauser', mode='sync')
    """)
    bob = server.client(username="bob", password="bobpw")
    assert bob.execute_command("RG.PYEXECUTE", code) == "OK"
    assert bob.execute_command("RG.TRIGGER", "pauser") == ["paused"]
    assert_healthy(server, r)
    wait_until(lambda: bob.get("b:seen") == "b:in1", what="the async execution ran after the sync one")
