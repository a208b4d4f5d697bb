"""REQUIREMENTS (issue 17 item 9), both modes, no network: pip installs wheels the test built into a
local directory (`wheels.py`). A session sees only the requirements it asked for (two sessions, two
versions of one package); RG.PYDUMPREQS shows them as RedisGears does; FORCE_REINSTALL_REQUIREMENTS
makes a new install while the old one stays with the sessions using it; a registration's
requirements survive a restart; wasm sessions refuse compiled code. Attacks: options, paths and
URLs as requirement names, an sdist whose setup.py would run, an index that never answers, and a
tenant looking at another tenant's requirements; the server stays healthy and responsive."""
import socket
import threading
import time

import pytest
import redis

from events_helpers import restart
from gb_helpers import pyexec, pyexec_error, run
from security_helpers import assert_healthy, make_tenants
from wheels import toy_index

FAILED = "Could not satisfy requirements, look at the log file for more information."


@pytest.fixture
def index(tmp_path):
    marker = tmp_path / "sdist-setup-ran"
    return toy_index(str(tmp_path / "wheels"), str(marker)), marker


@pytest.fixture
def srv(gears, index):
    return gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", index[0])


def reqs(r):
    return {e[3]: dict(zip(e[0::2], e[1::2])) for e in r.execute_command("RG.PYDUMPREQS")}


VERSION = "GB('ShardsIDReader').map(lambda x: __import__('gbtoy').VERSION + __import__('gbtoy').f()).run()"


def test_a_requirement_is_installed_and_imported_and_listed(srv):
    r = srv.client()
    results, errors = run(r, VERSION, "REQUIREMENTS", "gbtoy==1.0")
    assert (results, errors) == (["1.0one"], [])
    entry = reqs(r)["gbtoy==1.0"]
    assert entry["GearReqVersion"] == 1 and entry["IsDownloaded"] == "yes" and entry["IsInstalled"] == "yes"
    assert entry["Wheels"] == ["gbtoy-1.0-py3-none-any.whl"] and entry["IsInReqDictionary"] == "yes"
    assert entry["Path"].startswith(str(srv.dir))
    # Installed once: the next session reuses it at once (no pip run: well under its ~1 s).
    start = time.monotonic()
    assert run(r, VERSION, "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
    assert time.monotonic() - start < 0.5
    assert "'gbtoy==1.0' ready" in srv.log_text()


def test_two_sessions_use_two_versions_of_one_package_and_others_see_neither(srv):
    r = srv.client()
    trig = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.VERSION + gbtoy.f() + __import__('pkgutil').get_data('gbtoy', 'data.txt').decode()).register(trigger=%r)"
    assert pyexec(r, trig % "v1", "ID", "one", "REQUIREMENTS", "gbtoy==1.0") == "OK"
    assert pyexec(r, trig % "v2", "ID", "two", "REQUIREMENTS", "gbtoy==2.0") == "OK"
    assert r.execute_command("RG.TRIGGER", "v1") == ["1.0onedata 1.0"]
    assert r.execute_command("RG.TRIGGER", "v2") == ["2.0twodata 2.0"]
    assert "No module named 'gbtoy'" in pyexec_error(r, "import gbtoy")
    sessions = {s[1]: dict(zip(s[0::2], s[1::2])) for s in r.execute_command("RG.PYDUMPSESSIONS")}
    assert sessions["one"]["requirements"] == ["gbtoy==1.0"]
    listed = reqs(r)
    assert listed["gbtoy==1.0"]["RefCount"] == 1 and listed["gbtoy==2.0"]["RefCount"] == 1


def test_dependencies_are_installed_with_their_requirement(srv):
    r = srv.client()
    code = "GB('ShardsIDReader').map(lambda x: __import__('gbdep').WHO).run()"
    assert run(r, code, "REQUIREMENTS", "gbdep")[0] == ["dep on 1.0"]
    assert reqs(r)["gbdep"]["Wheels"] == ["gbdep-1.0-py3-none-any.whl", "gbtoy-1.0-py3-none-any.whl"]


