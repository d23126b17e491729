"""Anthropic Messages → OpenAI Chat Completions. Pure functions on plain dicts, no I/O.

Two uses, one per direction of a call:

* **Requests to an OpenAI-compatible upstream** (`messages_request_to_chat`): the canonical
  request (Anthropic Messages, ARCHITECTURE.md §1) becomes a chat.completions request for
  OpenAI, Azure OpenAI, vLLM, Ollama… The returned `ToolNames` travels with the call so the
  answer can be translated back (`openai_to_anthropic`) with the client's own tool names.
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

import base64
import hashlib
import re
import time
from typing import Any

import orjson

TOOL_NAME_LIMIT = 64
_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_ID_PREFIX = "twid_"
STOP_LIMIT = 4
NO_RESULT = "No result was provided for this tool call."

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
# Tool names and ids
def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: input from clients and upstreams is
    read defensively, never trusted to have the documented shape."""
    return value if isinstance(value, dict) else {}




def sanitize_tool_id(raw: str) -> str:
    """An id matching `^[a-zA-Z0-9_-]+$`: `raw` itself when it already does, else
    `twid_<base64url(raw)>`. Deterministic and reversible (see `restore_tool_id`)."""
    if _ID_OK.fullmatch(raw):
        return raw
    return _ID_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def restore_tool_id(safe: str) -> str:
    """The id an upstream originally sent, given what `sanitize_tool_id` made of it.

    Only ids that decode to something that needed sanitising are decoded, so a genuine id that
    happens to start with `twid_` is left alone."""
    if not safe.startswith(_ID_PREFIX):
        return safe
    body = safe[len(_ID_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return safe
    return raw if raw and not _ID_OK.fullmatch(raw) and sanitize_tool_id(raw) == safe else safe


def shorten_tool_name(name: str) -> str:
    """`name` if it fits OpenAI's 64 characters, else its first 55 + `_` + 8 hex of SHA-256."""
    if len(name) <= TOOL_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: TOOL_NAME_LIMIT - 9]}_{digest}"


class ToolNames:
    """The tool-name and tool-id mapping of one call through an OpenAI-compatible upstream.

    Built while translating the request (every name it shortens is remembered) and used while
    translating the answer, so the client sees its own tool names and Anthropic-valid ids.
    """

    __slots__ = ("_long",)

    def __init__(self) -> None:
        self._long: dict[str, str] = {}

    def short(self, name: str) -> str:
        """The name to send upstream; remembers it for `original`."""
        short = shorten_tool_name(name)
        if short != name:
            self._long[short] = name
        return short

    def original(self, name: str) -> str:
        """The client's name for a name the upstream used (unchanged when it was never shortened)."""
        return self._long.get(name, name)

    @staticmethod
    def tool_id(raw: str | None, fallback: str) -> str:
        """An Anthropic-valid id for an upstream tool-call id; `fallback` when it sent none."""
        return sanitize_tool_id(raw) if raw else fallback

    @staticmethod
    def upstream_id(safe: str) -> str:
        """The id to send back upstream for an id the client got from `tool_id`."""
        return restore_tool_id(safe)


# ---------------------------------------------------------------------------------------------
# Request: Anthropic Messages → chat.completions


def _texts(content: Any) -> list[str]:
    """The text of a system prompt / content list: strings and `text` blocks, in order."""
    if isinstance(content, str):
        return [content] if content else []
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                out.append(block)
            elif isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                out.append(str(block["text"]))
    return out


def _image_part(source: Any) -> dict[str, Any] | None:
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64" and source.get("data"):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
        return {"type": "image_url", "image_url": {"url": url}}
    if source.get("type") == "url" and source.get("url"):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    return None  # `file` sources refer to Anthropic's Files API: nothing to send elsewhere


def _document_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    kind = source.get("type")
    if kind == "text" and source.get("data"):
        return {"type": "text", "text": str(source["data"])}
    if kind == "content":
        text = "\n".join(_texts(source.get("content")))
        return {"type": "text", "text": text} if text else None
    if kind == "base64" and source.get("data"):
        media = source.get("media_type") or "application/pdf"
        file: dict[str, Any] = {"file_data": f"data:{media};base64,{source['data']}"}
        file["filename"] = str(block.get("title") or "document.pdf")
        return {"type": "file", "file": file}
    if kind == "url" and source.get("url"):
        return {"type": "text", "text": f"[document: {source['url']}]"}
    return None


