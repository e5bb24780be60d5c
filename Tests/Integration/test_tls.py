"""TLS towards clients and towards PostgreSQL (issue 7).

A dedicated throwaway PostgreSQL runs with ssl=on and certificates made here with openssl:
a test CA, a server certificate for localhost/127.0.0.1, a client certificate with CN=example_user_md5
(for clientcert=verify-full on the server and tls_mode=verify-full on the pooler), and an unrelated CA.
Its pg_hba has extra lines: database `sslonly` rejects plain connections, database `certdb` needs
TLS plus a client certificate. The plain session `pg` fixture serves as the server without TLS.
"""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from harness import PgInstance, free_port, make_tmp_dir, pgbench, psql, rmtree_quiet, run_doorman_cli, to_yaml

MD5_USER, MD5_PASS = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PASS = "example_user_scram", "scrampass"


# --------------------------------------------------------------------------- certificates

def _openssl(*args: str, cwd: Path) -> None:
    cp = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{cp.stderr}")


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "3", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _make_leaf(d: Path, name: str, cn: str, ca: str, san: str | None, usage: str) -> None:
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment", f"extendedKeyUsage={usage}"]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "3", "-extfile", ext.name, cwd=d)
    os.chmod(d / f"{name}.key", 0o600)


@pytest.fixture(scope="module")
def certs():
    d = make_tmp_dir("pgdm-certs-")
    try:
        _make_ca(d, "ca")
        _make_ca(d, "otherca")
        _make_leaf(d, "server", "localhost", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth")
        _make_leaf(d, "client", MD5_USER, "ca", None, "clientAuth")
        _make_leaf(d, "wronghost", "wrong.example", "ca", "DNS:wrong.example", "serverAuth")
        (d / "garbage.crt").write_text("this is not a certificate\n")
        yield d
    finally:
        rmtree_quiet(d)


# --------------------------------------------------------------------------- PostgreSQL with ssl=on

@pytest.fixture(scope="module")
def pg_ssl(certs):
    d = make_tmp_dir("pgdm-ssl-")
    inst = None
    try:
        inst = PgInstance.start(d, pgbench_init=True)
        data = inst.data_dir
        for name in ("server.crt", "server.key", "ca.crt"):
            shutil.copy(certs / name, data / name)
            if os.getuid() == 0:
                shutil.chown(data / name, "postgres", "postgres")
        os.chmod(data / "server.key", 0o600)
        inst.su_psql("CREATE DATABASE sslonly")
        inst.su_psql("CREATE DATABASE certdb")
        hba = data / "pg_hba.conf"
        extra = ("hostnossl sslonly all 127.0.0.1/32 reject\n"
                 "hostssl   certdb  all 127.0.0.1/32 md5 clientcert=verify-full\n"
                 "host      certdb  all 127.0.0.1/32 reject\n")
        hba.write_text(extra + hba.read_text())
        inst.su_psql("ALTER SYSTEM SET ssl = on")
        inst.su_psql("ALTER SYSTEM SET ssl_cert_file = 'server.crt'")
        inst.su_psql("ALTER SYSTEM SET ssl_key_file = 'server.key'")
        inst.su_psql("ALTER SYSTEM SET ssl_ca_file = 'ca.crt'")
        inst.su_psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while inst.su_psql("SHOW ssl").strip() != "on":
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not turn ssl on")
            time.sleep(0.1)
        yield inst
    finally:
        if inst is not None:
            inst.stop()
        rmtree_quiet(d)


# --------------------------------------------------------------------------- helpers

def config(server, *, db: str = "example_db", general: dict | None = None, pool: dict | None = None,
           pool_mode: str = "transaction", pool_size: int = 10) -> dict:
    """One pool `db` on `server` for both test users (passthrough hashes)."""
    return {
        "general": {"host": "127.0.0.1", "admin_username": "admin", "admin_password": "admin", **(general or {})},
        "pools": {
            db: {
                "server_host": server.host, "server_port": server.port, "pool_mode": pool_mode,
                "users": [{"username": u, "password": server.hashes[u], "pool_size": pool_size}
                          for u in (MD5_USER, SCRAM_USER)],
                **(pool or {}),
            },
        },
    }


def client_tls(certs: Path, **extra) -> dict:
    return {"tls_certificate": str(certs / "server.crt"), "tls_private_key": str(certs / "server.key"), **extra}


def q(dm, sql: str, *, user: str = MD5_USER, password: str = MD5_PASS, db: str = "example_db",
      sslmode: str = "disable", extra: dict | None = None) -> tuple[int, str, str]:
    env = dm.env(user, password, db)
    env["PGSSLMODE"] = sslmode
    env.update(extra or {})
    return psql(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, timeout=30)


def ok(dm, sql: str, **kw) -> str:
    rc, out, err = q(dm, sql, **kw)
    assert rc == 0, f"psql failed (rc={rc}): {err}\n--- pooler log ---\n{dm.log()[-4000:]}"
    return out.strip()


def admin_rows(dm, command: str, sslmode: str = "disable") -> list[dict[str, str]]:
    env = dm.env("admin", "admin", "pgdoorman")
    env["PGSSLMODE"] = sslmode
    rc, out, err = psql(["-A", "-F", "\t", "-P", "footer=off", "-c", command], env=env, timeout=30)
    assert rc == 0, err
    lines = [l for l in out.splitlines() if l]
    header = lines[0].split("\t")
    return [dict(zip(header, l.split("\t"))) for l in lines[1:]]


BACKEND_SSL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


# --------------------------------------------------------------------------- client side

def test_client_sslmode_require_and_show_clients(doorman, pg, certs):
    dm = doorman(config(pg, general=client_tls(certs)))
    assert ok(dm, "SELECT 1", sslmode="require") == "1"
    # The admin console sees its own TLS session.
    rows = admin_rows(dm, "SHOW CLIENTS", sslmode="require")
    mine = [r for r in rows if r.get("database") == "pgdoorman"]
    assert mine and mine[0]["tls"] == "true", rows
    rows = admin_rows(dm, "SHOW CLIENTS", sslmode="disable")
    mine = [r for r in rows if r.get("database") == "pgdoorman"]
    assert mine and mine[0]["tls"] == "false", rows
    # Plain still allowed in the default mode.
    assert ok(dm, "SELECT 2", sslmode="disable") == "2"


def test_client_sslmode_verify_full(doorman, pg, certs):
    dm = doorman(config(pg, general=client_tls(certs)))
    extra = {"PGHOST": "localhost", "PGHOSTADDR": "127.0.0.1", "PGSSLROOTCERT": str(certs / "ca.crt")}
    assert ok(dm, "SELECT 1", sslmode="verify-full", extra=extra) == "1"
    # A client that trusts a different CA refuses the pooler's certificate.
    bad = {**extra, "PGSSLROOTCERT": str(certs / "otherca.crt")}
    rc, _, err = q(dm, "SELECT 1", sslmode="verify-full", extra=bad)
    assert rc != 0 and "certificate verify failed" in err, err


def test_no_certificate_answers_n(doorman, pg):
    dm = doorman(config(pg))
    rc, _, err = q(dm, "SELECT 1", sslmode="require")
    assert rc != 0 and "does not support SSL" in err, err
    assert ok(dm, "SELECT 1", sslmode="prefer") == "1"


def test_tls_mode_require_refuses_plain(doorman, pg, certs, tmp_dir):
    dm = doorman(config(pg, general=client_tls(certs, tls_mode="require", unix_socket_dir=str(tmp_dir))))
    rc, _, err = q(dm, "SELECT 1", sslmode="disable")
    assert rc != 0 and "Connection without SSL is not allowed by tls_mode." in err, err
    assert ok(dm, "SELECT 1", sslmode="require") == "1"
    # Unix sockets are exempt, and an SSLRequest there is answered N.
    assert ok(dm, "SELECT 3", extra={"PGHOST": str(tmp_dir)}) == "3"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(tmp_dir / f".s.PGSQL.{dm.port}"))
        s.sendall(struct.pack("!II", 8, 80877103))
        assert s.recv(1) == b"N"


