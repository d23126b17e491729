"""The `tollway` command line. Every command works on a fresh directory: the store is created
and migrated on first use.

The `users`, `groups` and `keys` commands mirror the admin API but work straight on the store,
so an operator can bootstrap access (and recover from a lost admin key) with no gateway running.
Output is a table for people and `--json` for scripts; a missing row or a refused change is
one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tollway.config import DEFAULT_CONFIG_ENV, ConfigError, Settings, deployment_problem, load_settings
from tollway.governance.audit import AuditLog, new_writer_id
from tollway.governance.identity import create_key, rotate_key
from tollway.observability import configure_logging
from tollway.store import audit as audit_store
from tollway.store.audit import write_batch as write_audit
from tollway.store.db import Database
from tollway.store.errors import Conflict, NotFound
from tollway.store.keys import KeyRow, KeyStore
from tollway.store.limit_rows import LimitRow, LimitStore
from tollway.store.principals import Directory, GroupRow, UserRow
from tollway.store.usage import GROUPINGS, report

app = typer.Typer(help="Tollway, the governed LLM gateway.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Create, list and change users.", no_args_is_help=True)
groups_app = typer.Typer(help="Groups: their model grants and their members.", no_args_is_help=True)
config_app = typer.Typer(help="Check a configuration file.", no_args_is_help=True)
limits_app = typer.Typer(help="Rate limits and budgets of a key, user or group.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify, export and prune the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(groups_app, name="groups")
app.add_typer(config_app, name="config")
app.add_typer(limits_app, name="limits")
app.add_typer(audit_app, name="audit")

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


# -- plumbing shared by every command ------------------------------------------------------


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


# Commands that change the organisation: each success is written to the audit log, as changes
# made through the admin API are, with the operating-system user as the actor.
_CHANGES = {
    "keys create", "keys revoke", "keys rotate", "users create", "users update", "users disable", "users enable",
    "groups create", "groups update", "groups delete", "groups grant", "groups ungrant", "groups add-member",
    "groups remove-member", "limits set", "limits clear",
}


async def _audit_cli_change(db: Database, result: object) -> None:
    """Audit a successful change made from the command line: the command as typed (no secret is
    ever typed: secrets are generated), the object it created or changed, and who ran it."""
    args = sys.argv[1:]
    action = " ".join(args[:2])
    if action not in _CHANGES:
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
    await write_audit(db, records)


def _with_store(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(settings.store.url)
        try:
            await db.migrate()
            result = await work(db)
            if settings.audit.enabled:
                await _audit_cli_change(db, result)
            return result
        finally:
            await db.close()

    return asyncio.run(run())


def _fail(message: str, code: int = 1) -> NoReturn:
    # Plain echo, not Rich: messages quote user input, which must not be read as markup.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """`_with_store`, with the store's NotFound/Conflict turned into a message and exit 1.

    The one place errors are mapped, so commands stay a single store call each.
    """
    try:
        return _with_store(settings, work)
    except (NotFound, Conflict) as exc:
        _fail(str(exc))


def _fetch(settings: Settings, as_json: bool, work: Callable[[Database], Awaitable[T]]) -> tuple[T, dict[str, str]]:
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

    return _run(settings, both)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _cell(value: Any) -> str:
    if value is None or value == ():
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _for_people(rec: Record, names: Mapping[str, str]) -> Record:
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


def _emit(data: Record | list[Record], as_json: bool, columns: Sequence[str] = (),
          names: Mapping[str, str] | None = None) -> None:
    """Print one record as a field/value card or a list as a table with COLUMNS; or either as JSON."""
    if as_json:
        typer.echo(json.dumps(data, default=_json_default))
        return
    if isinstance(data, dict):
        table = Table(show_header=False)
        for field, value in _for_people(data, names or {}).items():
            table.add_row(field, Text(_cell(value)))
    else:
        table = Table(*(c.removesuffix("_at") for c in columns))
        for rec in data:
            shown = _for_people(rec, names or {})
            # Text, not str: names and globs like `claude-[0-9]*` must not be read as Rich markup.
            table.add_row(*(Text(_cell(shown.get(c))) for c in columns))
    console.print(table, highlight=False)


def _user(u: UserRow) -> Record:
    return {"id": u.id, "name": u.name, "email": u.email, "disabled": u.disabled, "created_at": u.created_at,
            "groups": list(u.groups)}


def _group(g: GroupRow) -> Record:
    return {"id": g.id, "name": g.name, "description": g.description, "created_at": g.created_at,
            "grants": list(g.grants), "members": list(g.members)}


def _key(k: KeyRow) -> Record:
    """A key without its hash: enough to audit it, nothing that helps guess it."""
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "kind": k.kind, "user_id": k.user_id,
            "group_id": k.group_id, "models": list(k.models) if k.models is not None else None,
            "created_at": k.created_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at,
            "replaced_by": k.replaced_by, "status": k.status()}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def _duration(text: str) -> timedelta:
    """`90s`, `45m`, `12h`, `30d`, `2w`: the spans people type for grace periods and lifetimes."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 45m, 12h, 30d or 2w")
    return timedelta(seconds=int(m[1]) * _UNITS[m[2]])


