"""Backend authentication modes other than passthrough, plaintext client passwords, the Unix socket
listener, min_pool_size pre-warming, and idle_timeout — against the real PostgreSQL through the real binary."""
from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest

from harness import make_tmp_dir, psql, rmtree_quiet, to_yaml

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"


def connect(dm, user, pw, host=None, db="example_db"):
    return psycopg.connect(host=host or dm.host, port=dm.port, user=user, password=pw, dbname=db,
                           autocommit=True, connect_timeout=10, prepare_threshold=None)


def backends(pg, user):
    return int(pg.su_psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'").strip())


@pytest.mark.parametrize("backend_user,backend_pw", [(MD5_USER, MD5_PW), (SCRAM_USER, SCRAM_PW)])
def test_server_username_and_password_with_plaintext_client_password(doorman, pg, backend_user, backend_pw):
    """A client-facing user `app` with a plaintext password (the pooler derives a SCRAM verifier) mapped to a
    different PostgreSQL role with explicit credentials: MD5 and full SCRAM towards the server."""
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin"},
        "pools": {"example_db": {"pool_mode": "transaction", "users": [
            {"username": "app", "password": "apppass", "pool_size": 2,
             "server_username": backend_user, "server_password": backend_pw},
        ]}},
    }
    dm = doorman(cfg)
    with connect(dm, "app", "apppass") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == backend_user
    with pytest.raises(psycopg.OperationalError):
        connect(dm, "app", "wrong")


def test_reload_changes_a_plaintext_client_password(doorman, pg):
    """The SCRAM verifier derived from a plaintext password belongs to its pool: after RELOAD with a new
    password (possibly in rebuilt pools) the new one works and the old one is refused, repeatedly."""
    def config(password):
        return {
            "general": {"admin_username": "admin", "admin_password": "admin"},
            "pools": {"example_db": {"server_host": pg.host, "server_port": pg.port, "users": [
                {"username": "app", "password": password, "pool_size": 2,
                 "server_username": SCRAM_USER, "server_password": SCRAM_PW},
            ]}},
        }
    cfg = config("first-secret")
    dm = doorman(cfg)
    cfg["general"].update(host=dm.host, port=dm.port)
    with connect(dm, "app", "first-secret") as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    for old, new in [("first-secret", "second-secret"), ("second-secret", "first-secret"),
                     ("first-secret", "third-secret")]:
        cfg["pools"]["example_db"]["users"][0]["password"] = new
        dm.config_path.write_text(to_yaml(cfg))
        rc, _, err = psql(["-h", dm.host, "-p", str(dm.port), "-At", "-c", "RELOAD"],
                          env={"PGUSER": "admin", "PGPASSWORD": "admin", "PGDATABASE": "pgdoorman"})
        assert rc == 0, err
        with connect(dm, "app", new) as c:
            assert c.execute("SELECT 1").fetchone()[0] == 1
        with pytest.raises(psycopg.OperationalError):
            connect(dm, "app", old)


def test_wrong_server_password_is_reported_to_the_client(doorman, pg):
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin"},
        "pools": {"example_db": {"users": [
            {"username": "app", "password": "apppass", "pool_size": 2,
             "server_username": SCRAM_USER, "server_password": "not-the-password"},
        ]}},
    }
    dm = doorman(cfg)
    with pytest.raises(psycopg.OperationalError) as e:
        connect(dm, "app", "apppass")
    assert "password authentication failed" in str(e.value)


