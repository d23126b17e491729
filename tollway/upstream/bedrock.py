"""Amazon Bedrock upstream: Claude through InvokeModel and InvokeModelWithResponseStream.

Decisions, each with its reason:

* **Wire**: `POST {base}/model/{model-id}/invoke` (or `invoke-with-response-stream`) with the
  Messages body less `model` and `stream` (Bedrock takes both from the path and rejects them in
  the body), `anthropic_version: bedrock-2023-05-31`, and the `anthropic-beta` header moved into
  the `anthropic_beta` body field — after the compatibility table (compat.py) dropped what
  Bedrock does not take. Model ids go in the path URL-quoted, so inference-profile ids
  (`us.`/`eu.`/`global.`…) and ARNs work as given.
* **Streams**: the AWS event-stream answer is decoded with botocore's parser
  (`wire.bedrock_stream`) back into Anthropic SSE, so the pipeline meters, audits and relays it
  like a native stream.
* **Auth**: a Bedrock API key (`api_key`) goes as `Authorization: Bearer`; otherwise requests are
  signed with botocore's SigV4 signer (service `bedrock`) using botocore's standard credential
  chain — environment variables, the shared config/credentials files and `aws_profile`, web
  identity (IRSA), AssumeRole, credential_process, container and instance metadata — with its
  refresh of temporary credentials. Resolving and refreshing can do network I/O (STS, IMDS) or run
  a process, so it runs in a worker thread, never on the event loop. STS calls (AssumeRole, web
  identity) go to the upstream's region unless the profile or AWS_REGION names one, and to
  botocore's configured endpoint when there is one (`AWS_ENDPOINT_URL_STS`, a profile's
  `services` section: VPC endpoints, tests). While credentials are fresh
  the signer uses them without a thread hop. A failed resolution is remembered for a few
  seconds (cloud.FailureMemo), so a broken credential source is not asked again per request.
* **Region**: `region`, else the endpoint host (`bedrock-runtime.<region>.amazonaws.com`, VPC
  endpoints too), else AWS_REGION / AWS_DEFAULT_REGION (config.py refuses a bedrock upstream
  with none of them at start).
* **count_tokens**: Bedrock's CountTokens (`/model/{id}/count-tokens`, the InvokeModel body
  base64-encoded) where the model has it; when Bedrock answers that the model cannot count
  (400/404), the documented local count (wire.tokens) from then on for that model — never a fake 0.
* **Errors**: AWS error answers (`x-amzn-ErrorType`, `{"message"}`) become Anthropic envelopes
  with Bedrock's status (429 throttling keeps its retry-after, so the pipeline backs off or fails
  over); 401/403 become a 502 naming this upstream (cloud.py). The request id (`x-amzn-RequestId`)
  is kept under its own name.
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
from typing import Any

import aiohttp
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.session import Session
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream import compat
from tollway.upstream.base import UpstreamFailure, UpstreamReply, UpstreamRequest
from tollway.upstream.cloud import JSON, FailureMemo, error_reply, set_request_id
from tollway.upstream.http import new_session, post, read_body, read_chunk, relayed
from tollway.wire.bedrock_stream import BedrockStreamDecoder
from tollway.wire.tokens import count_input_tokens

VERSION = "bedrock-2023-05-31"
SSE = "text/event-stream; charset=utf-8"
REQUEST_ID = "x-amzn-requestid"
# Seconds between attempts at an advisory refresh (credentials still valid, expiring soon) that failed.
ADVISORY_RETRY_S = 30.0
DRAIN_S = 1.0


class AwsCredentials:
    """botocore's credential chain, resolved and refreshed off the event loop (module doc)."""

    def __init__(self, profile: str | None, label: str, region: str) -> None:
        self._profile = profile
        self._label = label
        self._region = region
        self._creds: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._tried = 0.0
        self._lock = asyncio.Lock()
        self._memo = FailureMemo()

    def _fresh(self) -> ReadOnlyCredentials | None:
        creds, frozen = self._creds, self._frozen
        if creds is None or frozen is None:
            return None
        if not isinstance(creds, RefreshableCredentials) or not creds.refresh_needed():
            return frozen
        # Advisory window: still valid; retry a failed refresh only every ADVISORY_RETRY_S.
        mandatory = creds.refresh_needed(creds._mandatory_refresh_timeout)
        if not mandatory and time.monotonic() - self._tried < ADVISORY_RETRY_S:
            return frozen
        return None

    def _resolve(self) -> ReadOnlyCredentials:
        """In a worker thread: the chain on first use, botocore's refresh afterwards."""
        if self._creds is None:
            session = Session(profile=self._profile)
            if session.get_config_variable("region") is None:
                # STS (AssumeRole, web identity) in the upstream's region unless the profile names one.
                session.set_config_variable("region", self._region)
            creds = session.get_credentials()
            if creds is None:
                raise LookupError("no AWS credentials found in the environment, the shared files or the metadata "
                                  "services")
            self._creds = creds
        return self._creds.get_frozen_credentials()

    async def get(self) -> ReadOnlyCredentials:
        frozen = self._fresh()
        if frozen is not None:
            return frozen
        async with self._lock:
            frozen = self._fresh()
            if frozen is not None:
                return frozen
            self._memo.check()
            self._tried = time.monotonic()
            try:
                self._frozen = await asyncio.to_thread(self._resolve)
            except Exception as exc:  # botocore raises many kinds (profile, STS, process…)
                raise self._memo.remember(self._label, f"{type(exc).__name__}: {exc}") from None
            self._memo.clear()
            return self._frozen

    def invalidate(self) -> None:
        """After the cloud refused them: resolve again next time (rotated keys, a new role session)."""
        self._creds = self._frozen = None


