"""max_db_connections: one database's server connections across all its user pools stay within the
limit; a user pool that needs a connection at the limit closes an idle one of another user pool;
with every connection busy, clients wait (query_wait_timeout) — against the real PostgreSQL."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from harness import pgbench, psql, to_yaml

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"


def coordinated(doorman_config, limit=3, pool_size=4, **general):
    cfg = doorman_config(pool_size=pool_size, **general)
    cfg["pools"]["example_db"]["max_db_connections"] = limit
    # Evict at once (the default min_connection_lifetime protects connections younger than 30 s).
    cfg["pools"]["example_db"]["min_connection_lifetime"] = 0
    return cfg


def backends(pg) -> int:
    return int(pg.su_psql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'example_db' AND backend_type = 'client backend' "
        f"AND usename IN ('{MD5_USER}', '{SCRAM_USER}')").strip())


def settles_within(pg, limit: int, timeout: float = 3.0) -> bool:
    """PostgreSQL's count drops to `limit` once the backends the pooler closed have exited."""
    deadline = time.monotonic() + timeout
    while backends(pg) > limit:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def connect(dm, user, pw):
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname="example_db",
                           autocommit=True, connect_timeout=10, prepare_threshold=None)


def coordinator_row(dm) -> dict[str, str]:
    rc, out, err = psql(["-h", dm.host, "-p", str(dm.port), "-U", "admin", "-d", "pgdoorman", "-A", "-F", "|",
                         "-c", "SHOW POOL_COORDINATOR"], env={"PGPASSWORD": "admin"})
    assert rc == 0, err
    lines = [l for l in out.splitlines() if "|" in l]
    header, rows = lines[0].split("|"), [l.split("|") for l in lines[1:]]
    return {r[0]: dict(zip(header, r)) for r in rows}["example_db"]


