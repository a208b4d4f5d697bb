"""Security III: the runtime policy. Loaded with `NativeUsers ops`, one server runs both runtimes:
`ops` gets `mode`'s runtime (and may pick the other with RUNTIME), every other user gets wasm and
may not pick native. Each test runs with `mode native` and `mode wasm` as the named users'
default. Without NativeUsers a server runs one runtime, as before."""
import pytest

from conftest import GearsServer
from events_helpers import _start, restart
from gb_helpers import pyexec, script, wait_until
from security_helpers import assert_healthy, error_of, make_tenants

# ACL users from the configuration, so a restarted server has them again.
USERS = ["--user", "alice", "on", ">alicepw", "~a:*", "+@all", "--user", "ops", "on", ">opspw", "~*", "&*", "+@all"]


def policy_server(gears, *redis_args, native_users="ops"):
    gears.ensure_mode_available()
    srv = GearsServer(gears._dir(), ["mode", gears.mode, "NativeUsers", native_users], redis_args=list(redis_args))
    gears.servers.append(srv)
    return _start(srv)


def entries(reply):
    return [dict(zip(e[::2], e[1::2])) for e in reply]


def runtimes_by_session(client):
    return {e["ID"]: e["runtime"] for e in entries(client.execute_command("RG.PYDUMPSESSIONS", "OWNER"))}


def trig(name):
    return f"GB('CommandReader').map(lambda x: 'ran').register(trigger={name!r})"


def test_named_users_get_the_mode_and_everyone_else_gets_wasm(gears, mode):
    srv = policy_server(gears)
    r = srv.client()
    t = make_tenants(srv, r)
    assert pyexec(t["ops"], trig("t_ops"), "ID", "ops1") == "OK"
    assert pyexec(t["alice"], trig("t_alice"), "ID", "alice1") == "OK"
    assert pyexec(r, trig("t_default"), "ID", "default1") == "OK"
    assert runtimes_by_session(t["ops"]) == {"ops1": mode, "alice1": "wasm", "default1": "wasm"}
    assert runtimes_by_session(t["alice"]) == {"alice1": "wasm"}
    regs = entries(r.execute_command("RG.DUMPREGISTRATIONS"))
    assert sorted(e["runtime"] for e in regs) == sorted([mode, "wasm", "wasm"]), regs
    info = r.info("rg")
    assert info["rg_mode"] == mode and info["rg_native_users"] == "ops", info
    for client, name in ((t["ops"], "t_ops"), (t["alice"], "t_alice"), (r, "t_default")):
        assert client.execute_command("RG.TRIGGER", name) == ["ran"]
    assert "gearbox loaded: native and wasm sessions (native allowed to ops" in srv.log_text()


def test_runtime_picks_within_the_policy(gears, mode):
    srv = policy_server(gears)
    r = srv.client()
    t = make_tenants(srv, r)
    assert pyexec(t["ops"], "GB('CommandReader').register(trigger='n')", "RUNTIME", "native", "ID", "n") == "OK"
    assert pyexec(t["ops"], "GB('CommandReader').register(trigger='w')", "RUNTIME", "WASM", "ID", "w") == "OK"
    assert runtimes_by_session(t["ops"]) == {"n": "native", "w": "wasm"}
    assert pyexec(t["alice"], "x = 1", "RUNTIME", "wasm") == "OK"
    for how in (("RUNTIME", "native"), ("RUNTIME", "Native", "ID", "sneaky"), ("ID", "x", "RUNTIME", "native")):
        # (redis-py drops the NOPERM prefix of the error line.)
        err = error_of(t["alice"], "RG.PYEXECUTE", "x = 1", *how)
        assert err == "gearbox: the ACL user 'alice' may not run native sessions on this server (NativeUsers)", err
    # An UPGRADE of alice's wasm session cannot move it to native either.
    assert pyexec(t["alice"], "GB('CommandReader').register(trigger='a_up')", "ID", "up") == "OK"
    err = error_of(t["alice"], "RG.PYEXECUTE", "GB('CommandReader').register(trigger='a_up')", "ID", "up", "UPGRADE", "RUNTIME", "native")
    assert "may not run native sessions" in err, err
    assert runtimes_by_session(t["alice"]) == {"up": "wasm"}
    assert error_of(r, "RG.PYEXECUTE", "x = 1", "RUNTIME", "jvm") == "RUNTIME must be 'native' or 'wasm', got 'jvm'"
    assert error_of(r, "RG.PYEXECUTE", "x = 1", "RUNTIME") == "RUNTIME must be 'native' or 'wasm', got ''"
    assert_healthy(srv, r)


