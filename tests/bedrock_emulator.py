"""Amazon Bedrock's runtime API on 127.0.0.1, as strict as Bedrock about what Tollway sends.

* **SigV4 is verified**: the signature is recomputed with botocore's signer from the test's
  credentials (the access key id looks up the secret and session token), over the signed headers
  as received, the raw path and the body, at the request's own X-Amz-Date; scope (date, region,
  service `bedrock`), freshness (15 minutes) and the session token are checked as AWS does, with
  AWS's error names (InvalidSignatureException, UnrecognizedClientException, ExpiredTokenException).
  `Authorization: Bearer` is accepted for Bedrock API keys in `api_keys`.
  With `derive_secrets`, any access key id starting `ASIATEST` is valid with the secret
  `derived_secret(id)`: a credential_process script can mint fresh keys for refresh tests.
* **Bodies as Bedrock checks them**: `model` and `stream` keys are refused, `anthropic_version`
  must be `bedrock-2023-05-31`, every `anthropic_beta` value must be one Bedrock knows, and a
  `cache_control.ttl` is refused (ValidationException, 400).
* **Streams in real event-stream framing**: every Anthropic event goes base64-encoded in a
  `chunk` event frame, `message_stop` carrying `amazon-bedrock-invocationMetrics` as Bedrock's
  does. Frames are encoded here by hand (test code), and `tests/test_bedrock_stream.py` checks
  this encoder against botocore's decoder.
* CountTokens for the models in `count_models`; a ValidationException for the others.

Scripted replies (`script`) replace the next answer: an AWS JSON error, or raw stream bytes cut
where a test wants them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.cloud_brain import Brain, request_id
from tests.loopback import LoopbackServer

# Bedrock's documented anthropic_beta values (InvokeModel, Anthropic models).
KNOWN_BETAS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24", "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14", "output-128k-2025-02-19", "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07", "context-management-2025-06-27", "effort-2025-11-24", "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29", "fine-grained-tool-streaming-2025-05-14",
})
VERSION = "bedrock-2023-05-31"
ERROR_NS = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


def derived_secret(access_key_id: str) -> str:
    return hashlib.sha256(b"tollway-test-secret:" + access_key_id.encode()).hexdigest()[:40]


def encode_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and headers length, CRC32), string-typed
    headers (type 7), payload, message CRC32."""
    head = b"".join(bytes([len(n.encode())]) + n.encode() + b"\x07" + struct.pack(">H", len(v.encode()))
                    + v.encode() for n, v in headers)
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def chunk_frame(event: dict[str, Any], pad: str = "") -> bytes:
    """A `chunk` frame; with PAD, the `"p"` padding field Bedrock adds to hide lengths."""
    chunk = {"bytes": base64.b64encode(orjson.dumps(event)).decode()}
    if pad:
        chunk["p"] = pad
    payload = orjson.dumps(chunk)
    return encode_frame([(":event-type", "chunk"), (":content-type", "application/json"),
                         (":message-type", "event")], payload)


def exception_frame(name: str, message: str) -> bytes:
    return encode_frame([(":exception-type", name), (":content-type", "application/json"),
                         (":message-type", "exception")], orjson.dumps({"message": message}))


def stream_frames(events: list[dict[str, Any]], pad: bool = False) -> list[bytes]:
    """One chunk frame per event; with PAD, each carries padding of a different length."""
    out = []
    for i, event in enumerate(events):
        if event["type"] == "message_stop":
            event = {**event, "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": 12, "outputTokenCount": 6, "invocationLatency": 40, "firstByteLatency": 20}}
        out.append(chunk_frame(event, PADDING[:1 + i * 7 % len(PADDING)] if pad else ""))
    return out


@dataclass
class AwsError:
    """A scripted rest-json error answer."""

    status: int
    name: str  # e.g. ThrottlingException
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawStream:
    """A scripted 200 event stream: these bytes, chunk by chunk, then the end (or a reset)."""

    chunks: list[bytes]
    reset_at_end: bool = False


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    access_key_id: str | None

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


def _credential_scope(auth: str) -> list[str]:
    """[access key id, date, region, service, terminal] of a SigV4 Authorization header."""
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    return parts.get("Credential", "").split("/")


