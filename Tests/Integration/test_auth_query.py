"""Issue 20: auth_query — users that exist only in PostgreSQL, with dynamic pools.

Every test logs in as roles that are not listed in the pooler's config. The executor reads their
passwords through the SECURITY DEFINER function of the README's snippet (run here exactly as printed
there), as a role that is not a superuser."""
from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from harness import PgInstance, pgbench, psql
from test_admin_console import admin_rows
from test_pg_restart_waiters import pg_start, pg_stop

README = Path(__file__).resolve().parents[2] / "README.md"
AUTH_ROLE, AUTH_PW = "doorman_auth", "change-me"
QUERY = "SELECT usename, passwd FROM doorman.get_auth($1)"
MD5_ROLE, MD5_ROLE_PW = "aq_md5", "aq-md5-pass"
SCRAM_ROLE, SCRAM_ROLE_PW = "aq_scram", "aq-scram-pass"


def readme_sql() -> str:
    m = re.search(r"<!-- auth-query-sql -->\s*```sql\n(.*?)```\s*<!-- /auth-query-sql -->", README.read_text(), re.S)
    assert m, "README.md lost its auth_query SQL snippet"
    return m.group(1)


def prepare(pg: PgInstance) -> None:
    """The README's snippet (once per cluster: the role is cluster-wide, the function per database),
    and the test roles: one MD5-stored, one SCRAM-stored, allowed to run pgbench -S."""
    if pg.su_psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{AUTH_ROLE}'").strip() == "0":
        pg.su_psql(readme_sql(), db=pg.database)
    for role, pw, enc in ((MD5_ROLE, MD5_ROLE_PW, "md5"), (SCRAM_ROLE, SCRAM_ROLE_PW, "scram-sha-256")):
        pg.su_psql(f"SET password_encryption = '{enc}'; DROP ROLE IF EXISTS {role}; "
                   f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'")
    pg.su_psql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MD5_ROLE}, {SCRAM_ROLE}", db=pg.database)


@pytest.fixture(scope="module")
def aq_pg(pg):
    prepare(pg)
    return pg


def auth_query(**over) -> dict:
    aq = {"query": QUERY, "user": AUTH_ROLE, "password": AUTH_PW, "pool_size": 4}
    aq.update(over)
    return aq


def config(pg: PgInstance, aq: dict | None = None, users: list | None = None, **general) -> dict:
    pool = {"server_host": pg.host, "server_port": pg.port, "pool_mode": "transaction", "users": users or []}
    if aq is not None:
        pool["auth_query"] = aq
    return {"general": {"admin_username": "admin", "admin_password": "admin", **general},
            "pools": {"example_db": pool}}


def connect(dm, user, pw, **kw):
    return psycopg.connect(host=dm.host, port=dm.port, user=user, password=pw, dbname="example_db",
                           autocommit=True, connect_timeout=10, prepare_threshold=None, **kw)


class LoginError(Exception):
    def __init__(self, sqlstate: str, message: str):
        super().__init__(f"{sqlstate} {message}")
        self.sqlstate = sqlstate


def login_error(dm, user, pw) -> LoginError:
    """A login that must fail, with its SQLSTATE (asyncpg reports it for a FATAL at login; libpq does not)."""
    async def attempt():
        conn = await asyncpg.connect(host=dm.host, port=dm.port, user=user, password=pw, database="example_db",
                                     timeout=15)
        await conn.close()
    try:
        asyncio.run(attempt())
    except asyncpg.PostgresError as e:
        return LoginError(e.sqlstate, str(e))
    raise AssertionError(f"login of {user} succeeded")


def aq_row(dm) -> dict:
    rows = admin_rows(dm, "SHOW AUTH_QUERY")
    assert len(rows) == 1, rows
    return {k: (int(v) if v.isdigit() else v) for k, v in rows[0].items()}


def pool_users(dm) -> set[str]:
    return {r["user"] for r in admin_rows(dm, "SHOW POOLS") if r["database"] == "example_db"}