def test_show_connections_counts_tls(doorman, pg, certs):
    dm = doorman(config(pg, general=client_tls(certs)))
    ok(dm, "SELECT 1", sslmode="require")
    ok(dm, "SELECT 1", sslmode="disable")
    row = admin_rows(dm, "SHOW CONNECTIONS")[0]
    # plain: the psql above, this admin session, and the harness readiness probe.
    assert int(row["tls"]) == 1 and int(row["plain"]) >= 2, row


def test_plain_startup_error_code_28000(doorman, pg, certs):
    dm = doorman(config(pg, general=client_tls(certs, tls_mode="require")))
    params = f"user\0{MD5_USER}\0database\0example_db\0\0".encode()
    body = struct.pack("!I", 196608) + params
    with socket.create_connection(("127.0.0.1", dm.port), timeout=5) as s:
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        data = s.recv(4096)
    assert data[:1] == b"E", data
    assert b"C28000\0" in data and b"SFATAL\0" in data, data


def test_tls_mode_verify_full_needs_client_certificate(doorman, pg, certs):
    dm = doorman(config(pg, general=client_tls(certs, tls_mode="verify-full", tls_ca_cert=str(certs / "ca.crt"))))
    with_cert = {"PGSSLCERT": str(certs / "client.crt"), "PGSSLKEY": str(certs / "client.key")}
    assert ok(dm, "SELECT 1", sslmode="require", extra=with_cert) == "1"
    rc, _, err = q(dm, "SELECT 1", sslmode="require", extra={"PGSSLCERT": "/nonexistent", "PGSSLKEY": "/nonexistent"})
    assert rc != 0, err
    rc, _, err = q(dm, "SELECT 1", sslmode="disable")
    assert rc != 0 and "Connection without SSL is not allowed" in err, err


