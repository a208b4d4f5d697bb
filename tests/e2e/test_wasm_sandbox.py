"""Wasm mode only: what a script's instance may not do, each limit with an obeyed and a violated
case (design §1, §4): host files, descriptors, environment, sockets/subprocesses/ctypes, memory,
CPU time (ScriptTimeoutMS, RG.ABORTEXECUTION), and the host channel."""
import pytest
import redis

from gb_helpers import BUSY_LOOP_RUN, pyexec, pyexec_error, run_ok, script, wait_status, wait_until


@pytest.fixture(autouse=True)
def _wasm_only(mode):
    if mode != "wasm":
        pytest.skip("wasm sandbox behaviour")


def test_stdlib_readable_host_files_not(r):
    ok = script("""
        import json, os
        execute('SET', 'j', json.dumps({'a': 1}))
    """)
    assert pyexec(r, ok) == "OK" and r.get("j") == '{"a": 1}'
    bad = script("""
        out = []
        for p in ('/etc/passwd', '/proc/self/environ', '../../etc/passwd', '/'):
            try:
                open(p).read()
                out.append('read ' + p)
            except OSError as e:
                out.append('denied')
        execute('SET', 'files', ','.join(out))
    """)
    assert pyexec(r, bad) == "OK"
    assert r.get("files") == "denied,denied,denied,denied"


def test_closing_every_descriptor_changes_nothing_outside(server, r):
    code = script("""
        import os
        closed = 0
        for fd in range(1024):
            try:
                os.close(fd)
                closed += 1
            except OSError:
                pass
        execute('SET', 'closed', closed)
    """)
    assert pyexec(r, code) == "OK"
    assert r.get("closed") == "3"  # only the guest's own stdin/stdout/stderr; the channel is no descriptor
    other = server.client()
    assert other.ping() and r.ping()
    assert run_ok(other, "GB('ShardsIDReader').run()") == ["1"]
    assert pyexec(r, "execute('SET', 'later', '1')") == "OK" and r.get("later") == "1"


def test_environment_is_private(r):
    first = script("""
        import os
        os.environ['GEARBOX_SECRET'] = 'x'
        os.putenv('GEARBOX_SECRET2', 'y')
        execute('SET', 'env1', ','.join(sorted(k for k in os.environ if k != 'PYTHONDONTWRITEBYTECODE')))
    """)
    assert pyexec(r, first) == "OK"
    assert r.get("env1") == "GEARBOX_SECRET"
    second = "import os\nexecute('SET', 'env2', repr(sorted(os.environ)))"
    assert pyexec(r, second) == "OK"
    assert r.get("env2") in ("[]", "['PYTHONDONTWRITEBYTECODE']")


@pytest.mark.parametrize("snippet", [
    "import socket\nsocket.socket()",
    "import socket\nsocket.create_connection(('127.0.0.1', 6379), timeout=1)",
    "import subprocess\nsubprocess.run(['ls'])",
    "import ctypes",
    "import os\nos.system('ls')",
    "import os\nos.fork()",
])
def test_no_sockets_processes_or_ctypes(r, snippet):
    err = pyexec_error(r, snippet)
    assert any(w in err for w in ("Error", "error", "not supported", "no attribute")), err
    assert r.ping()


@pytest.mark.gears_args("WasmMemoryLimitMB", "64")
def test_memory_limit_obeyed_and_violated(server, r):
    assert pyexec(r, "b = bytearray(16 * 1024 * 1024)\nexecute('SET', 'm', len(b))") == "OK"
    err = pyexec_error(r, "b = bytearray(200 * 1024 * 1024)")
    assert "MemoryError" in err, err
    bomb = script("""
        chunks = []
        while True:
            chunks.append(bytearray(1024 * 1024))
    """)
    err = pyexec_error(r, bomb)
    assert "MemoryError" in err or "wasm" in err, err
    assert server.client().ping()
    assert run_ok(r, "GB('ShardsIDReader').run()") == ["1"]


def test_memory_limit_is_runtime_settable(r):
    assert r.execute_command("RG.CONFIGSET", "WasmMemoryLimitMB", "48") == ["OK"]
    assert "MemoryError" in pyexec_error(r, "b = bytearray(100 * 1024 * 1024)")
    assert r.execute_command("RG.CONFIGSET", "WasmMemoryLimitMB", "256") == ["OK"]
    assert pyexec(r, "b = bytearray(100 * 1024 * 1024)") == "OK"


