"""Microsoft Foundry's Anthropic endpoint on 127.0.0.1: the Anthropic Messages API under
`/anthropic/v1/...` of a resource, authenticated by an `api-key` (or `x-api-key`) header or a
Microsoft Entra ID bearer token from `entra_tokens`; `anthropic-beta` values Foundry does not
serve are refused with Anthropic's 400, as the API behind it does. Answers come from the shared
brain (tests/cloud_brain.py) in Anthropic's exact JSON and SSE, with an `apim-request-id` header
as Azure's API management adds."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import orjson
from aiohttp import web

from tests.cloud_brain import Brain, request_id
from tests.loopback import LoopbackServer

UNSERVED_BETAS = frozenset({"fast-mode-2026-02-01", "output-128k-2025-02-19", "token-efficient-tools-2025-02-19",
                            "advisor-tool-2026-03-01", "oauth-2025-04-20", "fine-grained-tool-streaming-2025-05-14"})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return dict(orjson.loads(self.body))


def error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": error_type, "message": message}}, status=status,
                             headers={"apim-request-id": request_id("foundry")})


class FoundryEmulator(LoopbackServer):
    thread_name = "foundry-emulator"

    def __init__(self, api_key: str | None = None, entra_tokens: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.api_key = api_key
        self.entra_tokens = set(entra_tokens)
        self.received: list[Seen] = []
        self._lock = threading.Lock()
        self._brain = Brain()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/anthropic"

    def reset(self) -> None:
        with self._lock:
            self.received.clear()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/anthropic/v1/messages", self._handle)
        app.router.add_post("/anthropic/v1/messages/count_tokens", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.received.append(Seen(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        key = request.headers.get("api-key") or request.headers.get("x-api-key")
        bearer = request.headers.get("Authorization", "")
        if not ((self.api_key and key == self.api_key) or (bearer.startswith("Bearer ")
                                                            and bearer[7:] in self.entra_tokens)):
            return error(401, "authentication_error", "Access denied due to invalid subscription key or wrong API "
                         "endpoint.")
        for beta in request.headers.get("anthropic-beta", "").split(","):
            if beta.strip() in UNSERVED_BETAS:
                return error(400, "invalid_request_error", f"Unexpected value(s) `{beta.strip()}` for the "
                             "`anthropic-beta` header.")
        payload = orjson.loads(body)
        rid = {"apim-request-id": request_id("foundry")}
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": await self._brain.count(payload)}, headers=rid)
        model = payload.pop("model")
        if not payload.get("stream"):
            return web.json_response(await self._brain.message(payload, model), headers=rid)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", **rid})
        await resp.prepare(request)
        for event in await self._brain.events(payload, model):
            await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
        await resp.write_eof()
        return resp
