"""The figures `make bench` measures (see benches/bench.py for the driver). Each case takes a running
`Server` and returns rows: figure, ours, reference (same server, same run), unit, ratio, goal.
Ratios are ours / reference (lower is better) except where the figure says speedup."""
import csv
import io
import subprocess
import threading
import time

SCRIPT_TIMEOUT_FREE = "ScriptTimeoutMS"


def row(figure, ours, reference, unit, goal="", higher_is_better=False, note=""):
    ratio = None
    if ours is not None and reference:
        ratio = (reference / ours) if higher_is_better else (ours / reference)
    return {"figure": figure, "ours": ours, "reference": reference, "unit": unit, "ratio": ratio, "goal": goal,
            "note": note}


def redis_benchmark(port, clients, requests, *command):
    """p50 and p99 latency (ms) of `command` from redis-benchmark."""
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests), "--csv",
                          "--precision", "3", *command], capture_output=True, text=True, timeout=900).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise RuntimeError("redis-benchmark printed nothing: " + out[-300:])
    return float(rows[-1]["p50_latency_ms"]), float(rows[-1]["p99_latency_ms"])


def timed(f):
    start = time.perf_counter()
    value = f()
    return time.perf_counter() - start, value


def medians(runs, *fs):
    """Run each of `fs` `runs` times, interleaved (so a slow spell of the machine or of Redis' own
    housekeeping, such as rehashing after DEBUG POPULATE, hits every side alike); per f, the
    median time and the last value."""
    times, values = [[] for _ in fs], [None] * len(fs)
    for _ in range(runs):
        for i, f in enumerate(fs):
            t, values[i] = timed(f)
            times[i].append(t)
    return [(sorted(ts)[len(ts) // 2], v) for ts, v in zip(times, values)]


def latency(server, quick):
    """trivial RG.PYEXECUTE latency vs EVAL "return 1" 0"""
    rows = []
    for clients in (1, 8):
        n = 100 if quick else 400
        ours = redis_benchmark(server.port, clients, n, "RG.PYEXECUTE", "x = 1")
        ref = redis_benchmark(server.port, clients, max(n, 2000), "EVAL", "return 1", "0")
        goal = "<= 10x (native)" if clients == 1 else ""
        rows.append(row(f"RG.PYEXECUTE 'x = 1' p50, {clients} client(s)", ours[0], ref[0], "ms", goal))
        rows.append(row(f"RG.PYEXECUTE 'x = 1' p99, {clients} client(s)", ours[1], ref[1], "ms"))
    # What a client sees when scripts are not back to back: the warm pool has time to refill.
    ours, ref = spaced(server.client, "RG.PYEXECUTE", "x = 1"), spaced(server.client, "EVAL", "return 1", "0")
    note = "1 client, requests 50 ms apart, timed by the client (redis-py); back-to-back requests above"
    rows.append(row("RG.PYEXECUTE 'x = 1' p50, spaced", ours[0], ref[0], "ms", note=note))
    rows.append(row("RG.PYEXECUTE 'x = 1' p99, spaced", ours[1], ref[1], "ms"))
    return rows


def spaced(client, *command, n=100, gap=0.05):
    """p50 and p99 latency (ms) of `command` sent `gap` seconds apart."""
    times = []
    for _ in range(n):
        time.sleep(gap)
        t, _ = timed(lambda: client.execute_command(*command))
        times.append(t * 1000)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def trigger(server, quick):
    """registered sync RG.TRIGGER p50 vs EVAL (a trigger returning its argument vs Lua doing the same)"""
    c = server.client
    c.execute_command("RG.PYEXECUTE", "GB('CommandReader').map(lambda r: r[1]).register(trigger='benchtrig', mode='sync')",
                      "ID", "bench_trigger", "UPGRADE")
    n = 2000 if quick else 20000
    rows = []
    for clients in (1, 8):
        ours = redis_benchmark(server.port, clients, n, "RG.TRIGGER", "benchtrig", "x")
        ref = redis_benchmark(server.port, clients, n, "EVAL", "return {ARGV[1]}", "0", "x")
        rows.append(row(f"sync RG.TRIGGER p50, {clients} client(s)", ours[0], ref[0], "ms", "<= 2x" if clients == 1 else ""))
        rows.append(row(f"sync RG.TRIGGER p99, {clients} client(s)", ours[1], ref[1], "ms"))
    return rows


def execute_calls(server, quick):
    """execute('incr', k) from inside one script vs redis.call in a Lua loop"""
    c = server.client
    n = 20000 if quick else 200000
    c.delete("w", "m")
    (lua, _), (worker, _), (main, _) = medians(
        3,
        lambda: c.eval(f"for i=1,{n} do redis.call('incr','lua') end return 1", 0),
        lambda: c.execute_command(
            "RG.PYEXECUTE", f"GB('ShardsIDReader').foreach(lambda x: [execute('incr', 'w') for _ in range({n})]).run()"),
        lambda: c.execute_command("RG.PYEXECUTE", f"for _ in range({n}): execute('incr', 'm')"))
    assert int(c.get("w")) == 3 * n and int(c.get("m")) == 3 * n
    return [
        row(f"{n} execute('incr') in a run() step (calls/s)", n / worker, n / lua, "calls/s", "<= 2x Lua time",
            higher_is_better=True, note="median of 3, interleaved with the Lua loop"),
        row(f"{n} execute('incr') at top level (calls/s)", n / main, n / lua, "calls/s", "", higher_is_better=True),
    ]


def count_keys(server, quick):
    """GB().count().run() over N keys vs a Lua SCAN loop"""
    c = server.client
    n = 20000 if quick else 200000
    c.flushall()
    c.execute_command("DEBUG", "POPULATE", n)
    lua_src = ("local c, cur = 0, '0' repeat local r = redis.call('SCAN', cur, 'COUNT', 1000) "
               "cur = r[1] c = c + #r[2] until cur == '0' return c")
    (lua, lua_count), (ours, reply), (built, reply2), (keys_only, reply3) = medians(
        3,
        lambda: c.eval(lua_src, 0),
        lambda: c.execute_command("RG.PYEXECUTE", "GB().count().run()"),
        lambda: c.execute_command("RG.PYEXECUTE", "GB().map(lambda r: r).count().run()"),
        lambda: c.execute_command("RG.PYEXECUTE", "GB('KeysOnlyReader').count().run()"))
    assert int(reply[0][0]) == n == lua_count and int(reply2[0][0]) == n and int(reply3[0][0]) == n
    c.flushall()
    return [
        row(f"GB().count().run() over {n} keys", ours, lua, "s", "<= 1x Lua",
            note="median of 3, interleaved with the Lua loop; count() right after the reader is "
                 "answered by the host's count walk, no record is built"),
        row(f"GB().map(lambda r: r).count().run() over {n} keys", built, lua, "s",
            note="every record built and passed through a step"),
        row(f"GB('KeysOnlyReader').count().run() over {n} keys", keys_only, lua, "s"),
    ]


SPIN = ("def spin(x):\n    n = 0\n    for i in range({n}): n += i\n    return n\n"
        "GB('ShardsIDReader').map(spin).run()")


def parallel(server, quick):
    """two CPU-bound scripts from two clients: speedup over running them one after the other"""
    import os
    import statistics

    script = SPIN.format(n=2_000_000 if quick else 6_000_000)
    c = server.client
    other = server.client.__class__(port=server.port, decode_responses=True, socket_timeout=600)

    def one_after_the_other():
        c.execute_command("RG.PYEXECUTE", script)
        c.execute_command("RG.PYEXECUTE", script)

    def both():
        t = threading.Thread(target=lambda: other.execute_command("RG.PYEXECUTE", script))
        t.start()
        c.execute_command("RG.PYEXECUTE", script)
        t.join()

    c.execute_command("RG.PYEXECUTE", script)  # warm up
    sequential, concurrent = [], []
    for _ in range(3):  # alternate, so a change in machine load hits both sides
        sequential.append(timed(one_after_the_other)[0])
        concurrent.append(timed(both)[0])
    other.close()
    return [row("2 CPU-bound scripts concurrently: speedup", statistics.median(concurrent),
                statistics.median(sequential), "s", ">= 1.6x", higher_is_better=True,
                note=f"median of 3; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")]


def settled_rss(server):
    """RSS once every ended interpreter is gone and the allocator returned free pages."""
    c = server.client
    deadline = time.time() + 60
    while time.time() < deadline and int(c.info("rg").get("rg_live_interpreters", 0)) > 0:
        time.sleep(0.05)
    c.execute_command("MEMORY", "PURGE")
    time.sleep(0.3)
    return server.rss_bytes()


def sessions(server, quick):
    """session create+destroy time, RSS per idle session, RSS growth per 1000 sessions"""
    c = server.client
    n = 200 if quick else 1000
    for _ in range(5):
        c.execute_command("RG.PYEXECUTE", "x = 1")  # warm up
    rss0 = settled_rss(server)
    total, _ = timed(lambda: [c.execute_command("RG.PYEXECUTE", "x = 1") for _ in range(n)])
    growth = (settled_rss(server) - rss0) * 1000 / n
    # Idle sessions: executions queued behind busy execution threads each hold their session.
    held = 20 if quick else 50
    c.delete("go")
    wait = "import time\nGB('ShardsIDReader').map(lambda x: [time.sleep(0.01) for _ in iter(lambda: execute('get', 'go'), '1')]).run()"
    rss1 = settled_rss(server)
    pss1 = server.pss_bytes()
    for _ in range(held):
        c.execute_command("RG.PYEXECUTE", wait, "UNBLOCKING")
    time.sleep(0.5)
    live = int(c.info("rg").get("rg_live_interpreters", 0))
    per_session = (server.rss_bytes() - rss1) / max(live, 1)
    pss_per_session = (server.pss_bytes() - pss1) / max(live, 1)
    c.set("go", "1")
    deadline = time.time() + 60
    while time.time() < deadline and any(e[3] != "done" for e in c.execute_command("RG.DUMPEXECUTIONS")):
        time.sleep(0.05)
    for e in c.execute_command("RG.DUMPEXECUTIONS"):
        c.execute_command("RG.DROPEXECUTION", e[1])
    return [
        row("session create+run+destroy (RG.PYEXECUTE 'x = 1', mean)", total / n * 1000, None, "ms"),
        row(f"RSS per idle session ({live} held)", per_session / 2**20, None, "MiB"),
        row(f"PSS per idle session ({live} held)", pss_per_session / 2**20, None, "MiB"),
        row(f"RSS growth per 1000 sessions (measured over {n})", growth / 2**20, None, "MiB"),
    ]


CASES = [latency, trigger, execute_calls, count_keys, parallel, sessions]
