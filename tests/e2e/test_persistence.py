"""Registrations across persistence and replication (spec §4, §6.2 #12): they survive DEBUG RELOAD, a
restart from RDB and a restart from AOF with their ids, readers, args and modes, and fire afterwards; new
ids continue above the loaded ones; top-level side effects and run() are not replayed on load while
onRegistered is; callbacks see the registration-time globals; events don't fire while loading; a replica
shows the master's registrations but never fires them."""
import pytest

from events_helpers import (debug_server, register, register_one, registration_ids, restart, rid_num,
                            sessions, start_replica, start_server, stats, summary, trigger, unregister, wait_key)
from gb_helpers import pyexec, script, wait_until

HOW = ["debug_reload", "rdb_restart", "aof_restart"]

REGISTRATIONS = script("""
    dest = 'copy:'
    def copy(x):
        execute('SET', dest + x['key'], x['value'])
    GB(desc='copier').foreach(copy).register(prefix='src:*', mode='sync', eventTypes=['set'], keyTypes=['string'])
    GB().foreach(lambda x: execute('INCR', 'async_hits')).register(prefix='src:*', mode='async_local')
    GB('CommandReader').map(lambda x: dest + '|'.join(x[1:])).register(trigger='t', mode='async')
    GB('CommandReader').map(lambda x: len(x)).register(trigger='ordered', mode='async_local', inorder=True)
""")

COUNTER = script("""
    count = 0
    def bump(x):
        global count
        count += 1
        return count
    GB('CommandReader').map(bump).register(trigger='count', mode='sync')
""")


def gears_server(gears, how):
    if how == "debug_reload":
        return debug_server(gears)
    if how == "aof_restart":
        return start_server(gears, "--appendonly", "yes")
    return start_server(gears)


def reload(srv, c, how):
    """Reload the dataset the `how` way; returns a client of the reloaded server."""
    if how == "debug_reload":
        c.execute_command("DEBUG", "RELOAD")
        return c
    if how == "rdb_restart":
        assert c.save()
    return restart(srv)


@pytest.fixture(params=HOW)
def how(request):
    return request.param


def start(gears, how):
    srv = gears_server(gears, how)
    return srv, srv.client()


def assert_registrations_fire(c, src_key):
    c.set(src_key, "v")
    assert c.get("copy:" + src_key) == "v"
    wait_until(lambda: c.get("async_hits") is not None, what="the async_local registration to fire")
    assert trigger(c, "t", "a", "b") == ["copy:a|b"]
    assert trigger(c, "ordered", "x") == ["2"]


# --- registrations survive ----------------------------------------------------------------------

def test_registrations_survive_reload(gears, how):
    srv, c = start(gears, how)
    register(c, REGISTRATIONS, "ID", "persisted", "DESCRIPTION", "kept")
    before = summary(c)
    assert len(before) == 4
    c = reload(srv, c, how)
    assert summary(c) == before
    session = sessions(c)["persisted"]
    assert session["sessionDescription"] == "kept" and sorted(session["registrations"]) == sorted(before)
    assert_registrations_fire(c, "src:1")


def test_registrations_survive_two_reloads(gears, how):
    srv, c = start(gears, how)
    register(c, REGISTRATIONS)
    before = summary(c)
    c = reload(srv, c, how)
    c = reload(srv, c, how)
    assert summary(c) == before
    assert_registrations_fire(c, "src:2")


def test_new_ids_continue_above_loaded_ones(gears, how):
    srv, c = start(gears, how)
    register(c, REGISTRATIONS)
    loaded = max(rid_num(i) for i in registration_ids(c))
    c = reload(srv, c, how)
    new_id = register_one(c, "GB('CommandReader').register(trigger='later')")
    assert rid_num(new_id) > loaded


def test_unregistered_stays_unregistered_after_reload(gears, how):
    srv, c = start(gears, how)
    register(c, REGISTRATIONS)
    gone = registration_ids(c)[0]
    assert unregister(c, gone) == "OK"
    before = summary(c)
    c = reload(srv, c, how)
    assert summary(c) == before and gone not in before


