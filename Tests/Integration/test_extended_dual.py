"""Protocol fidelity: the same frontend message sequence sent to PostgreSQL directly and through the
pooler must produce the same backend messages (ParameterStatus, BackendKeyData, notices ignored).

Transaction mode runs with pool_size 2 and a "shuffler" client that alternately holds and releases a
backend between steps, so consecutive steps of the client under test land on different backends
(LIFO idle queue): statements must be re-prepared transparently. Session mode must forward untouched.
"""
from __future__ import annotations

import pytest

import wire as w
from wire import Wire

USER = "example_user_scram"
PASSWORD = "scrampass"

# A step: (bytes to send, how to read): int n = until the n-th ReadyForQuery; b"G"/b"H"/... = until that
# message type; "quiet" = whatever arrives within a quiet period (Flush without Sync).
Step = tuple[bytes, object]


def _read(c: Wire, how) -> list:
    if isinstance(how, int):
        return c.read_until_ready(how)
    if isinstance(how, bytes):
        return c.read_until(how)
    if how == "quiet":
        return c.read_for(0.4)
    if how == "none":
        return []
    raise ValueError(how)


def _transcript(c: Wire, steps: list[Step], between=None) -> list:
    out = []
    for i, (data, how) in enumerate(steps):
        if between is not None:
            between(i)
        c.send(data)
        try:
            got = _read(c, how)
        except TimeoutError as e:
            got = [(b"!", f"TIMEOUT {e}".encode())]
            out.append((i, w.normalise(got)))
            break
        out.append((i, w.normalise(got)))
    return out


class Dual:
    def __init__(self, pg, dm, mode):
        self.pg, self.dm, self.mode = pg, dm, mode

    def run(self, steps: list[Step], setup_sql: str | None = None, shuffle: bool = True):
        if setup_sql:
            self.pg.su_psql(setup_sql, db="example_db")
        direct = Wire.connect(self.pg.host, self.pg.port, USER, PASSWORD)
        try:
            expected = _transcript(direct, steps)
        finally:
            direct.close()
        if setup_sql:
            self.pg.su_psql(setup_sql, db="example_db")
        pooled = Wire.connect(self.dm.host, self.dm.port, USER, PASSWORD)
        shuffler = None
        state = {"held": False}
        if self.mode == "transaction" and shuffle:
            shuffler = Wire.connect(self.dm.host, self.dm.port, USER, PASSWORD)

            def between(i):
                # Toggle: hold a backend (BEGIN + a statement) or give it back.
                if state["held"]:
                    shuffler.query("COMMIT")
                else:
                    shuffler.query("BEGIN; SELECT 1")
                state["held"] = not state["held"]
        else:
            between = None
        try:
            got = _transcript(pooled, steps, between)
        finally:
            pooled.close()
            if shuffler is not None:
                if state["held"]:
                    try:
                        shuffler.query("COMMIT")
                    except Exception:
                        pass
                shuffler.close()
        g, e = _fmt(got), _fmt(expected)
        if g != e:
            import difflib
            diff = "\n".join(difflib.unified_diff(e, g, "postgres", "pooler", lineterm="", n=4))
            raise AssertionError(f"pooler transcript differs from PostgreSQL ({self.mode}):\n{diff}")
        return got

    def pooled(self) -> Wire:
        return Wire.connect(self.dm.host, self.dm.port, USER, PASSWORD)


def _fmt(transcript):
    """Line-per-message rendering so a pytest diff points at the first differing message."""
    lines = []
    for i, msgs in transcript:
        for m in msgs:
            lines.append(f"step {i}: {m[0]} {m[1]!r}")
        lines.append(f"step {i}: --")
    return lines


@pytest.fixture(params=["transaction", "session"])
def dual(request, pg, doorman, doorman_config):
    mode = request.param
    cfg = doorman_config(pool_mode=mode, pool_size=2 if mode == "transaction" else 4)
    dm = doorman(cfg)
    return Dual(pg, dm, mode)


P, B, D, E, S, H, C = w.parse, w.bind, w.describe, w.execute, w.sync, w.flush, w.close
Q = w.query


def test_simple_queries(dual):
    dual.run([
        (Q("SELECT 1"), 1),
        (Q("SELECT 1 AS a; SELECT 'x' AS b, NULL AS c"), 1),
        (Q("SELECT 1/0"), 1),
        (Q("SELECT 1; SELECT 1/0; SELECT 3"), 1),
        (Q(""), 1),
        (Q(";"), 1),
        (Q("SELEC broken"), 1),
        (Q("BEGIN; SELECT 1/0"), 1),
        (Q("SELECT 1"), 1),
        (Q("ROLLBACK"), 1),
        (Q("BEGIN"), 1),
        (Q("SELECT 2"), 1),
        (Q("COMMIT"), 1),
        (Q("SELECT generate_series(1, 50)"), 1),
    ])


