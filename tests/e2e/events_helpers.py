"""Helpers shared by the registration / event test files (test_registrations, test_triggers,
test_session_lifecycle, test_persistence, test_events_concurrency): registering scripts, parsing
RG.DUMPREGISTRATIONS / RG.PYDUMPSESSIONS (spec §1.1), and extra servers built on conftest's GearsServer
(extra redis-server args such as `--appendonly yes`, restarts on the same directory, replicas).

Every server started here is appended to the factory's `servers` list, so the fixture teardown stops it."""
import pytest
import redis

from conftest import GearsServer, ServerExited
from gb_helpers import SHARD_ID, dump_executions, pyexec, pyexec_error, wait_until

REG_ENTRY_KEYS = ["id", "reader", "desc", "RegistrationData", "PD", "ExecutionThreadPool"]
DATA_KEYS = ["mode", "numTriggered", "numSuccess", "numFailures", "numAborted", "lastRunDurationMS",
             "totalRunDurationMS", "avgRunDurationMS", "lastError", "args"]
STAT_KEYS = DATA_KEYS[1:8]
PD_KEYS = {"sessionName", "sessionDescription", "refCount", "linkedTo", "dead", "isInstallationNeeded",
           "registrationsList", "depsList"}
SESSION_KEYS = ["ID", "sessionDescription", "refCount", "linked", "dead", "requirementInstallationNeeded",
                "requirements", "registrations"]


def rid(n):
    """Registration id number n of a stand-alone shard: '000...000-<n>'."""
    return f"{SHARD_ID}-{n}"


def rid_num(reg_id):
    return int(reg_id.rsplit("-", 1)[1])


# --- registering ------------------------------------------------------------------------------

def register(r, code, *args):
    """RG.PYEXECUTE of a script that calls register(): the reply must be exactly OK."""
    reply = pyexec(r, code, *args)
    assert reply == "OK", f"expected OK for a registering script, got {reply!r}"
    return reply


def register_one(r, code, *args):
    """Register a script that makes exactly one new registration; returns its id."""
    before = set(registration_ids(r))
    register(r, code, *args)
    new = [i for i in registration_ids(r) if i not in before]
    assert len(new) == 1, f"expected one new registration, got {new!r}"
    return new[0]


def trigger(r, name, *args):
    return r.execute_command("RG.TRIGGER", name, *args)


def trigger_error(r, name, *args):
    """RG.TRIGGER that must reply with an error; returns its text."""
    try:
        reply = trigger(r, name, *args)
    except redis.ResponseError as e:
        return str(e)
    raise AssertionError(f"expected an error reply from RG.TRIGGER {name}, got {reply!r}")


def unregister(r, reg_id, *extra):
    return r.execute_command("RG.UNREGISTER", reg_id, *extra)


def register_error(r, code, *args):
    """A registering script that must fail; also checks that it left no registration behind."""
    before = registration_ids(r)
    err = pyexec_error(r, code, *args)
    assert registration_ids(r) == before, "a failed script must not leave registrations behind"
    return err


# --- RG.DUMPREGISTRATIONS ---------------------------------------------------------------------

def parse_pd(text):
    """The PD session string is a Python-literal dict; upstream leaves `primary`/`false` unquoted."""
    names = {"primary": "primary", "temprary": "temprary", "false": False, "true": True, "null": None}
    pd = eval(text, {"__builtins__": {}}, names)  # noqa: S307 - the format is meant to be eval()ed (gears-cli)
    assert isinstance(pd, dict), text
    return pd


def parse_entry(entry):
    """One RG.DUMPREGISTRATIONS entry (12 elements, 20-element RegistrationData) -> dict."""
    assert isinstance(entry, list) and len(entry) == 12, entry
    assert entry[0::2] == REG_ENTRY_KEYS, entry
    assert entry[11] == "DefaultPool", entry
    data = entry[7]
    assert isinstance(data, list) and len(data) == 20 and data[0::2] == DATA_KEYS, data
    fields = dict(zip(data[0::2], data[1::2]))
    return {"id": entry[1], "reader": entry[3], "desc": entry[5], "data": fields, "args": fields["args"],
            "pd": parse_pd(entry[9])}


