"""OpenAI Responses → Anthropic Messages. Pure functions on plain dicts, no I/O.

The request half of `/v1/responses` (ARCHITECTURE.md §1): a Responses request, plus the stored
items of the conversation it continues, becomes the canonical Anthropic Messages request the
pipeline governs. Shapes follow openai-python's types (`types/responses/response_create_params.py`,
`response_input_item.py`, `easy_input_message.py`, `response_input_image.py`,
`response_input_file.py`, `function_tool.py`, `tool_choice_*.py`, `response_item.py`); the
Responses facts are wire-contract §1.6 and §10. Decisions made here, each with its reason:

* **One mapping with the chat surface.** Request-level settings (function tools, `tool_choice`,
  `parallel_tool_calls`, `max_output_tokens`, `reasoning.effort`, `temperature`, `top_p`,
  `text.format`, `stream`) are restated in chat.completions terms and translated by
  `openai_to_anthropic.chat_request_to_messages`, and the conversation turns go through the same
  turn merging and tool-pairing helpers, so the two OpenAI surfaces cannot drift apart: the same
  `max_tokens` default (4096), thinking budgets (`reasoning.effort`; `max` is read as `xhigh`,
  the largest budget), forced-`tool_choice`-turns-thinking-off rule, `json_schema` →
  `output_config.format`, `json_object` → a system instruction, temperature clamp, and the same
  repairs of trimmed history (a `function_call` with no output gets a placeholder error
  result; tool history in a request without tools becomes text).
* **System prompt**, in this order: the caller's curated `prefix_system` (it must come before
  anything the client says), then `instructions`, then `system`/`developer` messages of the
  history and the input in order (Anthropic has one system prompt; `developer` is the same thing
  renamed). `instructions` of earlier turns are not in the history, as OpenAI specifies.
* **Strict where OpenAI is strict, named as OpenAI names it.** A malformed item, part, tool or
  `tool_choice` raises `ResponsesInvalid` with `param` the path at fault (`input[2].call_id`,
  `tools[1].type`; `history[…]` for a stored item). A `function_call_output` whose `call_id`
  answers no earlier `function_call` is refused, as OpenAI refuses it ("No tool call found…"):
  it is the symptom of a wrong `previous_response_id`, and guessing would hide it.
  Unsupported is not the same as malformed: a `file_id` reference (OpenAI's Files API; there is
  nothing to fetch it from), `input_audio`, `item_reference`, and tool types other than
  `function` raise with code `unsupported_parameter` / `unsupported_tool_type`, except tool
  types the caller lists in `extra_tools`, which it expands itself (hosted tools): they are
  skipped here, and tool history stays structured for them.
* **Content**: `input_text`/`output_text`/`refusal` → text (empty text is dropped);
  `input_image` → image block (`data:` URL → base64 source, `http(s)` URL → URL source;
  `detail` has no Anthropic equivalent) in user messages and function-call outputs only,
  where Anthropic accepts images; `input_file` → `document` (`file_data` as a data URL or bare
  base64, PDF assumed; `file_url` → URL source). `prompt_cache_breakpoint` on a part →
  `cache_control: {type: ephemeral}` on its block (`ttl: 12h` → Anthropic's longest, `1h`), so
  OpenAI-style explicit caching keeps working on Claude.
* **Tool calls**: `function_call` → `tool_use` (arguments parsed like the chat surface: blank →
  `{}`, broken JSON kept as `_raw_arguments`); `function_call_output` → `tool_result` (string
  or parts). Call ids go through `sanitize_tool_id`, the same deterministic function as every
  other direction, so a call and its output keep matching.
* **Reasoning items** sent back (stored history, or stateless clients such as codex) are
  rebuilt into the exact `thinking` / `redacted_thinking` blocks `anthropic_to_responses`
  encoded in `encrypted_content`, which Anthropic requires for a tool-use loop with thinking on.
  They are dropped when thinking is off, and so are reasoning items from elsewhere (another
  provider's encrypted content, or an empty signature): Anthropic rejects unsigned thinking.
  When thinking is asked for in the middle of a tool-use loop whose calls carry no thinking
  block (a turn made without thinking, or foreign reasoning dropped), the turn is answered
  without thinking: Anthropic refuses that request outright otherwise.
* **Function tools**: `{type: function, name, description, parameters, strict}` → Anthropic
  tools; `strict` only when the client set it (Anthropic's strict mode constrains schemas, so
  OpenAI's implicit default is not imposed).
* **Dropped**: `metadata` (ours to store, not to forward), `store`, `previous_response_id`,
  `conversation` (the caller resolves them into `history`), `include`, `truncation`,
  `background`, `user`, `safety_identifier`, `prompt_cache_key`, `service_tier`,
  `stream_options`, `max_tool_calls`, `top_logprobs`, `text.verbosity`, `reasoning.summary`,
  the `tollway` extension block (the surface reads it), and any unknown field.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tollway.wire.chat_turns import (
    _add,
    _file_block,
    _finish_turns,
    _image_block,
    _pair_tool_results,
    _tools_to_text,
    _Turn,
    chat_request_to_messages,
    parse_arguments,
)
from tollway.wire.ids import REDACTED_PREFIX, THINKING_PREFIX, sanitize_tool_id
from tollway.wire.responses_items import (
    ResponsesInvalid,
    _bad_type,
    _bad_value,
    _missing,
    _show,
    _string,
    _unsupported,
    normalise_items,
)

# Stands for the caller's extra tools while the chat translator decides about tool history and
# tool_choice; removed before the request is returned (never sent anywhere).
PLACEHOLDER_TOOL = "__tollway_extra_tools__"


# ---------------------------------------------------------------------------------------------
# Items → Anthropic turns


def _cache(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    point = part.get("prompt_cache_breakpoint")
    if isinstance(point, dict):
        block["cache_control"] = {"type": "ephemeral", "ttl": "1h"} if point.get("ttl") == "12h" else {
            "type": "ephemeral"
        }
    return block


def _block(part: dict[str, Any], path: str) -> dict[str, Any] | None:
    """A normalised part → an Anthropic content block (None for empty text)."""
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return _cache(part, {"type": "text", "text": part["text"]}) if part["text"] else None
    if kind == "refusal":
        return {"type": "text", "text": part["refusal"]} if part["refusal"] else None
    if kind == "input_image":
        block = _image_block(part["image_url"])
    elif "file_url" in part:
        block = {"type": "document", "source": {"type": "url", "url": part["file_url"]}}
        if part.get("filename"):
            block["title"] = part["filename"]
    else:
        data = part["file_data"]
        if not data.startswith("data:"):
            data = f"data:application/pdf;base64,{data}"  # bare base64: PDF, OpenAI's usual file
        block = _file_block({"file_data": data, "filename": part.get("filename")})
    if block is None:
        raise ResponsesInvalid(f"Invalid '{path}': expected base64 data.", path)
    return _cache(part, block)


def _blocks(parts: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    out = []
    for j, part in enumerate(parts):
        block = _block(part, f"{path}[{j}]")
        if block is not None:
            out.append(block)
    return out


def _thinking(item: dict[str, Any]) -> dict[str, Any] | None:
    """The Anthropic block a reasoning item encodes, or None when it is not ours (module doc)."""
    encrypted = item.get("encrypted_content") or ""
    if encrypted.startswith(THINKING_PREFIX) and len(encrypted) > len(THINKING_PREFIX):
        text = "".join(p["text"] for p in item["summary"])
        return {"type": "thinking", "thinking": text, "signature": encrypted[len(THINKING_PREFIX) :]}
    if encrypted.startswith(REDACTED_PREFIX) and len(encrypted) > len(REDACTED_PREFIX):
        return {"type": "redacted_thinking", "data": encrypted[len(REDACTED_PREFIX) :]}
    return None


class _Conversation:
    """System blocks and turns built from items, history first, then input."""

    __slots__ = ("calls", "system", "thinking", "turns")

    def __init__(self, thinking: bool) -> None:
        self.system: list[dict[str, Any]] = []
        self.turns: list[_Turn] = []
        self.calls: set[str] = set()  # call_ids of every function_call so far
        self.thinking = thinking

    def add(self, items: list[dict[str, Any]], where: str) -> None:
        for i, item in enumerate(items):
            path = f"{where}[{i}]"
            kind = item["type"]
            if kind == "message":
                role = item["role"]
                blocks = _blocks(item["content"], f"{path}.content")
                if role in ("system", "developer"):
                    self.system.extend(blocks)
                else:
                    _add(self.turns, role, blocks)
            elif kind == "function_call":
                self.calls.add(item["call_id"])
                _add(self.turns, "assistant", [{
                    "type": "tool_use",
                    "id": sanitize_tool_id(item["call_id"]),
                    "name": item["name"],
                    "input": parse_arguments(item["arguments"]),
                }])
            elif kind == "function_call_output":
                if item["call_id"] not in self.calls:
                    raise ResponsesInvalid(
                        f"No tool call found for function call output with call_id {item['call_id']}.",
                        f"{path}.call_id",
                    )
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": sanitize_tool_id(item["call_id"])}
                output = item["output"]
                content = output if isinstance(output, str) else _blocks(output, f"{path}.output")
                if content:
                    result["content"] = content
                _add(self.turns, "user", [result])
            elif kind == "reasoning" and self.thinking:
                block = _thinking(item)
                if block is not None:
                    _add(self.turns, "assistant", [block])


# ---------------------------------------------------------------------------------------------
# Request-level settings → chat.completions terms


def _chat_tools(tools: Any, extra: Collection[str]) -> tuple[list[dict[str, Any]], bool]:
    """(chat function tools, whether any caller-handled extra tool is present)."""
    if tools is None:
        return [], False
    if not isinstance(tools, list):
        raise _bad_type("tools", "an array", tools)
    out: list[dict[str, Any]] = []
    has_extra = False
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad_type(path, "an object", tool)
        kind = tool.get("type")
        if kind == "function":
            function: dict[str, Any] = {"name": _string(tool, "name", path)}
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            parameters = tool.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise _bad_type(f"{path}.parameters", "an object", parameters)
            if parameters is not None:
                function["parameters"] = parameters
            if isinstance(tool.get("strict"), bool):
                function["strict"] = tool["strict"]
            out.append({"type": "function", "function": function})
        elif isinstance(kind, str) and kind in extra:
            has_extra = True
        elif kind is None:
            raise _missing(f"{path}.type")
        else:
            raise _unsupported(
                f"{path}.type",
                f"Tool type {_show(kind)} is not supported on this gateway; only 'function' tools are.",
                "unsupported_tool_type",
            )
    return out, has_extra


def _chat_tool_choice(choice: Any, extra: Collection[str]) -> Any:
    """The chat `tool_choice` for a Responses one; None when absent or left to the caller."""
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise _bad_value("tool_choice", choice, ("auto", "none", "required"))
        return choice
    if not isinstance(choice, dict):
        raise _bad_type("tool_choice", "a string or an object", choice)
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise _bad_value("tool_choice.mode", mode, ("auto", "required"))
        listed = choice.get("tools")
        if listed is None:
            raise _missing("tool_choice.tools")
        if not isinstance(listed, list):
            raise _bad_type("tool_choice.tools", "an array", listed)
        allowed: list[dict[str, Any]] = []
        for j, tool in enumerate(listed):
            path = f"tool_choice.tools[{j}]"
            if not isinstance(tool, dict):
                raise _bad_type(path, "an object", tool)
            if tool.get("type") == "function":
                allowed.append({"type": "function", "function": {"name": _string(tool, "name", path)}})
            elif tool.get("type") in extra:
                allowed.append({"type": "function", "function": {"name": PLACEHOLDER_TOOL}})
            else:
                raise _unsupported(f"{path}.type", f"Tool type {_show(tool.get('type'))} is not supported on "
                                   "this gateway; only 'function' tools are.", "unsupported_tool_type")
        return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}}
    if isinstance(kind, str) and kind in extra:
        return None  # a hosted tool the caller expands: its choice is the caller's too
    if kind is None:
        raise _missing("tool_choice.type")
    raise _unsupported("tool_choice.type", f"tool_choice type {_show(kind)} is not supported on this gateway.",
                       "unsupported_tool_type")


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _bad_type("text", "an object", text)
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _bad_type("text.format", "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if schema is None:
            raise _missing("text.format.schema")
        if not isinstance(schema, dict):
            raise _bad_type("text.format.schema", "an object", schema)
        return {"type": "json_schema", "json_schema": {"name": str(fmt.get("name") or "output"), "schema": schema}}
    raise _bad_value("text.format.type", kind, ("text", "json_schema", "json_object"))


def _chat_body(body: dict[str, Any], extra: Collection[str]) -> dict[str, Any]:
    """The request-level settings as a chat.completions body without messages (module doc)."""
    tools, has_extra = _chat_tools(body.get("tools"), extra)
    chat: dict[str, Any] = {"model": body["model"], "messages": []}
    if tools or has_extra:
        chat["tools"] = tools + ([{"type": "function", "function": {"name": PLACEHOLDER_TOOL}}] if has_extra else [])
    choice = _chat_tool_choice(body.get("tool_choice"), extra)
    if choice is not None:
        chat["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool):
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ResponsesInvalid("Invalid 'max_output_tokens': expected a positive integer.", "max_output_tokens")
        chat["max_completion_tokens"] = limit
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise _bad_type("reasoning", "an object", reasoning)
    effort = reasoning.get("effort") if reasoning else None
    if isinstance(effort, str):
        chat["reasoning_effort"] = "xhigh" if effort == "max" else effort
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _bad_type(name, "a number", value)
            chat[name] = value
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if isinstance(body.get("stream"), bool):
        chat["stream"] = body["stream"]
    return chat


# ---------------------------------------------------------------------------------------------
# The request


def responses_request_to_messages(
    body: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
    *,
    prefix_system: str | None = None,
    extra_tools: Collection[str] = (),
) -> dict[str, Any]:
    """An OpenAI Responses request → the canonical Anthropic Messages request.

    `history` holds the earlier items of the conversation (stored input items then output
    items of each previous turn, oldest first) and is prepended to `input`. `prefix_system` is
    a curated system prompt placed before `instructions`. Tool types in `extra_tools` are the
    caller's to expand: they are skipped here instead of refused, and the caller adds their
    Anthropic tools to the result. Raises `ResponsesInvalid` for anything malformed or
    unsupported; see the module doc for every mapping and what is dropped.
    """
    if not isinstance(body, dict):
        raise ResponsesInvalid("The request body must be a JSON object.", None)
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise _bad_type("model", "a non-empty string", model)
    if body.get("input") is None and not history:
        raise _missing("input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad_type("instructions", "a string", instructions)

    chat = _chat_body(body, extra_tools)
    items = normalise_items(history, "history") if history else []
    current = normalise_items(body["input"], "input") if body.get("input") is not None else []
    settings, has_tools = _settings(chat)
    conversation, messages = _conversation(items, current, "thinking" in settings, has_tools)
    if "thinking" in settings and _unsigned_tool_loop(messages):
        # Anthropic refuses thinking in a tool-use loop whose calls came without their thinking
        # block (history from a turn without thinking, or another provider's reasoning): answer
        # this turn without thinking rather than fail it.
        chat.pop("reasoning_effort", None)
        settings, has_tools = _settings(chat)
        conversation, messages = _conversation(items, current, False, has_tools)

    system: list[dict[str, Any]] = []
    if prefix_system:
        system.append({"type": "text", "text": prefix_system})
    if instructions:
        system.append({"type": "text", "text": instructions})
    system.extend(conversation.system)
    system.extend(settings.pop("system", ()))  # the chat translator's JSON-mode instruction, if any
    settings.pop("messages", None)
    out: dict[str, Any] = {"model": model}
    if system:
        out["system"] = system
    out["messages"] = messages
    out.update(settings)
    return out


def _settings(chat: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(Anthropic request settings from the chat translator, whether tool blocks may be sent):
    the placeholder for the caller's extra tools counts as a tool, then is removed."""
    settings = chat_request_to_messages(chat)
    has_tools = bool(settings.get("tools"))
    tools = [t for t in settings.pop("tools", ()) if t.get("name") != PLACEHOLDER_TOOL]
    if tools:
        settings["tools"] = tools
    return settings, has_tools


def _conversation(
    history: list[dict[str, Any]], current: list[dict[str, Any]], thinking: bool, has_tools: bool
) -> tuple[_Conversation, list[dict[str, Any]]]:
    """The conversation's system blocks and finished Anthropic messages (module doc)."""
    conversation = _Conversation(thinking)
    conversation.add(history, "history")
    conversation.add(current, "input")
    turns = conversation.turns
    if has_tools:
        turns = _pair_tool_results(turns)
    else:
        _tools_to_text(turns)
    messages = _finish_turns(turns)
    if not messages:
        raise ResponsesInvalid("Invalid 'input': it holds no user, assistant or tool content to answer.", "input")
    return conversation, messages


def _unsigned_tool_loop(messages: list[dict[str, Any]]) -> bool:
    """Whether the last turn answers tool calls made by an assistant turn with no thinking block
    first — the shape Anthropic refuses when thinking is on."""
    if len(messages) < 2 or messages[-1]["role"] != "user" or messages[-2]["role"] != "assistant":
        return False
    results = messages[-1]["content"]
    if not results or results[0].get("type") != "tool_result":
        return False
    first = messages[-2]["content"][0] if messages[-2]["content"] else {}
    return first.get("type") not in ("thinking", "redacted_thinking")
