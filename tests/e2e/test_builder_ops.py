"""GearsBuilder operations (spec §2.2), their quirks, argument validation and result conversion (§2.7).

Most cases read from a PythonReader generator so the input is exact and ordered.
"""
import pytest

from gb_helpers import key_value_map, literal, pyexec, pyexec_error, run, run_ok, script


def gen(values):
    """A PythonReader run() argument yielding the given Python literal values, in order."""
    return f"lambda: (v for v in {values!r})"


def ops(chain, values, **run_kwargs):
    extra = "".join(f", {k}={v}" for k, v in run_kwargs.items())
    return f"GB('PythonReader'){chain}.run({gen(values)}{extra})"


# --- builder ----------------------------------------------------------------------------------

def test_gb_is_gearsbuilder(r):
    assert pyexec(r, "assert GB is GearsBuilder") == "OK"


def test_operations_are_chainable(r):
    code = script("""
        b = GB('PythonReader')
        for op in (b.map(lambda x: x), b.filter(lambda x: True), b.flatmap(lambda x: [x]),
                   b.foreach(lambda x: None), b.limit(10), b.collect(), b.repartition(lambda x: 'k')):
            assert op is b, op
    """)
    assert pyexec(r, code) == "OK"


def test_unknown_reader(r):
    assert "reader does not exists" in pyexec_error(r, "GB('unexists').run()")


def test_reader_must_be_string(r):
    assert "reader argument must be a string" in pyexec_error(r, "GB(1).run()")


def test_desc_must_be_string(r):
    assert "desc argument must be a string" in pyexec_error(r, "GB('KeysReader', desc=1).run()")


def test_desc_string_accepted(r):
    assert pyexec(r, "GB('ShardsIDReader', desc='my description').run()") == [["1"], []]


# --- map / flatmap / foreach / filter ---------------------------------------------------------

def test_map(r):
    assert run_ok(r, ops(".map(lambda x: x * 2)", [1, 2, 3])) == ["2", "4", "6"]


def test_flatmap_emits_list_elements_in_reverse_order(r):
    assert run_ok(r, ops(".flatmap(lambda x: [x, x + 1, x + 2])", [10])) == ["12", "11", "10"]


def test_flatmap_empty_list_drops_record(r):
    assert run_ok(r, ops(".flatmap(lambda x: [] if x == 2 else [x])", [1, 2, 3])) == ["1", "3"]


def test_flatmap_tuple_passes_through_as_one_record(r):
    assert run_ok(r, ops(".flatmap(lambda x: (x, x))", [7])) == ["(7, 7)"]


def test_flatmap_string_passes_through_as_one_record(r):
    assert run_ok(r, ops(".flatmap(lambda x: 'abc')", [1])) == ["abc"]


def test_flatmap_dict_passes_through_as_one_record(r):
    assert literal(run_ok(r, ops(".flatmap(lambda x: {'a': x})", [1]))) == [{"a": 1}]


def test_foreach_passes_records_unchanged_and_runs_side_effect(r):
    results = run_ok(r, ops(".foreach(lambda x: execute('INCR', 'foreach_calls'))", [5, 6, 7]))
    assert results == ["5", "6", "7"]
    assert r.get("foreach_calls") == "3"


def test_filter(r):
    assert run_ok(r, ops(".filter(lambda x: x % 2 == 0)", list(range(7)))) == ["0", "2", "4", "6"]


def test_filter_uses_truthiness(r):
    assert run_ok(r, ops(".filter(lambda x: x)", [0, 1, "", "a", [], [1], None])) == ["1", "a", "[1]"]


# --- accumulate / localgroupby / groupby / batchgroupby ---------------------------------------

def test_accumulate_starts_from_none(r):
    code = ops(".accumulate(lambda a, x: (['start'] if a is None else a) + [x])", [1, 2, 3])
    assert literal(run_ok(r, code)) == [["start", 1, 2, 3]]


def test_accumulate_sum(r):
    assert run_ok(r, ops(".accumulate(lambda a, x: (a or 0) + x)", list(range(10)))) == ["45"]


