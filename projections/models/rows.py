"""Rows folded per key: load the rows a batch touches, fold its events over them in log order,
write back the ones that changed. One SELECT and one pipelined upsert per batch, whatever its
size, so a rebuild runs at the speed of the table, not of the events.

Every rows table has ``generation`` first in its primary key (revision 0003), then its key: one
column (rows by that column's value) or several (rows by the tuple of their values). The SQL
here is built from the table's own column names (constants in code, never input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import asyncpg

__all__ = ["RowTable", "touched"]

Row = dict[str, Any]


@dataclass(frozen=True)
class RowTable:
    name: str
    key: str | tuple[str, ...]  # the column(s) after generation in the primary key
    columns: tuple[str, ...]  # every column but generation, the key first

    @cached_property
    def _key_columns(self) -> tuple[str, ...]:
        return (self.key,) if isinstance(self.key, str) else self.key

    def _key_of(self, row: Mapping[str, Any]) -> Any:
        """The row's key: its key column's value, or the tuple of its key columns' values."""
        if isinstance(self.key, str):
            return row[self.key]
        return tuple(row[c] for c in self.key)

    @cached_property
    def _select(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name} WHERE generation = $1"  # noqa: S608

    @cached_property
    def _upsert(self) -> str:
        names = ", ".join(("generation", *self.columns))
        values = ", ".join(f"${i}" for i in range(1, len(self.columns) + 2))
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns if c not in self._key_columns)
        return (
            f"INSERT INTO {self.name} ({names}) VALUES ({values}) "  # noqa: S608
            f"ON CONFLICT (generation, {', '.join(self._key_columns)}) DO UPDATE SET {updates}"
        )

    async def fetch(
        self, conn: asyncpg.Connection, generation: int, condition: str, *args: Any
    ) -> dict[Any, Row]:
        """Rows of ``generation`` matching ``condition`` (SQL over the table's columns, with
        bind parameters from $2), by key."""
        rows = await conn.fetch(f"{self._select} AND ({condition})", generation, *args)
        return {self._key_of(row): dict(row) for row in rows}

    async def upsert(
        self, conn: asyncpg.Connection, generation: int, rows: Iterable[Mapping[str, Any]]
    ) -> None:
        records = [(generation, *(row[c] for c in self.columns)) for row in rows]
        if records:
            await conn.executemany(self._upsert, records)


def touched(rows: Mapping[Any, Row], changed: Sequence[Any]) -> list[Row]:
    """The rows whose keys a batch changed, in first-change order, once each."""
    return [rows[k] for k in dict.fromkeys(changed) if k in rows]
