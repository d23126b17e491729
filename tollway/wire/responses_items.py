"""Responses request validation: the input items (`input`, a conversation's `items`) checked
and normalised to one shape, worded as OpenAI words its errors, with `param` the path at fault.
Pure: no I/O. The translation of normalised items to Anthropic turns is in
wire/responses_to_anthropic.py; the request-level parameters the surface checks are in
wire/responses_schema.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any

import orjson

from tollway.wire.ids import item_id
from tollway.wire.refusal import Refusal

ROLES = ("user", "assistant", "system", "developer")
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


class ResponsesInvalid(Refusal, ValueError):
    """A Responses request to refuse with 400 `invalid_request_error`.

    `param` is the OpenAI-style path of the field at fault (`input[2].call_id`) or None; `code`
    is `invalid_body`, `unsupported_parameter` or `unsupported_tool_type` (wire-contract §1.6).
    """

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_body") -> None:
        super().__init__(400, message, "invalid_request_error", code=code, param=param)


# ---------------------------------------------------------------------------------------------
# Validation helpers (OpenAI's wording)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return "'" + (text[:40] + "…" if len(text) > 40 else text) + "'"


def _missing(path: str) -> ResponsesInvalid:
    return ResponsesInvalid(f"Missing required parameter: '{path}'.", path)


def _bad_type(path: str, expected: str, value: Any) -> ResponsesInvalid:
    return ResponsesInvalid(
        f"Invalid type for '{path}': expected {expected}, but got {_kind(value)} instead.", path
    )


def _bad_value(path: str, value: Any, supported: Collection[str]) -> ResponsesInvalid:
    names = [f"'{s}'" for s in supported]
    listed = ", ".join(names[:-1]) + f", and {names[-1]}" if len(names) > 2 else " and ".join(names)
    return ResponsesInvalid(f"Invalid value: {_show(value)}. Supported values are: {listed}.", path)


def _unsupported(path: str, message: str, code: str = "unsupported_parameter") -> ResponsesInvalid:
    return ResponsesInvalid(message, path, code)


def _string(obj: dict[str, Any], key: str, path: str, *, empty: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        raise _missing(f"{path}.{key}")
    if not isinstance(value, str):
        raise _bad_type(f"{path}.{key}", "a string", value)
    if not value and not empty:
        raise ResponsesInvalid(f"Invalid '{path}.{key}': empty string.", f"{path}.{key}")
    return value


# ---------------------------------------------------------------------------------------------
# Items: validation and normalisation


def _breakpoint(part: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(part.get("prompt_cache_breakpoint"), dict):
        out["prompt_cache_breakpoint"] = part["prompt_cache_breakpoint"]
    return out


def _image(part: dict[str, Any], path: str) -> dict[str, Any]:
    if part.get("file_id") and not part.get("image_url"):
        raise _unsupported(
            f"{path}.file_id",
            "File references ('file_id') are not supported on this gateway; send the image as "
            "'image_url' (a data: URL or an http(s) URL).",
        )
    url = part.get("image_url")
    if url is None:
        raise _missing(f"{path}.image_url")
    if not isinstance(url, str):
        raise _bad_type(f"{path}.image_url", "a string", url)
    if not (url.startswith(("http://", "https://")) or (url.startswith("data:") and ";base64," in url)):
        raise ResponsesInvalid(
            f"Invalid '{path}.image_url': expected a base64 data: URL or an http(s) URL.", f"{path}.image_url"
        )
    detail = part.get("detail") if part.get("detail") in ("low", "high", "auto", "original") else "auto"
    return _breakpoint(part, {"type": "input_image", "image_url": url, "detail": detail})


def _file(part: dict[str, Any], path: str) -> dict[str, Any]:
    if part.get("file_id") and not (part.get("file_data") or part.get("file_url")):
        raise _unsupported(
            f"{path}.file_id",
            "File references ('file_id') are not supported on this gateway; send the file as "
            "'file_data' (base64) or 'file_url'.",
        )
    out: dict[str, Any] = {"type": "input_file"}
    for key in ("file_data", "file_url"):
        value = part.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad_type(f"{path}.{key}", "a string", value)
        if value:
            out[key] = value
            break
    else:
        raise _missing(f"{path}.file_data")
    if isinstance(part.get("filename"), str) and part["filename"]:
        out["filename"] = part["filename"]
    return _breakpoint(part, out)


def _part(part: Any, path: str, role: str) -> dict[str, Any]:
    """One content part, checked and normalised. `role` is the message role, or `tool` for the
    parts of a function-call output."""
    if not isinstance(part, dict):
        raise _bad_type(path, "an object", part)
    kind = part.get("type")
    if kind is None:
        raise _missing(f"{path}.type")
    if kind in ("input_text", "output_text"):
        text = _string(part, "text", path, empty=True)
        if role == "assistant":
            return {"type": "output_text", "text": text, "annotations": []}
        return _breakpoint(part, {"type": "input_text", "text": text})
    if kind == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": _string(part, "refusal", path, empty=True)}
    if kind in ("input_image", "input_file"):
        if role not in ("user", "tool"):
            raise ResponsesInvalid(
                f"Invalid '{path}.type': {kind} parts are accepted only in user messages and "
                "function call outputs.",
                f"{path}.type",
            )
        return _image(part, path) if kind == "input_image" else _file(part, path)
    if kind == "input_audio":
        raise _unsupported(f"{path}.type", "Audio input ('input_audio') is not supported on this gateway.")
    supported = ("output_text", "refusal") if role == "assistant" else ("input_text", "input_image", "input_file")
    raise _bad_value(f"{path}.type", kind, supported)


def _parts(content: Any, path: str, role: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_part({"type": "input_text", "text": content}, path, role)]
    if not isinstance(content, list):
        raise _bad_type(path, "a string or an array of content parts", content)
    return [_part(p, f"{path}[{j}]", role) for j, p in enumerate(content)]


def _item(raw: Any, path: str) -> dict[str, Any]:
    """One input item, checked and normalised to the shape `input_items` stores (without id)."""
    if not isinstance(raw, dict):
        raise _bad_type(path, "an object", raw)
    kind = raw.get("type")
    if kind is None and "role" in raw:
        kind = "message"  # EasyInputMessage: `type` is optional
    if kind == "message":
        role = raw.get("role")
        if role is None:
            raise _missing(f"{path}.role")
        if role not in ROLES:
            raise _bad_value(f"{path}.role", role, ROLES)
        if raw.get("content") is None:
            raise _missing(f"{path}.content")
        return {"type": "message", "role": role, "content": _parts(raw["content"], f"{path}.content", role)}
    if kind == "function_call":
        call_id = _string(raw, "call_id", path)
        name = _string(raw, "name", path)
        arguments = raw.get("arguments")
        if arguments is None:
            raise _missing(f"{path}.arguments")
        if not isinstance(arguments, str):
            raise _bad_type(f"{path}.arguments", "a string", arguments)
        return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
    if kind == "function_call_output":
        output = raw.get("output")
        if output is None:
            raise _missing(f"{path}.output")
        if not isinstance(output, str):
            if not isinstance(output, list):
                raise _bad_type(f"{path}.output", "a string or an array of content parts", output)
            output = [_part(p, f"{path}.output[{j}]", "tool") for j, p in enumerate(output)]
        return {"type": "function_call_output", "call_id": _string(raw, "call_id", path), "output": output}
    if kind == "reasoning":
        summary = raw.get("summary")
        if summary is None:
            raise _missing(f"{path}.summary")
        if not isinstance(summary, list):
            raise _bad_type(f"{path}.summary", "an array", summary)
        parts = []
        for j, part in enumerate(summary):
            if not isinstance(part, dict):
                raise _bad_type(f"{path}.summary[{j}]", "an object", part)
            parts.append({"type": "summary_text", "text": _string(part, "text", f"{path}.summary[{j}]", empty=True)})
        encrypted = raw.get("encrypted_content")
        if encrypted is not None and not isinstance(encrypted, str):
            raise _bad_type(f"{path}.encrypted_content", "a string", encrypted)
        return {"type": "reasoning", "summary": parts, "encrypted_content": encrypted}
    if kind == "item_reference":
        raise _unsupported(
            f"{path}.type",
            "Item references are not supported on this gateway; send the item itself, or continue "
            "a stored response with 'previous_response_id' or 'conversation'.",
        )
    if kind is None:
        raise _missing(f"{path}.type")
    raise _bad_value(f"{path}.type", kind, ITEM_TYPES)


def normalise_items(value: Any, where: str = "input") -> list[dict[str, Any]]:
    """`input` (a string or a list of items) checked and normalised; raises `ResponsesInvalid`
    naming `where[i]…` for the first fault. A string is one user message."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise _bad_type(where, "a string or an array of input items", value)
    return [_item(raw, f"{where}[{i}]") for i, raw in enumerate(value)]


def input_items(body: dict[str, Any], *, response_id: str | None = None) -> list[dict[str, Any]]:
    """The request's input as stored items with ids, in the shapes openai-python's `ResponseItem`
    parses — for `GET /v1/responses/{id}/input_items` and conversation storage.

    Ids are always assigned here, never taken from the client (a client echoing an output item
    back would otherwise store two items with one id): derived from `response_id` and the
    position when given (`anthropic_to_responses.item_id`), random otherwise. Assistant messages
    take the output-message shape (`output_text` parts), as OpenAI lists them.
    """
    items = normalise_items(body.get("input"), "input")
    out: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        prefix = ID_PREFIXES[item["type"]]
        identifier = item_id(prefix, response_id, f"in{n}") if response_id else f"{prefix}_{secrets.token_hex(24)}"
        stored: dict[str, Any] = {"id": identifier, **item}
        if item["type"] != "reasoning":
            stored["status"] = "completed"
        out.append(stored)
    return out
