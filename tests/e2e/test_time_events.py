"""Time events (`registerTE(seconds, fn)`, spec §2.5): the callback runs every period in the
script's session (its globals), errors go to the log without stopping it, the session lives as
long as its time event, an UPGRADE of the session stops it, and bad arguments are refused with
RedisGears' texts. The key-bound form (`keyName=`) is tested in test_keyed_time_events.py. Every
case runs in both modes."""
import pytest
import redis

from gb_helpers import script, wait_until

TICKER = script("""
    ticks = {'n': 0}
    def tick():
        ticks['n'] += 1
        execute('SET', 'ticks', ticks['n'])
    registerTE(1, tick)
""")


def test_callback_runs_every_period_with_the_session_globals(r):
    assert r.execute_command("RG.PYEXECUTE", TICKER, "ID", "ticker") == "OK"
    wait_until(lambda: int(r.get("ticks") or 0) >= 2, timeout=10, what="two ticks")
    sessions = r.execute_command("RG.PYDUMPSESSIONS", "SESSIONS", "ticker")
    assert sessions[0][1] == "ticker", "the time event holds its session"


def test_errors_are_logged_and_the_timer_goes_on(server, r):
    assert r.execute_command("RG.PYEXECUTE", script("""
        def tick():
            execute('INCR', 'attempts')
            raise Exception('boom in tick')
        registerTE(1, tick)
    """)) == "OK"
    wait_until(lambda: int(r.get("attempts") or 0) >= 2, timeout=10, what="a second attempt after a failure")
    assert "boom in tick" in server.log_text()


def test_upgrade_stops_the_old_time_event(r):
    assert r.execute_command("RG.PYEXECUTE", TICKER, "ID", "t") == "OK"
    wait_until(lambda: r.get("ticks") is not None, timeout=10, what="the first tick")
    assert r.execute_command("RG.PYEXECUTE", "x = 1", "ID", "t", "UPGRADE") == "OK"
    import time
    time.sleep(1.5)  # let a tick already scheduled pass
    before = r.get("ticks")
    time.sleep(2.5)
    assert r.get("ticks") == before, "the replaced session's time event must stop"


@pytest.mark.parametrize("call, text", [
    ("registerTE('1', lambda: 1)", "time argument must be a long"),
    ("registerTE(1, len)", "callback must be a function"),
])
def test_bad_arguments(r, call, text):
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("RG.PYEXECUTE", call)
    assert text in str(e.value)
