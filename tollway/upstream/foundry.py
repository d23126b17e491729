"""Microsoft Foundry upstream: Claude through the Anthropic Messages API under a Foundry resource.

Decisions, each with its reason:

* **Wire**: Foundry serves the Anthropic API itself under the resource's endpoint
  (`base_url: https://<resource>.services.ai.azure.com/anthropic`): `{base}/v1/messages` and
  `{base}/v1/messages/count_tokens`, SSE relayed byte for byte. The compatibility table
  (compat.py) filters `anthropic-beta` and the fields that need a dropped beta; while it changed
  nothing, the client's own bytes are forwarded.
* **Auth**: an API key goes in `api-key` and `x-api-key` (as Anthropic's Foundry SDK sends it);
  or a Microsoft Entra ID token as `Authorization: Bearer`, obtained by running `token_command`
  (for example `az account get-access-token --resource https://ai.azure.com --query accessToken
  -o tsv`, or a script doing the client-credentials grant) in a worker thread, reused for
  `token_ttl` seconds and fetched again after a 401. No Entra library is built in: the command
  covers managed identity, workload identity and client credentials through the operator's own
  tooling, without adding Azure's SDK to every gateway.
* **Errors**: the model's Anthropic envelopes pass unchanged; Azure's own error bodies become
  Anthropic envelopes; 401/403 become a 502 naming this upstream (cloud.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream import compat
from tollway.upstream.base import UpstreamReply, UpstreamRequest
from tollway.upstream.cloud import JSON, FailureMemo, error_reply, set_request_id
from tollway.upstream.http import TRACE_HEADERS, EventBound, new_session, post, read_body, read_chunk, relayed

DEFAULT_VERSION = "2023-06-01"
FORWARDED = ("anthropic-version", "x-claude-code-session-id", *TRACE_HEADERS)
REQUEST_IDS = ("request-id", "apim-request-id", "x-request-id")
COMMAND_TIMEOUT_S = 30.0


class CommandToken:
    """A bearer token printed by an operator's command, reused for its ttl (module doc)."""

    def __init__(self, argv: tuple[str, ...], ttl: float, label: str) -> None:
        self._argv = argv
        self._ttl = ttl
        self._label = label
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()
        self._memo = FailureMemo()

    def _run(self) -> str:
        proc = subprocess.run(self._argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
        token = proc.stdout.strip()
        if proc.returncode != 0 or not token:
            # stderr is not repeated: a token tool may print secrets or account details there.
            raise RuntimeError(f"token_command exited {proc.returncode} and printed {'no' if not token else 'a'} token")
        return token

    async def get(self) -> str:
        if self._token is not None and time.monotonic() < self._until:
            return self._token
        async with self._lock:
            if self._token is not None and time.monotonic() < self._until:
                return self._token
            self._memo.check()
            try:
                token = await asyncio.to_thread(self._run)
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                raise self._memo.remember(self._label, f"{type(exc).__name__}: {exc}") from None
            self._memo.clear()
            self._token, self._until = token, time.monotonic() + self._ttl
            return token

    def invalidate(self) -> None:
        self._token = None


class FoundryUpstream:
    """One pooled keep-alive client for one Foundry resource."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        base = cfg.resolved_base_url
        self._urls = {"messages": URL(base + "/v1/messages"), "count_tokens": URL(base + "/v1/messages/count_tokens")}
        self.label = f"foundry ({urlsplit(base).hostname})"
        self._command = CommandToken(cfg.token_command, cfg.token_ttl, self.label) if cfg.token_command else None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = new_session(self.cfg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post("messages", req)

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post("count_tokens", req)

    async def _headers(self, req: UpstreamRequest, betas: list[str]) -> dict[str, str]:
        headers = {"content-type": JSON}
        if self._command is not None:
            headers["authorization"] = f"Bearer {await self._command.get()}"
        else:
            headers["api-key"] = headers["x-api-key"] = self.cfg.api_key or ""
        for name in FORWARDED:
            value = req.headers.get(name)
            if value is not None:
                headers[name] = value
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        if betas:
            headers["anthropic-beta"] = ",".join(betas)
        return headers

    async def _post(self, kind: str, req: UpstreamRequest) -> UpstreamReply:
        assert self._session is not None, "upstream used before start()"
        fit = compat.adapt("foundry", req.body, req.headers.get("anthropic-beta"), self.cfg.extra_betas)
        if fit.body is req.body and fit.model == req.body.get("model") and req.raw is not None:
            data = req.raw
        else:
            data = orjson.dumps({**fit.body, "model": fit.model})
        url = self._urls[kind].with_query(req.query) if req.query else self._urls[kind]
        resp = await post(self._session, url, data, await self._headers(req, fit.betas), self.cfg.first_byte_timeout)
        content_type = resp.headers.get("content-type", JSON)
        rid = next((resp.headers[n] for n in REQUEST_IDS if n in resp.headers), None)
        rid_name = next((n for n in REQUEST_IDS if n in resp.headers), REQUEST_IDS[0])
        if resp.status != 200:
            body = await read_body(resp, self.cfg.max_response_bytes)
            if resp.status in (401, 403) and self._command is not None:
                self._command.invalidate()
            return set_request_id(error_reply(self.label, resp.status, body, relayed(resp)), rid_name, rid)
        if req.stream and content_type.startswith("text/event-stream"):
            content = resp.content
            bound = EventBound(self.cfg.max_event_bytes)

            async def read() -> bytes:
                return bound.check(await read_chunk(content))

            reply = UpstreamReply(200, content_type, headers=relayed(resp), read=read, close=resp.close,
                                  streaming=True)
            return set_request_id(reply, rid_name, rid)
        body = await read_body(resp, self.cfg.max_response_bytes)
        reply = UpstreamReply(200, content_type, body=body, headers=relayed(resp))
        return set_request_id(reply, rid_name, rid)
