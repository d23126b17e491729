"""Chat-format conversations → Anthropic Messages requests. Pure functions on plain dicts.

`chat_request_to_messages` turns a chat.completions request into the canonical request; the
Responses request translator (wire/responses_to_anthropic.py) builds on the same turn
machinery (`_Turn`, `_add`, `_pair_tool_results`, `_finish_turns`…), which is why it lives in a
module of its own that both share instead of one translator importing another. Decisions made
here, each with its reason:

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

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.wire.ids import sanitize_tool_id
from tollway.wire.tool_arguments import parse_arguments

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
NO_RESULT = "No result was provided for this tool call."

_DATA_URL = re.compile(r"data:([^;,]*)(?:;[^,]*?)?;base64,(.*)", re.DOTALL)

__all__ = ["chat_request_to_messages", "parse_arguments"]


def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: input is read defensively."""
    return value if isinstance(value, dict) else {}


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
