"""`pg_doorman generate` against a real PostgreSQL (the session fixture `pg` from conftest.py).

Checks: the written config passes `pg_doorman -t`, lists every login role with its pg_shadow hash and every
non-template database, in YAML and TOML, annotated (EN/RU) and plain; clear one-line errors and no partial file.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from harness import doorman_bin, free_port, psql


def run(args, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k == "PG_DOORMAN_BIN"}
    env["HOME"] = "/nonexistent"  # no ~/.pgpass from the machine
    if env_extra:
        env.update(env_extra)
    return subprocess.run([str(doorman_bin()), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def su_args(pg):
    return ["--host", pg.host, "-p", str(pg.port), "-u", pg.superuser, "--password", pg.superuser_password,
            "-d", "postgres"]


def login_roles(pg):
    out = pg.su_psql("SELECT usename, coalesce(passwd, '') FROM pg_shadow ORDER BY 1", extra=["-F", "\t"])
    return dict(line.split("\t", 1) for line in out.splitlines() if line)


def databases(pg):
    return pg.su_psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1").split()


def check_config(path: Path, pg):
    cp = run(["-t", str(path)])
    assert cp.returncode == 0, f"pg_doorman -t failed:\n{cp.stdout}\n{cp.stderr}\n--- config ---\n{path.read_text()}"
    text = path.read_text()
    for user, hash_ in login_roles(pg).items():
        assert user in text, f"role {user} missing"
        if hash_:
            assert hash_ in text, f"hash of {user} missing"
    for db in databases(pg):
        assert re.search(rf"(^|\W){re.escape(db)}(\W|$)", text), f"database {db} missing"
    return text


VARIANTS = [
    (".yaml", []), (".toml", []), (".yaml", ["--ru"]), (".toml", ["--russian-comments"]),
    (".yaml", ["--no-comments"]), (".toml", ["--no-comments"]),
]


@pytest.mark.parametrize("suffix,extra", VARIANTS, ids=lambda v: str(v))
def test_generate_from_live_server(pg, tmp_dir, suffix, extra):
    out = Path(tmp_dir) / f"generated{suffix}"
    cp = run(["generate", *su_args(pg), "-o", str(out), *extra])
    assert cp.returncode == 0, cp.stderr
    text = check_config(out, pg)
    assert str(pg.port) in text
    if "--no-comments" in extra:
        assert "#" not in text.replace("$", "")  # no comment lines (hashes contain no '#')
    else:
        assert ("По умолчанию" in text) == any(x in extra for x in ("--ru", "--russian-comments"))
        assert "127.0.0.1/32" in text  # generated pg_hba


def test_generate_uses_libpq_environment_and_stdout(pg, tmp_dir):
    cp = run(["generate", "-f", "toml", "--pool-size", "7", "-s", "--server-host", "db.internal"],
             env_extra={"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.superuser,
                        "PGPASSWORD": pg.superuser_password, "PGDATABASE": "postgres"})
    assert cp.returncode == 0, cp.stderr
    assert "[general]" in cp.stdout
    assert "pool_size = 7" in cp.stdout
    assert 'pool_mode = "session"' in cp.stdout
    assert 'server_host = "db.internal"' in cp.stdout
    assert f"server_port = {pg.port}" in cp.stdout
    out = Path(tmp_dir) / "from-stdout.toml"
    out.write_text(cp.stdout)
    check_config(out, pg)


def test_generate_over_unix_socket_points_pools_at_the_socket_dir(pg, tmp_dir):
    out = Path(tmp_dir) / "sock.yaml"
    cp = run(["generate", "--host", str(pg.socket_dir), "-p", str(pg.port), "-u", pg.superuser, "-o", str(out)])
    assert cp.returncode == 0, cp.stderr
    text = check_config(out, pg)
    assert f'server_host: "{pg.socket_dir}"' in text


def test_reference_needs_no_database(tmp_dir):
    for name in ("ref.yaml", "ref.toml"):
        out = Path(tmp_dir) / name
        cp = run(["generate", "--reference", "-o", str(out)], env_extra={"PGPORT": "1"})
        assert cp.returncode == 0, cp.stderr
        assert run(["-t", str(out)]).returncode == 0
        text = out.read_text()
        assert "exampledb" in text and "app_user" in text and "6432" in text
    repo = Path(__file__).resolve().parents[2]
    cp = run(["generate", "--reference", "--ru"])
    assert cp.stdout == (repo / "reference" / "pg_doorman.ru.yaml").read_text()


def one_line_error(cp):
    assert cp.returncode != 0
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, cp.stderr
    return lines[0]


def test_unreachable_port(tmp_dir):
    out = Path(tmp_dir) / "never.yaml"
    cp = run(["generate", "--host", "127.0.0.1", "-p", str(free_port()), "-u", "postgres", "-o", str(out)])
    msg = one_line_error(cp)
    assert "cannot connect" in msg
    assert not out.exists()
    assert list(Path(tmp_dir).iterdir()) == []


def test_wrong_password(pg, tmp_dir):
    out = Path(tmp_dir) / "never.yaml"
    cp = run(["generate", "--host", pg.host, "-p", str(pg.port), "-u", pg.md5_user, "--password", "wrong",
              "-d", pg.database, "-o", str(out)])
    msg = one_line_error(cp)
    assert "rejected the login" in msg or "authentication" in msg
    assert list(Path(tmp_dir).iterdir()) == []


def test_not_superuser(pg, tmp_dir):
    out = Path(tmp_dir) / "never.yaml"
    cp = run(["generate", "--host", pg.host, "-p", str(pg.port), "-u", pg.md5_user, "--password",
              pg.users[pg.md5_user], "-d", pg.database, "-o", str(out)])
    msg = one_line_error(cp)
    assert "superuser" in msg and "pg_shadow" in msg
    assert list(Path(tmp_dir).iterdir()) == []


def test_output_not_writable(pg, tmp_dir):
    cp = run(["generate", *su_args(pg), "-o", str(Path(tmp_dir) / "missing" / "x.yaml")])
    msg = one_line_error(cp)
    assert "cannot write" in msg


def test_generated_config_serves_md5_and_scram_users(pg, tmp_dir, doorman):
    """The generated config works unedited (only the listen port is changed to a free one)."""
    out = Path(tmp_dir) / "serve.yaml"
    cp = run(["generate", *su_args(pg), "-o", str(out)])
    assert cp.returncode == 0, cp.stderr
    port = free_port()
    text = re.sub(r"^  port: 6432$", f"  port: {port}", out.read_text(), count=1, flags=re.M)
    text = text.replace('host: "0.0.0.0"', 'host: "127.0.0.1"', 1)
    d = doorman(text, port=port)
    for user in (pg.md5_user, pg.scram_user):
        rc, stdout, stderr = psql(["-At", "-c", "SELECT current_user"], env=d.env(user, pg.users[user], pg.database))
        assert rc == 0, stderr
        assert stdout.strip() == user
