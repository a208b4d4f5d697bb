"""Rough figures for wasm mode next to native, against real redis-servers (not a benchmark harness:
see benches/ for that). Usage:
    GEARBOX_MODULE=<libgearbox.so> python wasm-python/measure.py
Prints per mode: RG.PYEXECUTE round trip of a trivial script (vs EVAL "return 1" 0), execute()
calls per second inside one script (vs redis.call in a Lua loop), RSS per parked wasm instance.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

import redis

MODULE = os.environ.get("GEARBOX_MODULE", "target/release/libgearbox.so")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args):
    port, d = free_port(), tempfile.mkdtemp()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d,
                          "--logfile", d + "/redis.log", "--loadmodule", MODULE, *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port, decode_responses=True)
    for _ in range(400):
        try:
            r.ping()
            return p, r
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])


def per_call(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


for mode in ("native", "wasm"):
    p, r = start("mode", mode)
    try:
        time.sleep(0.5)  # let the warm pool fill
        lua = per_call(lambda: r.eval("return 1", 0), 300)
        n = 30 if mode == "wasm" else 100
        # paced so the warm pool keeps up: the figure is the request path with a ready instance
        def pyexec():
            r.execute_command("RG.PYEXECUTE", "x = 1")
            if mode == "wasm":
                time.sleep(0.15)
        t = per_call(pyexec, n) - (0.15 if mode == "wasm" else 0)
        calls = 20000
        code = f"import time\nt = time.perf_counter()\nfor i in range({calls}):\n    execute('PING')\nexecute('SET', 'rate', str({calls} / (time.perf_counter() - t)))"
        r.execute_command("RG.PYEXECUTE", code)
        rate = float(r.get("rate"))
        t0 = time.perf_counter()
        r.eval(f"for i=1,{calls} do redis.call('PING') end return 1", 0)
        lua_rate = calls / (time.perf_counter() - t0)
        print(f"{mode:6}: RG.PYEXECUTE 'x = 1' {t*1e3:.2f} ms (EVAL return 1: {lua*1e3:.3f} ms); "
              f"execute('PING') {rate:,.0f}/s (Lua redis.call: {lua_rate:,.0f}/s)")
    finally:
        p.terminate()
        p.wait()

rss = {}
for warm in (0, 20):
    p, r = start("mode", "wasm", "WasmWarmInstances", str(warm))
    try:
        time.sleep(4)
        rss[warm] = rss_kib(p.pid)
    finally:
        p.terminate()
        p.wait()
print(f"wasm: RSS per parked instance {(rss[20] - rss[0]) / 20:.0f} KiB (0 parked: {rss[0]} KiB, 20 parked: {rss[20]} KiB)")
print(f"load average: {os.getloadavg()}", file=sys.stderr)
