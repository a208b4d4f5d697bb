"""RG.CONFIGGET / RG.CONFIGSET and load-time configuration (spec §1.1, §3)."""
import pytest
import redis

from gb_helpers import is_error, pyexec, run_ok

DEFAULTS = {
    "MaxExecutions": 1000,
    "MaxExecutionsPerRegistration": 100,
    "ProfileExecutions": 0,
    "ExecutionThreads": 3,
    "ExecutionMaxIdleTime": 5000,
    "SendMsgRetries": 3,
    "PythonAttemptTraceback": 1,
    "ScriptTimeoutMS": 5000,
}


@pytest.mark.parametrize("name,value", sorted(DEFAULTS.items()))
def test_configget_default(r, name, value):
    assert r.execute_command("RG.CONFIGGET", name) == [value]


def test_configget_multiple_keys(r):
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions", "ExecutionThreads") == [1000, 3]


def test_configget_unknown_key_is_error_element(r):
    res = r.execute_command("RG.CONFIGGET", "NoSuchConfig1")
    assert len(res) == 1 and is_error(res[0])
    # RedisGears' text, "(error) " included: clients show it as the start of the message.
    assert str(res[0]) == "(error) Unsupported config parameter: NoSuchConfig1"


def test_configget_mixed_known_and_unknown(r):
    res = r.execute_command("RG.CONFIGGET", "NoSuchConfig", "MaxExecutions")
    assert is_error(res[0]) and res[1] == 1000


def test_configget_no_args_is_error(r):
    with pytest.raises(redis.ResponseError):
        r.execute_command("RG.CONFIGGET")


def test_configset_builtin(r):
    assert r.execute_command("RG.CONFIGSET", "MaxExecutions", "1001") == ["OK"]
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions") == [1001]


def test_configset_name_case_insensitive(r):
    assert r.execute_command("RG.CONFIGSET", "maxexecutions", "7") == ["OK"]
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions") == [7]


def test_configset_unknown_key_saved_in_extra_config(r):
    assert r.execute_command("RG.CONFIGSET", "test", "test") == ["OK - value was saved in extra config dictionary"]
    assert r.execute_command("RG.CONFIGGET", "test") == ["test"]


def test_configset_extra_key_overwrite(r):
    r.execute_command("RG.CONFIGSET", "UserKey", "v1")
    r.execute_command("RG.CONFIGSET", "UserKey", "v2")
    assert r.execute_command("RG.CONFIGGET", "UserKey") == ["v2"]


def test_configset_extra_key_visible_to_scripts(r):
    r.execute_command("RG.CONFIGSET", "UserKey", "user value")
    assert run_ok(r, "GB('ShardsIDReader').map(lambda x: configGet('UserKey')).run()") == ["user value"]


def test_configset_multiple_pairs(r):
    res = r.execute_command("RG.CONFIGSET", "NoSuchConfig", "1", "MaxExecutions", "10")
    assert res == ["OK - value was saved in extra config dictionary", "OK"]
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions") == [10]


def test_configset_not_modifiable_at_runtime(r):
    res = r.execute_command("RG.CONFIGSET", "ExecutionThreads", "5")
    assert len(res) == 1 and is_error(res[0])
    assert str(res[0]) == "(error) Config value ExecutionThreads not modifiable at runtime"
    assert r.execute_command("RG.CONFIGGET", "ExecutionThreads") == [3]


def test_configset_bad_value(r):
    res = r.execute_command("RG.CONFIGSET", "MaxExecutions", "abc")
    assert len(res) == 1 and is_error(res[0])
    assert str(res[0]) == "(error) Failed setting config value MaxExecutions"
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions") == [1000]


def test_configset_missing_value(r):
    try:
        res = r.execute_command("RG.CONFIGSET", "MaxExecutions")
    except redis.ResponseError:
        res = None
    assert res is None or any(is_error(x) for x in res)
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions") == [1000]


def test_configset_no_args_is_error(r):
    with pytest.raises(redis.ResponseError):
        r.execute_command("RG.CONFIGSET")


def test_configset_python_attempt_traceback(r):
    res = r.execute_command("RG.CONFIGSET", "PythonAttemptTraceback", "0")
    assert len(res) == 1 and not is_error(res[0]) and res[0].startswith("OK")
    assert r.execute_command("RG.CONFIGGET", "PythonAttemptTraceback") == [0]
    results, errors = pyexec(r, "GB('ShardsIDReader').map(lambda x: notexists).run()")
    assert errors == ["Error type: <class 'NameError'>, Value: name 'notexists' is not defined"]


def test_configset_script_timeout(r):
    res = r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "1234")
    assert len(res) == 1 and not is_error(res[0]) and res[0].startswith("OK")
    assert r.execute_command("RG.CONFIGGET", "ScriptTimeoutMS") == [1234]


def test_configset_script_timeout_bad_value(r):
    res = r.execute_command("RG.CONFIGSET", "ScriptTimeoutMS", "abc")
    assert len(res) == 1 and is_error(res[0])
    assert r.execute_command("RG.CONFIGGET", "ScriptTimeoutMS") == [5000]


# --- load-time --------------------------------------------------------------------------------

@pytest.mark.gears_args("TestConfig", "TestVal")
def test_load_time_user_key_readable(r):
    assert r.execute_command("RG.CONFIGGET", "TestConfig") == ["TestVal"]
    assert run_ok(r, "GB('ShardsIDReader').map(lambda x: configGet('TestConfig')).run()") == ["TestVal"]


@pytest.mark.gears_args("MaxExecutions", "3", "ExecutionThreads", "2", "PythonAttemptTraceback", "0",
                        "ScriptTimeoutMS", "300", "ExecutionMaxIdleTime", "7000")
def test_load_time_builtin_values(r):
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions", "ExecutionThreads", "PythonAttemptTraceback",
                             "ScriptTimeoutMS", "ExecutionMaxIdleTime") == [3, 2, 0, 300, 7000]


@pytest.mark.gears_args("maxexecutions", "4")
def test_load_time_names_case_insensitive(r):
    assert r.execute_command("RG.CONFIGGET", "MaxExecutions") == [4]
