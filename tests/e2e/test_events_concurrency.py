"""Concurrency of event executions (spec §2.6): sync registrations firing in the main thread while an
async trigger of the same session runs execute() in a loop on a background thread must neither deadlock
nor lose events; nor may a sync and an async KeysReader registration of one session firing on the same
writes; many clients triggering one sync or async trigger concurrently all get through.
A hang shows up as a client socket timeout (60 s)."""
import threading

import pytest
import redis

from events_helpers import register, registration_ids, stats, trigger
from gb_helpers import script, wait_until

SOCKET_TIMEOUT = 60

MIXED = script("""
    GB().foreach(lambda x: execute('INCR', 'sync_hits')).register(prefix='sync:*', mode='sync')
    def loop(x):
        for _ in range(2000):
            execute('INCR', 'loop_hits')
        return 'looped'
    GB('CommandReader').map(loop).register(trigger='loop', mode='async')
""")


def run_threads(targets):
    """Run callables in threads; re-raise the first exception any of them raised."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SOCKET_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a client thread is still blocked"
    if errors:
        raise errors[0]


def test_sync_events_while_async_trigger_loops(server, r):
    register(r, MIXED)
    box = {}

    def looper():
        box["loop"] = server.client(socket_timeout=SOCKET_TIMEOUT).execute_command("RG.TRIGGER", "loop")

    def writer(start, count):
        def go():
            c = server.client(socket_timeout=SOCKET_TIMEOUT)
            wait_until(lambda: c.get("loop_hits") is not None, timeout=SOCKET_TIMEOUT, what="the loop to start")
            for i in range(start, start + count):
                assert c.set(f"sync:{i}", "x")
        return go

    run_threads([looper] + [writer(n * 125, 125) for n in range(4)])
    assert box["loop"] == ["looped"]
    assert r.get("sync_hits") == "500"
    assert r.get("loop_hits") == "2000"


def test_sync_events_from_many_clients_are_all_seen(server, r):
    register(r, MIXED)
    writers = []
    for n in range(8):
        def go(n=n):
            c = server.client(socket_timeout=SOCKET_TIMEOUT)
            for i in range(100):
                c.set(f"sync:{n}:{i}", "x")
        writers.append(go)
    run_threads(writers)
    assert r.get("sync_hits") == "800"
    sync_id = next(i for i in registration_ids(r) if stats(r, i)["mode"] == "sync")
    assert stats(r, sync_id)["numTriggered"] == 800


def test_sync_and_async_keys_registrations_of_one_session(server, r):
    """Each write fires a sync and an async registration of the same session: the sync one runs in the
    writing command while the async one may be reading the key on a background thread."""
    register(r, script("""
        GB().foreach(lambda x: execute('INCR', 'async_hits')).register(prefix='both:*', mode='async_local')
        GB().foreach(lambda x: execute('INCR', 'sync_hits')).register(prefix='both:*', mode='sync')
    """))
    c = server.client(socket_timeout=SOCKET_TIMEOUT)
    for i in range(1000):
        try:
            assert c.set(f"both:{i}", "x")
        except redis.TimeoutError:
            raise AssertionError(f"SET both:{i} got no reply within {SOCKET_TIMEOUT}s: the server hangs") from None
    assert r.get("sync_hits") == "1000"
    wait_until(lambda: r.get("async_hits") == "1000", timeout=30, what="all async events")


@pytest.mark.parametrize("reg_mode", ["sync", "async", "async_local"])
def test_many_clients_hammer_one_trigger(server, r, reg_mode):
    register(r, f"GB('CommandReader').map(lambda x: execute('INCR', 'counter')).register(trigger='incr', "
                f"mode={reg_mode!r})")

    def client_loop():
        c = server.client(socket_timeout=SOCKET_TIMEOUT)
        for _ in range(200):
            reply = c.execute_command("RG.TRIGGER", "incr")
            assert len(reply) == 1 and int(reply[0]) >= 1, reply

    run_threads([client_loop] * 8)
    assert r.get("counter") == "1600"


def test_async_loop_triggers_run_concurrently_with_plain_commands(server, r):
    register(r, MIXED)
    done = threading.Event()
    box = {}

    def looper():
        c = server.client(socket_timeout=SOCKET_TIMEOUT)
        box["replies"] = [c.execute_command("RG.TRIGGER", "loop") for _ in range(3)]
        done.set()

    t = threading.Thread(target=looper)
    t.start()
    pings = 0
    while not done.is_set() and pings < 100000:
        assert r.ping()  # the main thread keeps serving while the async trigger loops
        pings += 1
    t.join(SOCKET_TIMEOUT)
    assert not t.is_alive()
    assert box["replies"] == [["looped"]] * 3
    assert r.get("loop_hits") == "6000"
    assert trigger(r, "loop") == ["looped"]
