"""Isolation between scripts (design §1): globals, builtins, sys.modules and imported modules are per script."""
from gb_helpers import GATED_RUN, pyexec, run_ok, script


def test_globals_not_visible_to_next_script(r):
    assert pyexec(r, "secret_value = 42") == "OK"
    assert run_ok(r, "GB('ShardsIDReader').map(lambda x: 'secret_value' in globals()).run()") == ["False"]


def test_same_script_twice_starts_fresh(r):
    code = script("""
        if 'x' not in globals().keys():
            x = 1
        def returnX(a):
            global x
            x += 1
            return x
        GB('ShardsIDReader').map(returnX).run()
    """)
    assert pyexec(r, code) == [["2"], []]
    assert pyexec(r, code) == [["2"], []]


def test_builtins_patch_does_not_leak(r):
    assert pyexec(r, "import builtins\nbuiltins.len = lambda x: 42\nassert len([1]) == 42") == "OK"
    assert pyexec(r, "assert len([1, 2]) == 2, len([1, 2])") == "OK"


def test_builtins_deleted_does_not_leak(r):
    assert pyexec(r, "import builtins\ndel builtins.sorted") == "OK"
    assert pyexec(r, "assert sorted([2, 1]) == [1, 2]") == "OK"


def test_sys_modules_os_patch_does_not_leak(r):
    assert pyexec(r, "import sys\nsys.modules['os'] = 'patched'") == "OK"
    assert pyexec(r, "import os\nassert hasattr(os, 'getpid'), os") == "OK"


def test_imported_module_attribute_does_not_leak(r):
    assert pyexec(r, "import json\njson.gearbox_marker = True") == "OK"
    assert pyexec(r, "import json\nassert not hasattr(json, 'gearbox_marker')") == "OK"


def test_imported_module_function_patch_does_not_leak(r):
    assert pyexec(r, "import json\njson.dumps = lambda *a, **k: 'hijacked'") == "OK"
    assert run_ok(r, "import json\nGB('ShardsIDReader').map(lambda x: json.dumps([1])).run()") == ["[1]"]


def test_sys_path_change_does_not_leak(r):
    assert pyexec(r, "import sys\nsys.path.append('/gearbox-leak-test')") == "OK"
    assert pyexec(r, "import sys\nassert '/gearbox-leak-test' not in sys.path") == "OK"


def test_user_defined_module_in_sys_modules_does_not_leak(r):
    code = "import sys, types\nm = types.ModuleType('gb_shared')\nm.v = 1\nsys.modules['gb_shared'] = m"
    assert pyexec(r, code) == "OK"
    assert pyexec(r, "try:\n    import gb_shared\nexcept ImportError:\n    pass\nelse:\n    raise AssertionError('leaked')") == "OK"


def test_gearsbuilder_patch_does_not_leak(r):
    assert pyexec(r, "GearsBuilder.run = lambda self, *a, **k: None\nGB.map = None") == "OK"
    assert pyexec(r, "GB('ShardsIDReader').map(lambda x: 'ok').run()") == [["ok"], []]


def test_runtime_function_rebinding_does_not_leak(r):
    assert pyexec(r, "import builtins\nbuiltins.execute = None\nexecute = None") == "OK"
    assert pyexec(r, "execute('SET', 'still', 'works')") == "OK"
    assert r.get("still") == "works"


def test_live_sessions_keep_their_own_globals(server, r):
    code_a = "owner = 'A'\n" + GATED_RUN.replace("return x", "return owner")
    eid = pyexec(r, code_a, "UNBLOCKING")
    # while A is still running, B defines the same global name
    assert pyexec(r, "owner = 'B'\nGB('ShardsIDReader').map(lambda x: owner).run()") == [["B"], []]
    r.set("gate", "1")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["A"], []]


def test_globals_persist_between_callbacks_of_one_script(r):
    code = script("""
        seen = []
        def remember(x):
            seen.append(x)
            return len(seen)
        GB('PythonReader').map(remember).run(lambda: (i for i in range(5)))
    """)
    assert run_ok(r, code) == ["1", "2", "3", "4", "5"]


def test_exception_in_one_script_does_not_poison_next(r):
    for _ in range(3):
        try:
            pyexec(r, "import sys\nsys.modules.clear()\nraise RuntimeError('x')")
        except Exception:
            pass
    assert pyexec(r, "import json\nassert json.dumps({'a': 1}) == '{\"a\": 1}'") == "OK"
