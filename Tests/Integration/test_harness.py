"""Self-checks of the integration harness against direct PostgreSQL (no pooler involved).

If these fail, every pooler test would fail for reasons that have nothing to do with the pooler."""
import asyncio
import hashlib
import os
import signal
import socket
import sys
import textwrap

import asyncpg
import psycopg
import pytest

from harness import (AUTH_NAMES, auth_request, free_port, parse_pgbench, pgbench, psql, to_yaml,
                     wait_for_port)

BENCH_SCRIPT = "\\set aid random(1, 100000)\nSELECT :aid;\n"


# ----------------------------------------------------------------------------- the pg fixture

def test_pg_is_listening_on_loopback(pg):
    assert pg.host == "127.0.0.1"
    assert wait_for_port(pg.port, timeout=1)
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").exists()


def test_password_hashes_have_expected_formats(pg):
    md5 = pg.hashes[pg.md5_user]
    assert md5 == "md5" + hashlib.md5(b"md5pass" + pg.md5_user.encode()).hexdigest()
    scram = pg.hashes[pg.scram_user]
    assert scram.startswith("SCRAM-SHA-256$4096:"), scram
    assert "$" in scram and ":" in scram.split("$", 2)[2]


def test_server_asks_md5_for_md5_user_and_sasl_for_scram_user(pg):
    code, salt = auth_request(pg.host, pg.port, pg.md5_user)
    assert AUTH_NAMES[code] == "md5" and len(salt) == 4
    code, mechs = auth_request(pg.host, pg.port, pg.scram_user)
    assert AUTH_NAMES[code] == "sasl"
    assert b"SCRAM-SHA-256" in mechs


def test_superuser_over_unix_socket(pg):
    assert pg.su_psql("SELECT current_user").strip() == "postgres"
    assert int(pg.su_psql("SHOW max_connections")) >= 300
    assert pg.su_psql("SHOW fsync").strip() == "off"


def test_pgbench_tables_exist(pg):
    assert int(pg.su_psql("SELECT count(*) FROM pgbench_accounts", db="example_db")) == 100000


# ----------------------------------------------------------------------------- psql

@pytest.mark.parametrize("user", ["example_user_md5", "example_user_scram"])
def test_psql_direct(pg, user):
    rc, out, err = psql(["-At", "-c", "SELECT current_user, current_database()"], env=pg.env(user))
    assert rc == 0, err
    assert out.strip() == f"{user}|example_db"


@pytest.mark.parametrize("user", ["example_user_md5", "example_user_scram"])
def test_psql_direct_can_write(pg, user):
    sql = f"CREATE TEMP TABLE t(x int); INSERT INTO t VALUES (1); SELECT count(*) FROM t; " \
          f"SELECT count(*) FROM pgbench_branches"
    rc, out, err = psql(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql], env=pg.env(user))
    assert rc == 0, err


@pytest.mark.parametrize("user", ["example_user_md5", "example_user_scram"])
def test_psql_wrong_password_is_rejected(pg, user):
    rc, out, err = psql(["-At", "-c", "SELECT 1"], env=pg.env(user, password="wrong"))
    assert rc != 0
    assert "password authentication failed" in err


# ----------------------------------------------------------------------------- drivers

@pytest.mark.parametrize("user", ["example_user_md5", "example_user_scram"])
def test_asyncpg_direct(pg, user):
    async def main():
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user=user, password=pg.password(user),
                                     database=pg.database, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_user") == user
            stmt = await conn.prepare("SELECT $1::int + $2::int")
            assert await stmt.fetchval(2, 3) == 5
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE a(x int)")
                await conn.executemany("INSERT INTO a VALUES ($1)", [(i,) for i in range(10)])
                assert await conn.fetchval("SELECT sum(x) FROM a") == 45
        finally:
            await conn.close()

    asyncio.run(main())


@pytest.mark.parametrize("user", ["example_user_md5", "example_user_scram"])
def test_psycopg_direct(pg, user):
    with psycopg.connect(pg.dsn(user), connect_timeout=10) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, %s::text", ("hello",))
            assert cur.fetchone() == (user, "hello")
            cur.execute("SELECT %s::int * 2", (21,), prepare=True)
            assert cur.fetchone() == (42,)
        conn.rollback()
    # pipeline mode is what modern drivers use through poolers
    with psycopg.connect(pg.dsn(user), connect_timeout=10) as conn:
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int", (i,)) for i in range(5)]
        assert [c.fetchone()[0] for c in curs] == list(range(5))


