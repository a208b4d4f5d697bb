"""End-to-end fixtures: a real redis-server with the gearbox module loaded, per test, in both modes.

Fixtures
  mode          "native" / "wasm" (every test that uses a server runs once per mode)
  gears_nomode  the same factory, not parametrized, for cases that pass their own `mode` (or none)
  gears         factory: gears(*module_args, with_mode=True) -> GearsServer (started, PING answers)
                        gears.load_failure(*module_args, with_mode=True) -> LoadFailure (server refused)
                        gears.plain(*redis_args) -> GearsServer without the module
  server        a GearsServer started with `mode <mode>` plus the args of @pytest.mark.gears_args(...)
  r             redis-py client (decode_responses=True) of `server`
  rb            redis-py client (decode_responses=False) of `server`

Environment
  GEARBOX_MODULE         module path (default <repo>/target/release/libgearbox.so)
  REDIS_SERVER           redis-server binary (default /usr/bin/redis-server)
  GEARBOX_MODES          comma-separated modes to run (default "native,wasm")
  GEARBOX_START_TIMEOUT  seconds to wait for PING (default 20)
  GEARBOX_KEEP_LOGS      if set, print the server directory of every test at teardown
"""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
MODULE = Path(os.environ.get("GEARBOX_MODULE", REPO / "target" / "release" / "libgearbox.so"))
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
MODES = [m.strip() for m in os.environ.get("GEARBOX_MODES", "native,wasm").split(",") if m.strip()]
START_TIMEOUT = float(os.environ.get("GEARBOX_START_TIMEOUT", "20"))
STOP_TIMEOUT = 5.0

# What the module must log when it refuses `mode wasm` because this build has no wasm runtime.
WASM_UNAVAILABLE_RE = re.compile(
    r"wasm\b.*\b(not (built|available|compiled|supported|enabled)|unavailable|disabled)", re.IGNORECASE)

# Probe results per (mode, module mtime): None = available, str = reason it is not.
_mode_probe = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "gears_args(*args): extra module load arguments for the `server` fixture")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerExited(Exception):
    def __init__(self, returncode, log):
        super().__init__(f"redis-server exited with code {returncode}")
        self.returncode = returncode
        self.log = log


class LoadFailure:
    """A redis-server that refused to start; returncode and the full log text."""

    def __init__(self, returncode, log):
        self.returncode = returncode
        self.log = log


