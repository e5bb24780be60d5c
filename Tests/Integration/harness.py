"""Helpers for the integration suite: throwaway PostgreSQL, the pg_doorman process, psql, pgbench.

Fixtures live in conftest.py; everything here is plain Python so tests (and bench tooling) can
import it directly: `from harness import psql, pgbench, free_port`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
from pgbench_report import parse_report as parse_pgbench  # noqa: E402  (shared with bench/)
PG_SCRIPT = REPO / "scripts" / "pg-throwaway.sh"


def doorman_bin() -> Path:
    """Path of the pooler binary under test ($PG_DOORMAN_BIN, default .build/debug/pg_doorman)."""
    p = Path(os.environ.get("PG_DOORMAN_BIN", REPO / ".build" / "debug" / "pg_doorman"))
    return p if p.is_absolute() else REPO / p


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0, proc=None) -> bool:
    """Poll until host:port accepts a TCP connection. Stops early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- subprocess clients

def _client_env(env: Mapping[str, str] | None) -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("PGCONNECT_TIMEOUT", "10")
    # Never let a developer's ~/.pgpass or service file influence a test.
    e["PGPASSFILE"] = "/dev/null"
    e.pop("PGSERVICE", None)
    if env:
        e.update({k: str(v) for k, v in env.items()})
    return e


