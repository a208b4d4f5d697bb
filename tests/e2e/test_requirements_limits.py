"""Attacks on the limits REQUIREMENTS adds (issue 17 item 9), both modes, no network: more names
than a command may carry, more pip runs than the server runs at once, and a tenant racing its
session quota by sending several installs at once (the quota is checked again once an install is
done). Each attack ends with the server's health check."""
import socket
import threading
import time

from gb_helpers import pyexec, pyexec_error
from security_helpers import assert_healthy, make_tenants
from wheels import toy_index

FAILED = "Could not satisfy requirements, look at the log file for more information."


def test_attack_more_than_32_names_in_one_command_never_reach_pip(gears):
    srv = gears("RequirementsIndexUrl", "none")
    r = srv.client()
    r.set("canary", "still-here")
    names = ["gbpkg%d" % i for i in range(33)]
    assert pyexec_error(r, "x = 1", "REQUIREMENTS", *names) == FAILED
    assert "33 names, at most 32 per command" in srv.log_text()
    assert "could not install" not in srv.log_text()
    assert_healthy(srv, r)


def test_attack_a_fifth_install_at_once_is_refused_not_queued(gears):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        url = "http://127.0.0.1:%d/simple" % listener.getsockname()[1]
        srv = gears("RequirementsIndexUrl", url, "RequirementsInstallTimeoutMS", "4000")
        r = srv.client()
        r.set("canary", "still-here")
        hanging = [threading.Thread(target=lambda n=n: pyexec_error(srv.client(), "x = 1", "REQUIREMENTS", "gbslow%d" % n))
                   for n in range(4)]
        for t in hanging:
            t.start()
        time.sleep(1.0)  # the four pip runs are waiting for the index that never answers
        start = time.monotonic()
        assert pyexec_error(r, "x = 1", "REQUIREMENTS", "gbfifth") == FAILED
        assert time.monotonic() - start < 2.0, "the fifth install waited for a slot"
        assert "4 installs are running already" in srv.log_text()
        assert_healthy(srv, r)
        for t in hanging:
            t.join(timeout=30)
    finally:
        listener.close()


def test_attack_parallel_installs_cannot_pass_the_session_quota(gears, tmp_path):
    index = toy_index(str(tmp_path / "wheels"), str(tmp_path / "marker"))
    srv = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", index, "RequirementsInstallers", "all",
                "MaxSessionsPerUser", "1")
    r = srv.client()
    alice = make_tenants(srv, r)["alice"]
    replies = []

    def install(trigger, name):
        code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.VERSION).register(trigger=%r)" % trigger
        try:
            replies.append(pyexec(srv.client(username="alice", password="alicepw"), code, "REQUIREMENTS", name))
        except Exception as e:  # noqa: BLE001 (the refused one answers an error)
            replies.append(str(e))

    # Both pass the first check (alice has no session yet) while pip runs for each.
    racers = [threading.Thread(target=install, args=("t1", "gbtoy==1.0")),
              threading.Thread(target=install, args=("t2", "gbtoy==2.0"))]
    for t in racers:
        t.start()
    for t in racers:
        t.join(timeout=60)
    assert sorted(str(x)[:2] for x in replies) == ["OK", "ge"], replies
    assert any("MaxSessionsPerUser" in str(x) for x in replies), replies
    # Both were admitted at first and installed: the refusal came from the check after the install.
    assert srv.log_text().count("ready in") == 2
    owned = [s for s in r.execute_command("RG.PYDUMPSESSIONS", "OWNER") if "alice" in s]
    assert len(owned) == 1, owned
    assert alice.ping()
    assert_healthy(srv, r)
