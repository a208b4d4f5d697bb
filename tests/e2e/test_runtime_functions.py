"""Runtime functions available to scripts: execute, atomic, log, configGet, gearsConfigGet, hashtag (spec §2.1, §2.5)."""
import pytest

from gb_helpers import pyexec, pyexec_error, run, run_ok, script, wait_until


@pytest.mark.parametrize("name", ["GearsBuilder", "GB", "execute", "atomic", "hashtag", "log",
                                  "configGet", "gearsConfigGet"])
def test_runtime_names_preimported(r, name):
    assert pyexec(r, f"assert callable({name}), '{name}'") == "OK"


# --- execute ----------------------------------------------------------------------------------

def test_execute_at_top_level_writes(r):
    assert pyexec(r, "execute('SET', 'k', 'v')") == "OK"
    assert r.get("k") == "v"


def test_execute_inside_step_writes(r):
    run_ok(r, "GB('ShardsIDReader').foreach(lambda x: execute('SET', 'from_step', 'yes')).run()")
    assert r.get("from_step") == "yes"


def test_execute_reply_conversions(r):
    code = script("""
        assert execute('SET', 'a', '1') == 'OK'
        assert execute('GET', 'a') == '1'
        assert execute('GET', 'missing') is None
        assert execute('INCR', 'n') == 1
        assert execute('RPUSH', 'l', 'x', 'y') == 2
        assert execute('LRANGE', 'l', '0', '-1') == ['x', 'y']
        assert execute('PING') == 'PONG'
        res = execute('EXISTS', 'a', 'missing')
        assert type(res) is int and res == 1, repr(res)
    """)
    assert pyexec(r, code) == "OK"


def test_execute_nested_array_conversion(r):
    r.xadd("s", {"f": "v"}, id="1-1")
    code = "GB('ShardsIDReader').map(lambda x: execute('XRANGE', 's', '-', '+')).run()"
    assert run_ok(r, code) == ["[['1-1', ['f', 'v']]]"]


def test_execute_non_string_args_use_str(r):
    assert pyexec(r, "execute('SET', 'num', 5)\nexecute('SET', 'flt', 1.5)") == "OK"
    assert r.get("num") == "5"
    assert r.get("flt") == "1.5"


def test_execute_error_reply_raises(r):
    r.set("str", "abc")
    code = script("""
        try:
            execute('INCR', 'str')
        except Exception as e:
            assert 'value is not an integer' in str(e), str(e)
        else:
            raise AssertionError('no exception')
    """)
    assert pyexec(r, code) == "OK"


def test_execute_error_class_is_gears_error(r):
    code = script("""
        try:
            execute('NOSUCHCOMMAND')
        except Exception as e:
            name = type(e).__module__ + '.' + type(e).__name__
            assert name == 'gears.error', name
        else:
            raise AssertionError('no exception')
    """)
    assert pyexec(r, code) == "OK"


def test_execute_uncaught_error_in_step_goes_to_errors(r):
    r.set("str", "abc")
    results, errors = run(r, "GB('ShardsIDReader').map(lambda x: execute('INCR', 'str')).run()")
    assert results == []
    assert len(errors) == 1 and "value is not an integer" in errors[0]


def test_execute_command_must_be_string(r):
    assert "the given command must be a string" in pyexec_error(r, "execute(1)")


def test_execute_sends_bytes_raw(rb):
    assert pyexec(rb, "execute('SET', 'bk', bytes([0, 255, 1, 128]))") == b"OK"
    assert rb.get("bk") == b"\x00\xff\x01\x80"


def test_execute_sends_bytearray_raw(rb):
    pyexec(rb, "execute('SET', 'bk', bytearray([1, 2, 3, 0]))")
    assert rb.get("bk") == b"\x01\x02\x03\x00"


def test_execute_returns_non_utf8_as_bytearray(rb):
    rb.set("bk", b"\xff\xfe\x00z")
    code = script("""
        v = execute('GET', 'bk')
        assert isinstance(v, bytearray), type(v)
        assert bytes(v) == b'\\xff\\xfe\\x00z', v
    """)
    assert pyexec(rb, code) == b"OK"


def test_execute_binary_round_trip(rb):
    payload = bytes(range(256))
    rb.set("src", payload)
    pyexec(rb, "execute('SET', 'dst', execute('GET', 'src'))")
    assert rb.get("dst") == payload


def test_execute_nul_in_utf8_string_round_trip(r):
    pyexec(r, "execute('SET', 'nul', 'a\\x00b')\nassert execute('GET', 'nul') == 'a\\x00b'")
    assert r.get("nul") == "a\x00b"


def test_execute_binary_key_names(rb):
    pyexec(rb, "execute('SET', b'\\xff\\x00key', 'v')")
    assert rb.get(b"\xff\x00key") == b"v"


# --- atomic -----------------------------------------------------------------------------------

