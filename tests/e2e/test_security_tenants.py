"""Security II: every session, registration and execution belongs to the user who made it
(both modes). A tenant sees and controls only its own; another owner's id answers exactly as an
unknown id does; administrators see everything; shared triggers run with the caller's rights
unless they ask for their owner's."""
import time

import pytest

from gb_helpers import pyexec, pyexec_error
from security_helpers import assert_healthy, error_of, make_tenants


@pytest.fixture
def t(server, r):
    return make_tenants(server, r)


def trigger(name, code="lambda x: 'ran'", extra=""):
    return f"GB('CommandReader').map({code}).register(trigger={name!r}, mode='sync'{extra})"


def reg_ids(client):
    return sorted(e[1] for e in client.execute_command("RG.DUMPREGISTRATIONS"))


def register(client, code, *args):
    """RG.PYEXECUTE a script that registers one thing; returns the new registration's id."""
    before = set(reg_ids(client))
    assert pyexec(client, code, *args) == "OK"
    (new,) = set(reg_ids(client)) - before
    return new


def session_ids(client, *args):
    return sorted(e[1] for e in client.execute_command("RG.PYDUMPSESSIONS", *args))


def _done(client, eid):
    return client.execute_command("RG.GETEXECUTION", eid)[0][3][1] == "done"


def test_registration_lists_are_private(server, r, t):
    a = register(t["alice"], trigger("ta"))
    b = register(t["bob"], trigger("tb"))
    assert reg_ids(t["alice"]) == [a]
    assert reg_ids(t["bob"]) == [b]
    assert reg_ids(r) == sorted([a, b])
    assert reg_ids(t["ops"]) == sorted([a, b])
    assert_healthy(server, r)


def test_session_lists_are_private(server, r, t):
    pyexec(t["alice"], trigger("ta"), "ID", "sa")
    pyexec(t["bob"], trigger("tb"), "ID", "sb")
    assert session_ids(t["alice"]) == ["sa"]
    assert session_ids(t["bob"], "VERBOSE") == ["sb"]
    assert session_ids(r) == ["sa", "sb"]
    listed = t["alice"].execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "sb")
    unknown = t["alice"].execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "nosuch")
    assert listed[0] == unknown[0].replace("nosuch", "sb")


