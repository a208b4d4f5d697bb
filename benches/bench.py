"""gearbox's performance harness (`make bench`).

Starts a real redis-server with the module for each mode that loads, and measures each figure
next to its reference on the same server in the same run (Lua `EVAL` for latency, `redis.call`
loops for call throughput), then prints a table of ratios and writes a JSON summary.
Benchmarks are not tests: nothing here asserts a speed.

Usage: python benches/bench.py [--module PATH] [--modes native,wasm] [--json FILE] [--quick] [--cases a,b]
"""
import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cases  # noqa: E402  (the figures themselves)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A redis-server with the module loaded, stopped by pid."""

    def __init__(self, module, mode, extra=()):
        self.dir = tempfile.mkdtemp(prefix="gearbox-bench-")
        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log"),
               "--enable-debug-command", "local", "--loadmodule", str(module), "mode", mode, "ScriptTimeoutMS", "60000", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=600)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log_tail())
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start: " + self.log_tail())

    def log_tail(self):
        try:
            return Path(self.dir, "redis.log").read_text()[-600:]
        except OSError:
            return ""

    def rss_bytes(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def pss_bytes(self):
        """Proportional set size: pages shared between mappings (a wasm guest's copy-on-write
        memory image, mapped once per instance) counted once, not once per mapping as in RSS."""
        for line in Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]}


def print_table(rows):
    print()
    print(f"{'mode':7} {'figure':52} {'gearbox':>14} {'reference':>14} {'ratio':>8}  goal")
    for r in rows:
        ours = f"{r['ours']:.4g} {r['unit']}" if r["ours"] is not None else "n/a"
        ref = f"{r['reference']:.4g} {r['unit']}" if r["reference"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"{r['mode']:7} {r['figure']:52} {ours:>14} {ref:>14} {ratio:>8}  {r.get('goal', '')}")
        if r.get("note"):
            print(f"{'':7}   note: {r['note']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", default=os.environ.get("GEARBOX_MODULE", REPO / "target/release/libgearbox.so"))
    ap.add_argument("--modes", default="native,wasm")
    ap.add_argument("--json", default=str(REPO / "benches/results/latest.json"))
    ap.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    ap.add_argument("--cases", default="", help="only these figures, e.g. trigger,count_keys (default: all: "
                    + ",".join(c.__name__ for c in bench_cases.CASES) + ")")
    args = ap.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    rows, info = [], {"date": started, "machine": machine(), "load_before": os.getloadavg()}
    for mode in [m for m in args.modes.split(",") if m]:
        try:
            server = Server(args.module, mode)
        except RuntimeError as e:
            print(f"[{mode}] not measured: the module did not load ({e.args[0].strip().splitlines()[-1] if e.args[0].strip() else 'no log'})")
            rows.append({"mode": mode, "figure": "all figures", "ours": None, "reference": None, "ratio": None,
                         "unit": "", "note": "mode did not load in this build"})
            continue
        try:
            info.setdefault("python", {})[mode] = server.client.execute_command(
                "RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: __import__('sys').version.split()[0]).run()")[0][0]
            wanted = [c for c in args.cases.split(",") if c]
            for case in [c for c in bench_cases.CASES if not wanted or c.__name__ in wanted]:
                print(f"[{mode}] {case.__doc__.strip().splitlines()[0]} ...", flush=True)
                for row in case(server, args.quick):
                    row["mode"] = mode
                    rows.append(row)
        finally:
            server.stop()
    info["load_after"] = os.getloadavg()
    print_table(rows)
    print(f"\n{started}; {info['machine']['cpu']}, {info['machine']['cores']} cores; Redis {info['machine']['redis']}; "
          f"Python {info.get('python')}; load average before {info['load_before'][0]:.2f}, after {info['load_after'][0]:.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(f"summary written to {args.json}")


if __name__ == "__main__":
    main()
