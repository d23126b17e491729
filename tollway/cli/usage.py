"""`tollway usage`: usage and cost totals from the daily rollup."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tollway.cli.common import ConfigOpt, console, read_settings, run
from tollway.store.usage import GROUPINGS, report

_USAGE_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "cache_write_tokens",
                  "cache_read_tokens", "cost_usd")



def usage(
    by: Annotated[str, typer.Option(help="Group by key, user, group, model or day.")] = "key",
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC, inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (UTC, inclusive).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Usage and cost totals from the daily rollup."""
    if by not in GROUPINGS:
        raise typer.BadParameter(f"--by must be one of {', '.join(GROUPINGS)}")
    try:
        first = date.fromisoformat(since) if since else None
        last = date.fromisoformat(until) if until else None
    except ValueError as exc:
        raise typer.BadParameter(f"dates are YYYY-MM-DD: {exc}") from None
    rows = run(read_settings(config), lambda db: report(db, by, first, last))
    for r in rows:
        r["cost_usd"] = r["cost_micros"] / 1_000_000
    if as_json:
        typer.echo(json.dumps(rows))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[by, *_USAGE_COLUMNS, "cost_micros"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(out.getvalue(), nl=False)
    else:
        table = Table(by, *_USAGE_COLUMNS)
        for r in rows:
            table.add_row(Text(str(r[by] or "-")), *(Text(f"{r[c]:.6f}" if c == "cost_usd" else str(r[c]))
                                                     for c in _USAGE_COLUMNS))
        console.print(table, highlight=False)

