"""`tollway limits`: a key's, user's or group's own rate limits and budget."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tollway.cli.common import ConfigOpt, Record, console, fail, read_settings, run
from tollway.cli.output import emit
from tollway.store.db import Database
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
            "budget_period": r.budget_period, "budget_mode": r.budget_mode}


_LIMIT_COLUMNS = ("scope", "scope_id", "rpm", "tpm", "concurrent", "budget_usd", "budget_period")


_UNSETTABLE = ("rpm", "tpm", "concurrent", "budget")


@limits_app.command("set")
def limits_set(
    scope: ScopeArg,
    ref: RefArg,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens (input + output) per minute.")] = None,
    concurrent: Annotated[int | None, typer.Option(min=1, help="Requests in flight at once.")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="USD per period.")] = None,
    period: Annotated[str | None, typer.Option(help="Budget period: day or month (UTC).")] = None,
    budget_mode: Annotated[str | None, typer.Option(help="expected (reserve the expected cost) or strict "
                                                         "(reserve the worst case).")] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", metavar="LIMIT",
                                                    help="Make this limit unlimited for the scope: rpm, tpm, "
                                                         "concurrent or budget (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Change the limits given and keep the others.

    A scope's own limits replace the config defaults for it as a whole, so the first `set` starts
    from the defaults (for example `limits.defaults.user`) and later ones from the scope's current
    limits: `--rpm 60` changes the rate and keeps the budget. `--unset budget` removes one limit.
    """
    if period not in (None, "day", "month"):
        raise typer.BadParameter("period must be day or month")
    if budget_mode not in (None, "expected", "strict"):
        raise typer.BadParameter("budget mode must be expected or strict")
    for name in unset or ():
        if name not in _UNSETTABLE:
            raise typer.BadParameter(f"--unset takes {', '.join(_UNSETTABLE)}, not {name!r}")
    settings = read_settings(config)
    kind = _scope(scope)
    default = getattr(settings.limits.defaults, kind)

    async def work(db: Database) -> LimitRow:
        store = LimitStore(db)
        own = await store.get(kind, ref)
        current: dict[str, Any] = (
            {"rpm": own.rpm, "tpm": own.tpm, "concurrent": own.concurrent, "budget": own.budget_micros,
             "period": own.budget_period, "mode": own.budget_mode} if own is not None else
            {"rpm": default.rpm, "tpm": default.tpm, "concurrent": default.concurrent,
             "budget": round(default.budget_usd * 1_000_000) if default.budget_usd is not None else None,
             "period": default.budget_period, "mode": default.budget_mode})
        given: dict[str, Any] = {"rpm": rpm, "tpm": tpm, "concurrent": concurrent,
                 "budget": round(budget * 1_000_000) if budget is not None else None, "period": period,
                 "mode": budget_mode}
        merged: dict[str, Any] = {k: v if v is not None else current[k] for k, v in given.items()}
        for name in unset or ():
            merged[name] = None
        return await store.set(kind, ref, rpm=merged["rpm"], tpm=merged["tpm"], concurrent=merged["concurrent"],
                               budget_micros=merged["budget"], budget_period=merged["period"] or "month",
                               budget_mode=merged["mode"] or "expected")

    emit(_limits(run(settings, work)), as_json)


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

