"""`tollway keys`: create, list, rotate and revoke API keys (secrets are shown once, never stored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape

from tollway.cli.common import ConfigOpt, JsonOpt, KeyId, console, fail, fetch, read_settings, run
from tollway.cli.output import emit, key_record
from tollway.cli.timespec import duration, expiry
from tollway.governance.identity import create_key, rotate_key
from tollway.store.db import Database
from tollway.store.keys import ADMIN_KEY_ROLES, KeyRow, KeyStore
from tollway.store.principals import Directory

keys_app = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)


_KEY_COLUMNS = ("id", "name", "prefix", "kind", "owner", "models", "expires_at", "status")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")],
    user: Annotated[str | None, typer.Option("--user", help="Owner: a user (id or name); a personal key.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Owner: a group (id or name); a service key. "
                                                     "With --admin --role group_admin: a group it administers "
                                                     "(repeatable).")] = None,
    models: Annotated[list[str] | None, typer.Option("--models", help="Narrow to these models or globs "
                                                     "(repeatable; default: all the owner is granted).")] = None,
    expires: Annotated[datetime | None, typer.Option("--expires", parser=expiry, metavar="WHEN",
                                                     help="30d, 12h, 45m, 90s, or an ISO date/datetime.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A control-plane key: no owner, no models.")] = False,
    role: Annotated[str | None, typer.Option("--role", help="With --admin: org_admin (default), group_admin "
                                             "(give --group) or auditor.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print its secret, once. Without --user/--group it belongs to the `default` group."""
    groups = list(dict.fromkeys(group or ()))
    if role is not None and not admin:
        fail("--role is for --admin keys; a data key acts as its owner", 2)
    if role is not None and role not in ADMIN_KEY_ROLES:
        fail(f"--role must be one of {', '.join(ADMIN_KEY_ROLES)}", 2)
    if admin and (user or models or (groups and role != "group_admin")):
        fail("--admin keys open only the control plane: they take no --user or --models, and --group only with "
             "--role group_admin", 2)
    if admin and role == "group_admin" and not groups:
        fail("--role group_admin needs --group: the groups the key administers", 2)
    if not admin and len(groups) > 1:
        fail("a key belongs to one group: give --group once", 2)
    if user and groups:
        fail("a key belongs to a user or to a group: give --user or --group, not both", 2)

    async def work(db: Database) -> tuple[KeyRow, str]:
        d = Directory(db)
        gids = [(await d.get_group(g)).id for g in groups]
        return await create_key(
            KeyStore(db), name, kind="admin" if admin else "data",
            user_id=(await d.get_user(user)).id if user else None,
            group_id=gids[0] if gids and not admin else None,
            models=models, expires_at=expires, role=role if admin else None, role_groups=gids if admin else (),
        )

    row, secret = run(read_settings(config), work)
    if as_json:
        record = {"id": row.id, "name": row.name, "key": secret, "kind": row.kind, "user_id": row.user_id,
                  "group_id": row.group_id, "models": list(row.models) if row.models is not None else None,
                  "expires_at": row.expires_at}
        if admin:
            record.update(role=row.role or "org_admin", role_groups=list(row.role_groups))
        emit(record, True)
    else:
        kind = f"admin ({row.role or 'org_admin'})" if admin else row.kind
        console.print(f"Created {kind} key [bold]{row.id}[/bold] ({escape(row.name)}). The secret is shown once:",
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

    rows, names = fetch(read_settings(config), as_json, work)
    emit([key_record(k) for k in rows], as_json, _KEY_COLUMNS, names)


@keys_app.command("get")
def keys_get(key_id: KeyId, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show one key: owner, models, expiry, status, and what replaced it."""
    row, names = fetch(read_settings(config), as_json, lambda db: KeyStore(db).get(key_id))
    emit(key_record(row), as_json, names=names)


@keys_app.command("revoke")
def keys_revoke(key_id: KeyId, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Revoke a key; it fails on its next request (within the key refresh interval)."""
    row = run(read_settings(config), lambda db: KeyStore(db).revoke(key_id))
    if as_json:
        emit(key_record(row), True)
    else:
        console.print(f"Revoked {key_id}.", highlight=False, markup=False)


@keys_app.command("rotate")
def keys_rotate(
    key_id: KeyId,
    grace: Annotated[timedelta | None, typer.Option("--grace", parser=duration, metavar="SPAN",
                                                    help="How long the old secret keeps working "
                                                         "(default: key_rotation_grace from the config).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Replace a key's secret; the old one keeps working for the grace period so clients can switch."""
    settings = read_settings(config)
    span = grace if grace is not None else timedelta(seconds=settings.key_rotation_grace)
    old, new, secret = run(settings, lambda db: rotate_key(KeyStore(db), key_id, span))
    if as_json:
        emit({"id": new.id, "key": secret, "replaces": old.id, "old_key_expires_at": old.expires_at}, True)
    else:
        console.print(f"Rotated {old.id} -> [bold]{new.id}[/bold] ({escape(new.name)}). The new secret is shown once:",
                      highlight=False, soft_wrap=True)
        console.print(f"  {secret}", highlight=False, soft_wrap=True)
        ends = old.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if old.expires_at else "-"
        console.print(f"The old secret keeps working until {ends}.", highlight=False)

