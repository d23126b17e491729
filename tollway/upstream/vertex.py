"""Google Vertex AI upstream: Claude through rawPredict and streamRawPredict.

Decisions, each with its reason:

* **Wire**: `POST {base}/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
  (`:streamRawPredict` for streams, whose answer is Anthropic SSE, relayed byte for byte) with the
  Messages body less `model` (it is in the path) and `anthropic_version: vertex-2023-10-16`; the
  `anthropic-beta` header goes as a header, after the compatibility table (compat.py). The base
  is the region's endpoint (`https://{region}-aiplatform.googleapis.com/v1`, the global one for
  `global`, the multi-region ones for `us`/`eu`), as Anthropic's Vertex SDK builds it, unless
  `base_url` is set. count_tokens goes to `…/models/count-tokens:rawPredict` with `model` kept in
  the body — Vertex counts exactly.
* **Auth**: google-auth credentials — application default credentials (a workload identity /
  metadata server, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file) or the service-account (or
  external-account) JSON in `credentials_file` — scoped to cloud-platform. Loading them and
  refreshing the token do network and file I/O, so both run in a worker thread. google-auth
  treats a token as invalid a few minutes before it expires, so it is refreshed before expiry, by
  the first request that finds it so (the others wait on the same refresh, not on a new one).
  A failed refresh is remembered for a few seconds (cloud.FailureMemo): no storm of token requests.
* **Errors**: Google's `{"error": {"code", "message", "status"}}` and the model's Anthropic
  envelopes become Anthropic envelopes with Vertex's status; 401/403 become a 502 naming this
  upstream (cloud.py), and the token is refreshed before the next request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream import compat
from tollway.upstream.base import UpstreamReply, UpstreamRequest
from tollway.upstream.cloud import JSON, FailureMemo, error_reply, set_request_id
from tollway.upstream.http import TRACE_HEADERS, EventBound, new_session, post, read_body, read_chunk, relayed

VERSION = "vertex-2023-10-16"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
REQUEST_IDS = ("x-request-id", "request-id")


def default_base_url(region: str) -> str:
    """The endpoint Anthropic's Vertex SDK uses for a region."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


class GoogleToken:
    """An access token from google-auth, loaded and refreshed off the event loop (module doc)."""

    def __init__(self, credentials_file: str | None, label: str) -> None:
        self._file = credentials_file
        self._label = label
        self._creds: Any = None
        self._request: Any = None
        self._lock = asyncio.Lock()
        self._memo = FailureMemo()

    def _refresh(self) -> str:
        import google.auth
        import urllib3
        from google.auth.transport.urllib3 import Request

        if self._creds is None:
            if self._file:
                creds, _ = google.auth.load_credentials_from_file(self._file, scopes=SCOPES)
            else:
                creds, _ = google.auth.default(scopes=SCOPES)
            self._creds = creds
            self._request = Request(urllib3.PoolManager())
        if not self._creds.valid:
            self._creds.refresh(self._request)
        return str(self._creds.token)

    async def get(self) -> str:
        creds = self._creds
        if creds is not None and creds.valid:
            return str(creds.token)
        async with self._lock:
            creds = self._creds
            if creds is not None and creds.valid:
                return str(creds.token)
            self._memo.check()
            try:
                token = await asyncio.to_thread(self._refresh)
            except Exception as exc:  # google-auth raises DefaultCredentialsError, RefreshError, OSError…
                raise self._memo.remember(self._label, f"{type(exc).__name__}: {exc}") from None
            self._memo.clear()
            return token

    def invalidate(self) -> None:
        """After Vertex refused the token: fetch a new one next time."""
        if self._creds is not None:
            self._creds.token = None


class VertexUpstream:
    """One pooled keep-alive client for one project and region of Vertex AI."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        assert cfg.project and cfg.region, "validated in UpstreamConfig"
        self.cfg = cfg
        base = (cfg.base_url or default_base_url(cfg.region)).rstrip("/")
        self._prefix = f"{base}/projects/{cfg.project}/locations/{cfg.region}/publishers/anthropic/models/"
        self.label = f"vertex ({cfg.project}/{cfg.region})"
        self._token = GoogleToken(cfg.credentials_file, self.label)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = new_session(self.cfg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, url: str, body: dict[str, Any], betas: list[str],
                    req: UpstreamRequest) -> aiohttp.ClientResponse:
        assert self._session is not None, "upstream used before start()"
        headers = {"content-type": JSON, "authorization": f"Bearer {await self._token.get()}"}
        if betas:
            headers["anthropic-beta"] = ",".join(betas)
        for name in TRACE_HEADERS:
            value = req.headers.get(name)
            if value is not None:
                headers[name] = value
        return await post(self._session, URL(url, encoded=True), orjson.dumps(body), headers,
                          self.cfg.first_byte_timeout)

    def _fit(self, req: UpstreamRequest) -> tuple[str, dict[str, Any], list[str]]:
        fit = compat.adapt("vertex", req.body, req.headers.get("anthropic-beta"), self.cfg.extra_betas)
        body = {k: v for k, v in fit.body.items() if k != "model"}
        body["anthropic_version"] = VERSION
        return fit.model, body, fit.betas

    def _request_id(self, reply: UpstreamReply, resp: aiohttp.ClientResponse) -> UpstreamReply:
        for name in REQUEST_IDS:
            if name in resp.headers:
                return set_request_id(reply, name, resp.headers[name])
        return reply

    async def _answer(self, resp: aiohttp.ClientResponse, stream: bool) -> UpstreamReply:
        content_type = resp.headers.get("content-type", JSON)
        if resp.status != 200:
            body = await read_body(resp, self.cfg.max_response_bytes)
            if resp.status in (401, 403):
                self._token.invalidate()
            return self._request_id(error_reply(self.label, resp.status, body, relayed(resp)), resp)
        if stream and content_type.startswith("text/event-stream"):
            content = resp.content
            bound = EventBound(self.cfg.max_event_bytes)

            async def read() -> bytes:
                return bound.check(await read_chunk(content))

            reply = UpstreamReply(200, content_type, headers=relayed(resp), read=read, close=resp.close,
                                  streaming=True)
            return self._request_id(reply, resp)
        body = await read_body(resp, self.cfg.max_response_bytes)
        return self._request_id(UpstreamReply(200, content_type, body=body, headers=relayed(resp)),
                                resp)

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        model, body, betas = self._fit(req)
        if req.stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        verb = "streamRawPredict" if req.stream else "rawPredict"
        url = f"{self._prefix}{urllib.parse.quote(model, safe='@')}:{verb}"
        return await self._answer(await self._post(url, body, betas, req), req.stream)

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        model, body, betas = self._fit(req)
        body["model"] = model
        body.pop("max_tokens", None)
        body.pop("stream", None)
        return await self._answer(await self._post(f"{self._prefix}count-tokens:rawPredict", body, betas, req), False)
