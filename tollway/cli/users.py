"""`tollway users`: create, list and change users."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from tollway.cli.common import ConfigOpt, JsonOpt, UserRef, fail, fetch, read_settings
from tollway.cli.output import emit, user_record
from tollway.config import Settings
from tollway.store.principals import USER_ROLES, Directory, UserRow

users_app = typer.Typer(help="Create, list and change users.", no_args_is_help=True)


_USER_COLUMNS = ("id", "name", "email", "groups", "disabled", "created_at")


def _show_user(settings: Settings, as_json: bool, work: Callable[[Directory], Awaitable[UserRow]]) -> None:
    user, names = fetch(settings, as_json, lambda db: work(Directory(db)))
    emit(user_record(user), as_json, names=names)


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

    _show_user(read_settings(config), as_json, work)


@users_app.command("list")
def users_list(
    group: Annotated[str | None, typer.Option("--group", "-g", help="Only members of this group.")] = None,
    disabled: Annotated[bool | None, typer.Option("--disabled/--enabled", help="Only disabled / enabled users.",
                                                  show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List users, oldest first."""
    rows, names = fetch(read_settings(config), as_json,
                         lambda db: Directory(db).list_users(group=group, disabled=disabled))
    emit([user_record(u) for u in rows], as_json, _USER_COLUMNS, names)


@users_app.command("get")
def users_get(ref: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show one user and the groups it is in."""
    _show_user(read_settings(config), as_json, lambda d: d.get_user(ref))


@users_app.command("update")
def users_update(
    ref: UserRef,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="New email address.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Rename a user or change its email; options left out are unchanged."""
    _show_user(read_settings(config), as_json, lambda d: d.update_user(ref, name=name, email=email))


@users_app.command("disable")
def users_disable(ref: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Stop all of a user's keys at once, without revoking them (`enable` brings them back)."""
    _show_user(read_settings(config), as_json, lambda d: d.update_user(ref, disabled=True))


@users_app.command("enable")
def users_enable(ref: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Let a disabled user's keys work again."""
    _show_user(read_settings(config), as_json, lambda d: d.update_user(ref, disabled=False))



@users_app.command("set-role")
def users_set_role(
    ref: UserRef,
    role: Annotated[str, typer.Argument(help="org_admin, group_admin, auditor, developer, or `none` to clear it "
                                        "(the config's signin.roles decide again).")],
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="group_admin: a group administered "
                                                    "(repeatable; default: the groups the user is in).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Give a person an admin role for when they sign in (docs/roles.md)."""
    wanted = None if role == "none" else role
    if wanted is not None and wanted not in USER_ROLES:
        fail(f"role must be one of {', '.join(USER_ROLES)}, or none", 2)
    user, names = fetch(read_settings(config), as_json,
                        lambda db: Directory(db).set_role(ref, wanted, list(group or ())))
    emit({**user_record(user), "role": user.role, "role_groups": list(user.role_groups)}, as_json, names=names)
