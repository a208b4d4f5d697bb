"""Session lifetime under stress: many interpreters that import the common stdlib C modules, ended
in random order, must neither crash the server nor keep memory or interpreters alive.

This guards gearbox's work-arounds for CPython 3.13 (datetime/zoneinfo C modules, interpreters'
arenas returned after they end: src/runtime/native/arenas.rs, boot.py)."""
import random
import time

from gb_helpers import pyexec

IMPORTS = "import datetime, decimal, json, re, hashlib, collections, random, zoneinfo, asyncio, time\n"


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def rss(r):
    info = r.execute_command("RG.PYSTATS")
    return int(info[info.index("CurrAllocated") + 1])


def live(r):
    return int(r.info("rg")["rg_live_interpreters"])


def test_sessions_ending_in_random_order_leave_nothing_behind(r):
    ids = []
    for i in range(24):
        delay = random.random() * 0.4
        code = IMPORTS + (
            f"def f(x):\n    time.sleep({delay:.3f})\n"
            f"    return str(datetime.datetime(2020, 1, 1) + datetime.timedelta(days={i})) + str(decimal.Decimal('1.5'))\n"
            "GB('ShardsIDReader').map(f).run()"
        )
        ids.append(pyexec(r, code, "UNBLOCKING"))
    assert wait_for(lambda: all(e[3] == "done" for e in r.execute_command("RG.DUMPEXECUTIONS")))
    for i, eid in enumerate(ids):
        results, errors = r.execute_command("RG.GETRESULTS", eid)
        assert errors == [] and results[0].startswith("2020-01-"), (results, errors)
    assert wait_for(lambda: live(r) == 0), "every session's interpreter is freed once its execution is done"
    assert r.ping()


def test_memory_per_session_is_returned(r):
    """Own-GIL interpreters on CPython 3.13.0 keep ~2.7 MiB each unless gearbox returns their
    arenas; 150 sessions must not grow the server by more than 0.5 MiB each."""
    for _ in range(10):
        pyexec(r, IMPORTS + "x = 1")
    assert wait_for(lambda: live(r) == 0)
    r.execute_command("MEMORY", "PURGE")
    before = rss(r)
    n = 150
    for _ in range(n):
        assert pyexec(r, IMPORTS + "x = 1") == "OK"
    assert wait_for(lambda: live(r) == 0)
    r.execute_command("MEMORY", "PURGE")
    time.sleep(0.5)
    growth = rss(r) - before
    assert growth < n * 512 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over {n} sessions"


def test_back_to_back_sessions_do_not_pile_up(r):
    """Ending an interpreter takes about as long as making one: dead sessions may wait for the
    reaper only up to a bound, past which the thread that drops one ends it (before, 2,000
    back-to-back scripts left 1,846 dead interpreters and 3.8 GB of RSS behind). Pipelined, Redis
    runs the 300 scripts one after the other without a pause."""
    p = r.pipeline(transaction=False)
    for _ in range(300):
        p.execute_command("RG.PYEXECUTE", "x = 1")
    assert p.execute() == ["OK"] * 300
    assert live(r) <= 8, "dead sessions' interpreters are ended as fast as they are made"
    assert wait_for(lambda: live(r) == 0)
