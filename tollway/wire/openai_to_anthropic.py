"""OpenAI Chat Completions → Anthropic Messages. Pure functions on plain dicts, no I/O.

Two uses, one per direction of a call:

* **Requests from an OpenAI-dialect client** (`chat_request_to_messages`): a chat.completions
  request becomes the canonical Anthropic Messages request (ARCHITECTURE.md §1), which the
  pipeline governs and any upstream serves.
* **Answers from an OpenAI-compatible upstream** (`chat_response_to_message`,
  `ChatStreamToMessages`): a chat.completion or its chunk stream becomes an Anthropic Message or
  event stream, with the client's tool names restored through the call's `ToolNames`.

Shapes follow openai-python's types (`types/chat/completion_create_params.py`,
`chat_completion*.py`, `completion_usage.py`) and the Anthropic SDK's (`message_create_params.py`,
`output_config_param.py`, `raw_*_event.py`); the translation facts and the pitfalls peers
shipped are wire-contract §9. Decisions made here, each with its reason:

* **System and developer messages**, wherever they stand, become `system` text blocks in order:
  Anthropic has one system prompt, and OpenAI's developer role is the same thing renamed.
* **Consecutive same-role turns are merged** (tool results join the user turn they fall in,
  results first, as Anthropic requires), and **tool pairing is repaired**: a `tool_use` with no
  result (trimmed history) gets a placeholder `tool_result` with `is_error: true`; a result that
  answers no call in the turn before becomes text. Anthropic answers 400 for either otherwise.
* **Tool history without `tools`**: Anthropic refuses `tool_use`/`tool_result` blocks when the
  request defines no tools, so then they are rendered as text instead.
* **Tool-call arguments that are not a JSON object** (models do produce broken JSON): blank →
  `{}`; anything else → `{"_raw_arguments": "<text>"}`, so the text is not lost and a client's
  tool validation names the problem instead of silently running the tool with no input.
* **Tool ids** are sanitised with the same deterministic function as the other direction
  (`sanitize_tool_id`), so an assistant `tool_calls[].id` and the later `tool_call_id` that
  answers it stay equal; names are OpenAI's (at most 64 characters) and need no mapping.
* **`cache_control`** on a content part, a message (applied to its last block) or a tool is kept:
  Claude targets cache only when the gateway preserves it (wire-contract §9 pitfall).
* **`max_tokens`**: `max_completion_tokens`, else `max_tokens`, else 4096 (Anthropic requires
  it; OpenAI does not). **`stop`**: string or list; empty/whitespace-only entries dropped
  (Anthropic rejects them). **`temperature`** is clamped to Anthropic's 0 to 1 (OpenAI allows 2).
* **`reasoning_effort`** → `thinking: {type: enabled, budget_tokens}` with minimal 1024, low 2048,
  medium 8192, high 16384, xhigh 32768; `none` → no thinking. The budget must stay below
  `max_tokens`: with a caller-set limit it is clamped to `max_tokens - 1` and thinking is left out
  when that is under Anthropic's minimum 1024 (the caller's cap wins, as OpenAI counts reasoning
  inside it); with the default limit, `max_tokens` becomes budget + 4096. With thinking on,
  `temperature`/`top_p` are dropped and a forced `tool_choice` turns thinking off, as Anthropic
  refuses those combinations.
* **`response_format`**: `json_schema` → `output_config: {format: {type: json_schema, schema}}`
  (Anthropic structured outputs, verified in the SDK's `output_config_param.py`);
  `json_object` → an extra system instruction to answer with one JSON object (Anthropic has no
  schema-less JSON mode); `text` → nothing.
* **`tool_choice`**: auto/none/required/{function} → `{type: auto|none|any|tool}`;
  `allowed_tools` → the tool list filtered to the allowed ones, mode auto/required → auto/any;
  `parallel_tool_calls: false` → `disable_parallel_tool_use: true` (on `auto` if no choice was
  given). The deprecated `functions`/`function_call` are read when `tools` is absent.
* **Content parts**: text; `image_url` (data: URL → base64 source, else URL source; `detail`
  dropped); `file` with PDF/other `file_data` data URL → base64 `document`; `input_audio`,
  `file_id` references and unknown parts are dropped (no Anthropic equivalent). An assistant's
  final text loses trailing whitespace (Anthropic refuses it); empty text blocks are dropped.
* **Dropped fields**: `user` (DECISIONS.md 2 strips `metadata`, so there is nowhere safe to put
  it), `n`, `seed`, `logprobs`, `top_logprobs`, `logit_bias`, `presence_penalty`,
  `frequency_penalty`, `store`, `metadata`, `modalities`, `audio`, `prediction`, `service_tier`,
  `web_search_options`, `stream_options` (the surface reads `include_usage` itself), message
  `name`, and any unknown field. `stream` is kept.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.wire.anthropic_to_openai import ToolNames, sanitize_tool_id

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
NO_RESULT = "No result was provided for this tool call."

# OpenAI finish_reason → Anthropic stop_reason; anything else (or none) → end_turn.
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_DATA_URL = re.compile(r"data:([^;,]*)(?:;[^,]*?)?;base64,(.*)", re.DOTALL)


# ---------------------------------------------------------------------------------------------
# Shared helpers
def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: input from clients and upstreams is
    read defensively, never trusted to have the documented shape."""
    return value if isinstance(value, dict) else {}




