"""End-to-end tests of the admin console (issue 5): psql and psycopg (simple protocol) against a running pooler
with real traffic. Column lists: the seed's "Admin Console Commands" section and runtime-spec.md §1.1."""
from __future__ import annotations

import asyncio
import re
import threading
import time

import psycopg
import pytest

from harness import pgbench, psql, to_yaml

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"

# Exact column lists. Where the seed and the reference code differ, both spellings are accepted
# (the seed's list is first).
COLUMNS: dict[str, list[list[str]]] = {
    "HELP": [["item"]],
    "POOLS": [
        ["database", "user", "pool_mode", "cl_idle", "cl_active", "cl_waiting", "cl_cancel_req", "sv_active",
         "sv_idle", "sv_used", "sv_login", "pool_size", "maxwait", "maxwait_us", "avg_xact_time", "paused"],
        ["database", "user", "pool_mode", "cl_idle", "cl_active", "cl_waiting", "cl_cancel_req", "sv_active",
         "sv_idle", "sv_used", "sv_login", "pool_size", "maxwait", "maxwait_us", "avg_xact_time", "paused",
         "fallback_active", "oldest_active_age_ms"],
    ],
    "DATABASES": [["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool",
                   "pool_mode", "max_connections", "current_connections"]],
    "CLIENTS": [["client_id", "database", "user", "application_name", "addr", "tls", "state", "wait",
                 "transaction_count", "query_count", "error_count", "age_seconds", "parameters", "query_timeouts"]],
    "SERVERS": [
        ["server_id", "server_process_id", "database_name", "user", "application_name", "state", "wait",
         "transaction_count", "query_count", "bytes_sent", "bytes_received", "age_seconds", "prepare_cache_hit",
         "prepare_cache_miss", "prepare_cache_size"],
        ["server_id", "server_process_id", "database_name", "user", "application_name", "tls", "state", "wait",
         "transaction_count", "query_count", "bytes_sent", "bytes_received", "age_seconds", "prepare_cache_hit",
         "prepare_cache_miss", "prepare_cache_size"],
    ],
    "STATS": [["database", "user", "total_xact_count", "total_query_count", "total_received", "total_sent",
               "total_xact_time", "total_query_time", "total_wait_time", "total_errors", "avg_xact_count",
               "avg_query_count", "avg_recv", "avg_sent", "avg_errors", "avg_xact_time", "avg_query_time",
               "avg_wait_time", "query_timeouts", "idle_transaction_timeouts", "transaction_timeouts",
               "client_idle_timeouts", "copy_data_timeouts"]],
    "USERS": [["name", "pool_mode"]],
    "CONFIG": [["key", "value", "default", "changeable"]],
    "LISTS": [["list", "items"]],
    "CONNECTIONS": [["total", "errors", "tls", "plain", "cancel"]],
    "VERSION": [["version"]],
    "LOG_LEVEL": [["log_level"]],
}


# ----------------------------------------------------------------------------- local helpers

def admin_env(dm, user="admin", pw="admin", db="pgdoorman"):
    return dm.env(user, pw, db=db)


def admin_psql(dm, sql: str, user="admin", pw="admin", db="pgdoorman", timeout=20):
    """Run one admin command with psql; returns (rc, header, rows, stderr); rows are lists of str."""
    rc, out, err = psql(["-A", "-F", "\t", "-P", "footer=off", "-c", sql], env=admin_env(dm, user, pw, db),
                        timeout=timeout)
    lines = [line for line in out.splitlines()]
    header = lines[0].split("\t") if lines else []
    rows = [line.split("\t") for line in lines[1:]]
    return rc, header, rows, err


def admin_rows(dm, sql: str) -> list[dict[str, str]]:
    rc, header, rows, err = admin_psql(dm, sql)
    assert rc == 0, f"{sql}: {err}"
    return [dict(zip(header, r)) for r in rows]


def admin_conn(dm, user="admin", pw="admin"):
    """psycopg on the admin db with the simple query protocol (ClientCursor)."""
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname="pgdoorman",
                           autocommit=True, connect_timeout=10, cursor_factory=psycopg.ClientCursor)


def admin_q(conn, sql: str) -> tuple[list[str], list[tuple]]:
    cur = conn.execute(sql)
    cols = [d.name for d in cur.description] if cur.description else []
    rows = cur.fetchall() if cur.description else []
    return cols, rows


