"""Anthropic Messages → OpenAI Chat Completions. Pure functions on plain dicts, no I/O.

Two uses, one per direction of a call:

* **Requests to an OpenAI-compatible upstream** (`messages_request_to_chat`, in
  wire/messages_to_chat.py with the request decisions): the canonical request becomes a
  chat.completions request for OpenAI, Azure OpenAI, vLLM, Ollama… The returned `ToolNames`
  travels with the call so the answer can be translated back (`openai_to_anthropic`) with the
  client's own tool names.
* **Answers to an OpenAI-dialect client** (`message_to_chat_response`, `MessagesStreamToChat`):
  a canonical Message or event stream becomes a chat.completion or chat.completion.chunk list.

Shapes follow openai-python's types (`types/chat/chat_completion*.py`, `completion_usage.py`)
and the Anthropic SDK's (`types/message_create_params.py`, `raw_*_event.py`); the translation
facts and the pitfalls peers shipped are wire-contract §9. Decisions this module makes, each
with its reason:

* **Tool names** longer than OpenAI's 64 characters (Anthropic allows 128; Claude Code's MCP
  tools exceed 64) are shortened to 55 characters + `_` + 8 hex digits of their SHA-256: the same
  name always gives the same short name, so history, `tool_choice` and the tool list agree even
  across requests, and `ToolNames` maps the short name back in the answer.
* **Tool ids** must match `^[a-zA-Z0-9_-]+$` on Anthropic's side. OpenAI-compatible servers send
  ids such as `functions.Bash:0` (Kimi) or ids with Gemini thought signatures appended. An id that
  already matches is kept; any other id becomes `twid_` + its unpadded base64url encoding (that
  alphabet is exactly the allowed one). That is deterministic — the `tool_result.tool_use_id` the
  client sends later maps identically — collision-free, and reversible: when the history goes
  back upstream the original id is restored, which servers that parse their own ids need.
* **Thinking blocks in history are dropped**: their signatures mean nothing to another provider,
  and the OpenAI chat format has no standard place for past reasoning.
* **`thinking` → `reasoning_effort`** by budget (< 4096 → low, < 16384 → medium, else high;
  adaptive → `output_config.effort` capped at high, default medium; disabled → omitted). Pass
  `reasoning=False` for upstream models that reject the parameter (non-reasoning models do).
* **`max_tokens` → `max_tokens`**, the field every OpenAI-compatible server accepts; OpenAI's
  reasoning models want `max_completion_tokens` instead: pass `max_tokens_field=` for those.
* **`stop_sequences`**: empty/whitespace-only entries dropped, at most 4 kept (OpenAI's limit).
* **Dropped, Anthropic-only**: `cache_control` (top level and on blocks), `metadata` (Claude
  Code's `user_id` is a JSON blob of device ids, not for a third party), `top_k`, `service_tier`,
  `container`, `context_management`, `inference_geo`, `speed`, `mcp_servers`, `output_config`
  other than `format`/`effort`, server/hosted tool types (web search, bash, text editor…), and
  content blocks with no chat equivalent (`redacted_thinking`, `server_tool_use`, tool search
  and code-execution results, `container_upload`).
* **`tool_choice`/`parallel_tool_calls` only with tools**: OpenAI rejects either without `tools`.
  `disable_parallel_tool_use: true` → `parallel_tool_calls: false` (peers drop it; we keep it).
* **Tool results**: each becomes a `tool` message (content a string; list content joined with
  newlines; `is_error` prefixed as `Error: `), emitted before the rest of that user turn as the
  chat format requires. Images and documents inside a tool result cannot ride in a `tool`
  message, so they go into a user message right after the tool messages (the tool message says
  so). A `tool_use` with no result (trimmed
  history, wire-contract §9 pitfall) gets a placeholder result; a result with no matching call
  becomes user text, because OpenAI rejects both orphans.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

# Anthropic stop_reason → OpenAI finish_reason (wire-contract §9.4); anything else → "stop".
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "compaction": "length",
    "model_context_window_exceeded": "length",
}


# ---------------------------------------------------------------------------------------------
# Shared helpers (tool names and ids: wire/ids.py)
def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: input from clients and upstreams is
    read defensively, never trusted to have the documented shape."""
    return value if isinstance(value, dict) else {}




# ---------------------------------------------------------------------------------------------
# Response: Anthropic Message → chat.completion