def _expiry(text: str) -> datetime:
    """A duration from now, or an ISO date/datetime (a date means its midnight, UTC when no zone)."""
    now = datetime.now(UTC)
    if _DURATION.fullmatch(text.strip()):
        return now + _duration(text)
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither a duration (30d, 12h, 45m, 90s) nor an ISO date") from None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if ts <= now:
        raise typer.BadParameter(f"{text} is in the past")
    return ts


# -- serve ---------------------------------------------------------------------------------


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default from config).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes sharing the port (default from config).")] = None,
) -> None:
    """Run the gateway."""
    import uvicorn

    from tollway.app import create_app
    from tollway.first_key import hand_over
    from tollway.serving import http_protocol, raise_file_limit

    settings = _settings(config)
    n_workers = workers or settings.server.workers
    problem = deployment_problem(settings, n_workers)
    if problem:
        err.print(f"[red]config error:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    async def first_key(db: Database) -> str | None:
        keys = KeyStore(db)
        if await keys.count():
            return None
        _, secret = await create_key(keys, "default")
        return secret

    secret = _with_store(settings, first_key)
    if secret:  # on the terminal, or in a 0600 file when not attached to one (tollway/first_key.py)
        hand_over(secret, Path(settings.server.first_key_file), console)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    configure_logging()
    raise_file_limit()
    console.print(f"Tollway listening on http://{bind_host}:{bind_port} ({n_workers} worker(s))", highlight=False)
    options: dict[str, Any] = {"host": bind_host, "port": bind_port, "loop": "uvloop",
                               # uvicorn's httptools protocol, each answer's head and body in one
                               # write, with the header timeout and connection cap (tollway/serving.py).
                               "http": http_protocol(settings.server.header_timeout, settings.server.max_connections),
                               "timeout_keep_alive": settings.server.keep_alive_timeout,
                               "access_log": False, "log_level": "warning", "lifespan": "on", "log_config": None,
                               "timeout_graceful_shutdown": settings.server.shutdown_grace,
                               # No `server: uvicorn` on every response: it names the software to an
                               # attacker and costs a header (uvicorn regex-checks each one it writes).
                               "server_header": False}
    if n_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Worker processes build their own app from the same config file.
    if config:
        os.environ[DEFAULT_CONFIG_ENV] = str(Path(config).resolve())
    uvicorn.run("tollway.app:app_from_env", factory=True, workers=n_workers, **options)


# -- users ---------------------------------------------------------------------------------

_USER_COLUMNS = ("id", "name", "email", "groups", "disabled", "created_at")


def _show_user(settings: Settings, as_json: bool, work: Callable[[Directory], Awaitable[UserRow]]) -> None:
    user, names = _fetch(settings, as_json, lambda db: work(Directory(db)))
    _emit(_user(user), as_json, names=names)


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="A unique name.")],
    email: Annotated[str | None, typer.Option("--email", help="A unique email address.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Add to this group (repeatable).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Create a user, optionally already in groups, so access is granted in one step."""

    async def work(d: Directory) -> UserRow:
        # Resolve every group first: a typo must not leave a user behind without its groups.
        gids = list(dict.fromkeys([(await d.get_group(g)).id for g in group or ()]))
        user = await d.create_user(name, email)
        for gid in gids:
            await d.add_member(gid, user.id)
        return await d.get_user(user.id)

    _show_user(_settings(config), as_json, work)


@users_app.command("list")
def users_list(
    group: Annotated[str | None, typer.Option("--group", "-g", help="Only members of this group.")] = None,
    disabled: Annotated[bool | None, typer.Option("--disabled/--enabled", help="Only disabled / enabled users.",
                                                  show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List users, oldest first."""
    rows, names = _fetch(_settings(config), as_json,
                         lambda db: Directory(db).list_users(group=group, disabled=disabled))
    _emit([_user(u) for u in rows], as_json, _USER_COLUMNS, names)


@users_app.command("get")
def users_get(ref: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show one user and the groups it is in."""
    _show_user(_settings(config), as_json, lambda d: d.get_user(ref))


@users_app.command("update")
def users_update(
    ref: UserRef,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="New email address.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Rename a user or change its email; options left out are unchanged."""
    _show_user(_settings(config), as_json, lambda d: d.update_user(ref, name=name, email=email))


@users_app.command("disable")
def users_disable(ref: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Stop all of a user's keys at once, without revoking them (`enable` brings them back)."""
    _show_user(_settings(config), as_json, lambda d: d.update_user(ref, disabled=True))


@users_app.command("enable")
def users_enable(ref: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Let a disabled user's keys work again."""
    _show_user(_settings(config), as_json, lambda d: d.update_user(ref, disabled=False))


# -- groups --------------------------------------------------------------------------------

_GROUP_COLUMNS = ("id", "name", "description", "grants", "members", "created_at")


def _show_group(settings: Settings, as_json: bool, work: Callable[[Directory], Awaitable[GroupRow]]) -> None:
    group, names = _fetch(settings, as_json, lambda db: work(Directory(db)))
    _emit(_group(group), as_json, names=names)


@groups_app.command("create")
def groups_create(
    name: Annotated[str, typer.Argument(help="A unique name.")],
    description: Annotated[str, typer.Option("--description", "-d", help="What the group is for.")] = "",
    grant: Annotated[list[str] | None, typer.Option("--grant", help="A model id or glob it may use (repeatable).")]
    = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Create a group with its model grants."""
    _show_group(_settings(config), as_json, lambda d: d.create_group(name, description, grant or []))


@groups_app.command("list")
def groups_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List groups, oldest first (the built-in `default` group is always there)."""
    rows, names = _fetch(_settings(config), as_json, lambda db: Directory(db).list_groups())
    _emit([_group(g) for g in rows], as_json, _GROUP_COLUMNS, names)


@groups_app.command("get")
def groups_get(ref: GroupRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show one group with its grants and members."""
    _show_group(_settings(config), as_json, lambda d: d.get_group(ref))


@groups_app.command("update")
def groups_update(
    ref: GroupRef,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d", help="New description.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Rename a group or change its description; options left out are unchanged."""
    _show_group(_settings(config), as_json, lambda d: d.update_group(ref, name, description))


@groups_app.command("delete")
def groups_delete(ref: GroupRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Delete a group with its grants and memberships; refused while it owns active keys."""

    async def work(d: Directory) -> GroupRow:
        group = await d.get_group(ref)
        await d.delete_group(group.id)
        return group

    group = _run(_settings(config), lambda db: work(Directory(db)))
    if as_json:
        _emit({"id": group.id, "name": group.name, "deleted": True}, True)
    else:
        console.print(f"Deleted group {group.name} ({group.id}).", highlight=False, markup=False)


@groups_app.command("grant")
def groups_grant(
    ref: GroupRef,
    pattern: Annotated[str, typer.Argument(help="A model id or glob, e.g. 'claude-*'.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Let a group's members and keys use the models PATTERN matches."""
    _show_group(_settings(config), as_json, lambda d: d.add_grant(ref, pattern))


@groups_app.command("ungrant")
def groups_ungrant(
    ref: GroupRef,
    pattern: Annotated[str, typer.Argument(help="The grant to remove, exactly as listed.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Remove one grant from a group."""
    _show_group(_settings(config), as_json, lambda d: d.remove_grant(ref, pattern))


@groups_app.command("add-member")
def groups_add_member(group: GroupRef, user: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Put a user in a group: its personal keys gain the group's grants."""
    _show_group(_settings(config), as_json, lambda d: d.add_member(group, user))


@groups_app.command("remove-member")
def groups_remove_member(group: GroupRef, user: UserRef, as_json: JsonOpt = False,
                         config: ConfigOpt = None) -> None:
    """Take a user out of a group."""
    _show_group(_settings(config), as_json, lambda d: d.remove_member(group, user))


# -- keys ----------------------------------------------------------------------------------

_KEY_COLUMNS = ("id", "name", "prefix", "kind", "owner", "models", "expires_at", "status")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")],
    user: Annotated[str | None, typer.Option("--user", help="Owner: a user (id or name); a personal key.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Owner: a group (id or name); a service key.")] = None,
    models: Annotated[list[str] | None, typer.Option("--models", help="Narrow to these models or globs "
                                                     "(repeatable; default: all the owner is granted).")] = None,
    expires: Annotated[datetime | None, typer.Option("--expires", parser=_expiry, metavar="WHEN",
                                                     help="30d, 12h, 45m, 90s, or an ISO date/datetime.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A control-plane key: no owner, no models.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print its secret, once. Without --user/--group it belongs to the `default` group."""
    if admin and (user or group or models):
        _fail("--admin keys open only the control plane: they take no --user, --group or --models", 2)
    if user and group:
        _fail("a key belongs to a user or to a group: give --user or --group, not both", 2)

    async def work(db: Database) -> tuple[KeyRow, str]:
        d = Directory(db)
        return await create_key(
            KeyStore(db), name, kind="admin" if admin else "data",
            user_id=(await d.get_user(user)).id if user else None,
            group_id=(await d.get_group(group)).id if group else None,
            models=models, expires_at=expires,
        )

    row, secret = _run(_settings(config), work)
    if as_json:
        _emit({"id": row.id, "name": row.name, "key": secret, "kind": row.kind, "user_id": row.user_id,
               "group_id": row.group_id, "models": list(row.models) if row.models is not None else None,
               "expires_at": row.expires_at}, True)
    else:
        console.print(f"Created {row.kind} key [bold]{row.id}[/bold] ({escape(row.name)}). The secret is shown once:",
                      highlight=False, soft_wrap=True)
        console.print(f"  {secret}", highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only keys of this user (id or name).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only keys of this group (id or name).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Only admin keys.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List keys, oldest first (display prefix only; secrets are never stored)."""

    async def work(db: Database) -> list[KeyRow]:
        d = Directory(db)
        return await KeyStore(db).all(
            user_id=(await d.get_user(user)).id if user else None,
            group_id=(await d.get_group(group)).id if group else None,
            kind="admin" if admin else None,
        )

    rows, names = _fetch(_settings(config), as_json, work)
    _emit([_key(k) for k in rows], as_json, _KEY_COLUMNS, names)


@keys_app.command("get")
def keys_get(key_id: KeyId, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show one key: owner, models, expiry, status, and what replaced it."""
    row, names = _fetch(_settings(config), as_json, lambda db: KeyStore(db).get(key_id))
    _emit(_key(row), as_json, names=names)


@keys_app.command("revoke")
def keys_revoke(key_id: KeyId, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Revoke a key; it fails on its next request (within the key refresh interval)."""
    row = _run(_settings(config), lambda db: KeyStore(db).revoke(key_id))
    if as_json:
        _emit(_key(row), True)
    else:
        console.print(f"Revoked {key_id}.", highlight=False, markup=False)


@keys_app.command("rotate")
def keys_rotate(
    key_id: KeyId,
    grace: Annotated[timedelta | None, typer.Option("--grace", parser=_duration, metavar="SPAN",
                                                    help="How long the old secret keeps working "
                                                         "(default: key_rotation_grace from the config).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Replace a key's secret; the old one keeps working for the grace period so clients can switch."""
    settings = _settings(config)
    span = grace if grace is not None else timedelta(seconds=settings.key_rotation_grace)
    old, new, secret = _run(settings, lambda db: rotate_key(KeyStore(db), key_id, span))
    if as_json:
        _emit({"id": new.id, "key": secret, "replaces": old.id, "old_key_expires_at": old.expires_at}, True)
    else:
        console.print(f"Rotated {old.id} -> [bold]{new.id}[/bold] ({escape(new.name)}). The new secret is shown once:",
                      highlight=False, soft_wrap=True)
        console.print(f"  {secret}", highlight=False, soft_wrap=True)
        ends = old.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if old.expires_at else "-"
        console.print(f"The old secret keeps working until {ends}.", highlight=False)


# -- config --------------------------------------------------------------------------------


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate a config file and summarise it."""
    settings = _settings(config)
    console.print(f"config OK: {len(settings.models)} model(s), store {settings.store.url}", highlight=False)
    for m in settings.models:
        for name, weight, up in m.all_deployments:
            console.print(f"  {m.id} -> {up.provider}:{up.model or m.id} ({name}, weight {weight:g})", highlight=False)


# -- limits --------------------------------------------------------------------------------

ScopeArg = Annotated[str, typer.Argument(help="key, user or group.")]
RefArg = Annotated[str, typer.Argument(help="The key id, or the user's or group's id or name.")]


def _scope(scope: str) -> str:
    if scope not in ("key", "user", "group"):
        raise typer.BadParameter("scope must be key, user or group")
    return scope


def _limits(r: LimitRow) -> Record:
    return {"scope": r.scope, "scope_id": r.scope_id, "rpm": r.rpm, "tpm": r.tpm, "concurrent": r.concurrent,
            "budget_usd": r.budget_micros / 1_000_000 if r.budget_micros is not None else None,
            "budget_period": r.budget_period}


_LIMIT_COLUMNS = ("scope", "scope_id", "rpm", "tpm", "concurrent", "budget_usd", "budget_period")


@limits_app.command("set")
def limits_set(
    scope: ScopeArg,
    ref: RefArg,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens (input + output) per minute.")] = None,
    concurrent: Annotated[int | None, typer.Option(min=1, help="Requests in flight at once.")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="USD per period.")] = None,
    period: Annotated[str, typer.Option(help="Budget period: day or month (UTC).")] = "month",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Give a scope its own limits (they replace the config defaults for it; omitted = unlimited)."""
    if period not in ("day", "month"):
        raise typer.BadParameter("period must be day or month")
    settings = _settings(config)
    micros = round(budget * 1_000_000) if budget is not None else None
    row = _run(settings, lambda db: LimitStore(db).set(_scope(scope), ref, rpm=rpm, tpm=tpm, concurrent=concurrent,
                                                      budget_micros=micros, budget_period=period))
    _emit(_limits(row), as_json)


@limits_app.command("get")
def limits_get(scope: ScopeArg, ref: RefArg, as_json: Annotated[bool, typer.Option("--json")] = False,
               config: ConfigOpt = None) -> None:
    """Show a scope's own limits."""
    row = _run(_settings(config), lambda db: LimitStore(db).get(_scope(scope), ref))
    if row is None:
        _fail(f"{scope} {ref} has no limits of its own (the config defaults apply)")
    _emit(_limits(row), as_json)


@limits_app.command("clear")
def limits_clear(scope: ScopeArg, ref: RefArg, config: ConfigOpt = None) -> None:
    """Remove a scope's own limits, so the config defaults apply again."""
    _run(_settings(config), lambda db: LimitStore(db).clear(_scope(scope), ref))
    console.print(f"Cleared the limits of {scope} {ref}.", highlight=False)


@limits_app.command("list")
def limits_list(as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOpt = None) -> None:
    """Every scope with limits of its own."""
    rows = _run(_settings(config), lambda db: LimitStore(db).all())
    _emit([_limits(r) for r in rows], as_json, _LIMIT_COLUMNS)


# -- usage ---------------------------------------------------------------------------------

_USAGE_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "cache_write_tokens",
                  "cache_read_tokens", "cost_usd")


@app.command()
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
    rows = _run(_settings(config), lambda db: report(db, by, first, last))
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


# -- audit ---------------------------------------------------------------------------------


def _when(text: str | None, name: str) -> datetime | None:
    """An ISO date or datetime (UTC when no zone), or a span back from now such as 30d."""
    if text is None:
        return None
    if _DURATION.fullmatch(text.strip()):
        return datetime.now(UTC) - _duration(text)
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{name}: {text!r} is neither an ISO date nor a span like 30d") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Check every writer's hash chain; exit 1 naming the first broken or missing link."""
    reports = _run(_settings(config), audit_store.verify)
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
    first, last = _when(since, "--since"), _when(until, "--until")

    async def work(db: Database) -> int:
        n = 0
        out = sys.stdout.buffer
        async for line in audit_store.export(db, since=first, until=last):
            out.write(line)
            n += 1
        out.flush()
        return n

    _run(_settings(config), work)


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
    records_before, payloads_before = _when(older_than, "--older-than"), _when(payloads_older_than,
                                                                              "--payloads-older-than")
    records, payloads = _run(_settings(config), lambda db: audit_store.prune(
        db, records_before=records_before, payloads_before=payloads_before))
    console.print(f"Pruned {records} audit record(s) and {payloads} payload(s).", highlight=False)


# -- conversations (/v1/responses state) ---------------------------------------------------

conversations_app = typer.Typer(help="Stored /v1/responses state: responses and conversations.", no_args_is_help=True)
app.add_typer(conversations_app, name="conversations")


@conversations_app.command("prune")
def conversations_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Delete responses created, and conversations last "
                                            "added to, before this (a span such as 30d, or an ISO date).")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Apply retention to stored responses and conversations (with their items)."""
    from tollway.store.conversations import prune

    before = _when(older_than, "--older-than")
    assert before is not None
    removed, conversations = _run(_settings(config), lambda db: prune(db, before))
    if as_json:
        typer.echo(json.dumps({"responses": removed, "conversations": conversations}))
    else:
        console.print(f"Pruned {removed} response(s) and {conversations} conversation(s).", highlight=False)