def test_extended_unnamed(dual):
    dual.run([
        (P("", "SELECT $1::int + 1") + B("", "", [b"41"]) + D("P") + E() + S(), 1),
        # The unnamed statement survives the Sync.
        (B("", "", [b"1"]) + E() + S(), 1),
        (D("S", "") + S(), 1),
        # A simple Query drops it.
        (Q("SELECT 1"), 1),
        (B("", "", [b"1"]) + E() + S(), 1),
        (D("S", "") + S(), 1),
        (P("", "SELECT $1::text || 'x'", [25]) + D("S", "") + B("", "", [b"a"]) + E() + S(), 1),
        # Parse error of "" leaves no unnamed statement.
        (P("", "SELEC nope") + S(), 1),
        (B("", "", []) + E() + S(), 1),
        # Empty query through the extended protocol.
        (P("", "") + B() + E() + S(), 1),
        # Wrong parameter count.
        (P("", "SELECT $1::int") + B("", "", []) + E() + S(), 1),
    ])


def test_extended_named(dual):
    dual.run([
        (P("s1", "SELECT $1::int * 2 AS doubled") + S(), 1),
        (B("", "s1", [b"1"]) + E() + S(), 1),
        (B("", "s1", [b"2"]) + E() + S(), 1),
        (D("S", "s1") + S(), 1),
        (B("p1", "s1", [b"3"]) + D("P", "p1") + E("p1") + S(), 1),
        (P("s2", "SELECT $1::text AS t, $2::int AS i", [25, 23]) + D("S", "s2") + S(), 1),
        (B("", "s2", [b"a", b"7"]) + E() + B("", "s1", [b"5"]) + E() + S(), 1),
        # Unknown names.
        (B("", "nope", []) + E() + S(), 1),
        (D("S", "nope") + S(), 1),
        (B("", "s1", [b"9"]) + E() + S(), 1),
        # Parsing an existing name is an error (42P05) and the batch is skipped until Sync.
        (P("s1", "SELECT 42") + B("", "s1", [b"1"]) + E() + S(), 1),
        (B("", "s1", [b"4"]) + E() + S(), 1),
        # Binary results.
        (B("", "s1", [b"\x00\x00\x00\x05"], param_formats=[1], result_formats=[1]) + E() + S(), 1),
    ])


def test_pipelined_batches(dual):
    batch = b""
    for i in range(10):
        batch += P("", f"SELECT {i} AS n, $1::int AS p") + B("", "", [str(i).encode()]) + D("P") + E() + S()
    named = P("pipe", "SELECT $1::int + 100 AS x")
    for i in range(10):
        named += B("", "pipe", [str(i).encode()]) + D("P") + E() + S()
    dual.run([
        (batch, 10),
        (named, 10),
        (Q("SELECT 'between'"), 1),
        (named.replace(P("pipe", "SELECT $1::int + 100 AS x"), b""), 10),
    ])


def test_error_mid_pipeline(dual):
    dual.run([
        (P("ok", "SELECT $1::int AS v") + S(), 1),
        # Error in the middle: everything after it up to Sync is skipped, then the next batch runs.
        (B("", "ok", [b"1"]) + E()
         + P("", "SELECT 1/0") + B() + E()
         + P("later", "SELECT 2") + B("", "later") + E()
         + B("", "ok", [b"2"]) + E() + S()
         + B("", "ok", [b"3"]) + E() + S(), 2),
        # "later" was skipped, so it does not exist.
        (B("", "later") + E() + S(), 1),
        # Parse error in the middle.
        (P("bad", "SELEC x") + B("", "bad") + E() + S() + P("bad", "SELECT 'fixed'") + B("", "bad") + E() + S(), 2),
        # Error inside an explicit transaction block: status E until ROLLBACK.
        (Q("BEGIN"), 1),
        (B("", "ok", [b"x"]) + E() + S(), 1),
        (B("", "ok", [b"5"]) + E() + S(), 1),
        (Q("ROLLBACK"), 1),
        (B("", "ok", [b"6"]) + E() + S(), 1),
    ])


def test_flush_then_sync(dual):
    dual.run([
        (P("f1", "SELECT $1::int + 1 AS r") + H(), "quiet"),
        (B("", "f1", [b"1"]) + D("P") + E() + H(), "quiet"),
        (S(), 1),
        (P("", "SELECT 1/0") + B() + E() + H(), "quiet"),
        (B("", "f1", [b"2"]) + E() + H(), "quiet"),
        (S(), 1),
        (B("", "f1", [b"3"]) + E() + S(), 1),
    ])


