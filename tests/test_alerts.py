"""Spend and error-rate alerts: thresholds fire once per budget period even with several workers
evaluating the same store, deliveries are retried with backoff and logged, and a running gateway
delivers an alert from real spend to a webhook (through the admin API's rules and delivery log).

The webhook is a loopback aiohttp server that fails the first attempt of each alert. The evaluator
tests run two `AlertRunner`s (two "workers") on one real store with an injected clock, so moving
to the next retry or the next month takes no waiting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY, Gateway, standard_config, start_gateway
from tests.emulator import AnthropicEmulator
from tests.loopback import LoopbackServer
from tests.stores import store_url
from tollway.config import Settings
from tollway.governance.alerts import AlertRunner
from tollway.store.alerts import AlertStore
from tollway.store.db import Database
from tollway.store.limit_rows import LimitStore
from tollway.store.principals import Directory
from tollway.store.usage import write_batch


class Webhook(LoopbackServer):
    """Records every POST; answers 500 to the first `fail_first` attempts of each alert."""

    thread_name = "webhook"

    def __init__(self, fail_first: int = 1) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._seen: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def delivered(self) -> list[dict[str, Any]]:
        return [body for body, status in zip(self.received, self.statuses, strict=True) if status == 200]

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        ident = json.dumps({k: body.get(k) for k in ("type", "scope_id", "threshold", "period_start", "text")},
                           sort_keys=True)
        self._seen[ident] = self._seen.get(ident, 0) + 1
        status = 500 if self._seen[ident] <= self.fail_first else 200
        self.statuses.append(status)
        return web.json_response({"ok": status == 200}, status=status)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def ledger_row(request_id: str, ts: datetime, group_id: str, cost_micros: int, status: int = 200) -> dict[str, Any]:
    return {"request_id": request_id, "ts": ts.timestamp(), "route": "messages", "key_id": "key_x", "user_id": None,
            "group_id": group_id, "requested_model": "m", "upstream_model": "m", "input_tokens": 1,
            "output_tokens": 1, "cache_write_tokens": 0, "cache_read_tokens": 0, "cost_micros": cost_micros,
            "latency_ms": 5, "status": status, "error_type": None if status < 400 else "api_error",
            "deployment": None, "attempts": 1, "upstream_request_id": None}


SETTINGS = Settings.model_validate({"alerts": {"retry_base": 30, "retry_max": 120, "max_attempts": 3}})


async def _store(url: str) -> tuple[Database, str]:
    db = Database(url)
    await db.migrate()
    group = await Directory(db).create_group("payments")
    # A $10 monthly budget for the group.
    await LimitStore(db).set("group", group.id, budget_micros=10_000_000, budget_period="month")
    return db, group.id


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_thresholds_fire_once_per_period_across_workers_and_deliveries_retry(
        backend: str, webhook: Webhook, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url:
        asyncio.run(_thresholds(url, webhook))


async def _thresholds(url: str, webhook: Webhook) -> None:
    db, group_id = await _store(url)
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    a, b = AlertRunner(db, SETTINGS, clock=clock), AlertRunner(db, SETTINGS, clock=clock)
    store = AlertStore(db)
    rule = await store.create_rule(name="payments spend", kind="budget", scope="group", scope_id=group_id,
                                   thresholds=[50.0, 80.0, 100.0], webhook_url=webhook.url, format="json",
                                   enabled=True)
    try:
        await write_batch(db, [ledger_row("r1", clock.now, group_id, 4_000_000)])  # 40 %
        assert await a.tick() == (0, 0) and await b.tick() == (0, 0)
        await write_batch(db, [ledger_row("r2", clock.now, group_id, 1_500_000)])  # 55 %
        # Both workers evaluate at once: one firing, one delivery.
        fired = await asyncio.gather(a.evaluate(), b.evaluate())
        assert sorted(fired) == [0, 1]
        assert await a.deliver() == 1  # the first attempt: the webhook answers 500
        log = await store.deliveries()
        assert [(d.status, d.attempts, d.last_status) for d in log] == [("pending", 1, 500)]
        assert log[0].next_attempt_at == clock.now + timedelta(seconds=30)
        assert await b.deliver() == 0  # not due yet: nothing sent
        clock.now += timedelta(seconds=30)
        assert await b.deliver() == 1  # the retry, from the other worker, succeeds
        log = await store.deliveries()
        assert [(d.status, d.attempts, d.last_status) for d in log] == [("delivered", 2, 200)]
        (event,) = webhook.delivered()
        assert event["type"] == "budget_threshold" and event["threshold"] == 50 and event["scope_id"] == group_id
        assert event["name"] == "payments" and event["budget_usd"] == 10 and event["spent_usd"] == 5.5
        assert event["rule"] == {"id": rule.id, "name": "payments spend"} and event["period"] == "month"
        # Still 55 %: nothing new, however often it is evaluated.
        assert await a.tick() == (0, 0) and await b.tick() == (0, 0)
        # A jump past 80 % and 100 % at once is one alert, for the highest threshold crossed.
        await write_batch(db, [ledger_row("r3", clock.now, group_id, 5_000_000)])  # 105 %
        assert sorted(await asyncio.gather(a.evaluate(), b.evaluate())) == [0, 1]
        for _ in range(2):  # first attempt fails, the retry after the backoff succeeds
            await a.deliver()
            clock.now += timedelta(seconds=30)
        assert [e["threshold"] for e in webhook.delivered()] == [50, 100]
        # The next month is a new budget period: the same thresholds fire again on its spend.
        clock.now = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
        assert await a.evaluate() == 0
        await write_batch(db, [ledger_row("r4", clock.now, group_id, 8_500_000)])  # 85 % of April's
        assert await a.evaluate() == 1 and await b.evaluate() == 0
        await a.deliver()
        clock.now += timedelta(seconds=30)
        await b.deliver()
        april = webhook.delivered()[-1]
        assert april["threshold"] == 80 and april["period_start"] == "2026-04-01"
    finally:
        await db.close()


def test_a_delivery_gives_up_after_max_attempts_with_growing_waits(tmp_path: Path) -> None:
    with Webhook(fail_first=100) as hook:
        asyncio.run(_gives_up(f"sqlite:///{tmp_path}/t.db", hook))


async def _gives_up(url: str, hook: Webhook) -> None:
    db, group_id = await _store(url)
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    runner = AlertRunner(db, SETTINGS, clock=clock)
    store = AlertStore(db)
    await store.create_rule(name="slack", kind="budget", scope="group", scope_id=None, thresholds=[50.0],
                            webhook_url=hook.url, format="slack", enabled=True)
    try:
        await write_batch(db, [ledger_row("r1", clock.now, group_id, 6_000_000)])
        assert await runner.evaluate() == 1
        waits = []
        for _ in range(3):
            assert await runner.deliver() == 1
            (row,) = await store.deliveries()
            if row.next_attempt_at is not None:
                waits.append((row.next_attempt_at - clock.now).total_seconds())
                clock.now = row.next_attempt_at
        assert waits == [30, 60]  # retry_base doubled; the third attempt was the last
        (row,) = await store.deliveries()
        assert (row.status, row.attempts, row.last_error) == ("failed", 3, "HTTP 500")
        clock.now += timedelta(hours=1)
        assert await runner.deliver() == 0
        assert len(hook.received) == 3
        assert set(hook.received[0]) == {"text"} and "payments" in hook.received[0]["text"]
        assert "60%" in hook.received[0]["text"]
    finally:
        await db.close()


def test_a_rule_written_in_the_config_fires_like_one_made_through_the_api(webhook: Webhook, tmp_path: Path) -> None:
    asyncio.run(_config_rule(f"sqlite:///{tmp_path}/t.db", webhook))


async def _config_rule(url: str, webhook: Webhook) -> None:
    db, group_id = await _store(url)
    settings = Settings.model_validate({"alerts": {"retry_base": 30, "rules": [
        {"name": "payments", "kind": "budget", "scope": "group", "scope_id": group_id, "thresholds": [90],
         "webhook_url": webhook.url, "format": "slack"}]}})
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    runner = AlertRunner(db, settings, clock=clock)
    try:
        await write_batch(db, [ledger_row("r1", clock.now, group_id, 9_500_000)])
        assert await runner.evaluate() == 1 and await runner.evaluate() == 0
        await runner.deliver()
        clock.now += timedelta(seconds=30)
        await runner.deliver()
        (row,) = await AlertStore(db).deliveries()
        assert (row.rule_id, row.status, row.attempts) == ("cfg_payments", "delivered", 2)
        assert "95%" in webhook.delivered()[0]["text"]
    finally:
        await db.close()


def test_an_error_rate_spike_fires_once_per_window(webhook: Webhook, tmp_path: Path) -> None:
    asyncio.run(_error_rate(f"sqlite:///{tmp_path}/t.db", webhook))


async def _error_rate(url: str, webhook: Webhook) -> None:
    db, group_id = await _store(url)
    now = datetime.now(UTC)
    clock = Clock(now)
    runner = AlertRunner(db, SETTINGS, clock=clock)
    store = AlertStore(db)
    await store.create_rule(name="errors", kind="error_rate", scope=None, scope_id=None, error_rate=0.5,
                            window_seconds=300, min_requests=4, webhook_url=webhook.url, format="json",
                            enabled=True)
    try:
        await write_batch(db, [ledger_row(f"ok{i}", now - timedelta(seconds=10), group_id, 1) for i in range(3)])
        await write_batch(db, [ledger_row("e1", now - timedelta(seconds=5), group_id, 0, 502)])
        assert await runner.evaluate() == 0  # 1 of 4 failed: under the rate
        await write_batch(db, [ledger_row(f"e{i}", now - timedelta(seconds=5), group_id, 0, 500)
                               for i in range(2, 5)])
        assert await runner.evaluate() == 1 and await runner.evaluate() == 0  # 4 of 7: once per window
        await runner.deliver()
        clock.now += timedelta(seconds=30)
        await runner.deliver()
        (event,) = webhook.delivered()
        assert (event["type"], event["requests"], event["errors"], event["threshold"]) == ("error_rate", 7, 4, 0.5)
    finally:
        await db.close()


# ----- a running gateway: rules and the delivery log through the admin API -------------------------

@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = standard_config(emulator.base_url)
    config["alerts"] = {"interval": 0.2, "retry_base": 0.2, "max_attempts": 4, "rules": [
        {"name": "ops-5xx", "kind": "error_rate", "error_rate": 0.5, "min_requests": 1000,
         "webhook_url": "http://127.0.0.1:9/never"}]}
    gateway = start_gateway(tmp_path_factory.mktemp("alerts"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


def until(what: Any, seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(0.1)
    pytest.fail(f"condition not met within {seconds} s")


def test_a_gateway_alerts_a_webhook_from_real_spend(gw: Gateway, webhook: Webhook) -> None:
    admin = json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)
    api = httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"x-api-key": admin["key"]}, timeout=10)
    group = api.post("/groups", json={"name": "spenders", "grants": ["*"]}).json()
    key = api.post("/keys", json={"name": "svc", "group_id": group["id"]}).json()
    message = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(gw.base_url + "/v1/messages", json=message,
                      headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200, resp.text

    def spent() -> float:
        rows = api.get("/usage", params={"by": "group", "group": group["id"]}).json()["data"]
        return float(rows[0]["cost_usd"]) if rows else 0.0

    cost = until(spent)
    # A budget the one request used 2/3 of, then a rule: the 50 % threshold fires, nothing more.
    assert api.put(f"/limits/group/{group['id']}", json={"budget_usd": cost * 1.5}).status_code == 200
    rule = api.post("/alerts", json={"name": "spenders budget", "kind": "budget", "scope": "group",
                                     "scope_id": "spenders", "thresholds": [50, 80, 100],
                                     "webhook_url": webhook.url})
    assert rule.status_code == 201, rule.text
    assert rule.json()["webhook"] == "http://127.0.0.1:" + webhook.url.split(":")[2].split("/")[0] + "/…"
    delivered = until(lambda: [d for d in api.get("/alerts/deliveries").json() if d["status"] == "delivered"])
    (d,) = delivered
    assert d["attempts"] == 2 and d["last_status"] == 200 and d["rule_id"] == rule.json()["id"]
    assert d["event"]["threshold"] == 50 and d["event"]["scope_id"] == group["id"]
    assert webhook.statuses == [500, 200]
    listed = {r["name"]: r for r in api.get("/alerts").json()}
    assert listed["spenders budget"]["source"] == "api"
    assert (listed["ops-5xx"]["source"], listed["ops-5xx"]["id"]) == ("config", "cfg_ops-5xx")
    assert api.patch("/alerts/cfg_ops-5xx", json={"enabled": False}).status_code == 409
    assert api.patch(f"/alerts/{rule.json()['id']}", json={"enabled": False}).json()["enabled"] is False
    assert api.delete(f"/alerts/{rule.json()['id']}").status_code == 204
    bad = api.post("/alerts", json={"name": "x", "kind": "budget", "webhook_url": "ftp://nope"})
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "invalid_request_error"
