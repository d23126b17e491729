"""Native Anthropic upstream: the request goes out as the client sent it, the answer comes back
unchanged. Only the credential is swapped for the provider key from the config."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from tollway.config import UpstreamConfig
from tollway.upstream.base import UpstreamFailure, UpstreamReply, UpstreamRequest

# Client headers an Anthropic upstream needs to see as they came (DECISIONS.md 3).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "x-claude-code-session-id")
# Upstream response headers worth relaying: they tell the client whether and when to retry.
RELAYED_HEADERS = ("retry-after", "x-should-retry")
DEFAULT_VERSION = "2023-06-01"


class AnthropicUpstream:
    """One pooled keep-alive client for one Anthropic-compatible base URL."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.resolved_base_url
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.cfg.max_connections, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.cfg.connect_timeout, sock_read=self.cfg.read_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=True, skip_auto_headers=("User-Agent",)
        )

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
        return await self._post("/v1/messages", req)

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        return await self._post("/v1/messages/count_tokens", req)

    async def _post(self, path: str, req: UpstreamRequest) -> UpstreamReply:
        assert self._session is not None, "upstream used before start()"
        url = self.base_url + path + ("?" + req.query if req.query else "")
        data = req.raw if req.raw is not None else orjson.dumps(req.body)
        try:
            async with asyncio.timeout(self.cfg.first_byte_timeout):
                resp = await self._session.post(url, data=data, headers=self._headers(req))
        except TimeoutError:
            raise UpstreamFailure(504, "timeout_error", "the upstream did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(502, "api_error", f"the upstream could not be reached ({type(exc).__name__})") \
                from None
        relayed = {h: resp.headers[h] for h in RELAYED_HEADERS if h in resp.headers}
        content_type = resp.headers.get("content-type", "application/json")
        if req.stream and resp.status == 200 and content_type.startswith("text/event-stream"):
            content = resp.content

            async def read() -> bytes:
                try:
                    return await content.readany()
                except TimeoutError:
                    raise UpstreamFailure(504, "timeout_error", "the upstream stream stalled") from None
                except aiohttp.ClientError:
                    raise UpstreamFailure(502, "api_error", "the upstream stream broke off") from None

            return UpstreamReply(
                resp.status, content_type, headers=relayed, read=read, close=resp.close, streaming=True
            )
        try:
            body = await resp.read()
        except TimeoutError:
            raise UpstreamFailure(504, "timeout_error", "the upstream did not finish in time") from None
        except aiohttp.ClientError:
            raise UpstreamFailure(502, "api_error", "the upstream broke off its answer") from None
        finally:
            resp.release()
        return UpstreamReply(resp.status, content_type, body=body, headers=relayed)
