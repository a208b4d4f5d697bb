"""Bad input of every kind gets a clear error and the server keeps serving."""
import pytest
import redis

from gb_helpers import pyexec, pyexec_error


@pytest.fixture
def alive(r):
    """Yields r; after the test, the server must still answer and still run scripts."""
    yield r
    assert r.ping()
    assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]


# --- arity / flags ----------------------------------------------------------------------------

def test_pyexecute_without_arguments(alive):
    with pytest.raises(redis.ResponseError, match="(?i)wrong number of arguments"):
        alive.execute_command("RG.PYEXECUTE")


def test_unknown_flag(alive):
    assert "Unknown arguments were given: --fast" in pyexec_error(alive, "GB()", "--fast")


def test_unknown_flag_reported_verbatim(alive):
    assert "Unknown arguments were given: MiXeD" in pyexec_error(alive, "GB()", "MiXeD")


@pytest.mark.parametrize("cmd,args", [
    ("RG.GETRESULTS", []),
    ("RG.GETRESULTS", ["a", "b"]),
    ("RG.DROPEXECUTION", []),
    ("RG.ABORTEXECUTION", []),
    ("RG.GETEXECUTION", []),
    ("RG.GETEXECUTION", ["a", "SHARD", "extra"]),
])
def test_execution_commands_wrong_arity(alive, cmd, args):
    with pytest.raises(redis.ResponseError):
        alive.execute_command(cmd, *args)


# --- script bytes -----------------------------------------------------------------------------

def test_non_utf8_script(server, alive):
    rb = server.client(decode_responses=False)
    with pytest.raises(redis.ResponseError):
        rb.execute_command("RG.PYEXECUTE", b"x = '\xff\xfe'\n")


def test_non_utf8_script_only_invalid_bytes(server, alive):
    rb = server.client(decode_responses=False)
    with pytest.raises(redis.ResponseError):
        rb.execute_command("RG.PYEXECUTE", b"\xc3\x28\xa0\xa1")


def test_nul_byte_in_script(server, alive):
    rb = server.client(decode_responses=False)
    with pytest.raises(redis.ResponseError):
        rb.execute_command("RG.PYEXECUTE", b"x = 1\x00\nexecute('SET', 'after_nul', '1')\n")
    assert alive.get("after_nul") is None


def test_nul_byte_inside_string_literal(server, alive):
    rb = server.client(decode_responses=False)
    with pytest.raises(redis.ResponseError):
        rb.execute_command("RG.PYEXECUTE", b"x = 'a\x00b'\n")


def test_nul_escape_in_script_is_fine(alive):
    assert pyexec(alive, "x = 'a\\x00b'\nassert len(x) == 3") == "OK"


def test_non_utf8_id_argument(server, alive):
    rb = server.client(decode_responses=False)
    with pytest.raises(redis.ResponseError):
        rb.execute_command("RG.PYEXECUTE", b"x = 1", b"ID", b"\xff\xfe")


def test_unicode_script(alive):
    assert pyexec(alive, "s = 'héllo wörld ✓ 日本'\nexecute('SET', 'u', s)") == "OK"
    assert alive.get("u") == "héllo wörld ✓ 日本"


def test_huge_script(alive):
    body = "# " + "x" * 100 + "\n"
    code = body * 10000 + "execute('SET', 'huge', '1')\n"  # ~1 MB
    assert pyexec(alive, code) == "OK"
    assert alive.get("huge") == "1"


def test_script_with_crlf_line_endings(alive):
    assert pyexec(alive, "x = 1\r\ny = x + 1\r\nexecute('SET', 'crlf', y)\r\n") == "OK"
    assert alive.get("crlf") == "2"


# --- Python-level errors ----------------------------------------------------------------------

def test_syntax_error(alive):
    assert "SyntaxError" in pyexec_error(alive, "def broken(:\n    pass")


def test_indentation_error(alive):
    assert "IndentationError" in pyexec_error(alive, "if True:\nx = 1")


def test_raise_50_times_in_a_row(alive):
    for i in range(50):
        err = pyexec_error(alive, f"raise ValueError('failure number {i}')")
        assert f"failure number {i}" in err


def test_system_exit_does_not_stop_server(alive):
    pyexec_error(alive, "import sys\nsys.exit(3)")


def test_raise_system_exit_does_not_stop_server(alive):
    pyexec_error(alive, "raise SystemExit(0)")


def test_keyboard_interrupt_is_error(alive):
    pyexec_error(alive, "raise KeyboardInterrupt()")


def test_base_exception_subclass_is_error(alive):
    pyexec_error(alive, "class Boom(BaseException):\n    pass\nraise Boom('bang')")


def test_system_exit_in_step_goes_to_errors(alive):
    results, errors = pyexec(alive, "import sys\nGB('ShardsIDReader').map(lambda x: sys.exit(1)).run()")
    assert results == [] and len(errors) == 1


def test_exception_with_unprintable_message(alive):
    code = "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no str')\nraise E()"
    pyexec_error(alive, code)


def test_exception_with_non_utf8_surrogates(alive):
    pyexec_error(alive, "raise ValueError('bad \\udcff surrogate')")


def test_exception_with_newlines_in_message(alive):
    err = pyexec_error(alive, "raise ValueError('line1\\r\\nline2')")
    assert "line1" in err


def test_step_returning_unconvertible_object(alive):
    code = "class Weird:\n    def __str__(self):\n        raise RuntimeError('cannot str')\nGB('ShardsIDReader').map(lambda x: Weird()).run()"
    results, errors = pyexec(alive, code)
    assert results == [] and len(errors) == 1 and "cannot str" in errors[0]


def test_step_returning_surrogate_string(alive):
    results, errors = pyexec(alive, "GB('ShardsIDReader').map(lambda x: 'a\\udcffb').run()")
    assert len(results) + len(errors) == 1


def test_bad_builder_usage_errors(alive):
    for code in ["GB(1).run()", "GB().map(1).run()", "GB().limit('x').run()", "GB().run(1)",
                 "GB('PythonReader').run()", "GB('CommandReader').run()", "GB('nope')",
                 "GB().run(mode='sync')", "GB().run(mode=5)"]:
        pyexec_error(alive, code)


def test_script_that_closes_stdio_does_not_break_server(alive):
    # sys.stdout/stderr replaced or closed inside a script must not affect the server or other scripts
    pyexec(alive, "import sys\nsys.stdout = None\nsys.stderr = None")
    assert pyexec(alive, "print('still printing')") == "OK"




def impossible_size(mode):
    # Native: 2**60 bytes cannot be mapped by any allocator. Wasm: memory is 32-bit (2**60 is an
    # OverflowError there), so ask for 2 GiB, far past WasmMemoryLimitMB (256 MiB by default).
    return "2**60" if mode == "native" else "2**31 - 1"


def test_impossible_allocation_in_step_is_memory_error(alive, mode):
    # a MemoryError for the script, never an abort of Redis
    code = f"GB('ShardsIDReader').map(lambda x: len(bytearray({impossible_size(mode)}))).run()"
    results, errors = pyexec(alive, code)
    assert results == [] and len(errors) == 1 and "MemoryError" in errors[0]


def test_impossible_allocation_at_top_level_is_error(alive, mode):
    assert "MemoryError" in pyexec_error(alive, f"x = bytearray({impossible_size(mode)})")
