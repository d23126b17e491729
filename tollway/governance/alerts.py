"""Spend and error-rate alerts: evaluated in the background, delivered to webhooks with retries.

Never on the request path: a task in each gateway process reads the spend the gateway already
keeps (the ledger's daily rollup, the same numbers budgets start from) every `alerts.interval`
seconds, and the ledger for error rates. A budget rule fires each of its thresholds (percent of
the budget) once per budget period and subject; an error-rate rule fires once per window while
the share of 5xx answers is at or above its rate. The store dedupes firings, so N workers
evaluating the same spend send one alert. Deliveries are retried with doubling waits up to
`alerts.max_attempts`; each attempt is recorded in the delivery log (`/admin/v1/alerts/deliveries`).
The clock is injectable: tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from tollway.config import Settings
from tollway.governance.limits import period_bounds
from tollway.reports import budget_state
from tollway.store.alerts import CONFIG_PREFIX, AlertStore, DeliveryRow, RuleRow
from tollway.store.db import Database
from tollway.store.limit_rows import LimitStore
from tollway.store.usage import display_names, report

log = logging.getLogger("tollway.alerts")

SCOPES = ("key", "user", "group")
LEASE = timedelta(seconds=60)  # how long a claimed attempt is someone's before it is due again


def slack_text(event: dict[str, Any]) -> str:
    """One line a person reads in a Slack channel."""
    who = f"{event.get('scope', '')} {event.get('name') or event.get('scope_id') or 'all traffic'}".strip()
    if event.get("type") == "budget_threshold":
        return (f":money_with_wings: Tollway budget alert ({event['rule']['name']}): {who} has used "
                f"{event['percent_used']:.0f}% of its {event['period']} budget "
                f"(${event['spent_usd']:.2f} of ${event['budget_usd']:.2f}; threshold {event['threshold']:g}%).")
    return (f":rotating_light: Tollway error-rate alert ({event['rule']['name']}): {who}: "
            f"{event['errors']} of {event['requests']} requests failed in the last {event['window_seconds']} s "
            f"({event['error_rate']:.0%}, threshold {event['threshold']:.0%}).")


def config_rules(settings: Settings) -> list[RuleRow]:
    """The rules written in the config, as rows (id `cfg_<name>`; read-only through the API)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [RuleRow(CONFIG_PREFIX + r.name, r.name, r.kind, r.scope, r.scope_id, tuple(sorted(set(r.thresholds))),
                    r.error_rate, r.window_seconds, r.min_requests, r.webhook_url, r.format, True, epoch)
            for r in settings.alerts.rules]