def _part(block: Any) -> dict[str, Any] | None:
    """One user content block as a chat content part; None for blocks with no equivalent."""
    if isinstance(block, str):
        return {"type": "text", "text": block} if block else None
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block["text"])} if block.get("text") else None
    if kind == "image":
        return _image_part(block.get("source"))
    if kind == "document":
        return _document_part(block)
    if kind == "search_result":
        text = "\n".join(_texts(block.get("content")))
        title = block.get("title") or block.get("source") or ""
        return {"type": "text", "text": f"{title}\n{text}".strip()} if (text or title) else None
    return None


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string (what every OpenAI-compatible server accepts, and what
    vLLM's templates make of text parts anyway); mixed content as a parts list."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _tool_message(block: dict[str, Any], names: ToolNames) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A `tool_result` block → a `tool` message, plus the image/file parts that must travel
    separately (a `tool` message holds text only)."""
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for item in content:
            part = _part(item)
            if part is None:
                continue
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
    text = "\n".join(t for t in texts if t)
    if images:
        note = f"({len(images)} attachment(s) from this result follow in the next user message.)"
        text = f"{text}\n{note}" if text else note
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error."
    tool_id = names.upstream_id(str(block.get("tool_use_id") or ""))
    return {"role": "tool", "tool_call_id": tool_id, "content": text}, images


def _user(content: Any, names: ToolNames) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "tool_result":
            message, images = _tool_message(block, names)
            tools.append(message)
            parts.extend(images)  # ahead of the turn's own content: they belong to the results
        else:
            part = _part(block)
            if part is not None:
                parts.append(part)
    if parts:
        tools.append({"role": "user", "content": _content(parts)})
    return tools


def _assistant(content: Any, names: ToolNames) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}] if content else []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append(str(block["text"]))
        elif kind == "tool_use":
            calls.append({
                "id": names.upstream_id(str(block.get("id") or "")),
                "type": "function",
                "function": {
                    "name": names.short(str(block.get("name") or "")),
                    "arguments": orjson.dumps(block.get("input") or {}).decode(),
                },
            })
        # thinking / redacted_thinking / server tool blocks: no chat equivalent (module doc)
    if not texts and not calls:
        return []  # e.g. a turn that held only thinking: an empty assistant message is refused
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _pair_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make every assistant `tool_calls` entry be answered by a `tool` message right after it,
    and every `tool` message answer a call: OpenAI refuses the request otherwise (wire-contract
    §9: trimmed histories ship orphans). Missing answers get a placeholder; orphan answers
    become user text, so nothing the client sent is lost."""
    out: list[dict[str, Any]] = []
    expected: list[str] = []  # ids of the last assistant tool_calls still awaiting answers
    answered: set[str] = set()
    deferred: list[dict[str, Any]] = []  # orphans met inside a run of answers

    def settle() -> None:
        for call_id in expected:
            if call_id not in answered:
                out.append({"role": "tool", "tool_call_id": call_id, "content": NO_RESULT})
        out.extend(deferred)
        expected.clear()
        answered.clear()
        deferred.clear()

    for msg in messages:
        if msg["role"] == "tool":
            call_id = msg["tool_call_id"]
            if call_id in expected and call_id not in answered:
                answered.add(call_id)
                out.append(msg)
            else:
                orphan = {"role": "user", "content": f"[result of tool call {call_id}]\n{msg['content']}"}
                (deferred if expected else out).append(orphan)
            continue
        settle()
        out.append(msg)
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            expected.extend(call["id"] for call in msg["tool_calls"])
    settle()
    return out


def _tools(tools: Any, names: ToolNames) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or not tool.get("name"):
            continue  # server/hosted tools (web_search_*, bash_*, …) have no chat equivalent
        function: dict[str, Any] = {"name": names.short(str(tool["name"]))}
        if tool.get("description"):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, names: ToolNames) -> tuple[Any, bool]:
    """(chat `tool_choice` or None, whether parallel tool calls were disabled)."""
    if not isinstance(choice, dict):
        return None, False
    kind = choice.get("type")
    serial = bool(choice.get("disable_parallel_tool_use"))
    if kind == "auto":
        return "auto", serial
    if kind == "any":
        return "required", serial
    if kind == "none":
        return "none", False
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": names.short(str(choice["name"]))}}, serial
    return None, serial


def reasoning_effort_for(thinking: Any, output_config: Any = None) -> str | None:
    """The chat `reasoning_effort` that stands for an Anthropic `thinking` setting (module doc)."""
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            return "medium"
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if kind == "adaptive":
        effort = output_config.get("effort") if isinstance(output_config, dict) else None
        if effort in ("low", "medium", "high"):
            return str(effort)
        return "high" if effort in ("xhigh", "max") else "medium"
    return None


def messages_request_to_chat(
    body: dict[str, Any],
    *,
    max_tokens_field: str = "max_tokens",
    reasoning: bool = True,
) -> tuple[dict[str, Any], ToolNames]:
    """A canonical Anthropic Messages request → a chat.completions request for an
    OpenAI-compatible upstream, and the `ToolNames` needed to translate its answer back.

    `max_tokens_field` names the output-limit field the upstream wants; `reasoning=False`
    leaves `reasoning_effort` out for models that refuse it. See the module doc for every
    mapping and what is dropped.
    """
    names = ToolNames()
    tools = _tools(body.get("tools"), names)  # first, so every long name is registered
    messages: list[dict[str, Any]] = []
    system = _texts(body.get("system"))
    if system:
        messages.append({"role": "system", "content": "\n\n".join(system)})
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role == "system":  # a mid-conversation system turn stays where it was
            text = _texts(msg.get("content"))
            if text:
                messages.append({"role": "system", "content": "\n\n".join(text)})
        elif role == "assistant":
            messages.extend(_assistant(msg.get("content"), names))
        else:
            messages.extend(_user(msg.get("content"), names))

    out: dict[str, Any] = {"model": body.get("model"), "messages": _pair_tool_calls(messages)}
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        out[max_tokens_field] = max_tokens
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    stops = body.get("stop_sequences")
    if isinstance(stops, list):
        kept = [s for s in stops if isinstance(s, str) and s.strip()][:STOP_LIMIT]
        if kept:
            out["stop"] = kept
    if tools:
        out["tools"] = tools
        choice, serial = _tool_choice(body.get("tool_choice"), names)
        if choice is not None:
            out["tool_choice"] = choice
        if serial:
            out["parallel_tool_calls"] = False
    if reasoning:
        effort = reasoning_effort_for(body.get("thinking"), body.get("output_config"))
        if effort:
            out["reasoning_effort"] = effort
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # else OpenAI sends no usage at all
    return out, names


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
