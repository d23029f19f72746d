"""Keyset pages over a read model's view: equality filters, then the rows after a cursor.

A page is ``WHERE <filters> AND (k1, k2) > (cursor) ORDER BY k1, k2 LIMIT n``: each page is
one index range scan that starts where the last one stopped, however deep the caller pages,
and rows written meanwhile never shift a page (as OFFSET would). The SQL is built from the
caller's column names (constants in code, never input); every value is a bind parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from core.errors import InvalidInput

__all__ = ["MAX_LIMIT", "fetch_page"]

MAX_LIMIT = 1000


async def fetch_page(
    conn: asyncpg.Connection,
    view: str,
    columns: Sequence[str],
    filters: Mapping[str, Any],
    order: Sequence[str],
    after: Sequence[Any] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Rows of ``view`` whose ``filters`` columns equal their values (None: not filtered),
    ordered by ``order``, after ``after`` (a value per ``order`` column), at most ``limit``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    conditions: list[str] = []
    args: list[Any] = []
    for column, value in filters.items():
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    if after is not None:
        assert len(after) == len(order), f"a cursor on {order} needs {len(order)} values"
        args.extend(after)
        marks = ", ".join(f"${len(args) - len(after) + i + 1}" for i in range(len(after)))
        conditions.append(f"({', '.join(order)}) > ({marks})")
    args.append(limit)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT {', '.join(columns)} FROM {view}{where} "  # noqa: S608
        f"ORDER BY {', '.join(order)} LIMIT ${len(args)}"
    )
    return list(await conn.fetch(sql, *args))
