"""A rotated key keeps its limits, counters, budget and spend (issue 17.10, rotation part).

End to end through a real gateway and the real CLI (the rotation is made by another process, as
an operator would), and the budget's ledger seed on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import anthropic
import pytest

from tests.conftest import start_gateway
from tests.stores import store_url
from tollway.governance.identity import create_key, rotate_key
from tollway.store import usage as usage_store
from tollway.store.db import Database
from tollway.store.keys import KeyStore
from tollway.store.limit_rows import LimitStore

BODY = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_a_rotated_key_keeps_its_rate_limit_and_its_counter(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, {"server": {"key_refresh_interval": 0.2},
                                  "models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]})
    try:
        gw.cli("limits", "set", "key", gw.key_id, "--rpm", "3")
        old = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        deadline = time.monotonic() + 10
        while True:  # until the gateway's cache has the limit: its first counted request
            raw = old.messages.with_raw_response.create(**BODY)
            if raw.headers.get("anthropic-ratelimit-requests-limit") == "3":
                break
            assert time.monotonic() < deadline, "the limit never reached the gateway"
        old.messages.create(**BODY)
        # From the first counted request to the refusals below must stay well inside the 20 s
        # one request takes to refill at rpm 3: the CLI's own check of the limit comes after them.
        rotated = json.loads(gw.cli("keys", "rotate", gw.key_id, "--json").stdout)
        new = anthropic.Anthropic(base_url=gw.base_url, api_key=rotated["key"], max_retries=0)
        deadline = time.monotonic() + 10
        while True:  # the new secret is usable as soon as this gateway has seen it
            try:
                new.messages.create(**BODY)
                break
            except anthropic.AuthenticationError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        # Third request of the minute across both secrets: the fourth is refused, whichever secret.
        with pytest.raises(anthropic.RateLimitError):
            new.messages.create(**BODY)
        with pytest.raises(anthropic.RateLimitError):
            old.messages.create(**BODY)
        assert json.loads(gw.cli("limits", "get", "key", rotated["id"], "--json").stdout)["rpm"] == 3
    finally:
        gw.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_rotated_keys_budget_is_seeded_with_the_whole_lineages_spend(backend: str, tmp_path: Path) -> None:
    async def run(url: str) -> None:
        db = Database(url)
        await db.migrate()
        try:
            row, _ = await create_key(KeyStore(db), "budgeted")
            await LimitStore(db).set("key", row.id, budget_micros=1_000_000)
            spend = [(row.id, 300)]
            _, second, _ = await rotate_key(KeyStore(db), row.id, timedelta(hours=1))
            _, third, _ = await rotate_key(KeyStore(db), second.id, timedelta(hours=1))
            spend += [(second.id, 200), (third.id, 50)]
            await usage_store.write_batch(db, [{
                "request_id": "req_" + uuid.uuid4().hex[:24], "ts": time.time(), "route": "messages",
                "key_id": key_id, "user_id": None, "group_id": "grp_default", "requested_model": "m",
                "upstream_model": "m", "input_tokens": 1, "output_tokens": 1, "cache_write_tokens": 0,
                "cache_read_tokens": 0, "cost_micros": cost, "latency_ms": 1, "status": 200, "error_type": None,
                "deployment": "m", "attempts": 1} for key_id, cost in spend])
            since = date.fromtimestamp(time.time() - 86400)
            assert await usage_store.spent_micros(db, "key", row.id, since) == 550
            got = await LimitStore(db).get("key", third.id)
            assert got is not None and got.budget_micros == 1_000_000
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


