"""`tollway groups`: groups, their model grants and their members."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from tollway.cli.common import ConfigOpt, GroupRef, JsonOpt, UserRef, console, fetch, read_settings, run
from tollway.cli.output import emit, group_record
from tollway.config import Settings
from tollway.store.principals import Directory, GroupRow

groups_app = typer.Typer(help="Groups: their model grants and their members.", no_args_is_help=True)


_GROUP_COLUMNS = ("id", "name", "description", "grants", "members", "created_at")


def _show_group(settings: Settings, as_json: bool, work: Callable[[Directory], Awaitable[GroupRow]]) -> None:
    group, names = fetch(settings, as_json, lambda db: work(Directory(db)))
    emit(group_record(group), as_json, names=names)


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
    _show_group(read_settings(config), as_json, lambda d: d.create_group(name, description, grant or []))


@groups_app.command("list")
def groups_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List groups, oldest first (the built-in `default` group is always there)."""
    rows, names = fetch(read_settings(config), as_json, lambda db: Directory(db).list_groups())
    emit([group_record(g) for g in rows], as_json, _GROUP_COLUMNS, names)


@groups_app.command("get")
def groups_get(ref: GroupRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show one group with its grants and members."""
    _show_group(read_settings(config), as_json, lambda d: d.get_group(ref))


@groups_app.command("update")
def groups_update(
    ref: GroupRef,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d", help="New description.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Rename a group or change its description; options left out are unchanged."""
    _show_group(read_settings(config), as_json, lambda d: d.update_group(ref, name, description))


@groups_app.command("delete")
def groups_delete(ref: GroupRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Delete a group with its grants and memberships; refused while it owns active keys."""

    async def work(d: Directory) -> GroupRow:
        group = await d.get_group(ref)
        await d.delete_group(group.id)
        return group

    group = run(read_settings(config), lambda db: work(Directory(db)))
    if as_json:
        emit({"id": group.id, "name": group.name, "deleted": True}, True)
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
    _show_group(read_settings(config), as_json, lambda d: d.add_grant(ref, pattern))


@groups_app.command("ungrant")
def groups_ungrant(
    ref: GroupRef,
    pattern: Annotated[str, typer.Argument(help="The grant to remove, exactly as listed.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Remove one grant from a group."""
    _show_group(read_settings(config), as_json, lambda d: d.remove_grant(ref, pattern))


@groups_app.command("add-member")
def groups_add_member(group: GroupRef, user: UserRef, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Put a user in a group: its personal keys gain the group's grants."""
    _show_group(read_settings(config), as_json, lambda d: d.add_member(group, user))


@groups_app.command("remove-member")
def groups_remove_member(group: GroupRef, user: UserRef, as_json: JsonOpt = False,
                         config: ConfigOpt = None) -> None:
    """Take a user out of a group."""
    _show_group(read_settings(config), as_json, lambda d: d.remove_member(group, user))

