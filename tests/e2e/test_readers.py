"""Readers with run(): KeysReader, KeysOnlyReader, PythonReader, ShardsIDReader, StreamReader (spec §2.3, §2.4)."""
import pytest

from gb_helpers import literal, pyexec, pyexec_error, run, run_ok, script


def by_key(records):
    return {rec["key"]: rec for rec in records}


# --- KeysReader -------------------------------------------------------------------------------

def test_keysreader_string_record(r):
    r.set("x", "1")
    assert literal(run_ok(r, "GB().run()")) == [{"key": "x", "value": "1", "type": "string", "event": None}]


def test_keysreader_value_types(r):
    r.set("s", "v")
    r.hset("h", mapping={"f1": "a", "f2": "b"})
    r.rpush("l", "1", "2", "3")
    r.sadd("st", "m")
    r.zadd("z", {"m": 1})
    recs = by_key(literal(run_ok(r, "GB().run()")))
    assert set(recs) == {"s", "h", "l", "st", "z"}
    assert (recs["s"]["type"], recs["s"]["value"]) == ("string", "v")
    assert (recs["h"]["type"], recs["h"]["value"]) == ("hash", {"f1": "a", "f2": "b"})
    assert (recs["l"]["type"], recs["l"]["value"]) == ("list", ["1", "2", "3"])
    assert (recs["st"]["type"], recs["st"]["value"]) == ("set", None)
    assert (recs["z"]["type"], recs["z"]["value"]) == ("zset", None)
    assert all(rec["event"] is None for rec in recs.values())


def test_keysreader_types_sorted(r):
    r.set("r", "1")
    r.lpush("l", "1", "2", "3")
    r.sadd("s", "1", "2", "3")
    r.hset("h", "key", "val")
    r.zadd("z", {"m": 1})
    assert pyexec(r, 'GB().map(lambda x: x["type"]).sort().run()') == [["hash", "list", "set", "string", "zset"], []]


def test_keysreader_default_pattern_reads_all_keys(r):
    for i in range(50):
        r.set(f"k{i}", i)
    assert run_ok(r, "GB().count().run()") == ["50"]


def test_keysreader_pattern_is_a_glob(r):
    for k in ["a1", "a2", "ab", "b1", "xa1"]:
        r.set(k, "v")
    assert sorted(run_ok(r, "GB().map(lambda x: x['key']).run('a[12]')")) == ["a1", "a2"]
    assert sorted(run_ok(r, "GB().map(lambda x: x['key']).run('a?')")) == ["a1", "a2", "ab"]
    assert sorted(run_ok(r, "GB().map(lambda x: x['key']).run('*1')")) == ["a1", "b1", "xa1"]


def test_keysreader_exact_pattern(r):
    r.set("exact", "1")
    r.set("exact2", "1")
    assert run_ok(r, "GB().map(lambda x: x['key']).run('exact')") == ["exact"]


def test_keysreader_many_keys_scan(r):
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.set(f"pref-{i}", i)
    p.set("x", "1")
    p.execute()
    assert pyexec(r, "GB().count().run('pref*')") == [["2000"], []]
    assert pyexec(r, "GB().count().run('x*')") == [["1"], []]


def test_keysreader_no_scan_reads_only_that_key(r):
    r.set("k*", "star")
    r.set("k1", "one")
    recs = literal(run_ok(r, "GB().run('k*', noScan=True)"))
    assert [(x["key"], x["value"]) for x in recs] == [("k*", "star")]


def test_keysreader_no_scan_missing_key_is_empty(r):
    assert pyexec(r, "GB().map(lambda x: x['type']).distinct().run('test', noScan=True)") == [["empty"], []]


def test_keysreader_no_scan_missing_key_value_is_none(r):
    recs = literal(run_ok(r, "GB().run('missing', noScan=True)"))
    assert recs == [{"key": "missing", "value": None, "type": "empty", "event": None}]