def psql(args: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None,
         timeout: float = 60.0) -> tuple[int, str, str]:
    """Run `psql -X <args>`; returns (returncode, stdout, stderr). Never raises on a non-zero exit."""
    cmd = ["psql", "-X", *[str(a) for a in args]]
    try:
        cp = subprocess.run(cmd, env=_client_env(env), input=input, capture_output=True, text=True,
                            timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return 124, _s(e.stdout), _s(e.stderr) + f"\n[psql timed out after {timeout}s]"
    return cp.returncode, cp.stdout, cp.stderr


def _s(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


@dataclass
class PgbenchResult:
    rc: int
    tps: float | None
    processed: int | None
    failed: int | None
    latency_avg_ms: float | None
    conn_time_ms: float | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0 and (self.failed or 0) == 0 and (self.processed or 0) > 0


def pgbench(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300.0,
            script: str | None = None) -> PgbenchResult:
    """Run `pgbench <args>` (add -n yourself for a non-pgbench schema). With `script`, writes it to a
    temp file and passes `-f file`. Returns the parsed report; failed counts are 0 when the run is clean."""
    cmd = ["pgbench", *[str(a) for a in args]]
    tmp = None
    if script is not None:
        fd, tmp = tempfile.mkstemp(suffix=".sql", prefix="pgbench-")
        with os.fdopen(fd, "w") as f:
            f.write(script)
        cmd += ["-f", tmp]
    try:
        cp = subprocess.run(cmd, env=_client_env(env), capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
        rc, out, err = cp.returncode, cp.stdout, cp.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, _s(e.stdout), _s(e.stderr) + f"\n[pgbench timed out after {timeout}s]"
    finally:
        if tmp:
            os.unlink(tmp)
    return PgbenchResult(rc=rc, stdout=out, stderr=err, **parse_pgbench(out))


# --------------------------------------------------------------------------- throwaway PostgreSQL

@dataclass
class PgInstance:
    """A running throwaway PostgreSQL (scripts/pg-throwaway.sh)."""
    dir: Path
    host: str
    port: int
    socket_dir: Path
    data_dir: Path
    database: str = "example_db"
    superuser: str = "postgres"
    superuser_password: str = "postgres"
    # plaintext passwords of the test users
    users: dict[str, str] = field(default_factory=lambda: {
        "example_user_md5": "md5pass",
        "example_user_scram": "scrampass",
    })
    # pg_shadow.passwd of every role that has one ("md5..." / "SCRAM-SHA-256$...")
    hashes: dict[str, str] = field(default_factory=dict)

    md5_user = "example_user_md5"
    scram_user = "example_user_scram"

    @classmethod
    def start(cls, directory: Path, pgbench_init: bool = True, max_connections: int | None = None) -> "PgInstance":
        args = [str(PG_SCRIPT), "start", str(directory)]
        if pgbench_init:
            args.append("--pgbench")
        if max_connections:
            args += ["--max-connections", str(max_connections)]
        cp = subprocess.run(args, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if cp.returncode != 0:
            raise RuntimeError(f"pg-throwaway.sh start failed (rc={cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        env = parse_env_file(Path(directory) / "env")
        inst = cls(dir=Path(directory), host=env["PGHOST"], port=int(env["PGPORT"]),
                   socket_dir=Path(env["PG_SOCKET_DIR"]), data_dir=Path(env["PG_DATA_DIR"]))
        inst.hashes = inst.read_hashes()
        return inst

    def stop(self) -> None:
        subprocess.run([str(PG_SCRIPT), "stop", str(self.dir)], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, check=False)

    # -- superuser access over the Unix socket (trust)
    def su_psql(self, sql: str, db: str = "postgres", extra: Sequence[str] = ()) -> str:
        """Run SQL as postgres over the Unix socket; returns unaligned tuples-only output; raises on error."""
        rc, out, err = psql(["-h", str(self.socket_dir), "-p", str(self.port), "-U", self.superuser, "-d", db,
                             "-v", "ON_ERROR_STOP=1", "-At", *extra, "-c", sql])
        if rc != 0:
            raise RuntimeError(f"psql as superuser failed (rc={rc}): {err}")
        return out

    def read_hashes(self) -> dict[str, str]:
        out = self.su_psql("SELECT usename, passwd FROM pg_shadow WHERE passwd IS NOT NULL", extra=["-F", "\t"])
        rows = [line.split("\t", 1) for line in out.splitlines() if line]
        return {u: p for u, p in rows}

    def password(self, user: str) -> str:
        if user == self.superuser:
            return self.superuser_password
        return self.users[user]

    def env(self, user: str, password: str | None = None, db: str | None = None) -> dict[str, str]:
        """libpq env for a direct TCP connection to PostgreSQL as `user`."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": user,
                "PGPASSWORD": password if password is not None else self.password(user),
                "PGDATABASE": db or self.database}

    def dsn(self, user: str, password: str | None = None, db: str | None = None) -> str:
        pw = password if password is not None else self.password(user)
        return f"postgresql://{user}:{pw}@{self.host}:{self.port}/{db or self.database}"


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse `export A=1 B=2` lines written by pg-throwaway.sh."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        for tok in line.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                out[k] = v
    return out


def make_tmp_dir(prefix: str) -> Path:
    """A /tmp directory the postgres OS user can traverse (mode 755), short enough for Unix sockets."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


# --------------------------------------------------------------------------- YAML emitter

def to_yaml(value: Any, indent: int = 0) -> str:
    """Minimal YAML emitter for dict/list/str/int/float/bool/None (strings double-quoted)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        if not value:
            return pad + "{}\n"
        for k, v in value.items():
            key = _yaml_key(k)
            if isinstance(v, Mapping) and v:
                lines.append(f"{pad}{key}:\n" + to_yaml(v, indent + 1))
            elif isinstance(v, (list, tuple)) and v:
                lines.append(f"{pad}{key}:\n" + to_yaml(v, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(v)}\n")
        return "".join(lines)
    if isinstance(value, (list, tuple)):
        if not value:
            return pad + "[]\n"
        for item in value:
            if isinstance(item, Mapping) and item:
                body = to_yaml(item, indent + 1)
                # "- " replaces the first line's indentation
                first, _, rest = body.partition("\n")
                lines.append(f"{pad}- {first.lstrip()}\n{rest}")
            elif isinstance(item, (list, tuple)) and item:
                lines.append(f"{pad}-\n" + to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}\n")
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


def _yaml_key(k: Any) -> str:
    s = str(k)
    return s if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", s) else json.dumps(s)


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, (list, tuple)):
        return "[]"
    return json.dumps(str(v), ensure_ascii=False)


# --------------------------------------------------------------------------- pg_doorman process

class Doorman:
    """A running pg_doorman started from a config file; stderr+stdout go to `log_path`."""

    def __init__(self, config_path: Path, port: int, log_path: Path, args: Sequence[str] = ("-l", "debug"),
                 env: Mapping[str, str] | None = None, binary: Path | None = None,
                 host: str = "127.0.0.1"):
        self.config_path = Path(config_path)
        self.port = port
        self.host = host
        self.log_path = Path(log_path)
        self.binary = Path(binary) if binary else doorman_bin()
        self.cmd = [str(self.binary), str(self.config_path), *args]
        e = dict(os.environ)
        if env:
            e.update({k: str(v) for k, v in env.items()})
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=e, cwd=str(self.config_path.parent), start_new_session=True)
        self.pid = self.proc.pid
        self.returncode: int | None = None

    def wait_ready(self, timeout: float = 10.0) -> None:
        if not wait_for_port(self.port, self.host, timeout=timeout, proc=self.proc):
            rc = self.proc.poll()
            state = f"exited with code {rc}" if rc is not None else f"not listening after {timeout}s"
            self.stop()
            raise RuntimeError(f"pg_doorman {state}: {' '.join(self.cmd)}\n--- log ---\n{self.log()[-8000:]}")

    def log(self) -> str:
        """Everything the process wrote to stderr/stdout so far."""
        try:
            self._logf.flush()
        except ValueError:
            pass
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> bool:
        """Wait until the log matches the regex `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rx.search(self.log()):
                return True
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds. Returns the exit code (negative = signal)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.returncode = self.proc.returncode
        try:
            self._logf.close()
        except Exception:
            pass
        return self.returncode

    def env(self, user: str, password: str, db: str = "example_db") -> dict[str, str]:
        """libpq env for a connection through the pooler."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": user, "PGPASSWORD": password,
                "PGDATABASE": db}

    def dsn(self, user: str, password: str, db: str = "example_db") -> str:
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{db}"

    def __repr__(self) -> str:
        return f"<Doorman pid={self.pid} port={self.port} config={self.config_path}>"


def render_config(config: str | Mapping[str, Any], variables: Mapping[str, Any]) -> str:
    """Text configs get ${VAR} substitution (unknown names are left alone); dicts are emitted as YAML."""
    if isinstance(config, str):
        return string.Template(config).safe_substitute({k: str(v) for k, v in variables.items()})
    return to_yaml(config)


def run_doorman_cli(args: Sequence[str], timeout: float = 30.0, env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> tuple[int, str, str]:
    """Run the pooler binary to completion (CLI checks: --help, -V, -t, generate)."""
    e = dict(os.environ)
    if env:
        e.update({k: str(v) for k, v in env.items()})
    try:
        cp = subprocess.run([str(doorman_bin()), *[str(a) for a in args]], capture_output=True, text=True,
                            timeout=timeout, env=e, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as ex:
        return 124, _s(ex.stdout), _s(ex.stderr) + f"\n[timed out after {timeout}s]"
    return cp.returncode, cp.stdout, cp.stderr


def rmtree_quiet(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- raw protocol probes

AUTH_NAMES = {0: "ok", 3: "cleartext", 5: "md5", 10: "sasl"}


def auth_request(host: str, port: int, user: str, database: str = "example_db", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send a v3 StartupMessage and return (auth code, payload) of the server's first Authentication
    message: 0 ok, 3 cleartext, 5 md5 (payload = salt), 10 SASL (payload = mechanism list).
    Raises RuntimeError with the server's message on an ErrorResponse."""
    import struct

    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    body = struct.pack("!I", 196608) + params
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        hdr = _recv_exact(s, 5)
        kind, length = hdr[:1], struct.unpack("!I", hdr[1:])[0]
        payload = _recv_exact(s, length - 4)
    if kind == b"E":
        fields = {f[:1].decode(): f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
        raise RuntimeError(f"server error {fields.get('C')}: {fields.get('M')}")
    if kind != b"R":
        raise RuntimeError(f"unexpected message {kind!r}")
    code = struct.unpack("!I", payload[:4])[0]
    return code, payload[4:]


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie child of ours counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(cond, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def admin_rows(target, sql: str) -> list[dict[str, str]]:
    """One admin console command through psql (user admin/admin); `target` is a Doorman or a port."""
    port = target if isinstance(target, int) else target.port
    host = "127.0.0.1" if isinstance(target, int) else target.host
    env = {"PGHOST": host, "PGPORT": str(port), "PGUSER": "admin", "PGPASSWORD": "admin", "PGDATABASE": "pgdoorman"}
    rc, out, err = psql(["-A", "-F", "\t", "-P", "footer=off", "-c", sql], env=env, timeout=20)
    assert rc == 0, f"{sql}: rc={rc} {err}"
    lines = out.splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

