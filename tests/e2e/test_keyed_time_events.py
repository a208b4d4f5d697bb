"""Key-bound time events (`registerTE(seconds, fn, keyName=...)`, spec §2.5, §4): the time event lives
in a key of type rg_timeev; registerTE returns False when the key exists; deleting the key stops it;
it survives DEBUG RELOAD and an RDB restart with the script's registration-time globals (its session
rebuilt from the saved script); a script that fails leaves no key; only a top level may bind a key."""
import time

import pytest
import redis

from events_helpers import debug_server, live_interpreters, restart, start_server
from gb_helpers import pyexec, pyexec_error, run, script, wait_until

KEYED = script("""
    base = int(execute('INCR', 'base'))
    def tick():
        execute('INCR', 'ticks')
        execute('SET', 'seen_base', base)
    created = registerTE(1, tick, keyName='te')
    execute('SET', 'created', str(created))
""")


def ticks(r):
    return int(r.get("ticks") or 0)


def wait_ticks(r, n):
    start = ticks(r)
    wait_until(lambda: ticks(r) >= start + n, timeout=10, what=f"{n} more tick(s)")


def test_the_time_event_lives_in_its_key(r):
    assert pyexec(r, KEYED) == "OK"
    assert r.get("created") == "True"
    assert r.type("te") == "rg_timeev"
    wait_ticks(r, 2)


def test_an_existing_key_is_left_alone_and_registerTE_returns_false(r):
    r.set("te", "mine")
    assert pyexec(r, KEYED) == "OK"
    assert r.get("created") == "False"
    assert r.get("te") == "mine"
    time.sleep(1.5)
    assert ticks(r) == 0


def test_deleting_the_key_stops_the_time_event_and_frees_the_session(r):
    assert pyexec(r, KEYED) == "OK"
    wait_ticks(r, 1)
    assert r.delete("te") == 1
    time.sleep(1.5)
    before = ticks(r)
    time.sleep(2)
    assert ticks(r) == before
    wait_until(lambda: live_interpreters(r) == 0, what="the time event's session to end")


def test_a_failing_script_makes_no_key(r):
    assert "later failure" in pyexec_error(r, KEYED + "raise Exception('later failure')\n")
    assert r.exists("te") == 0
    time.sleep(1.5)
    assert ticks(r) == 0


def test_only_a_top_level_may_bind_a_key(r):
    results, errors = run(r, "GB('PythonReader').map(lambda x: registerTE(1, lambda: 1, keyName='k2')).run(lambda: 1)")
    assert results == [] and "can only be called from a script's top level" in errors[0]
    assert r.exists("k2") == 0


def test_a_non_string_key_name_is_ignored_as_in_redisgears(r):
    assert pyexec(r, "execute('SET', 'ret', str(registerTE(1, lambda: execute('INCR', 'ticks'), keyName=5)))") == "OK"
    assert r.get("ret") == "True"
    wait_ticks(r, 1)


def test_survives_debug_reload_with_registration_time_globals(gears):
    srv = debug_server(gears)
    c = srv.client()
    assert pyexec(c, KEYED) == "OK"
    wait_ticks(c, 1)
    assert c.get("seen_base") == "1"
    c.set("base", 100)
    assert c.execute_command("DEBUG", "RELOAD") == "OK"
    assert c.type("te") == "rg_timeev"
    c.delete("seen_base")
    wait_ticks(c, 2)
    assert c.get("seen_base") == "1", "the rebuilt session sees the globals of registration time"
    assert c.get("base") == "100", "the top level's INCR was not run again"


def test_survives_an_rdb_restart_and_a_second_reload(gears):
    srv = start_server(gears, "--save", "", "--appendonly", "no", "--enable-debug-command", "local")
    c = srv.client()
    assert pyexec(c, KEYED, "ID", "keyed") == "OK"
    assert c.save()
    c = restart(srv)
    assert c.type("te") == "rg_timeev"
    wait_ticks(c, 1)
    assert c.execute_command("DEBUG", "RELOAD") == "OK", "the rebuilt session saves its script again"
    wait_ticks(c, 1)
    c.delete("te")
    time.sleep(1.5)
    before = ticks(c)
    time.sleep(2)
    assert ticks(c) == before
