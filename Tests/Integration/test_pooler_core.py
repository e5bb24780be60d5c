"""End-to-end tests of the pooler core (issue 4) against a real PostgreSQL through the real binary.

Clients: psql, pgbench, asyncpg, psycopg. Every wait is bounded."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import asyncpg
import psycopg
import pytest

from harness import PgInstance, pgbench, psql, to_yaml

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"
USERS = [(MD5_USER, MD5_PW), (SCRAM_USER, SCRAM_PW)]


# ----------------------------------------------------------------------------- local helpers

def pconnect(dm, user=MD5_USER, pw=MD5_PW, db="example_db", autocommit=True, **kw):
    """psycopg connection through the pooler (bounded connect). Server-side prepared statements are off:
    named statements across transactions belong to issue 8, not to these tests."""
    kw.setdefault("prepare_threshold", None)
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname=db,
                           autocommit=autocommit, connect_timeout=10, **kw)


def login_error(dm, user, pw, db="example_db") -> tuple[str | None, str]:
    """Try to log in with asyncpg (which exposes the SQLSTATE of a startup-time ErrorResponse; libpq does not).
    Returns (sqlstate, message); fails the test if the login succeeds."""
    async def run():
        try:
            conn = await asyncpg.connect(host=dm.host, port=dm.port, user=user, password=pw, database=db,
                                         timeout=10, statement_cache_size=0)
        except asyncpg.PostgresError as e:
            return e.sqlstate, str(e)
        await conn.close(timeout=5)
        return None, "login succeeded"

    state, msg = asyncio.run(asyncio.wait_for(run(), 20))
    assert state is not None, f"{user}@{db} logged in but should have been refused"
    return state, msg


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


def sqlstate_of(excinfo) -> str | None:
    return getattr(excinfo.value, "sqlstate", None)


def make_table(pg, name: str, cols: str = "x int") -> None:
    pg.su_psql(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name}({cols}); "
               f"GRANT ALL ON {name} TO {MD5_USER}, {SCRAM_USER}", db="example_db")


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def as_pg_cmd(args: list[str]) -> list[str]:
    """Run a PostgreSQL server binary as the postgres OS user when we are root (like pg-throwaway.sh)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def pg_bin(inst: PgInstance) -> str:
    env = {}
    for tok in (inst.dir / "env").read_text().split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            env[k] = v
    return env.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def pg_ctl(inst: PgInstance, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = as_pg_cmd([f"{pg_bin(inst)}/pg_ctl", *args, "-D", str(inst.data_dir)])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ----------------------------------------------------------------------------- connecting: psql / asyncpg / psycopg

@pytest.mark.parametrize("user,pw", USERS, ids=["md5", "scram"])
def test_psql_connects_through_pooler(doorman, doorman_config, pg, user, pw):
    cfg = doorman_config()
    # passthrough: the config holds only the pg_shadow verifiers, never the plaintext
    for u in cfg["pools"]["example_db"]["users"]:
        assert u["password"] in (pg.hashes[MD5_USER], pg.hashes[SCRAM_USER])
        assert u["password"] not in (MD5_PW, SCRAM_PW)
    dm = doorman(cfg)
    for _ in range(2):  # the second login exercises the cached passthrough credential
        rc, out, err = psql(["-At", "-v", "ON_ERROR_STOP=1", "-c",
                             "SELECT current_user, current_database(), 40 + 2"], env=dm.env(user, pw), timeout=30)
        assert rc == 0, err
        assert out.strip() == f"{user}|example_db|42"


@pytest.mark.parametrize("user,pw", USERS, ids=["md5", "scram"])
def test_asyncpg_connects_through_pooler(doorman, doorman_config, user, pw):
    dm = doorman(doorman_config())

    async def run():
        conn = await asyncpg.connect(host=dm.host, port=dm.port, user=user, password=pw, database="example_db",
                                     timeout=10, statement_cache_size=0)
        try:
            row = await conn.fetchrow("SELECT current_user AS u, current_database() AS d, $1::int + 1 AS n", 41,
                                      timeout=10)
            assert (row["u"], row["d"], row["n"]) == (user, "example_db", 42)
            # a couple of extended-protocol round trips with parameters
            vals = [await conn.fetchval("SELECT $1::text || $2::text", "a", str(i), timeout=10) for i in range(5)]
            assert vals == [f"a{i}" for i in range(5)]
        finally:
            await conn.close(timeout=5)

    asyncio.run(asyncio.wait_for(run(), 30))


@pytest.mark.parametrize("user,pw", USERS, ids=["md5", "scram"])
def test_psycopg_connects_through_pooler(doorman, doorman_config, user, pw):
    dm = doorman(doorman_config())
    with pconnect(dm, user, pw) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, "example_db")
        assert one(conn, "SELECT %s::int * 2", (21,)) == 42
        # several extended-protocol round trips with parameters (unnamed statements)
        for i in range(10):
            assert one(conn, "SELECT %s::int + 1", (i,)) == i + 1
        conn.autocommit = False
        conn.execute("SELECT 1")
        assert one(conn, "SELECT count(*) FROM pgbench_branches") >= 1
        conn.commit()


