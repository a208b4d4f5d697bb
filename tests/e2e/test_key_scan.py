"""The KeysReader's walk of the keyspace (host-side, RedisModule_Scan): the same keys SCAN MATCH
would give — Redis' own KEYS is the oracle for patterns — across batches, without expired keys,
under the session user's ACL, and safe when a reader stops early."""
import time

import pytest

from events_helpers import debug_server
from gb_helpers import run, run_ok

KEYS = ["a1", "a2", "ab", "aB", "b1", "xa1", "a*", "a?", "a[1]", "a\\b", "a-", "a]", "hello", "hallo",
        "hillo", "h^llo", "", "user:1:name", "user:22:name", "user:", "k\u00e9", "z"]

PATTERNS = ["*", "a*", "a?", "a[12]", "a[^12]", "a[1-2]", "a[2-1]", "a[a-z]", "a\\*", "a\\?", "a\\[1\\]",
            "a\\\\b", "a[\\]]", "a[-]", "h[ae]llo", "h[^e]llo", "h\\^llo", "user:*:name", "user:?:name",
            "*1", "**", "?", "", "k?", "a[1", "[", "\\", "*[", "z*z*", "nomatch*"]


def fill(r, n, name="k{}"):
    p = r.pipeline(transaction=False)
    for i in range(n):
        p.set(name.format(i), i)
    p.execute()


def keys_of(r, pattern):
    return sorted(run_ok(r, f"GB().map(lambda x: x['key']).run({pattern!r})"))


@pytest.fixture
def many_kinds(r):
    for k in KEYS:
        r.set(k, "v")
    return r


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_finds_the_keys_redis_keys_finds(many_kinds, pattern):
    r = many_kinds
    expected = sorted(r.keys(pattern))
    if pattern == "*":
        expected = sorted(KEYS)  # SCAN MATCH * (no matching at all) also returns the empty key
    assert keys_of(r, pattern) == expected


def test_values_and_types_across_batches(r):
    p = r.pipeline(transaction=False)
    for i in range(2500):
        p.set(f"s:{i}", i)
    for i in range(300):
        p.hset(f"h:{i}", mapping={"n": i})
        p.rpush(f"l:{i}", i, i)
    p.execute()
    code = ("GB().map(lambda x: int(x['value']) if x['type'] == 'string' else "
            "int(x['value']['n']) if x['type'] == 'hash' else sum(int(v) for v in x['value'])).accumulate("
            "lambda a, x: (a or 0) + x).run()")
    assert run_ok(r, code) == [str(sum(range(2500)) + sum(range(300)) + 2 * sum(range(300)))]
    assert run_ok(r, "GB().count().run()") == ["3100"]


def test_each_key_once_in_a_quiet_keyspace(r):
    fill(r, 5000)
    keys = run_ok(r, "GB().map(lambda x: x['key']).run()")
    assert len(keys) == 5000 and len(set(keys)) == 5000


def test_expired_keys_are_not_read(gears):
    srv = debug_server(gears)
    r = srv.client()
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # expired keys stay in the keyspace
    for i in range(20):
        r.set(f"gone:{i}", "x", px=1)
        r.set(f"kept:{i}", "y")
    time.sleep(0.05)
    assert r.execute_command("DBSIZE") == 40  # still there, only logically expired
    assert sorted(run_ok(r, "GB().map(lambda x: x['key']).run()")) == sorted(f"kept:{i}" for i in range(20))
    assert run_ok(r, "GB().count().run('gone:*')") == []


def test_read_value_false_walks_too(r):
    fill(r, 1500, "n:{}")
    r.hset("h", "f", "v")
    records = run_ok(r, "GB().filter(lambda x: set(x) == {'key', 'event'}).count().run(readValue=False)")
    assert records == ["1501"]


@pytest.mark.parametrize("code", ["GB().run()", "GB().count().run()"])  # records, and the count walk
def test_user_without_scan_gets_the_permission_error(server, r, code):
    r.execute_command("ACL", "SETUSER", "noscan", "on", ">pw", "~*", "&*", "+@all", "-scan")
    noscan = server.client(username="noscan", password="pw")
    r.set("k", "v")
    results, errors = run(noscan, code)
    assert results == []
    assert len(errors) == 1 and "NOPERM" in errors[0] and "'SCAN'" in errors[0], errors