# ----------------------------------------------------------------------------- pgbench helper

@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_direct(pg, mode):
    res = pgbench(["-n", "-T", "1", "-c", "2", "-j", "1", "-M", mode], env=pg.env(pg.scram_user), script=BENCH_SCRIPT)
    assert res.rc == 0, res.stderr
    assert res.ok, res.stdout
    assert res.tps and res.tps > 0
    assert res.failed == 0


def test_pgbench_builtin_select_only_as_md5_user(pg):
    res = pgbench(["-S", "-T", "1", "-c", "1"], env=pg.env(pg.md5_user))
    assert res.ok, res.stdout + res.stderr


def test_parse_pgbench_report():
    sample = textwrap.dedent("""\
        transaction type: x.sql
        number of transactions actually processed: 1234
        number of failed transactions: 2 (0.162%)
        latency average = 0.811 ms
        initial connection time = 3.210 ms
        tps = 1233.456789 (without initial connection time)
        """)
    p = parse_pgbench(sample)
    assert p == {"tps": 1233.456789, "processed": 1234, "failed": 2, "latency_avg_ms": 0.811, "conn_time_ms": 3.21}


# ----------------------------------------------------------------------------- small helpers

def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_to_yaml_shape(pg):
    cfg = {"general": {"host": "127.0.0.1", "port": 6432, "flag": True},
           "pools": {"example_db": {"pool_mode": "transaction",
                                    "users": [{"username": "u", "password": "md5x", "pool_size": 40}]}}}
    assert to_yaml(cfg) == textwrap.dedent("""\
        general:
          host: "127.0.0.1"
          port: 6432
          flag: true
        pools:
          example_db:
            pool_mode: "transaction"
            users:
              - username: "u"
                password: "md5x"
                pool_size: 40
        """)


# ----------------------------------------------------------------------------- doorman factory
# Exercised with a stand-in binary (a tiny TCP listener) so the harness is checked before the
# pooler relays anything.

FAKE_POOLER = textwrap.dedent("""\
    import re, signal, socket, sys, time
    cfg = open(sys.argv[1]).read()
    port = int(re.search(r"^\\s+port:\\s*(\\d+)", cfg, re.M).group(1))
    if "ignore_term" in cfg:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("fake pooler args", sys.argv[2:], file=sys.stderr, flush=True)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen()
    print("listening on", port, file=sys.stderr, flush=True)
    while True:
        c, _ = s.accept(); c.close()
    """)


@pytest.fixture
def fake_pooler(tmp_dir, monkeypatch):
    script = tmp_dir / "fake_pooler.py"
    script.write_text(FAKE_POOLER)
    exe = tmp_dir / "fake_pooler"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PG_DOORMAN_BIN", str(exe))
    return exe


def test_doorman_factory_with_dict_config(fake_pooler, doorman, doorman_config, pg):
    cfg = doorman_config()
    dm = doorman(cfg)
    assert dm.alive() and wait_for_port(dm.port, timeout=1)
    assert dm.wait_for_log(r"fake pooler args \['-l', 'debug'\]")
    text = dm.config_path.read_text()
    assert pg.hashes[pg.scram_user] in text and f"server_port: {pg.port}" in text
    assert dm.stop() is not None
    assert not dm.alive()


def test_doorman_factory_with_text_config_and_sigkill_fallback(fake_pooler, doorman):
    dm = doorman("""
general:
  host: "127.0.0.1"
  port: ${DOORMAN_PORT}
  # ignore_term
pools:
  example_db:
    server_port: ${PG_PORT}
    users:
      - username: "${MD5_USER}"
        password: "${MD5_HASH}"
""")
    text = dm.config_path.read_text()
    assert "${" not in text and "md5" in text
    rc = dm.stop(timeout=1)
    assert rc == -signal.SIGKILL


def test_doorman_factory_reports_early_exit(tmp_dir, monkeypatch, doorman):
    exe = tmp_dir / "failing"
    exe.write_text("#!/bin/sh\necho 'config error: boom' >&2\nexit 78\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PG_DOORMAN_BIN", str(exe))
    with pytest.raises(RuntimeError, match=r"exited with code 78(.|\n)*config error: boom"):
        doorman({"general": {}, "pools": {}})