def test_hba_hostssl_and_hostnossl(doorman, pg, certs):
    hba = (f"hostssl   example_db {MD5_USER}   127.0.0.1/32 md5\n"
           f"hostnossl example_db {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n"
           "host pgdoorman admin 127.0.0.1/32 md5\n")
    dm = doorman(config(pg, general=client_tls(certs, pg_hba={"content": hba})))
    assert ok(dm, "SELECT 1", user=MD5_USER, password=MD5_PASS, sslmode="require") == "1"
    rc, _, err = q(dm, "SELECT 1", user=MD5_USER, password=MD5_PASS, sslmode="disable")
    assert rc != 0 and "no pg_hba.conf entry" in err and "no encryption" in err, err
    assert ok(dm, "SELECT 1", user=SCRAM_USER, password=SCRAM_PASS, sslmode="disable") == "1"
    rc, _, err = q(dm, "SELECT 1", user=SCRAM_USER, password=SCRAM_PASS, sslmode="require")
    assert rc != 0 and "no pg_hba.conf entry" in err and "SSL encryption" in err, err


# --------------------------------------------------------------------------- server side

def server_tls(mode: str, certs: Path | None = None, ca: str | None = None, mtls: bool = False) -> dict:
    out = {"server_tls_mode": mode}
    if ca:
        out["server_tls_ca_cert"] = str(certs / ca)
    if mtls:
        out["server_tls_certificate"] = str(certs / "client.crt")
        out["server_tls_private_key"] = str(certs / "client.key")
    return out


def servers_tls_column(dm) -> set[str]:
    return {r["tls"] for r in admin_rows(dm, "SHOW SERVERS")}


def test_server_require(doorman, pg_ssl):
    dm = doorman(config(pg_ssl, general=server_tls("require")))
    assert ok(dm, BACKEND_SSL) == "t"
    assert servers_tls_column(dm) == {"true"}


def test_server_require_against_plain_server_fails(doorman, pg):
    dm = doorman(config(pg, general=server_tls("require")))
    rc, _, err = q(dm, "SELECT 1")
    assert rc != 0 and "server does not support SSL" in err, err


def test_server_prefer(doorman, pg_ssl, pg):
    dm = doorman(config(pg_ssl, general=server_tls("prefer")))
    assert ok(dm, BACKEND_SSL) == "t"
    dm2 = doorman(config(pg, general=server_tls("prefer")))
    assert ok(dm2, BACKEND_SSL) == "f"
    assert servers_tls_column(dm2) == {"false"}


def test_server_disable(doorman, pg_ssl):
    dm = doorman(config(pg_ssl, general=server_tls("disable")))
    assert ok(dm, BACKEND_SSL) == "f"
    dm2 = doorman(config(pg_ssl, db="sslonly", general=server_tls("disable")))
    rc, _, err = q(dm2, "SELECT 1", db="sslonly")
    assert rc != 0 and "pg_hba.conf rejects" in err, err


def test_server_allow_plain_first_then_tls(doorman, pg_ssl):
    dm = doorman(config(pg_ssl, general=server_tls("allow")))
    assert ok(dm, BACKEND_SSL) == "f"
    # sslonly rejects plain connections: allow retries over TLS.
    dm2 = doorman(config(pg_ssl, db="sslonly", general=server_tls("allow")))
    assert ok(dm2, BACKEND_SSL, db="sslonly") == "t"


