"""Prepared statements in transaction mode across backends (pool_size 2, several clients)."""
from __future__ import annotations

import threading

import pytest

import wire as w
from wire import Wire
from test_extended_dual import Dual, USER, PASSWORD, P, B, D, E, S, H, C, Q


def _pid_and_value(msgs):
    errs = [w.error_fields(b) for t, b in msgs if t == b"E"]
    assert not errs, errs
    r = w.rows(msgs)
    assert len(r) == 1, w.types(msgs)
    return int(r[0][0]), int(r[0][1])


def _connect(dm) -> Wire:
    return Wire.connect(dm.host, dm.port, USER, PASSWORD)


@pytest.fixture
def dm2(doorman, doorman_config):
    return doorman(doorman_config(pool_mode="transaction", pool_size=2))


def test_named_statement_on_different_backends(dm2):
    a = _connect(dm2)
    holder = _connect(dm2)
    a.send(P("s", "SELECT pg_backend_pid(), $1::int * 10") + S())
    assert w.types(a.read_until_ready()) == "1Z"
    pids = set()
    held = False
    for i in range(12):
        # Alternately hold a backend so that `a` lands on the other one.
        holder.query("COMMIT" if held else "BEGIN; SELECT 1")
        held = not held
        a.send(B("", "s", [str(i).encode()]) + E() + S())
        pid, v = _pid_and_value(a.read_until_ready())
        assert v == i * 10
        pids.add(pid)
        # Also inside an explicit transaction.
        a.send(Q("BEGIN"))
        a.read_until_ready()
        a.send(B("", "s", [b"7"]) + E() + S() + B("", "s", [b"8"]) + E() + S())
        msgs = a.read_until_ready(2)
        assert [int(r[1]) for r in w.rows(msgs)] == [70, 80]
        assert len({int(r[0]) for r in w.rows(msgs)}) == 1
        a.send(Q("COMMIT"))
        a.read_until_ready()
    assert len(pids) == 2, pids
    a.close()
    holder.close()


def test_same_name_different_queries_concurrently(dm2):
    errors: list[str] = []
    n_clients = 6

    def client(k: int):
        try:
            c = _connect(dm2)
            c.send(P("same", f"SELECT {k} AS k, $1::int + {k * 1000} AS v") + S())
            c.read_until_ready()
            for i in range(40):
                c.send(B("", "same", [str(i).encode()]) + E() + S())
                r = w.rows(c.read_until_ready())
                if r != [[str(k).encode(), str(i + k * 1000).encode()]]:
                    errors.append(f"client {k} iteration {i}: got {r}")
                    break
                if i % 10 == 5:
                    # Re-parse a different query under a new name and the same name after Close.
                    c.send(C("S", "same") + P("same", f"SELECT {k} AS k, $1::int + {k * 1000} AS v") + S())
                    c.read_until_ready()
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_deallocate_and_discard(dual):
    dual.run([
        (P("d1", "SELECT 1 AS one") + P("d2", "SELECT 2 AS two") + S(), 1),
        (Q("DEALLOCATE d1"), 1),
        (B("", "d1") + E() + S(), 1),
        (B("", "d2") + E() + S(), 1),
        (Q("DEALLOCATE d1"), 1),
        (Q("deallocate prepare d2;"), 1),
        (B("", "d2") + E() + S(), 1),
        (P("d3", "SELECT 3") + P("d4", "SELECT 4") + S(), 1),
        (Q("DEALLOCATE ALL"), 1),
        (B("", "d3") + E() + S() + B("", "d4") + E() + S(), 2),
        (P("d3", "SELECT 33") + P("", "SELECT 'u'") + S(), 1),
        (Q("DISCARD ALL"), 1),
        (B("", "d3") + E() + S(), 1),
        (B("", "") + E() + S(), 1),
        (P("d3", "SELECT 333") + B("", "d3") + E() + S(), 1),
    ])


@pytest.fixture
def dual(pg, doorman, doorman_config):
    return Dual(pg, doorman(doorman_config(pool_mode="transaction", pool_size=2)), "transaction")


@pytest.fixture
def dual_small_cache(pg, doorman, doorman_config):
    cfg = doorman_config(pool_mode="transaction", pool_size=2, prepared_statements_cache_size=2,
                         server_prepared_statements_cache_size=2)
    return Dual(pg, doorman(cfg), "transaction")


def test_cache_eviction_mid_batch(dual_small_cache):
    parses = b"".join(P(f"e{i}", f"SELECT {i} AS n, $1::int AS p") for i in range(6))
    binds = b"".join(B("", f"e{i}", [str(i).encode()]) + E() for i in range(6))
    binds_rev = b"".join(B("", f"e{i}", [str(i).encode()]) + E() for i in reversed(range(6)))
    dual_small_cache.run([
        (parses + binds + S(), 1),
        (binds_rev + S(), 1),
        (binds + S() + binds_rev + S(), 2),
        (P("", "SELECT 'unnamed'") + binds + B() + E() + S(), 1),
        # Error in the middle of a batch that also evicts.
        (B("", "e0", [b"0"]) + E() + B("", "e1", [b"zz"]) + E() + binds + S() + binds + S(), 2),
        (b"".join(D("S", f"e{i}") for i in range(6)) + S(), 1),
    ])


