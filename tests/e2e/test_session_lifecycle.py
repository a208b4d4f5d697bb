"""Sessions that own registrations (spec §1.1 RG.PYEXECUTE / RG.PYDUMPSESSIONS, §2.9): a session is held
by its registrations and freed with the last one; `Session <sid> already exists`; UPGRADE and REPLACE_WITH
replace the old registrations atomically, a failing script (new or upgrade) rolls its registrations back;
module globals persist between callbacks of one session and are not shared between sessions."""
import pytest

from events_helpers import (live_interpreters, register, register_error, registration, registration_ids,
                            sessions, trigger, trigger_error, unregister)
from gb_helpers import pyexec_error, script, wait_until


def versioned(tag):
    """Trigger 't' answering `tag` and a sync KeysReader on 'k*' that sets '<tag>:<key>'."""
    return script(f"""
        GB('CommandReader').map(lambda x: {tag!r}).register(trigger='t', mode='sync')
        GB().foreach(lambda x: execute('SET', {tag!r} + ':' + x['key'], '1')).register(prefix='k*', mode='sync')
    """)


def counter(name, mode):
    """Trigger `name` answering a module-level counter incremented by every call."""
    return script(f"""
        count = 0
        def bump(x):
            global count
            count += 1
            return count
        GB('CommandReader').map(bump).register(trigger={name!r}, mode={mode!r})
    """)


def assert_version_active(r, tag, others=()):
    """`tag`'s registrations fire, those of `others` don't."""
    assert trigger(r, "t") == [tag]
    key = f"k{len(r.keys('k*')) + 1}"
    r.set(key, "v")
    assert r.get(f"{tag}:{key}") == "1"
    for other in others:
        assert r.get(f"{other}:{key}") is None, f"registration of {other!r} still fired"


# --- session held by its registrations --------------------------------------------------------

def test_session_lists_its_registrations(r):
    register(r, versioned("v1"), "ID", "s1", "DESCRIPTION", "two regs")
    ids = registration_ids(r)
    assert len(ids) == 2
    s1 = sessions(r)["s1"]
    assert s1["sessionDescription"] == "two regs"
    assert sorted(s1["registrations"]) == sorted(ids)
    assert s1["refCount"] == 2
    for reg_id in ids:
        pd = registration(r, reg_id)["pd"]
        assert (pd["sessionName"], pd["sessionDescription"]) == ("s1", "two regs")
        assert sorted(pd["registrationsList"]) == sorted(ids)


def test_unregistering_the_last_registration_frees_the_session(r):
    base = live_interpreters(r)
    register(r, versioned("v1"), "ID", "s1")
    assert live_interpreters(r) > base
    first, second = registration_ids(r)
    assert unregister(r, first) == "OK"
    s1 = sessions(r)["s1"]
    assert s1["registrations"] == [second] and s1["refCount"] == 1
    if registration(r, second)["reader"] == "CommandReader":  # the remaining registration still works
        assert trigger(r, "t") == ["v1"]
    else:
        r.set("k1", "v")
        assert r.get("v1:k1") == "1"
    assert unregister(r, second) == "OK"
    wait_until(lambda: "s1" not in sessions(r), what="session s1 to be freed")
    wait_until(lambda: live_interpreters(r) == base, what="the session's interpreter to be freed")


def test_same_session_id_without_upgrade(r):
    register(r, versioned("v1"), "ID", "s1")
    ids = registration_ids(r)
    assert "Session s1 already exists" in register_error(r, versioned("v2"), "ID", "s1")
    assert registration_ids(r) == ids
    assert_version_active(r, "v1", others=("v2",))


# --- rollback ---------------------------------------------------------------------------------

def test_script_raising_after_register_leaves_nothing(r):
    base = live_interpreters(r)
    err = register_error(r, versioned("v1") + "raise Exception('after register')\n", "ID", "s1")
    assert "after register" in err
    assert registration_ids(r) == []
    assert "subcommand not found" in trigger_error(r, "t")
    r.set("k1", "v")
    assert r.get("v1:k1") is None
    wait_until(lambda: "s1" not in sessions(r), what="the failed session to be freed")
    wait_until(lambda: live_interpreters(r) == base, what="the failed session's interpreter to be freed")
    register(r, versioned("v2"), "ID", "s1")  # both the trigger name and the session id are free again
    assert_version_active(r, "v2", others=("v1",))