def test_an_untrusted_descriptor_sweep_beside_a_native_session_changes_nothing(gears):
    srv = policy_server(gears)
    r = srv.client()
    t = make_tenants(srv, r)
    watcher = srv.client()
    assert watcher.ping()
    # The administrator's session runs natively: a sync registration on Redis' main thread.
    native = "GB('CommandReader').map(lambda x: execute('INCR', 'ops:n')).register(trigger='count', mode='sync')"
    assert pyexec(t["ops"], native, "RUNTIME", "native") == "OK"
    sweep = script("""
        import os
        for fd in range(0, 1024):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.closerange(0, 65536)
        except OSError:
            pass
        for fd in range(0, 64):
            try:
                getattr(os, 'dup2', lambda a, b: None)(0, fd)
            except OSError:
                pass
    """)
    reply = t["alice"].execute_command("RG.PYEXECUTE", sweep)
    assert reply == "OK", reply
    assert runtimes_by_session(r) and set(runtimes_by_session(t["alice"]).values()) <= {"wasm"}
    assert t["ops"].execute_command("RG.TRIGGER", "count") == ["1"]
    assert watcher.ping() and watcher.set("a:still", "open")
    assert_healthy(srv, r)


def test_each_session_keeps_its_runtime_across_a_restart(gears, mode):
    srv = policy_server(gears, *USERS)
    r = srv.client()
    ops = srv.client(username="ops", password="opspw")
    alice = srv.client(username="alice", password="alicepw")
    assert pyexec(ops, trig("o_native"), "ID", "on", "RUNTIME", "native") == "OK"
    assert pyexec(ops, trig("o_wasm"), "ID", "ow", "RUNTIME", "wasm") == "OK"
    assert pyexec(alice, trig("a_wasm"), "ID", "aw") == "OK"
    assert r.save()
    r = restart(srv)
    assert runtimes_by_session(r) == {"on": "native", "ow": "wasm", "aw": "wasm"}
    ops = srv.client(username="ops", password="opspw")
    assert ops.execute_command("RG.TRIGGER", "o_native") == ["ran"]
    assert ops.execute_command("RG.TRIGGER", "o_wasm") == ["ran"]


def test_a_restored_session_never_runs_natively_for_a_user_the_policy_does_not_name(gears, mode):
    # Made on a server where alice may run natively, restored on one where she may not.
    srv = policy_server(gears, *USERS, native_users="alice,ops")
    alice = srv.client(username="alice", password="alicepw")
    assert pyexec(alice, trig("a_native"), "ID", "an", "RUNTIME", "native") == "OK"
    assert srv.client().save()
    srv.module_args = ["mode", gears.mode, "NativeUsers", "ops"]
    r = restart(srv)
    assert runtimes_by_session(r) == {"an": "wasm"}
    wait_until(lambda: "which this server does not give that user; it runs in wasm mode" in srv.log_text(), what="the log line")
    assert srv.client(username="alice", password="alicepw").execute_command("RG.TRIGGER", "a_native") == ["ran"]


def test_without_native_users_the_server_runs_one_runtime_as_before(server, r, mode):
    other = "wasm" if mode == "native" else "native"
    assert pyexec(r, "x = 1", "RUNTIME", mode) == "OK"
    err = error_of(r, "RG.PYEXECUTE", "x = 1", "RUNTIME", other)
    assert err == f"gearbox: this server does not run {other} sessions (load it with NativeUsers to run both runtimes)", err
    assert pyexec(r, trig("plain"), "ID", "p") == "OK"
    assert "runtime" not in entries(r.execute_command("RG.DUMPREGISTRATIONS"))[0], "RedisGears' shape on a single-runtime server"
    assert runtimes_by_session(r) == {"p": mode}
    assert "rg_native_users" not in r.info("rg")


@pytest.mark.parametrize("users", ["a,,b", "a b", ","])
def test_a_malformed_native_users_list_fails_the_load(gears, users):
    fail = gears.load_failure("NativeUsers", users)
    assert fail.returncode != 0
    assert "NativeUsers must be ACL user names separated by commas" in fail.log, fail.log[-2000:]


def test_native_users_cannot_be_changed_at_run_time(r):
    err = r.execute_command("RG.CONFIGSET", "NativeUsers", "alice")
    assert err and "not modifiable" in str(err[0]), err