def test_passthrough_md5_and_scram_with_psql_and_asyncpg(doorman, aq_pg):
    dm = doorman(config(aq_pg, auth_query()))
    for role, pw in ((MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)):
        rc, out, err = psql(["-At", "-c", "SELECT current_user"], env=dm.env(role, pw))
        assert rc == 0 and out.strip() == role, err

    async def run():
        conn = await asyncpg.connect(host=dm.host, port=dm.port, user=SCRAM_ROLE, password=SCRAM_ROLE_PW,
                                     database="example_db")
        try:
            for i in range(20):  # asyncpg's statement cache: named statements in transaction mode
                assert await conn.fetchval("SELECT $1::int + 1", i) == i + 1
            return await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()
    assert asyncio.run(run()) == SCRAM_ROLE

    # Both dynamic pools are in the admin views; the executor is not a superuser.
    assert {MD5_ROLE, SCRAM_ROLE} <= pool_users(dm)
    assert {MD5_ROLE, SCRAM_ROLE} <= {r["name"] for r in admin_rows(dm, "SHOW USERS")}
    assert aq_pg.su_psql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{AUTH_ROLE}'").strip() == "f"
    row = aq_row(dm)
    assert row["database"] == "example_db"
    assert row["dynamic_pools_current"] == 2 and row["dynamic_pools_created"] == 2
    assert row["auth_success"] >= 3 and row["auth_failure"] == 0
    assert row["cache_misses"] == 2 and row["cache_hits"] >= 1 and row["executor_queries"] == 2


@pytest.mark.parametrize("role,pw", [(MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)])
def test_pgbench_prepared_more_clients_than_pool_size(doorman, aq_pg, role, pw):
    dm = doorman(config(aq_pg, auth_query(pool_size=3)))
    r = pgbench(["-n", "-S", "-M", "prepared", "-c", "10", "-j", "2", "-T", "5"], env=dm.env(role, pw))
    assert r.ok, r.stdout + r.stderr
    print(f"pgbench {role}: tps={r.tps} processed={r.processed} failed={r.failed}")
    servers = [s for s in admin_rows(dm, "SHOW SERVERS") if s["user"] == role]
    assert 0 < len(servers) <= 3


def test_dedicated_mode_uses_server_user(doorman, aq_pg):
    dm = doorman(config(aq_pg, auth_query(server_user=aq_pg.md5_user, server_password="md5pass")))
    for role, pw in ((MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)):
        with connect(dm, role, pw) as c:
            assert c.execute("SELECT current_user").fetchone()[0] == aq_pg.md5_user
    assert aq_row(dm)["dynamic_pools_current"] == 1
    assert aq_pg.md5_user in pool_users(dm)
    r = pgbench(["-n", "-S", "-M", "prepared", "-c", "8", "-j", "2", "-T", "3"], env=dm.env(MD5_ROLE, MD5_ROLE_PW))
    assert r.ok, r.stdout + r.stderr


def test_wrong_password_and_unknown_user_get_28P01_after_an_exchange(doorman, aq_pg):
    from harness import auth_request
    dm = doorman(config(aq_pg, auth_query()))
    for user, pw in ((MD5_ROLE, "wrong"), (SCRAM_ROLE, "wrong"), ("aq_nobody", "whatever")):
        e = login_error(dm, user, pw)
        assert e.sqlstate == "28P01", e
        assert f'password authentication failed for user "{user}"' in str(e)
    # The unknown user is challenged like a real one (no hint that it does not exist).
    code, _ = auth_request(dm.host, dm.port, "aq_nobody")
    assert code in (5, 10)
    # A superuser is not returned by the snippet's function: refused the same way.
    assert login_error(dm, "postgres", "postgres").sqlstate == "28P01"
    row = aq_row(dm)
    assert row["auth_failure"] >= 4 and row["auth_success"] == 0
    # Negative cache: the unknown user was looked up once, then answered from the cache.
    assert row["cache_hits"] >= 1
    assert row["dynamic_pools_current"] == 0


def test_negative_cache_and_refetch_counters(doorman, aq_pg):
    dm = doorman(config(aq_pg, auth_query(cache_failure_ttl="1s", min_interval="0ms")))
    for _ in range(3):
        login_error(dm, "aq_ghost", "x")
    row = aq_row(dm)
    assert row["cache_misses"] == 1 and row["cache_hits"] == 2 and row["executor_queries"] == 1
    time.sleep(1.2)
    login_error(dm, "aq_ghost", "x")
    assert aq_row(dm)["cache_misses"] == 2