@pytest.mark.parametrize("user", [MD5_USER, SCRAM_USER], ids=["md5", "scram"])
def test_wrong_password_rejected_28P01(doorman, doorman_config, user):
    dm = doorman(doorman_config())
    with pytest.raises(psycopg.OperationalError):
        pconnect(dm, user, "definitely-wrong")
    state, msg = login_error(dm, user, "definitely-wrong")
    assert state == "28P01", msg
    rc, out, err = psql(["-At", "-c", "SELECT 1"], env=dm.env(user, "definitely-wrong"), timeout=30)
    assert rc != 0 and out.strip() != "1", (out, err)
    # the pooler keeps serving correct logins afterwards
    pw = MD5_PW if user == MD5_USER else SCRAM_PW
    with pconnect(dm, user, pw) as conn:
        assert one(conn, "SELECT 1") == 1


def test_unknown_database_3D000(doorman, doorman_config):
    dm = doorman(doorman_config())
    with pytest.raises(psycopg.OperationalError):
        pconnect(dm, MD5_USER, MD5_PW, db="no_such_db")
    for user, pw in USERS:
        state, msg = login_error(dm, user, pw, db="no_such_db")
        assert state == "3D000", msg


# ----------------------------------------------------------------------------- pgbench

@pytest.mark.parametrize("mode", ["simple", "extended"])
def test_pgbench_transaction_mode_more_clients_than_pool(doorman, doorman_config, pg, mode):
    cfg = doorman_config(pool_mode="transaction", pool_size=4)
    # PostgreSQL sees the clients' own application_name (issue #18): it tells this run's backends apart.
    appname = uniq("bench")
    dm = doorman(cfg)
    res = pgbench(["-n", "-M", mode, "-c", "20", "-j", "2", "-t", "30", "example_db"],
                  env={**dm.env(MD5_USER, MD5_PW), "PGAPPNAME": appname}, timeout=180)
    assert res.rc == 0, res.stdout + res.stderr
    assert res.processed == 20 * 30, res.stdout
    assert (res.failed or 0) == 0, res.stdout
    assert "error" not in res.stderr.lower(), res.stderr
    # the pool really was the bottleneck: PostgreSQL holds at most pool_size backends of this user
    n = int(pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{MD5_USER}' "
                       f"AND application_name = '{appname}'"))
    assert 1 <= n <= 4, n


# ----------------------------------------------------------------------------- session / transaction semantics

