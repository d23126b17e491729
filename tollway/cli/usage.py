"""`tollway usage`: usage and cost totals from the daily rollup, with names and budgets.

The table is for people: names beside ids, the budget used and left, and columns chosen to fit
an 80-column terminal (`--wide` adds the cache columns, for a terminal of about 100). `--json`
and `--csv` are for scripts and keep their shape: ids and the raw totals, one row per group.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from tollway.cli.common import ConfigOpt, console, read_settings, run

if TYPE_CHECKING:
    from rich.table import Table

    from tollway.store.db import Database

# The fields --json and --csv have always carried, in this order (scripts depend on them).
_USAGE_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "cache_write_tokens",
                  "cache_read_tokens", "cost_usd")


def count(n: int) -> str:
    """A token count a person can read at a glance: 987, 12.3k, 4.56M."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M" if n < 1_000_000_000 else f"{n / 1_000_000_000:.2f}G"


def usd(micros: int) -> str:
    """Dollars with the precision that matters: cents above $1, more below."""
    value = micros / 1_000_000
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def _label(r: dict[str, Any], by: str) -> Text:
    ident = r[by]
    if not ident:
        return Text("(none)", style="dim")
    if r.get("name") is None:
        return Text(str(ident))
    return Text.assemble(str(r["name"]), "\n", (str(ident), "dim"))


def _budget_cells(r: dict[str, Any]) -> tuple[Text, Text]:
    b = r.get("budget")
    if b is None:
        return Text("-"), Text("-")
    per = "/day" if b.period == "day" else "/mo"
    left = Text(usd(b.left_micros), style="red" if b.left_micros == 0 else "")
    return Text(f"{usd(b.spent_micros)}\nof {usd(b.limit_micros)}{per}"), left


def _table(rows: list[dict[str, Any]], by: str, wide: bool) -> Table:
    from rich import box
    from rich.table import Table

    scoped = by in ("key", "user", "group")
    # One space between columns and room for a whole id: 80 columns hold the default set.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 0, 0, 1))
    table.add_column(by, overflow="fold", min_width=20)
    for head in ("reqs", "errs", "input", "output", *(("cache wr", "cache rd") if wide else ()), "cost"):
        # --wide adds two columns and needs about 100 columns; the default set fits 80.
        table.add_column(head, justify="right", no_wrap=True)
    if scoped:
        table.add_column("budget used", justify="right", no_wrap=True)
        table.add_column("left", justify="right", no_wrap=True)
    for r in rows:
        cells = [_label(r, by), Text(str(r["requests"])), Text(str(r["errors"])), Text(count(r["input_tokens"])),
                 Text(count(r["output_tokens"]))]
        if wide:
            cells += [Text(count(r["cache_write_tokens"])), Text(count(r["cache_read_tokens"]))]
        cells.append(Text(usd(r["cost_micros"])))
        if scoped:
            cells += list(_budget_cells(r))
        table.add_row(*cells)
    return table


def usage(
    by: Annotated[str, typer.Option(help="Group by key, user, group, model or day.")] = "key",
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC, inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (UTC, inclusive).")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this key (key_…).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user (id or name).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only this group (id or name).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model id (as requested).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Add the cache token columns (about 100 columns).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Usage and cost totals from the daily rollup, with names, and budgets used and left."""
    # Imported here, not at the top: every `tollway` command loads this module to register
    # `usage`, and the reports pull in the store's rollups and both SQL dialects.
    from tollway.reports import Filters, usage_report
    from tollway.store.keys import KeyStore
    from tollway.store.principals import Directory
    from tollway.store.usage import GROUPINGS

    if by not in GROUPINGS:
        raise typer.BadParameter(f"--by must be one of {', '.join(GROUPINGS)}")
    try:
        first = date.fromisoformat(since) if since else None
        last = date.fromisoformat(until) if until else None
    except ValueError as exc:
        raise typer.BadParameter(f"dates are YYYY-MM-DD: {exc}") from None
    settings = read_settings(config)

    async def work(db: Database) -> list[dict[str, Any]]:
        d = Directory(db)
        filters = Filters(key_id=(await KeyStore(db).get(key)).id if key else None,
                          user_id=(await d.get_user(user)).id if user else None,
                          group_id=(await d.get_group(group)).id if group else None, model=model)
        return await usage_report(db, settings.limits, by, first, last, filters)

    rows = run(settings, work)
    plain = [{by: r[by], **{c: r[c] for c in _USAGE_COLUMNS[:-1]}, "cost_micros": r["cost_micros"],
              "cost_usd": r["cost_micros"] / 1_000_000} for r in rows]
    if as_json:
        typer.echo(json.dumps(plain))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[by, *_USAGE_COLUMNS, "cost_micros"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(plain)
        typer.echo(out.getvalue(), nl=False)
    else:
        console.print(_table(rows, by, wide), highlight=False)
        if by in ("key", "user", "group"):
            console.print("Budget used: settled cost in the current budget period (UTC); "
                          "the other columns cover the report's dates.", style="dim", highlight=False)