class BedrockUpstream:
    """One pooled keep-alive client for one Bedrock runtime endpoint."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        region = cfg.aws_region
        assert region, "UpstreamConfig refuses a bedrock upstream without a region"
        self.region = region
        self.base_url = (cfg.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        self.label = f"bedrock ({self.region})"
        self._bearer = cfg.api_key
        self._creds = None if cfg.api_key else AwsCredentials(cfg.aws_profile, self.label, self.region)
        self._local_count: set[str] = set()  # models Bedrock said it cannot count tokens for
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = new_session(self.cfg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- the request -------------------------------------------------------------------------

    def _url(self, model: str, action: str) -> str:
        return f"{self.base_url}/model/{urllib.parse.quote(model, safe=':')}/{action}"

    def _body(self, req: UpstreamRequest) -> tuple[str, dict[str, Any]]:
        fit = compat.adapt("bedrock", req.body, req.headers.get("anthropic-beta"), self.cfg.extra_betas)
        body = {k: v for k, v in fit.body.items() if k not in ("model", "stream")}
        body["anthropic_version"] = VERSION
        if fit.betas:
            body["anthropic_beta"] = fit.betas
        return fit.model, body

    async def _headers(self, url: str, data: bytes, accept: str) -> dict[str, str]:
        headers = {"content-type": JSON, "accept": accept}
        if self._bearer is not None:
            headers["authorization"] = f"Bearer {self._bearer}"
            return headers
        assert self._creds is not None
        creds = await self._creds.get()
        request = AWSRequest("POST", url, data=data, headers=headers)
        SigV4Auth(creds, "bedrock", self.region).add_auth(request)
        return dict(request.headers.items())

    async def _post(self, url: str, data: bytes, accept: str) -> aiohttp.ClientResponse:
        assert self._session is not None, "upstream used before start()"
        headers = await self._headers(url, data, accept)
        # encoded=True: the path goes out exactly as it was signed.
        return await post(self._session, URL(url, encoded=True), data, headers, self.cfg.first_byte_timeout)

    async def _error(self, resp: aiohttp.ClientResponse) -> UpstreamReply:
        body = await read_body(resp, self.cfg.max_response_bytes)
        code = resp.headers.get("x-amzn-errortype", "").split(":", 1)[0] or None
        if resp.status in (401, 403) and self._creds is not None:
            self._creds.invalidate()
        reply = error_reply(self.label, resp.status, body, relayed(resp), code)
        return set_request_id(reply, REQUEST_ID, resp.headers.get(REQUEST_ID))

    # -- the Upstream protocol ---------------------------------------------------------------

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        model, body = self._body(req)
        data = orjson.dumps(body)
        if not req.stream:
            resp = await self._post(self._url(model, "invoke"), data, JSON)
            if resp.status != 200:
                return await self._error(resp)
            answer = await read_body(resp, self.cfg.max_response_bytes)
            reply = UpstreamReply(200, JSON, body=answer, headers=relayed(resp))
            return set_request_id(reply, REQUEST_ID, resp.headers.get(REQUEST_ID))
        resp = await self._post(self._url(model, "invoke-with-response-stream"), data,
                                "application/vnd.amazon.eventstream")
        if resp.status != 200:
            return await self._error(resp)
        stream = _Stream(resp)
        reply = UpstreamReply(200, SSE, headers=relayed(resp), read=stream.read, close=stream.close, streaming=True)
        return set_request_id(reply, REQUEST_ID, resp.headers.get(REQUEST_ID))

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        model, body = self._body(req)
        body.pop("max_tokens", None)
        if model not in self._local_count:
            invoke = {**body, "max_tokens": 1}  # the InvokeModel body it stands for must be valid
            data = orjson.dumps({"input": {"invokeModel": {"body": base64.b64encode(orjson.dumps(invoke)).decode()}}})
            resp = await self._post(self._url(model, "count-tokens"), data, JSON)
            if resp.status == 200:
                try:
                    tokens = orjson.loads(await read_body(resp, self.cfg.max_response_bytes))["inputTokens"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise UpstreamFailure(502, "api_error", f"{self.label} answered CountTokens without "
                                          "inputTokens") from None
                reply = UpstreamReply(200, JSON, body=orjson.dumps({"input_tokens": int(tokens)}))
                return set_request_id(reply, REQUEST_ID, resp.headers.get(REQUEST_ID))
            if resp.status not in (400, 404):
                return await self._error(resp)
            resp.release()
            self._local_count.add(model)  # this model cannot count on Bedrock: the local count from now on
        return UpstreamReply(200, JSON, body=orjson.dumps({"input_tokens": count_input_tokens(req.body)}))


class _Stream:
    """Reads the event-stream body and hands out Anthropic SSE bytes (never b"" before the end)."""

    __slots__ = ("_content", "_decoder", "_eof", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._content = resp.content
        self._decoder = BedrockStreamDecoder()
        self._eof = False

    async def read(self) -> bytes:
        decoder = self._decoder
        while not self._eof:
            if decoder.done:
                self._eof = True
                await self._drain()
                break
            try:
                data = await read_chunk(self._content)
            except UpstreamFailure:
                self._eof = True
                out = decoder.finish()
                if out:
                    return out
                raise
            if not data:
                self._eof = True
                return decoder.finish()
            out = decoder.feed(data)
            if out:
                return out
        return b""

    async def _drain(self) -> None:
        """After message_stop: read the (empty) rest briefly, so the connection goes back to the pool."""
        try:
            async with asyncio.timeout(DRAIN_S):
                while await self._content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError):
            pass
        self._resp.close()  # a no-op when the body was read to its end

    def close(self) -> None:
        self._resp.close()