def test_session_mode_keeps_set_across_statements(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="session", pool_size=2))
    with pconnect(dm) as a, pconnect(dm) as b:
        a.execute("SET application_name = 'session_keeper'")
        a.execute("SET myapp.flavour = 'mint'")
        b.execute("SET myapp.flavour = 'lemon'")
        pid = one(a, "SELECT pg_backend_pid()")
        for _ in range(5):
            b.execute("SELECT 1")
            assert one(a, "SHOW application_name") == "session_keeper"
            assert one(a, "SELECT current_setting('myapp.flavour')") == "mint"
            assert one(a, "SELECT pg_backend_pid()") == pid
        assert one(b, "SELECT current_setting('myapp.flavour')") == "lemon"


def test_transaction_mode_does_not_leak_set_or_temp_tables(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=1))
    with pconnect(dm) as b0:
        default_timeout = one(b0, "SHOW statement_timeout")
    assert default_timeout != "1234ms"
    tmp = uniq("leak_tmp")
    with pconnect(dm) as a:
        a.execute("SET statement_timeout = 1234")
        a.autocommit = False
        a.execute(f"CREATE TEMP TABLE {tmp}(x int)")  # ON COMMIT PRESERVE ROWS: outlives the transaction
        a.execute(f"INSERT INTO {tmp} VALUES (1)")
        assert one(a, f"SELECT count(*) FROM {tmp}") == 1
        a.commit()
    with pconnect(dm) as b:
        assert one(b, "SHOW statement_timeout") == default_timeout
        assert one(b, "SELECT to_regclass(%s)::text", (tmp,)) is None
        assert one(b, "SELECT count(*) FROM pg_class WHERE relname = %s AND relpersistence = 't' "
                      "AND pg_table_is_visible(oid)", (tmp,)) == 0


def test_transaction_mode_pins_server_inside_transaction(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=2))
    stop = threading.Event()
    errors: list[BaseException] = []

    def noise():
        try:
            with pconnect(dm) as c:
                while not stop.is_set():
                    c.execute("SELECT pg_backend_pid()")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=noise, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with pconnect(dm, autocommit=False) as conn:
            for _ in range(5):
                pids = set()
                conn.execute("SELECT 1")  # opens the transaction (psycopg BEGIN)
                for _ in range(10):
                    pids.add(one(conn, "SELECT pg_backend_pid()"))
                    time.sleep(0.005)
                # still the transaction opened above: its start time is older than this statement's
                assert one(conn, "SELECT now() = statement_timestamp()") is False
                assert len(pids) == 1, pids
                conn.commit()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors


# ----------------------------------------------------------------------------- pg_hba

def test_hba_trust_admits_without_password(doorman, doorman_config):
    dm = doorman(doorman_config(pg_hba="host all all 127.0.0.1/32 trust\n"))
    env = dm.env(MD5_USER, "")
    env.pop("PGPASSWORD")
    rc, out, err = psql(["-At", "-w", "-c", "SELECT current_user"], env=env, timeout=30)
    assert rc == 0, err
    assert out.strip() == MD5_USER


def test_hba_reject_refuses_28000(doorman, doorman_config):
    dm = doorman(doorman_config(pg_hba="host all all 127.0.0.1/32 reject\n"))
    for user, pw in USERS:
        with pytest.raises(psycopg.OperationalError):
            pconnect(dm, user, pw)
        state, msg = login_error(dm, user, pw)
        assert state == "28000", msg


def test_hba_scram_rule_refuses_md5_user(doorman, doorman_config):
    dm = doorman(doorman_config(pg_hba="host all all 127.0.0.1/32 scram-sha-256\n"))
    with pytest.raises(psycopg.OperationalError):
        pconnect(dm, MD5_USER, MD5_PW)
    # with the correct password, so the refusal is the rule's doing; PostgreSQL itself answers 28P01 for an
    # MD5-stored password under a scram-sha-256 rule, the reference pooler 28000 (HBA)
    state, msg = login_error(dm, MD5_USER, MD5_PW)
    assert state in ("28000", "28P01"), msg
    # the SCRAM user is still admitted by the same rule
    with pconnect(dm, SCRAM_USER, SCRAM_PW) as conn:
        assert one(conn, "SELECT current_user") == SCRAM_USER