def chat_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage → OpenAI usage. OpenAI's `prompt_tokens` counts every input token, cached
    or not; Anthropic's `input_tokens` excludes cache reads and writes, so they are added back."""
    u = usage if isinstance(usage, dict) else {}
    read = int(u.get("cache_read_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + read + int(u.get("cache_creation_input_tokens") or 0)
    completion = int(u.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def chat_id(message_id: Any) -> str:
    """`chatcmpl-…` derived from the Anthropic message id, so logs of both sides line up."""
    raw = str(message_id or "")
    return "chatcmpl-" + (raw.removeprefix("msg_") or "tollway")


def message_to_chat_response(message: dict[str, Any], model: str, *, created: int | None = None) -> dict[str, Any]:
    """An Anthropic Message → an OpenAI chat.completion.

    Text blocks are concatenated (they are one answer cut by citations or tool calls); thinking
    goes to `reasoning_content`, the field DeepSeek, vLLM and others use (openai-python keeps
    unknown fields); `tool_use` → `tool_calls`. `created` defaults to now; tests pass it.
    """
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            calls.append({
                "id": str(block.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(block.get("name") or ""),
                    "arguments": orjson.dumps(block.get("input") or {}).decode(),
                },
            })
    text = "".join(texts)
    msg: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        msg["tool_calls"] = calls
    if any(thinking):
        msg["reasoning_content"] = "".join(thinking)
    return {
        "id": chat_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": None,
            "finish_reason": FINISH_REASONS.get(str(message.get("stop_reason")), "stop"),
        }],
        "usage": chat_usage(message.get("usage")),
    }


# ---------------------------------------------------------------------------------------------
# Stream: Anthropic events → chat.completion.chunk


class StreamFailed(Exception):
    """The Anthropic stream carried an `error` event. Raised, not returned, so the surface
    cannot forget it: it must end the OpenAI stream with an error frame (`payload()`, Kindo's
    `{"error": {…, "code": "stream_error"}}`) and `data: [DONE]` (wire-contract §1.5)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "code": "stream_error", "param": None}}


class MessagesStreamToChat:
    """Anthropic stream events → OpenAI chat.completion.chunk dicts, one event at a time.

    The surface frames each chunk as `data: <json>\\n\\n` and appends `data: [DONE]`. Chunks
    follow OpenAI's stream: a first chunk with `delta.role: "assistant"`; `content` deltas;
    `reasoning_content` deltas for thinking; for each tool_use block a `tool_calls` entry with
    `index` (0, 1, … per tool, not per content block), `id`, `type`, `function.name` and empty
    `arguments`, then argument fragments under the same `index`; a chunk with `finish_reason`
    and an empty delta; with `include_usage` a last chunk with `choices: []` and the usage, and
    `usage: null` on every other chunk, as OpenAI does. A tool whose input streamed no fragment
    gets `arguments: "{}"` so clients that `json.loads` the accumulated arguments do not fail.
    """

    __slots__ = ("_blocks", "_created", "_finished", "_id", "_include_usage", "_model",
                 "_started", "_tools", "_usage")

    def __init__(self, model: str, include_usage: bool, *, created: int | None = None) -> None:
        self._model = model
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._id = chat_id(None)
        self._started = False
        self._finished = False
        # content-block index → [tool index, whether any argument fragment was sent]
        self._blocks: dict[int, list[Any]] = {}
        self._tools = 0
        self._usage: dict[str, Any] = {}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _start(self, out: list[dict[str, Any]]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks for one Anthropic event (often none). Raises `StreamFailed` on `error`."""
        kind = event.get("type")
        if kind == "error":
            error = _obj(event.get("error"))
            raise StreamFailed(str(error.get("type") or "api_error"), str(error.get("message") or "stream error"))
        out: list[dict[str, Any]] = []
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = chat_id(message.get("id"))
            self._usage.update(message.get("usage") or {})
            self._start(out)
        elif kind == "content_block_start":
            self._start(out)
            self._block_start(event, out)
        elif kind == "content_block_delta":
            self._start(out)
            self._block_delta(event, out)
        elif kind == "content_block_stop":
            block = self._blocks.get(event.get("index", -1))
            if block is not None and not block[1]:
                block[1] = True
                out.append(self._chunk({"tool_calls": [{"index": block[0], "function": {"arguments": "{}"}}]}))
        elif kind == "message_delta":
            self._start(out)
            usage = event.get("usage")
            if isinstance(usage, dict):  # cumulative: later values overwrite
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason and not self._finished:
                self._finished = True
                out.append(self._chunk({}, FINISH_REASONS.get(str(reason), "stop")))
        elif kind == "message_stop":
            self._start(out)
            if not self._finished:
                self._finished = True
                out.append(self._chunk({}, "stop"))
            if self._include_usage:
                out.append({
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": chat_usage(self._usage),
                })
        # ping and event types added later: nothing to say in this dialect
        return out

    def _block_start(self, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use":
            tool = self._tools
            self._tools += 1
            initial = block.get("input")
            sent = bool(initial)
            self._blocks[event.get("index", -1)] = [tool, sent]
            args = orjson.dumps(initial).decode() if sent else ""
            out.append(self._chunk({"tool_calls": [{
                "index": tool,
                "id": str(block.get("id") or ""),
                "type": "function",
                "function": {"name": str(block.get("name") or ""), "arguments": args},
            }]}))

    def _block_delta(self, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta" and delta.get("thinking"):
            out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "input_json_delta" and delta.get("partial_json"):
            block = self._blocks.get(event.get("index", -1))
            if block is not None:
                block[1] = True
                fragment = {"index": block[0], "function": {"arguments": delta["partial_json"]}}
                out.append(self._chunk({"tool_calls": [fragment]}))
        # signature_delta, citations_delta: no chat equivalent
