"""execute() runs with the ACL permissions of the user who ran RG.PYEXECUTE."""
import pytest
import redis

from gb_helpers import pyexec, pyexec_error, run, run_ok


def looks_like_permission_error(text):
    t = text.lower()
    return any(w in t for w in ("noperm", "permission", "acl", "access", "not allowed"))


@pytest.fixture
def alice(server, r):
    """User 'alice': all commands, but keys only under allowed:* (read-write) and ro:* (read-only)."""
    assert r.execute_command("ACL", "SETUSER", "alice", "on", ">alicepw", "resetkeys",
                             "~allowed:*", "%R~ro:*", "&*", "+@all") == "OK"
    return server.client(username="alice", password="alicepw")


def test_alice_can_run_scripts(alice):
    assert pyexec(alice, "GB('ShardsIDReader').run()") == [["1"], []]


def test_allowed_key_is_written_from_step(alice, r):
    run_ok(alice, "GB('ShardsIDReader').foreach(lambda x: execute('SET', 'allowed:k', '1')).run()")
    assert r.get("allowed:k") == "1"


def test_forbidden_key_write_from_step_goes_to_errors(alice, r):
    results, errors = run(alice, "GB('ShardsIDReader').map(lambda x: execute('SET', 'forbidden:k', '1')).run()")
    assert results == []
    assert len(errors) == 1 and looks_like_permission_error(errors[0]), errors
    assert r.get("forbidden:k") is None


def test_same_script_as_default_user_writes(r):
    run_ok(r, "GB('ShardsIDReader').map(lambda x: execute('SET', 'forbidden:k', '1')).run()")
    assert r.get("forbidden:k") == "1"


def test_forbidden_key_write_at_top_level_is_error(alice, r):
    err = pyexec_error(alice, "execute('SET', 'forbidden:top', '1')")
    assert looks_like_permission_error(err), err
    assert r.get("forbidden:top") is None


def test_forbidden_key_read_from_step_goes_to_errors(alice, r):
    r.set("secret:k", "hidden")
    results, errors = run(alice, "GB('ShardsIDReader').map(lambda x: execute('GET', 'secret:k')).run()")
    assert results == [] and len(errors) == 1
    assert "hidden" not in errors[0]


def test_read_only_key_selector(alice, r):
    r.set("ro:k", "readable")
    assert run_ok(alice, "GB('ShardsIDReader').map(lambda x: execute('GET', 'ro:k')).run()") == ["readable"]
    results, errors = run(alice, "GB('ShardsIDReader').map(lambda x: execute('SET', 'ro:k', 'changed')).run()")
    assert results == [] and len(errors) == 1
    assert r.get("ro:k") == "readable"


def test_forbidden_command_from_step(server, r):
    r.execute_command("ACL", "SETUSER", "bob", "on", ">bobpw", "~*", "&*", "+@all", "-flushall")
    bob = server.client(username="bob", password="bobpw")
    r.set("survivor", "1")
    results, errors = run(bob, "GB('ShardsIDReader').map(lambda x: execute('FLUSHALL')).run()")
    assert results == [] and len(errors) == 1 and looks_like_permission_error(errors[0]), errors
    assert r.get("survivor") == "1"


def test_unblocking_execution_keeps_user_permissions(alice, r):
    eid = pyexec(alice, "GB('ShardsIDReader').map(lambda x: execute('SET', 'forbidden:bg', '1')).run()", "UNBLOCKING")
    results, errors = r.execute_command("RG.GETRESULTSBLOCKING", eid)
    assert results == [] and len(errors) == 1
    assert r.get("forbidden:bg") is None


def test_keysreader_as_restricted_user_cannot_write_forbidden_key(alice, r):
    r.set("allowed:src", "v")
    results, errors = run(alice, "GB().foreach(lambda x: execute('SET', 'forbidden:copy', x['value'])).run('allowed:*')")
    assert len(errors) == 1
    assert r.get("forbidden:copy") is None


def test_user_permissions_do_not_leak_to_next_script(alice, r):
    run(alice, "GB('ShardsIDReader').map(lambda x: execute('SET', 'forbidden:k', '1')).run()")
    run_ok(r, "GB('ShardsIDReader').map(lambda x: execute('SET', 'forbidden:k', 'default')).run()")
    assert r.get("forbidden:k") == "default"


def test_user_without_pyexecute_permission_is_refused(server, r):
    r.execute_command("ACL", "SETUSER", "carol", "on", ">carolpw", "~*", "&*", "+@all", "-rg.pyexecute")
    carol = server.client(username="carol", password="carolpw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        carol.execute_command("RG.PYEXECUTE", "execute('SET', 'carol', '1')")
    assert r.get("carol") is None


def test_keysreader_only_reads_keys_the_user_may_read(alice, r):
    """A tenant's KeysReader does not see the values of keys its ACL forbids (gearbox reads keys
    as the session's user; they are left out of the records)."""
    r.mset({"allowed:a": "1", "ro:b": "2", "forbidden:c": "3"})
    r.hset("allowed:h", "f", "v")
    records = run_ok(alice, "GB().map(lambda r: r['key']).run()")
    assert sorted(records) == ["allowed:a", "allowed:h", "ro:b"]
    assert sorted(run_ok(r, "GB().map(lambda r: r['key']).run()")) == ["allowed:a", "allowed:h", "forbidden:c", "ro:b"]
