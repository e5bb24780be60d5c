"""Real drivers using prepared statements in transaction mode with more clients than backends."""
from __future__ import annotations

import asyncio
import threading

import asyncpg
import psycopg
import pytest

from harness import pgbench

MD5_USER, MD5_PW = "example_user_md5", "md5pass"
SCRAM_USER, SCRAM_PW = "example_user_scram", "scrampass"


# -j equals -c: pgbench prepares each command lazily with a *blocking* PQprepare, so with several clients
# per thread one client can block its thread waiting for a backend held (mid-transaction) by another
# client of the same thread — a deadlock with any transaction pooler, unrelated to the pooler.
@pytest.mark.slow
def test_pgbench_prepared_more_clients_than_pool(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=4))
    res = pgbench(["-n", "-M", "prepared", "-c", "20", "-j", "20", "-t", "50", "example_db"],
                  env=dm.env(MD5_USER, MD5_PW), timeout=240)
    assert res.rc == 0, res.stdout + res.stderr
    assert res.processed == 20 * 50, res.stdout
    assert (res.failed or 0) == 0, res.stdout
    assert "error" not in res.stderr.lower(), res.stderr[-3000:]


@pytest.mark.slow
def test_pgbench_prepared_select_only_small_server_cache(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=4, server_prepared_statements_cache_size=2,
                                prepared_statements_cache_size=3))
    res = pgbench(["-n", "-M", "prepared", "-c", "20", "-j", "20", "-t", "50", "example_db"],
                  env=dm.env(MD5_USER, MD5_PW), timeout=240)
    assert res.rc == 0, res.stdout + res.stderr
    assert (res.failed or 0) == 0 and res.processed == 1000, res.stdout + res.stderr[-3000:]


@pytest.mark.slow
def test_asyncpg_default_statement_cache_concurrent(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=4))

    async def worker(k: int) -> None:
        conn = await asyncpg.connect(host=dm.host, port=dm.port, user=SCRAM_USER, password=SCRAM_PW,
                                     database="example_db", timeout=15)
        try:
            for i in range(30):
                assert await conn.fetchval("SELECT $1::int + $2::int", k, i) == k + i
                row = await conn.fetchrow("SELECT aid, abalance FROM pgbench_accounts WHERE aid = $1", i + 1)
                assert row["aid"] == i + 1
                assert await conn.fetchval(f"SELECT {k % 3} + $1::int", i) == k % 3 + i
                if i % 5 == 0:
                    async with conn.transaction():
                        await conn.execute("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = 1", 0)
                        assert await conn.fetchval("SELECT $1::text", "in-tx") == "in-tx"
                    stmt = await conn.prepare("SELECT $1::int * 2")
                    assert await stmt.fetchval(i) == i * 2
                await asyncio.sleep(0)
            rows = await conn.fetch("SELECT generate_series(1, $1::int)", 100)
            assert len(rows) == 100
        finally:
            await conn.close()

    async def main():
        results = await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(30)), return_exceptions=True), 120)
        errs = [r for r in results if isinstance(r, BaseException)]
        assert not errs, errs[:3]

    asyncio.run(main())


@pytest.mark.slow
def test_asyncpg_pool_concurrent(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=4))

    async def main():
        pool = await asyncpg.create_pool(host=dm.host, port=dm.port, user=MD5_USER, password=MD5_PW,
                                         database="example_db", min_size=10, max_size=10)
        try:
            async def job(i):
                async with pool.acquire() as c:
                    assert await c.fetchval("SELECT $1::int", i) == i
                    assert await c.fetchval("SELECT count(*) FROM pgbench_branches WHERE bid = $1", 1) == 1
            await asyncio.wait_for(asyncio.gather(*(job(i) for i in range(300))), 120)
        finally:
            await pool.close()

    asyncio.run(main())


@pytest.mark.slow
def test_psycopg_prepare_threshold_concurrent(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=4))
    errors: list[str] = []

    def worker(k: int):
        try:
            with psycopg.connect(dm.dsn(MD5_USER, MD5_PW), autocommit=True) as conn:
                assert conn.prepare_threshold == 5
                for i in range(25):
                    cur = conn.execute("SELECT %s::int + %s::int", (k, i))
                    assert cur.fetchone()[0] == k + i
                    cur = conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (i + 1,))
                    assert cur.fetchone() is not None
                    if i % 7 == 0:
                        with conn.transaction():
                            conn.execute("SELECT %s::text", ("tx",))
                            conn.execute("SELECT %s::int + %s::int", (1, 2))
                    # prepare=True forces a server-side named statement at once.
                    assert conn.execute("SELECT %s::int * 3", (i,), prepare=True).fetchone()[0] == i * 3
        except Exception as e:  # noqa: BLE001
            errors.append(f"worker {k}: {e!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]


@pytest.mark.slow
def test_psycopg_pipeline_mode(doorman, doorman_config):
    dm = doorman(doorman_config(pool_mode="transaction", pool_size=2))
    _psycopg_pipeline_workers(dm.dsn(SCRAM_USER, SCRAM_PW))


def test_psycopg_pipeline_mode_direct(pg):
    """Control: the same workload straight against PostgreSQL."""
    _psycopg_pipeline_workers(pg.dsn(SCRAM_USER, SCRAM_PW))


def _psycopg_pipeline_workers(dsn: str):
    errors: list[str] = []

    def worker(k: int):
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for _ in range(5):
                    with conn.pipeline():
                        curs = [conn.execute("SELECT %s::int + 1", (i,), prepare=(i % 2 == 0)) for i in range(20)]
                    assert [c.fetchone()[0] for c in curs] == [i + 1 for i in range(20)]
                    try:
                        with conn.pipeline():
                            # prepare=False: psycopg 3.3 itself loses track of a statement it
                            # prepared inside an aborted pipeline (fails against PostgreSQL too).
                            conn.execute("SELECT %s::int", (1,), prepare=False)
                            conn.execute("SELECT 1/0", prepare=False)
                            conn.execute("SELECT %s::int", (2,), prepare=False)
                    except psycopg.errors.DivisionByZero:
                        pass
                    else:
                        errors.append(f"worker {k}: no DivisionByZero")
        except Exception as e:  # noqa: BLE001
            errors.append(f"worker {k}: {e!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
