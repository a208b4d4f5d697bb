"""Sync and async registrations of one session fired by the same writes, pipelined: the sync one
runs on Redis' main thread (holding the Redis lock) while the session's interpreter or wasm
instance is busy with an async execution waiting for that lock. This is the deadlock the design
warns about; it must never hang, and no event may be lost."""
import socket

from gb_helpers import script, wait_until

BOTH = script("""
    def copy(x):
        execute('SET', 'copy:' + x['key'], x['value'])
    GB().foreach(copy).register(prefix='src:*', mode='sync', eventTypes=['set'])
    GB().foreach(lambda x: execute('INCR', 'async_hits')).register(prefix='src:*', mode='async_local')
""")


def pipelined_sets(port, n):
    """n SETs written in one go (redis-cli style pipelining); returns the raw replies."""
    payload = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\nsrc:%d\r\n$1\r\nv\r\n" % (len(b"src:%d" % i), i) for i in range(n))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(payload)
        got = b""
        while got.count(b"+OK\r\n") < n:
            chunk = s.recv(65536)
            assert chunk, "server closed the connection"
            got += chunk
    return got


def test_sync_and_async_registrations_of_one_session_under_pipelined_writes(server, r):
    assert r.execute_command("RG.PYEXECUTE", BOTH) == "OK"
    n = 1500
    replies = pipelined_sets(server.port, n)
    assert replies.count(b"+OK\r\n") == n
    assert r.get(f"copy:src:{n - 1}") == "v", "the sync registration ran inside every SET"
    wait_until(lambda: r.get("async_hits") == str(n), timeout=60, what="every async event to run")
    assert len(r.keys("copy:src:*")) == n
