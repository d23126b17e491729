"""Validation and error envelope of the OpenAI Chat Completions dialect. Pure, no I/O.

Like the Messages validator, this checks only what the contract says the gateway checks
(wire-contract §1.5: `model` and a non-empty `messages`; DECISIONS.md 14 and 16) and leaves
everything else to the translator and the upstream, so a field a newer OpenAI API adds is not
refused here. Messages are worded the way OpenAI words them (`Missing required parameter:
'model'.`), and `param` names the offending field as OpenAI's `error.param` does, so stock SDK
code that inspects `err.param` keeps working.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.wire.refusal import Refusal

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Our own extension block: accepted only on /v1/responses (DECISIONS.md 16).
EXTENSION_FIELD = "tollway"


class ChatInvalid(Refusal, ValueError):
    """A chat.completions request to refuse with 400 `invalid_request_error`.

    `param` is the OpenAI-style path of the field at fault (`messages[2].role`), or None.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(400, message, "invalid_request_error", code="invalid_body", param=param)


def validate_chat(body: Any) -> dict[str, Any]:
    """Check a `POST /v1/chat/completions` body; return it typed as a dict.

    Checked: `model` is a non-empty string; `messages` is a non-empty list of objects each
    with a role in system|developer|user|assistant|tool|function; `stream`, if present, is a
    boolean; the `tollway` extension block is absent (it belongs to /v1/responses only).
    """
    if not isinstance(body, dict):
        raise ChatInvalid("The request body must be a JSON object.", None)
    if EXTENSION_FIELD in body:
        raise ChatInvalid(
            f"Unrecognized request argument supplied: {EXTENSION_FIELD} "
            "(extension fields are accepted only on /v1/responses)",
            EXTENSION_FIELD,
        )
    model = body.get("model")
    if model is None:
        raise ChatInvalid("Missing required parameter: 'model'.", "model")
    if not isinstance(model, str) or not model:
        raise ChatInvalid("Invalid type for 'model': expected a non-empty string.", "model")
    messages = body.get("messages")
    if messages is None:
        raise ChatInvalid("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise ChatInvalid("Invalid type for 'messages': expected an array of objects.", "messages")
    if not messages:
        raise ChatInvalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
        )
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ChatInvalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        role = msg.get("role")
        if role is None:
            raise ChatInvalid(f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role")
        if role not in ROLES:
            raise ChatInvalid(
                f"Invalid value: {_show(role)}. Supported values are: "
                "'system', 'developer', 'user', 'assistant', 'tool', and 'function'.",
                f"messages[{i}].role",
            )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ChatInvalid("Invalid type for 'stream': expected a boolean.", "stream")
    return body


def _show(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return "'" + (text[:40] + "…" if len(text) > 40 else text) + "'"


def openai_error(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    """`{"error": {"message", "type", "code", "param"}}` — OpenAI's envelope (DECISIONS.md 14).

    All four keys are always present (null when unknown), as OpenAI sends them; openai-python
    reads `body["error"]` and exposes each as an attribute of the raised exception.
    """
    return orjson.dumps({"error": {"message": message, "type": type, "code": code, "param": param}})
