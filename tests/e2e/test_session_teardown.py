"""Security III: a session's end is bounded. Threads a script started, its atexit callbacks and
`__del__` methods run at interpreter end can neither call Redis after the session ended nor hold
the reaper (and through it the server): each teardown step is stopped after a bound, and a thread
that cannot be stopped (blocked in one C call) leaves its interpreter behind with a log line
instead of blocking. Redis' main thread never waits for a teardown."""
import time

import pytest

from gb_helpers import pyexec, script, wait_until
from security_helpers import assert_healthy

SPINNING_THREAD = script("""
    import threading, time
    def spin():
        while True:
            try:
                execute('INCR', 'late')
                time.sleep(0.01)
            except BaseException:
                pass
    threading.Thread(target=spin).start()
""")

# A raw _thread lock waits in one C call (threading's own locks are sliced by the guards).
BLOCKED_THREAD = script("""
    import threading, _thread
    held = _thread.allocate_lock()
    held.acquire()
    threading.Thread(target=held.acquire).start()
""")

ENDLESS_ATEXIT = script("""
    import atexit
    def forever():
        while True:
            try:
                pass
            except BaseException:
                pass
    atexit.register(forever)
""")

ENDLESS_DEL = script("""
    import sys
    class Stubborn:
        def __del__(self):
            while True:
                try:
                    pass
                except BaseException:
                    pass
    sys.modules['stubborn'] = Stubborn()
""")


def live(r):
    return int(r.info("rg")["rg_live_interpreters"])


def timed_ping(server):
    probe = server.client(socket_timeout=5)
    start = time.monotonic()
    assert probe.ping()
    return time.monotonic() - start


def native_only(mode):
    if mode == "wasm":
        pytest.skip("wasm mode: the guest has no threads (an instance is dropped whole)")


def test_a_thread_left_running_cannot_call_redis_after_its_session_ended(server, r, mode):
    native_only(mode)
    r.set("canary", "still-here")
    assert pyexec(r, SPINNING_THREAD) == "OK"
    wait_until(lambda: live(r) == 0, timeout=10, what="the session's interpreter to end")
    stopped_at = int(r.get("late") or 0)
    time.sleep(0.3)
    assert int(r.get("late") or 0) == stopped_at, "the thread still calls Redis after its session ended"
    assert_healthy(server, r)


def test_threads_blocked_in_a_c_call_leave_their_interpreter_behind_without_blocking(server, r, mode):
    native_only(mode)
    r.set("canary", "still-here")
    for _ in range(6):
        start = time.monotonic()
        assert pyexec(r, BLOCKED_THREAD) == "OK"
        assert time.monotonic() - start < 1.0, "RG.PYEXECUTE waited for a teardown"
        assert timed_ping(server) < 1.0
    wait_until(lambda: server.log_text().count("was left running: a thread it started did not stop") >= 6, timeout=30,
               what="six 'left running' log lines")
    assert live(r) == 0
    assert pyexec(r, "x = 1") == "OK"
    assert_healthy(server, r)


@pytest.mark.parametrize("leftover", ["atexit", "__del__"])
def test_endless_code_at_interpreter_end_is_cut_off(server, r, leftover):
    r.set("canary", "still-here")
    code = ENDLESS_ATEXIT if leftover == "atexit" else ENDLESS_DEL
    for _ in range(5):
        start = time.monotonic()
        assert pyexec(r, code) == "OK"
        assert time.monotonic() - start < 1.0, "RG.PYEXECUTE waited for a teardown"
        assert timed_ping(server) < 1.0
    # Each teardown takes at most about one bound (1 s) per step.
    wait_until(lambda: live(r) == 0, timeout=30, what="every interpreter to end")
    assert pyexec(r, "GB('ShardsIDReader').run()") is not None
    assert_healthy(server, r)


def test_a_session_ending_with_an_execution_thread_leaves_the_server_responsive(server, r, mode):
    native_only(mode)
    r.set("canary", "still-here")
    # The execution's thread drops the last reference (not Redis' main thread).
    code = script("""
        import threading, _thread
        def start_stuck(x):
            held = _thread.allocate_lock()
            held.acquire()
            threading.Thread(target=held.acquire).start()
            return x
        GB('ShardsIDReader').map(start_stuck).run()
    """)
    for _ in range(6):
        r.execute_command("RG.PYEXECUTE", code)
        assert timed_ping(server) < 1.0
    wait_until(lambda: live(r) == 0, timeout=30, what="every interpreter to be ended or left")
    assert_healthy(server, r)
