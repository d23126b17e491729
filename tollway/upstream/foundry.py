"""Microsoft Foundry upstream: Claude through the Anthropic Messages API under a Foundry resource.

Decisions, each with its reason:

* **Wire**: Foundry serves the Anthropic API itself under the resource's endpoint
  (`base_url: https://<resource>.services.ai.azure.com/anthropic`): `{base}/v1/messages` and
  `{base}/v1/messages/count_tokens`, SSE relayed byte for byte. The compatibility table
  (compat.py) filters `anthropic-beta` and the fields that need a dropped beta; while it changed
  nothing, the client's own bytes are forwarded.
* **Auth**: an API key goes in `api-key` and `x-api-key` (as Anthropic's Foundry SDK sends it);
  or a Microsoft Entra ID token as `Authorization: Bearer`, from azure-identity's async
  credentials (`entra`: DefaultAzureCredential, client secret, workload identity, managed
  identity…), refreshed ahead of expiry off the request path and asked for again after a 401/403
  (foundry_entra.py).
* **Errors**: the model's Anthropic envelopes pass unchanged; Azure's own error bodies become
  Anthropic envelopes; 401/403 become a 502 naming this upstream (cloud.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream import compat
from tollway.upstream.base import UpstreamReply, UpstreamRequest
from tollway.upstream.cloud import JSON, error_reply, set_request_id
from tollway.upstream.foundry_entra import EntraToken
from tollway.upstream.http import TRACE_HEADERS, EventBound, new_session, post, read_body, read_chunk, relayed

DEFAULT_VERSION = "2023-06-01"
FORWARDED = ("anthropic-version", "x-claude-code-session-id", *TRACE_HEADERS)
REQUEST_IDS = ("request-id", "apim-request-id", "x-request-id")


class FoundryUpstream:
    """One pooled keep-alive client for one Foundry resource."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        base = cfg.resolved_base_url
        self._urls = {"messages": URL(base + "/v1/messages"), "count_tokens": URL(base + "/v1/messages/count_tokens")}
        self.label = f"foundry ({urlsplit(base).hostname})"
        self._entra = EntraToken(cfg.entra, self.label) if cfg.entra is not None else None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = new_session(self.cfg)

    async def close(self) -> None:
        if self._entra is not None:
            await self._entra.close()
        if self._session is not None:
            await self._session.close()

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post("messages", req)

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post("count_tokens", req)

    async def _headers(self, req: UpstreamRequest, betas: list[str]) -> dict[str, str]:
        headers = {"content-type": JSON}
        if self._entra is not None:
            headers["authorization"] = f"Bearer {await self._entra.get()}"
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
            if resp.status in (401, 403) and self._entra is not None:
                self._entra.invalidate()
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
