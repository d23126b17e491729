"""The model behind the cloud emulators (Bedrock, Vertex, Foundry): Tollway's deterministic mock
model, driven through its public Upstream interface, so a cloud emulator answers real agent
turns (a `tool_use` for "call <Tool> with {json}", text quoting `tool_result`s) and prompt-cache
usage exactly as the mock documents, in Anthropic's own event shapes. Each emulator adds only
what its cloud does on the wire: auth, paths, body rules and framing."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import orjson

from tollway.config import UpstreamConfig
from tollway.upstream.base import UpstreamRequest
from tollway.upstream.mock import MockUpstream

_request_ids = itertools.count(1)
_lock = threading.Lock()


def request_id(prefix: str) -> str:
    with _lock:
        return f"{prefix}-{next(_request_ids):06d}"


class Brain:
    def __init__(self) -> None:
        self._mock = MockUpstream(UpstreamConfig(provider="mock"))

    async def message(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        reply = await self._mock.messages(UpstreamRequest({**body, "model": model}, None, {}, False))
        message: dict[str, Any] = orjson.loads(reply.body)
        return message

    async def events(self, body: dict[str, Any], model: str) -> list[dict[str, Any]]:
        """The Anthropic stream events for BODY, as objects."""
        reply = await self._mock.messages(UpstreamRequest({**body, "model": model}, None, {}, True))
        out = []
        while chunk := await reply.read():
            for raw in chunk.split(b"\n\n"):
                pos = raw.find(b"\ndata: ")
                if pos >= 0:
                    out.append(orjson.loads(raw[pos + 7:]))
        return out

    async def count(self, body: dict[str, Any]) -> int:
        reply = await self._mock.count_tokens(UpstreamRequest(body, None, {}, False))
        return int(orjson.loads(reply.body)["input_tokens"])