def test_localgroupby(r):
    code = ops(".localgroupby(lambda x: str(x % 2), lambda k, a, x: (a or 0) + x)", list(range(10)))
    assert key_value_map(run_ok(r, code)) == {"0": 20, "1": 25}


def test_groupby(r):
    code = ops(".groupby(lambda x: x[0], lambda k, a, x: (a or 0) + 1)", ["apple", "avocado", "banana"])
    assert key_value_map(run_ok(r, code)) == {"a": 2, "b": 1}


def test_groupby_reducer_gets_key(r):
    code = ops(".groupby(lambda x: str(x % 3), lambda k, a, x: ('k=%s' % k) if a is None else a)", [1, 2, 3, 4])
    assert key_value_map(run_ok(r, code)) == {"0": "k=0", "1": "k=1", "2": "k=2"}


def test_batchgroupby_reducer_gets_all_records(r):
    code = ops(".batchgroupby(lambda x: str(x % 2), lambda k, records: sorted(records))", [5, 2, 3, 4, 1])
    assert key_value_map(run_ok(r, code)) == {"0": [2, 4], "1": [1, 3, 5]}


def test_groupby_non_string_keys_become_strings(r):
    """Not stated by the spec, but RedisGears 1.x groups by the extractor's repr() (its own testCountBy
    expects {'key': '100', 'value': 50} for int values), and migrated scripts compare keys as strings."""
    code = ops(".countby(lambda x: x % 2)", [1, 2, 3])
    assert key_value_map(run_ok(r, code)) == {"0": 1, "1": 2}


# --- limit / collect / repartition ------------------------------------------------------------

def test_limit(r):
    assert run_ok(r, ops(".limit(3)", list(range(10)))) == ["0", "1", "2"]


def test_limit_with_offset(r):
    assert run_ok(r, ops(".limit(2, 3)", list(range(10)))) == ["3", "4"]


def test_limit_past_end(r):
    assert run_ok(r, ops(".limit(5, 8)", list(range(10)))) == ["8", "9"]


def test_collect_keeps_records(r):
    assert sorted(run_ok(r, ops(".collect()", [3, 1, 2]))) == ["1", "2", "3"]


def test_repartition_keeps_records(r):
    assert sorted(run_ok(r, ops(".repartition(lambda x: str(x))", [3, 1, 2]))) == ["1", "2", "3"]


# --- sugar: aggregate / aggregateby / count / countby / sort / distinct / avg -----------------

def test_aggregate(r):
    code = ops(".aggregate(0, lambda a, x: a + x, lambda a, x: a + x)", list(range(10)))
    assert run_ok(r, code) == ["45"]


def test_aggregate_zero_is_copied(r):
    code = script("""
        zero = {'sum': 0, 'mul': 1}
        def local(a, x):
            a['sum'] += x
            a['mul'] *= x
            return a
        def glob(a, x):
            a['sum'] += x['sum']
            a['mul'] *= x['mul']
            return a
        GB('PythonReader').aggregate(zero, local, glob).map(lambda a: (a, zero)).run(lambda: (v for v in [1, 2, 3]))
    """)
    assert literal(run_ok(r, code)) == [({"sum": 6, "mul": 6}, {"sum": 0, "mul": 1})]


def test_aggregateby(r):
    code = ops(".aggregateby(lambda x: str(x % 2), 0, lambda k, a, x: a + x, lambda k, a, x: a + x)", list(range(10)))
    assert key_value_map(run_ok(r, code)) == {"0": 20, "1": 25}


def test_count(r):
    assert run_ok(r, ops(".count()", list(range(10)))) == ["10"]


def test_count_on_empty_input(r):
    results, errors = run(r, ops(".count()", []))
    assert errors == [] and results in ([], ["0"])


def test_countby_with_extractor(r):
    code = ops(".countby(lambda x: str(x % 3))", list(range(10)))
    assert key_value_map(run_ok(r, code)) == {"0": 4, "1": 3, "2": 3}