def test_two_users_under_load_never_exceed_the_database_limit(doorman, doorman_config, pg):
    """Sampled on both sides: the pooler never holds more than 3 connections; PostgreSQL may list a
    backend the pooler has just closed (to hand its slot to the other user) until that backend has
    exited, so its count may briefly run ahead of the pooler's — but nowhere near the 8 that two
    uncapped pools of 4 would open. (No anticipation: each pool opens what it needs at once, so the two
    users do meet the limit.)"""
    dm = doorman(coordinated(doorman_config, limit=3, pool_size=4, scaling_warm_pool_ratio=100))
    peak, pooler_peak, stop = [0], [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], backends(pg))
            pooler_peak[0] = max(pooler_peak[0], int(coordinator_row(dm)["current"]))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results = {}

    def run(user, pw):
        results[user] = pgbench(["-n", "-c", "4", "-j", "2", "-t", "40", "example_db"], env=dm.env(user, pw),
                                script="SELECT pg_sleep(0.005);\n", timeout=120)

    threads = [threading.Thread(target=run, args=u) for u in [(MD5_USER, MD5_PW), (SCRAM_USER, SCRAM_PW)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    for user, r in results.items():
        assert r.ok, f"{user}: {r.stdout}{r.stderr}"
    assert 1 <= pooler_peak[0] <= 3, f"pooler held {pooler_peak[0]}"
    assert 1 <= peak[0] <= 5, f"peak backends {peak[0]}"
    assert settles_within(pg, 3)
    row = coordinator_row(dm)
    assert row["max_db_conn"] == "3" and int(row["current"]) <= 3
    assert int(row["exhaustions"]) > 0  # the two users did compete for the three connections


def test_idle_connection_of_another_user_is_closed_to_make_room(doorman, doorman_config, pg):
    dm = doorman(coordinated(doorman_config, limit=3, pool_size=4))
    # Three concurrent transactions of the MD5 user leave three idle server connections behind.
    conns = [connect(dm, MD5_USER, MD5_PW) for _ in range(3)]
    barrier = threading.Barrier(3)

    def hold(c):
        with c.transaction():
            c.execute("SELECT 1")
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=hold, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backends(pg) == 3
    t0 = time.monotonic()
    with connect(dm, SCRAM_USER, SCRAM_PW) as other:
        assert other.execute("SELECT current_user").fetchone()[0] == SCRAM_USER
    assert time.monotonic() - t0 < 3
    assert settles_within(pg, 3)
    assert int(coordinator_row(dm)["evictions"]) >= 1
    for c in conns:  # the MD5 user still works, on what is left
        assert c.execute("SELECT 1").fetchone()[0] == 1
        c.close()


def test_all_connections_busy_means_waiting_then_query_wait_timeout(doorman, doorman_config, pg):
    dm = doorman(coordinated(doorman_config, limit=2, pool_size=4, query_wait_timeout="1s"))
    holders = [connect(dm, MD5_USER, MD5_PW) for _ in range(2)]
    for c in holders:
        c.execute("BEGIN")
        c.execute("SELECT 1")  # each holds a server connection: the database is at its limit
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as e:
        with connect(dm, SCRAM_USER, SCRAM_PW) as c:
            c.execute("SELECT 1")
    # The pool's first client logs in through a server connection (for its parameters), so the
    # wait surfaces at login here.
    assert "query_wait_timeout" in str(e.value)
    assert 0.8 < time.monotonic() - t0 < 4
    assert settles_within(pg, 2)
    holders[0].execute("COMMIT")  # frees a connection (idle in the MD5 pool: evictable)
    with connect(dm, SCRAM_USER, SCRAM_PW) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    assert settles_within(pg, 2)
    for c in holders:
        c.close()


def test_reload_raises_lowers_and_removes_the_limit(doorman, doorman_config, pg):
    """RELOAD keeps the database's count across the change: a raised limit serves waiting clients,
    a lowered one opens nothing new until enough connections close (here RECONNECT), and without
    a limit the database has no coordinator row and its pools are uncapped again."""
    cfg = coordinated(doorman_config, limit=2, pool_size=4)
    dm = doorman(cfg)

    def reload():
        dm.config_path.write_text(to_yaml(cfg))
        rc, out, err = psql(["-h", dm.host, "-p", str(dm.port), "-U", "admin", "-d", "pgdoorman", "-c", "RELOAD"],
                            env={"PGPASSWORD": "admin"})
        assert rc == 0, err

    def busy(n):
        conns = [connect(dm, MD5_USER, MD5_PW) for _ in range(n)]
        for c in conns:
            c.execute("BEGIN")
            c.execute("SELECT 1")
        return conns

    held = busy(2)
    assert coordinator_row(dm)["current"] == "2"
    cfg["pools"]["example_db"]["max_db_connections"] = 3
    reload()
    assert coordinator_row(dm)["max_db_conn"] == "3"
    held += busy(1)  # the third fits now
    assert coordinator_row(dm)["current"] == "3"
    for c in held:
        c.execute("COMMIT")
    cfg["pools"]["example_db"]["max_db_connections"] = 1
    reload()
    row = coordinator_row(dm)
    assert row["max_db_conn"] == "1" and row["current"] == "3"  # nothing closed by the change itself
    rc, _, err = psql(["-h", dm.host, "-p", str(dm.port), "-U", "admin", "-d", "pgdoorman", "-c", "RECONNECT"],
                      env={"PGPASSWORD": "admin"})
    assert rc == 0, err
    assert held[0].execute("SELECT 1").fetchone()[0] == 1
    assert int(coordinator_row(dm)["current"]) <= 1
    del cfg["pools"]["example_db"]["max_db_connections"]
    reload()
    rc, out, err = psql(["-h", dm.host, "-p", str(dm.port), "-U", "admin", "-d", "pgdoorman", "-A", "-t",
                         "-c", "SHOW POOL_COORDINATOR"], env={"PGPASSWORD": "admin"})
    assert rc == 0 and out.strip() == "", out + err
    more = busy(3)  # uncapped again
    assert backends(pg) >= 3
    for c in held + more:
        c.close()
