"""The built-in deterministic model, so Tollway runs and is tested offline.

It is good enough for a real agent turn of Claude Code: when the request carries tools and the
last user text says `call <Tool> with {json}`, it answers with that `tool_use` block; when the
last user turn holds `tool_result` blocks, it answers with text quoting them. Otherwise it
replies with a short text that echoes the prompt. Output "tokens" are whitespace-delimited
pieces, so `max_tokens` and `stop_sequences` behave observably; input tokens use the local
count (tollway.wire.tokens), so `count_tokens` is exact for this model. Cache fields appear when
the request has `cache_control`: the first time a cached prefix is seen it is a cache write,
afterwards a cache read, as with Anthropic's prompt cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from typing import Any

import orjson

from tollway.config import UpstreamConfig
from tollway.upstream.base import UpstreamReply, UpstreamRequest
from tollway.wire.sse import frame
from tollway.wire.tokens import count_input_tokens, text_tokens

_CALL = re.compile(r"call\s+([A-Za-z0-9_.\-]+)\s+with\s+(\{.*\})", re.DOTALL)
_PIECES = re.compile(r"\s*\S+\s*|\s+")
_CACHE_MEMORY = 4096


def _last_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in content or () if isinstance(b, dict) and b.get("type") == "text"]
    return texts[-1] if texts else ""


def _tool_results(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    out = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = "".join(b.get("text", "") for b in inner if isinstance(b, dict))
            out.append(str(inner or ""))
    return out


def _has_cache_control(body: dict[str, Any]) -> bool:
    if body.get("cache_control"):
        return True
    return b'"cache_control"' in orjson.dumps([body.get("system"), body.get("tools"), body["messages"]])


class MockUpstream:
    """Deterministic answers in Anthropic's exact wire format, JSON or SSE."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.delay = cfg.chunk_delay_ms / 1000.0
        self._cached_prefixes: OrderedDict[str, None] = OrderedDict()
        self._counter = 0
        self._requests = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply:
        body = orjson.dumps({"input_tokens": count_input_tokens(req.body)})
        return UpstreamReply(200, "application/json", body=body, request_id=self._request_id())

    async def messages(self, req: UpstreamRequest) -> UpstreamReply:
        message = self._answer(req.body)
        if not req.stream:
            return UpstreamReply(200, "application/json", body=orjson.dumps(message), request_id=self._request_id())
        reply = self._stream(message)
        reply.request_id = self._request_id()
        return reply

    def _request_id(self) -> str:
        """What a real upstream's `request-id` header gives: an id per request, here a local one."""
        self._requests += 1
        return f"req_mock_{self._requests:08d}"

    # -- composing the answer -------------------------------------------------------------

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        # Answer the last user or assistant turn; per-turn `system` messages only add context.
        last = next((m for m in reversed(messages) if m["role"] != "system"), messages[-1])
        tool_names = {t.get("name") for t in body.get("tools") or () if isinstance(t, dict)}
        blocks: list[dict[str, Any]] = []
        stop_reason = "end_turn"
        stop_sequence = None
        results = _tool_results(last["content"]) if last["role"] == "user" else []
        prompt = _last_text(last["content"])
        call = _CALL.search(prompt) if tool_names and not results else None
        tool_input: Any = None
        if call and call.group(1) in tool_names:
            try:
                tool_input = orjson.loads(call.group(2))
            except orjson.JSONDecodeError:
                tool_input = None
        if results:
            text = "The tool returned: " + "\n".join(results)
        elif isinstance(tool_input, dict):
            text = f"I'll call {call.group(1)}."  # type: ignore[union-attr]
        else:
            text = "Hello from the Tollway mock model. You said: " + (prompt.strip()[:500] or "(nothing)")

        pieces = _PIECES.findall(text)
        for seq in body.get("stop_sequences") or ():
            if isinstance(seq, str) and seq and seq in text:
                cut = text.index(seq)
                if stop_sequence is None or cut < text.index(stop_sequence):
                    stop_sequence = seq
        if stop_sequence is not None:
            text = text[: text.index(stop_sequence)]
            pieces = _PIECES.findall(text)
            stop_reason = "stop_sequence"
            tool_input = None
        max_tokens = body["max_tokens"] if isinstance(body.get("max_tokens"), int) else 4096
        if len(pieces) > max_tokens:
            pieces = pieces[:max_tokens]
            stop_reason, stop_sequence, tool_input = "max_tokens", None, None
        output_tokens = len(pieces)
        if pieces:
            blocks.append({"type": "text", "text": "".join(pieces)})
        if isinstance(tool_input, dict) and call is not None:
            digest = hashlib.sha256(orjson.dumps(body["messages"])).hexdigest()[:24]
            blocks.append({"type": "tool_use", "id": f"toolu_mock{digest}", "name": call.group(1),
                           "input": tool_input})
            output_tokens += text_tokens(orjson.dumps(tool_input).decode())
            stop_reason = "tool_use"
        self._counter += 1
        return {
            "id": f"msg_mock{self._counter:06d}{hashlib.sha256(text.encode()).hexdigest()[:12]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {**self._input_usage(body), "output_tokens": output_tokens},
        }

    def _input_usage(self, body: dict[str, Any]) -> dict[str, int]:
        total = count_input_tokens(body)
        usage = {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not _has_cache_control(body):
            return usage
        # The cached prefix is everything before the last user turn (or all of it for a
        # one-turn conversation): that is what a repeated call in an agent loop shares.
        messages = body["messages"]
        prefix_messages = messages[:-1] if len(messages) > 1 else messages
        prefix = {"system": body.get("system"), "tools": body.get("tools"), "messages": prefix_messages}
        prefix_tokens = count_input_tokens(prefix)
        key = hashlib.sha256(orjson.dumps(prefix, option=orjson.OPT_SORT_KEYS)).hexdigest()
        if key in self._cached_prefixes:
            self._cached_prefixes.move_to_end(key)
            usage["cache_read_input_tokens"] = prefix_tokens
        else:
            self._cached_prefixes[key] = None
            if len(self._cached_prefixes) > _CACHE_MEMORY:
                self._cached_prefixes.popitem(last=False)
            usage["cache_creation_input_tokens"] = prefix_tokens
        usage["input_tokens"] = total - prefix_tokens
        return usage

    # -- streaming ------------------------------------------------------------------------

    def _events(self, message: dict[str, Any]) -> list[bytes]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 1}}
        events = [frame({"type": "message_start", "message": start})]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(frame({"type": "content_block_start", "index": index,
                                     "content_block": {"type": "text", "text": ""}}))
                if index == 0:
                    events.append(frame({"type": "ping"}))
                for piece in _PIECES.findall(block["text"]):
                    events.append(frame({"type": "content_block_delta", "index": index,
                                         "delta": {"type": "text_delta", "text": piece}}))
            else:
                events.append(frame({"type": "content_block_start", "index": index,
                                     "content_block": {**block, "input": {}}}))
                args = orjson.dumps(block["input"]).decode()
                step = max(1, -(-len(args) // 3))
                for i in range(0, len(args), step):
                    events.append(frame({"type": "content_block_delta", "index": index,
                                         "delta": {"type": "input_json_delta", "partial_json": args[i : i + step]}}))
            events.append(frame({"type": "content_block_stop", "index": index}))
        events.append(frame({"type": "message_delta",
                             "delta": {"stop_reason": message["stop_reason"],
                                       "stop_sequence": message["stop_sequence"]},
                             "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(frame({"type": "message_stop"}))
        return events

    def _stream(self, message: dict[str, Any]) -> UpstreamReply:
        events = self._events(message)
        events.reverse()
        delay = self.delay

        async def read() -> bytes:
            if not events:
                return b""
            if delay:
                await asyncio.sleep(delay)
            return events.pop()

        return UpstreamReply(200, "text/event-stream; charset=utf-8", read=read, streaming=True)

