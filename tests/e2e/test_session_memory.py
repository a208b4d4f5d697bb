"""Memory per session, both modes: every session's interpreter has a cap (NativeMemoryLimitMB,
WasmMemoryLimitMB) past which its script gets MemoryError and the server lives on, and what each
session and each owner holds is shown (RG.PYDUMPSESSIONS OWNER, INFO rg_owners)."""
import pytest

from gb_helpers import pyexec, pyexec_error, run_ok, script
from security_helpers import assert_healthy, make_tenants

CAPS = ("NativeMemoryLimitMB", "64", "WasmMemoryLimitMB", "64")

BOMBS = {
    "big strings kept in a list": """
        kept = []
        while True:
            kept.append('x' * 1000000)
    """,
    "small objects chained": """
        x = None
        while True:
            x = [x, x]
    """,
    "one request far past the cap": """
        x = 'a' * (10 ** 9)
    """,
    "a dict that keeps growing": """
        d = {}
        i = 0
        while True:
            d[i] = str(i) * 20
            i += 1
    """,
    "MemoryError caught and the bomb goes on": """
        kept = []
        for attempt in range(50):
            try:
                while True:
                    kept.append(bytearray(100000))
            except MemoryError:
                pass
        import traceback, json, decimal
        kept.append(bytearray(100000))
    """,
}


def used_rss(r):
    return int(r.info("memory")["used_memory_rss"])


@pytest.mark.gears_args(*CAPS)
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_memory_bomb_at_top_level_gets_memory_error_and_the_server_lives(server, r, bomb):
    r.set("canary", "still-here")
    before = used_rss(r)
    err = pyexec_error(r, script(BOMBS[bomb]))
    # A script that swallows its MemoryErrors and goes on is stopped by ScriptTimeoutMS instead,
    # or, in wasm mode, may take down its own instance (CPython-WASI exits when it runs out).
    assert "MemoryError" in err or "ScriptTimeoutMS" in err or "wasm instance is gone" in err, err
    assert_healthy(server, r)
    assert pyexec(r, "x = bytearray(8 * 1024 * 1024)\nexecute('SET', 'after', len(x))") == "OK"
    assert r.get("after") == str(8 * 1024 * 1024)
    # The cap held: the server did not grow by much more than one capped interpreter.
    assert used_rss(r) - before < 400 * 1024 * 1024, (before, used_rss(r))


@pytest.mark.gears_args(*CAPS)
def test_a_memory_bomb_in_an_execution_step_fails_that_execution_only(server, r, mode):
    r.set("canary", "still-here")
    # wasm mode: CPython-WASI may exit on running out inside a step; that ends its own instance.
    expected = ("MemoryError",) if mode == "native" else ("MemoryError", "wasm instance is gone")
    res = r.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: len(bytearray(200 * 1024 * 1024))).run()")
    assert res[0] == [] and len(res[1]) == 1 and any(e in res[1][0] for e in expected), res
    bomb = script("""
        def grow(x):
            kept = []
            while True:
                kept.append('y' * 1000000)
        GB('ShardsIDReader').map(grow).run()
    """)
    res = r.execute_command("RG.PYEXECUTE", bomb)
    assert res[0] == [] and any(e in res[1][0] for e in expected), res
    assert run_ok(r, "GB('ShardsIDReader').run()") == ["1"]
    assert_healthy(server, r)


@pytest.mark.gears_args(*CAPS)
def test_a_memory_bomb_in_a_thread_of_the_script_is_capped_too(server, r, mode):
    if mode == "wasm":
        pytest.skip("wasm mode: the guest has no threads")
    r.set("canary", "still-here")
    bomb = script("""
        import threading
        seen = []
        def grow():
            kept = []
            try:
                while True:
                    kept.append('z' * 1000000)
            except MemoryError as e:
                seen.append(str(e))
        t = threading.Thread(target=grow)
        t.start()
        t.join()
        execute('SET', 'thread-saw', seen[0] if seen else 'nothing')
    """)
    assert pyexec(r, bomb) == "OK"
    assert "NativeMemoryLimitMB" in r.get("thread-saw") or r.get("thread-saw") == "", r.get("thread-saw")
    assert_healthy(server, r)


def test_the_cap_is_a_runtime_config_read_when_a_session_starts(r, mode):
    name = "NativeMemoryLimitMB" if mode == "native" else "WasmMemoryLimitMB"
    assert r.execute_command("RG.CONFIGSET", name, "48") == ["OK"]
    assert "MemoryError" in pyexec_error(r, "b = bytearray(100 * 1024 * 1024)")
    assert r.execute_command("RG.CONFIGSET", name, "256") == ["OK"]
    assert pyexec(r, "b = bytearray(100 * 1024 * 1024)") == "OK"


def test_native_memory_limit_zero_means_no_cap(r, mode):
    assert r.execute_command("RG.CONFIGSET", "NativeMemoryLimitMB", "0") == ["OK"]
    assert r.execute_command("RG.CONFIGGET", "NativeMemoryLimitMB") == [0]
    if mode == "native":
        assert pyexec(r, "b = bytearray(1500 * 1024 * 1024)") == "OK"


def _sessions_by_id(client):
    entries = client.execute_command("RG.PYDUMPSESSIONS", "OWNER")
    return {dict(zip(e[::2], e[1::2]))["ID"]: dict(zip(e[::2], e[1::2])) for e in entries}


def test_each_session_and_each_owner_shows_the_memory_it_holds(server, r):
    t = make_tenants(server, r)
    held = script("""
        data = bytearray(40 * 1024 * 1024)
        GB('CommandReader').map(lambda x: len(data)).register(trigger='a_big')
    """)
    assert pyexec(t["alice"], held, "ID", "big") == "OK"
    assert pyexec(t["bob"], "GB('CommandReader').register(trigger='b_small')", "ID", "small") == "OK"
    mine = _sessions_by_id(t["alice"])
    assert list(mine) == ["big"], mine
    assert mine["big"]["owner"] == "alice"
    assert mine["big"]["memoryBytes"] >= 40 * 1024 * 1024, mine
    theirs = _sessions_by_id(t["bob"])
    assert list(theirs) == ["small"], theirs
    assert 0 < theirs["small"]["memoryBytes"] < mine["big"]["memoryBytes"], (theirs, mine)
    owners = r.info("rg")
    alice = owners["rg_alice"]
    bob = owners["rg_bob"]
    assert alice["sessions"] == 1 and alice["memory"] >= 40 * 1024 * 1024, alice
    assert bob["sessions"] == 1 and 0 < bob["memory"] < alice["memory"], bob
    assert_healthy(server, r)
