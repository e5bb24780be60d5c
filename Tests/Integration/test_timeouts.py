"""Issue 21: timeouts and client limits the pooler enforces itself, against the real PostgreSQL.

query_timeout cancels a statement (57014; the client keeps its connection), idle_transaction_timeout
and transaction_timeout disconnect the client (25P03 / 25P04) and release its locks at once,
client_idle_timeout disconnects a silent client (57P05); RELOAD applies a changed timeout to
connected clients; max_db_client_connections and max_user_client_connections refuse the client over
the limit with 53300 naming it."""
from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest

from harness import psql, to_yaml
from wire import Wire, error_fields

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"


def connect(dm, user=MD5_USER, pw=MD5_PW, db="example_db"):
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname=db,
                           autocommit=True, connect_timeout=10, prepare_threshold=None)


def admin_rows(dm, sql: str) -> list[dict[str, str]]:
    rc, out, err = psql(["-h", dm.host, "-p", str(dm.port), "-U", "admin", "-d", "pgdoorman", "-A", "-F", "\t",
                         "-P", "footer=off", "-c", sql], env={"PGPASSWORD": "admin"})
    assert rc == 0, err
    lines = out.splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def stats_row(dm, user=MD5_USER) -> dict[str, str]:
    return [r for r in admin_rows(dm, "SHOW STATS") if r["user"] == user and r["database"] == "example_db"][0]


def fatal_within(w: Wire, seconds: float) -> dict[str, str]:
    """The ErrorResponse the pooler sends before closing, read within `seconds`."""
    t, body = w.read_message(timeout=seconds)
    assert t == b"E", (t, body)
    return error_fields(body)


def backend_states(pg, user=MD5_USER) -> list[str]:
    out = pg.su_psql("SELECT coalesce(state, '') FROM pg_stat_activity WHERE datname = 'example_db' "
                     f"AND usename = '{user}' AND backend_type = 'client backend'")
    return [s.strip() for s in out.splitlines() if s.strip() or s == ""]


def with_general(doorman_config, pool_mode="transaction", **general):
    return doorman_config(pool_mode=pool_mode, pool_size=4, **general)


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_query_timeout_cancels_the_statement_and_the_client_keeps_its_connection(doorman, doorman_config, pool_mode):
    cfg = with_general(doorman_config, pool_mode=pool_mode)
    cfg["pools"]["example_db"]["query_timeout"] = "2s"
    dm = doorman(cfg)
    with connect(dm) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(10)")
        took = time.monotonic() - t0
        assert 1.9 <= took < 4.0, took
        # The same connection goes on working (a fresh server in transaction mode; in session mode
        # the client keeps its own).
        assert c.execute("SELECT 41 + 1").fetchone()[0] == 42
        # A statement under the limit is not touched.
        assert c.execute("SELECT pg_sleep(0.5), 7").fetchone()[1] == 7
    assert stats_row(dm)["query_timeouts"] == "1"
    assert dm.wait_for_log(r"query_timeout \(2000 ms\): cancel sent", 2), dm.log()


def test_query_timeout_shows_in_show_clients_and_metrics(doorman, doorman_config):
    cfg = with_general(doorman_config, query_timeout="1s")
    dm = doorman(cfg)
    with connect(dm) as c:
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(5)")
        rows = [r for r in admin_rows(dm, "SHOW CLIENTS") if r["user"] == MD5_USER]
        assert [r["query_timeouts"] for r in rows] == ["1"]


def test_idle_transaction_timeout_disconnects_and_releases_the_row_lock_at_once(doorman, doorman_config, pg):
    cfg = with_general(doorman_config, idle_transaction_timeout="1s")
    dm = doorman(cfg)
    w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    w.query("BEGIN")
    msgs = w.query("SELECT bid FROM pgbench_branches WHERE bid = 1 FOR UPDATE")
    assert b"E" not in [t for t, _ in msgs], msgs
    t0 = time.monotonic()
    # Another client waits for the lock; it gets it as soon as the idle client is cut off.
    got = {}

    def waiter():
        with connect(dm, SCRAM_USER, SCRAM_PW) as c2:
            c2.execute("UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1")
            got["after"] = time.monotonic() - t0

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    err = fatal_within(w, 5)
    cut_after = time.monotonic() - t0
    assert err["S"] == "FATAL" and err["C"] == "25P03", err
    assert "idle_transaction_timeout" in err["M"]
    assert 0.9 <= cut_after < 2.5, cut_after
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        w.read_message(timeout=2)
    th.join(10)
    assert "after" in got, "the lock was not released"
    assert got["after"] < cut_after + 1.5, (got, cut_after)
    # The server went back clean (rolled back, not closed): no backend is left idle in a transaction.
    assert not [s for s in backend_states(pg) if s.startswith("idle in transaction")]
    assert stats_row(dm)["idle_transaction_timeouts"] == "1"


