"""OpenAI Chat Completions → Anthropic Messages. Pure functions on plain dicts, no I/O.

Two uses, one per direction of a call:

* **Requests from an OpenAI-dialect client** (`chat_request_to_messages`, wire/chat_turns.py):
  a chat.completions request becomes the canonical Anthropic Messages request, which the
  pipeline governs and any upstream serves.
* **Answers from an OpenAI-compatible upstream** (`chat_response_to_message`,
  `ChatStreamToMessages`): a chat.completion or its chunk stream becomes an Anthropic Message or
  event stream, with the client's tool names restored through the call's `ToolNames`.

Shapes follow openai-python's types (`types/chat/completion_create_params.py`,
`chat_completion*.py`, `completion_usage.py`) and the Anthropic SDK's (`message_create_params.py`,
`output_config_param.py`, `raw_*_event.py`); the translation facts and the pitfalls peers
shipped are wire-contract §9. Decisions made here, each with its reason:

The request direction (`chat_request_to_messages`) and its decisions are in wire/chat_turns.py,
which the Responses request translator shares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tollway.wire.ids import ToolNames
from tollway.wire.tool_arguments import parse_arguments

# OpenAI finish_reason → Anthropic stop_reason; anything else (or none) → end_turn.
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}



# ---------------------------------------------------------------------------------------------
# Shared helpers
def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: input from clients and upstreams is
    read defensively, never trusted to have the documented shape."""
    return value if isinstance(value, dict) else {}




