"""Issue 19 (A): clients waiting for a server ride out a short PostgreSQL restart.

While PostgreSQL is down, a client that only waits for a server (its query queued, or its login
needing the pool's first server) keeps waiting, up to query_wait_timeout, while the pooler retries
the connect with backoff; it gets its result once PostgreSQL is back. An outage longer than
query_wait_timeout gives a short error with an SQLSTATE, never NIO's internal dump."""
from __future__ import annotations

import os
import subprocess
import threading
import time

import psycopg
import pytest

from harness import PgInstance, admin_rows

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"
DUMPS = ("NIOConnectionError", "connectionErrors", "SingleConnectionFailure", "IOError", "errnoCode",
         "ChannelError", "dnsAError")


def pg_bin(inst: PgInstance) -> str:
    for tok in (inst.dir / "env").read_text().split():
        if tok.startswith("PG_BIN="):
            return tok.split("=", 1)[1]
    return "/usr/lib/postgresql/15/bin"


def pg_ctl(inst: PgInstance, *args: str) -> None:
    cmd = [f"{pg_bin(inst)}/pg_ctl", *args, "-D", str(inst.data_dir)]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr


def pg_stop(inst: PgInstance) -> None:
    pg_ctl(inst, "stop", "-m", "fast", "-w", "-t", "60")


def pg_start(inst: PgInstance) -> None:
    pg_ctl(inst, "start", "-w", "-t", "60", "-l", str(inst.dir / "postgres.log"))


def config(pg: PgInstance, pool_size: int, query_wait_timeout: str) -> dict:
    return {
        "general": {"admin_username": "admin", "admin_password": "admin", "connect_timeout": "2s",
                    "query_wait_timeout": query_wait_timeout},
        "pools": {"example_db": {"server_host": pg.host, "server_port": pg.port, "pool_mode": "transaction",
                                 "users": [{"username": u, "password": pg.hashes[u], "pool_size": pool_size}
                                           for u in (MD5_USER, SCRAM_USER)]}},
    }


def connect(dm, user=MD5_USER, pw=MD5_PW, timeout=15):
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname="example_db",
                           autocommit=True, connect_timeout=timeout, prepare_threshold=None)


