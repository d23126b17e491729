"""`tollway conversations`: retention for stored /v1/responses state."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tollway.cli.common import ConfigOpt, JsonOpt, console, read_settings, run
from tollway.cli.timespec import when

conversations_app = typer.Typer(help="Stored /v1/responses state: responses and conversations.", no_args_is_help=True)


@conversations_app.command("prune")
def conversations_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Delete responses created, and conversations last "
                                            "added to, before this (a span such as 30d, or an ISO date).")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Apply retention to stored responses and conversations (with their items)."""
    from tollway.store.conversations import prune

    before = when(older_than, "--older-than")
    assert before is not None
    removed, conversations = run(read_settings(config), lambda db: prune(db, before))
    if as_json:
        typer.echo(json.dumps({"responses": removed, "conversations": conversations}))
    else:
        console.print(f"Pruned {removed} response(s) and {conversations} conversation(s).", highlight=False)