# ----------------------------------------------------------------------------- cancel

def test_cancel_pg_sleep_psycopg(doorman, doorman_config, pg):
    dm = doorman(doorman_config(pool_size=2))
    with pconnect(dm) as conn:
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled) as ei:
                conn.execute("SELECT pg_sleep(10)")
        finally:
            timer.cancel()
        elapsed = time.monotonic() - t0
        assert sqlstate_of(ei) == "57014"
        assert elapsed < 5, f"cancel took {elapsed:.1f}s"
        # the session is still usable and the backend is not still sleeping
        assert one(conn, "SELECT 1") == 1
    assert pg.su_psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' "
                      "AND state = 'active'").strip() == "0"


def test_backend_that_received_a_cancel_is_not_handed_to_another_client(doorman, doorman_config, pg):
    """PostgreSQL acts on a cancel whenever it arrives. One sent just as the query finishes could reach
    the backend after it has gone back to the pool and interrupt another client's query, so a backend
    a cancel was forwarded for is closed when its client releases it (the reference does the same)."""
    dm = doorman(doorman_config(pool_size=1))
    with pconnect(dm) as a, pconnect(dm) as b:
        cancelled_pid = one(a, "SELECT pg_backend_pid()")
        assert one(b, "SELECT pg_backend_pid()") == cancelled_pid  # one backend, shared
        timer = threading.Timer(1.0, a.cancel)
        timer.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                a.execute("SELECT pg_sleep(10)")
        finally:
            timer.cancel()
        fresh_pid = one(b, "SELECT pg_backend_pid()")
        assert fresh_pid != cancelled_pid
        assert one(a, "SELECT pg_backend_pid()") == fresh_pid  # the new backend is pooled as usual
        assert one(b, "SELECT pg_backend_pid()") == fresh_pid
    assert pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {cancelled_pid}").strip() == "0"


def test_cancel_pg_sleep_asyncpg_timeout(doorman, doorman_config, pg):
    dm = doorman(doorman_config(pool_size=2))

    async def run():
        conn = await asyncpg.connect(host=dm.host, port=dm.port, user=SCRAM_USER, password=SCRAM_PW,
                                     database="example_db", timeout=10, statement_cache_size=0)
        try:
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT pg_sleep(10)", timeout=1)
            elapsed = time.monotonic() - t0
            assert elapsed < 5, f"timeout+cancel took {elapsed:.1f}s"
            assert await conn.fetchval("SELECT 1", timeout=5) == 1
        finally:
            await conn.close(timeout=5)

    asyncio.run(asyncio.wait_for(run(), 30))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        n = pg.su_psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' "
                       "AND state = 'active'").strip()
        if n == "0":
            break
        time.sleep(0.2)
    assert n == "0", "the backend kept running pg_sleep(10): the cancel never reached it"