@pytest.mark.parametrize("enc", ["md5", "scram-sha-256"])
def test_password_changed_in_postgres(doorman, aq_pg, enc):
    role = f"aq_change_{enc[:3]}"
    aq_pg.su_psql(f"SET password_encryption = '{enc}'; DROP ROLE IF EXISTS {role}; "
                  f"CREATE ROLE {role} LOGIN PASSWORD 'old-pass'")
    dm = doorman(config(aq_pg, auth_query(min_interval="200ms")))
    with connect(dm, role, "old-pass") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == role
    aq_pg.su_psql(f"SET password_encryption = '{enc}'; ALTER ROLE {role} PASSWORD 'new-pass'")
    time.sleep(0.3)
    if enc == "md5":
        # MD5: the mismatch refetches and checks the same response again: the first try works.
        with connect(dm, role, "new-pass") as c:
            assert c.execute("SELECT current_user").fetchone()[0] == role
        assert aq_row(dm)["cache_refetches"] >= 1
    else:
        # SCRAM cannot re-challenge within one exchange: the mismatch makes the entry stale, and the
        # next login (after min_interval) uses the new verifier.
        try:
            connect(dm, role, "new-pass").close()
        except psycopg.OperationalError as e:
            assert "password authentication failed" in str(e)
        time.sleep(0.3)
        with connect(dm, role, "new-pass") as c:
            assert c.execute("SELECT current_user").fetchone()[0] == role
    time.sleep(0.3)
    assert login_error(dm, role, "old-pass").sqlstate == "28P01"
    time.sleep(0.3)
    with connect(dm, role, "new-pass") as c:  # and the new one keeps working (its pool was replaced)
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_static_user_wins_over_auth_query(doorman, aq_pg):
    users = [{"username": MD5_ROLE, "password": "static-secret", "pool_size": 2,
              "server_username": aq_pg.md5_user, "server_password": "md5pass"}]
    dm = doorman(config(aq_pg, auth_query(), users=users))
    with connect(dm, MD5_ROLE, "static-secret") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == aq_pg.md5_user
    assert login_error(dm, MD5_ROLE, MD5_ROLE_PW).sqlstate == "28P01"
    assert aq_row(dm)["executor_queries"] == 0


def test_gc_removes_unused_dynamic_pools_but_not_paused_ones(doorman, aq_pg):
    dm = doorman(config(aq_pg, auth_query(dynamic_pool_gc_delay="1s"), idle_timeout="1s", retain_connections_time="1s"))
    with connect(dm, MD5_ROLE, MD5_ROLE_PW) as c:
        c.execute("SELECT 1")
    with connect(dm, SCRAM_ROLE, SCRAM_ROLE_PW) as c:
        c.execute("SELECT 1")
    assert aq_row(dm)["dynamic_pools_current"] == 2
    # PAUSE: kept however long it stays unused.
    rc, _, _, err = admin_psql(dm, "PAUSE example_db")
    assert rc == 0, err
    time.sleep(4)
    assert aq_row(dm)["dynamic_pools_current"] == 2
    assert {MD5_ROLE, SCRAM_ROLE} <= pool_users(dm)
    rc, _, _, err = admin_psql(dm, "RESUME example_db")
    assert rc == 0, err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and aq_row(dm)["dynamic_pools_current"] != 0:
        time.sleep(0.3)
    row = aq_row(dm)
    assert row["dynamic_pools_current"] == 0 and row["dynamic_pools_destroyed"] == 2, row
    assert not {MD5_ROLE, SCRAM_ROLE} & pool_users(dm)
    # A new login brings the pool back.
    with connect(dm, MD5_ROLE, MD5_ROLE_PW) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    assert aq_row(dm)["dynamic_pools_created"] == 3


def admin_psql(dm, sql):
    from test_admin_console import admin_psql as run
    return run(dm, sql)


