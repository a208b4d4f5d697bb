"""Security III: what a script may do with files. Both modes refuse the host's files (/etc, /proc,
another tenant's files); native mode lets a script read the Python installation and read and
write a private scratch directory (tempfile's), removed when its session ends. wasm mode's guest
sees no host files at all (test_wasm_sandbox.py)."""
import json

import pytest

from gb_helpers import pyexec, script, wait_until
from security_helpers import assert_healthy, make_tenants

ATTEMPTS = script("""
    import json, os
    out = {}
    def attempt(name, f):
        try:
            f()
            out[name] = 'done'
        except (PermissionError, FileNotFoundError, OSError) as e:
            out[name] = 'refused'
    attempt('read /etc/passwd', lambda: open('/etc/passwd').read())
    attempt('read /etc/hostname via ..', lambda: open('../../../../../../etc/hostname').read())
    attempt('read /proc/self/maps', lambda: open('/proc/self/maps').read())
    attempt('list /etc', lambda: os.listdir('/etc'))
    attempt('write /tmp', lambda: open('/tmp/gearbox-escape.txt', 'w').write('x'))
    attempt('write the stdlib', lambda: open(os.path.join(os.path.dirname(json.__file__), 'evil.py'), 'w'))
    attempt('append /etc/hosts', lambda: os.open('/etc/hosts', os.O_WRONLY | os.O_APPEND))
    attempt('rename into /tmp', lambda: os.rename(json.__file__, '/tmp/gearbox-moved.py'))
    attempt('remove a stdlib file', lambda: os.remove(json.__file__))
    execute('SET', 'attempts', json.dumps(out))
""")


def test_host_files_are_refused(server, r):
    r.set("canary", "still-here")
    assert pyexec(r, ATTEMPTS) == "OK"
    out = json.loads(r.get("attempts"))
    assert set(out.values()) == {"refused"}, out
    assert_healthy(server, r)


def test_the_standard_library_still_reads(r, mode):
    code = script("""
        import json, datetime, decimal, email.message, logging, tempfile
        execute('SET', 'std', json.dumps([str(decimal.Decimal('1.5')), str(datetime.date(2020, 6, 1))]))
    """)
    assert pyexec(r, code) == "OK"
    assert r.get("std") == '["1.5", "2020-06-01"]'
    if mode == "native":  # time zone data is read from the host (the wasm guest has none)
        tz = "import zoneinfo, datetime\nexecute('SET', 'tz', str(datetime.datetime(2020, 6, 1, tzinfo=zoneinfo.ZoneInfo('Europe/Paris'))))"
        assert pyexec(r, tz) == "OK"
        assert r.get("tz") == "2020-06-01 00:00:00+02:00"


def test_a_script_writes_its_scratch_directory_and_it_goes_away(server, r, mode):
    if mode == "wasm":
        pytest.skip("wasm mode: the guest has no writable files (no scratch directory there yet)")
    r.set("canary", "still-here")
    code = script("""
        import os, tempfile
        d = tempfile.gettempdir()
        with open(os.path.join(d, 'notes.txt'), 'w') as f:
            f.write('kept')
        os.mkdir(os.path.join(d, 'sub'))
        os.rename(os.path.join(d, 'notes.txt'), os.path.join(d, 'sub', 'notes.txt'))
        with tempfile.NamedTemporaryFile(dir=d) as t:
            t.write(b'x')
        execute('SET', 'scratch', d)
        execute('SET', 'read', open(os.path.join(d, 'sub', 'notes.txt')).read())
    """)
    assert pyexec(r, code) == "OK"
    assert r.get("read") == "kept"
    scratch = r.get("scratch")
    assert "/gearbox-" in scratch
    import os
    wait_until(lambda: not os.path.exists(scratch), timeout=10, what="the scratch directory to be removed")
    assert_healthy(server, r)


def test_one_tenants_scratch_directory_is_closed_to_another(server, r, mode):
    if mode == "wasm":
        pytest.skip("wasm mode: the guest has no writable files")
    t = make_tenants(server, r)
    keep = script("""
        import os, tempfile
        path = os.path.join(tempfile.gettempdir(), 'secret.txt')
        with open(path, 'w') as f:
            f.write('bob-only')
        execute('SET', 'b:path', path)
        GB('CommandReader').register(trigger='b_keep')
    """)
    assert pyexec(t["bob"], keep) == "OK"
    path = t["bob"].get("b:path")
    steal = script(f"""
        import os
        out = []
        for f in (lambda: open({path!r}).read(), lambda: os.listdir(os.path.dirname({path!r})),
                  lambda: open({path!r}, 'a').write('x'), lambda: os.remove({path!r})):
            try:
                f()
                out.append('done')
            except OSError:
                out.append('refused')
        execute('SET', 'a:out', ','.join(out))
    """)
    assert pyexec(t["alice"], steal) == "OK"
    assert t["alice"].get("a:out") == "refused,refused,refused,refused"
    assert open(path).read() == "bob-only"
    assert_healthy(server, r)
