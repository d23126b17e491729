"""Maps a catalogue model id to the adapter that serves it.

Adapters are created once at start-up and shared by every model that points at the same
endpoint with the same credential, so each upstream has exactly one connection pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.config import ModelConfig, Settings, UpstreamConfig
from tollway.upstream.anthropic import AnthropicUpstream
from tollway.upstream.base import Upstream
from tollway.upstream.mock import MockUpstream


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved model: its catalogue entry and the adapter that answers for it."""

    model: ModelConfig
    upstream: Upstream


def _make(cfg: UpstreamConfig) -> Upstream:
    if cfg.provider == "anthropic":
        return AnthropicUpstream(cfg)
    return MockUpstream(cfg)


class Router:
    def __init__(self, settings: Settings) -> None:
        pools: dict[UpstreamConfig, Upstream] = {}
        self.routes: dict[str, Route] = {}
        for model in settings.models:
            cfg = model.upstream
            key = cfg.model_copy(update={"model": None})  # same endpoint and settings: one pool
            if key not in pools:
                pools[key] = _make(cfg)
            self.routes[model.id] = Route(model, pools[key])
        self._upstreams = list(pools.values())

    def get(self, model_id: str) -> Route | None:
        return self.routes.get(model_id)

    async def start(self) -> None:
        for upstream in self._upstreams:
            await upstream.start()

    async def close(self) -> None:
        for upstream in self._upstreams:
            await upstream.close()