def test_describe_and_close(dual):
    dual.run([
        (P("d1", "SELECT $1::int AS a, 'x'::text AS b") + D("S", "d1") + S(), 1),
        (P("d2", "INSERT INTO pgbench_history (tid, bid, aid, delta) SELECT 1, 1, 1, 1 WHERE false") + D("S", "d2") + S(), 1),
        (B("p", "d1", [b"1"]) + D("P", "p") + C("P", "p") + D("P", "p") + S(), 1),
        (C("S", "d1") + S(), 1),
        (B("", "d1", [b"1"]) + E() + S(), 1),
        (C("S", "d1") + C("S", "never") + C("P", "never") + S(), 1),
        (P("d1", "SELECT 'again'") + B("", "d1") + E() + S(), 1),
        (P("", "SELECT 7") + C("S", "") + B() + E() + S(), 1),
        (D("S", "d2") + S(), 1),
    ])


def test_portal_suspension(dual):
    dual.run([
        (P("", "SELECT generate_series(1, 7) AS g") + B("", "") + E("", 3) + E("", 3) + E("", 3) + E("", 3) + S(), 1),
        (Q("BEGIN"), 1),
        (P("cur", "SELECT generate_series(1, 5) AS g") + B("c1", "cur") + E("c1", 2) + S(), 1),
        (E("c1", 2) + S(), 1),
        (E("c1", 0) + S(), 1),
        (E("c1", 1) + S(), 1),
        (Q("COMMIT"), 1),
        (E("c1", 1) + S(), 1),
    ])


COPY_TABLE = "ext_copy_dual"
COPY_SETUP = (f"DROP TABLE IF EXISTS {COPY_TABLE}; CREATE TABLE {COPY_TABLE} (a int, b text); "
              f"GRANT ALL ON {COPY_TABLE} TO example_user_scram")


def test_copy_simple(dual):
    dual.run([
        (Q(f"COPY {COPY_TABLE} FROM STDIN"), b"G"),
        (w.copy_data(b"1\tone\n2\ttwo\n") + w.copy_data(b"3\tthree\n") + w.copy_done(), 1),
        (Q(f"COPY {COPY_TABLE} TO STDOUT"), 1),
        (Q(f"COPY (SELECT a, b FROM {COPY_TABLE} ORDER BY a) TO STDOUT WITH (FORMAT csv)"), 1),
        (Q(f"COPY {COPY_TABLE} FROM STDIN"), b"G"),
        (w.copy_data(b"4\tfour\n") + w.copy_fail("client gave up"), 1),
        (Q(f"COPY {COPY_TABLE} FROM STDIN"), b"G"),
        (w.copy_data(b"not-a-number\tx\n") + w.copy_done(), 1),
        (Q(f"SELECT count(*), sum(a) FROM {COPY_TABLE}"), 1),
    ], setup_sql=COPY_SETUP)


def test_copy_extended(dual):
    dual.run([
        # libpq style: Sync sent right after Execute (ignored by the backend while in COPY IN).
        (P("", f"COPY {COPY_TABLE} FROM STDIN") + B() + E() + S(), b"G"),
        (w.copy_data(b"1\tone\n2\ttwo\n") + w.copy_done() + S(), 1),
        # Sync only after CopyDone.
        (P("", f"COPY {COPY_TABLE} FROM STDIN") + B() + E() + H(), b"G"),
        (w.copy_data(b"3\tthree\n") + w.copy_done() + S(), 1),
        # CopyFail in the extended protocol.
        (P("", f"COPY {COPY_TABLE} FROM STDIN") + B() + E() + S(), b"G"),
        (w.copy_data(b"9\tnine\n") + w.copy_fail("nope") + S(), 1),
        (P("cto", f"COPY (SELECT a, b FROM {COPY_TABLE} ORDER BY a) TO STDOUT") + B("", "cto") + E() + S(), 1),
        (B("", "cto") + E() + S(), 1),
        (Q(f"SELECT count(*), sum(a) FROM {COPY_TABLE}"), 1),
    ], setup_sql=COPY_SETUP)


def test_function_call(dual, pg):
    oid = int(pg.su_psql("SELECT 'pg_catalog.abs(int4)'::regprocedure::oid", db="example_db").strip())
    dual.run([
        (w.function_call(oid, [b"-42"], [0], 0), 1),
        (w.function_call(oid, [b"\xff\xff\xff\xfe"], [1], 1), 1),
        (P("fc", "SELECT $1::int") + S(), 1),
        (w.function_call(oid, [None], [0], 0), 1),
        (B("", "fc", [b"3"]) + E() + S(), 1),
        (w.function_call(oid, [b"x"], [0], 0), 1),
    ])