def sigv4_problem(request: web.Request, body: bytes, secret_of: Callable[[str], tuple[str, str | None] | None],
                  service: str, region: str) -> tuple[str, str] | None:
    """None when REQUEST carries a valid SigV4 signature for SERVICE in REGION, recomputed with
    botocore's signer over the signed headers as received, the raw path and BODY, at the request's
    own X-Amz-Date; else (AWS error name, message). SECRET_OF maps an access key id to its
    (secret, session token), or None for an unknown id."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    scope = _credential_scope(auth)
    if len(scope) != 5:
        return "IncompleteSignatureException", "Authorization header requires a valid Credential"
    akid, date, scope_region, scope_service, terminal = scope
    amz_date = request.headers.get("X-Amz-Date", "")
    found = secret_of(akid)
    if found is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    secret, token = found
    if token is not None and request.headers.get("X-Amz-Security-Token") != token:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    if (scope_region, scope_service, terminal) != (region, service, "aws4_request") or not amz_date.startswith(date):
        return "InvalidSignatureException", "Credential should be scoped to a valid region and service"
    when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - when).total_seconds()) > 900:
        return "InvalidSignatureException", "Signature expired"
    signed = parts["SignedHeaders"].split(";")
    headers = {name: request.headers.get(name, "") for name in signed}
    aws_request = AWSRequest("POST", f"http://{request.host}{request.raw_path}", data=body, headers=headers)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(akid, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    if not hmac.compare_digest(expected, parts["Signature"]):
        return "InvalidSignatureException", ("The request signature we calculated does not match the signature you "
                                             "provided.")
    return None


class BedrockEmulator(LoopbackServer):
    thread_name = "bedrock-emulator"

    def __init__(self, region: str = "us-east-1", credentials: dict[str, tuple[str, str | None]] | None = None,
                 api_keys: tuple[str, ...] = (), derive_secrets: bool = False,
                 count_models: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.region = region
        self.credentials = dict(credentials or {})  # access key id -> (secret, session token)
        self.expired: set[str] = set()  # access key ids AWS now calls expired
        self.expires: dict[str, float] = {}  # temporary keys' expiry (time.time()), from the STS emulator
        self.api_keys = set(api_keys)
        self.derive_secrets = derive_secrets
        self.count_models = set(count_models)
        self.received: list[Seen] = []
        self._lock = threading.Lock()
        self._script: deque[AwsError | RawStream] = deque()
        self._brain = Brain()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def script(self, *replies: AwsError | RawStream) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._script.clear()
            self.expired.clear()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/model/{model}/{action}", self._handle)
        await self._serve_app(app, handler_cancellation=True, shutdown_timeout=0.5)

    # ----- auth -----
    def _secret(self, akid: str) -> tuple[str, str | None] | None:
        if akid in self.credentials:
            return self.credentials[akid]
        if self.derive_secrets and akid.startswith("ASIATEST"):
            return derived_secret(akid), "token-" + akid
        return None

    def _verify(self, request: web.Request, body: bytes) -> tuple[web.Response | None, str | None]:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            if auth[7:] in self.api_keys:
                return None, None
            return self._aws_error(403, "UnrecognizedClientException", "Invalid API Key format: Must start with "
                                   "pre-defined prefix"), None
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return self._aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token"), None
        akid = _credential_scope(auth)[0]
        if self._secret(akid) is not None and (akid in self.expired
                                               or time.time() >= self.expires.get(akid, float("inf"))):
            return self._aws_error(403, "ExpiredTokenException", "The security token included in the request is "
                                   "expired"), akid
        problem = sigv4_problem(request, body, self._secret, "bedrock", self.region)
        if problem is not None:
            return self._aws_error(403, *problem), akid
        return None, akid

    # ----- answers -----
    @staticmethod
    def _aws_error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"message": message}, status=status, headers={
            "x-amzn-ErrorType": name + ERROR_NS, "x-amzn-RequestId": request_id("bedrock"), **(headers or {})})

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return self._aws_error(400, "ValidationException", "Malformed input request, please reformat your input "
                                   "and try again.")
        for key in ("model", "stream"):
            if key in body:
                return self._aws_error(400, "ValidationException", f"Malformed input request: #: extraneous key "
                                       f"[{key}] is not permitted, please reformat your input and try again.")
        if body.get("anthropic_version") != VERSION:
            return self._aws_error(400, "ValidationException", "Malformed input request: #: required key "
                                   "[anthropic_version] not found#/anthropic_version: bedrock-2023-05-31 expected")
        for beta in body.get("anthropic_beta") or ():
            if beta not in KNOWN_BETAS:
                return self._aws_error(400, "ValidationException", f"invalid beta flag: {beta}")
        if b'"ttl"' in orjson.dumps([body.get("system"), body.get("tools"), body.get("messages")]):
            return self._aws_error(400, "ValidationException", "Malformed input request: extraneous key [ttl] is "
                                   "not permitted")
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        denied, akid = self._verify(request, body)
        with self._lock:
            self.received.append(Seen(request.path, {k.lower(): v for k, v in request.headers.items()}, body, akid))
            scripted = self._script.popleft() if self._script and denied is None else None
        if denied is not None:
            return denied
        model, action = request.match_info["model"], request.match_info["action"]
        if isinstance(scripted, AwsError):
            return self._aws_error(scripted.status, scripted.name, scripted.message, scripted.headers)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._aws_error(400, "ValidationException", "Malformed input request, please reformat your input "
                                   "and try again.")
        if action == "count-tokens":
            if model not in self.count_models:
                return self._aws_error(400, "ValidationException", "The provided model doesn't support counting "
                                       "tokens.")
            invoke = orjson.loads(base64.b64decode(payload["input"]["invokeModel"]["body"]))
            problem = self._validate(invoke)
            if problem is not None:
                return problem
            return web.json_response({"inputTokens": await self._brain.count(invoke)},
                                     headers={"x-amzn-RequestId": request_id("bedrock")})
        problem = self._validate(payload)
        if problem is not None:
            return problem
        rid = request_id("bedrock")
        if action == "invoke":
            message = await self._brain.message(payload, model)
            return web.json_response(message, headers={"x-amzn-RequestId": rid,
                                                       "X-Amzn-Bedrock-Input-Token-Count": "12"})
        if action != "invoke-with-response-stream":
            return self._aws_error(404, "UnknownOperationException", "")
        chunks = scripted.chunks if isinstance(scripted, RawStream) else stream_frames(
            await self._brain.events(payload, model))
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                           "x-amzn-RequestId": rid,
                                           "X-Amzn-Bedrock-Content-Type": "application/json"})
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(chunk)
            await asyncio.sleep(0)  # one write per frame, as the cloud flushes them
        if isinstance(scripted, RawStream) and scripted.reset_at_end:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

