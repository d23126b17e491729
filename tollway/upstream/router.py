"""Maps a catalogue model id to the deployments that serve it, and keeps their health.

Adapters are created once at start-up and shared by every deployment that points at the same
endpoint with the same settings, so each upstream has exactly one connection pool. Each
deployment has a circuit breaker (upstream/breaker.py), consulted only when the request has
somewhere else to go.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tollway.config import ModelConfig, RetryConfig, Settings, UpstreamConfig
from tollway.upstream.anthropic import AnthropicUpstream
from tollway.upstream.base import Upstream
from tollway.upstream.breaker import Breaker, Clock
from tollway.upstream.mock import MockUpstream


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

    def pick(self, tried: set[str], use_breakers: bool = True) -> Deployment | None:
        """A deployment by weight, preferring ones not yet tried in this request, skipping open
        breakers unless USE_BREAKERS is false (the request has nowhere else to go)."""
        if len(self.deployments) == 1 and not tried:
            only = self.deployments[0]
            return only if not use_breakers or only.breaker.allow() else None
        fresh = [d for d in self.deployments if d.name not in tried]
        for pool in (fresh, self.deployments):
            ready = [d for d in pool if not use_breakers or d.breaker.allow()]
            if ready:
                if len(ready) == 1:
                    return ready[0]
                return random.choices(ready, weights=[d.weight for d in ready])[0]
        return None


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
    def __init__(self, settings: Settings, clock: Clock | None = None,
                 on_breaker: Callable[[str, str], None] | None = None) -> None:
        pools: dict[UpstreamConfig, Upstream] = {}
        self.retry: RetryConfig = settings.retries
        self.routes: dict[str, Route] = {}
        for model in settings.models:
            route = Route(model)
            for name, weight, cfg in model.all_deployments:
                key = cfg.model_copy(update={"model": None})  # same endpoint and settings: one pool
                if key not in pools:
                    pools[key] = _make(cfg)
                breaker = Breaker(settings.retries.breaker_failures, settings.retries.breaker_cooldown, name=name,
                                  on_change=on_breaker, **({"clock": clock} if clock is not None else {}))
                route.deployments.append(Deployment(name, weight, pools[key], cfg, cfg.model or model.id, breaker))
            self.routes[model.id] = route
        self._upstreams = list(pools.values())

    def get(self, model_id: str) -> Route | None:
        return self.routes.get(model_id)

    async def start(self) -> None:
        for upstream in self._upstreams:
            await upstream.start()

    async def close(self) -> None:
        for upstream in self._upstreams:
            await upstream.close()

