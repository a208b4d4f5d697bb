"""StreamReader registrations and replication (RedisGears semantics): a replica processes no
stream, not even a retry that was due when it became one, and a promoted replica picks up what waits
in its streams, entries its old master read and never acknowledged included. Both modes."""
import time

from events_helpers import register_one, start_replica
from gb_helpers import script, wait_until
from test_stream_registrations import add, data

ALWAYS_FAILS = script("""
    GB('StreamReader').map(lambda x: x['error']).register(prefix='f:*', onFailedPolicy='retry',
                                                          onFailedRetryInterval=1)
""")

# Fails while this server has a replica attached (so only on the master), as RedisGears' own test.
FAILS_WITH_A_REPLICA = script("""
    def step(x):
        info = execute('INFO', 'replication')
        replicas = int(info.split('connected_slaves:')[1].split()[0]) if 'connected_slaves:' in info else 0
        if replicas > 0:
            raise Exception('stop')
        execute('INCR', 'n')
    GB('StreamReader').foreach(step).register(prefix='s:*', batch=1, onFailedPolicy='abort')
""")


def triggered(r, reg_id):
    return data(r, reg_id)["numTriggered"]


def test_retries_do_not_fire_on_a_replica_and_resume_after_a_promotion(r):
    reg_id = register_one(r, ALWAYS_FAILS)
    add(r, "f:1", 1)
    first = triggered(r, reg_id)
    wait_until(lambda: triggered(r, reg_id) > first, timeout=5, what="a retry on the master")
    # A replica of a master that never answers (nothing listens on port 1): the role is enough.
    assert r.execute_command("REPLICAOF", "127.0.0.1", "1") == "OK"
    time.sleep(1.5)  # a retry that was due fires once more at most, then re-arms without running
    before = triggered(r, reg_id)
    time.sleep(2.5)
    assert triggered(r, reg_id) == before, "no retry runs on a replica"
    assert r.execute_command("REPLICAOF", "NO", "ONE") == "OK"
    wait_until(lambda: triggered(r, reg_id) > before, timeout=5, what="retries after the promotion")


def test_a_promoted_replica_processes_what_its_master_left_unacknowledged(gears, server, r):
    replica, rc = start_replica(gears, server)
    reg_id = register_one(r, FAILS_WITH_A_REPLICA)
    wait_until(lambda: any(e[1] == reg_id for e in rc.execute_command("RG.DUMPREGISTRATIONS")), timeout=20,
               what="the registration on the replica")
    add(r, "s:1", 1, 2, 3)
    wait_until(lambda: data(r, reg_id)["status"] == "ABORTED", what="the master's batch to fail (abort policy)")
    assert r.get("n") is None
    wait_until(lambda: rc.xlen("s:1") == 3, timeout=20, what="the entries on the replica")
    assert rc.execute_command("REPLICAOF", "NO", "ONE") == "OK"
    wait_until(lambda: rc.get("n") == "3", timeout=10, what="the promoted replica to process all three")
    wait_until(lambda: rc.xlen("s:1") == 0, what="them acknowledged and trimmed there")
