"""Tenants and the health check shared by the security tests.

Tenants (made by `make_tenants`):
  alice  ~a:* +@all                      a tenant with every command on her own keys
  bob    ~b:* +@all                      another tenant
  dave   ~d:* +@all -@admin -@dangerous  no administration
  carol  ~c:* -@all +rg.pyexecute        may only run scripts
  ops    ~* +@all                        an administrator the operator made (not `default`)

`assert_healthy(server, r)` is what every attack test ends with: the server process is alive,
a new client's PING answers within a second, the canary key is intact, and the connection `r`
(open before the attack) still works.
"""
import time

import redis

CANARY = ("canary", "still-here")

TENANTS = {
    "alice": ["~a:*", "+@all"],
    "bob": ["~b:*", "+@all"],
    "dave": ["~d:*", "+@all", "-@admin", "-@dangerous"],
    "carol": ["~c:*", "-@all", "+rg.pyexecute"],
    "ops": ["~*", "&*", "+@all"],
}


def make_tenants(server, r):
    """Create the tenants and the canary key; returns {name: client}."""
    r.set(*CANARY)
    clients = {}
    for name, rules in TENANTS.items():
        assert r.execute_command("ACL", "SETUSER", name, "on", f">{name}pw", "resetkeys", "resetchannels", *rules) == "OK"
        clients[name] = server.client(username=name, password=f"{name}pw")
    return clients


def assert_healthy(server, r):
    assert server.alive(), "redis-server died:\n" + server.log_tail()
    probe = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=1, socket_connect_timeout=1)
    try:
        start = time.monotonic()
        assert probe.ping()
        assert time.monotonic() - start < 1.0, "PING took over a second"
    finally:
        probe.close()
    assert r.get(CANARY[0]) == CANARY[1], "the canary key changed"


def error_of(client, *command):
    """The error text a command answers (fails if it succeeds)."""
    try:
        reply = client.execute_command(*command)
    except redis.ResponseError as e:
        return str(e)
    raise AssertionError(f"expected an error from {command!r}, got {reply!r}")