def test_executions_are_private_and_answer_as_unknown(server, r, t):
    slow = "import time\nGB('ShardsIDReader').foreach(lambda x: time.sleep(0.3)).run()"
    bobs = pyexec(t["bob"], slow, "UNBLOCKING")
    unknown = bobs[:-1] + "9999"
    for command in ["RG.GETEXECUTION", "RG.GETRESULTS", "RG.GETRESULTSBLOCKING", "RG.DROPEXECUTION", "RG.ABORTEXECUTION"]:
        assert error_of(t["alice"], command, bobs) == error_of(t["alice"], command, unknown), command
    assert [e[1] for e in t["alice"].execute_command("RG.DUMPEXECUTIONS")] == []
    assert bobs in [e[1] for e in t["bob"].execute_command("RG.DUMPEXECUTIONS")]
    assert bobs in [e[1] for e in r.execute_command("RG.DUMPEXECUTIONS")]
    deadline = time.monotonic() + 10
    while not _done(t["bob"], bobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t["bob"].execute_command("RG.GETRESULTS", bobs) == [["1"], []]
    assert error_of(t["alice"], "RG.GETRESULTS", bobs) == error_of(t["alice"], "RG.GETRESULTS", unknown)
    assert t["bob"].execute_command("RG.DROPEXECUTION", bobs) == "OK"
    assert_healthy(server, r)


def test_registrations_are_controlled_by_their_owner_only(server, r, t):
    b = register(t["bob"], trigger("tb"))
    unknown = b[:-1] + "9999"
    assert error_of(t["alice"], "RG.UNREGISTER", b) == error_of(t["alice"], "RG.UNREGISTER", unknown)
    assert error_of(t["alice"], "RG.PAUSEREGISTRATIONS", b) == error_of(t["alice"], "RG.PAUSEREGISTRATIONS", unknown).replace(unknown, b)
    assert reg_ids(r) == [b]
    t["bob"].execute_command("RG.TRIGGER", "tb")
    assert t["alice"].execute_command("RG.CLEARREGISTRATIONSSTATS") == "OK"
    assert r.execute_command("RG.DUMPREGISTRATIONS")[0][7][3] == 1, "alice cleared bob's stats"
    assert t["bob"].execute_command("RG.UNREGISTER", b) == "OK"
    assert_healthy(server, r)


def test_session_ids_are_per_owner(server, r, t):
    pyexec(t["alice"], trigger("ta", "lambda x: 'alice-v1'"), "ID", "same")
    pyexec(t["bob"], trigger("tb", "lambda x: 'bob'"), "ID", "same")
    # alice's UPGRADE reaches only her own session "same"
    pyexec(t["alice"], trigger("ta", "lambda x: 'alice-v2'"), "ID", "same", "UPGRADE")
    assert r.execute_command("RG.TRIGGER", "ta") == ["alice-v2"]
    assert r.execute_command("RG.TRIGGER", "tb") == ["bob"]
    # REPLACE_WITH another owner's session id is as good as a missing one
    err = pyexec_error(t["alice"], trigger("tc"), "REPLACE_WITH", "bobonly")
    pyexec(t["bob"], trigger("td"), "ID", "bobonly")
    assert pyexec_error(t["alice"], trigger("tc"), "REPLACE_WITH", "bobonly") == err
    assert r.execute_command("RG.TRIGGER", "td") == ["ran"]
    assert_healthy(server, r)


def test_another_owners_trigger_is_unknown_unless_shared(server, r, t):
    t["bob"].set("b:secret", "hidden")
    pyexec(t["bob"], trigger("bobget", "lambda x: execute('GET', 'b:secret')"))
    assert error_of(t["alice"], "RG.TRIGGER", "bobget") == error_of(t["alice"], "RG.TRIGGER", "nosuchtrigger")
    assert t["bob"].execute_command("RG.TRIGGER", "bobget") == ["hidden"]
    assert_healthy(server, r)


def test_a_shared_trigger_runs_with_the_callers_rights(server, r, t):
    t["bob"].set("b:secret", "hidden")
    pyexec(t["bob"], trigger("bobshared", "lambda x: execute('GET', 'b:secret')", ", shared=True"))
    err = error_of(t["alice"], "RG.TRIGGER", "bobshared")
    assert "hidden" not in err and "acl verification failed" in err, err
    assert t["bob"].execute_command("RG.TRIGGER", "bobshared") == ["hidden"]
    # the caller's own keys are reachable through it
    pyexec(t["bob"], trigger("bobincr", "lambda x: execute('INCR', x[1])", ", shared=True"))
    assert t["alice"].execute_command("RG.TRIGGER", "bobincr", "a:counter") == ["1"]
    assert "acl verification failed" in error_of(t["alice"], "RG.TRIGGER", "bobincr", "b:counter")
    assert_healthy(server, r)


def test_a_shared_trigger_with_owner_rights_acts_as_its_owner(server, r, t):
    t["bob"].set("b:count", "0")
    pyexec(t["bob"], trigger("bobdefiner", "lambda x: execute('INCR', 'b:count')", ", shared=True, rights='owner'"))
    assert t["alice"].execute_command("RG.TRIGGER", "bobdefiner") == ["1"]
    assert t["bob"].get("b:count") == "1"


def test_shared_and_rights_are_checked(t):
    assert "rights" in pyexec_error(t["alice"], trigger("x1", extra=", rights='root'"))
    assert "shared" in pyexec_error(t["alice"], trigger("x2", extra=", shared='yes'"))


def test_key_names_are_private_in_readers(server, r, t):
    t["alice"].set("a:1", "x")
    t["bob"].set("b:1", "y")
    t["bob"].set("b:2", "y")
    for reader in ["KeysOnlyReader", "KeysReader"]:
        got = pyexec(t["alice"], f"GB({reader!r}).map(lambda r: r if isinstance(r, str) else r['key']).run()")
        assert got == [["a:1"], []], (reader, got)
    got = pyexec(t["alice"], "GB('KeysReader').map(lambda r: r['key']).run(readValue=False)")
    assert got == [["a:1"], []], got
    assert pyexec(t["alice"], "GB().count().run()") == [["1"], []]
    assert pyexec(r, "GB().count().run()")[0] == ["4"]  # + the canary
    assert pyexec(t["alice"], "execute('KEYS', '*')") == "OK"
    got = pyexec(t["alice"], "GB('ShardsIDReader').map(lambda x: sorted(execute('KEYS', '*'))).run()")
    assert got == [["['a:1']"], []], got


def test_key_events_are_private(server, r, t):
    pyexec(t["alice"], "GB().foreach(lambda x: execute('INCR', 'a:heard')).register(prefix='*', eventTypes=['set'], readValue=False, mode='sync')")
    t["bob"].set("b:k", "1")
    r.set("other", "1")
    assert t["alice"].get("a:heard") is None
    t["alice"].set("a:k", "1")
    assert t["alice"].get("a:heard") == "1"
    assert_healthy(server, r)


def test_info_shows_what_each_owner_uses(server, r, t):
    pyexec(t["alice"], trigger("ta"))
    pyexec(t["alice"], trigger("tb"))
    pyexec(t["bob"], trigger("tc"))
    info = r.info("rg")
    assert {k: v for k, v in info["rg_alice"].items() if k != "memory"} == {"sessions": 2, "registrations": 2, "executions": 0}, info
    assert {k: v for k, v in info["rg_bob"].items() if k != "memory"} == {"sessions": 1, "registrations": 1, "executions": 0}, info
    assert info["rg_alice"]["memory"] > 0 and info["rg_bob"]["memory"] > 0, info


def test_pydumpsessions_owner_option_names_each_sessions_user(r, t):
    pyexec(t["alice"], trigger("ta"), "ID", "sa")
    pyexec(t["bob"], trigger("tb"), "ID", "sb")
    entries = [dict(zip(e[::2], e[1::2])) for e in r.execute_command("RG.PYDUMPSESSIONS", "OWNER")]
    assert {e["ID"]: e["owner"] for e in entries} == {"sa": "alice", "sb": "bob"}, entries
    assert all(e["memoryBytes"] > 0 for e in entries), entries
    mine = [dict(zip(e[::2], e[1::2])) for e in t["alice"].execute_command("RG.PYDUMPSESSIONS", "OWNER")]
    assert [e["owner"] for e in mine] == ["alice"]
    assert len(r.execute_command("RG.PYDUMPSESSIONS")[0]) == 16, "the RedisGears shape without OWNER"