def test_cancel_reports_57014_via_psql(doorman, doorman_config):
    """psql sends a CancelRequest on SIGINT; the pooler must route it to the right backend."""
    dm = doorman(doorman_config(pool_size=2))
    from harness import _client_env
    proc = subprocess.Popen(["psql", "-X", "-At", "-c", "SELECT pg_sleep(10)"], env=_client_env(dm.env(MD5_USER, MD5_PW)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        t0 = time.monotonic()
        proc.send_signal(2)
        out, err = proc.communicate(timeout=8)
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "canceling statement due to user request" in err, err


# ----------------------------------------------------------------------------- query_wait_timeout

def test_query_wait_timeout_when_pool_exhausted(doorman, doorman_config):
    dm = doorman(doorman_config(pool_size=1, query_wait_timeout="1500ms"))
    with pconnect(dm, autocommit=False) as holder:
        holder.execute("SELECT 1")  # BEGIN ... holds the only server
        with pconnect(dm) as waiter:
            t0 = time.monotonic()
            with pytest.raises(psycopg.Error) as ei:
                waiter.execute("SELECT 1")
            elapsed = time.monotonic() - t0
        msg = str(ei.value)
        assert re.search(r"wait.*timeout|timeout.*wait", msg, re.I | re.S), msg
        assert 1.0 <= elapsed < 5.0, f"failed after {elapsed:.2f}s, expected about 1.5 s"
        holder.rollback()
    # once the holder is gone the pool serves again
    with pconnect(dm) as conn:
        assert one(conn, "SELECT 1") == 1


# ----------------------------------------------------------------------------- dirty servers

def test_client_killed_mid_transaction_leaves_clean_server(doorman, doorman_config, pg):
    table = uniq("killed_tx")
    make_table(pg, table)
    dm = doorman(doorman_config(pool_size=1))
    from harness import _client_env
    proc = subprocess.Popen(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1"],
                            env=_client_env(dm.env(MD5_USER, MD5_PW)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(f"BEGIN;\nINSERT INTO {table} VALUES (42);\nSELECT 'inserted';\n")
        proc.stdin.flush()
        # wait until PostgreSQL shows our backend idle in transaction with the insert done
        deadline = time.monotonic() + 15
        state = ""
        while time.monotonic() < deadline:
            state = pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{MD5_USER}' "
                               f"AND state = 'idle in transaction' AND query LIKE '%inserted%'").strip()
            if state == "1":
                break
            time.sleep(0.1)
        assert state == "1", "psql never reached 'idle in transaction'"
        proc.kill()  # abrupt: no Terminate, no ROLLBACK from the client
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    with pconnect(dm) as conn:
        row = conn.execute("SELECT pg_current_xact_id_if_assigned() IS NULL, now() = statement_timestamp(), "
                           "(SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                           f" AND usename = '{MD5_USER}')").fetchone()
        assert row[0] is True, "the reused server still had a transaction with an xid"
        assert row[1] is True, "the reused server was inside an old transaction"
        assert row[2] == 0, "a backend of ours is still idle in transaction"
        assert one(conn, f"SELECT count(*) FROM {table}") == 0, "the uncommitted row became visible"
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert one(conn, f"SELECT count(*) FROM {table}") == 1


def test_client_socket_dropped_mid_result_leaves_clean_server(doorman, doorman_config):
    """The client vanishes while a large result (~200 MB) is still streaming; the pool must get its server back
    (drained or discarded) and the next client must neither wait forever nor read the old rows."""
    dm = doorman(doorman_config(pool_size=1, query_wait_timeout="3s"))
    import socket
    conn = pconnect(dm)
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.pgconn.send_query(b"SELECT repeat('x', 1000) FROM generate_series(1, 200000)")
    conn.pgconn.flush()
    time.sleep(0.3)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    try:
        conn.close()
    except Exception:
        pass
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < 20:
        try:
            with pconnect(dm) as c2:
                assert one(c2, "SELECT 'fresh'") == "fresh"
                assert one(c2, "SELECT pg_current_xact_id_if_assigned() IS NULL") is True
            last = None
            break
        except psycopg.OperationalError as e:
            last = e
    assert last is None, f"no server for the next client {time.monotonic() - t0:.0f}s after the drop: {last}"


# ----------------------------------------------------------------------------- COPY

def test_copy_in_and_out_transaction_mode(doorman, doorman_config, pg):
    table = uniq("copy_t")
    make_table(pg, table, "id int, name text")
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=1))
    rows = [(i, f"name-{i}") for i in range(1000)]
    with pconnect(dm) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, name) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        assert one(conn, f"SELECT count(*) FROM {table}") == 1000
        with conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT id, name FROM {table} ORDER BY id) TO STDOUT") as cp:
                got = [tuple(r) for r in cp.rows()]
        assert [(int(a), b) for a, b in got] == rows
    # psql COPY FROM STDIN / TO STDOUT; pool_size 1 so the server must have been released after COPY
    env = dm.env(SCRAM_USER, SCRAM_PW)
    data = "".join(f"{i}\tpsql-{i}\n" for i in range(2000, 2100))
    rc, out, err = psql(["-v", "ON_ERROR_STOP=1", "-c", f"COPY {table} (id, name) FROM STDIN"], env=env,
                        input=data, timeout=30)
    assert rc == 0, err
    rc, out, err = psql(["-v", "ON_ERROR_STOP=1", "-c", f"COPY (SELECT id, name FROM {table} WHERE id >= 2000 "
                         "ORDER BY id) TO STDOUT"], env=env, timeout=30)
    assert rc == 0, err
    assert out == data
    # a failing COPY (bad data) must leave a usable server behind
    rc, out, err = psql(["-c", f"COPY {table} (id, name) FROM STDIN"], env=env, input="notanint\tx\n", timeout=30)
    assert rc != 0 and "invalid input syntax" in err, err
    with pconnect(dm) as conn:
        assert one(conn, f"SELECT count(*) FROM {table}") == 1100
        assert one(conn, "SELECT pg_current_xact_id_if_assigned() IS NULL") is True


