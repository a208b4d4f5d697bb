"""Load-time arguments: name/value pairs; bad ones make the module refuse to load (and say why)."""
import re

import pytest
import redis

from conftest import MODULE
from gb_helpers import pyexec


def module_names(r):
    names = []
    for entry in r.execute_command("MODULE", "LIST"):
        fields = dict(zip(entry[0::2], entry[1::2]))
        names.append(fields["name"])
    return names


def test_module_registers_as_rg(r):
    assert "rg" in module_names(r)


def test_explicit_mode_runs_scripts(r):
    assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]


def test_no_mode_argument_defaults_to_native(gears_nomode):
    srv = gears_nomode(with_mode=False)
    c = srv.client()
    assert "rg" in module_names(c)
    assert pyexec(c, "GB('ShardsIDReader').run()") == [["1"], []]


def test_no_mode_with_user_config_only(gears_nomode):
    srv = gears_nomode("TestConfig", "TestVal", with_mode=False)
    assert srv.client().execute_command("RG.CONFIGGET", "TestConfig") == ["TestVal"]


def test_unknown_mode_refused(gears_nomode):
    fail = gears_nomode.load_failure("mode", "bogusmode", with_mode=False)
    assert fail.returncode != 0
    assert "bogusmode" in fail.log, fail.log[-2000:]


def test_mode_without_value_refused(gears_nomode):
    fail = gears_nomode.load_failure("mode", with_mode=False)
    assert fail.returncode != 0


@pytest.mark.parametrize("args,hint", [
    (["MaxExecutions", "abc"], "maxexecutions"),
    (["ExecutionThreads", "0"], "executionthreads"),
    (["ExecutionThreads", "many"], "executionthreads"),
    (["PythonAttemptTraceback", "maybe"], "pythonattempttraceback"),
    (["ScriptTimeoutMS", "abc"], "scripttimeoutms"),
    (["ExecutionMaxIdleTime", "x"], "executionmaxidletime"),
])
def test_malformed_known_config_refused(gears, args, hint):
    fail = gears.load_failure(*args)
    assert fail.returncode != 0
    assert hint in fail.log.lower(), fail.log[-2000:]


def test_odd_number_of_args_refused(gears):
    fail = gears.load_failure("MaxExecutions")
    assert fail.returncode != 0
    assert re.search(r"maxexecutions|odd|pair|value", fail.log, re.IGNORECASE), fail.log[-2000:]


def test_odd_number_of_args_after_valid_pair_refused(gears):
    fail = gears.load_failure("MaxExecutions", "10", "TestConfig")
    assert fail.returncode != 0


def test_module_load_command_with_bad_args_fails_and_server_lives(gears, mode):
    gears.ensure_mode_available()
    plain = gears.plain("--enable-module-command", "yes")
    c = plain.client()
    with pytest.raises(redis.ResponseError):
        c.execute_command("MODULE", "LOAD", str(MODULE), "mode", mode, "MaxExecutions", "abc")
    assert c.ping()
    assert "rg" not in module_names(c)


def test_module_load_command_succeeds(gears, mode):
    gears.ensure_mode_available()
    plain = gears.plain("--enable-module-command", "yes")
    c = plain.client()
    assert c.execute_command("MODULE", "LOAD", str(MODULE), "mode", mode, "TestConfig", "TestVal") in ("OK", True)
    assert "rg" in module_names(c)
    assert c.execute_command("RG.CONFIGGET", "TestConfig") == ["TestVal"]
    assert pyexec(c, "GB('ShardsIDReader').run()") == [["1"], []]


def test_module_load_after_failed_load(gears, mode):
    # an operator's typo followed by a corrected MODULE LOAD must work
    gears.ensure_mode_available()
    plain = gears.plain("--enable-module-command", "yes")
    c = plain.client()
    with pytest.raises(redis.ResponseError):
        c.execute_command("MODULE", "LOAD", str(MODULE), "mode", mode, "MaxExecutions", "abc")
    assert c.execute_command("MODULE", "LOAD", str(MODULE), "mode", mode) in ("OK", True)
    assert pyexec(c, "GB('ShardsIDReader').run()") == [["1"], []]


def test_module_unload_refused_or_clean(gears, mode):
    gears.ensure_mode_available()
    plain = gears.plain("--enable-module-command", "yes")
    c = plain.client()
    c.execute_command("MODULE", "LOAD", str(MODULE), "mode", mode)
    try:
        c.execute_command("MODULE", "UNLOAD", "rg")
    except redis.ResponseError:
        # refused (the embedded runtime cannot be unloaded): the module must still work
        assert pyexec(c, "GB('ShardsIDReader').run()") == [["1"], []]
    assert c.ping()
