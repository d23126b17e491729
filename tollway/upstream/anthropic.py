"""Native Anthropic upstream: the request goes out as the client sent it, the answer comes back
unchanged. Only the credential is swapped for the provider key from the config."""

from __future__ import annotations

import aiohttp
import orjson
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream.base import UpstreamReply, UpstreamRequest
from tollway.upstream.http import TRACE_HEADERS, EventBound, new_session, post, read_body, read_chunk, relayed

# Client headers an Anthropic upstream needs to see as they came (DECISIONS.md 3), and the trace context.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "x-claude-code-session-id", *TRACE_HEADERS)
DEFAULT_VERSION = "2023-06-01"
MESSAGES, COUNT_TOKENS = "/v1/messages", "/v1/messages/count_tokens"


class AnthropicUpstream:
    """One pooled keep-alive client for one Anthropic-compatible base URL."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.resolved_base_url
        self._urls = {path: URL(self.base_url + path) for path in (MESSAGES, COUNT_TOKENS)}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = new_session(self.cfg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, req: UpstreamRequest) -> dict[str, str]:
        headers = {"content-type": "application/json", "x-api-key": self.cfg.api_key or ""}
        for name in FORWARDED_HEADERS:
            value = req.headers.get(name)
            if value is not None:
                headers[name] = value
        headers.setdefault("anthropic-version", DEFAULT_VERSION)
        return headers

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post(MESSAGES, req)

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post(COUNT_TOKENS, req)

    async def _post(self, path: str, req: UpstreamRequest) -> UpstreamReply:
        assert self._session is not None, "upstream used before start()"
        url = self.base_url + path + "?" + req.query if req.query else self._urls[path]
        data = req.raw if req.raw is not None else orjson.dumps(req.body)
        resp = await post(self._session, url, data, self._headers(req), self.cfg.first_byte_timeout)
        headers = relayed(resp)
        upstream_id = resp.headers.get("request-id")
        content_type = resp.headers.get("content-type", "application/json")
        if req.stream and resp.status == 200 and content_type.startswith("text/event-stream"):
            content = resp.content
            bound = EventBound(self.cfg.max_event_bytes)

            async def read() -> bytes:
                return bound.check(await read_chunk(content))

            return UpstreamReply(
                resp.status, content_type, headers=headers, read=read, close=resp.close, streaming=True,
                request_id=upstream_id,
            )
        body = await read_body(resp, self.cfg.max_response_bytes)
        return UpstreamReply(resp.status, content_type, body=body, headers=headers, request_id=upstream_id)