def masked(url: str) -> str:
    """A webhook URL as shown to people: scheme and host only (Slack's path is its secret)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…" if rest else "…"


def webhook_body(row: DeliveryRow) -> dict[str, Any]:
    if row.format == "slack":
        return {"text": slack_text(row.event)}
    return row.event


class AlertRunner:
    """Evaluates the rules and sends due deliveries; `tick()` is one round (what the loop runs)."""

    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.cfg = settings.alerts
        self.store = AlertStore(db)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tollway-alerts")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2.0)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.interval)
            try:
                await self.tick()
            except Exception:  # the store may be briefly down: try again next round
                log.warning("alert evaluation failed; retrying next round", exc_info=True)

    async def tick(self) -> tuple[int, int]:
        """Evaluate every enabled rule, then send what is due: (alerts fired, attempts made)."""
        return await self.evaluate(), await self.deliver()

    # -- evaluation -------------------------------------------------------------------------

    async def evaluate(self) -> int:
        fired = 0
        for rule in [*config_rules(self.settings), *await self.store.rules(enabled_only=True)]:
            try:
                fired += await (self._budget(rule) if rule.kind == "budget" else self._error_rate(rule))
            except Exception:
                log.warning("alert rule %s could not be evaluated", rule.id, exc_info=True)
        return fired

    async def _subjects(self, rule: RuleRow, now: datetime) -> list[tuple[str, str]]:
        """The keys, users and groups whose budgets this rule watches: its own, or every one with
        a budget row, or (for config-default budgets) with spend this month."""
        if rule.scope and rule.scope_id:
            return [(rule.scope, rule.scope_id)]
        scopes = (rule.scope,) if rule.scope else SCOPES
        found = {(r.scope, r.scope_id) for r in await LimitStore(self.db).all()
                 if r.scope in scopes and r.budget_micros is not None}
        _, month_start, _ = period_bounds("month", now)
        for scope in scopes:
            if getattr(self.settings.limits.defaults, scope).budget_usd is not None:
                found |= {(scope, str(r[scope])) for r in await report(self.db, scope, since=month_start) if r[scope]}
        return sorted(found)

    async def _budget(self, rule: RuleRow) -> int:
        now = self.clock()
        fired = 0
        for scope, scope_id in await self._subjects(rule, now):
            state = await budget_state(self.db, self.settings.limits, scope, scope_id, now)
            if state is None or state.limit_micros <= 0:
                continue
            percent = state.spent_micros * 100 / state.limit_micros
            crossed = [t for t in sorted(rule.thresholds) if percent >= t]
            if not crossed:
                continue
            period, start, _ = period_bounds(state.period, now)
            names = await display_names(self.db, scope, [scope_id])
            event = {"type": "budget_threshold", "rule": {"id": rule.id, "name": rule.name}, "scope": scope,
                     "scope_id": scope_id, "name": names.get(scope_id), "percent_used": round(percent, 2),
                     "spent_usd": state.spent_micros / 1e6, "budget_usd": state.limit_micros / 1e6,
                     "period": state.period, "period_start": start.isoformat(),
                     "resets_at": state.resets_at.isoformat(), "fired_at": now.isoformat()}
            if await self.store.fire(rule, f"{scope}:{scope_id}", period, [f"{t:g}" for t in crossed], event, now):
                fired += 1
                log.info("alert %s fired: %s %s at %.1f%% of its budget", rule.name, scope, scope_id, percent)
        return fired

    async def _error_rate(self, rule: RuleRow) -> int:
        now = self.clock()
        window = rule.window_seconds or 300
        requests, errors = await self.store.error_counts(now - timedelta(seconds=window), rule.scope, rule.scope_id)
        rate = errors / requests if requests else 0.0
        threshold = rule.error_rate if rule.error_rate is not None else 0.5
        if requests < (rule.min_requests or 1) or rate < threshold:
            return 0
        subject = f"{rule.scope}:{rule.scope_id}" if rule.scope and rule.scope_id else "all"
        event = {"type": "error_rate", "rule": {"id": rule.id, "name": rule.name}, "scope": rule.scope,
                 "scope_id": rule.scope_id, "requests": requests, "errors": errors, "error_rate": round(rate, 4),
                 "window_seconds": window, "fired_at": now.isoformat()}
        bucket = str(int(now.timestamp() // window))
        if await self.store.fire(rule, subject, bucket, [f"{threshold:g}"], event, now):
            log.info("alert %s fired: %d of %d requests failed", rule.name, errors, requests)
            return 1
        return 0

    # -- delivery ---------------------------------------------------------------------------

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ATTEMPTS-th failed attempt: retry_base doubled each time, capped."""
        return timedelta(seconds=min(self.cfg.retry_max, self.cfg.retry_base * 2 ** (attempts - 1)))

    async def deliver(self) -> int:
        now = self.clock()
        made = 0
        due = await self.store.due(now)
        if not due:
            return 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout)) as http:
            for row in due:
                if not await self.store.claim(row, now, now + LEASE):
                    continue  # another process is sending it
                made += 1
                await self._attempt(http, row, now)
        return made

    async def _attempt(self, http: aiohttp.ClientSession, row: DeliveryRow, now: datetime) -> None:
        status: int | None = None
        error: str | None = None
        try:
            async with http.post(row.url, json=webhook_body(row), headers={"user-agent": "tollway-alerts"},
                                 allow_redirects=False) as resp:
                status = resp.status
            if 200 <= status < 300:
                await self.store.attempted(row, status="delivered", http_status=status, error=None, now=now,
                                           next_at=None)
                return
            error = f"HTTP {status}"
        except (aiohttp.ClientError, TimeoutError) as exc:  # the class only: a message may quote the URL
            error = type(exc).__name__
        attempts = row.attempts + 1
        final = attempts >= self.cfg.max_attempts
        log.warning("alert delivery %s attempt %d failed (%s)%s", row.id, attempts, error,
                    "; giving up" if final else "")
        await self.store.attempted(row, status="failed" if final else "pending", http_status=status, error=error,
                                   now=now, next_at=None if final else now + self.backoff(attempts))
