"""Fixtures for the pg_doorman integration suite.

- `pg` (session): a throwaway PostgreSQL 15 with example_db, pgbench tables, users
  example_user_md5/md5pass (MD5-stored) and example_user_scram/scrampass (SCRAM-stored);
  `pg.hashes[user]` is the pg_shadow verifier for passthrough configs.
- `doorman` (function): factory `doorman(config, **kw) -> Doorman`; every process it started is
  stopped at teardown (SIGTERM, SIGKILL after 5 s).
- `doorman_config` (function): factory building the usual YAML dict for the test users.
- `tmp_dir` (function): a /tmp directory the postgres user can read, removed afterwards.
- `own_pg` (function): a PostgreSQL of the test's own, for tests that stop and restart it.

Text configs may use ${DOORMAN_PORT} (a free port is picked), ${PG_HOST}, ${PG_PORT}, ${PG_SOCKET_DIR},
${TMP_DIR}, ${MD5_HASH}, ${SCRAM_HASH}, ${MD5_USER}, ${SCRAM_USER}.
"""
from __future__ import annotations

import copy
import os
import re
import signal
from pathlib import Path
from typing import Any, Mapping

import pytest

from harness import (Doorman, PgInstance, alive, wait_until, doorman_bin, free_port, make_tmp_dir, render_config,  # noqa: F401
                     rmtree_quiet, psql, pgbench)


def _throwaway_pg(prefix: str, pgbench_init: bool):
    """A throwaway PostgreSQL for the life of the generator, removed afterwards."""
    d = make_tmp_dir(prefix)
    inst = None
    try:
        inst = PgInstance.start(d, pgbench_init=pgbench_init)
        yield inst
    finally:
        if inst is not None:
            inst.stop()
        rmtree_quiet(d)


@pytest.fixture(scope="session")
def pg():
    yield from _throwaway_pg("pgdm-it-", pgbench_init=True)


@pytest.fixture
def own_pg():
    """A dedicated throwaway PostgreSQL (no pgbench tables), for tests that stop and restart it."""
    yield from _throwaway_pg("pgdm-own-", pgbench_init=False)


@pytest.fixture
def tmp_dir():
    d = make_tmp_dir("pgdm-t-")
    yield d
    rmtree_quiet(d)


@pytest.fixture
def doorman_config(pg):
    """Factory for the standard config dict: one pool `example_db` -> the throwaway PostgreSQL, both users
    with their pg_shadow hashes (passthrough). Override anything by editing the returned dict."""

    def make(pool_mode: str = "transaction", pool_size: int = 40, users: list[str] | None = None,
             port: int | None = None, **general: Any) -> dict[str, Any]:
        users = users or [pg.md5_user, pg.scram_user]
        cfg: dict[str, Any] = {
            "general": {
                "host": "127.0.0.1",
                "port": port or free_port(),
                "admin_username": "admin",
                "admin_password": "admin",
                **general,
            },
            "pools": {
                pg.database: {
                    "server_host": pg.host,
                    "server_port": pg.port,
                    "pool_mode": pool_mode,
                    "users": [{"username": u, "password": pg.hashes[u], "pool_size": pool_size} for u in users],
                },
            },
        }
        return cfg

    return make


_GENERAL_PORT = re.compile(r"^general:\s*$(?P<body>(?:\n(?:[ \t].*|\s*))*)", re.M)


def _port_from_text(text: str) -> int | None:
    """Best effort: `port:` inside the YAML `general:` block, or `port =` in TOML [general]."""
    m = _GENERAL_PORT.search(text)
    if m:
        pm = re.search(r"^\s+port:\s*\"?(\d+)", m.group("body"), re.M)
        if pm:
            return int(pm.group(1))
    m = re.search(r"^\[general\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if m:
        pm = re.search(r"^\s*port\s*=\s*(\d+)", m.group(1), re.M)
        if pm:
            return int(pm.group(1))
    return None


@pytest.fixture
def doorman(pg, request):
    """Factory: doorman(config, port=None, args=("-l", "debug"), env=None, wait=10.0, ready=True,
    suffix=".yaml") -> Doorman.

    `config` is YAML text (with ${VAR} placeholders, see module doc) or a dict (emitted as YAML; missing
    general.host/port and pool server_host/server_port are filled in). With ready=False it does not wait
    for the port (for configs that are expected to fail); check `.proc`, `.log()` yourself."""
    started: list[Doorman] = []
    dirs: list[Path] = []

    def start(config: str | Mapping[str, Any], *, port: int | None = None, args=("-l", "debug"),
              env: Mapping[str, str] | None = None, wait: float = 10.0, ready: bool = True,
              suffix: str = ".yaml") -> Doorman:
        d = make_tmp_dir("pgdm-dm-")
        dirs.append(d)
        if isinstance(config, Mapping):
            cfg = copy.deepcopy(dict(config))
            general = cfg.setdefault("general", {})
            general.setdefault("host", "127.0.0.1")
            if port is not None:
                general["port"] = port
            general.setdefault("port", free_port())
            port = int(general["port"])
            for pool in (cfg.get("pools") or {}).values():
                if isinstance(pool, dict):
                    pool.setdefault("server_host", pg.host)
                    pool.setdefault("server_port", pg.port)
            text = render_config(cfg, {})
        else:
            if port is None and "${DOORMAN_PORT}" in config:
                port = free_port()
            variables = {
                "PG_HOST": pg.host, "PG_PORT": pg.port, "PG_SOCKET_DIR": pg.socket_dir, "TMP_DIR": d,
                "MD5_USER": pg.md5_user, "SCRAM_USER": pg.scram_user,
                "MD5_HASH": pg.hashes.get(pg.md5_user, ""), "SCRAM_HASH": pg.hashes.get(pg.scram_user, ""),
            }
            if port is not None:
                variables["DOORMAN_PORT"] = port
            text = render_config(config, variables)
            if port is None:
                port = _port_from_text(text)
            if port is None:
                raise ValueError("cannot tell the pooler's port: use ${DOORMAN_PORT} or pass port=")
        cfg_path = d / f"pg_doorman{suffix}"
        cfg_path.write_text(text)
        dm = Doorman(cfg_path, port=port, log_path=d / "pg_doorman.log", args=args, env=env)
        started.append(dm)
        if ready:
            dm.wait_ready(timeout=wait)
        return dm

    request.node._doormen = started
    yield start

    for dm in started:
        dm.stop()
    for d in dirs:
        rmtree_quiet(d)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the tail of every pooler log it started to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for dm in getattr(item, "_doormen", []):
            rep.sections.append((f"pg_doorman log pid={dm.pid} port={dm.port}", dm.log()[-6000:]))


@pytest.fixture(scope="session")
def doorman_binary() -> Path:
    """Path of the pooler binary; fails (never skips) the test when it has not been built."""
    p = doorman_bin()
    if not p.exists():
        pytest.fail(f"pg_doorman binary not found at {p}; run `swift build` or set PG_DOORMAN_BIN")
    return p


@pytest.fixture
def reap():
    """Pids started indirectly by a test (upgraded processes, daemons): SIGTERM at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            if not wait_until(lambda: not alive(pid), 5):
                os.kill(pid, signal.SIGKILL)
