"""Plumbing every command shares: the config, the store, error mapping and auditing of changes.

The `users`, `groups` and `keys` commands mirror the admin API but work straight on the store,
so an operator can bootstrap access (and recover from a lost admin key) with no gateway running.
A missing row or a refused change is one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tollway.config import ConfigError, Settings, load_settings, sqlite_path
from tollway.governance.audit import AuditLog, new_writer_id
from tollway.store.audit import write_batch as write_audit
from tollway.store.db import Database
from tollway.store.errors import Conflict, NotFound
from tollway.store.principals import Directory

console = Console()
err = Console(stderr=True)
T = TypeVar("T")
Record = dict[str, Any]

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="YAML config file (default: $TOLLWAY_CONFIG, else built-in).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
UserRef = Annotated[str, typer.Argument(help="The user's id (usr_…) or name.")]
GroupRef = Annotated[str, typer.Argument(help="The group's id (grp_…) or name.")]
KeyId = Annotated[str, typer.Argument(help="The key id (key_…).")]


def read_settings(path: str | None, *, upstream_secrets: bool = False) -> Settings:
    """The config for a command. Only commands that talk to upstreams (`serve`, `config check`)
    pass `upstream_secrets=True`: the admin commands work without the providers' secrets."""
    try:
        return load_settings(path, upstream_secrets=upstream_secrets)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


# Commands that change the organisation: each success is written to the audit log, as changes
# made through the admin API are, with the operating-system user as the actor.
CHANGES = {
    "keys create", "keys revoke", "keys rotate", "users create", "users update", "users disable", "users enable",
    "groups create", "groups update", "groups delete", "groups grant", "groups ungrant", "groups add-member",
    "groups remove-member", "limits set", "limits clear", "users set-role",
}


async def audit_cli_change(db: Database, result: object) -> None:
    """Audit a successful change made from the command line: the command as typed (no secret is
    ever typed: secrets are generated), the object it created or changed, and who ran it."""
    args = sys.argv[1:]
    action = " ".join(args[:2])
    if action not in CHANGES:
        return
    shown: list[str] = []
    skip = False
    for arg in args[2:]:
        if skip:
            skip = False
            continue
        if arg in ("--config", "-c"):
            skip = True
            continue
        shown.append(arg)
    first = result[0] if isinstance(result, tuple) else result  # (row, secret) for a new key
    records: list[dict[str, Any]] = []
    log = AuditLog(records.append, new_writer_id("cli"))
    log.change(action.replace(" ", "."), getattr(first, "id", None), {"via": "cli", "os_user": getpass.getuser()},
               args=shown)
    log.close()
    await write_audit(db, records)


def store_name(settings: Settings) -> str:
    """The store as an operator recognises it: the SQLite file's path, or the database's host/name
    (never the URL, which may hold a password)."""
    path = sqlite_path(settings.store.url)
    if path is not None:
        return str(path)
    url = make_url(settings.store.url)
    return f"{url.get_backend_name()} database {url.database or '?'} on {url.host or 'localhost'}"


async def _is_new(db: Database, settings: Settings) -> bool:
    """True when the store does not exist yet (no SQLite file, or a database without our schema)."""
    path = sqlite_path(settings.store.url)
    if path is not None:
        return not path.exists()
    async with db.engine.connect() as conn:
        try:
            await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except Exception:
            return True
    return False


def with_store(settings: Settings, work: Callable[[Database], Awaitable[T]], *, create: bool | None = None) -> T:
    """Open the store, bring its schema up to date, run WORK, and audit it if it was a change.

    A store that does not exist yet is created only by a command that changes something
    (`create`; by default: the commands in CHANGES), and it says so on stderr; a command that only
    reads refuses instead of showing an empty new store, which would hide a wrong path.
    """
    creates = create if create is not None else " ".join(sys.argv[1:3]) in CHANGES

    async def run() -> T:
        path = sqlite_path(settings.store.url)
        if path is not None and not path.exists() and not creates:
            fail(f"no store at {path}. The gateway keeps its store there when it runs with the same config; "
                 "give the gateway's config with --config (or $TOLLWAY_CONFIG), or create the store with "
                 "`tollway serve` or a first change such as `tollway keys create`.")
        db = Database(settings.store.url)
        try:
            if await _is_new(db, settings):
                if not creates:
                    fail(f"the {store_name(settings)} has no Tollway store yet; start `tollway serve` or make a "
                         "first change (e.g. `tollway keys create`) to create it.")
                err.print(f"Creating a new, empty store: {store_name(settings)}", highlight=False, soft_wrap=True,
                          markup=False)
            await db.migrate()
            result = await work(db)
            if settings.audit.enabled:
                await audit_cli_change(db, result)
            return result
        finally:
            await db.close()

    return asyncio.run(run())


def fail(message: str, code: int = 1) -> NoReturn:
    # Plain echo, not Rich: messages quote user input, which must not be read as markup.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """`with_store`, with the store's NotFound/Conflict turned into a message and exit 1.

    The one place errors are mapped, so commands stay a single store call each.
    """
    try:
        return with_store(settings, work)
    except (NotFound, Conflict) as exc:
        fail(str(exc))


def fetch(settings: Settings, as_json: bool, work: Callable[[Database], Awaitable[T]]) -> tuple[T, dict[str, str]]:
    """Run WORK and, for a table, also read id -> name for users and groups.

    JSON keeps ids (stable for scripts); tables show names, which is what a person recognises.
    """

    async def both(db: Database) -> tuple[T, dict[str, str]]:
        data = await work(db)
        if as_json:
            return data, {}
        d = Directory(db)
        names = {u.id: u.name for u in await d.list_users()}
        names.update({g.id: g.name for g in await d.list_groups()})
        return data, names

    return run(settings, both)