def test_server_verify_ca(doorman, pg_ssl, certs):
    dm = doorman(config(pg_ssl, general=server_tls("verify-ca", certs, ca="ca.crt")))
    assert ok(dm, BACKEND_SSL) == "t"
    dm2 = doorman(config(pg_ssl, general=server_tls("verify-ca", certs, ca="otherca.crt")))
    rc, _, err = q(dm2, "SELECT 1")
    assert rc != 0 and ("certificate" in err.lower() or "tls" in err.lower()), err


def test_server_verify_full(doorman, pg_ssl, certs):
    cfg = config(pg_ssl, general=server_tls("verify-full", certs, ca="ca.crt"))
    dm = doorman(cfg)
    assert ok(dm, BACKEND_SSL) == "t"
    cfg["pools"]["example_db"]["server_host"] = "localhost"
    dm2 = doorman(cfg)
    assert ok(dm2, BACKEND_SSL) == "t"


def test_server_verify_full_checks_the_host_name(doorman, pg, certs):
    # A pooler whose certificate names another host stands in for PostgreSQL (same CA).
    front = doorman(config(pg, general={"tls_certificate": str(certs / "wronghost.crt"),
                                        "tls_private_key": str(certs / "wronghost.key")}))

    class Upstream:
        host, port, hashes = "127.0.0.1", front.port, pg.hashes

    dm_ca = doorman(config(Upstream, general=server_tls("verify-ca", certs, ca="ca.crt")))
    assert ok(dm_ca, "SELECT 1") == "1"
    assert servers_tls_column(dm_ca) == {"true"}
    dm_full = doorman(config(Upstream, general=server_tls("verify-full", certs, ca="ca.crt")))
    rc, _, err = q(dm_full, "SELECT 1")
    assert rc != 0 and "TLS handshake with the server failed" in err, err


def test_server_mtls(doorman, pg_ssl, certs):
    dm = doorman(config(pg_ssl, db="certdb", general=server_tls("verify-full", certs, ca="ca.crt", mtls=True)))
    assert ok(dm, "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()", db="certdb") == f"/CN={MD5_USER}"
    dm2 = doorman(config(pg_ssl, db="certdb", general=server_tls("require")))
    rc, _, err = q(dm2, "SELECT 1", db="certdb")
    assert rc != 0 and "certificate" in err.lower(), err


def test_server_tls_per_pool_override(doorman, pg_ssl):
    dm = doorman(config(pg_ssl, general=server_tls("disable"), pool={"server_tls_mode": "require"}))
    assert ok(dm, BACKEND_SSL) == "t"