def test_atomic_block(r):
    code = script("""
        def test(x):
            with atomic():
                execute('set', 'x{%s}' % hashtag(), 2)
                execute('set', 'y{%s}' % hashtag(), 1)
        GB('ShardsIDReader').foreach(test).flatmap(lambda x: execute('mget', 'x{%s}' % hashtag(), 'y{%s}' % hashtag())).collect().distinct().sort().run()
    """)
    assert pyexec(r, code) == [["1", "2"], []]


def test_atomic_at_top_level(r):
    assert pyexec(r, "with atomic():\n    execute('SET', 'a', '1')\n    execute('SET', 'b', '2')\n") == "OK"
    assert r.mget("a", "b") == ["1", "2"]


def test_atomic_nested_refused(r):
    code = script("""
        with atomic():
            try:
                with atomic():
                    pass
            except Exception as e:
                assert 'Already inside an atomic block' in str(e), str(e)
            else:
                raise AssertionError('nested atomic accepted')
    """)
    assert pyexec(r, code) == "OK"


def test_atomic_block_usable_after_exception_inside(r):
    code = script("""
        try:
            with atomic():
                raise ValueError('inside')
        except ValueError:
            pass
        with atomic():
            execute('SET', 'after', '1')
    """)
    assert pyexec(r, code) == "OK"
    assert r.get("after") == "1"


# --- log --------------------------------------------------------------------------------------

def test_log_writes_to_redis_log(server, r):
    pyexec(r, "log('hello-from-gearbox-test-1')")
    wait_until(lambda: "GEARS: hello-from-gearbox-test-1" in server.log_text(), timeout=5, what="log line")


def test_log_from_step(server, r):
    run_ok(r, "GB('ShardsIDReader').foreach(lambda x: log('step-log-token-2')).run()")
    wait_until(lambda: "GEARS: step-log-token-2" in server.log_text(), timeout=5, what="log line")


def test_log_warning_level(server, r):
    pyexec(r, "log('warn-token-3', level='warning')")
    wait_until(lambda: "warn-token-3" in server.log_text(), timeout=5, what="log line")


def test_log_debug_level_filtered_by_default_loglevel(server, r):
    pyexec(r, "log('debug-token-4', level='debug')\nlog('notice-token-4')")
    wait_until(lambda: "notice-token-4" in server.log_text(), timeout=5, what="log line")
    assert "debug-token-4" not in server.log_text()


def test_log_message_must_be_string(r):
    pyexec_error(r, "log(1)")


def test_log_bad_level(r):
    pyexec_error(r, "log('x', level='loud')")


# --- configGet / gearsConfigGet ---------------------------------------------------------------

def test_config_get_builtin(r):
    assert pyexec(r, "v = configGet('MaxExecutions')\nassert v == '1000', repr(v)") == "OK"


def test_config_get_unknown_is_none(r):
    assert pyexec(r, "assert configGet('NoSuchConfigKey') is None") == "OK"


def test_config_get_extra_config_set_at_runtime(r):
    r.execute_command("RG.CONFIGSET", "MyKey", "MyVal")
    assert run_ok(r, "GB('ShardsIDReader').map(lambda x: configGet('MyKey')).run()") == ["MyVal"]


def test_gears_config_get_default(r):
    code = "GB('ShardsIDReader').map(lambda x: (gearsConfigGet('NotExists', 'default'), gearsConfigGet('NotExists'))).run()"
    assert run_ok(r, code) == ["('default', None)"]


@pytest.mark.gears_args("TestConfig", "TestVal")
def test_gears_config_get_load_time_value(r):
    code = ("GB('ShardsIDReader').map(lambda x: (gearsConfigGet('TestConfig'), gearsConfigGet('NotExists', 'default')))"
            ".collect().distinct().run()")
    assert pyexec(r, code) == [["('TestVal', 'default')"], []]


# --- hashtag ----------------------------------------------------------------------------------

def test_hashtag_standalone(r):
    assert run_ok(r, "GB('ShardsIDReader').map(lambda x: hashtag()).run()") == ["06S"]


def test_hashtag_at_top_level(r):
    assert pyexec(r, "assert hashtag() == '06S', hashtag()") == "OK"


def test_print_does_not_break_script(r):
    assert pyexec(r, "print('printed from a gearbox script')") == "OK"


def test_flat_error_raises_its_bare_text_when_called_as_in_redisgears(r):
    results, errors = run(r, script("""
        def step(x):
            if x == 1:
                flat_error('called, not raised')
            if x == 2:
                raise flat_error('raised')
            try:
                flat_error('caught')
            except flat_error as e:
                return 'caught: ' + e.args[0]
        def numbers():
            yield from [1, 2, 3]
        GB('PythonReader').map(step).run(numbers)
    """))
    assert results == ["caught: caught"]
    assert sorted(errors) == ["called, not raised", "raised"], "bare texts, no traceback"