class GearsServer:
    def __init__(self, workdir, module_args, load_module=True, redis_args=()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.stdout_file = self.dir / "stdout.log"
        self.module_args = [str(a) for a in module_args]
        self.load_module = load_module
        self.redis_args = [str(a) for a in redis_args]
        self.port = None
        self.proc = None
        self.expected_dead = False  # set when the test already reported this server's end
        self._clients = []

    # -- lifecycle ---------------------------------------------------------------------------
    def command_line(self):
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.logfile)]
        cmd += self.redis_args
        if self.load_module:
            cmd += ["--loadmodule", str(MODULE)] + self.module_args
        return cmd

    def start(self, timeout=START_TIMEOUT):
        """Start and wait for PING. Raises ServerExited if the process exits first."""
        for attempt in range(3):
            self.port = _free_port()
            if self.logfile.exists():
                self.logfile.unlink()
            out = open(self.stdout_file, "ab")
            try:
                self.proc = subprocess.Popen(self.command_line(), stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=str(self.dir))
            finally:
                out.close()
            try:
                self._wait_ready(timeout)
                return self
            except ServerExited as e:
                if "Address already in use" in e.log and attempt < 2:
                    continue
                raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    raise ServerExited(rc, self.log_text())
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                time.sleep(0.05)
        finally:
            probe.close()
        self.stop()
        self.expected_dead = True
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout}s\n"
                           f"--- log tail ---\n{self.log_tail()}")

    def wait_exit(self, timeout=START_TIMEOUT):
        """For servers expected to refuse to start: wait for the exit and return its code (None if it
        is still running, i.e. it started)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return rc
            time.sleep(0.05)
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    # -- access ------------------------------------------------------------------------------
    def client(self, decode_responses=True, socket_timeout=30, **kw):
        c = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=decode_responses,
                        socket_timeout=socket_timeout, **kw)
        self._clients.append(c)
        return c

    def log_text(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()
        out = "\n".join(lines[-n:])
        try:
            stdout = self.stdout_file.read_text(errors="replace").strip()
        except FileNotFoundError:
            stdout = ""
        if stdout:
            out += "\n--- stdout/stderr tail ---\n" + "\n".join(stdout.splitlines()[-n:])
        return out


def _module_key():
    try:
        return MODULE.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _require_module():
    if not MODULE.exists():
        pytest.fail(f"gearbox module not found at {MODULE} (build it, or set GEARBOX_MODULE)", pytrace=False)


def _skip_or_fail_start(mode, err):
    """A server with `mode <mode>` failed to start: skip for an unavailable wasm build, else fail."""
    if mode == "wasm" and WASM_UNAVAILABLE_RE.search(err.log):
        line = next((l for l in err.log.splitlines() if WASM_UNAVAILABLE_RE.search(l)), "")
        line = re.sub(r"^\d+:[A-Z] .*?\d\d:\d\d:\d\d\.\d+ [#*.-] ", "", line).strip()  # drop redis' log prefix
        _mode_probe[(mode, _module_key())] = line
        pytest.skip(f"wasm mode not available in this build: {line}")
    pytest.fail(f"redis-server with the gearbox module (mode {mode}) exited with code {err.returncode} "
                f"before answering PING\n--- log tail ---\n" + "\n".join(err.log.splitlines()[-40:]),
                pytrace=False)


class GearsFactory:
    def __init__(self, mode, tmp_path):
        self.mode = mode
        self.tmp_path = tmp_path
        self.servers = []

    def _dir(self):
        return self.tmp_path / f"srv{len(self.servers)}"

    def _check_mode_known_unavailable(self):
        reason = _mode_probe.get((self.mode, _module_key()))
        if reason:
            pytest.skip(f"wasm mode not available in this build: {reason}")

    def __call__(self, *module_args, with_mode=True):
        """Start a server with `mode <mode> <module_args...>` (or only module_args if with_mode=False)."""
        _require_module()
        if with_mode:
            self._check_mode_known_unavailable()
        args = (["mode", self.mode] if with_mode else []) + list(module_args)
        srv = GearsServer(self._dir(), args)
        self.servers.append(srv)
        try:
            srv.start()
        except ServerExited as e:
            srv.expected_dead = True  # reported here; teardown must not call it a crash
            if with_mode:
                _skip_or_fail_start(self.mode, e)
            pytest.fail(f"redis-server exited with code {e.returncode} before answering PING\n"
                        f"--- log tail ---\n" + "\n".join(e.log.splitlines()[-40:]), pytrace=False)
        return srv

    def ensure_mode_available(self):
        """Skip when this build cannot run self.mode at all (probes once per session)."""
        key = (self.mode, _module_key())
        if key not in _mode_probe:
            srv = GearsServer(self.tmp_path / "probe", ["mode", self.mode])
            try:
                srv.start()
                _mode_probe[key] = None
            except ServerExited as e:
                if self.mode == "wasm" and WASM_UNAVAILABLE_RE.search(e.log):
                    _skip_or_fail_start(self.mode, e)
                _mode_probe[key] = None  # failed for another reason: let the test itself show it
            finally:
                srv.stop()
        self._check_mode_known_unavailable()

    def load_failure(self, *module_args, with_mode=True):
        """Start a server that is expected NOT to start; returns LoadFailure or fails the test."""
        _require_module()
        if with_mode:
            self.ensure_mode_available()
        args = (["mode", self.mode] if with_mode else []) + list(module_args)
        srv = GearsServer(self._dir(), args)
        self.servers.append(srv)
        srv.port = _free_port()
        out = open(srv.stdout_file, "ab")
        try:
            srv.proc = subprocess.Popen(srv.command_line(), stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=str(srv.dir))
        finally:
            out.close()
        rc = srv.wait_exit()
        if rc is None:
            srv.stop()
            pytest.fail(f"redis-server started although the module args {args!r} are invalid\n"
                        f"--- log tail ---\n{srv.log_tail()}", pytrace=False)
        srv.expected_dead = True
        return LoadFailure(rc, srv.log_text())

    def plain(self, *redis_args):
        """A redis-server without the module (e.g. for MODULE LOAD tests)."""
        srv = GearsServer(self._dir(), [], load_module=False, redis_args=redis_args)
        self.servers.append(srv)
        try:
            srv.start()
        except ServerExited as e:
            srv.expected_dead = True
            pytest.fail(f"plain redis-server exited with code {e.returncode}\n{e.log[-2000:]}", pytrace=False)
        return srv

    def teardown(self):
        crashed = []
        for srv in self.servers:
            if srv.proc is None or srv.expected_dead:
                continue
            if not srv.alive():
                crashed.append(srv)
            srv.stop()
            if os.environ.get("GEARBOX_KEEP_LOGS"):
                print(f"server dir: {srv.dir}")
        if crashed:
            srv = crashed[0]
            pytest.fail(f"redis-server (port {srv.port}) died during the test with code {srv.proc.returncode}\n"
                        f"--- log tail ---\n{srv.log_tail()}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach each server's log tail to a failed test's report (shown under 'Captured ... redis.log')."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for factory in getattr(item, "_gears_factories", []):
            for srv in factory.servers:
                report.sections.append((f"redis.log (port {srv.port}, {srv.dir})", srv.log_tail(25)))


def _track(request, factory):
    request.node._gears_factories = getattr(request.node, "_gears_factories", []) + [factory]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def gears(mode, tmp_path, request):
    factory = GearsFactory(mode, tmp_path)
    _track(request, factory)
    yield factory
    factory.teardown()


@pytest.fixture
def gears_nomode(tmp_path, request):
    """Factory for mode-independent cases (run once, not per mode): always pass with_mode=False."""
    factory = GearsFactory("native", tmp_path)
    _track(request, factory)
    yield factory
    factory.teardown()


@pytest.fixture
def server(gears, request):
    marker = request.node.get_closest_marker("gears_args")
    extra = list(marker.args) if marker else []
    return gears(*extra)


@pytest.fixture
def r(server):
    return server.client()


@pytest.fixture
def rb(server):
    return server.client(decode_responses=False)
