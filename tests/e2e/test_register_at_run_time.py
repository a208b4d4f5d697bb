"""register() inside an execution (issue 17 item 6), both modes: as in RedisGears, a step or a
registration's callback may register; the new registration is live at once and belongs to the
same session. It lives until the server stops: replaying the script after a load does not make it
again, so it is not saved or replicated (documented). Attacks: a tenant's executions cannot pass
the per-user registration quota or register command hooks."""
from events_helpers import debug_server, registration_ids, sessions, trigger, trigger_error, wait_key
from gb_helpers import pyexec, run, wait_until
from security_helpers import assert_healthy, make_tenants

NESTED = ("GB('CommandReader').foreach(lambda x: GB('CommandReader').map(lambda x: '+OK')"
          ".register(trigger=x[1], mode='sync')).map(lambda x: '+OK').register(trigger='test', mode='sync')")


def test_a_sync_registration_registers_another_as_redisgears_does(r):
    assert pyexec(r, NESTED, "ID", "test", "DESCRIPTION", "desc") == "OK"
    assert len(sessions(r)["test"]["registrations"]) == 1
    assert trigger(r, "test", "test1") == ["OK"]
    assert len(sessions(r)["test"]["registrations"]) == 2
    assert trigger(r, "test1") == ["OK"]
    # The trigger is taken now: registering it again fails that run; the first one stays.
    assert "already registered" in trigger_error(r, "test", "test1")
    assert trigger(r, "test1") == ["OK"] and len(sessions(r)["test"]["registrations"]) == 2


def test_a_run_execution_registers_a_keys_reader_that_fires(r):
    code = ("GB('ShardsIDReader').foreach(lambda x: GB().foreach(lambda k: execute('INCR', 'hits'))"
            ".register(prefix='watched:*', mode='sync')).run()")
    results, errors = run(r, code)
    assert errors == []
    r.set("watched:1", "x")
    r.set("other", "y")
    assert r.get("hits") == "1"


def test_registrations_made_at_run_time_are_not_saved(gears):
    srv = debug_server(gears)
    r = srv.client()
    assert pyexec(r, NESTED, "ID", "test") == "OK"
    assert trigger(r, "test", "made") == ["OK"]
    assert len(registration_ids(r)) == 2
    r.execute_command("DEBUG", "RELOAD")
    assert len(registration_ids(r)) == 1
    assert trigger(r, "test", "again") == ["OK"] and trigger(r, "again") == ["OK"]
    assert "could not restore" not in srv.log_text()


def test_attack_a_tenant_execution_cannot_pass_the_registration_quota(gears):
    srv = gears("MaxRegistrationsPerUser", "3")
    r = srv.client()
    tenants = make_tenants(srv, r)
    alice = tenants["alice"]
    code = ("def many(x):\n"
            "    for i in range(10):\n"
            "        GB('CommandReader').register(trigger='a%d' % i, mode='sync')\n"
            "GB('CommandReader').foreach(many).register(trigger='spawn', mode='sync')")
    assert pyexec(alice, code) == "OK"
    err = trigger_error(alice, "spawn")
    assert "MaxRegistrationsPerUser" in str(err) or "quota" in str(err).lower(), err
    assert len(registration_ids(r)) == 3
    assert_healthy(srv, r)


def test_attack_a_tenant_execution_cannot_register_a_command_hook(server, r):
    tenants = make_tenants(server, r)
    alice = tenants["alice"]
    code = ("GB('CommandReader').foreach(lambda x: GB('CommandReader').map(lambda x: 'hijacked')"
            ".register(hook='get', mode='sync')).register(trigger='sneak', mode='sync')")
    assert pyexec(alice, code) == "OK"
    err = trigger_error(alice, "sneak")
    assert "administrator" in str(err).lower() or "hook" in str(err).lower(), err
    r.set("k", "v")
    assert r.get("k") == "v"
    assert_healthy(server, r)