def pool_row(dm, user=MD5_USER, db="example_db") -> dict[str, str]:
    rows = [r for r in admin_rows(dm, "SHOW POOLS") if r.get("database") == db and r.get("user") == user]
    assert len(rows) == 1, rows
    return rows[0]


def pconnect(dm, user=MD5_USER, pw=MD5_PW, db="example_db", autocommit=True):
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname=db, autocommit=autocommit,
                           connect_timeout=10, prepare_threshold=None)


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


def backend_alive(pg, pid: int) -> bool:
    return pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {int(pid)}").strip() == "1"


# ----------------------------------------------------------------------------- SHOW commands: exact columns

@pytest.mark.parametrize("what", list(COLUMNS))
def test_show_columns_psql(doorman, doorman_config, what):
    dm = doorman(doorman_config())
    with pconnect(dm) as c:  # some traffic so pool/server/client rows exist
        c.execute("SELECT 1")
        rc, header, rows, err = admin_psql(dm, f"SHOW {what}")
    assert rc == 0, err
    assert header in COLUMNS[what], f"SHOW {what}: got {header}, expected one of {COLUMNS[what]}"
    for r in rows:
        assert len(r) == len(header), r


def test_show_columns_python_client(doorman, doorman_config):
    """The same through psycopg (simple query protocol), and the rows carry live values."""
    dm = doorman(doorman_config())
    with pconnect(dm) as c, admin_conn(dm) as a:
        my_pid = one(c, "SELECT pg_backend_pid()")
        for what, options in COLUMNS.items():
            cols, rows = admin_q(a, f"SHOW {what}")
            assert cols in options, f"SHOW {what}: got {cols}"
        cols, rows = admin_q(a, "SHOW POOLS")
        pools = {(r[0], r[1]): dict(zip(cols, r)) for r in rows}
        assert ("example_db", MD5_USER) in pools and ("example_db", SCRAM_USER) in pools, pools
        assert str(pools[("example_db", MD5_USER)]["pool_size"]) == "40"
        cols, rows = admin_q(a, "SHOW CLIENTS")
        clients = [dict(zip(cols, r)) for r in rows]
        assert any(cl["user"] == MD5_USER and cl["database"] == "example_db" for cl in clients), clients
        cols, rows = admin_q(a, "SHOW SERVERS")
        servers = [dict(zip(cols, r)) for r in rows]
        mine = [s for s in servers if s["user"] == MD5_USER]
        assert mine, servers
        assert my_pid in {int(s["server_process_id"]) for s in mine}, (my_pid, mine)
        cols, rows = admin_q(a, "SHOW VERSION")
        assert re.match(r"^PgDoorman \d+\.\d+", rows[0][0]), rows


def test_show_help_lists_commands(doorman, doorman_config):
    dm = doorman(doorman_config())
    rc, header, rows, err = admin_psql(dm, "SHOW HELP")
    assert rc == 0, err
    text = "\n".join("\t".join(r) for r in rows)
    for word in ["SHOW", "CONFIG", "DATABASES", "POOLS", "CLIENTS", "SERVERS", "USERS", "CONNECTIONS", "STATS",
                 "LISTS", "LOG_LEVEL", "VERSION", "SET log_level", "RELOAD", "SHUTDOWN", "UPGRADE", "PAUSE [db]",
                 "RESUME [db]", "RECONNECT [db]"]:
        assert word in text, f"{word!r} missing from SHOW HELP:\n{text}"


def test_show_databases_and_users_reflect_config(doorman, doorman_config, pg):
    cfg = doorman_config(pool_size=7)
    cfg["pools"]["example_db"]["users"][1]["pool_mode"] = "session"
    dm = doorman(cfg)
    dbs = {r["force_user"]: r for r in admin_rows(dm, "SHOW DATABASES") if r["name"] == "example_db"}
    assert set(dbs) == {MD5_USER, SCRAM_USER}, dbs
    assert dbs[MD5_USER]["host"] == pg.host and dbs[MD5_USER]["port"] == str(pg.port)
    assert dbs[MD5_USER]["pool_size"] == "7"
    assert dbs[MD5_USER]["pool_mode"] == "transaction" and dbs[SCRAM_USER]["pool_mode"] == "session"
    users = {r["name"]: r["pool_mode"] for r in admin_rows(dm, "SHOW USERS")}
    assert users.get(MD5_USER) == "transaction" and users.get(SCRAM_USER) == "session", users


