"""RG.PYPROFILE STATS|RESET <session> (spec: per-session cProfile data of profiled plans,
ProfileExecutions 1), both modes: the stats name the script's own functions, any pstats order
works, RESET forgets them, bad input answers RedisGears' errors, and a tenant cannot read (or
learn of) another tenant's session."""
import pytest

from gb_helpers import pyexec, script
from security_helpers import assert_healthy, error_of, make_tenants

PROFILED = script("""
    def map_func(r):
        return r
    def filter_func(r):
        return True
    def foreach_func(r):
        pass
    GB('CommandReader').map(map_func).filter(filter_func).foreach(foreach_func).register(trigger='prof')
""")


def session_of(client):
    """The id of the one session `client` sees (the registration's)."""
    sessions = client.execute_command("RG.PYDUMPSESSIONS")
    assert len(sessions) == 1, sessions
    return sessions[0][1]


@pytest.mark.gears_args("ProfileExecutions", "1")
def test_stats_name_the_scripts_functions_in_any_order_and_reset_forgets_them(r):
    assert pyexec(r, PROFILED) == "OK"
    for _ in range(3):
        r.execute_command("RG.TRIGGER", "prof", "x")
    sid = session_of(r)
    stats = r.execute_command("RG.PYPROFILE", "STATS", sid)
    for name in ("map_func", "filter_func", "foreach_func"):
        assert name in stats, stats[:2000]
    assert "Ordered by: internal time" in stats and "was called by" in stats and "called..." in stats
    by_calls = r.execute_command("RG.PYPROFILE", "stats", sid, "ncalls")
    assert "map_func" in by_calls and "Ordered by: call count" in by_calls
    assert r.execute_command("RG.PYPROFILE", "RESET", sid) == "OK"
    assert "no profile information" in error_of(r, "RG.PYPROFILE", "STATS", sid)
    r.execute_command("RG.TRIGGER", "prof", "again")
    assert "map_func" in r.execute_command("RG.PYPROFILE", "STATS", sid), "profiling goes on after a reset"


def test_nothing_is_collected_while_profile_executions_is_off(r):
    assert pyexec(r, PROFILED) == "OK"
    r.execute_command("RG.TRIGGER", "prof", "x")
    assert "no profile information" in error_of(r, "RG.PYPROFILE", "STATS", session_of(r))


@pytest.mark.gears_args("ProfileExecutions", "1")
def test_bad_input_gets_redisgears_errors_and_the_server_lives(server, r):
    make_tenants(server, r)
    assert pyexec(r, PROFILED) == "OK"
    r.execute_command("RG.TRIGGER", "prof", "x")
    sid = session_of(r)
    assert error_of(r, "RG.PYPROFILE", "STATS", "0000000000000000000000000000000000000000-0") == "session does not exists"
    assert error_of(r, "RG.PYPROFILE", "SHOW", sid) == "Wrong subcommand given to RG.PYPROFILE"
    assert error_of(r, "RG.PYPROFILE", "RESET", sid, "extra") == "Wrong subcommand given to RG.PYPROFILE"
    assert "wrong number of arguments" in error_of(r, "RG.PYPROFILE", "STATS").lower()
    assert "no_such_key" in error_of(r, "RG.PYPROFILE", "STATS", sid, "no_such_key")
    assert "map_func" in r.execute_command("RG.PYPROFILE", "STATS", sid)
    assert_healthy(server, r)


@pytest.mark.gears_args("ProfileExecutions", "1")
def test_a_tenant_cannot_read_or_reset_another_tenants_profile(server, r):
    tenants = make_tenants(server, r)
    alice, bob, ops = tenants["alice"], tenants["bob"], tenants["ops"]
    assert pyexec(alice, PROFILED) == "OK"
    alice.execute_command("RG.TRIGGER", "prof", "x")
    sid = session_of(alice)
    assert "map_func" in alice.execute_command("RG.PYPROFILE", "STATS", sid)
    assert error_of(bob, "RG.PYPROFILE", "STATS", sid) == "session does not exists"
    assert error_of(bob, "RG.PYPROFILE", "RESET", sid) == "session does not exists"
    assert "map_func" in alice.execute_command("RG.PYPROFILE", "STATS", sid), "bob's reset did nothing"
    assert "map_func" in ops.execute_command("RG.PYPROFILE", "STATS", sid), "an administrator sees every session"
    assert_healthy(server, r)