def test_reload_adds_keeps_and_removes_auth_query(doorman, aq_pg):
    cfg = config(aq_pg, None, users=[{"username": aq_pg.md5_user, "password": aq_pg.hashes[aq_pg.md5_user],
                                      "pool_size": 2}])
    dm = doorman(cfg)
    cfg["general"].update(host=dm.host, port=dm.port)

    def reload(new_cfg):
        from harness import to_yaml
        dm.config_path.write_text(to_yaml(new_cfg))
        rc, _, _, err = admin_psql(dm, "RELOAD")
        assert rc == 0, err

    assert login_error(dm, MD5_ROLE, MD5_ROLE_PW).sqlstate == "28P01"
    assert admin_rows(dm, "SHOW AUTH_QUERY") == []
    cfg["pools"]["example_db"]["auth_query"] = auth_query()
    reload(cfg)
    c = connect(dm, MD5_ROLE, MD5_ROLE_PW)
    assert c.execute("SELECT current_user").fetchone()[0] == MD5_ROLE
    # A RELOAD that leaves auth_query alone keeps the cache and the dynamic pool (and its client).
    cfg["general"]["log_client_connections"] = True
    reload(cfg)
    assert c.execute("SELECT 2").fetchone()[0] == 2
    row = aq_row(dm)
    assert row["dynamic_pools_created"] == 1 and row["dynamic_pools_current"] == 1 and row["cache_entries"] == 1
    with connect(dm, MD5_ROLE, MD5_ROLE_PW) as c2:
        c2.execute("SELECT 1")
    assert aq_row(dm)["executor_queries"] == 1
    c.close()
    del cfg["pools"]["example_db"]["auth_query"]
    reload(cfg)
    assert admin_rows(dm, "SHOW AUTH_QUERY") == []
    assert MD5_ROLE not in pool_users(dm)
    assert login_error(dm, MD5_ROLE, MD5_ROLE_PW).sqlstate == "28P01"
    with connect(dm, aq_pg.md5_user, "md5pass") as c:  # the listed user is untouched
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_metrics_carry_dynamic_pools_and_auth_query_counters(doorman, aq_pg):
    import urllib.request
    from harness import free_port
    web_port = free_port()
    cfg = config(aq_pg, auth_query())
    cfg["web"] = {"enabled": True, "host": "127.0.0.1", "port": web_port}
    dm = doorman(cfg)
    with connect(dm, SCRAM_ROLE, SCRAM_ROLE_PW) as c:
        c.execute("SELECT 1")
        text = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5).read().decode()
    assert f'user="{SCRAM_ROLE}"' in text
    assert re.search(r'pg_doorman_auth_query_dynamic_pools\{type="current",database="example_db"\} 1', text), text
    assert re.search(r'pg_doorman_auth_query_auth\{result="success",database="example_db"\} 1', text)


def test_postgres_down_prompt_error_and_restart_under_load(doorman, own_pg):
    prepare(own_pg)
    dm = doorman(config(own_pg, auth_query(pool_size=3), connect_timeout="2s", query_wait_timeout="15s"))
    stop, lock, results = threading.Event(), threading.Lock(), {"ok": 0, "errors": []}

    def worker(role, pw):
        while not stop.is_set():
            try:
                with connect(dm, role, pw) as c:
                    for _ in range(20):
                        c.execute("SELECT 1")
                with lock:
                    results["ok"] += 1
            except psycopg.Error as e:
                with lock:
                    results["errors"].append(f"{getattr(e, 'sqlstate', None)} {e}")
                time.sleep(0.1)

    threads = [threading.Thread(target=worker, args=(r, p), daemon=True)
               for r, p in ((MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)) * 3]
    for t in threads:
        t.start()
    time.sleep(2)
    pg_stop(own_pg)
    # A login that needs a lookup while PostgreSQL is down: a clear error, quickly (not a hang).
    t0 = time.monotonic()
    e = login_error(dm, "aq_uncached", "x")
    waited = time.monotonic() - t0
    assert e.sqlstate == "3D000" and "temporarily unavailable" in str(e), e
    assert waited < 6, waited
    time.sleep(1)
    pg_start(own_pg)
    time.sleep(4)
    with lock:
        ok_before = results["ok"]
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(30)
    assert results["ok"] > ok_before, results  # logins and queries flow again by themselves
    # After the restart, both users log in and query (the executor reconnected by itself).
    for role, pw in ((MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)):
        with connect(dm, role, pw) as c:
            assert c.execute("SELECT current_user").fetchone()[0] == role
    assert dm.alive()