# --- UPGRADE / REPLACE_WITH -------------------------------------------------------------------

def test_upgrade_replaces_registrations(r):
    register(r, versioned("old"), "ID", "s1")
    old_ids = registration_ids(r)
    register(r, versioned("new"), "ID", "s1", "UPGRADE")
    new_ids = registration_ids(r)
    assert len(new_ids) == 2 and not set(new_ids) & set(old_ids)
    assert sorted(sessions(r)["s1"]["registrations"]) == sorted(new_ids)
    assert_version_active(r, "new", others=("old",))


def test_upgrade_twice(r):
    register(r, versioned("v1"), "ID", "s1")
    for tag in ("v2", "v3"):
        register(r, versioned(tag), "ID", "s1", "UPGRADE")
    assert len(registration_ids(r)) == 2
    assert list(sessions(r)) == ["s1"]
    assert_version_active(r, "v3", others=("v1", "v2"))


def test_failed_upgrade_keeps_old_registrations(r):
    register(r, versioned("old"), "ID", "s1")
    ids = registration_ids(r)
    err = register_error(r, versioned("new") + "raise Exception('broken upgrade')\n", "ID", "s1", "UPGRADE")
    assert "broken upgrade" in err
    assert registration_ids(r) == ids
    assert sorted(sessions(r)["s1"]["registrations"]) == sorted(ids)
    assert_version_active(r, "old", others=("new",))


def test_upgrade_with_duplicate_trigger_in_new_script_keeps_old(r):
    register(r, versioned("old"), "ID", "s1")
    ids = registration_ids(r)
    dup = "GB('CommandReader').register(trigger='x')\nGB('CommandReader').register(trigger='x')\n"
    assert "trigger already registered" in register_error(r, versioned("new") + dup, "ID", "s1", "UPGRADE")
    assert registration_ids(r) == ids
    assert_version_active(r, "old", others=("new",))


def test_replace_with(r):
    register(r, versioned("a"), "ID", "sa")
    old_ids = registration_ids(r)
    register(r, versioned("b"), "ID", "sb", "REPLACE_WITH", "sa")
    assert not set(registration_ids(r)) & set(old_ids)
    wait_until(lambda: "sa" not in sessions(r), what="the replaced session to be freed")
    assert sorted(sessions(r)["sb"]["registrations"]) == sorted(registration_ids(r))
    assert_version_active(r, "b", others=("a",))


def test_replace_with_onto_an_existing_session_says_so(r):
    register(r, "GB('CommandReader').register(trigger='ta')", "ID", "sa")
    register(r, "GB('CommandReader').register(trigger='tb')", "ID", "sb")
    err = pyexec_error(r, "GB('CommandReader').register(trigger='tc')", "ID", "sa", "REPLACE_WITH", "sb")
    assert "Can not replace an existing session sa with sb" in err, err
    assert sorted(sessions(r)) == ["sa", "sb"], "both stay"


def test_replace_with_unknown_session(r):
    err = pyexec_error(r, versioned("b"), "ID", "sb", "REPLACE_WITH", "x")
    assert "Can not replace with x, session does not exists." in err
    assert registration_ids(r) == []


# --- globals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("reg_mode", ["sync", "async", "async_local"])
def test_globals_persist_between_callbacks_and_are_per_session(r, reg_mode):
    register(r, counter("ca", reg_mode), "ID", "sa")
    register(r, counter("cb", reg_mode), "ID", "sb")
    assert [trigger(r, "ca") for _ in range(3)] == [["1"], ["2"], ["3"]]
    assert trigger(r, "cb") == ["1"]
    assert trigger(r, "ca") == ["4"]


def test_event_callbacks_share_session_globals(r):
    register(r, script("""
        seen = []
        def on_write(x):
            seen.append(x['key'])
            execute('SET', 'seen', ','.join(seen))
        GB().foreach(on_write).register(prefix='k*', mode='sync')
        GB('CommandReader').map(lambda x: len(seen)).register(trigger='nseen', mode='sync')
    """))
    for k in ("k1", "k2", "k3"):
        r.set(k, "v")
    assert r.get("seen") == "k1,k2,k3"
    assert trigger(r, "nseen") == ["3"]
