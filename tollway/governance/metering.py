"""Usage and cost: what each request consumed, priced from the config, recorded behind the
request path.

Prices are USD per million tokens, which is exactly micro-dollars per token, so a cost in
integer micro-dollars is tokens x price, rounded once at the end. Cache writes and reads are
priced at their own rates (defaulting to Anthropic's 1.25x and 0.1x of the input price).
"""

from __future__ import annotations

import time
from typing import Any

from tollway.config import Pricing
from tollway.store.writebehind import WriteBehind
from tollway.wire.sse import Usage


def cache_prices(p: Pricing) -> tuple[float, float]:
    write = p.cache_write if p.cache_write is not None else p.input * 1.25
    read = p.cache_read if p.cache_read is not None else p.input * 0.1
    return write, read


def cost_micros(p: Pricing, u: Usage) -> int:
    write, read = cache_prices(p)
    return round(
        u.input_tokens * p.input
        + u.output_tokens * p.output
        + u.cache_creation_input_tokens * write
        + u.cache_read_input_tokens * read
    )


class Meter:
    """Turns finished calls into ledger records on a write-behind queue."""

    def __init__(self, writer: WriteBehind, enabled: bool = True) -> None:
        self.writer = writer
        # Off only when the config says `metering.enabled: false` (no ledger rows at all).
        self.enabled = enabled

    def record(
        self, *, request_id: str, route: str, key_id: str, user_id: str | None, group_id: str | None,
        requested_model: str, upstream_model: str, usage: Usage, cost: int, started: float, status: int,
        error_type: str | None, deployment: str | None = None, attempts: int = 1,
        upstream_request_id: str | None = None,
    ) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        record = {
            "request_id": request_id,
            "ts": time.time(),
            "route": route,
            "key_id": key_id,
            "user_id": user_id,
            "group_id": group_id,
            "requested_model": requested_model,
            "upstream_model": upstream_model,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
            "cache_read_tokens": usage.cache_read_input_tokens,
            "cost_micros": cost,
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "status": status,
            "error_type": error_type,
            "deployment": deployment,
            "attempts": attempts,
            "upstream_request_id": upstream_request_id,
        }
        self.writer.put(record)
        return record
