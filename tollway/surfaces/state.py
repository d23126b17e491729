"""The per-process gateway state every surface reads, hung on the Starlette app."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from tollway.config import Settings
from tollway.pipeline import Pipeline


@dataclass(slots=True)
class Gateway:
    settings: Settings
    pipeline: Pipeline
    ready: bool = False


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