def test_pg_hba_applies_to_auth_query_users(doorman, aq_pg):
    """pg_hba decides for users found by auth_query as for listed ones: reject refuses before any
    lookup-based exchange succeeds, trust lets a found user in without a password (an unknown one is
    still refused), scram-sha-256 runs SCRAM (an MD5-stored user cannot pass it)."""
    hba = (f"host all {MD5_ROLE} 127.0.0.1/32 reject\n"
           f"host all aq_trusted 127.0.0.1/32 trust\n"
           f"host all all 127.0.0.1/32 scram-sha-256\n")
    aq_pg.su_psql("SET password_encryption = 'md5'; DROP ROLE IF EXISTS aq_md5_b; "
                  "CREATE ROLE aq_md5_b LOGIN PASSWORD 'b-pass'")
    # MD5-stored: with trust there is no client proof, so only pass-the-hash can log in to PostgreSQL.
    aq_pg.su_psql("SET password_encryption = 'md5'; DROP ROLE IF EXISTS aq_trusted; "
                  "CREATE ROLE aq_trusted LOGIN PASSWORD 'trusted-pass'")
    dm = doorman(config(aq_pg, auth_query(), pg_hba=hba))
    assert login_error(dm, MD5_ROLE, MD5_ROLE_PW).sqlstate == "28000"
    with connect(dm, SCRAM_ROLE, SCRAM_ROLE_PW) as c:
        assert c.execute("SELECT current_user").fetchone()[0] == SCRAM_ROLE
    assert login_error(dm, "aq_md5_b", "b-pass").sqlstate == "28P01"
    with connect(dm, "aq_trusted", "anything") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "aq_trusted"
    from harness import auth_request
    assert auth_request(dm.host, dm.port, SCRAM_ROLE)[0] == 10


def test_startup_parameters_column_and_hostile_rows(doorman, aq_pg):
    """The row's startup_parameters (JSON) reach the user's server connections and SHOW
    STARTUP_PARAMETERS (source auth_query); invalid JSON or several rows fail the login (28P01) with
    the reason in the log only."""
    query = ("SELECT passwd, CASE WHEN usename = 'aq_md5' THEN '{\"work_mem\": \"3MB\"}' ELSE '{bad' END "
             "AS startup_parameters FROM doorman.get_auth($1) "
             "UNION ALL SELECT passwd, NULL FROM doorman.get_auth($1) WHERE usename = 'aq_scram'")
    dm = doorman(config(aq_pg, auth_query(query=query)))
    with connect(dm, MD5_ROLE, MD5_ROLE_PW) as c:
        assert c.execute("SHOW work_mem").fetchone()[0] == "3MB"
    rows = [r for r in admin_rows(dm, "SHOW STARTUP_PARAMETERS") if r["user"] == MD5_ROLE]
    assert [(r["parameter"], r["value"], r["source"]) for r in rows] == [("work_mem", "3MB", "auth_query")]
    e = login_error(dm, SCRAM_ROLE, SCRAM_ROLE_PW)  # two rows
    assert e.sqlstate == "28P01"
    assert dm.wait_for_log(r"unusable row for user \"aq_scram\": auth_query returned 2 rows")
    aq_pg.su_psql("SET password_encryption = 'md5'; DROP ROLE IF EXISTS aq_badjson; "
                  "CREATE ROLE aq_badjson LOGIN PASSWORD 'j-pass'")
    assert login_error(dm, "aq_badjson", "j-pass").sqlstate == "28P01"
    assert dm.wait_for_log(r"unusable row for user \"aq_badjson\": startup_parameters")
    assert aq_row(dm)["executor_errors"] == 2


def test_generate_auth_query_user_config_serves_unlisted_users(doorman, aq_pg, tmp_dir):
    """`pg_doorman generate --auth-query-user doorman_auth` writes auth_query blocks instead of users;
    with the README's snippet in place the config works as written (its placeholder password is the
    snippet's)."""
    from test_generate import run, su_args
    out = Path(tmp_dir) / "generated.yaml"
    cp = run(["generate", *su_args(aq_pg), "--auth-query-user", AUTH_ROLE, "--no-comments", "-o", str(out)])
    assert cp.returncode == 0, cp.stderr
    text = out.read_text()
    assert "auth_query:" in text and "doorman.get_auth($1)" in text and MD5_ROLE not in text
    assert run(["-t", str(out)]).returncode == 0
    text = re.sub(r"(?m)^(\s*)port: 6432$", r"\1port: ${DOORMAN_PORT}", text)
    dm = doorman(text)
    for role, pw in ((MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)):
        with connect(dm, role, pw) as c:
            assert c.execute("SELECT current_user").fetchone()[0] == role
    # The executor keeps to its `workers` (2) connections.
    n = aq_pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{AUTH_ROLE}'").strip()
    assert 1 <= int(n) <= 2