def test_plaintext_password_in_config_used_for_both_sides(doorman, pg):
    """users[].password in plaintext: clients authenticate with SCRAM against a derived verifier, and the pooler
    uses the same password towards PostgreSQL."""
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin"},
        "pools": {"example_db": {"users": [{"username": SCRAM_USER, "password": SCRAM_PW, "pool_size": 2}]}},
    }
    dm = doorman(cfg)
    with connect(dm, SCRAM_USER, SCRAM_PW) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_unix_socket_listener(doorman, doorman_config, pg):
    d = make_tmp_dir("pgdm-sock-")
    try:
        cfg = doorman_config(unix_socket_dir=str(d), unix_socket_mode="0777")
        dm = doorman(cfg)
        sock = d / f".s.PGSQL.{dm.port}"
        for _ in range(50):
            if sock.exists():
                break
            time.sleep(0.1)
        assert sock.exists()
        assert oct(os.stat(sock).st_mode & 0o777) == "0o777"
        rc, out, err = psql(["-h", str(d), "-p", str(dm.port), "-At", "-c", "SELECT current_user"],
                            env={"PGUSER": MD5_USER, "PGPASSWORD": MD5_PW, "PGDATABASE": "example_db"})
        assert rc == 0, err
        assert out.strip() == MD5_USER
    finally:
        rmtree_quiet(d)


def test_min_pool_size_prewarms_and_idle_timeout_closes(doorman, pg):
    """min_pool_size opens servers before any client (MD5 pass-the-hash needs no client login); servers above the
    minimum are closed after idle_timeout."""
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin", "idle_timeout": "1s",
                    "retain_connections_time": "1s"},
        "pools": {"example_db": {"application_name": "prewarm_test", "users": [
            {"username": MD5_USER, "password": pg.hashes[MD5_USER], "pool_size": 6, "min_pool_size": 2},
        ]}},
    }
    dm = doorman(cfg)

    def count():
        return int(pg.su_psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'prewarm_test'").strip())

    deadline = time.time() + 10
    while time.time() < deadline and count() < 2:
        time.sleep(0.2)
    assert count() == 2
    # Use more servers than the minimum at once, then watch them shrink back.
    conns = [connect(dm, MD5_USER, MD5_PW) for _ in range(4)]
    for c in conns:
        c.execute("BEGIN")
        c.execute("SELECT 1")
    assert count() >= 4
    for c in conns:
        c.execute("COMMIT")
        c.close()
    deadline = time.time() + 10
    while time.time() < deadline and count() > 2:
        time.sleep(0.3)
    assert count() == 2


def test_jwt_user_is_refused_and_inert_settings_are_logged(doorman, pg):
    """JWT authentication is not implemented: a `jwt-pkey-fpath:` password names a key file, it is not a
    password, so presenting the path as the password must not log in. The settings this build ignores
    (here the JWT password) are named in warnings at start; auth_query and the reserve pool, implemented, are not."""
    d = make_tmp_dir("pgdm-jwt-")
    key = d / "jwt.pem"
    subprocess.run(f"openssl genrsa 2048 2>/dev/null | openssl rsa -pubout -out {key} 2>/dev/null",
                   shell=True, check=True)
    key_ref = f"jwt-pkey-fpath:{key}"
    cfg = {
        "general": {"admin_username": "admin", "admin_password": "admin"},
        "pools": {"example_db": {
            "max_db_connections": 5,
            "reserve_pool_size": 1,
            "auth_query": {"query": "SELECT passwd FROM pg_shadow WHERE usename = $1", "user": "doorman"},
            "users": [
                {"username": "svc", "password": key_ref, "pool_size": 1,
                 "server_username": SCRAM_USER, "server_password": SCRAM_PW},
                {"username": SCRAM_USER, "password": SCRAM_PW, "pool_size": 1},
            ]}},
    }
    dm = doorman(cfg)
    with pytest.raises(psycopg.OperationalError) as e:
        connect(dm, "svc", key_ref)
    assert "JWT authentication is not supported" in str(e.value)
    with connect(dm, SCRAM_USER, SCRAM_PW) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    log = dm.log()
    assert "pools.example_db.users[0].password: JWT authentication is not implemented" in log
    assert "auth_query is not implemented" not in log
    assert "reserve_pool_size: the coordinator's reserve pool is not implemented" not in log
    rmtree_quiet(d)