def test_countby_default_extractor(r):
    assert key_value_map(run_ok(r, ops(".countby()", ["a", "b", "a"]))) == {"a": 2, "b": 1}


def test_sort_default_output_is_ascending(r):
    assert run_ok(r, ops(".sort()", [3, 1, 2, 5, 4])) == ["1", "2", "3", "4", "5"]


def test_sort_reverse_false_output_is_descending(r):
    assert run_ok(r, ops(".sort(reverse=False)", [3, 1, 2, 5, 4])) == ["5", "4", "3", "2", "1"]


def test_sort_strings(r):
    assert run_ok(r, ops(".sort()", ["pear", "apple", "fig"])) == ["apple", "fig", "pear"]


def test_distinct(r):
    results = run_ok(r, ops(".distinct()", [1, 1, 2, 3, 3, 3]))
    assert sorted(results) == ["1", "2", "3"]


def test_avg_default_extractor(r):
    assert run_ok(r, ops(".avg()", [1, 2, 3, 4])) == ["2.5"]


def test_avg_with_extractor(r):
    assert run_ok(r, ops(".avg(lambda x: x['v'])", [{"v": 1}, {"v": 2}])) == ["1.5"]


def test_avg_over_string_values(r):
    for i in range(100):
        r.set(str(i), str(i))
    assert run_ok(r, "GB().map(lambda x: int(x['value'])).avg().run()") == ["49.5"]


def test_local_aggregateby_internal(r):
    code = ops(".__localAggregateby__(lambda x: str(x % 2), 0, lambda k, a, x: a + 1)", list(range(5)))
    assert key_value_map(run_ok(r, code)) == {"0": 3, "1": 2}


# --- callback errors go to the errors list ----------------------------------------------------

@pytest.mark.parametrize("chain", [
    ".map(lambda x: notexists(x))",
    ".flatmap(lambda x: notexists(x))",
    ".filter(lambda x: notexists(x))",
    ".foreach(lambda x: notexists(x))",
    ".accumulate(lambda a, x: notexists(x))",
    ".localgroupby(lambda x: notexists(x), lambda k, a, x: 1)",
    ".groupby(lambda x: 'k', lambda k, a, x: notexists(x))",
    ".groupby(lambda x: notexists(x), lambda k, a, x: 1)",
    ".batchgroupby(lambda x: 'k', lambda k, xs: notexists(xs))",
    ".repartition(lambda x: notexists(x))",
    ".aggregate(0, lambda a, x: notexists(x), lambda a, x: a)",
    ".aggregateby(lambda x: 'k', 0, lambda k, a, x: notexists(x), lambda k, a, x: a)",
    ".avg(lambda x: notexists(x))",
])
def test_callback_error_lands_in_errors_list(r, chain):
    results, errors = run(r, ops(chain, [1, 2]))
    assert len(errors) >= 1
    assert all("notexists" in e for e in errors), errors


def test_python_reader_generator_error_lands_in_errors_list(r):
    code = script("""
        def g():
            yield 1
            raise ValueError('generator broke')
        GB('PythonReader').run(g)
    """)
    results, errors = run(r, code)
    assert results == ["1"]
    assert len(errors) == 1 and "generator broke" in errors[0]


# --- argument validation (top-level errors) ---------------------------------------------------

@pytest.mark.parametrize("op", ["map", "flatmap", "foreach", "filter", "accumulate"])
def test_single_function_ops_reject_non_functions(r, op):
    assert f"{op} argument must be a function" in pyexec_error(r, f"GB().{op}(1).run()")


@pytest.mark.parametrize("op", ["map", "filter", "foreach"])
def test_single_function_ops_reject_builtins(r, op):
    assert "argument must be a function" in pyexec_error(r, f"GB().{op}(len).run()")


@pytest.mark.parametrize("op", ["map", "flatmap", "foreach", "filter", "accumulate", "repartition"])
def test_single_function_ops_wrong_number_of_args(r, op):
    assert f"wrong number of args to {op} function" in pyexec_error(r, f"GB().{op}(lambda x: x, 2).run()")


