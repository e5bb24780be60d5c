"""The Prometheus endpoint (`web.enabled`): GET /metrics on web.host:web.port, under the reference
pg_doorman's metric names, with values that follow real traffic through the real binary."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import psycopg
import pytest

from harness import free_port, pgbench

MD5_USER, MD5_PW = "example_user_md5", "md5pass"


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, frozenset(labels.items())): value} for every sample line; checks that each family's
    samples form one group right after its TYPE line, as the text format requires."""
    out = {}
    family, seen = None, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family = line.split()[2]
            assert family not in seen, f"{family} declared twice"
            seen.add(family)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\S+)', line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) == family, f"{m.group(1)} sample outside its group (under {family})"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(s, name: str, **labels) -> float:
    return s[(name, frozenset(labels.items()))]


def test_metrics_endpoint_reports_pools_connections_and_process(doorman, doorman_config, pg):
    port = free_port()
    cfg = doorman_config(pool_size=4)
    cfg["web"] = {"enabled": True, "host": "127.0.0.1", "port": port}
    dm = doorman(cfg)
    assert dm.wait_for_log(rf"metrics on http://127\.0\.0\.1:{port}/metrics")
    assert "web.enabled" not in dm.log()  # served, so not among the ignored settings

    status, ctype, text = scrape(port)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    for family in ["pg_doorman_total_memory", "pg_doorman_connection_count", "pg_doorman_sockets",
                   "pg_doorman_pools_clients", "pg_doorman_pools_servers", "pg_doorman_pools_bytes",
                   "pg_doorman_pools_queries_percentile", "pg_doorman_pools_transactions_percentile",
                   "pg_doorman_pools_transactions_count", "pg_doorman_pools_transactions_total_time",
                   "pg_doorman_pools_queries_count", "pg_doorman_pools_queries_total_time",
                   "pg_doorman_pools_avg_wait_time", "pg_doorman_servers_prepared_hits",
                   "pg_doorman_servers_prepared_misses"]:
        assert f"# TYPE {family} gauge" in text, family
    before = samples(text)
    assert value(before, "pg_doorman_total_memory") > 1_000_000
    assert value(before, "pg_doorman_pools_transactions_count", user=MD5_USER, database="example_db") == 0

    r = pgbench(["-n", "-M", "simple", "-c", "4", "-j", "2", "-t", "50", "example_db"], env=dm.env(MD5_USER, MD5_PW),
                script="SELECT 1;\n")
    assert r.rc == 0 and r.failed == 0, r.stderr
    with psycopg.connect(host=dm.host, port=dm.port, user=MD5_USER, password=MD5_PW, dbname="example_db",
                         autocommit=True) as held:
        held.execute("SELECT 1")
        after = samples(scrape(port)[2])
        labels = {"user": MD5_USER, "database": "example_db"}
        assert value(after, "pg_doorman_pools_clients", status="idle", **labels) == 1  # `held`
        assert value(after, "pg_doorman_pools_clients", status="waiting", **labels) == 0
        assert value(after, "pg_doorman_pools_transactions_count", **labels) >= 200
        assert value(after, "pg_doorman_pools_queries_count", **labels) >= 200
        assert value(after, "pg_doorman_pools_transactions_total_time", **labels) > 0
        assert value(after, "pg_doorman_pools_bytes", direction="received", **labels) > 0
        assert value(after, "pg_doorman_pools_bytes", direction="sent", **labels) > 0
        assert 1 <= value(after, "pg_doorman_pools_servers", status="idle", **labels) <= 4
        p50 = value(after, "pg_doorman_pools_transactions_percentile", percentile="50", **labels)
        p99 = value(after, "pg_doorman_pools_transactions_percentile", percentile="99", **labels)
        assert 0 < p50 <= p99
        total = value(after, "pg_doorman_connection_count", type="total")
        assert total >= 5 + value(before, "pg_doorman_connection_count", type="total")
        assert value(after, "pg_doorman_connection_count", type="plain") + \
            value(after, "pg_doorman_connection_count", type="tls") + \
            value(after, "pg_doorman_connection_count", type="cancel") == total
        # the listener, `held` and at least one server connection
        assert value(after, "pg_doorman_sockets", type="tcp") >= 3

    assert scrape(port, "/")[0] == 404
    assert scrape(port, "/metrics?x=1")[0] == 200


def test_metrics_port_in_use_stops_the_start(doorman, doorman_config):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        cfg = doorman_config()
        cfg["web"] = {"enabled": True, "host": "127.0.0.1", "port": port}
        dm = doorman(cfg, ready=False)
        assert dm.proc.wait(timeout=10) != 0
        assert re.search(rf"cannot listen for metrics on 127\.0\.0\.1:{port}", dm.log())
    finally:
        busy.close()
