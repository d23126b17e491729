"""OpenAI-compatible upstream: OpenAI, Azure OpenAI, vLLM, Ollama… anything that serves Chat
Completions.

Like every adapter it takes the canonical request (Anthropic Messages) and answers in Anthropic
bytes (upstream/base.py): the request is translated with `messages_request_to_chat`, the answer
with `chat_response_to_message`, a stream chunk by chunk with `SSEDecoder` + `ChatStreamToMessages`,
each event framed with `wire.sse.frame`, so the pipeline meters and audits it like any other.

Decisions, each with its reason:

* **One pooled aiohttp session per upstream**, as for Anthropic (ARCHITECTURE.md §2).
* **Endpoint**: `{base_url}/chat/completions` with `Authorization: Bearer <api_key>` (none
  without a key: local vLLM/Ollama need none) and `OpenAI-Organization` when configured; Azure
  (`api_version` + `deployment`): `{base_url}/openai/deployments/{deployment}/chat/completions
  ?api-version=…` with an `api-key` header. Client headers are never forwarded (DECISIONS.md 3)
  but the W3C trace context (`traceparent`, `tracestate`), so a trace connects through us.
* **Streams always ask for usage** (`stream_options.include_usage`): without it OpenAI reports no
  usage at all and the call could not be metered.
* **Errors**: an upstream HTTP error becomes an Anthropic envelope with the upstream's status, its
  message, and — as extra fields Anthropic clients ignore — the OpenAI `code` and `param`, so the
  OpenAI surface can give an OpenAI client the upstream's own code (`context_length_exceeded`…).
  `retry-after`/`x-should-retry` are relayed. A body that is no chat.completion is a 502.
* **A server that ignores `stream: true`** and answers JSON is turned into a stream all the same.
* **count_tokens** is answered locally (`wire.tokens_openai`: OpenAI's tokenizer shipped in a
  package, OpenAI's accounting of the chat format); the tokenizer loads on first use, off the
  event loop.
* **OpenAI → OpenAI passthrough**: when a `/v1/chat/completions` client reaches this adapter,
  its own request body is sent (model id swapped, `stream_options` set, fields DECISIONS.md 2
  strips and free-text fields the translation drops left out), not a re-translation of the
  canonical form: nothing OpenAI-only is lost (`seed`, `logit_bias`, exact `temperature`,
  `max_completion_tokens`, `response_format`…). The surface puts that body on the call as its
  `native` body; the pipeline hands it to the adapter (`UpstreamRequest.native`) only while no
  governance step changed the request: DLP redaction drops it (`Call.native = None`), and the
  changed canonical form is what gets translated and sent:
  passthrough can never bypass a step. Nothing is added to the canonical request itself, so no
  other adapter, the audit or payload capture ever sees the client's original body. Only bodies
  whose every message and part the translation carries completely are eligible
  (`passthrough_body`), so the governance steps saw everything that is sent. The answer always
  comes back through the canonical form (the pipeline meters Anthropic bytes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream.base import UpstreamFailure, UpstreamReply, UpstreamRequest
from tollway.upstream.http import TRACE_HEADERS, event_too_long, new_session, post, read_body, read_chunk, relayed
from tollway.wire.errors import anthropic_type_for
from tollway.wire.ids import ToolNames, restore_tool_id
from tollway.wire.messages_to_chat import messages_request_to_chat
from tollway.wire.openai_to_anthropic import ChatStreamToMessages, chat_response_to_message
from tollway.wire.sse import frame
from tollway.wire.sse_decode import SSEDecoder, SSETooLong
from tollway.wire.tokens import count_input_tokens
from tollway.wire.tokens_openai import count_chat_tokens, encoding_for_model

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"

# Top-level fields left out of a passthrough body: those DECISIONS.md 2 strips, free text the
# translation drops and the governance steps therefore never saw, and `n` (one choice is
# translated back, so more would be paid for and never shown).
PASSTHROUGH_DROPPED = frozenset({
    "metadata", "litellm_metadata", "proxy_server_request", "user", "safety_identifier", "prediction",
    "web_search_options", "n", "stream_options",
})
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "function_call", "cache_control"})
_PART_TYPES = frozenset({"text", "image_url", "refusal"})


# ---------------------------------------------------------------------------------------------
# Passthrough (module doc)


def _part_carried(part: Any) -> bool:
    if isinstance(part, str):
        return True
    if not isinstance(part, dict):
        return False
    kind = part.get("type")
    if kind == "file":  # inline data is translated to a document; a file_id reference is dropped
        file = part.get("file")
        return isinstance(file, dict) and isinstance(file.get("file_data"), str) and "file_id" not in file
    return kind in _PART_TYPES


def _carried(chat: dict[str, Any]) -> bool:
    """True when the translation to the canonical form carries every message and part of `chat`."""
    for msg in chat.get("messages") or ():
        if not isinstance(msg, dict) or not _MESSAGE_KEYS.issuperset(msg):
            return False
        content = msg.get("content")
        if isinstance(content, list) and not all(_part_carried(p) for p in content):
            return False
    for tool in chat.get("tools") or ():
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            return False
    return True


def _restore_ids(msg: dict[str, Any]) -> dict[str, Any]:
    """Give back the upstream's own tool-call ids that were sanitised on the way to the client."""
    calls = msg.get("tool_calls")
    if isinstance(calls, list) and any(isinstance(c, dict) and str(c.get("id", "")).startswith("twid_")
                                       for c in calls):
        msg = {**msg, "tool_calls": [{**c, "id": restore_tool_id(str(c["id"]))} if isinstance(c, dict) and
                                     isinstance(c.get("id"), str) else c for c in calls]}
    call_id = msg.get("tool_call_id")
    if isinstance(call_id, str) and call_id.startswith("twid_"):
        msg = {**msg, "tool_call_id": restore_tool_id(call_id)}
    return msg