def test_force_reinstall_makes_a_new_install_and_the_old_one_stays_with_its_session(srv):
    r = srv.client()
    code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.__file__).register(trigger=%r)"
    assert pyexec(r, code % "old", "ID", "old", "REQUIREMENTS", "gbtoy==1.0") == "OK"
    first = reqs(r)["gbtoy==1.0"]["Path"]
    assert pyexec(r, code % "new", "ID", "new", "FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", "gbtoy==1.0") == "OK"
    listed = r.execute_command("RG.PYDUMPREQS")
    paths = {dict(zip(e[0::2], e[1::2]))["Path"]: dict(zip(e[0::2], e[1::2]))["IsInReqDictionary"] for e in listed}
    assert len(paths) == 2 and paths[first] == "no"
    second = next(p for p in paths if p != first)
    assert second != first and paths[second] == "yes"
    assert r.execute_command("RG.TRIGGER", "old") and r.execute_command("RG.TRIGGER", "new")


def test_a_registration_keeps_its_requirements_across_a_restart(gears, index):
    srv = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", index[0])
    r = srv.client()
    code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.VERSION).register(trigger='ver')"
    assert pyexec(r, code, "ID", "keep", "REQUIREMENTS", "gbtoy==2.0") == "OK"
    assert r.save()
    r = restart(srv)
    assert r.execute_command("RG.TRIGGER", "ver") == ["2.0"]
    assert reqs(r)["gbtoy==2.0"]["IsInstalled"] == "yes"


def test_an_unknown_package_fails_with_redisgears_text_and_a_log_line(srv):
    r = srv.client()
    assert pyexec_error(r, "x = 1", "REQUIREMENTS", "gbtoy==9.9") == FAILED
    assert "could not install requirement 'gbtoy==9.9'" in srv.log_text()
    assert "gbtoy==9.9" not in reqs(r)


def test_compiled_code_is_refused_in_wasm_and_usable_in_native(srv, mode):
    r = srv.client()
    if mode == "wasm":
        err = pyexec_error(r, "import gbnative", "REQUIREMENTS", "gbnative")
        assert "requirement 'gbnative' contains compiled code" in err and "pure-Python" in err
    else:
        assert run(r, "GB('ShardsIDReader').map(lambda x: str(__import__('gbnative').NATIVE)).run()",
                   "REQUIREMENTS", "gbnative")[0] == ["True"]


@pytest.mark.parametrize("name", ["-r/etc/passwd", "--index-url=http://127.0.0.1:1/", "./gbtoy", "/etc",
                                  "gbtoy @ file:///etc/passwd", "http://127.0.0.1:1/x.whl", "gbtoy\n--pre"])
def test_attack_options_paths_and_urls_never_reach_pip(srv, name):
    r = srv.client()
    r.set("canary", "still-here")
    assert pyexec_error(r, "x = 1", "REQUIREMENTS", name) == FAILED
    assert "refused: give a package name" in srv.log_text()
    assert "could not install" not in srv.log_text()
    assert_healthy(srv, r)


def test_attack_an_sdist_never_runs_its_setup_py(srv, index):
    r = srv.client()
    r.set("canary", "still-here")
    assert pyexec_error(r, "x = 1", "REQUIREMENTS", "gbsdist") == FAILED
    assert not index[1].exists(), "pip ran the package's setup.py inside the server's account"
    assert_healthy(srv, r)


def test_attack_a_slow_install_never_blocks_the_server(srv):
    r = srv.client()
    r.set("canary", "still-here")
    other = srv.client()
    done = []
    t = threading.Thread(target=lambda: done.append(run(other, VERSION, "REQUIREMENTS", "gbtoy==2.0")))
    t.start()
    worst = 0.0
    while t.is_alive():
        start = time.monotonic()
        assert r.ping()
        worst = max(worst, time.monotonic() - start)
        time.sleep(0.01)
    t.join()
    assert done[0][0] == ["2.0two"]
    assert worst < 0.2, f"PING took {worst:.3f}s while pip ran"
    assert_healthy(srv, r)


def test_attack_an_index_that_never_answers_is_cut_off_at_the_install_timeout(gears):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        url = "http://127.0.0.1:%d/simple" % listener.getsockname()[1]
        srv = gears("RequirementsIndexUrl", url, "RequirementsInstallTimeoutMS", "1500")
        r = srv.client()
        r.set("canary", "still-here")
        start = time.monotonic()
        assert pyexec_error(r, "x = 1", "REQUIREMENTS", "gbtoy") == FAILED
        assert time.monotonic() - start < 10
        assert "took longer than 1500 ms and was stopped" in srv.log_text()
        assert_healthy(srv, r)
    finally:
        listener.close()


