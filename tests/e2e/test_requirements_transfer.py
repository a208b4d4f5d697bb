"""Requirements that travel (issue 17 item 9), both modes, no network: RG.PYEXPORTREQ /
RG.PYIMPORTREQ between two servers, a replica and a restart whose install directory is gone
(the wheels travel with the sessions in the replication stream and the RDB file). Attacks:
truncated and tampered exports, a wheel that reaches outside its directory, and a tenant
importing wheels under a name other tenants' sessions would then get."""
import io
import shutil
import struct
import zipfile

import pytest
import redis

from events_helpers import restart, start_replica
from gb_helpers import pyexec, pyexec_error, run, wait_until
from security_helpers import assert_healthy, error_of, make_tenants
from wheels import toy_index

VERSION = "GB('ShardsIDReader').map(lambda x: __import__('gbtoy').VERSION + __import__('gbtoy').f()).run()"


@pytest.fixture
def wheels_dir(tmp_path):
    return toy_index(str(tmp_path / "wheels"), str(tmp_path / "marker"))


def offline(gears, *extra):
    """A server that can install nothing by itself (no index, no wheel directory)."""
    return gears("RequirementsIndexUrl", "none", *extra)


def names(r):
    return sorted(e[3] for e in r.execute_command("RG.PYDUMPREQS"))


def test_export_then_import_on_an_offline_server(gears, wheels_dir):
    src = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", wheels_dir)
    rs = src.client(decode_responses=False)
    assert run(src.client(), VERSION, "REQUIREMENTS", "gbtoy==2.0")[0] == ["2.0two"]
    record, chunks = rs.execute_command("RG.PYEXPORTREQ", "gbtoy==2.0")
    assert record[3] == b"gbtoy==2.0" and record[5] == b"yes" and record[7] == b"yes"
    assert all(isinstance(c, bytes) for c in chunks) and chunks
    dst = offline(gears)
    rd = dst.client()
    assert "Could not satisfy requirements" in pyexec_error(rd, VERSION, "REQUIREMENTS", "gbtoy==2.0")
    assert names(rd) == []
    assert rd.execute_command("RG.PYIMPORTREQ", *chunks) == "OK"
    assert names(rd) == ["gbtoy==2.0"]
    assert run(rd, VERSION, "REQUIREMENTS", "gbtoy==2.0")[0] == ["2.0two"]
    assert "requirement does not exists" in error_of(rd, "RG.PYEXPORTREQ", "gbtoy==9")


def export_blob(name, wheels):
    """An export as gearbox encodes it (engine/src/codec.rs): built here so a test can forge one."""
    def enc(v):
        if isinstance(v, int):
            return b"i" + struct.pack("<q", v)
        if isinstance(v, (bytes, str)):
            data = v.encode() if isinstance(v, str) else v
            return b"b" + struct.pack("<I", len(data)) + data
        return b"a" + struct.pack("<I", len(v)) + b"".join(enc(x) for x in v)
    return enc(["gearbox-requirement", 1, name, [[n, data] for n, data in wheels]])


