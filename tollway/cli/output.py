"""How records are shown: a table or a field/value card for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from tollway.cli.common import Record, console
from tollway.store.keys import KeyRow
from tollway.store.principals import GroupRow, UserRow


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def cell(value: Any) -> str:
    if value is None or value == ():
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def for_people(rec: Record, names: Mapping[str, str]) -> Record:
    """A record as a table shows it: ids of users and groups replaced by their names."""
    out = dict(rec)
    for field in ("groups", "members"):
        if field in out:
            out[field] = tuple(sorted(names.get(i, i) for i in out[field]))
    if "prefix" in out:
        out["prefix"] += "…"
        out["owner"] = (f"user {names.get(rec['user_id'], rec['user_id'])}" if rec["user_id"]
                        else f"group {names.get(rec['group_id'], rec['group_id'])}" if rec["group_id"] else None)
        if rec["kind"] == "data" and rec["models"] is None:
            out["models"] = "all granted"
    return out


def emit(data: Record | list[Record], as_json: bool, columns: Sequence[str] = (),
          names: Mapping[str, str] | None = None) -> None:
    """Print one record as a field/value card or a list as a table with COLUMNS; or either as JSON."""
    if as_json:
        typer.echo(json.dumps(data, default=json_default))
        return
    if isinstance(data, dict):
        table = Table(show_header=False)
        for field, value in for_people(data, names or {}).items():
            table.add_row(field, Text(cell(value)))
    else:
        table = Table(*(c.removesuffix("_at") for c in columns))
        for rec in data:
            shown = for_people(rec, names or {})
            # Text, not str: names and globs like `claude-[0-9]*` must not be read as Rich markup.
            table.add_row(*(Text(cell(shown.get(c))) for c in columns))
    console.print(table, highlight=False)


def user_record(u: UserRow) -> Record:
    return {"id": u.id, "name": u.name, "email": u.email, "disabled": u.disabled, "created_at": u.created_at,
            "groups": list(u.groups)}


def group_record(g: GroupRow) -> Record:
    return {"id": g.id, "name": g.name, "description": g.description, "created_at": g.created_at,
            "grants": list(g.grants), "members": list(g.members)}


def key_record(k: KeyRow) -> Record:
    """A key without its hash: enough to audit it, nothing that helps guess it."""
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "kind": k.kind, "user_id": k.user_id,
            "group_id": k.group_id, "models": list(k.models) if k.models is not None else None,
            "created_at": k.created_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at,
            "replaced_by": k.replaced_by, "status": k.status()}