def test_a_dynamic_pool_created_during_pause_starts_paused(doorman, aq_pg):
    """PAUSE example_db, then a user found by auth_query logs in: its new pool is paused too, so its
    login (which needs the pool's first server) waits until RESUME, as for a listed user."""
    users = [{"username": aq_pg.md5_user, "password": aq_pg.hashes[aq_pg.md5_user], "pool_size": 1}]
    dm = doorman(config(aq_pg, auth_query(), users=users, query_wait_timeout="20s"))
    rc, _, _, err = admin_psql(dm, "PAUSE example_db")
    assert rc == 0, err
    done = []

    def client():
        with connect(dm, MD5_ROLE, MD5_ROLE_PW) as c:
            done.append(c.execute("SELECT 5").fetchone()[0])
    t = threading.Thread(target=client, daemon=True)
    t.start()
    time.sleep(1.5)
    pools = {r["user"]: r for r in admin_rows(dm, "SHOW POOLS")}
    assert pools[MD5_ROLE]["paused"] == "1"
    assert done == []
    rc, _, _, err = admin_psql(dm, "RESUME example_db")
    assert rc == 0, err
    t.join(15)
    assert done == [5]


def test_reconnecting_clients_leave_no_lease_behind(doorman, aq_pg):
    """pgbench -C (a new login per transaction) as two dynamic users: no failure, and once they are
    gone the pools are collected (every login's place in its pool was given back)."""
    dm = doorman(config(aq_pg, auth_query(pool_size=2, dynamic_pool_gc_delay="1s"), idle_timeout="1s", retain_connections_time="1s"))
    for role, pw in ((MD5_ROLE, MD5_ROLE_PW), (SCRAM_ROLE, SCRAM_ROLE_PW)):
        r = pgbench(["-n", "-S", "-C", "-c", "6", "-j", "2", "-T", "3"], env=dm.env(role, pw))
        assert r.ok, r.stdout + r.stderr
        print(f"pgbench -C {role}: tps={r.tps} processed={r.processed} failed={r.failed}")
    row = aq_row(dm)
    assert row["auth_failure"] == 0 and row["auth_success"] >= 20 and row["executor_queries"] == 2, row
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and aq_row(dm)["dynamic_pools_current"] != 0:
        time.sleep(0.3)
    assert aq_row(dm)["dynamic_pools_destroyed"] == 2


def test_a_lookup_that_hangs_times_out(doorman, aq_pg):
    """A query that does not answer: the login fails within query_wait_timeout with a clear error, and
    the stuck executor connection is closed, not reused."""
    slow = "SELECT passwd FROM doorman.get_auth($1), pg_sleep(CASE WHEN $1 = 'aq_md5' THEN 30 ELSE 0 END)"
    dm = doorman(config(aq_pg, auth_query(query=slow, workers=1), query_wait_timeout="2s"))
    t0 = time.monotonic()
    e = login_error(dm, MD5_ROLE, MD5_ROLE_PW)
    assert e.sqlstate == "3D000" and "temporarily unavailable" in str(e), e
    assert time.monotonic() - t0 < 8
    assert dm.wait_for_log(r"did not answer within 2000 ms")
    with connect(dm, SCRAM_ROLE, SCRAM_ROLE_PW) as c:  # the executor's one worker was replaced
        assert c.execute("SELECT 1").fetchone()[0] == 1
    assert aq_row(dm)["executor_errors"] == 1


def test_binary_upgrade_keeps_dynamic_users_on_the_old_process(doorman, aq_pg, reap):
    """Live migration moves only sessions whose pool the new process has: a dynamic user's idle session
    is refused by it and finishes on the old process, working; new logins go to the new process."""
    import signal
    from test_live_migration import alive, new_pid, wait_until
    cfg = config(aq_pg, auth_query(), users=[{"username": aq_pg.md5_user, "password": aq_pg.hashes[aq_pg.md5_user],
                                              "pool_size": 2}], shutdown_timeout=60000)
    dm = doorman(cfg, args=("-l", "info"))
    old = dm.pid
    c = connect(dm, MD5_ROLE, MD5_ROLE_PW)
    assert c.execute("SELECT 1").fetchone()[0] == 1
    dm.signal(signal.SIGUSR2)
    reap.append(new_pid(dm))
    time.sleep(1.5)
    assert alive(old)  # it still serves the dynamic user's session
    assert c.execute("SELECT current_user").fetchone()[0] == MD5_ROLE
    with connect(dm, SCRAM_ROLE, SCRAM_ROLE_PW) as c2:  # a new login: the new process
        assert c2.execute("SELECT current_user").fetchone()[0] == SCRAM_ROLE
    c.close()
    assert wait_until(lambda: not alive(old), 15), dm.log()