def zipped(entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()


def test_attack_damaged_exports_are_refused_and_install_nothing(gears, wheels_dir):
    src = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", wheels_dir)
    run(src.client(), VERSION, "REQUIREMENTS", "gbtoy==1.0")
    _, chunks = src.client(decode_responses=False).execute_command("RG.PYEXPORTREQ", "gbtoy==1.0")
    blob = b"".join(chunks)
    assert blob == export_blob("gbtoy==1.0", [("gbtoy-1.0-py3-none-any.whl", open(
        f"{wheels_dir}/gbtoy-1.0-py3-none-any.whl", "rb").read())])
    dst = offline(gears)
    r = dst.client()
    r.set("canary", "still-here")
    rb = dst.client(decode_responses=False)
    for cut in (1, len(blob) // 3, len(blob) // 2, len(blob) - 1):
        with pytest.raises(redis.ResponseError, match="not a whole exported requirement"):
            rb.execute_command("RG.PYIMPORTREQ", blob[:cut])
    for name, wheel in (("gbtoy==1.0", "../../x.whl"), ("--index-url=http://x", "a.whl"), ("gbtoy==1.0", "a.zip")):
        err = error_of(rb, "RG.PYIMPORTREQ", export_blob(name, [(wheel, b"")]))
        assert "not a whole exported requirement" in err
    assert "not a wheel" in error_of(rb, "RG.PYIMPORTREQ", export_blob("gbtoy==1.0", [("g-1-py3-none-any.whl", b"junk")]))
    assert names(r) == []
    assert_healthy(dst, r)


def test_attack_a_wheel_reaching_outside_its_directory_is_refused(gears, tmp_path):
    dst = offline(gears)
    r = dst.client()
    r.set("canary", "still-here")
    target = tmp_path / "zip-slip.py"
    depth = "../" * 40
    for entry in (depth + str(target).lstrip("/"), str(target)):
        wheel = zipped([("gbtoy/__init__.py", "VERSION = 'evil'\n"), (entry, "pwned = True\n")])
        err = error_of(dst.client(), "RG.PYIMPORTREQ", export_blob("gbtoy==1.0", [("gbtoy-1.0-py3-none-any.whl", wheel)]))
        assert "points outside its directory" in err
    assert not target.exists()
    assert names(r) == []
    assert_healthy(dst, r)


def test_attack_a_tenant_may_not_import_wheels_under_a_shared_name(gears, wheels_dir):
    src = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", wheels_dir)
    run(src.client(), VERSION, "REQUIREMENTS", "gbtoy==1.0")
    _, chunks = src.client(decode_responses=False).execute_command("RG.PYEXPORTREQ", "gbtoy==1.0")
    dst = offline(gears)
    r = dst.client()
    tenants = make_tenants(dst, r)
    for who in ("alice", "dave", "carol"):
        err = error_of(tenants[who], "RG.PYIMPORTREQ", *chunks)
        assert any(t in err for t in ("gearbox administrators", "no permissions", "@admin @dangerous")), err
    assert names(r) == []
    # A tenant exports only what their own sessions use.
    assert "requirement does not exists" in error_of(tenants["alice"], "RG.PYEXPORTREQ", "gbtoy==1.0")
    assert_healthy(dst, r)


def test_a_replica_gets_the_requirements_with_the_sessions(gears, wheels_dir):
    master = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", wheels_dir)
    r = master.client()
    code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.VERSION).register(trigger='ver')"
    rep, rc = start_replica(gears, master)  # offline: it has no wheel directory
    assert pyexec(r, code, "ID", "s", "REQUIREMENTS", "gbtoy==2.0") == "OK"
    wait_until(lambda: names(rc) == ["gbtoy==2.0"], timeout=20, what="the requirement to reach the replica")
    wait_until(lambda: rc.execute_command("RG.DUMPREGISTRATIONS"), timeout=20, what="the registration on the replica")
    assert "could not apply session" not in rep.log_text()


def test_a_restart_rebuilds_sessions_from_the_wheels_in_the_rdb(gears, wheels_dir):
    srv = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", wheels_dir)
    r = srv.client()
    code = "import gbtoy\nGB('CommandReader').map(lambda x: gbtoy.VERSION + gbtoy.f()).register(trigger='ver')"
    assert pyexec(r, code, "ID", "keep", "REQUIREMENTS", "gbtoy==1.0") == "OK"
    assert r.save()
    srv.stop()
    shutil.rmtree(srv.dir / "gearbox-requirements")
    shutil.rmtree(wheels_dir)
    r = restart(srv)
    assert r.execute_command("RG.TRIGGER", "ver") == ["1.0one"]
    assert names(r) == ["gbtoy==1.0"]


def test_gears_cli_installs_exports_and_imports_requirements(gears, wheels_dir, tmp_path):
    from test_gears_cli import gears_cli_path
    import subprocess
    cli = gears_cli_path()
    src = gears("RequirementsIndexUrl", "none", "RequirementsFindLinks", wheels_dir)
    dst = offline(gears)

    def call(server, *args):
        proc = subprocess.run([cli, *args, "--host", "127.0.0.1", "--port", str(server.port)],
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr

    rc, out = call(src, "install-requirements", "gbtoy==1.0")
    assert rc == 0, out
    export_dir = tmp_path / "exported"
    export_dir.mkdir()
    rc, out = call(src, "export-requirements", "--requirement", "gbtoy==1.0", "--save-directory", str(export_dir))
    assert rc == 0, out
    (zipped_req,) = list(export_dir.iterdir())
    rc, out = call(dst, "import-requirements", "--requirements-path", str(export_dir), zipped_req.name)
    assert rc == 0 and "imported successfully" in out, out
    assert names(dst.client()) == ["gbtoy==1.0"]
    assert run(dst.client(), VERSION, "REQUIREMENTS", "gbtoy==1.0")[0] == ["1.0one"]
