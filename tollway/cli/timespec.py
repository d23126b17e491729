"""Times as people type them on the command line: spans (30d, 12h) and ISO dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(\d+)([smhdw])")


def duration(text: str) -> timedelta:
    """`90s`, `45m`, `12h`, `30d`, `2w`: the spans people type for grace periods and lifetimes."""
    m = DURATION.fullmatch(text.strip())
    if m is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 45m, 12h, 30d or 2w")
    return timedelta(seconds=int(m[1]) * UNITS[m[2]])


def expiry(text: str) -> datetime:
    """A duration from now, or an ISO date/datetime (a date means its midnight, UTC when no zone)."""
    now = datetime.now(UTC)
    if DURATION.fullmatch(text.strip()):
        return now + duration(text)
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither a duration (30d, 12h, 45m, 90s) nor an ISO date") from None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if ts <= now:
        raise typer.BadParameter(f"{text} is in the past")
    return ts



def when(text: str | None, name: str) -> datetime | None:
    """An ISO date or datetime (UTC when no zone), or a span back from now such as 30d."""
    if text is None:
        return None
    if DURATION.fullmatch(text.strip()):
        return datetime.now(UTC) - duration(text)
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{name}: {text!r} is neither an ISO date nor a span like 30d") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)

