"""Google Vertex AI (Claude via rawPredict) and Google's OAuth token endpoint on 127.0.0.1.

* `POST /token`: the service-account flow google-auth runs — a JWT-bearer grant whose assertion
  is verified with google-auth's own JWT check against the public key of the test's generated
  service-account key (signature, Google's token audience, expiry). It issues opaque access tokens
  that live `token_lifetime` seconds; `token_requests` counts the grants.
* `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict` and
  `:streamRawPredict` (Anthropic SSE), and `…/models/count-tokens:rawPredict`: a bearer token
  this endpoint issued and that has not expired, else Google's 401 UNAUTHENTICATED; the project and
  region must be the emulator's; `anthropic_version` must be `vertex-2023-10-16`, the body must
  not carry `model` (count-tokens must), `stream` must match the verb, and every `anthropic-beta`
  value must be one Vertex knows (Anthropic's 400 otherwise, as Vertex relays it).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.cloud_brain import Brain, request_id
from tests.loopback import LoopbackServer

KNOWN_BETAS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "interleaved-thinking-2025-05-14", "context-1m-2025-08-07", "context-management-2025-06-27",
    "tool-search-tool-2025-10-19", "web-search-2025-03-05",
})
VERSION = "vertex-2023-10-16"
# The `aud` google-auth puts in a service-account assertion, whatever the token URI (Google's own).
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class Scripted:
    """The next rawPredict answer: this status and JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


def google_error(status: int, message: str, state: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": state}}, status=status)


def anthropic_error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": error_type, "message": message}}, status=status)


class VertexEmulator(LoopbackServer):
    thread_name = "vertex-emulator"

    def __init__(self, public_key_pem: bytes, project: str = "tollway-test", region: str = "us-east5",
                 token_lifetime: int = 3600) -> None:
        super().__init__()
        self.public_key_pem = public_key_pem
        self.project, self.region = project, region
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self.token_requests = 0
        self.received: list[Seen] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._script: deque[Scripted] = deque()
        self._brain = Brain()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def token_uri(self) -> str:
        return self.base_url + "/token"

    def script(self, *replies: Scripted) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._script.clear()

    def revoke_all(self) -> None:
        with self._lock:
            self.tokens.clear()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{call}",
                            self._predict)
        await self._serve_app(app, handler_cancellation=True, shutdown_timeout=0.5)

    async def _token(self, request: web.Request) -> web.Response:
        from google.auth import exceptions, jwt

        form = await request.post()
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(str(form.get("assertion", "")), certs=self.public_key_pem.decode(),
                                audience=GOOGLE_TOKEN_AUDIENCE)
        except (exceptions.GoogleAuthError, ValueError) as exc:
            return web.json_response({"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"},
                                     status=400)
        if "cloud-platform" not in str(claims.get("scope", "")):
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = f"ya29.emu-{next(self._counter)}"
        with self._lock:
            self.tokens[token] = time.time() + self.token_lifetime
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    async def _predict(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.received.append(Seen(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        auth = request.headers.get("Authorization", "")
        expiry = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if expiry is None or expiry < time.time():
            return google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                "token, login cookie or other valid authentication credential.", "UNAUTHENTICATED")
        if (request.match_info["project"], request.match_info["region"]) != (self.project, self.region):
            return google_error(404, "Publisher Model was not found.", "NOT_FOUND")
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return web.json_response(scripted.body, status=scripted.status, headers=scripted.headers)
        model, _, verb = request.match_info["call"].rpartition(":")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        if payload.get("anthropic_version") != VERSION:
            return anthropic_error(400, "invalid_request_error", "anthropic_version: Input should be "
                                   "'vertex-2023-10-16'")
        for beta in request.headers.get("anthropic-beta", "").split(","):
            if beta.strip() and beta.strip() not in KNOWN_BETAS:
                return anthropic_error(400, "invalid_request_error", f"Unexpected value(s) `{beta.strip()}` for "
                                       "the `anthropic-beta` header. Please consult our documentation at "
                                       "docs.anthropic.com or try again without the header.")
        rid = request_id("vertex")
        if model == "count-tokens" and verb == "rawPredict":
            if "model" not in payload:
                return anthropic_error(400, "invalid_request_error", "model: Field required")
            return web.json_response({"input_tokens": await self._brain.count(payload)}, headers={"x-request-id": rid})
        if "model" in payload:
            return anthropic_error(400, "invalid_request_error", "model: Extra inputs are not permitted")
        if bool(payload.get("stream")) != (verb == "streamRawPredict") or verb not in ("rawPredict",
                                                                                    "streamRawPredict"):
            return google_error(400, f"stream must be true exactly for streamRawPredict (got {verb})",
                                "INVALID_ARGUMENT")
        if verb == "rawPredict":
            return web.json_response(await self._brain.message(payload, model), headers={"x-request-id": rid})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "x-request-id": rid})
        await resp.prepare(request)
        for event in await self._brain.events(payload, model):
            await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
        await resp.write_eof()
        return resp
