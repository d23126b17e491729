"""The `tollway` command line. Every command works on a fresh directory: the store is created
and migrated on first use."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tollway.config import ConfigError, Settings, load_settings
from tollway.governance.identity import create_key
from tollway.store.db import Database
from tollway.store.keys import KeyStore

app = typer.Typer(help="Tollway, the governed LLM gateway.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
config_app = typer.Typer(help="Check a configuration file.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="YAML config file (default: $TOLLWAY_CONFIG, else built-in).")
]


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _with_store(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(settings.store.url)
        try:
            await db.migrate()
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(run())


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default from config).")] = None,
) -> None:
    """Run the gateway."""
    import uvicorn

    from tollway.app import create_app

    settings = _settings(config)

    async def first_key(db: Database) -> str | None:
        keys = KeyStore(db)
        if await keys.count():
            return None
        _, secret = await create_key(keys, "default")
        return secret

    secret = _with_store(settings, first_key)
    if secret:
        console.print("[bold]First start: created API key 'default'. It is shown once; keep it:[/bold]")
        console.print(f"  {secret}", highlight=False, soft_wrap=True)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"Tollway listening on http://{bind_host}:{bind_port}", highlight=False)
    uvicorn.run(
        create_app(settings), host=bind_host, port=bind_port, loop="uvloop", http="httptools",
        access_log=False, log_level="warning", lifespan="on",
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print its secret, once."""
    settings = _settings(config)
    row, secret = _with_store(settings, lambda db: create_key(KeyStore(db), name))
    if as_json:
        typer.echo(json.dumps({"id": row.id, "name": row.name, "key": secret}))
    else:
        console.print(f"Created key [bold]{row.id}[/bold] ({row.name}). The secret is shown once:")
        console.print(f"  {secret}", highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List keys (display prefix only; secrets are never stored)."""
    settings = _settings(config)
    rows = _with_store(settings, lambda db: KeyStore(db).all())
    if as_json:
        typer.echo(json.dumps([
            {"id": r.id, "name": r.name, "prefix": r.prefix, "created_at": r.created_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}
            for r in rows
        ]))
        return
    table = Table("id", "name", "prefix", "created", "status")
    for r in rows:
        table.add_row(r.id, r.name, r.prefix + "…", r.created_at.strftime("%Y-%m-%d %H:%M"),
                      "active" if r.active else "revoked")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (key_…).")], config: ConfigOpt = None) -> None:
    """Revoke a key; it fails on its next request (within the key refresh interval)."""
    settings = _settings(config)
    if not _with_store(settings, lambda db: KeyStore(db).revoke(key_id)):
        err.print(f"no active key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"Revoked {key_id}.")


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate a config file and summarise it."""
    settings = _settings(config)
    console.print(f"config OK: {len(settings.models)} model(s), store {settings.store.url}", highlight=False)
    for m in settings.models:
        console.print(f"  {m.id} -> {m.upstream.provider}:{m.upstream_model}", highlight=False)