def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call `arguments` (a JSON string) → the `input` object Anthropic requires (module doc)."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"_raw_arguments": raw}


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


# ---------------------------------------------------------------------------------------------
# Request: chat.completions → Anthropic Messages


def _image_block(url: Any) -> dict[str, Any] | None:
    if not isinstance(url, str) or not url:
        return None
    match = _DATA_URL.fullmatch(url)
    if match:
        media, data = match.groups()
        return {"type": "image", "source": {"type": "base64", "media_type": media or "image/png", "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _file_block(file: Any) -> dict[str, Any] | None:
    if not isinstance(file, dict):
        return None
    match = _DATA_URL.fullmatch(str(file.get("file_data") or ""))
    if not match:
        return None  # `file_id` refers to OpenAI's Files API: nothing to send elsewhere
    media, data = match.groups()
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": media or "application/pdf", "data": data},
    }
    if file.get("filename"):
        block["title"] = str(file["filename"])
    return block


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) → Anthropic content blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, str):
            block: dict[str, Any] | None = {"type": "text", "text": part} if part else None
        elif not isinstance(part, dict):
            continue
        else:
            kind = part.get("type")
            if kind == "text":
                block = {"type": "text", "text": str(part.get("text") or "")}
            elif kind == "refusal":
                block = {"type": "text", "text": str(part.get("refusal") or "")}
            elif kind == "image_url":
                image = part.get("image_url")
                block = _image_block(image.get("url") if isinstance(image, dict) else image)
            elif kind == "file":
                block = _file_block(part.get("file"))
            else:
                block = None  # input_audio and unknown parts: no Anthropic equivalent
            if block is not None and isinstance(part.get("cache_control"), dict):
                block["cache_control"] = part["cache_control"]
        if block is not None and not (block["type"] == "text" and not block["text"]):
            out.append(block)
    return out


def _result_content(content: Any) -> str | list[dict[str, Any]] | None:
    if isinstance(content, str):
        return content or None
    blocks = _blocks(content)
    return blocks or None


