"""Values made storable before they are recorded: bounded to their column, without NUL bytes.

A record's values come from clients and upstreams (a model id, an upstream error type), so
nothing bounds them. PostgreSQL refuses a `varchar(200)` value of 201 characters and any text
containing NUL, and one such value failed the whole batch it was in — and, replayed first from
the spill file, every batch after it. Every string column of the ledger and of the audit log's
filter columns goes through `clean` before it is written: NUL bytes are removed, and a value longer
than its column is cut and marked with `TRUNCATED` so that a reader sees it was cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import String, Table

TRUNCATED = "…[truncated]"
_UNBOUNDED = 1 << 62  # a Text column: no length limit


@lru_cache(maxsize=8)
def string_lengths(table: Table) -> dict[str, int]:
    """Column name → maximum length, for the table's bounded string columns."""
    return {c.name: int(c.type.length) for c in table.columns
            if isinstance(c.type, String) and c.type.length is not None}


def clean(value: Any, limit: int | None) -> Any:
    """`value` without NUL bytes and cut (with a marker) to `limit` characters; non-strings as they are."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "")
    if limit is not None and len(value) > limit:
        keep = max(0, limit - len(TRUNCATED))
        value = value[:keep] + TRUNCATED[: limit - keep]
    return value


def clean_row(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `row` with every string bounded to its column in `table` and freed of NUL bytes.

    Written for the write-behind path (two rows per request): a value that needs nothing — nearly
    all of them — costs a type test, a substring test and a length test, not a call of `clean`."""
    lengths = string_lengths(table)
    out = dict(row)
    for k, v in row.items():
        if isinstance(v, str) and ("\x00" in v or len(v) > lengths.get(k, _UNBOUNDED)):
            out[k] = clean(v, lengths.get(k))
    return out