def test_show_lists_rows_in_order(doorman, doorman_config):
    dm = doorman(doorman_config())
    rows = admin_rows(dm, "SHOW LISTS")
    assert [r["list"] for r in rows] == ["databases", "users", "pools", "free_clients", "used_clients",
                                        "login_clients", "free_servers", "used_servers", "dns_names", "dns_zones",
                                        "dns_queries", "dns_pending"], rows


def test_stats_counters_move_after_pgbench(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=4))

    def stats():
        rows = [r for r in admin_rows(dm, "SHOW STATS") if r["database"] == "example_db" and r["user"] == MD5_USER]
        return rows[0] if rows else {}

    before = stats()
    b_x, b_q = int(before.get("total_xact_count", 0)), int(before.get("total_query_count", 0))
    res = pgbench(["-n", "-M", "simple", "-c", "4", "-j", "2", "-t", "25", "example_db"], env=dm.env(MD5_USER, MD5_PW),
                  timeout=120)
    assert res.ok, res.stdout + res.stderr
    after = stats()
    assert after, "no SHOW STATS row for (example_db, example_user_md5) after traffic"
    xacts, queries = int(after["total_xact_count"]) - b_x, int(after["total_query_count"]) - b_q
    # 100 pgbench TPC-B transactions, 7 statements each (BEGIN .. END)
    assert xacts >= 100, f"total_xact_count moved by {xacts}"
    assert queries >= 500, f"total_query_count moved by {queries}"
    assert int(after["total_received"]) > int(before.get("total_received", 0)), after
    assert int(after["total_sent"]) > int(before.get("total_sent", 0)), after
    assert int(after["total_xact_time"]) > 0, after
    conns = admin_rows(dm, "SHOW CONNECTIONS")[0]
    assert int(conns["total"]) >= 4, conns


def test_stats_total_query_time_accumulates(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=2))
    with pconnect(dm) as c:
        for _ in range(20):
            c.execute("SELECT pg_sleep(0.005)")
    row = [r for r in admin_rows(dm, "SHOW STATS") if r["database"] == "example_db" and r["user"] == MD5_USER][0]
    assert int(row["total_query_count"]) >= 20, row
    # 20 queries of >= 5 ms each: at least 100 000 us spent executing queries
    assert int(row["total_query_time"]) >= 100_000, f"total_query_time = {row['total_query_time']}: {row}"


# ----------------------------------------------------------------------------- access control

def test_non_admin_user_refused_on_admin_db(doorman, doorman_config):
    dm = doorman(doorman_config())
    for db in ("pgdoorman", "pgbouncer"):
        rc, header, rows, err = admin_psql(dm, "SHOW VERSION", user=MD5_USER, pw=MD5_PW, db=db)
        assert rc != 0 and not rows, (db, header, rows)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=dm.host, port=dm.port, user=MD5_USER, password=MD5_PW, dbname=db,
                            connect_timeout=10).close()
    rc, header, rows, err = admin_psql(dm, "SHOW VERSION", pw="wrong-password")
    assert rc != 0 and not rows, err
    # the real admin gets in through both names
    for db in ("pgdoorman", "pgbouncer"):
        rc, header, rows, err = admin_psql(dm, "SHOW VERSION", db=db)
        assert rc == 0 and header == ["version"], err


def test_admin_extended_protocol_gets_clear_error_not_hang(doorman, doorman_config):
    dm = doorman(doorman_config())

    async def run():
        conn = await psycopg.AsyncConnection.connect(host=dm.host, port=dm.port, user="admin", password="admin",
                                                     dbname="pgdoorman", autocommit=True, connect_timeout=10)
        try:
            with pytest.raises(psycopg.Error):
                await conn.execute("SHOW VERSION", prepare=True)
        finally:
            await conn.close()

    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(run(), 10))
    assert time.monotonic() - t0 < 10
    # the pooler is fine afterwards
    rc, header, rows, err = admin_psql(dm, "SHOW VERSION")
    assert rc == 0, err


