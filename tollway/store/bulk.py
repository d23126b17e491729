"""Batch inserts for the write-behind tables, sent to the driver as one executemany.

The ledger and the audit log take one row per request, so their writes are the only store work
that grows with traffic. Through SQLAlchemy's compiled-statement path each row cost about 60 µs
(usage) and 23 µs (audit) of CPU on SQLite, mostly per-row bind processing; the driver's own
executemany of ready tuples costs about 12 µs. This module builds the plain SQL once per
(dialect, table, columns) and hands the driver tuples in column order.

Rows are mappings of column to value. A datetime (aware, UTC) is sent as the column's
SQLAlchemy type would have written it — ISO text on SQLite, the datetime itself to asyncpg — so
rows written here read back exactly like rows written by the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


def _sqlite_value(value: Any) -> Any:
    """SQLAlchemy's storage format for DateTime on SQLite, `2026-01-31 12:00:00.000000` (always six
    fractional digits, UTC here). `isoformat` writes the same text as the `strftime` pattern
    `%Y-%m-%d %H:%M:%S.%f` at a fraction of its cost: `strftime` builds a struct_time and goes
    through the C library, and with two records per request it was 4-5% of the gateway's
    instructions per request (callgrind, bench/instructions.py)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def _sqlite_row(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """`values` with each datetime in SQLite's text form (the tuple itself when it has none).
    The columns are found by type in C (`map`, `count`, `index`), so a row costs one Python call
    rather than one per column. The records hold plain `datetime`s (`datetime.fromtimestamp`)."""
    types = tuple(map(type, values))
    n = types.count(datetime)
    if not n:
        return values
    out = list(values)
    i = -1
    for _ in range(n):
        i = types.index(datetime, i + 1)
        out[i] = _sqlite_value(out[i])
    return tuple(out)


@lru_cache(maxsize=16)
def _getter(columns: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A row's values in column order, as a tuple, picked in C (`operator.itemgetter`)."""
    pick = itemgetter(*columns)
    if len(columns) == 1:  # itemgetter of one key gives the value, not a 1-tuple
        return lambda row: (pick(row),)
    return pick


@lru_cache(maxsize=16)
def insert_sql(dialect: str, paramstyle: str, table: str, columns: tuple[str, ...],
               conflict: tuple[str, ...] = ()) -> str:
    """`INSERT INTO t (cols) VALUES (params)`, with `ON CONFLICT (…) DO NOTHING` when asked.

    Both SQLite (3.24+) and PostgreSQL accept that conflict clause as written here.
    """
    if paramstyle in ("numeric_dollar", "numeric"):
        mark = "$" if paramstyle == "numeric_dollar" else ":"
        params = ", ".join(f"{mark}{i}" for i in range(1, len(columns) + 1))
    elif paramstyle == "qmark":
        params = ", ".join("?" for _ in columns)
    elif paramstyle == "format":
        params = ", ".join("%s" for _ in columns)
    else:  # pragma: no cover - the two supported drivers are aiosqlite (qmark) and asyncpg
        raise ValueError(f"unsupported paramstyle {paramstyle!r} on {dialect}")
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params})"
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    return sql


async def insert_many(conn: AsyncConnection, table: str, columns: tuple[str, ...],
                      rows: Sequence[Mapping[str, Any]], conflict: tuple[str, ...] = ()) -> None:
    """Insert `rows` (their `columns`, in that order) with one driver-level executemany."""
    if not rows:
        return
    dialect = conn.dialect
    sql = insert_sql(dialect.name, dialect.paramstyle, table, columns, conflict)
    values = _getter(columns)
    sqlite = dialect.name == "sqlite"
    params = [_sqlite_row(values(row)) if sqlite else values(row) for row in rows]
    await conn.exec_driver_sql(sql, params)