# ----------------------------------------------------------------------------- max_connections

def test_max_connections_third_client_53300(doorman, doorman_config):
    dm = doorman(doorman_config(max_connections=2))
    c1 = pconnect(dm)
    c2 = pconnect(dm)
    try:
        assert one(c1, "SELECT 1") == 1 and one(c2, "SELECT 2") == 2
        with pytest.raises(psycopg.OperationalError) as ei:
            pconnect(dm).close()
        assert "too many clients" in str(ei.value), str(ei.value)
        state, msg = login_error(dm, MD5_USER, MD5_PW)
        assert state == "53300", msg
    finally:
        c1.close()
        c2.close()
    # the slots are freed on disconnect
    deadline = time.monotonic() + 5
    while True:
        try:
            with pconnect(dm) as c3:
                assert one(c3, "SELECT 3") == 3
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ----------------------------------------------------------------------------- PostgreSQL restart

@pytest.mark.slow
@pytest.mark.parametrize("workload", [
    "select",
    "set_then_select",
])
def test_postgres_restart_under_load_pooler_recovers(doorman, own_pg, workload):
    """`select`: each client runs SELECT pg_sleep(0.01) in a loop. `set_then_select`: each loop iteration also runs a
    session-level SET first (as many apps do), so the pooler resets servers (RESET ALL) at checkin."""
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin", "connect_timeout": "2s",
                    "query_wait_timeout": "3s"},
        "pools": {"example_db": {"server_host": own_pg.host, "server_port": own_pg.port, "pool_mode": "transaction",
                                 "users": [{"username": u, "password": own_pg.hashes[u], "pool_size": 4}
                                           for u in (MD5_USER, SCRAM_USER)]}},
    }
    dm = doorman(cfg)
    stop = threading.Event()
    lock = threading.Lock()
    events: list[tuple[float, str, bool, str]] = []  # (time, worker, ok, detail)

    def worker(name, user, pw):
        conn = None
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname="example_db",
                                           autocommit=True, connect_timeout=5, prepare_threshold=None)
                if workload == "set_then_select":
                    conn.execute("SET work_mem = '8MB'")
                conn.execute("SELECT pg_sleep(0.01)")
                with lock:
                    events.append((time.monotonic(), name, True, ""))
            except psycopg.Error as e:
                with lock:
                    events.append((time.monotonic(), name, False, f"{type(e).__name__}: {e}".strip()))
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",) + USERS[i % 2], daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        with lock:
            assert sum(1 for e in events if e[2]) > 0, events[-5:]
        t_stop = time.monotonic()
        cp = pg_ctl(own_pg, "stop", "-m", "fast", "-w", "-t", "60")
        assert cp.returncode == 0, cp.stderr
        time.sleep(2.0)  # a real outage
        cp = pg_ctl(own_pg, "start", "-w", "-t", "60", "-l", str(own_pg.dir / "postgres.log"))
        assert cp.returncode == 0, cp.stderr
        t_up = time.monotonic()
        # every worker must succeed again within a bounded time after PostgreSQL is back
        deadline = t_up + 20
        recovered: set[str] = set()
        while time.monotonic() < deadline and len(recovered) < len(threads):
            with lock:
                recovered = {e[1] for e in events if e[2] and e[0] > t_up + 0.5}
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    with lock:
        outage_errors = [e for e in events if not e[2] and t_stop <= e[0] <= t_up + 1]
        after = [e for e in events if e[0] > t_up + 0.5]
    assert outage_errors, "no client saw an error while PostgreSQL was down"
    assert recovered == {f"w{i}" for i in range(len(threads))}, (
        f"workers not recovered: {sorted({f'w{i}' for i in range(len(threads))} - recovered)}; "
        f"last events: {after[-10:]}")
    assert dm.alive()
    # brand-new clients work too
    for user, pw in USERS:
        rc, out, err = psql(["-At", "-c", "SELECT 'back'"], env=dm.env(user, pw), timeout=30)
        assert rc == 0 and out.strip() == "back", err


