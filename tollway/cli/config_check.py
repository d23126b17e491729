"""`tollway config check`: validate a configuration file and summarise it."""

from __future__ import annotations

import typer

from tollway.cli.common import ConfigOpt, console, read_settings

config_app = typer.Typer(help="Check a configuration file.", no_args_is_help=True)


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate a config file and summarise it."""
    settings = read_settings(config, upstream_secrets=True)
    console.print(f"config OK: {len(settings.models)} model(s), store {settings.store.url}", highlight=False)
    for m in settings.models:
        for name, weight, up in m.all_deployments:
            console.print(f"  {m.id} -> {up.provider}:{up.model or m.id} ({name}, weight {weight:g})", highlight=False)

