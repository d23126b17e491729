"""`tollway audit`: verify, export and prune the tamper-evident audit log."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tollway.cli.common import ConfigOpt, JsonOpt, console, read_settings, run
from tollway.cli.timespec import when
from tollway.store import audit as audit_store

if TYPE_CHECKING:
    from tollway.store.db import Database

audit_app = typer.Typer(help="Verify, export and prune the tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Check every writer's hash chain; exit 1 naming the first broken or missing link."""
    from rich.table import Table  # here: every `tollway` command loads this module to register it
    from rich.text import Text

    from tollway.store.audit_checkpoints import verify_all

    settings = read_settings(config)
    reports = run(settings, lambda db: verify_all(db, settings.audit.checkpoint_sink))
    if as_json:
        typer.echo(json.dumps([{"writer": r.writer, "records": r.records, "ok": r.ok, "problem": r.problem}
                               for r in reports]))
    else:
        table = Table("writer", "records", "status")
        for r in reports:
            table.add_row(Text(r.writer), str(r.records), Text("ok" if r.ok else f"BROKEN: {r.problem}"))
        console.print(table, highlight=False)
        total = sum(r.records for r in reports)
        console.print(f"{len(reports)} chain(s), {total} record(s): "
                      + ("all verify." if all(r.ok for r in reports) else "TAMPERING OR LOSS DETECTED."),
                      highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="From this date/datetime (UTC) or span (30d).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date/datetime (UTC).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format (jsonl).")] = "jsonl",
    config: ConfigOpt = None,
) -> None:
    """Stream records as JSON lines, oldest first, each with its prev_hash and hash."""
    if fmt != "jsonl":
        raise typer.BadParameter("only --format jsonl is supported")
    first, last = when(since, "--since"), when(until, "--until")

    async def work(db: Database) -> int:
        n = 0
        out = sys.stdout.buffer
        async for line in audit_store.export(db, since=first, until=last):
            out.write(line)
            n += 1
        out.flush()
        return n

    run(read_settings(config), work)


@audit_app.command("prune")
def audit_prune(
    older_than: Annotated[str | None, typer.Option("--older-than", help="Drop records older than this (e.g. 365d); "
                                                   "a checkpoint keeps the chain verifiable.")] = None,
    payloads_older_than: Annotated[str | None, typer.Option(
        "--payloads-older-than", help="Drop captured payloads older than this (30d).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Apply retention to audit records and captured payloads."""
    if older_than is None and payloads_older_than is None:
        raise typer.BadParameter("give --older-than and/or --payloads-older-than")
    records_before, payloads_before = when(older_than, "--older-than"), when(payloads_older_than,
                                                                              "--payloads-older-than")
    records, payloads = run(read_settings(config), lambda db: audit_store.prune(
        db, records_before=records_before, payloads_before=payloads_before))
    console.print(f"Pruned {records} audit record(s) and {payloads} payload(s).", highlight=False)