def test_cancel_over_tls_backend(doorman, pg_ssl, certs):
    dm = doorman(config(pg_ssl, general={**server_tls("require"), **client_tls(certs)}))
    env = dm.env(MD5_USER, MD5_PASS)
    env.update({"PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "10", "PGPASSFILE": "/dev/null"})
    p = subprocess.Popen(["psql", "-X", "-c", "SELECT pg_sleep(20)"], env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert "canceling statement due to user request" in err, (p.returncode, out, err, dm.log()[-3000:])


def test_pgbench_sslmode_require_transaction_mode(doorman, pg_ssl, certs):
    dm = doorman(config(pg_ssl, general={**server_tls("require"), **client_tls(certs)}, pool_size=8))
    env = dm.env(MD5_USER, MD5_PASS)
    env["PGSSLMODE"] = "require"
    r = pgbench(["-n", "-c", "8", "-j", "2", "-t", "100", "-M", "extended"], env=env, timeout=180)
    assert r.ok and r.failed in (0, None) and r.processed == 800, (r.rc, r.stdout, r.stderr[-3000:])
    r = pgbench(["-n", "-c", "8", "-j", "2", "-t", "100", "-C", "-S"], env=env, timeout=180)
    assert r.ok and r.processed == 800, (r.rc, r.stdout, r.stderr[-3000:])


def test_reload_rereads_server_certificates(doorman, pg_ssl, certs, tmp_dir):
    ca = tmp_dir / "ca.crt"
    shutil.copy(certs / "otherca.crt", ca)
    cfg = config(pg_ssl, general={"server_tls_mode": "verify-ca", "server_tls_ca_cert": str(ca)})
    dm = doorman(cfg)
    rc, _, err = q(dm, "SELECT 1")
    assert rc != 0, err
    shutil.copy(certs / "ca.crt", ca)
    dm.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        rc, out, err = q(dm, BACKEND_SSL)
        if rc == 0:
            break
        assert time.monotonic() < deadline, err
        time.sleep(0.3)
    assert out.strip() == "t"


# --------------------------------------------------------------------------- configuration errors

def _write_cfg(tmp_dir: Path, cfg: dict) -> Path:
    cfg["general"].setdefault("port", free_port())
    p = tmp_dir / "pg_doorman.yaml"
    p.write_text(to_yaml(cfg))
    return p


@pytest.mark.parametrize("which", ["missing", "garbage"])
def test_check_fails_on_bad_client_certificate(pg, certs, tmp_dir, which):
    cert = "/nonexistent/server.crt" if which == "missing" else str(certs / "garbage.crt")
    p = _write_cfg(tmp_dir, config(pg, general={"tls_certificate": cert, "tls_private_key": str(certs / "server.key")}))
    rc, out, err = run_doorman_cli(["-t", str(p)])
    assert rc != 0, (out, err)
    assert "tls_certificate" in err and ("cannot read" in err or "No certificates found" in err), err


def test_check_fails_on_bad_server_ca(pg, certs, tmp_dir):
    p = _write_cfg(tmp_dir, config(pg, general={"server_tls_mode": "verify-ca",
                                                "server_tls_ca_cert": str(certs / "garbage.crt")}))
    rc, out, err = run_doorman_cli(["-t", str(p)])
    assert rc != 0 and "No certificates found" in err, (out, err)


def test_check_passes_with_good_certificates(pg, certs, tmp_dir):
    p = _write_cfg(tmp_dir, config(pg, general={**client_tls(certs), **server_tls("verify-ca", certs, ca="ca.crt")}))
    rc, out, err = run_doorman_cli(["-t", str(p)])
    assert rc == 0, (out, err)


def test_start_fails_when_key_does_not_match_certificate(pg, certs, tmp_dir):
    # Both files parse as PEM (so -t cannot tell), but the key belongs to another certificate.
    p = _write_cfg(tmp_dir, config(pg, general={"tls_certificate": str(certs / "server.crt"),
                                                "tls_private_key": str(certs / "client.key")}))
    rc, out, err = run_doorman_cli([str(p)], timeout=30)
    assert rc == 78, (rc, out, err)
    assert "tls is incorrectly configured" in err, err


def _s_answer_times(dm, n: int) -> list[float]:
    """Sends n SSLRequests at once on raw sockets; returns when each got its `S` (seconds, sorted)."""
    socks = [socket.create_connection((dm.host, dm.port), timeout=10) for _ in range(n)]
    try:
        t0 = time.monotonic()
        for s in socks:
            s.sendall(struct.pack("!ii", 8, 80877103))
        times, pending = [], {s.fileno(): s for s in socks}
        with selectors.DefaultSelector() as sel:
            for s in socks:
                sel.register(s, selectors.EVENT_READ)
            while pending:
                ready = sel.select(timeout=10)
                assert ready, "no answer within 10 s"
                now = time.monotonic() - t0
                for key, _ in ready:
                    s = pending.pop(key.fd)
                    sel.unregister(s)
                    assert s.recv(1) == b"S"
                    times.append(now)
        return sorted(times)
    finally:
        for s in socks:
            s.close()


def test_tls_rate_limit_spaces_handshakes(doorman, pg, certs):
    """tls_rate_limit_per_second: 100 → one TLS handshake every 10 ms; clients over the limit get
    their `S` later (not refused), and a full login still works. Without a limit the answers come at
    once."""
    free = doorman(config(pg, general=client_tls(certs)))
    assert _s_answer_times(free, 12)[-1] < 0.1
    dm = doorman(config(pg, general=client_tls(certs, tls_rate_limit_per_second=100)))
    times = _s_answer_times(dm, 12)
    assert times[-1] - times[0] >= 0.1, times  # 12 answers, at least 11 × 10 ms apart
    assert sum(1 for a, b in zip(times, times[1:]) if b - a < 0.005) <= 1, times  # one at a time
    assert ok(dm, "SELECT 1", sslmode="require") == "1"
    assert ok(dm, "SELECT 2", sslmode="disable") == "2"  # plain logins are not limited
