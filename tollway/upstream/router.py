"""Maps a catalogue model id to the deployments that serve it, and keeps their health.

Adapters are created once at start-up and shared by every deployment that points at the same
endpoint with the same settings, so each upstream has exactly one connection pool. Each
deployment has a circuit breaker: after `breaker_failures` consecutive failures it opens for
`breaker_cooldown` seconds, then lets one probe through; the probe's outcome closes or reopens it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from tollway.config import ModelConfig, RetryConfig, Settings, UpstreamConfig
from tollway.upstream.anthropic import AnthropicUpstream
from tollway.upstream.base import Upstream
from tollway.upstream.mock import MockUpstream


@dataclass(slots=True)
class Breaker:
    threshold: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def allow(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        if not self.probing and now - self.opened_at >= self.cooldown:
            self.probing = True  # half-open: exactly one request finds out
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = now, False


@dataclass(slots=True)
class Deployment:
    name: str
    weight: float
    upstream: Upstream
    config: UpstreamConfig
    upstream_model: str
    breaker: Breaker

    @property
    def provider(self) -> str:
        return self.config.provider


@dataclass(slots=True)
class Route:
    """A resolved model: its catalogue entry and the deployments that answer for it."""

    model: ModelConfig
    deployments: list[Deployment] = field(default_factory=list)

    def pick(self, tried: set[str], now: float) -> Deployment | None:
        """A deployment by weight, preferring ones not yet tried in this request, skipping open breakers."""
        if len(self.deployments) == 1 and not tried:
            only = self.deployments[0]
            return only if only.breaker.opened_at is None or only.breaker.allow(now) else None
        fresh = [d for d in self.deployments if d.name not in tried]
        for pool in (fresh, self.deployments):
            ready = [d for d in pool if not d.breaker.open or d.breaker.allow(now)]
            if ready:
                if len(ready) == 1:
                    return ready[0]
                return random.choices(ready, weights=[d.weight for d in ready])[0]
        return None

    @property
    def upstream(self) -> Upstream:
        """The first deployment's adapter (for callers that need just one)."""
        return self.deployments[0].upstream


def _make(cfg: UpstreamConfig) -> Upstream:
    if cfg.provider == "anthropic":
        return AnthropicUpstream(cfg)
    if cfg.provider == "openai":
        from tollway.upstream.openai import OpenAIUpstream  # only gateways that serve one pay its imports

        return OpenAIUpstream(cfg)
    # The clouds import botocore / google-auth: only gateways that serve one pay for them.
    if cfg.provider == "bedrock":
        from tollway.upstream.bedrock import BedrockUpstream

        return BedrockUpstream(cfg)
    if cfg.provider == "vertex":
        from tollway.upstream.vertex import VertexUpstream

        return VertexUpstream(cfg)
    if cfg.provider == "foundry":
        from tollway.upstream.foundry import FoundryUpstream

        return FoundryUpstream(cfg)
    return MockUpstream(cfg)



class Router:
    def __init__(self, settings: Settings) -> None:
        pools: dict[UpstreamConfig, Upstream] = {}
        self.retry: RetryConfig = settings.retries
        self.routes: dict[str, Route] = {}
        for model in settings.models:
            route = Route(model)
            for name, weight, cfg in model.all_deployments:
                key = cfg.model_copy(update={"model": None})  # same endpoint and settings: one pool
                if key not in pools:
                    pools[key] = _make(cfg)
                breaker = Breaker(settings.retries.breaker_failures, settings.retries.breaker_cooldown)
                route.deployments.append(Deployment(name, weight, pools[key], cfg, cfg.model or model.id, breaker))
            self.routes[model.id] = route
        self._upstreams = list(pools.values())

    def get(self, model_id: str) -> Route | None:
        return self.routes.get(model_id)

    def deployments(self) -> list[Deployment]:
        return [d for r in self.routes.values() for d in r.deployments]

    async def start(self) -> None:
        for upstream in self._upstreams:
            await upstream.start()

    async def close(self) -> None:
        for upstream in self._upstreams:
            await upstream.close()


def monotonic() -> float:
    return time.monotonic()
