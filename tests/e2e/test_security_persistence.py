"""Security I/II across persistence and replication (both modes): a restored or replicated session
acts as, and belongs to, the user recorded when it was made; if that user does not exist there,
the session stays down with a log line (it never runs as `default`)."""
import pytest

from events_helpers import restart, start_server
from gb_helpers import pyexec, wait_until
from security_helpers import error_of

# ACL users from the configuration, so a restarted server has them again.
BOB = ["--user", "bob", "on", ">bobpw", "~b:*", "+@all"]
USERS = ["--user", "alice", "on", ">alicepw", "~a:*", "+@all", *BOB]
ALICE_TRIGGER = "GB('CommandReader').map(lambda x: execute('INCR', 'a:fired')).register(trigger='alicetrig', mode='sync')"
ALICE_KEYS = "GB().foreach(lambda x: execute('INCR', 'a:heard')).register(prefix='a:k*', mode='sync')"


def _clients(srv):
    return (srv.client(), srv.client(username="alice", password="alicepw"), srv.client(username="bob", password="bobpw"))


def _regs(client):
    return [e[1] for e in client.execute_command("RG.DUMPREGISTRATIONS")]


@pytest.mark.parametrize("how", ["debug_reload", "rdb_restart", "aof_restart"])
def test_ownership_survives_reload_and_restart(gears, how):
    extra = {"debug_reload": ["--enable-debug-command", "local"], "rdb_restart": [], "aof_restart": ["--appendonly", "yes"]}[how]
    srv = start_server(gears, *USERS, *extra)
    r, alice, bob = _clients(srv)
    pyexec(alice, ALICE_TRIGGER)
    pyexec(alice, ALICE_KEYS)
    if how == "debug_reload":
        r.execute_command("DEBUG", "RELOAD")
    else:
        if how == "rdb_restart":
            assert r.save()
        r = restart(srv)
        _, alice, bob = _clients(srv)
    assert len(_regs(alice)) == 2
    assert _regs(bob) == []
    assert len(_regs(r)) == 2
    assert error_of(bob, "RG.TRIGGER", "alicetrig") == error_of(bob, "RG.TRIGGER", "nosuch")
    assert alice.execute_command("RG.TRIGGER", "alicetrig") == ["1"]
    # still acting as alice: her key ACL holds for the restored callback
    pyexec(alice, "GB('CommandReader').map(lambda x: execute('SET', 'b:stolen', '1')).register(trigger='steal', mode='sync')")
    assert "acl verification failed" in error_of(alice, "RG.TRIGGER", "steal")
    assert r.get("b:stolen") is None
    alice.set("a:k1", "v")
    assert alice.get("a:heard") == "1"


def test_a_restored_session_whose_user_is_gone_stays_down(gears):
    srv = start_server(gears, *USERS)
    r, alice, _ = _clients(srv)
    pyexec(alice, ALICE_TRIGGER)
    assert r.save()
    srv.redis_args = list(BOB)  # alice is gone after the restart
    r = restart(srv)
    assert _regs(r) == []
    assert "ACL user 'alice'" in srv.log_text() and "no longer exists" in srv.log_text()
    assert r.get("a:fired") is None
    assert r.ping()


def test_a_replica_runs_sessions_as_their_owner(gears):
    master = start_server(gears, *USERS)
    r, alice, _ = _clients(master)
    replica = start_server(gears, *USERS)
    rc = replica.client()
    assert rc.execute_command("REPLICAOF", "127.0.0.1", master.port) == "OK"
    wait_until(lambda: rc.info("replication").get("master_link_status") == "up", timeout=20, what="link")
    pyexec(alice, ALICE_TRIGGER)
    wait_until(lambda: len(_regs(rc)) == 1, timeout=20, what="the replica to install alice's registration")
    ralice = replica.client(username="alice", password="alicepw")
    rbob = replica.client(username="bob", password="bobpw")
    assert len(_regs(ralice)) == 1
    assert _regs(rbob) == []


def test_a_replica_without_the_user_keeps_the_session_down(gears):
    master = start_server(gears, *USERS)
    r, alice, _ = _clients(master)
    replica = start_server(gears)  # no alice here
    rc = replica.client()
    assert rc.execute_command("REPLICAOF", "127.0.0.1", master.port) == "OK"
    wait_until(lambda: rc.info("replication").get("master_link_status") == "up", timeout=20, what="link")
    pyexec(alice, ALICE_TRIGGER)
    wait_until(lambda: "alice" in replica.log_text(), timeout=20, what="the replica to log the missing user")
    assert _regs(rc) == []
    assert rc.ping()