def passthrough_body(chat: dict[str, Any]) -> dict[str, Any] | None:
    """The body to send an OpenAI upstream for a chat.completions client's `chat`, or None when
    it is not eligible (module doc). `chat` is not modified."""
    if not _carried(chat):
        return None
    body = {k: v for k, v in chat.items() if k not in PASSTHROUGH_DROPPED}
    body["messages"] = [_restore_ids(m) for m in chat["messages"]]
    return body


def chat_request(body: dict[str, Any], cfg: UpstreamConfig, stream: bool,
                 native: dict[str, Any] | None = None) -> tuple[dict[str, Any], ToolNames, bool]:
    """(chat.completions body to send, the tool-name mapping for the answer, whether it is the
    client's own body passed through). NATIVE is the client's body from `passthrough_body`,
    which the pipeline hands on only while no governance step changed the request (module doc)."""
    if native is not None:
        chat = dict(native)
        chat["model"] = body["model"]
        passthrough = True
        names = ToolNames()
    else:
        chat, names = messages_request_to_chat(body, max_tokens_field=cfg.max_tokens_field, reasoning=cfg.reasoning)
        passthrough = False
    chat.pop("stream_options", None)
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    else:
        chat.pop("stream", None)
    return chat, names, passthrough


# ---------------------------------------------------------------------------------------------
# Answers


def error_reply(status: int, body: bytes, headers: dict[str, str], request_id: str | None = None) -> UpstreamReply:
    """An upstream HTTP error as an Anthropic envelope with the upstream's status (module doc)."""
    error: Any = None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
    message = None
    out: dict[str, Any] = {}
    if isinstance(error, dict):
        message = error.get("message")
        for name in ("code", "param"):
            if isinstance(error.get(name), str | int) and not isinstance(error.get(name), bool):
                out[name] = error[name]
    elif isinstance(error, str):
        message = error
    if not isinstance(message, str) or not message:
        message = f"the upstream answered HTTP {status}"
    envelope: dict[str, Any] = {"type": "error", "error": {"type": anthropic_type_for(status), "message": message,
                                                          **out}}
    if request_id:
        envelope["request_id"] = request_id
    return UpstreamReply(status, JSON, body=orjson.dumps(envelope), headers=headers)


def _bad_body(what: str) -> UpstreamFailure:
    return UpstreamFailure(502, "api_error", f"the upstream answered with {what}, not a chat.completion")


def _completion_as_chunk(resp: dict[str, Any]) -> dict[str, Any]:
    """A whole chat.completion as the one chunk a stream would have carried (for servers that
    ignore `stream: true`)."""
    choices = resp.get("choices") if isinstance(resp.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    delta: dict[str, Any] = dict(message) if isinstance(message, dict) else {}
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(calls) if isinstance(c, dict)]
    finish_reason = choice.get("finish_reason")
    return {"id": resp.get("id"), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            "usage": resp.get("usage")}


