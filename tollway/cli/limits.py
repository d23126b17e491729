"""`tollway limits`: a key's, user's or group's own rate limits and budget."""

from __future__ import annotations

from typing import Annotated

import typer

from tollway.cli.common import ConfigOpt, Record, console, fail, read_settings, run
from tollway.cli.output import emit
from tollway.store.limit_rows import LimitRow, LimitStore

limits_app = typer.Typer(help="Rate limits and budgets of a key, user or group.", no_args_is_help=True)


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
    settings = read_settings(config)
    micros = round(budget * 1_000_000) if budget is not None else None
    row = run(settings, lambda db: LimitStore(db).set(_scope(scope), ref, rpm=rpm, tpm=tpm, concurrent=concurrent,
                                                      budget_micros=micros, budget_period=period))
    emit(_limits(row), as_json)


@limits_app.command("get")
def limits_get(scope: ScopeArg, ref: RefArg, as_json: Annotated[bool, typer.Option("--json")] = False,
               config: ConfigOpt = None) -> None:
    """Show a scope's own limits."""
    row = run(read_settings(config), lambda db: LimitStore(db).get(_scope(scope), ref))
    if row is None:
        fail(f"{scope} {ref} has no limits of its own (the config defaults apply)")
    emit(_limits(row), as_json)


@limits_app.command("clear")
def limits_clear(scope: ScopeArg, ref: RefArg, config: ConfigOpt = None) -> None:
    """Remove a scope's own limits, so the config defaults apply again."""
    run(read_settings(config), lambda db: LimitStore(db).clear(_scope(scope), ref))
    console.print(f"Cleared the limits of {scope} {ref}.", highlight=False)


@limits_app.command("list")
def limits_list(as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOpt = None) -> None:
    """Every scope with limits of its own."""
    rows = run(read_settings(config), lambda db: LimitStore(db).all())
    emit([_limits(r) for r in rows], as_json, _LIMIT_COLUMNS)