def test_map_without_args(r):
    assert "wrong number of args to map function" in pyexec_error(r, "GB().map().run()")


@pytest.mark.parametrize("op", ["groupby", "batchgroupby", "localgroupby"])
def test_two_function_ops_reject_non_functions(r, op):
    assert "argument must be a function" in pyexec_error(r, f"GB().{op}(1, 2).run()")


@pytest.mark.parametrize("op", ["groupby", "batchgroupby"])
def test_two_function_ops_wrong_number_of_args(r, op):
    assert f"wrong number of args to {op} function" in pyexec_error(r, f"GB().{op}(1, 2, 3).run()")


def test_repartition_rejects_non_function(r):
    assert "argument must be a function" in pyexec_error(r, "GB().repartition(1).run()")


def test_collect_with_args(r):
    assert "wrong number of args to collect function" in pyexec_error(r, "GB().collect(1, 2, 3).run()")


@pytest.mark.parametrize("call", ["limit()", "limit(1, 2, 3)"])
def test_limit_wrong_number_of_args(r, call):
    assert "wrong number of args to limit function" in pyexec_error(r, f"GB().{call}.run()")


@pytest.mark.parametrize("call", ["limit('a')", "limit(1, 'b')"])
def test_limit_args_must_be_numbers(r, call):
    assert "limit argument must be a number" in pyexec_error(r, f"GB().{call}.run()")


def test_avg_extractor_must_be_function(r):
    assert "argument must be a function" in pyexec_error(r, "GB().avg(1).run()")


# --- run() options and convertToStr -----------------------------------------------------------

def test_convert_to_str_default(r):
    code = ops("", [100, 49.5, {"a": 1}, None, "s", [1, "x"]])
    results = run_ok(r, code)
    assert results[:2] == ["100", "49.5"]
    assert literal([results[2]]) == [{"a": 1}]
    assert results[3:] == ["None", "s", "[1, 'x']"]


def test_convert_to_str_false_types(r):
    code = ops("", [7, 49.5, "text", "+STATUS", "-MYERR boom", "+", "-", b"raw", [1, "a", [2.0]],
                    {"a": 1}, None, (1, 2)], convertToStr=False)
    results = run_ok(r, code)
    assert results[0] == 7
    assert results[1] == "49.500000"
    assert results[2] == "text"
    assert results[3] == "STATUS"
    assert type(results[4]).__name__ == "ResponseError" and "MYERR boom" in str(results[4])
    assert results[5] == "+" and results[6] == "-"  # one-char strings are plain bulks
    assert results[7] == "raw"
    assert results[8] == [1, "a", ["2.000000"]]
    assert results[9:] == ["PY RECORD", "PY RECORD", "PY RECORD"]


def test_run_collect_false(r):
    assert sorted(run_ok(r, ops(".map(lambda x: x + 1)", [1, 2], collect=False))) == ["2", "3"]


def test_run_mode_async_local(r):
    assert pyexec(r, "GB('ShardsIDReader').count().run(mode='async_local')") == [["1"], []]


def test_run_mode_sync_refused(r):
    assert "unknown execution mode" in pyexec_error(r, "GB('ShardsIDReader').run(mode='sync')")


def test_run_mode_must_be_string(r):
    assert "execution mode must be a string" in pyexec_error(r, "GB('ShardsIDReader').run(mode=1)")


def test_run_unknown_kwargs_ignored(r):
    assert pyexec(r, "GB('ShardsIDReader').run(noSuchOption=1)") == [["1"], []]


def test_globals_shared_between_functions_of_one_script(r):
    code = script("""
        counter = 0
        def func1(r):
            global counter
            counter += 1
            return counter
        def func2(a):
            global counter
            counter += 1
            return counter
        GB('ShardsIDReader').map(func1).map(func2).collect().distinct().run()
    """)
    assert pyexec(r, code) == [["2"], []]
    assert pyexec(r, code) == [["2"], []]