def run_all(conns, sql, go: threading.Event, results: list, lock: threading.Lock):
    def one(i, c):
        go.wait(30)
        try:
            v = c.execute(sql).fetchone()[0]
            out = ("ok", v)
        except psycopg.Error as e:
            out = ("error", f"{type(e).__name__} {getattr(e, 'sqlstate', None)}: {e}")
        with lock:
            results.append((i, *out))

    threads = [threading.Thread(target=one, args=(i, c), daemon=True) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.slow
def test_waiting_clients_ride_out_a_postgres_restart(doorman, own_pg):
    """20 logged-in clients, pool_size 2: PostgreSQL is stopped (fast), every client sends a query (all
    wait: no server can be opened), PostgreSQL is started again within a second or two. Every client gets
    its result; before, 18+ of 20 failed at once with a connect error carrying NIO's dump."""
    dm = doorman(config(own_pg, pool_size=2, query_wait_timeout="15s"))
    conns = [connect(dm, *((MD5_USER, MD5_PW) if i % 2 == 0 else (SCRAM_USER, SCRAM_PW))) for i in range(20)]
    try:
        for c in conns:
            assert c.execute("SELECT 1").fetchone()[0] == 1
        pg_stop(own_pg)
        t_down = time.monotonic()
        go, lock, results = threading.Event(), threading.Lock(), []
        threads = run_all(conns, "SELECT 42", go, results, lock)
        go.set()
        time.sleep(0.3)  # the queries reach the pooler and queue; its connects are refused
        pg_start(own_pg)
        t_up = time.monotonic()
        for t in threads:
            t.join(30)
        errors = [r for r in results if r[1] != "ok"]
        assert len(results) == 20
        assert not errors, f"{len(errors)} of 20 waiting clients failed (PostgreSQL was down for " \
                           f"{t_up - t_down:.1f}s): {errors[:3]}"
        assert all(r[2] == 42 for r in results)
        # and the pool works normally afterwards
        for c in conns:
            assert c.execute("SELECT 7").fetchone()[0] == 7
    finally:
        for c in conns:
            c.close()
    assert "retrying while clients wait" in dm.log()


@pytest.mark.slow
def test_first_login_waits_for_postgres_to_come_back(doorman, own_pg):
    """A client logging in to a pool that has no server yet waits for PostgreSQL instead of failing."""
    dm = doorman(config(own_pg, pool_size=2, query_wait_timeout="15s"))
    pg_stop(own_pg)
    out: list = []

    def login():
        try:
            with connect(dm) as c:
                out.append(("ok", c.execute("SELECT 'in'").fetchone()[0]))
        except psycopg.Error as e:
            out.append(("error", str(e)))

    t = threading.Thread(target=login, daemon=True)
    t.start()
    time.sleep(0.5)
    pg_start(own_pg)
    t.join(30)
    assert out == [("ok", "in")], out


@pytest.mark.slow
def test_outage_longer_than_query_wait_timeout_gives_a_short_error(doorman, own_pg):
    """PostgreSQL stays down past query_wait_timeout: waiting clients fail with 08006 and one short line
    ("connection refused"), with no NIO type dump."""
    dm = doorman(config(own_pg, pool_size=2, query_wait_timeout="1s"))
    conns = [connect(dm) for _ in range(4)]
    try:
        pg_stop(own_pg)
        go, lock, results = threading.Event(), threading.Lock(), []
        threads = run_all(conns, "SELECT 1", go, results, lock)
        t0 = time.monotonic()
        go.set()
        for t in threads:
            t.join(30)
        waited = time.monotonic() - t0
        assert len(results) == 4 and all(r[1] == "error" for r in results), results
        assert 0.8 <= waited < 8, waited
        for _, _, text in results:
            assert "08006" in text and "connection refused" in text, text
            assert not any(d in text for d in DUMPS), text
            assert len(text) < 400, text
    finally:
        for c in conns:
            c.close()
        pg_start(own_pg)
    assert not any(d in dm.log() for d in DUMPS), dm.log()[-3000:]


@pytest.mark.slow
def test_clients_in_a_query_loop_during_a_restart(doorman, own_pg):
    """20 clients run short queries in a loop (transaction mode, pool_size 4 for each of 2 users) while PostgreSQL restarts.
    A client whose own server was killed mid-query may get PostgreSQL's or the pooler's "server closed"
    error; one that was only waiting for a server must not fail: no "Could not get a database
    connection" error, and no NIO dump in any error."""
    dm = doorman(config(own_pg, pool_size=4, query_wait_timeout="15s"))
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    ok_after: set[int] = set()
    t_up = [float("inf")]
    # What each client is doing and since when (reported if one stays quiet: a stuck login or query).
    doing: dict[int, tuple[str, float]] = {}

    def worker(i):
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    doing[i] = ("connecting", time.monotonic())
                    conn = connect(dm, *((MD5_USER, MD5_PW) if i % 2 == 0 else (SCRAM_USER, SCRAM_PW)))
                    doing[i] = (f"connected (backend key {conn.pgconn.backend_pid})", time.monotonic())
                doing[i] = (f"query on {conn.pgconn.backend_pid}", time.monotonic())
                conn.execute("SELECT pg_sleep(0.02)")
                if time.monotonic() > t_up[0]:
                    with lock:
                        ok_after.add(i)
            except psycopg.Error as e:
                with lock:
                    errors.append(f"{type(e).__name__} {getattr(e, 'sqlstate', None)}: {e}")
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(20)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        pg_stop(own_pg)
        time.sleep(0.2)
        pg_start(own_pg)
        t_up[0] = time.monotonic()
        deadline = t_up[0] + 15
        while time.monotonic() < deadline and len(ok_after) < 20:
            time.sleep(0.1)
        if len(ok_after) < 20:
            now = time.monotonic()
            quiet = {i: (what, round(now - since, 1)) for i, (what, since) in doing.items() if i not in ok_after}
            try:
                state = {cmd: admin_rows(dm, cmd) for cmd in ("SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS")}
            except AssertionError as e:
                state = {"admin": str(e)}
            pytest.fail(f"clients quiet since PostgreSQL came back: {quiet}; errors: {errors}; pooler: {state}")
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    waiting_failures = [e for e in errors if "Could not get a database connection" in e
                        or "creating a new connection" in e]
    dumps = [e for e in errors if any(d in e for d in DUMPS)]
    assert not waiting_failures, f"{len(waiting_failures)} waiting clients failed ({len(errors)} errors in all): " \
                                 f"{waiting_failures[:3]}"
    assert not dumps, dumps[:3]
    assert len(errors) <= 8, errors  # at most the clients whose server was killed (pool_size 4, 2 users)
    assert ok_after == set(range(20)), sorted(set(range(20)) - ok_after)
