"""The `tollway` command line, one module per command group.

Every command works on a fresh install: the store is created and migrated on first use (and the
command says so). Only `serve` talks to upstreams, so only `serve` (and `config check`) need the
providers' secrets; the admin commands (users, groups, keys, limits, usage, audit) run without them.
Output is a table for people and `--json` for scripts.
"""

from __future__ import annotations

import typer

from tollway.cli.audit import audit_app
from tollway.cli.config_check import config_app
from tollway.cli.conversations import conversations_app
from tollway.cli.groups import groups_app
from tollway.cli.keys import keys_app
from tollway.cli.limits import limits_app
from tollway.cli.serve import serve
from tollway.cli.usage import usage
from tollway.cli.users import users_app

app = typer.Typer(help="Tollway, the governed LLM gateway.", no_args_is_help=True, add_completion=False)
app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(groups_app, name="groups")
app.add_typer(config_app, name="config")
app.add_typer(limits_app, name="limits")
app.add_typer(audit_app, name="audit")
app.add_typer(conversations_app, name="conversations")
app.command()(usage)

__all__ = ["app"]
