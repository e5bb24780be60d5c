"""prepared_statements: false and session mode: named statements are forwarded untouched."""
from __future__ import annotations

import wire as w
from wire import Wire
from test_extended_dual import USER, PASSWORD, P, B, E, S, Q


def _connect(dm) -> Wire:
    return Wire.connect(dm.host, dm.port, USER, PASSWORD)


def test_prepared_statements_disabled_within_transaction(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=2, prepared_statements=False))
    c = _connect(dm)
    c.query("BEGIN")
    c.send(P("raw", "SELECT $1::int + 1") + S())
    assert w.types(c.read_until_ready()) == "1Z"
    # The backend sees the client's own name (no remapping).
    c.send(Q("SELECT name FROM pg_prepared_statements"))
    assert w.rows(c.read_until_ready()) == [[b"raw"]]
    c.send(B("", "raw", [b"1"]) + E() + S())
    assert w.rows(c.read_until_ready()) == [[b"2"]]
    c.query("COMMIT")
    c.close()


def test_prepared_statements_disabled_across_transactions(doorman, doorman_config):
    """Like PgBouncer without prepared statement support: a statement prepared in one transaction is
    gone in the next (another backend, or the same backend cleaned), with PostgreSQL's own error."""
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=2, prepared_statements=False))
    c = _connect(dm)
    holder = _connect(dm)
    c.send(P("raw", "SELECT 1") + S())
    c.read_until_ready()
    holder.query("BEGIN; SELECT 1")  # c's next transaction lands on the other backend
    c.send(B("", "raw") + E() + S())
    msgs = c.read_until_ready()
    errs = [w.error_fields(b) for t, b in msgs if t == b"E"]
    assert errs and errs[0]["C"] == "26000" and errs[0]["M"] == 'prepared statement "raw" does not exist', \
        w.normalise(msgs)
    holder.query("COMMIT")
    # The connection is still usable.
    c.send(P("", "SELECT 5") + B() + E() + S())
    assert w.rows(c.read_until_ready()) == [[b"5"]]
    c.close()
    holder.close()


def test_transaction_mode_remaps_names(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=2))
    c = _connect(dm)
    c.query("BEGIN")
    c.send(P("mine", "SELECT 1 AS remap_probe") + S())
    c.read_until_ready()
    c.send(Q("SELECT name FROM pg_prepared_statements WHERE statement = 'SELECT 1 AS remap_probe'"))
    names = [r[0] for r in w.rows(c.read_until_ready())]
    c.query("COMMIT")
    assert len(names) == 1 and names[0].startswith(b"DOORMAN_"), names
    c.close()


def test_session_mode_forwards_untouched(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="session", pool_size=2))
    c = _connect(dm)
    c.send(P("sess", "SELECT pg_backend_pid(), $1::int") + S())
    c.read_until_ready()
    pids = set()
    for i in range(5):
        c.send(B("", "sess", [str(i).encode()]) + E() + S())
        r = w.rows(c.read_until_ready())
        pids.add(r[0][0])
        assert r[0][1] == str(i).encode()
    assert len(pids) == 1
    c.send(Q("SELECT name FROM pg_prepared_statements"))
    assert w.rows(c.read_until_ready()) == [[b"sess"]]
    # Parse of an existing name: PostgreSQL's own 42P05.
    c.send(P("sess", "SELECT 2") + S())
    errs = [w.error_fields(b) for t, b in c.read_until_ready() if t == b"E"]
    assert errs and errs[0]["C"] == "42P05"
    # SQL-level PREPARE / EXECUTE / DEALLOCATE go to the backend.
    c.send(Q("PREPARE sqlp AS SELECT 42; EXECUTE sqlp; DEALLOCATE sqlp"))
    msgs = c.read_until_ready()
    assert w.rows(msgs) == [[b"42"]], w.normalise(msgs)
    c.close()


def test_extended_copy_without_statement_remapping_releases_server(doorman, doorman_config):
    """prepared_statements: false keeps the raw relay: COPY FROM STDIN through the extended protocol
    (libpq sends Sync before the data; PostgreSQL ignores it) must still give the server back."""
    import wire as w
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=1, prepared_statements=False,
                                query_wait_timeout=3000))
    a = w.Wire.connect(dm.host, dm.port, "example_user_md5", "md5pass")
    a.send(w.parse("", "COPY pgbench_history (tid, bid, aid, delta) FROM STDIN") + w.bind() + w.execute() + w.sync())
    a.read_until(b"G")
    a.send(w.copy_data(b"1\t1\t1\t0\n") + w.copy_done() + w.sync())
    msgs = a.read_until_ready()
    assert "CZ" in w.types(msgs), w.normalise(msgs)
    b = w.Wire.connect(dm.host, dm.port, "example_user_md5", "md5pass")
    assert b.scalar("SELECT 1") == "1"
    b.close()
    a.close()
