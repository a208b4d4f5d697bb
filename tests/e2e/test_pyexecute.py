"""RG.PYEXECUTE: reply shapes, options, top-level errors (spec §1.1, §2.3, §2.8, §6.2)."""
import ast

import pytest
import redis

from gb_helpers import (EID_RE, GATED_RUN, MULTI_LUA_ERR, dump_executions, pyexec, pyexec_error, run, run_ok,
                        script)


# --- reply shapes -----------------------------------------------------------------------------

def test_script_without_run_replies_ok(r):
    assert pyexec(r, "GB()") == "OK"


def test_plain_python_script_replies_ok(r):
    assert pyexec(r, "x = 1 + 1\ny = [i for i in range(3)]") == "OK"


def test_empty_script_replies_ok(r):
    assert pyexec(r, "") == "OK"


def test_run_on_empty_database_replies_empty_pair(r):
    assert pyexec(r, "GB().run()") == [[], []]


def test_run_replies_results_and_errors_pair(r):
    r.set("x", "1")
    r.set("y", "2")
    results = run_ok(r, "GB().map(lambda rec: rec['key']).run()")
    assert sorted(results) == ["x", "y"]


def test_blocking_run_is_not_kept_in_executions_list(r):
    r.set("x", "1")
    run_ok(r, "GB().run()")
    assert r.execute_command("RG.DUMPEXECUTIONS") == []


def test_unblocking_replies_execution_id(r):
    eid = pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert isinstance(eid, str) and EID_RE.match(eid), eid


def test_unblocking_execution_results_are_fetchable_and_kept(r):
    r.set("k", "v")
    eid = pyexec(r, "GB().map(lambda rec: rec['value']).run()", "UNBLOCKING")
    assert r.execute_command("RG.GETRESULTSBLOCKING", eid) == [["v"], []]
    assert eid in dump_executions(r)


def test_unblocking_is_case_insensitive(r):
    eid = pyexec(r, "GB('ShardsIDReader').run()", "unBlocking")
    assert EID_RE.match(eid), eid


def test_unblocking_without_run_replies_ok(r):
    assert pyexec(r, "x = 1", "UNBLOCKING") == "OK"


def test_execution_ids_increase(r):
    a = pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    b = pyexec(r, "GB('ShardsIDReader').run()", "UNBLOCKING")
    assert int(b.rsplit("-", 1)[1]) > int(a.rsplit("-", 1)[1])


def test_run_returns_a_value_to_the_script(r):
    # run() must be callable in an expression (1.2 returns an awaitable); the script still replies with the pair
    assert pyexec(r, "res = GB('ShardsIDReader').run()") == [["1"], []]


# --- options ----------------------------------------------------------------------------------

def test_id_and_description_options_accepted(r):
    assert pyexec(r, "x = 1", "ID", "my_session-1", "DESCRIPTION", "a description") == "OK"


def test_options_in_any_order_and_case(r):
    eid = pyexec(r, "GB('ShardsIDReader').run()", "description", "d", "unblocking", "id", "Sess_2")
    assert EID_RE.match(eid), eid


def test_id_missing_value(r):
    assert "ID is missing" in pyexec_error(r, "GB()", "ID")


def test_description_missing_value(r):
    assert "DESCRIPTION is missing" in pyexec_error(r, "GB()", "ID", "s1", "DESCRIPTION")


@pytest.mark.parametrize("bad_id", ["test@a", "with space", "dot.ted", "slash/x", "ünï"])
def test_id_with_invalid_characters(r, bad_id):
    err = pyexec_error(r, "GB()", "ID", bad_id)
    assert "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']" in err


def test_id_with_all_allowed_characters(r):
    assert pyexec(r, "x = 1", "ID", "Az09-_") == "OK"


def test_same_id_reusable_after_session_ended(r):
    # a session with no execution/registration left is gone once the script finished
    assert pyexec(r, "x = 1", "ID", "again") == "OK"
    assert pyexec(r, "x = 1", "ID", "again") == "OK"


def test_same_id_while_session_alive_is_refused(r):
    eid = pyexec(r, GATED_RUN, "ID", "alive", "UNBLOCKING")  # the running execution keeps the session alive
    assert "Session alive already exists" in pyexec_error(r, "x = 1", "ID", "alive")
    r.set("gate", "1")
    r.execute_command("RG.GETRESULTSBLOCKING", eid)


def test_unknown_argument(r):
    assert "Unknown arguments were given: FOO" in pyexec_error(r, "GB().run()", "FOO")


def test_unknown_argument_after_known_options(r):
    err = pyexec_error(r, "GB().run()", "ID", "s1", "UNBLOCKING", "bogus", "more")
    assert "Unknown arguments were given: bogus" in err


def test_unknown_argument_does_not_run_script(r):
    pyexec_error(r, "execute('SET', 'ran', '1')", "NOPE")
    assert r.get("ran") is None


def test_replace_with_missing_value(r):
    assert "REPLACE_WITH is missing" in pyexec_error(r, "GB()", "REPLACE_WITH")


