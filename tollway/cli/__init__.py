"""The `tollway` command line, one module per command group.

Every command works on a fresh install: the store is created and migrated on first use (and the
command says so). Only `serve` talks to upstreams, so only `serve` (and `config check`) need the
providers' secrets; the admin commands (users, groups, keys, limits, usage, audit) run without them.
Output is a table for people and `--json` for scripts.

A command line that names a command builds and imports only that command's group: Typer turns
every command of an app into a Click command (reading each one's signature) before running any,
and each group's module brings its own imports, so `tollway keys create` would otherwise pay for
`serve`, `usage` and `audit` too (scripts and the tests run hundreds of these). With no command,
an unknown one or `--help`, the whole app is built, so help and errors read as before.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

# In the order help lists them: name on the command line -> (module, attribute, whether the
# attribute is a Typer group rather than a single command's function).
ENTRIES = {
    "serve": ("tollway.cli.serve", "serve", False),
    "keys": ("tollway.cli.keys", "keys_app", True),
    "users": ("tollway.cli.users", "users_app", True),
    "groups": ("tollway.cli.groups", "groups_app", True),
    "config": ("tollway.cli.config_check", "config_app", True),
    "limits": ("tollway.cli.limits", "limits_app", True),
    "audit": ("tollway.cli.audit", "audit_app", True),
    "conversations": ("tollway.cli.conversations", "conversations_app", True),
    "usage": ("tollway.cli.usage", "usage", False),
}
HELP = "Tollway, the governed LLM gateway."


def build(only: str | None = None) -> typer.Typer:
    """The app with every command, or with only the command or group named ONLY."""
    cli = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)
    for name, (module, attr, group) in ENTRIES.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attr)
        if group:
            cli.add_typer(target, name=name)
        else:
            cli.command(name=name)(target)
    if only is not None and not ENTRIES[only][2]:
        # Typer runs an app holding a single command as that command (no name to type); a
        # callback keeps `tollway serve ...` a group with one subcommand, as in the full app.
        cli.callback()(lambda: None)
    return cli


class App:
    """`tollway`: callable like the Typer app it builds for the command line it is given."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = sys.argv[1] if len(sys.argv) > 1 else None
        return build(name if name in ENTRIES else None)(*args, **kwargs)


app = App()

__all__ = ["App", "app", "build"]
