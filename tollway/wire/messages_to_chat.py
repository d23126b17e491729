"""Anthropic Messages requests → OpenAI chat.completions requests, for an OpenAI-compatible
upstream (upstream/openai.py). Pure functions on plain dicts, no I/O. The answers' direction is
wire/anthropic_to_openai.py (to an OpenAI client) and wire/openai_to_anthropic.py (from an
OpenAI upstream); the module docstring of anthropic_to_openai.py lists the decisions.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.wire.ids import ToolNames

STOP_LIMIT = 4
NO_RESULT = "No result was provided for this tool call."



def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: input is read defensively."""
    return value if isinstance(value, dict) else {}


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