def test_a_busy_transaction_is_not_idle(doorman, doorman_config):
    """idle_transaction_timeout counts from the last answer: a client that keeps working inside its
    transaction longer than the timeout is not cut off."""
    cfg = with_general(doorman_config, idle_transaction_timeout="1s")
    dm = doorman(cfg)
    with connect(dm) as c:
        with c.transaction():
            for _ in range(6):
                c.execute("SELECT pg_sleep(0.4)")
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_transaction_timeout_ends_a_long_transaction(doorman, doorman_config, pg):
    cfg = with_general(doorman_config, transaction_timeout="2s")
    dm = doorman(cfg)
    w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    w.query("BEGIN")
    t0 = time.monotonic()
    err = None
    # Busy all along (never idle for long), yet the transaction is ended at 2 s.
    while err is None and time.monotonic() - t0 < 6:
        w.send(b"Q" + (len(b"SELECT pg_sleep(0.3)") + 5).to_bytes(4, "big") + b"SELECT pg_sleep(0.3)\0")
        while True:
            try:
                t, body = w.read_message(timeout=5)
            except ConnectionError as e:
                raise AssertionError(f"closed without a FATAL: {e}")
            if t == b"E":
                err = error_fields(body)
                break
            if t == b"Z":
                break
    took = time.monotonic() - t0
    assert err["C"] == "25P04" and err["S"] == "FATAL", err
    assert 1.9 <= took < 4.0, took
    assert stats_row(dm)["transaction_timeouts"] == "1"


def test_transaction_timeout_cancels_a_running_statement(doorman, doorman_config, pg):
    cfg = with_general(doorman_config, transaction_timeout="1s")
    dm = doorman(cfg)
    w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    w.query("BEGIN")
    w.send(b"Q" + (len(b"SELECT pg_sleep(30)") + 5).to_bytes(4, "big") + b"SELECT pg_sleep(30)\0")
    err = fatal_within(w, 5)
    assert err["C"] == "25P04", err
    # Its backend stops sleeping at once (cancelled, then closed by the pooler).
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        active = pg.su_psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                            "AND state = 'active'").strip()
        if active == "0":
            break
        time.sleep(0.1)
    assert active == "0"


def test_client_idle_timeout_disconnects_a_silent_client_only_outside_transactions(doorman, doorman_config):
    cfg = with_general(doorman_config, client_idle_timeout="1s")
    dm = doorman(cfg)
    idle = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    intx = Wire.connect(dm.host, dm.port, SCRAM_USER, SCRAM_PW)
    intx.query("BEGIN")
    t0 = time.monotonic()
    err = fatal_within(idle, 5)
    assert err["C"] == "57P05" and "client_idle_timeout" in err["M"], err
    assert 0.9 <= time.monotonic() - t0 < 2.5
    # Inside a transaction the client is not "idle" in this sense (idle_transaction_timeout is off).
    time.sleep(1.0)
    assert intx.scalar("SELECT 5") == "5"
    intx.query("COMMIT")
    intx.close()
    assert stats_row(dm)["client_idle_timeouts"] == "1"