def test_unsupported_admin_query_errors_and_session_survives(doorman, doorman_config):
    dm = doorman(doorman_config())
    with admin_conn(dm) as a:
        with pytest.raises(psycopg.Error) as ei:
            a.execute("SHOW NO_SUCH_THING")
        assert "Unsupported" in str(ei.value)
        cols, rows = admin_q(a, "SHOW VERSION")
        assert cols == ["version"]


# ----------------------------------------------------------------------------- PAUSE / RESUME / RECONNECT

def test_pause_and_resume_are_idempotent_and_paused_column(doorman, doorman_config):
    dm = doorman(doorman_config())
    with pconnect(dm) as c:
        c.execute("SELECT 1")
    with admin_conn(dm) as a:
        assert pool_row(dm)["paused"] == "0"
        a.execute("PAUSE example_db")
        a.execute("PAUSE example_db")  # already paused: no-op, no error
        assert pool_row(dm)["paused"] == "1"
        assert pool_row(dm, SCRAM_USER)["paused"] == "1"
        a.execute("RESUME example_db")
        assert pool_row(dm)["paused"] == "0"
        a.execute("RESUME example_db")  # not paused: no-op, no error
        a.execute("RESUME")
        assert pool_row(dm)["paused"] == "0"
        # without an argument every pool is affected
        a.execute("PAUSE")
        assert pool_row(dm)["paused"] == "1" and pool_row(dm, SCRAM_USER)["paused"] == "1"
        a.execute("RESUME")
        assert pool_row(dm)["paused"] == "0" and pool_row(dm, SCRAM_USER)["paused"] == "0"
    with pconnect(dm) as c:
        assert one(c, "SELECT 1") == 1


@pytest.mark.parametrize("op", ["PAUSE", "RESUME", "RECONNECT"])
def test_unknown_database_no_pool_error(doorman, doorman_config, op):
    dm = doorman(doorman_config())
    with admin_conn(dm) as a:
        with pytest.raises(psycopg.Error) as ei:
            a.execute(f"{op} nosuchdb")
        assert 'No pool for database "nosuchdb"' in str(ei.value), str(ei.value)
        # the session stays usable
        cols, rows = admin_q(a, "SHOW VERSION")
        assert cols == ["version"]
    rc, header, rows, err = admin_psql(dm, f"{op} nosuchdb")
    assert 'No pool for database "nosuchdb"' in err, err


def query_times_out_waiting(dm) -> float:
    """Runs a query that must fail with query_wait_timeout; returns how long it waited."""
    with pconnect(dm) as c:
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELECT 1")
        elapsed = time.monotonic() - t0
    assert re.search(r"wait.*timeout|timeout.*wait", str(ei.value), re.I | re.S), str(ei.value)
    return elapsed


def test_waiting_client_under_pause_times_out_and_pool_stays_paused(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=2, query_wait_timeout="1500ms"))
    with pconnect(dm) as c:
        c.execute("SELECT 1")  # pool warmed
    with admin_conn(dm) as a:
        a.execute("PAUSE example_db")
        try:
            elapsed = query_times_out_waiting(dm)
            assert 1.0 <= elapsed < 5.0, f"timed out after {elapsed:.2f}s, expected about 1.5 s"
            assert pool_row(dm)["paused"] == "1"
        finally:
            a.execute("RESUME example_db")
    with pconnect(dm) as c:
        assert one(c, "SELECT 1") == 1


def test_query_wait_timeout_holds_for_every_waiting_episode(doorman, doorman_config):
    """Waiter expiry runs only while someone waits: it must start again for each new episode."""
    dm = doorman(doorman_config(pool_size=2, query_wait_timeout="800ms"))
    with pconnect(dm) as c:
        c.execute("SELECT 1")
    with admin_conn(dm) as a:
        a.execute("PAUSE example_db")
        try:
            for _ in range(3):
                elapsed = query_times_out_waiting(dm)
                assert 0.6 <= elapsed < 3.0, f"timed out after {elapsed:.2f}s, expected about 0.8 s"
                time.sleep(0.3)  # nobody waits: the checks stop
        finally:
            a.execute("RESUME example_db")
    with pconnect(dm) as c:
        assert one(c, "SELECT 1") == 1