@dataclass(slots=True)
class _Turn:
    role: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _add(turns: list[_Turn], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging it into the previous one when the role repeats (Anthropic merges
    consecutive same-role turns itself; doing it here lets the tool pairing see whole turns).
    An empty message adds nothing, so it cannot separate two turns that belong together."""
    if not blocks:
        return
    if turns and turns[-1].role == role:
        turns[-1].blocks.extend(blocks)
    else:
        turns.append(_Turn(role, list(blocks)))


def _results_first(turn: _Turn) -> None:
    """Anthropic wants a user turn's tool_result blocks before anything else (stable order)."""
    if turn.role == "user":
        turn.blocks.sort(key=lambda b: b.get("type") != "tool_result")


def _result_text(block: dict[str, Any]) -> dict[str, Any]:
    content = block.get("content")
    if isinstance(content, list):
        content = "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    return {"type": "text", "text": f"[result of tool call {block['tool_use_id']}]\n{content or ''}".rstrip()}


def _call_text(block: dict[str, Any]) -> dict[str, Any]:
    arguments = orjson.dumps(block["input"]).decode()
    return {"type": "text", "text": f"[tool call {block['name']} {block['id']}: {arguments}]"}


def _pair_tool_results(turns: list[_Turn]) -> list[_Turn]:
    """Every tool_use answered at the start of the next user turn; every tool_result answering a
    tool_use of the turn before (module doc)."""
    out: list[_Turn] = []
    expected: list[str] = []
    for turn in turns:
        if turn.role == "assistant":
            if expected:  # an assistant turn right after unanswered calls: answer them first
                out.append(_Turn("user", [_placeholder(i) for i in expected]))
            out.append(turn)
            expected = [b["id"] for b in turn.blocks if b.get("type") == "tool_use"]
            continue
        results: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        seen: set[str] = set()
        for block in turn.blocks:
            if block.get("type") != "tool_result":
                rest.append(block)
            elif block.get("tool_use_id") in expected and block["tool_use_id"] not in seen:
                seen.add(block["tool_use_id"])
                results.append(block)
            else:
                rest.append(_result_text(block))
        results.extend(_placeholder(i) for i in expected if i not in seen)
        expected = []
        out.append(_Turn("user", results + rest))
    if expected:
        out.append(_Turn("user", [_placeholder(i) for i in expected]))
    return out


def _placeholder(tool_use_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": NO_RESULT, "is_error": True}


def _tools_to_text(turns: list[_Turn]) -> None:
    for turn in turns:
        turn.blocks = [
            _call_text(b) if b.get("type") == "tool_use" else _result_text(b) if b.get("type") == "tool_result" else b
            for b in turn.blocks
        ]


def _finish_turns(turns: list[_Turn]) -> list[dict[str, Any]]:
    """Drop empty turns, re-merge neighbours that became adjacent, trim the final assistant text."""
    merged: list[_Turn] = []
    for turn in turns:
        if turn.blocks:
            _add(merged, turn.role, turn.blocks)
    for turn in merged:
        _results_first(turn)
    if merged and merged[-1].role == "assistant":
        blocks = merged[-1].blocks
        while blocks and blocks[-1].get("type") == "text":
            text = str(blocks[-1]["text"]).rstrip()
            if text:
                blocks[-1] = {**blocks[-1], "text": text}
                break
            blocks.pop()
        if not blocks:
            merged.pop()
    return [{"role": t.role, "content": t.blocks} for t in merged]


def _tool_id(raw: Any, fallback: str) -> str:
    return sanitize_tool_id(str(raw)) if raw else fallback


def _messages(messages: Any) -> tuple[list[dict[str, Any]], list[_Turn]]:
    """(system blocks, conversation turns) from OpenAI messages."""
    system: list[dict[str, Any]] = []
    turns: list[_Turn] = []
    last_function_id = ""
    for i, msg in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            blocks = _blocks(content)
            target, turn_role = system, None
        elif role == "user":
            blocks = _blocks(content)
            target, turn_role = None, "user"
        elif role == "assistant":
            blocks = _blocks(content)
            for j, call in enumerate(msg.get("tool_calls") or ()):
                if not isinstance(call, dict):
                    continue
                function = _obj(call.get("function"))
                blocks.append({
                    "type": "tool_use",
                    "id": _tool_id(call.get("id"), f"toolu_missing_{i}_{j}"),
                    "name": str(function.get("name") or ""),
                    "input": parse_arguments(function.get("arguments")),
                })
            legacy = msg.get("function_call")
            if isinstance(legacy, dict):
                last_function_id = f"toolu_function_{i}"
                blocks.append({
                    "type": "tool_use",
                    "id": last_function_id,
                    "name": str(legacy.get("name") or ""),
                    "input": parse_arguments(legacy.get("arguments")),
                })
            target, turn_role = None, "assistant"
        elif role in ("tool", "function"):
            raw_id = msg.get("tool_call_id") if role == "tool" else last_function_id  # legacy: answers the last call
            tool_use_id = _tool_id(raw_id, f"toolu_missing_{i}")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
            result_content = _result_content(content)
            if result_content is not None:
                result["content"] = result_content
            blocks = [result]
            target, turn_role = None, "user"
        else:
            continue
        if blocks and isinstance(msg.get("cache_control"), dict):
            blocks[-1]["cache_control"] = msg["cache_control"]
        if target is not None:
            target.extend(blocks)
        elif turn_role is not None:
            _add(turns, turn_role, blocks)
    return system, turns


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        legacy = body.get("functions")
        tools = [{"type": "function", "function": f} for f in legacy] if isinstance(legacy, list) else []
    out: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue  # custom (free-text) tools have no Anthropic equivalent
        function = tool.get("function")
        if not isinstance(function, dict) or not function.get("name"):
            continue
        schema = function.get("parameters")
        schema = dict(schema) if isinstance(schema, dict) else {"type": "object", "properties": {}}
        schema.setdefault("type", "object")  # Anthropic requires an object schema
        converted: dict[str, Any] = {"name": str(function["name"]), "input_schema": schema}
        if function.get("description"):
            converted["description"] = function["description"]
        if isinstance(function.get("strict"), bool):
            converted["strict"] = function["strict"]
        cache = tool.get("cache_control") or function.get("cache_control")
        if isinstance(cache, dict):
            converted["cache_control"] = cache
        out.append(converted)
    return out


def _tool_choice(
    body: dict[str, Any], tools: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(Anthropic tool_choice or None, tools possibly narrowed by `allowed_tools`)."""
    choice = body.get("tool_choice", body.get("function_call") if "tools" not in body else None)
    out: dict[str, Any] | None = None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict):
        kind = choice.get("type")
        function = _obj(choice.get("function")) or choice
        if kind == "allowed_tools":
            allowed = _obj(choice.get("allowed_tools"))
            keep = {
                _obj(t.get("function")).get("name") or t.get("name")
                for t in allowed.get("tools") or () if isinstance(t, dict)
            }
            tools = [t for t in tools if t["name"] in keep]
            out = {"type": "any" if allowed.get("mode") == "required" else "auto"}
        elif function.get("name"):
            out = {"type": "tool", "name": str(function["name"])}
    if body.get("parallel_tool_calls") is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out, tools


def chat_request_to_messages(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completions request → the canonical Anthropic Messages request.

    The body is expected to have passed `openai_schema.validate_chat`; anything malformed
    beyond that is skipped rather than raised, and the upstream judges the result. See the
    module doc for every mapping and what is dropped.
    """
    system, turns = _messages(body.get("messages"))
    tools = _tools(body)
    choice, tools = _tool_choice(body, tools)
    if tools:
        turns = _pair_tool_results(turns)
    else:
        _tools_to_text(turns)
    out: dict[str, Any] = {"model": body.get("model")}
    fmt = body.get("response_format")
    fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt_type == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    if system:
        out["system"] = system
    out["messages"] = _finish_turns(turns)

    explicit = next(
        (v for v in (body.get("max_completion_tokens"), body.get("max_tokens"))
         if isinstance(v, int) and not isinstance(v, bool)),
        None,
    )
    max_tokens = explicit if explicit is not None else DEFAULT_MAX_TOKENS
    thinking = None
    budget = THINKING_BUDGETS.get(str(body.get("reasoning_effort")))
    forced = choice is not None and choice["type"] in ("any", "tool")
    if budget is not None and not forced:
        if budget >= max_tokens:
            if explicit is None:
                max_tokens = budget + DEFAULT_MAX_TOKENS
            else:
                budget = max_tokens - 1
        if budget >= MIN_THINKING_BUDGET:
            thinking = {"type": "enabled", "budget_tokens": budget}
    out["max_tokens"] = max_tokens

    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    kept = [s for s in stops if isinstance(s, str) and s.strip()]
    if kept:
        out["stop_sequences"] = kept
    if thinking is not None:
        out["thinking"] = thinking
    else:
        temperature = body.get("temperature")
        if isinstance(temperature, int | float) and not isinstance(temperature, bool):
            out["temperature"] = min(max(float(temperature), 0.0), 1.0)
        top_p = body.get("top_p")
        if isinstance(top_p, int | float) and not isinstance(top_p, bool):
            out["top_p"] = top_p
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    if fmt_type == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
    return out


# ---------------------------------------------------------------------------------------------
# Response: chat.completion → Anthropic Message


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