def test_empty_requirements_is_accepted_and_ignored(r):
    assert pyexec(r, "x = 1", "REQUIREMENTS") == "OK"


@pytest.mark.parametrize("args", [
    ["UPGRADE"],
    ["ID", "up1", "UPGRADE"],
    ["FORCE_REINSTALL_REQUIREMENTS"],
    ["ID", "new1", "REPLACE_WITH", "does_not_exist"],
    ["REQUIREMENTS", "--no-such-option"],
])
def test_options_parse_without_crashing(r, args):
    # Any reply is fine (test_requirements.py covers REQUIREMENTS, with no network): the server must live
    try:
        pyexec(r, "x = 1", *args)
    except redis.ResponseError:
        pass
    assert r.ping()
    assert pyexec(r, "x = 1") == "OK"


# --- top-level errors -------------------------------------------------------------------------

def test_top_level_exception_is_error_reply_with_traceback(r):
    err = pyexec_error(r, "raise Exception('boom')")
    lines = ast.literal_eval(err[err.index("["):])
    assert lines[0] == "Traceback (most recent call last):\n"
    assert lines[-1] == "Exception: boom\n"


@pytest.mark.gears_args("PythonAttemptTraceback", "0")
def test_top_level_exception_without_traceback(r):
    err = pyexec_error(r, "raise Exception('boom')")
    assert "Error type: <class 'Exception'>, Value: boom" in err


def test_syntax_error_is_error_reply(r):
    assert "SyntaxError" in pyexec_error(r, "1defs + GearsBuilder().notexists()")


def test_name_error_is_error_reply(r):
    assert "notexists" in pyexec_error(r, "GearsBuilder().notexists()")


def test_two_runs_in_one_script_refused(r):
    err = pyexec_error(r, "GB().run()\nGB().run()\n")
    assert "Can not run more then 1 executions in a single script" in err


def test_exception_after_run_replies_error_and_keeps_no_execution(r):
    err = pyexec_error(r, "GB('ShardsIDReader').run()\nraise Exception('after run')\n", "UNBLOCKING")
    assert "after run" in err
    assert all(status != "running" for status in dump_executions(r).values())


# --- step errors ------------------------------------------------------------------------------

def test_step_error_goes_to_errors_list(r):
    r.set("x", "1")
    results, errors = run(r, "GB().map(lambda rec: notexists).run()")
    assert results == []
    assert len(errors) == 1
    lines = ast.literal_eval(errors[0])
    assert lines[0] == "Traceback (most recent call last):\n"
    assert lines[-1] == "NameError: name 'notexists' is not defined\n"


@pytest.mark.gears_args("PythonAttemptTraceback", "0")
def test_step_error_without_traceback(r):
    r.set("x", "1")
    results, errors = run(r, "GB().map(lambda rec: notexists).run()")
    assert results == []
    assert errors == ["Error type: <class 'NameError'>, Value: name 'notexists' is not defined"]


def test_step_error_drops_only_the_failing_record(r):
    code = script("""
        def f(x):
            if x == 2:
                raise ValueError('bad record %d' % x)
            return x
        GB('PythonReader').map(f).run(lambda: (i for i in range(4)))
    """)
    results, errors = run(r, code)
    assert sorted(results) == ["0", "1", "3"]
    assert len(errors) == 1 and "bad record 2" in errors[0]


def test_pyexecute_from_inside_execution_fails_in_errors(r):
    results, errors = run(r, "GB('ShardsIDReader').map(lambda x: execute('RG.PYEXECUTE', 'GB().run()')).run()")
    assert results == []
    assert len(errors) == 1 and "blocking is not allowed" in errors[0]


# --- MULTI / Lua ------------------------------------------------------------------------------

def test_pyexecute_inside_multi_refused(r):
    p = r.pipeline(transaction=True)
    p.execute_command("RG.PYEXECUTE", "execute('SET', 'from_multi', '1')")
    res = p.execute(raise_on_error=False)
    assert isinstance(res[0], redis.ResponseError)
    assert MULTI_LUA_ERR in str(res[0])
    assert r.get("from_multi") is None


def test_pyexecute_unblocking_inside_multi_refused(r):
    p = r.pipeline(transaction=True)
    p.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING")
    res = p.execute(raise_on_error=False)
    assert isinstance(res[0], redis.ResponseError) and MULTI_LUA_ERR in str(res[0])
    assert r.execute_command("RG.DUMPEXECUTIONS") == []


def test_pyexecute_from_lua_refused(r):
    with pytest.raises(redis.ResponseError) as e:
        r.eval("return redis.call('RG.PYEXECUTE', \"execute('SET', 'from_lua', '1')\")", 0)
    assert MULTI_LUA_ERR in str(e.value)
    assert r.get("from_lua") is None


def test_server_serves_after_multi_refusal(r):
    p = r.pipeline(transaction=True)
    p.execute_command("RG.PYEXECUTE", "GB().run()")
    p.execute(raise_on_error=False)
    assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]
