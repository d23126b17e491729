"""An emulator of an OpenAI-compatible Chat Completions server, on loopback, for the OpenAI
upstream adapter's tests.

It records exactly what it received and answers the way api.openai.com does: the error envelope
`{"error": {"message", "type", "param", "code"}}` with an `x-request-id` header, and streams as
unnamed `data: {chunk}` lines ending with `data: [DONE]`, usage in a last chunk with `choices: []`
when `stream_options.include_usage` asks for it. Routes: `POST /v1/chat/completions`, the Azure
form `POST /openai/deployments/{deployment}/chat/completions?api-version=…` (key in `api-key`),
and `GET /v1/models`.

What answers a request, in order: a queued scripted reply (`script`), else `responder(body)` when
set and it returns a reply, else the default answer (a short text, or its stream). The plumbing
(thread, recording, scripted JSON and SSE replies written chunk by chunk) is the Anthropic
emulator's::

    with OpenAIEmulator() as emu:
        emu.script(SSEReply(stream_chunks("gpt-4o", tool_calls=[ToolCall("call_1", "Bash", ['{"com', ...])])))
        ...
        assert emu.received[0].json["stream_options"] == {"include_usage": True}
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.emulator import AnthropicEmulator, JSONReply, Received, SSEReply

__all__ = ["JSONReply", "OpenAIEmulator", "Received", "SSEReply", "ToolCall", "chat_completion", "chunk",
           "error_body", "stream_chunks"]

API_KEY_DEFAULT = "sk-openai-upstream-test"
DEFAULT_TEXT = "Hello from the OpenAI emulator."
_ids = itertools.count(1)
Responder = Callable[[dict[str, Any]], JSONReply | SSEReply | None]


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope; all four keys are always present, as OpenAI sends them."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def usage(prompt_tokens: int, completion_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def prompt_tokens_of(body: dict[str, Any]) -> int:
    """A deterministic stand-in for OpenAI's count: a quarter of the messages' and tools' JSON bytes."""
    return max(1, len(orjson.dumps([body.get("messages"), body.get("tools")])) // 4)


@dataclass
class ToolCall:
    """A tool call to stream: its argument text arrives in `fragments`, in order."""

    id: str
    name: str
    fragments: list[str]


def chat_completion(model: str, text: str | None = DEFAULT_TEXT, *, tool_calls: list[ToolCall] | None = None,
                    finish_reason: str | None = None, prompt_tokens: int = 20, completion_tokens: int = 7,
                    completion_id: str | None = None) -> dict[str, Any]:
    """A complete non-streaming chat.completion."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": "".join(c.fragments)}}
                                 for c in tool_calls]
    return {
        "id": completion_id or f"chatcmpl-emu{next(_ids):06d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")}],
        "usage": usage(prompt_tokens, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }


def chunk(completion_id: str, model: str, delta: dict[str, Any] | None, finish_reason: str | None = None,
          usage_: dict[str, Any] | None = None) -> dict[str, Any]:
    """One chat.completion.chunk; `delta=None` makes the usage chunk (`choices: []`)."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_emulator",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                              "finish_reason": finish_reason}],
        "usage": usage_,
    }


def _line(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def stream_chunks(model: str, text: str | None = None, *, tool_calls: list[ToolCall] | None = None,
                  include_usage: bool = True, prompt_tokens: int = 20, completion_tokens: int = 7,
                  done: bool = True, finish_reason: str | None = None) -> list[bytes]:
    """The byte chunks OpenAI streams: a role chunk, text pieces (split at spaces), each tool call
    as a first fragment carrying id/type/name then argument fragments under its index, a
    finish_reason chunk, the usage chunk, `data: [DONE]`. One list item per SSE event."""
    cid = f"chatcmpl-emu{next(_ids):06d}"
    out = [_line(chunk(cid, model, {"role": "assistant", "content": "", "refusal": None}))]
    if text:
        words = text.split(" ")
        for i, word in enumerate(words):
            out.append(_line(chunk(cid, model, {"content": word + (" " if i < len(words) - 1 else "")})))
    for index, call in enumerate(tool_calls or ()):
        out.append(_line(chunk(cid, model, {"tool_calls": [
            {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]})))
        for fragment in call.fragments:
            fragment_delta = {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
            out.append(_line(chunk(cid, model, fragment_delta)))
    reason = finish_reason or ("tool_calls" if tool_calls else "stop")
    out.append(_line(chunk(cid, model, {}, reason)))
    if include_usage:
        out.append(_line(chunk(cid, model, None, usage_=usage(prompt_tokens, completion_tokens))))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


class OpenAIEmulator(AnthropicEmulator):
    """An OpenAI-compatible server on 127.0.0.1 (free port); see the module doc."""

    def __init__(self, api_key: str = API_KEY_DEFAULT) -> None:
        super().__init__(api_key=api_key)
        self.responder: Responder | None = None
        self.peers: list[Any] = []  # the client address of each received request (connection reuse)

    def reset(self) -> None:
        super().reset()
        self.responder = None
        with self._cond:
            self.peers.clear()

    @staticmethod
    def _headers(rid: str, content_type: str, extra: dict[str, str]) -> dict[str, str]:
        merged = {"content-type": content_type, "x-request-id": rid, "openai-processing-ms": "3"}
        merged.update({k.lower(): v for k, v in extra.items()})
        return merged

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rid = f"req_oai_{next(self._request_ids)}"
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._cond:
            self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        self._record(Received(request.method, request.path, request.query_string, headers, body))

        def error(status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                  param: str | None = None) -> web.Response:
            return self._json(rid, JSONReply(status, error_body(message, type, code, param)))

        azure = request.path.startswith("/openai/deployments/")
        bearer = headers.get("authorization", "")
        key = headers.get("api-key") if azure else (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        if not key:
            return error(401, "You didn't provide an API key.", code=None)
        if key != self.api_key:
            return error(401, "Incorrect API key provided.", code="invalid_api_key")
        if request.method == "GET" and request.path == "/v1/models":
            return self._json(rid, JSONReply(body={"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "emulator"}]}))
        chat_route = request.path == "/v1/chat/completions" or (
            azure and request.path.endswith("/chat/completions") and "api-version" in request.query)
        if request.method != "POST" or not chat_route:
            return error(404, f"Invalid URL ({request.method} {request.path})")

        with self._cond:
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                return error(400, "We could not parse the JSON body of your request.")
            if not isinstance(payload, dict):
                return error(400, "The request body must be a JSON object.")
            for name in ("model", "messages"):
                if name not in payload:
                    return error(400, f"Missing required parameter: '{name}'.", code="missing_required_parameter",
                                 param=name)
            if "stream_options" in payload and not payload.get("stream"):
                return error(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                             code="invalid_value", param="stream_options")
            scripted = self.responder(payload) if self.responder else None
            if scripted is None:
                scripted = self._default(payload)
        if isinstance(scripted, SSEReply):
            return await self._stream(request, rid, scripted)
        return await self._reply_later(rid, scripted)

    @staticmethod
    def _default(payload: dict[str, Any]) -> JSONReply | SSEReply:
        model = str(payload["model"])
        tokens = prompt_tokens_of(payload)
        if payload.get("stream"):
            options = payload.get("stream_options")
            include = isinstance(options, dict) and options.get("include_usage") is True
            return SSEReply(stream_chunks(model, DEFAULT_TEXT, include_usage=include, prompt_tokens=tokens))
        return JSONReply(body=chat_completion(model, prompt_tokens=tokens))