def test_deallocate_unknown_inside_transaction_fails_it(dual):
    """An unknown DEALLOCATE inside a transaction aborts it, as in PostgreSQL (also once the session
    relays through the statement rewriter, which answers DEALLOCATE itself outside transactions)."""
    dual.run([
        (P("s1", "SELECT 1") + S(), 1),
        (Q("DEALLOCATE s1"), 1),
        (Q("BEGIN"), 1),
        (Q("DEALLOCATE nosuch"), 1),
        (Q("SELECT 1"), 1),
        (Q("ROLLBACK"), 1),
        (Q("DEALLOCATE nosuch"), 1),
    ])


# Unnamed-only traffic is relayed raw; the first message that needs the prepared-statement rewriter
# switches the session over mid-stream, with the replies to the raw part still in flight.

def test_named_after_raw_unnamed_in_one_batch(dual):
    dual.run([
        (P("", "SELECT $1::int AS u") + B("", "", [b"1"]) + D("P") + E()
         + P("n1", "SELECT $1::int * 10 AS n") + B("", "n1", [b"2"]) + E() + S(), 1),
        (B("", "n1", [b"3"]) + E() + S(), 1),
        (B("", "", [b"4"]) + E() + S(), 1),
    ])


def test_named_after_flushed_raw_part(dual):
    dual.run([
        (P("", "SELECT $1::int AS u") + B("", "", [b"1"]) + D("P") + E() + H(), "quiet"),
        (P("n2", "SELECT 'named'::text AS t") + B("", "n2") + E() + S(), 1),
        (B("", "n2") + E() + S(), 1),
        (B("", "", [b"5"]) + E() + S(), 1),
    ])


def test_named_after_failed_raw_part(dual):
    dual.run([
        (P("", "SELECT 1/0") + B() + E() + H(), "quiet"),
        # Skipped by the backend: n3 is never defined.
        (P("n3", "SELECT 3") + B("", "n3") + E() + S(), 1),
        (B("", "n3") + E() + S(), 1),
        (P("n3", "SELECT 33 AS again") + B("", "n3") + E() + S(), 1),
    ])


def test_named_after_synced_raw_batches_in_flight(dual):
    batch = b"".join(P("", f"SELECT {i} AS i") + B() + E() + S() for i in range(5))
    dual.run([
        (batch + P("n4", "SELECT $1::int + 4 AS r") + B("", "n4", [b"1"]) + E() + S(), 6),
        (B("", "n4", [b"2"]) + E() + S(), 1),
    ])


def test_raw_unnamed_replayed_on_another_backend(dual):
    big = "SELECT $1::int + 100 AS r, '" + "x" * 200_000 + "'::text AS pad"
    dual.run([
        (P("", "SELECT $1::int + 100 AS r") + S(), 1),
        (B("", "", [b"1"]) + E() + S(), 1),
        (D("S", "") + S(), 1),
        (B("", "", [b"2"]) + D("P") + E() + S(), 1),
        # A Parse larger than one read is remembered whole as well.
        (P("", big) + S(), 1),
        (B("", "", [b"3"]) + E() + S(), 1),
        (C("S", "") + S(), 1),
        (B("", "", [b"4"]) + E() + S(), 1),
    ])


def test_large_results_of_named_statements(dual):
    # Replies to a Bind/Execute of a statement the backend has are relayed as they arrive (no
    # framing); results of ~1 MB end most reads inside a row. Then batches that need the rewriter's
    # edits (synthetic ParseComplete, an injected Parse) behind or after such results, an error in
    # the middle of one, and DISCARD ALL seen in a raw-relayed reply.
    rows = "SELECT i, repeat('x', 300) AS pad FROM generate_series(1, $1::int) i"
    dual.run([
        (P("big", rows) + S(), 1),
        (B("", "big", [b"3000"]) + E() + S(), 1),
        (B("", "big", [b"2000"]) + E() + P("same", rows) + B("", "same", [b"5"]) + E() + S(), 1),
        (B("", "big", [b"3000"]) + E() + B("", "big", [b"x"]) + E() + B("", "same", [b"2"]) + E() + S(), 1),
        (B("", "same", [b"4000"]) + E(max_rows=1500) + E(max_rows=1500) + E() + S(), 1),
        (B("", "big", [b"1000"]) + E() + S() + B("", "same", [b"1000"]) + E() + S(), 2),
        (Q("DISCARD ALL"), 1),
        (B("", "big", [b"1"]) + E() + S(), 1),
        (P("big", rows) + B("", "big", [b"2500"]) + E() + S(), 1),
    ])