def test_reload_applies_a_new_query_timeout_to_connected_clients(doorman, doorman_config):
    cfg = with_general(doorman_config)
    dm = doorman(cfg)
    with connect(dm) as c:
        assert c.execute("SELECT pg_sleep(1.2), 1").fetchone()[1] == 1
        cfg["general"]["query_timeout"] = "1s"
        dm.config_path.write_text(to_yaml(cfg))
        dm.signal(signal.SIGHUP)
        assert dm.wait_for_log(r"config changed: general\.query_timeout", 5), dm.log()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(5)")
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_max_db_client_connections(doorman, doorman_config):
    cfg = with_general(doorman_config)
    cfg["pools"]["example_db"]["max_db_client_connections"] = 2
    dm = doorman(cfg)
    a = connect(dm)
    b = connect(dm, SCRAM_USER, SCRAM_PW)
    with pytest.raises(psycopg.OperationalError) as e:
        connect(dm)
    assert "max_db_client_connections = 2" in str(e.value)
    assert e.value.sqlstate in (None, "53300")
    w_err = None
    try:
        Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    except Exception as ex:  # noqa: BLE001 - the wire client raises WireError with the fields
        w_err = str(ex)
    assert w_err and "53300" in w_err, w_err
    a.close()
    time.sleep(0.2)
    c = connect(dm)  # room again
    assert c.execute("SELECT 1").fetchone()[0] == 1
    for x in (b, c):
        x.close()
    # The admin console does not count.
    assert admin_rows(dm, "SHOW VERSION")


def test_max_user_client_connections_spans_databases(doorman, doorman_config, pg):
    cfg = with_general(doorman_config, max_user_client_connections=2)
    other = dict(cfg["pools"]["example_db"])
    other["server_database"] = "example_db"
    cfg["pools"]["other_db"] = other
    dm = doorman(cfg)
    a = connect(dm)
    b = connect(dm, db="other_db")
    with pytest.raises(psycopg.OperationalError) as e:
        connect(dm, db="other_db")
    assert "max_user_client_connections = 2" in str(e.value)
    # Another user is not affected.
    with connect(dm, SCRAM_USER, SCRAM_PW, db="other_db") as s:
        assert s.execute("SELECT 1").fetchone()[0] == 1
    b.close()
    time.sleep(0.2)
    with connect(dm, db="other_db") as again:
        assert again.execute("SELECT 1").fetchone()[0] == 1
    a.close()


def test_proxy_copy_data_timeout_ends_a_stalled_copy(doorman, doorman_config, pg):
    cfg = with_general(doorman_config, pool_mode="session", proxy_copy_data_timeout="1s")
    dm = doorman(cfg)
    w = Wire.connect(dm.host, dm.port, MD5_USER, MD5_PW)
    w.query("CREATE TEMP TABLE copy_target (x int)")
    from wire import copy_data, query as q
    w.send(q("COPY copy_target FROM STDIN"))
    t, _ = w.read_message(timeout=5)
    assert t == b"G"
    w.send(copy_data(b"1\n"))
    time.sleep(0.6)
    w.send(copy_data(b"2\n"))  # data keeps it alive
    t0 = time.monotonic()
    err = fatal_within(w, 5)
    assert err["C"] == "57014" and "proxy_copy_data_timeout" in err["M"], err
    assert 0.9 <= time.monotonic() - t0 < 2.5
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        n = pg.su_psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY copy_target%'").strip()
        if n == "0":
            break
        time.sleep(0.1)
    assert n == "0"
    assert stats_row(dm)["copy_data_timeouts"] == "1"


def test_query_timeout_with_asyncpg_prepared_statements(doorman, doorman_config):
    """asyncpg (extended protocol, named statements through the rewriter): the cancelled statement
    raises QueryCanceledError and the connection, with its prepared statements, goes on working."""
    import asyncio
    asyncpg = pytest.importorskip("asyncpg")
    cfg = with_general(doorman_config, query_timeout="1s")
    dm = doorman(cfg)

    async def run():
        conn = await asyncpg.connect(host=dm.host, port=dm.port, user=MD5_USER, password=MD5_PW,
                                     database="example_db")
        try:
            stmt = await conn.prepare("SELECT $1::int * 2")
            assert await stmt.fetchval(21) == 42
            t0 = time.monotonic()
            with pytest.raises(asyncpg.exceptions.QueryCanceledError):
                await conn.fetchval("SELECT pg_sleep($1::float8)", 5.0)
            assert time.monotonic() - t0 < 3
            assert await stmt.fetchval(50) == 100
            assert await conn.fetchval("SELECT pg_sleep(0.2)::text || 'ok'") == "ok"
        finally:
            await conn.close()

    asyncio.run(run())