def keepalive_timer_seconds(dm) -> tuple[float, str]:
    """Connects, and returns the keepalive timer (seconds left) on the pooler's side of that connection."""
    with pconnect(dm) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
        # (Until the last bytes are acknowledged the socket shows its retransmit timer instead.)
        for _ in range(50):
            out = subprocess.run(["ss", "-tno", "state", "established", f"( sport = :{dm.port} )"],
                                 capture_output=True, text=True, timeout=10).stdout
            timers = re.findall(r"timer:\(keepalive,([^,)]+)", out)
            if timers:
                break
            time.sleep(0.1)
    assert timers, out
    # ss prints the time left as e.g. `4min59sec`, `14min`, `299sec` or `500ms`.
    left = timers[0]
    minutes = re.search(r"(\d+)min", left)
    secs = re.search(r"([\d.]+)sec", left)
    millis = re.search(r"([\d.]+)ms", left)
    seconds = (int(minutes.group(1)) * 60 if minutes else 0) + (float(secs.group(1)) if secs else 0) \
        + (float(millis.group(1)) / 1000 if millis else 0)
    assert minutes or secs or millis, out
    return seconds, out


def test_client_sockets_get_the_configured_keepalive(doorman, doorman_config):
    """tcp_keepalives_idle reaches accepted client sockets: the kernel's keepalive timer on the pooler's
    side of the connection (ss -o) counts down from the configured idle time."""
    dm = doorman(doorman_config(tcp_keepalives_idle=300, tcp_keepalives_interval=7, tcp_keepalives_count=3))
    seconds, out = keepalive_timer_seconds(dm)
    assert 200 < seconds <= 300, out


def test_reload_applies_new_keepalive_to_new_connections(doorman, doorman_config):
    """The options live on the listening socket (accepted sockets inherit them): SIGHUP with a new
    tcp_keepalives_idle changes the timer of connections accepted afterwards."""
    cfg = doorman_config(tcp_keepalives_idle=300)
    dm = doorman(cfg)
    seconds, out = keepalive_timer_seconds(dm)
    assert 200 < seconds <= 300, out
    cfg["general"]["tcp_keepalives_idle"] = 900
    dm.config_path.write_text(to_yaml(cfg))
    dm.proc.send_signal(signal.SIGHUP)
    for _ in range(100):
        if "tcp_keepalives_idle: 300 -> 900" in dm.log():
            break
        time.sleep(0.1)
    assert "tcp_keepalives_idle: 300 -> 900" in dm.log()
    seconds, out = keepalive_timer_seconds(dm)
    assert 800 < seconds <= 900, out