def registrations(r):
    return [parse_entry(e) for e in r.execute_command("RG.DUMPREGISTRATIONS")]


def registration_ids(r):
    """Ids of RG.DUMPREGISTRATIONS, in registration order."""
    return sorted((e[1] for e in r.execute_command("RG.DUMPREGISTRATIONS")), key=rid_num)


def registration(r, reg_id):
    for reg in registrations(r):
        if reg["id"] == reg_id:
            return reg
    raise AssertionError(f"registration {reg_id} not in RG.DUMPREGISTRATIONS {registration_ids(r)!r}")


def stats(r, reg_id):
    return registration(r, reg_id)["data"]


def summary(r):
    """What must survive a reload: {id: (reader, desc, mode, args)}."""
    return {g["id"]: (g["reader"], g["desc"], g["data"]["mode"], g["args"]) for g in registrations(r)}


def wait_stat(r, reg_id, field, value, timeout=10.0):
    return wait_until(lambda: stats(r, reg_id)[field] == value, timeout=timeout,
                      what=f"{field} of {reg_id} to become {value}")


def wait_key(r, key, value, timeout=10.0):
    return wait_until(lambda: r.get(key) == value, timeout=timeout, what=f"key {key!r} to become {value!r}")


def registered_executions(r):
    """Execution ids of RG.DUMPEXECUTIONS entries marked registered=1."""
    raw = r.execute_command("RG.DUMPEXECUTIONS")
    dump_executions(r)  # asserts the entry shape
    return [e[1] for e in raw if e[5] == 1]


# --- sessions ---------------------------------------------------------------------------------

def sessions(r):
    """RG.PYDUMPSESSIONS as {sid: {field: value}}."""
    out = {}
    for entry in r.execute_command("RG.PYDUMPSESSIONS"):
        assert entry[0::2] == SESSION_KEYS, entry
        out[entry[1]] = dict(zip(entry[0::2], entry[1::2]))
    return out


def live_interpreters(r):
    return int(r.info("rg")["rg_live_interpreters"])


def nregistrations(r):
    return int(r.info("rg")["rg_nregistrations"])


# --- extra servers ----------------------------------------------------------------------------

def _start(srv):
    try:
        srv.start()
    except ServerExited as e:
        srv.expected_dead = True
        pytest.fail(f"redis-server exited with code {e.returncode} before answering PING\n"
                    + "\n".join(e.log.splitlines()[-40:]), pytrace=False)
    return srv


def start_server(gears, *redis_args):
    """A gears server of the factory's mode with extra redis-server args (they override the defaults
    `--save "" --appendonly no`); stopped by the fixture teardown."""
    gears.ensure_mode_available()
    srv = GearsServer(gears._dir(), ["mode", gears.mode], redis_args=list(redis_args))
    gears.servers.append(srv)
    return _start(srv)


def debug_server(gears):
    """A server that accepts DEBUG (RELOAD) from local clients."""
    return start_server(gears, "--enable-debug-command", "local")


def restart(srv):
    """Stop srv (SIGTERM) and start it again with the same arguments on the same directory, so it loads
    its RDB / AOF; returns a fresh client (the port changes). The previous log is kept as redis.log.<n>."""
    srv.stop()
    n = 1
    while (srv.dir / f"redis.log.{n}").exists():
        n += 1
    if srv.logfile.exists():
        srv.logfile.rename(srv.dir / f"redis.log.{n}")
    _start(srv)
    c = srv.client()
    wait_until(lambda: c.info("persistence").get("loading") == 0, timeout=20, what="loading to finish")
    return c


def start_replica(gears, master):
    """A second gears server (same mode) replicating `master`; returns (server, client) once linked."""
    rep = start_server(gears)
    rc = rep.client()
    assert rc.execute_command("REPLICAOF", "127.0.0.1", master.port) == "OK"
    wait_until(lambda: rc.info("replication").get("master_link_status") == "up", timeout=20,
               what="the replica to link to its master")
    return rep, rc