@pytest.mark.gears_args("ScriptTimeoutMS", "300")
def test_endless_loop_times_out_and_sleep_too(r):
    assert pyexec(r, "import time\ntime.sleep(0.1)") == "OK"
    assert "ScriptTimeoutMS" in pyexec_error(r, "while True:\n    pass\n")
    assert "ScriptTimeoutMS" in pyexec_error(r, "import time\ntime.sleep(30)")
    assert r.ping()


def test_abort_stops_endless_loop_of_an_execution(r):
    eid = pyexec(r, BUSY_LOOP_RUN, "UNBLOCKING")
    wait_until(lambda: r.get("spinning") == "1", timeout=10, what="the busy step to start")
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    wait_status(r, eid, "done", timeout=10)
    results, errors = r.execute_command("RG.GETRESULTS", eid)
    assert results == [] and errors == ["Execution was aborted"]
    assert run_ok(r, "GB('ShardsIDReader').run()") == ["1"]


def test_print_and_raw_stdout_do_not_touch_the_channel(r):
    code = script("""
        import os, sys
        print('hello from a script')
        print('to stderr', file=sys.stderr)
        os.write(1, b'GB\\x01R\\x00\\x00\\x00\\x00')
        os.write(2, b'\\x00garbage')
        execute('SET', 'printed', '1')
    """)
    assert pyexec(r, code) == "OK" and r.get("printed") == "1"


def test_garbage_on_the_channel_only_kills_that_session(server, r):
    err = pyexec_error(r, "from wit_world.imports import channel\nchannel.send(b'not a frame at all')")
    assert "wasm" in err, err
    assert server.client().ping()
    assert run_ok(r, "GB('ShardsIDReader').run()") == ["1"]


def test_errors_render_as_gears_error(r):
    code = script("""
        try:
            execute('NOSUCHCOMMAND')
        except Exception as e:
            execute('SET', 'ename', type(e).__module__ + '.' + type(e).__qualname__)
    """)
    assert pyexec(r, code) == "OK"
    assert r.get("ename") == "gears.error"


def test_missing_or_corrupted_guest_is_a_clear_load_error(gears, tmp_path):
    import hashlib

    missing = gears.load_failure("WasmPythonPath", str(tmp_path / "nope.wasm"))
    assert "WasmPythonPath" in missing.log and "not a readable file" in missing.log, missing.log[-2000:]
    bad = tmp_path / "gearbox-guest.wasm"
    bad.write_bytes(b"\0asm\x0d\0\1\0 definitely not the guest")
    unrecorded = gears.load_failure("WasmPythonPath", str(bad))
    assert "gearbox-guest.wasm.sha256" in unrecorded.log and "make wasm-python" in unrecorded.log, unrecorded.log[-2000:]
    (tmp_path / "gearbox-guest.wasm.sha256").write_text("0" * 64 + "\n")
    corrupted = gears.load_failure("WasmPythonPath", str(bad))
    assert "corrupted" in corrupted.log and "sha256" in corrupted.log, corrupted.log[-2000:]
    assert "gearbox failed to load" in corrupted.log
    (tmp_path / "gearbox-guest.wasm.sha256").write_text(hashlib.sha256(bad.read_bytes()).hexdigest() + "\n")
    not_a_guest = gears.load_failure("WasmPythonPath", str(bad))
    assert "could not compile" in not_a_guest.log, not_a_guest.log[-2000:]


def test_a_correct_override_path_loads(gears, tmp_path):
    import shutil

    from conftest import MODULE
    built = MODULE.parent.parent / "wasm-python" / "gearbox-guest.wasm"  # make wasm-python puts it there
    if not built.is_file():
        pytest.skip(f"no built guest at {built}")
    copy = tmp_path / "guest.wasm"
    shutil.copyfile(built, copy)
    shutil.copyfile(f"{built}.sha256", f"{copy}.sha256")
    srv = gears("WasmPythonPath", str(copy))
    assert srv.client().execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').run()") == [["1"], []]
