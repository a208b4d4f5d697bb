"""Security III: a script waiting for something that never comes — a lock nobody releases, an event
never set, an empty queue, a thread that never ends — is stopped by ScriptTimeoutMS at top level
and by RG.ABORTEXECUTION in an execution, in both modes (native: the guards make threading's waits
sliced like time.sleep; wasm: epoch interruption)."""
import time

import pytest

from gb_helpers import pyexec_error, wait_status, wait_until
from security_helpers import assert_healthy

WAITS = {
    "Lock.acquire": "import threading\nl = threading.Lock()\nl.acquire()\nl.acquire()",
    "with Lock twice": "import threading\nl = threading.Lock()\nwith l:\n    with l:\n        pass",
    "Event.wait": "import threading\nthreading.Event().wait()",
    "Condition.wait": "import threading\nc = threading.Condition()\nwith c:\n    c.wait()",
    "Semaphore.acquire": "import threading\nthreading.Semaphore(0).acquire()",
    "queue.Queue.get": "import queue\nqueue.Queue().get()",
}

THREAD_WAITS = {
    "RLock held by another thread": "import threading\nr = threading.RLock()\nt = threading.Thread(target=r.acquire)\nt.start()\nt.join()\nr.acquire()",
    "Thread.join": "import threading, time\nt = threading.Thread(target=time.sleep, args=(100,))\nt.start()\nt.join()",
}


@pytest.mark.gears_args("ScriptTimeoutMS", "400")
@pytest.mark.parametrize("wait", sorted(WAITS) + sorted(THREAD_WAITS))
def test_a_wait_at_top_level_is_stopped_by_script_timeout(server, r, mode, wait):
    if wait in THREAD_WAITS and mode == "wasm":
        pytest.skip("wasm mode: the guest has no threads")
    r.set("canary", "still-here")
    start = time.monotonic()
    err = pyexec_error(r, {**WAITS, **THREAD_WAITS}[wait])
    took = time.monotonic() - start
    assert "ScriptTimeoutMS" in err, err
    assert took < 3.0, f"stopped after {took:.1f} s"
    assert_healthy(server, r)


@pytest.mark.parametrize("wait", sorted(WAITS))
def test_a_wait_in_an_execution_is_stopped_by_abort(server, r, wait):
    r.set("canary", "still-here")
    body = "\n".join("    " + line for line in WAITS[wait].splitlines())
    code = "def waits(x):\n" + body + "\n    return x\nGB('ShardsIDReader').map(waits).run()"
    eid = r.execute_command("RG.PYEXECUTE", code, "UNBLOCKING")
    time.sleep(0.3)
    assert r.execute_command("RG.ABORTEXECUTION", eid) == "OK"
    wait_status(r, eid, {"aborted", "done"}, timeout=5)
    wait_until(lambda: r.execute_command("RG.DROPEXECUTION", eid) == "OK", timeout=5, what="the execution to be droppable")
    assert_healthy(server, r)
