"""The official gears-cli client (PyPI gears-cli 1.2.0) works unchanged (spec §6.1)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gb_helpers import strip_ansi


def gears_cli_path():
    explicit = os.environ.get("GEARS_CLI")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "gears-cli"
    if beside.exists():
        return str(beside)
    found = shutil.which("gears-cli")
    if found:
        return found
    pytest.fail("gears-cli not found: pip install -r tests/requirements.txt (or set GEARS_CLI)", pytrace=False)


def cli_run(server, tmp_path, code, *extra):
    f = tmp_path / "gear.py"
    f.write_text(code)
    proc = subprocess.run([gears_cli_path(), "run", "--host", "127.0.0.1", "--port", str(server.port), str(f),
                           *extra], capture_output=True, text=True, timeout=60)
    return proc.returncode, strip_ansi(proc.stdout), strip_ansi(proc.stderr)


def test_gears_cli_help():
    proc = subprocess.run([gears_cli_path(), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "run" in proc.stdout


def test_script_without_run_prints_ok(server, r, tmp_path):
    rc, out, err = cli_run(server, tmp_path, "execute('SET', 'from_cli', '1')\n")
    assert (rc, out.strip()) == (0, "OK"), (out, err)
    assert r.get("from_cli") == "1"


def test_run_script_prints_results(server, r, tmp_path):
    code = "GB('PythonReader').run(lambda: (x for x in ['apple', 'banana']))\n"
    rc, out, err = cli_run(server, tmp_path, code)
    assert rc == 0, (out, err)
    lines = [l.strip() for l in out.splitlines()]
    assert "Results" in lines
    assert "1)\tapple" in out and "2)\tbanana" in out
    assert "Errors" not in out


def test_run_script_with_keys(server, r, tmp_path):
    r.set("cli:key", "cli-value")
    rc, out, err = cli_run(server, tmp_path, "GB().map(lambda x: x['value']).run('cli:*')\n")
    assert rc == 0 and "cli-value" in out, (out, err)


def test_step_errors_printed_and_exit_1(server, tmp_path):
    rc, out, err = cli_run(server, tmp_path, "GB('ShardsIDReader').map(lambda x: notexists).run()\n")
    assert rc == 1
    assert "Errors" in out and "notexists" in out


def test_top_level_error_printed_and_exit_1(server, tmp_path):
    rc, out, err = cli_run(server, tmp_path, "raise Exception('cli boom')\n")
    assert rc == 1
    assert "failed running gear function (" in out and "cli boom" in out


def test_extra_args_passed_verbatim(server, r, tmp_path):
    rc, out, err = cli_run(server, tmp_path, "execute('SET', 'with_id', '1')\n", "ID", "cli_session",
                           "DESCRIPTION", "from gears-cli")
    assert (rc, out.strip()) == (0, "OK"), (out, err)
    assert r.get("with_id") == "1"


def test_unknown_extra_arg_reported(server, tmp_path):
    rc, out, err = cli_run(server, tmp_path, "x = 1\n", "BOGUS")
    assert rc == 1 and "Unknown arguments were given: BOGUS" in out


def test_multiline_script_file(server, r, tmp_path):
    code = (
        "def double(x):\n"
        "    return x * 2\n"
        "\n"
        "GB('PythonReader').map(double).run(lambda: (i for i in [21]))\n"
    )
    rc, out, err = cli_run(server, tmp_path, code)
    assert rc == 0 and "42" in out, (out, err)