def test_keysreader_read_value_false_record_shape(r):
    r.set("x", "1")
    assert literal(run_ok(r, "GB().run(readValue=False)")) == [{"key": "x", "event": None}]


def test_keysreader_read_value_false_hash(r):
    r.hset("h", "f", "v")
    recs = literal(run_ok(r, "GB().run(readValue=False)"))
    assert recs == [{"key": "h", "event": None}]


def test_keysreader_non_utf8_value_is_bytearray(r):
    r.set("bin", b"\xff\xfe\x00\x01")
    code = "GB().map(lambda x: (type(x['value']).__name__, list(x['value']))).run()"
    assert literal(run_ok(r, code)) == [("bytearray", [0xFF, 0xFE, 0x00, 0x01])]


def test_keysreader_nul_in_utf8_value(r):
    r.set("x", "test\x00test")
    pyexec(r, "GB().foreach(lambda x: execute('SET', 'bar', x['value'])).run('x')")
    assert r.get("bar") == "test\x00test"


def test_keysreader_no_scan_must_be_bool(r):
    pyexec_error(r, "GB().run(noScan=1)")


def test_keysreader_read_value_must_be_bool(r):
    pyexec_error(r, "GB().run(readValue=1)")


def test_keysreader_pattern_must_be_string(r):
    assert "regex argument must be a string" in pyexec_error(r, "GB().run(1)")


def test_keysreader_default_arg(r):
    r.set("da1", "1")
    r.set("other", "1")
    assert run_ok(r, "GB('KeysReader', defaultArg='da*').map(lambda x: x['key']).run()") == ["da1"]


# --- KeysOnlyReader ---------------------------------------------------------------------------

@pytest.fixture
def three_keys(r):
    for k in ["xx", "xy", "y"]:
        r.set(k, "1")
    return r


@pytest.mark.parametrize("call,expected", [
    ("GB('KeysOnlyReader').run()", ["xx", "xy", "y"]),
    ("GB('KeysOnlyReader', defaultArg='x*').run()", ["xx", "xy"]),
    ("GB('KeysOnlyReader').run('x*')", ["xx", "xy"]),
    ("GB('KeysOnlyReader').run('xx')", ["xx"]),
    ("GB('KeysOnlyReader').run(count=1)", ["xx", "xy", "y"]),
    ("GB('KeysOnlyReader').run('x', noScan=True)", []),
    ("GB('KeysOnlyReader').run('xy', noScan=True)", ["xy"]),
    ("GB('KeysOnlyReader').run(patternGenerator=lambda: ('x*', False))", ["xx", "xy"]),
    ("GB('KeysOnlyReader').run(patternGenerator=lambda: ('y', True))", ["y"]),
])
def test_keysonlyreader(three_keys, call, expected):
    assert sorted(run_ok(three_keys, call)) == expected


def test_keysonlyreader_records_are_key_names(r):
    r.set("k", "v")
    assert run_ok(r, "GB('KeysOnlyReader').map(lambda x: type(x).__name__ + ':' + x).run()") == ["str:k"]


def test_keysonlyreader_sorted(r):
    for k in ["x", "z", "y"]:
        r.set(k, "1")
    assert pyexec(r, "GB('KeysOnlyReader').sort().run()") == [["x", "y", "z"], []]


def test_keysonlyreader_bad_count_in_errors(r):
    r.set("k", "v")
    results, errors = run(r, "GB('KeysOnlyReader').run(count='noNumber')")
    assert len(errors) == 1 and "value is not an integer" in errors[0]


def test_keysonlyreader_bad_pattern_generator_in_errors(r):
    results, errors = run(r, "GB('KeysOnlyReader').run(patternGenerator='adwaw')")
    assert len(errors) == 1 and "object is not callable" in errors[0]


# --- PythonReader -----------------------------------------------------------------------------

def test_pythonreader_generator_function(r):
    code = script("""
        def gen():
            for i in range(3):
                yield {'n': i}
        GB('PythonReader').map(lambda x: x['n']).run(gen)
    """)
    assert run_ok(r, code) == ["0", "1", "2"]