# --- what is (not) replayed on load -----------------------------------------------------------

def test_top_level_code_not_replayed(gears, how):
    srv, c = start(gears, how)
    register(c, script("""
        execute('INCR', 'boot')
        GB('CommandReader').map(lambda x: 'alive').register(trigger='t', mode='sync')
    """))
    assert c.get("boot") == "1"
    c = reload(srv, c, how)
    assert c.get("boot") == "1"
    assert trigger(c, "t") == ["alive"]


def test_run_of_a_registering_script_not_replayed(gears, how):
    srv, c = start(gears, how)
    pyexec(c, script("""
        GB('CommandReader').map(lambda x: 'alive').register(trigger='t', mode='sync')
        GB('ShardsIDReader').foreach(lambda x: execute('INCR', 'ran')).run()
    """))
    assert c.get("ran") == "1"
    c = reload(srv, c, how)
    assert c.get("ran") == "1"
    assert trigger(c, "t") == ["alive"]


def test_on_registered_replayed(gears, how):
    srv, c = start(gears, how)
    register(c, script("""
        def installed():
            execute('INCR', 'onreg')
        GB().register(prefix='x*', onRegistered=installed)
    """))
    wait_key(c, "onreg", "1")
    c = reload(srv, c, how)
    wait_key(c, "onreg", "2")


def test_globals_revert_to_registration_time(gears, how):
    srv, c = start(gears, how)
    register(c, COUNTER)
    assert [trigger(c, "count") for _ in range(2)] == [["1"], ["2"]]
    c = reload(srv, c, how)
    assert [trigger(c, "count") for _ in range(2)] == [["1"], ["2"]]


def test_events_do_not_fire_while_loading_aof(gears):
    srv, c = start(gears, "aof_restart")
    register(c, "GB().foreach(lambda x: execute('INCR', 'hits')).register(prefix='src:*', mode='sync')")
    c.set("src:1", "v")
    c.set("src:2", "v")
    assert c.get("hits") == "2"
    c = restart(srv)
    assert c.get("hits") == "2"  # replaying SET src:* from the AOF did not fire the registration
    c.set("src:3", "v")
    assert c.get("hits") == "3"


# --- replication ------------------------------------------------------------------------------

def test_replica_shows_registrations_but_does_not_fire_them(gears, server, r):
    register(r, REGISTRATIONS)  # before the replica attaches: arrives with the full sync
    replica, rc = start_replica(gears, server)
    register(r, "GB().foreach(lambda x: execute('INCR', 'late_hits')).register(prefix='src:*', mode='sync')")
    master_regs = summary(r)
    assert len(master_regs) == 5
    wait_until(lambda: summary(rc) == master_regs, timeout=20, what="the replica to show the master's registrations")
    for i in range(3):
        r.set(f"src:{i}", "v")
    wait_key(rc, "late_hits", "3", timeout=20)  # the master's callback writes are replicated
    assert rc.get("copy:src:2") == "v"
    for reg_id in master_regs:
        if master_regs[reg_id][0] == "KeysReader":
            wait_until(lambda: stats(r, reg_id)["numTriggered"] == 3, what=f"master stats of {reg_id}")
            assert stats(rc, reg_id)["numTriggered"] == 0, f"{reg_id} fired on the replica"
    assert rc.get("late_hits") == "3"


def test_replica_follows_unregister(gears, server, r):
    replica, rc = start_replica(gears, server)
    keep = register_one(r, "GB('CommandReader').register(trigger='keep')")
    gone = register_one(r, "GB().register(prefix='gone*', mode='sync')")
    wait_until(lambda: set(registration_ids(rc)) == {keep, gone}, timeout=20, what="both on the replica")
    assert unregister(r, gone) == "OK"
    wait_until(lambda: registration_ids(rc) == [keep], timeout=20, what="the unregister to reach the replica")