def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI-style usage → Anthropic usage. OpenAI's `prompt_tokens` includes cached tokens;
    Anthropic's `input_tokens` excludes cache reads and writes, so they are taken out (floor 0).
    Cache reads: `prompt_tokens_details.cached_tokens` (OpenAI), or `cache_read_input_tokens` /
    `prompt_cache_hit_tokens` (DeepSeek) when a server reports those; cache writes:
    `cache_creation_input_tokens` / `cache_creation_tokens` / `prompt_tokens_details.cache_write_tokens`
    (wire-contract §9.2)."""
    u = usage if isinstance(usage, dict) else {}
    details = _obj(u.get("prompt_tokens_details"))

    def first(*values: Any) -> int:
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 0

    read = first(u.get("cache_read_input_tokens"), details.get("cached_tokens"), u.get("prompt_cache_hit_tokens"))
    write = first(
        u.get("cache_creation_input_tokens"), u.get("cache_creation_tokens"), details.get("cache_write_tokens")
    )
    prompt = first(u.get("prompt_tokens"))
    return {
        "input_tokens": max(prompt - read - write, 0),
        "output_tokens": first(u.get("completion_tokens")),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    }


def stop_reason_for(finish_reason: Any, used_tools: bool) -> str:
    """finish_reason → stop_reason. Some servers (Ollama, several vLLM templates) say `stop`
    after a tool call; a client only runs tools on `tool_use`, so a turn with tool calls that
    would end as `end_turn` ends as `tool_use`."""
    reason = STOP_REASONS.get(str(finish_reason), "end_turn")
    return "tool_use" if used_tools and reason == "end_turn" else reason


def error_type_for(error: Any) -> str:
    """An Anthropic error type for an OpenAI-style error object found inside a stream."""
    if not isinstance(error, dict):
        return "api_error"
    words = f"{error.get('type') or ''} {error.get('code') or ''}".lower()
    if "rate_limit" in words:
        return "rate_limit_error"
    if "overload" in words or "capacity" in words:
        return "overloaded_error"
    if "invalid_request" in words:
        return "invalid_request_error"
    if "timeout" in words:
        return "timeout_error"
    return "api_error"


def _message_id(raw: Any) -> str:
    return str(raw) if raw else "msg_tollway"


def _fallback_id(message_id: str, n: int) -> str:
    """A tool id for a call the upstream sent without one: unique per message and call."""
    return f"toolu_{hashlib.sha256(message_id.encode()).hexdigest()[:12]}_{n}"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _stop_sequence(choice: dict[str, Any], stop_reason: str) -> tuple[str, str | None]:
    """vLLM reports the stop string that ended the text in `choice.stop_reason`; with it we can
    say `stop_sequence` as Anthropic would. Other servers do not say, so it stays end_turn."""
    matched = choice.get("stop_reason")
    if stop_reason == "end_turn" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return stop_reason, None


def chat_response_to_message(resp: dict[str, Any], model: str, names: ToolNames) -> dict[str, Any]:
    """An upstream chat.completion → an Anthropic Message.

    Content order is Anthropic's: thinking (`reasoning_content` or `reasoning`), then text
    (`content`, or `refusal` when there is no content), then one `tool_use` per tool call (ids
    sanitised, names mapped back through `names`, arguments parsed). `model` is the id the
    client asked for. A thinking block carries an empty `signature`: clients require the field,
    and there is no real signature to give.
    """
    message_id = _message_id(resp.get("id"))
    choices = resp.get("choices") if isinstance(resp.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    msg = _obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text_of(msg.get("content")) or _text_of(msg.get("refusal"))
    if text:
        content.append({"type": "text", "text": text})
    calls = [c for c in msg.get("tool_calls") or () if isinstance(c, dict)]
    if isinstance(msg.get("function_call"), dict):
        calls.append({"function": msg["function_call"]})
    for n, call in enumerate(calls):
        function = _obj(call.get("function"))
        content.append({
            "type": "tool_use",
            "id": names.tool_id(call.get("id"), _fallback_id(message_id, n)),
            "name": names.original(str(function.get("name") or "")),
            "input": parse_arguments(function.get("arguments")),
        })
    stop_reason, stop_sequence = _stop_sequence(choice, stop_reason_for(choice.get("finish_reason"), bool(calls)))
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(resp.get("usage")),
    }


# ---------------------------------------------------------------------------------------------
# Stream: chat.completion.chunk → Anthropic events


@dataclass(slots=True)
class _Call:
    """One upstream tool call being streamed."""

    n: int  # order among this message's tool calls, for the fallback id
    id: str | None = None
    name: str | None = None
    pending: list[str] = field(default_factory=list)  # arguments seen before the name was
    opened: bool = False
    closed: bool = False


class ChatStreamToMessages:
    """An upstream chat.completion.chunk stream → Anthropic stream events.

    Feed each decoded chunk (`SSEDecoder` events, `[DONE]` excluded) to `feed`; call `finish()`
    at `[DONE]` or a clean end of stream, `fail()` when the upstream breaks. Every list returned
    is ready for `sse.frame`. The discipline Claude Code and the SDKs enforce (wire-contract
    §2.4, §9.5), each point a test:

    * exactly one `message_start`, first, with every usage field present (`input_tokens` is the
      `input_tokens` estimate given to the constructor, since OpenAI reports usage only at the
      end; the real counts follow in `message_delta`);
    * content blocks indexed 0, 1, 2…, each opened once and closed once, every delta of its
      block's kind; a change of kind or a new tool call closes the open block and opens the next;
    * a chunk carrying several kinds is split thinking → text → tool calls;
    * a tool block opens as soon as its name is known and its first argument fragment — even
      one in the same chunk as the id and name — is its first `input_json_delta`; fragments seen
      before the name are held and sent first;
    * `finish_reason` closes the open block and is remembered; `message_delta` (stop reason and
      cumulative usage: input, output, cache read, cache creation) is held until the trailing
      usage chunk (`choices: []`, sent with `stream_options.include_usage`) or `finish()`, then
      `message_stop`; nothing is emitted after that;
    * an upstream failure (`fail()`, or a chunk carrying `error`) emits one `error` event and
      nothing else — no block is closed and no `message_stop` follows, as in Anthropic's own
      streams, so a client keeps the partial output and treats the stream as failed.

    Tool argument fragments for a call whose block was already closed (a server interleaving
    parallel calls, which OpenAI does not do) cannot be delivered in Anthropic's sequential
    block model and are dropped.
    """

    __slots__ = ("_calls", "_current", "_done", "_finish_reason", "_index", "_input_estimate", "_kind",
                 "_message_id", "_model", "_names", "_ncalls", "_open_call", "_started", "_stop_sequence",
                 "_usage", "_usage_seen")

    def __init__(self, model: str, names: ToolNames, *, input_tokens: int = 0) -> None:
        self._model = model
        self._names = names
        self._input_estimate = input_tokens
        self._message_id = "msg_tollway"
        self._started = False
        self._done = False
        self._index = -1
        self._kind: str | None = None  # kind of the open block: thinking | text | tool_use
        self._open_call: _Call | None = None
        self._calls: dict[Any, _Call] = {}  # upstream tool-call index → call
        self._current: Any = None  # upstream index of the last tool fragment (for index-less servers)
        self._ncalls = 0
        self._finish_reason: Any = None
        self._stop_sequence: str | None = None
        self._usage: dict[str, int] = {}
        self._usage_seen = False

    @property
    def usage_reported(self) -> bool:
        """Whether the upstream sent usage; without it the counts are estimates (metering)."""
        return self._usage_seen

    # -- block bookkeeping -----------------------------------------------------------------

    def _close(self, out: list[dict[str, Any]]) -> None:
        if self._kind is not None:
            out.append({"type": "content_block_stop", "index": self._index})
            if self._open_call is not None:
                self._open_call.closed = True
            self._kind = None
            self._open_call = None

    def _open(self, kind: str, block: dict[str, Any], out: list[dict[str, Any]]) -> None:
        self._close(out)
        self._index += 1
        self._kind = kind
        out.append({"type": "content_block_start", "index": self._index, "content_block": block})

    def _delta(self, delta: dict[str, Any], out: list[dict[str, Any]]) -> None:
        out.append({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _text(self, kind: str, text: str, out: list[dict[str, Any]]) -> None:
        if kind == "thinking":
            if self._kind != "thinking":
                self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
            self._delta({"type": "thinking_delta", "thinking": text}, out)
        else:
            if self._kind != "text":
                self._open("text", {"type": "text", "text": ""}, out)
            self._delta({"type": "text_delta", "text": text}, out)

    def _open_tool(self, call: _Call, out: list[dict[str, Any]]) -> None:
        tool_id = self._names.tool_id(call.id, _fallback_id(self._message_id, call.n))
        name = self._names.original(call.name or "")
        self._open("tool_use", {"type": "tool_use", "id": tool_id, "name": name, "input": {}}, out)
        self._open_call = call
        call.opened = True
        for fragment in call.pending:
            self._delta({"type": "input_json_delta", "partial_json": fragment}, out)
        call.pending.clear()

    def _tool_fragment(self, key: Any, tc: dict[str, Any], out: list[dict[str, Any]]) -> None:
        function = _obj(tc.get("function"))
        raw_id = tc.get("id") if isinstance(tc.get("id"), str) and tc.get("id") else None
        call = self._calls.get(key)
        if call is not None and raw_id and call.id and raw_id != call.id:
            call = None  # a server reusing index 0 for every parallel call: a new call all the same
        if call is None:
            call = _Call(self._ncalls)
            self._ncalls += 1
            self._calls[key] = call
        if raw_id and not call.id:
            call.id = raw_id
        name = function.get("name")
        if isinstance(name, str) and name and not call.name:
            call.name = name
        args = function.get("arguments")
        args = args if isinstance(args, str) else ""
        if call.closed:
            return  # see the class doc: nowhere to put it
        if not call.opened:
            if args:
                call.pending.append(args)
            if call.name:
                self._open_tool(call, out)
            return
        if args:
            self._delta({"type": "input_json_delta", "partial_json": args}, out)

    # -- public API ------------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any] | None, out: list[dict[str, Any]]) -> None:
        if self._started:
            return
        self._started = True
        if chunk and chunk.get("id"):
            self._message_id = str(chunk["id"])
        out.append({
            "type": "message_start",
            "message": {
                "id": self._message_id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": self._input_estimate,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                },
            },
        })

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """Anthropic events for one upstream chunk (possibly none)."""
        if self._done or not isinstance(chunk, dict):
            return []
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            return self.fail(error_type_for(error), str(message or "upstream stream error"))
        out: list[dict[str, Any]] = []
        self._start(chunk, out)
        if isinstance(chunk.get("usage"), dict):
            self._usage = anthropic_usage(chunk["usage"])
            self._usage_seen = True
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:  # n > 1 is not translated
                self._choice(choice, out)
        if self._finish_reason is not None and not choices and isinstance(chunk.get("usage"), dict):
            out.extend(self._end())  # the trailing usage chunk: the message is complete
        return out

    def _choice(self, choice: dict[str, Any], out: list[dict[str, Any]]) -> None:
        delta = _obj(choice.get("delta"))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._text("thinking", reasoning, out)
        for name in ("content", "refusal"):
            text = delta.get(name)
            if isinstance(text, str) and text:  # never open a block for "": empty text blocks are refused later
                self._text("text", text, out)
        calls = delta.get("tool_calls")
        for position, tc in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(tc, dict):
                key = tc.get("index")
                if not isinstance(key, int):
                    key = self._current if (self._current is not None and not tc.get("id")) else f"p{position}"
                self._current = key
                self._tool_fragment(key, tc, out)
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            self._tool_fragment("function_call", {"function": legacy}, out)
        reason = choice.get("finish_reason")
        if reason is not None and self._finish_reason is None:
            self._finish_reason = reason
            matched = choice.get("stop_reason")
            if isinstance(matched, str) and matched:
                self._stop_sequence = matched
            self._flush_calls(out)
            self._close(out)

    def _flush_calls(self, out: list[dict[str, Any]]) -> None:
        """Open calls whose name never came (so their arguments are not lost)."""
        for call in self._calls.values():
            if not call.opened and (call.pending or call.id):
                call.name = call.name or "unknown"
                self._open_tool(call, out)

    def _end(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._flush_calls(out)
        self._close(out)
        stop_reason = stop_reason_for(self._finish_reason, self._ncalls > 0)
        stop_sequence = None
        if stop_reason == "end_turn" and self._stop_sequence:
            stop_reason, stop_sequence = "stop_sequence", self._stop_sequence
        usage = self._usage if self._usage_seen else {
            "input_tokens": self._input_estimate,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        out.append({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": dict(usage),
        })
        out.append({"type": "message_stop"})
        self._done = True
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The upstream ended cleanly (`[DONE]` or end of body): close what is open, send the
        held `message_delta` (end_turn when no finish_reason came) and `message_stop`."""
        if self._done:
            return []
        out: list[dict[str, Any]] = []
        self._start(None, out)
        out.extend(self._end())
        return out

    def fail(self, error_type: str, message: str) -> list[dict[str, Any]]:
        """The upstream broke mid-stream: one `error` event, and the stream is over (class doc).

        Before any output a surface should answer with an HTTP error instead; if it calls this
        anyway the `error` event is the only event, which the SDKs raise on all the same."""
        if self._done:
            return []
        self._done = True
        return [{"type": "error", "error": {"type": error_type, "message": message}}]