def test_pythonreader_lambda_returning_generator(r):
    assert run_ok(r, "GB('PythonReader').run(lambda: (x * x for x in range(4)))") == ["0", "1", "4", "9"]


def test_pythonreader_any_object_records(r):
    code = "GB('PythonReader').map(lambda x: type(x).__name__).run(lambda: (x for x in [1, 'a', None, (1,), [2]]))"
    assert run_ok(r, code) == ["int", "str", "NoneType", "tuple", "list"]


@pytest.mark.parametrize("code", [
    "GB('PythonReader').run('*')",
    "GB('PythonReader', '*').run()",
])
def test_pythonreader_rejects_non_function(r, code):
    assert "pyreader argument must be a function" in pyexec_error(r, code)


def test_pythonreader_requires_function(r):
    err = pyexec_error(r, "GB('PythonReader').run()")
    assert "pyreader argument must be a function" in err or "python reader function is not given" in err


# --- ShardsIDReader ---------------------------------------------------------------------------

def test_shardsidreader_standalone_yields_one(r):
    assert pyexec(r, "GB('ShardsIDReader').run()") == [["1"], []]


def test_shardsidreader_ignores_argument(r):
    assert pyexec(r, "GB('ShardsIDReader').run('whatever')") == [["1"], []]


def test_shardsidreader_with_execute(r):
    for i in range(100):
        r.set(str(i), str(i))
    code = "GB('ShardsIDReader').map(lambda x: int(execute('dbsize'))).aggregate(0, lambda a, x: x, lambda a, x: a + x).run()"
    assert pyexec(r, code) == [["100"], []]


# --- StreamReader (run only) ------------------------------------------------------------------

def test_streamreader_records(r):
    id1 = r.xadd("s", {"foo": "bar", "foo1": "bar1"})
    id2 = r.xadd("s", {"foo2": "bar2"})
    recs = literal(run_ok(r, "GB('StreamReader').run('s')"))
    assert [rec["id"] for rec in recs] == [id1, id2]
    assert [rec["value"] for rec in recs] == [{"foo": "bar", "foo1": "bar1"}, {"foo2": "bar2"}]
    assert all(rec["key"] == "s" for rec in recs)


def test_streamreader_from_id_is_exclusive(r):
    id1 = r.xadd("s", {"a": "1"})
    r.xadd("s", {"b": "2"})
    recs = literal(run_ok(r, f"GB('StreamReader').run('s', fromId='{id1}')"))
    assert [rec["value"] for rec in recs] == [{"b": "2"}]


def test_streamreader_bad_from_id_in_errors(r):
    r.xadd("s", {"foo": "bar"})
    assert pyexec(r, "GB('StreamReader').run('s', fromId='test')") == \
        [[], ["ERR Invalid stream ID specified as stream command argument"]]


def test_streamreader_from_id_must_be_string(r):
    r.xadd("s", {"foo": "bar"})
    pyexec_error(r, "GB('StreamReader').run('s', fromId=1)")  # spec: fromId is a str


def test_streamreader_reads_only_named_stream(r):
    r.xadd("s1", {"a": "1"})
    r.xadd("s2", {"b": "2"})
    recs = literal(run_ok(r, "GB('StreamReader').run('s1')"))
    assert [(rec["key"], rec["value"]) for rec in recs] == [("s1", {"a": "1"})]


# --- CommandReader cannot run -----------------------------------------------------------------

def test_commandreader_run_refused(r):
    assert "reader do not support run" in pyexec_error(r, "GB('CommandReader').run()")


def test_shard_reader_callback_is_the_shards_id_generator(r):
    # RedisGears exposes ShardsIDReader's generator as `shardReaderCallback`; its own tests use it.
    assert run(r, "GB('PythonReader').run(shardReaderCallback)") == (["1"], [])
    assert "pyreader argument must be a function" in pyexec_error(r, "GB('PythonReader', shardReaderCallback).run('*')")