class _Stream:
    """Reads an upstream chunk stream and hands out Anthropic event frames (never b"" early).

    Once the message is complete (`message_stop` or `error` sent) the rest of the body (`[DONE]`,
    the end of the chunked encoding) is still read, for at most `DRAIN_SECONDS`, so the
    keep-alive connection goes back to the pool instead of being closed: over TLS a new one
    costs a handshake."""

    __slots__ = ("_content", "_convert", "_decoder", "_eof", "_finished", "_resp")
    DRAIN_SECONDS = 2.0

    def __init__(self, resp: aiohttp.ClientResponse, convert: ChatStreamToMessages, max_event_bytes: int) -> None:
        self._resp = resp
        self._content = resp.content
        self._convert = convert
        self._decoder = SSEDecoder(max_event_bytes)
        self._finished = False  # the Anthropic message is complete: nothing more to send
        self._eof = False

    def _events(self, data: bytes, end: bool) -> list[dict[str, Any]]:
        convert = self._convert
        out: list[dict[str, Any]] = []
        try:
            events = self._decoder.feed(data) if data else []
            if end:
                events += self._decoder.finish()
        except SSETooLong:
            raise event_too_long(self._decoder.max_event_bytes) from None
        for event in events:
            if event.is_done:
                out += convert.finish()
                break
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                out += convert.fail("api_error", "the upstream sent a stream chunk that is not JSON")
                break
            out += convert.feed(chunk)
        if end:
            out += convert.finish()  # a server that closes without [DONE]; a no-op after it
        if out and out[-1]["type"] in ("message_stop", "error"):
            self._finished = True
        return out

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self.DRAIN_SECONDS):
                while await self._content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError):
            pass  # close() drops the connection instead
        self._eof = True

    async def read(self) -> bytes:
        while not self._eof:
            if self._finished:
                await self._drain()
                break
            data = await read_chunk(self._content)
            if not data:
                self._eof = True
            out = self._events(data, end=not data)
            if out:
                return b"".join(frame(e) for e in out)
        return b""

    def close(self) -> None:
        self._resp.close()  # a no-op once the body was read to its end (aiohttp released it)


def _frames(events: list[dict[str, Any]]) -> UpstreamReply:
    pending = [b"".join(frame(e) for e in events)]

    async def read() -> bytes:
        return pending.pop() if pending else b""

    return UpstreamReply(200, SSE, read=read, streaming=True)


class OpenAIUpstream:
    """One pooled keep-alive client for one OpenAI-compatible endpoint."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        base = cfg.resolved_base_url
        if cfg.deployment is not None:
            self.url = URL(f"{base}/openai/deployments/{cfg.deployment}/chat/completions?api-version={cfg.api_version}")
        else:
            self.url = URL(f"{base}/chat/completions")
        headers = {"content-type": JSON}
        if cfg.deployment is not None:
            headers["api-key"] = cfg.api_key or ""
        elif cfg.api_key:
            headers["authorization"] = f"Bearer {cfg.api_key}"
        if cfg.organization:
            headers["openai-organization"] = cfg.organization
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = new_session(self.cfg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        """A local count (module doc); never a fake zero (DECISIONS.md 12)."""
        model = str(req.body.get("model") or "")
        encoding = self.cfg.tokenizer or encoding_for_model(model)
        chat, _ = messages_request_to_chat(req.body, max_tokens_field=self.cfg.max_tokens_field,
                                           reasoning=self.cfg.reasoning)
        # Off the event loop: the first call loads the tokenizer, and a 500 KB prompt takes ~50 ms.
        tokens = await asyncio.to_thread(count_chat_tokens, chat, encoding)
        return UpstreamReply(200, JSON, body=orjson.dumps({"input_tokens": tokens}))

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        assert self._session is not None, "upstream used before start()"
        chat, names, _ = chat_request(req.body, self.cfg, req.stream, req.native)
        model = str(req.body.get("model") or "")
        accept = "text/event-stream" if req.stream else JSON
        headers = {**self._headers, "accept": accept}
        for name in TRACE_HEADERS:
            value = req.headers.get(name)
            if value is not None:
                headers[name] = value
        resp = await post(self._session, self.url, orjson.dumps(chat), headers, self.cfg.first_byte_timeout)
        relayed_headers = relayed(resp)
        upstream_id = resp.headers.get("x-request-id")
        content_type = resp.headers.get("content-type", "")
        if req.stream and resp.status == 200 and content_type.startswith("text/event-stream"):
            convert = ChatStreamToMessages(model, names, input_tokens=count_input_tokens(req.body))
            stream = _Stream(resp, convert, self.cfg.max_event_bytes)
            return UpstreamReply(200, SSE, headers=relayed_headers, read=stream.read, close=stream.close,
                                 streaming=True, request_id=upstream_id)
        body = await read_body(resp, self.cfg.max_response_bytes)
        if resp.status >= 400:
            reply = error_reply(resp.status, body, relayed_headers, upstream_id)
            reply.request_id = upstream_id
            return reply
        try:
            completion = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _bad_body("a body that is not JSON") from None
        if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
            raise _bad_body("a JSON body without choices")
        if req.stream:
            convert = ChatStreamToMessages(model, names, input_tokens=count_input_tokens(req.body))
            framed = _frames(convert.feed(_completion_as_chunk(completion)) + convert.finish())
            framed.request_id = upstream_id
            return framed
        message = chat_response_to_message(completion, model, names)
        return UpstreamReply(resp.status, JSON, body=orjson.dumps(message), headers=relayed_headers,
                             request_id=upstream_id)