def test_resume_wakes_waiting_client_promptly(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=2, query_wait_timeout="15s"))
    with pconnect(dm) as c:
        c.execute("SELECT 1")
    result: dict = {}

    def waiter():
        try:
            with pconnect(dm) as c:
                result["value"] = one(c, "SELECT 'woke'")
                result["t"] = time.monotonic()
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    with admin_conn(dm) as a:
        a.execute("PAUSE example_db")
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        try:
            # the client is blocked while paused
            deadline = time.monotonic() + 5
            waiting = "0"
            while time.monotonic() < deadline:
                waiting = pool_row(dm)["cl_waiting"]
                if waiting != "0":
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            assert "value" not in result and "error" not in result, result
            assert waiting == "1", f"cl_waiting = {waiting} while a client is blocked by PAUSE"
        finally:
            t_resume = time.monotonic()
            a.execute("RESUME example_db")
        t.join(10)
    assert "error" not in result, result.get("error")
    assert result.get("value") == "woke", result
    assert result["t"] - t_resume < 1.0, f"woke {result['t'] - t_resume:.2f}s after RESUME"


def test_reconnect_retires_idle_backend_pool_size_2(doorman, doorman_config, pg):
    dm = doorman(doorman_config(pool_size=2))
    with pconnect(dm) as c:
        p1 = one(c, "SELECT pg_backend_pid()")
        assert one(c, "SELECT pg_backend_pid()") == p1
        with admin_conn(dm) as a:
            a.execute("RECONNECT example_db")
        p2 = one(c, "SELECT pg_backend_pid()")
        assert p2 != p1
        deadline = time.monotonic() + 5
        while backend_alive(pg, p1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not backend_alive(pg, p1), f"old backend {p1} still connected after RECONNECT"


def test_reconnect_gives_new_backend_pid(doorman, doorman_config, pg):
    dm = doorman(doorman_config(pool_size=1))
    with pconnect(dm) as c:
        p1 = one(c, "SELECT pg_backend_pid()")
        assert one(c, "SELECT pg_backend_pid()") == p1  # pool_size 1: same backend reused
        with admin_conn(dm) as a:
            a.execute("RECONNECT example_db")
        p2 = one(c, "SELECT pg_backend_pid()")
        assert p2 != p1
        # the idle backend was closed right away
        deadline = time.monotonic() + 5
        while backend_alive(pg, p1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not backend_alive(pg, p1), f"old backend {p1} still connected after RECONNECT"
        # multiple RECONNECTs: each bumps the epoch again
        with admin_conn(dm) as a:
            a.execute("RECONNECT")
            a.execute("RECONNECT")
        p3 = one(c, "SELECT pg_backend_pid()")
        assert p3 not in (p1, p2)


def test_reconnect_busy_server_finishes_transaction_then_retires(doorman, doorman_config, pg):
    dm = doorman(doorman_config(pool_size=1))
    with pconnect(dm, autocommit=False) as c:
        p1 = one(c, "SELECT pg_backend_pid()")  # inside BEGIN
        with admin_conn(dm) as a:
            a.execute("RECONNECT example_db")
        # the active transaction is not interrupted
        assert one(c, "SELECT pg_backend_pid()") == p1
        c.commit()
    with pconnect(dm) as c:
        p2 = one(c, "SELECT pg_backend_pid()")
    assert p2 != p1
    deadline = time.monotonic() + 5
    while backend_alive(pg, p1) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not backend_alive(pg, p1)


def test_reconnect_paused_pool_then_resume_gives_new_backend(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=1, query_wait_timeout="10s"))
    with pconnect(dm) as c:
        p1 = one(c, "SELECT pg_backend_pid()")
        with admin_conn(dm) as a:
            a.execute("PAUSE example_db")
            a.execute("RECONNECT example_db")
            assert pool_row(dm)["paused"] == "1"
            a.execute("RESUME example_db")
        assert one(c, "SELECT pg_backend_pid()") != p1


def test_reload_during_pause_loses_pause_state(doorman, doorman_config):
    cfg = doorman_config(pool_size=3)
    dm = doorman(cfg)
    with pconnect(dm) as c:
        c.execute("SELECT 1")
    with admin_conn(dm) as a:
        a.execute("PAUSE")
        assert pool_row(dm)["paused"] == "1"
        cfg["pools"]["example_db"]["users"][0]["pool_size"] = 5
        dm.config_path.write_text(to_yaml(cfg))
        a.execute("RELOAD")
        row = pool_row(dm)
        assert row["pool_size"] == "5" and row["paused"] == "0", row
    with pconnect(dm) as c:
        assert one(c, "SELECT 1") == 1


# ----------------------------------------------------------------------------- SET log_level

def test_set_log_level_and_default(doorman, doorman_config):
    dm = doorman(doorman_config(), args=("-l", "info"))
    with admin_conn(dm) as a:
        cols, rows = admin_q(a, "SHOW LOG_LEVEL")
        assert cols == ["log_level"] and rows[0][0].lower() == "info", rows
        a.execute("SET log_level = 'debug'")
        assert admin_q(a, "SHOW LOG_LEVEL")[1][0][0].lower() == "debug"
        a.execute("SET log_level = 'warn,pg_doorman::pool=debug'")
        assert admin_q(a, "SHOW LOG_LEVEL")[1][0][0].lower() == "warn,pg_doorman::pool=debug"
        a.execute("SET log_level = 'default'")
        assert admin_q(a, "SHOW LOG_LEVEL")[1][0][0].lower() == "info"
        with pytest.raises(psycopg.Error) as ei:
            a.execute("SET log_level = 'loud'")
        assert getattr(ei.value, "sqlstate", None) == "42601", str(ei.value)
        with pytest.raises(psycopg.Error):
            a.execute("SET work_mem = '1MB'")
        assert admin_q(a, "SHOW LOG_LEVEL")[1][0][0].lower() == "info"
    rc, header, rows, err = admin_psql(dm, "SET log_level = 'debug'")
    assert rc == 0, err
    assert admin_rows(dm, "SHOW LOG_LEVEL")[0]["log_level"].lower() == "debug"


# ----------------------------------------------------------------------------- RELOAD

def test_reload_changed_pool_size_shows_in_databases(doorman, doorman_config):
    cfg = doorman_config(pool_size=4)
    dm = doorman(cfg)

    def sizes():
        return {r["force_user"]: r["pool_size"] for r in admin_rows(dm, "SHOW DATABASES") if r["name"] == "example_db"}

    assert sizes()[MD5_USER] == "4"
    cfg["pools"]["example_db"]["users"][0]["pool_size"] = 9
    dm.config_path.write_text(to_yaml(cfg))
    rc, header, rows, err = admin_psql(dm, "RELOAD")
    assert rc == 0, err
    assert sizes() == {MD5_USER: "9", SCRAM_USER: "4"}
    with pconnect(dm) as c:
        assert one(c, "SELECT 1") == 1


def test_reload_broken_file_errors_and_old_config_serves(doorman, doorman_config):
    cfg = doorman_config(pool_size=4)
    dm = doorman(cfg)
    with pconnect(dm) as c:
        c.execute("SELECT 1")
    good = dm.config_path.read_text()
    dm.config_path.write_text(good + "\npools: [this is: not {valid\n  - yaml: [\n")
    try:
        rc, header, rows, err = admin_psql(dm, "RELOAD")
        assert rc != 0 and err.strip(), f"RELOAD of a broken file reported success: rc={rc} err={err!r}"
    finally:
        dm.config_path.write_text(good)
    assert dm.alive()
    sizes = {r["force_user"]: r["pool_size"] for r in admin_rows(dm, "SHOW DATABASES") if r["name"] == "example_db"}
    assert sizes == {MD5_USER: "4", SCRAM_USER: "4"}
    for user, pw in ((MD5_USER, MD5_PW), (SCRAM_USER, SCRAM_PW)):
        with pconnect(dm, user, pw) as c:
            assert one(c, "SELECT current_user") == user


# ----------------------------------------------------------------------------- views beyond the seed's tables

EXTRA_COLUMNS = {
    "POOLS_EXTENDED": ["database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login",
                       "pool_size", "maxwait", "maxwait_us", "pool_mode", "bytes_recieved", "bytes_sent",
                       "query_0.99", "transaction_0.99", "query_0.95", "transaction_0.95", "query_0.5",
                       "transaction_0.5"],
    "POOLS_MEMORY": ["database", "user", "pool_prepared_count", "pool_prepared_bytes", "client_prepared_count",
                     "client_prepared_bytes", "client_named_count", "client_anonymous_count",
                     "client_anonymous_evictions_alive", "async_clients"],
    "POOL_COORDINATOR": ["database", "max_db_conn", "current", "reserve_size", "reserve_used", "evictions",
                         "reserve_acq", "exhaustions"],
    "POOL_SCALING": ["user", "database", "inflight", "creates", "gate_waits", "gate_budget_ex", "antic_notify",
                     "antic_timeout", "create_fallback", "replenish_def"],
    "PREPARED_STATEMENTS": ["pool", "hash", "name", "query", "count_used", "kind"],
    "AUTH_QUERY": ["database", "cache_entries", "cache_hits", "cache_misses", "cache_refetches",
                   "cache_rate_limited", "auth_success", "auth_failure", "executor_queries", "executor_errors",
                   "dynamic_pools_current", "dynamic_pools_created", "dynamic_pools_destroyed"],
}


@pytest.mark.parametrize("what", sorted(EXTRA_COLUMNS))
def test_extra_show_views_columns(doorman, doorman_config, what):
    dm = doorman(doorman_config())
    with admin_conn(dm) as c:
        cols, _ = admin_q(c, f"SHOW {what}")
    assert cols == EXTRA_COLUMNS[what]


def test_show_sockets_counts_from_proc(doorman, doorman_config):
    dm = doorman(doorman_config())
    with admin_conn(dm) as c:
        cols, rows = admin_q(c, "SHOW SOCKETS")
    assert cols[0] == "tcp_established" and cols[-1] == "unknown" and len(cols) == 34
    assert len(rows) == 1
    assert int(rows[0][cols.index("tcp_listen")]) >= 1


def test_prepared_statements_and_percentiles_are_live(doorman, doorman_config, pg):
    dm = doorman(doorman_config(pool_size=4))
    r = pgbench(["-n", "-t", "50", "-c", "4", "-M", "prepared", "-b", "select-only"], env=dm.env(MD5_USER, MD5_PW))
    assert r.ok, r.stderr
    with admin_conn(dm) as c:
        cols, rows = admin_q(c, "SHOW PREPARED_STATEMENTS")
        assert any(r[cols.index("name")].startswith("DOORMAN_") for r in rows), rows
        cols, rows = admin_q(c, "SHOW POOLS_EXTENDED")
        row = [r for r in rows if r[cols.index("user")] == MD5_USER][0]
        assert int(row[cols.index("transaction_0.5")]) > 0
        assert int(row[cols.index("transaction_0.99")]) >= int(row[cols.index("transaction_0.5")])
        cols, rows = admin_q(c, "SHOW SERVERS")
        hits = sum(int(r[cols.index("prepare_cache_hit")]) for r in rows)
        assert hits > 0, rows


def test_min_pool_size_not_replenished_while_paused(doorman, pg):
    """Edge-case table: RECONNECT on a paused pool drains it; replenishing to min_pool_size waits for RESUME."""
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin"},
        "pools": {"example_db": {"application_name": "paused_min", "users": [
            {"username": MD5_USER, "password": pg.hashes[MD5_USER], "pool_size": 4, "min_pool_size": 2}]}},
    }
    dm = doorman(cfg)

    def count():
        return int(pg.su_psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'paused_min'").strip())

    def wait_for(n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline and count() != n:
            time.sleep(0.2)
        return count()

    assert wait_for(2) == 2
    with admin_conn(dm) as c:
        admin_q(c, "PAUSE example_db")
        admin_q(c, "RECONNECT example_db")
        assert wait_for(0) == 0
        time.sleep(2.5)  # several maintenance ticks
        assert count() == 0
        admin_q(c, "RESUME example_db")
    assert wait_for(2) == 2


def test_pools_memory_counts_client_statements(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=2))
    c = psycopg.connect(host=dm.host, port=dm.port, user=MD5_USER, password=MD5_PW, dbname="example_db",
                        autocommit=True, connect_timeout=10)
    try:
        assert c.execute("SELECT %s::int + 1", (1,), prepare=True).fetchone()[0] == 2
        with admin_conn(dm) as a:
            cols, rows = admin_q(a, "SHOW POOLS_MEMORY")
        row = [r for r in rows if r[cols.index("user")] == MD5_USER][0]
        assert int(row[cols.index("client_named_count")]) >= 1, row
        assert int(row[cols.index("client_prepared_bytes")]) > 0, row
        assert int(row[cols.index("pool_prepared_count")]) >= 1, row
    finally:
        c.close()