def test_cache_eviction_concurrent(pg, doorman, doorman_config):
    cfg = doorman_config(pool_mode="transaction", pool_size=2, prepared_statements_cache_size=2,
                         server_prepared_statements_cache_size=2)
    dm = doorman(cfg)
    errors: list[str] = []

    def client(k: int):
        try:
            c = _connect(dm)
            c.send(b"".join(P(f"q{i}", f"SELECT {i} + $1::int") for i in range(5)) + S())
            c.read_until_ready()
            for it in range(20):
                batch = b"".join(B("", f"q{(i + it + k) % 5}", [str(k).encode()]) + E() for i in range(5)) + S()
                c.send(batch)
                msgs = c.read_until_ready()
                got = [int(r[0]) for r in w.rows(msgs)]
                want = [((i + it + k) % 5) + k for i in range(5)]
                if got != want:
                    errors.append(f"client {k} it {it}: {got} != {want}; {w.normalise(msgs)[:6]}")
                    break
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors


@pytest.fixture
def dm1(doorman, doorman_config):
    return doorman(doorman_config(pool_mode="transaction", pool_size=1, query_wait_timeout=3000))


@pytest.mark.parametrize("tail", [
    P("gone", "SELECT 1") + B("", "gone") + E(),
    P("gone", "SELECT 1") + H(),
    Q("BEGIN") + P("gone", "SELECT 1") + B("", "gone") + E(),
    P("", "SELECT pg_sleep(0.3)") + B() + E(),
    P("", "COPY pgbench_history FROM STDIN") + B() + E() + S(),
], ids=["no-sync", "flush", "in-transaction", "running", "copy-in"])
def test_client_disconnects_before_sync(dm1, tail):
    a = _connect(dm1)
    a.send(P("keep", "SELECT 1") + S())
    a.read_until_ready()
    a.send(tail)
    a.read_for(0.2, 1.0)
    a.abort()
    b = _connect(dm1)
    b.send(P("gone", "SELECT 'b' AS who, $1::int AS n") + B("", "gone", [b"5"]) + E() + S())
    msgs = b.read_until_ready()
    assert w.rows(msgs) == [[b"b", b"5"]], w.normalise(msgs)
    b.send(Q("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND name NOT LIKE 'DOORMAN%'"))
    assert w.rows(b.read_until_ready()) == [[b"0"]]
    assert b.scalar("SELECT current_setting('transaction_isolation')") == "read committed"
    b.send(Q("SELECT pg_is_in_recovery(), now() = statement_timestamp()"))
    assert w.rows(b.read_until_ready()) == [[b"f", b"t"]]
    b.close()


def test_extended_copy_releases_server(dm1):
    """A libpq-style COPY FROM STDIN via the extended protocol sends Sync before CopyData; the backend
    ignores that Sync, so only one ReadyForQuery comes. The server must still be released."""
    a = _connect(dm1)
    a.send(P("", "COPY pgbench_history (tid, bid, aid, delta) FROM STDIN") + B() + E() + S())
    a.read_until(b"G")
    a.send(w.copy_data(b"1\t1\t1\t0\n") + w.copy_done() + S())
    msgs = a.read_until_ready()
    assert "CZ" in w.types(msgs), w.normalise(msgs)
    # a is idle now; with pool_size 1 another client must get the backend.
    b = _connect(dm1)
    assert b.scalar("SELECT 1") == "1"
    b.close()
    a.send(P("", "SELECT 2") + B() + E() + S())
    assert w.rows(a.read_until_ready()) == [[b"2"]]
    a.close()


@pytest.mark.parametrize("sql", ["DISCARD ALL", "DEALLOCATE ALL"])
def test_simple_client_clearing_backend_statements(dm1, sql):
    """A client that only uses the simple protocol runs DISCARD ALL / DEALLOCATE ALL on the shared
    backend (pool_size 1): the DOORMAN_n statements there are gone, and an extended client whose
    statement the pooler believes is still prepared on that backend must not get
    'prepared statement "DOORMAN_n" does not exist'."""
    a = _connect(dm1)
    a.send(P("s", "SELECT 'a' || $1::text") + B("", "s", [b"1"]) + E() + S())
    assert w.rows(a.read_until_ready()) == [[b"a1"]]
    b = _connect(dm1)
    msgs = b.query(sql)
    assert w.types(msgs).endswith("CZ"), w.normalise(msgs)
    b.close()
    a.send(B("", "s", [b"2"]) + E() + S())
    msgs = a.read_until_ready()
    assert w.rows(msgs) == [[b"a2"]], w.normalise(msgs)
    a.close()


def test_query_and_parse_in_one_packet(pg, dual):
    """The first extended message arrives in the same write as a simple Query (no quiet point
    between them): the named statement must still be tracked and work on other backends."""
    dual.run([
        (Q("SELECT 1") + P("qp", "SELECT $1::int + 1 AS r") + S(), 2),
        (B("", "qp", [b"1"]) + E() + S(), 1),
        (B("", "qp", [b"2"]) + E() + S(), 1),
        (B("", "qp", [b"3"]) + E() + S(), 1),
    ])