def test_keys_a_user_may_not_read_are_skipped(server, r):
    r.execute_command("ACL", "SETUSER", "some", "on", ">pw", "resetkeys", "~mine:*", "&*", "+@all")
    some = server.client(username="some", password="pw")
    for i in range(1200):
        r.set(f"mine:{i}", i)
        r.set(f"theirs:{i}", i)
    assert run_ok(some, "GB().count().run()") == ["1200"]


def test_readers_stopped_early_leave_nothing_behind(r):
    fill(r, 3000)
    for _ in range(30):
        assert len(run_ok(r, "GB().limit(3).run()")) == 3
    assert run_ok(r, "GB().count().run()") == ["3000"]


def test_keys_deleted_during_the_walk(r):
    fill(r, 3000)
    # Each record deletes a key that may lie ahead of the walk: no crash, no record of a deleted
    # key's value read after its deletion (a deleted key is simply not seen, or seen before).
    code = "GB().foreach(lambda x: execute('DEL', 'k%d' % (2999 - int(x['value'])))).count().run()"
    count = int(run_ok(r, code)[0])
    assert 1500 <= count <= 3000
    assert r.dbsize() <= 3000 - count // 2


# ---- count() straight after the reader: the host counts the walk (no records are built); it must
# ---- give what counting the records gives, under the same rules.

COUNT_BY_RECORDS = "GB().map(lambda x: x).count().run({arg})"  # a step first: every record is built


def counts(r, arg=""):
    """(count() answered by the host's count walk, count() over built records)."""
    return run_ok(r, f"GB().count().run({arg})"), run_ok(r, COUNT_BY_RECORDS.format(arg=arg))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_count_walk_counts_what_the_pattern_matches(many_kinds, pattern):
    r = many_kinds
    n = len(KEYS) if pattern == "*" else len(r.keys(pattern))
    expected = [str(n)] if n else []
    assert counts(r, repr(pattern)) == (expected, expected)


def test_count_walk_across_batches_and_types(r):
    fill(r, 2500)
    for i in range(300):
        r.hset(f"h:{i}", "n", i)
        r.rpush(f"l:{i}", i)
        r.sadd(f"s:{i}", i)
    assert counts(r) == (["3400"], ["3400"])
    assert counts(r, "'h:*'") == (["300"], ["300"])


def test_count_walk_skips_expired_keys(gears):
    srv = debug_server(gears)
    r = srv.client()
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    for i in range(1500):
        r.set(f"gone:{i}", "x", px=1)
        r.set(f"kept:{i}", "y")
    time.sleep(0.05)
    assert r.execute_command("DBSIZE") == 3000
    assert counts(r) == (["1500"], ["1500"])
    assert counts(r, "'gone:*'") == ([], [])


def test_count_walk_obeys_the_users_key_acl(server, r):
    r.execute_command("ACL", "SETUSER", "some", "on", ">pw", "resetkeys", "~mine:*", "&*", "+@all")
    some = server.client(username="some", password="pw")
    for i in range(1200):
        r.set(f"mine:{i}", i)
        r.hset(f"theirs:{i}", "f", i)
    assert counts(some) == (["1200"], ["1200"])
    assert counts(r) == (["2400"], ["2400"])


def test_count_walk_without_values(r):
    fill(r, 1500, "n:{}")
    r.hset("h", "f", "v")
    assert counts(r, "readValue=False") == (["1501"], ["1501"])


def test_count_walk_of_an_empty_keyspace_gives_nothing(r):
    assert counts(r) == ([], [])


def test_count_walk_then_more_steps(r):
    fill(r, 1234)
    assert run_ok(r, "GB().count().map(lambda n: n * 2).run()") == ["2468"]
    assert run_ok(r, "GB().count().run(convertToStr=False)") == [1234]


def test_count_walk_with_no_scan_reads_the_one_key(r):
    r.set("only", "v")
    assert counts(r, "'only', noScan=True") == (["1"], ["1"])
    # a missing key is read as one record of type 'empty', counted either way
    assert counts(r, "'missing', noScan=True") == (["1"], ["1"])


@pytest.mark.gears_args("ProfileExecutions", "1")
def test_profiled_count_counts_records_the_same(r):
    fill(r, 1500)
    assert counts(r) == (["1500"], ["1500"])