def test_tenants_see_only_the_requirements_their_sessions_use(srv):
    r = srv.client()
    tenants = make_tenants(srv, r)
    code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.VERSION).register(trigger=%r)"
    # An administrator installs; tenants use what is installed.
    run(r, VERSION, "REQUIREMENTS", "gbtoy==1.0")
    run(r, VERSION, "REQUIREMENTS", "gbtoy==2.0")
    assert pyexec(tenants["alice"], code % "a", "REQUIREMENTS", "gbtoy==1.0") == "OK"
    assert pyexec(tenants["bob"], code % "b", "REQUIREMENTS", "gbtoy==2.0") == "OK"
    assert set(reqs(tenants["alice"])) == {"gbtoy==1.0"}
    assert set(reqs(tenants["bob"])) == {"gbtoy==2.0"}
    assert set(reqs(r)) == {"gbtoy==1.0", "gbtoy==2.0"}
    assert_healthy(srv, r)


def test_requirements_need_blocking_allowed_and_empty_requirements_are_ignored(srv):
    r = srv.client()
    assert pyexec(r, "x = 1", "REQUIREMENTS") == "OK"
    p = r.pipeline(transaction=True)
    p.execute_command("RG.PYEXECUTE", "x = 1", "REQUIREMENTS", "gbtoy==1.0")
    with pytest.raises(redis.ResponseError, match="Can not run gears inside a multi exec"):
        p.execute()


def test_attack_a_tenant_cannot_install_by_default_but_uses_what_is_installed(srv):
    r = srv.client()
    tenants = make_tenants(srv, r)
    alice = tenants["alice"]
    for args in (("REQUIREMENTS", "gbtoy==1.0"), ("FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", "gbtoy==1.0")):
        err = pyexec_error(alice, "x = 1", *args)
        assert err.startswith(FAILED[:-1]) and "only administrators may install" in err
        assert "gbtoy==1.0" not in reqs(r)
    run(r, VERSION, "REQUIREMENTS", "gbtoy==1.0")
    assert run(alice, VERSION, "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
    assert "only administrators may install" in pyexec_error(alice, "x = 1", "FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", "gbtoy==1.0")
    assert_healthy(srv, r)


def test_with_installers_all_a_tenant_installs(gears, index):
    srv = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", index[0], "RequirementsInstallers", "all")
    r = srv.client()
    alice = make_tenants(srv, r)["alice"]
    assert run(alice, VERSION, "REQUIREMENTS", "gbtoy==2.0")[0] == ["2.0two"]


def test_attack_installs_past_the_disk_cap_are_removed(gears, index):
    srv = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", index[0], "RequirementsMaxMB", "2")
    r = srv.client()
    r.set("canary", "still-here")
    assert pyexec_error(r, "import gbbig", "REQUIREMENTS", "gbbig") == FAILED
    assert "over RequirementsMaxMB (2 MiB)" in srv.log_text()
    assert "gbbig" not in reqs(r)
    assert sum(f.stat().st_size for f in (srv.dir / "gearbox-requirements").rglob("*") if f.is_file()) < 1 << 20
    assert run(r, VERSION, "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
    assert_healthy(srv, r)


def test_a_bad_installers_value_refuses_the_load(gears):
    failure = gears.load_failure("RequirementsInstallers", "everyone")
    assert "RequirementsInstallers must be 'admins' or 'all'" in failure.log


def test_force_reinstall_removes_installs_no_session_uses(srv):
    r = srv.client()

    def generations():
        (home,) = list((srv.dir / "gearbox-requirements").glob("gbtoy__1_0-*"))
        return sorted(p.name for p in home.iterdir())

    assert run(r, VERSION, "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
    assert generations() == ["1"]
    assert run(r, VERSION, "FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
    assert generations() == ["2"]  # the first was used by a session that has ended
    code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.__file__).register(trigger='held')"
    assert pyexec(r, code, "ID", "held", "REQUIREMENTS", "gbtoy==1.0") == "OK"
    assert run(r, VERSION, "FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
    assert generations() == ["2", "3"]  # the registration's session still uses the second
    assert r.execute_command("RG.TRIGGER", "held")[0].endswith("__init__.py")
