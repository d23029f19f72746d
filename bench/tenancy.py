"""The cost of row-level security, for `chronicle bench append`: the same appends and reads as
the tables' owner (who bypasses the policies) and as a tenant (``eventstore.tenancy``: the
tenant role and setting taken in each transaction, every row checked by the policy), in the
same run, alternating, so that drift on a noisy machine hits both.

Appends call ``chronicle_append`` directly, one transaction per call, on 8 connections: the
cost RLS adds to a transaction is one extra round trip (taking the role) and the policy's
check of each row. Reads are the log as a tenant sees it, a page of 5,000 at a time, and one
stream of 10,000 events, all the tenant's rows, against the owner's same query.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from eventstore.log.reads import LogFilter, read_all_sql, read_stream_sql
from eventstore.pg import connect
from eventstore.tenancy import as_tenant

__all__ = ["tenancy_figures"]

APPEND = "SELECT outcome FROM chronicle_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
TENANT = "acme"
READ_ALL_UP_TO = 200_000  # the first 200,000 positions of the log, in pages of 5,000


def _args(stream_id: str, version: int, n: int, data: bytes, meta: bytes) -> list[Any]:
    return [
        [stream_id],
        [version],
        [TENANT],
        [0],
        [n],
        [uuid.uuid4() for _ in range(n)],
        ["TaskProgress"] * n,
        [1] * n,
        [data] * n,
        [meta] * n,
    ]


@contextlib.asynccontextmanager
async def _owner(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    async with conn.transaction():
        yield conn


def _scoped(tenant: bool) -> Callable[[asyncpg.Connection], contextlib.AbstractAsyncContextManager[Any]]:
    return (lambda conn: as_tenant(conn, TENANT)) if tenant else _owner


async def _appends(
    conns: list[asyncpg.Connection], tenant: bool, per_call: int, seconds: float, data: bytes, meta: bytes
) -> float:
    """Events per second over ``seconds`` of appends of ``per_call`` events on every connection."""
    scope = _scoped(tenant)
    tag = uuid.uuid4().hex[:8]
    deadline = time.perf_counter() + seconds
    written = 0

    async def loop(i: int) -> None:
        nonlocal written
        version = 0
        while time.perf_counter() < deadline:
            async with scope(conns[i]) as conn:
                outcome = await conn.fetchval(APPEND, *_args(f"rls{tag}-{i}", version, per_call, data, meta))
            assert outcome == "ok", outcome
            version += per_call
            written += per_call

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(len(conns))))
    return written / (time.perf_counter() - started)


async def _alternate(measure: Callable[[bool], Awaitable[float]], rounds: int = 3) -> dict[str, Any]:
    """Median of owner and tenant rates, alternating which goes first."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(rounds):
        for as_tenant_ in (False, True) if round_ % 2 == 0 else (True, False):
            rates[as_tenant_].append(await measure(as_tenant_))
    owner, tenant = (sorted(rates[k])[rounds // 2] for k in (False, True))
    return {
        "owner_per_s": round(owner),
        "tenant_per_s": round(tenant),
        "tenant_over_owner": round(tenant / owner, 3),
    }


async def tenancy_figures(url: str, stream_id: str, *, seconds: float = 2.0) -> dict[str, Any]:
    """``stream_id``: a stream of 10,000 of the tenant's events already in the log."""
    from bench.append import DATA, META

    conns = [await connect(url) for _ in range(8)]
    try:
        single = await _alternate(lambda t: _appends(conns, t, 1, seconds, DATA, META))
        hundred = await _alternate(lambda t: _appends(conns[:1], t, 100, seconds, DATA, META))
        conn = conns[0]

        async def read_all(tenant: bool) -> float:
            sql, args = read_all_sql(LogFilter(tenant_id=TENANT), 0, READ_ALL_UP_TO, 5000)
            count, started = 0, time.perf_counter()
            while True:
                async with _scoped(tenant)(conn):
                    page = await conn.fetch(sql, *args)
                count += len(page)
                if len(page) < 5000:
                    return count / (time.perf_counter() - started)
                args[0] = page[-1]["global_position"] + 1

        async def read_stream(tenant: bool) -> float:
            started = time.perf_counter()
            for _ in range(5):
                async with _scoped(tenant)(conn):
                    assert len(await conn.fetch(read_stream_sql(False), stream_id, 1, 2**31 - 1)) == 10_000
            return 50_000 / (time.perf_counter() - started)

        return {
            "append_single_8_connections": single,
            "append_hundred": hundred,
            "read_all": await _alternate(read_all),
            "read_stream_10k": await _alternate(read_stream),
        }
    finally:
        for c in conns:
            await c.close()
