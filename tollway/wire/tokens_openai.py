"""A local input-token count for OpenAI-compatible upstreams (`count_tokens`, DECISIONS.md 12).

OpenAI has no token-counting endpoint for Chat Completions, so the gateway counts itself, with
OpenAI's real tokenizer and OpenAI's published accounting of the chat format:

* **Tokenizer**: `bpe-openai` (Python bindings of the `bpe-openai` crate of GitHub's rust-gems).
  Its wheel ships `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o-series, gpt-oss) and `cl100k_base`
  (GPT-4, GPT-3.5) inside the package, so nothing is downloaded at run time (tiktoken fetches its
  vocabularies from a URL on first use). Checked when it was chosen: the vocabulary files in the
  wheel are byte-identical to tiktoken's (SHA-256 equal to the `expected_hash` in tiktoken 0.14's
  `openai_public.py`), and its counts equal tiktoken 0.14's on every one of 2,358 texts
  (3.4 M characters: this repository's code and docs, Claude Code's bundled JavaScript, CJK,
  Cyrillic, Arabic, emoji ZWJ sequences, combining marks, random Unicode; 1.13 M o200k tokens,
  0 differing). Special-token text such as `<|endoftext|>` in a prompt counts as plain text, as
  the API treats it.
* **Chat format** (the accounting in OpenAI's cookbook "How to count tokens with tiktoken"):
  3 tokens per message plus its role and content, 1 more per `name`, 3 to prime the reply; tool
  definitions per the cookbook's tools formula (per function 7 tokens with o200k / 10 with
  cl100k, `name:description`, 3 per property list, 3 + `key:type:description` per property,
  enum values at 3 + their text each, less 3 per enum, 12 once at the end). Measured against the
  prompt_tokens OpenAI's API reported for the cookbook's two examples: 124 (gpt-4o) and 129
  (gpt-4) for six named messages, 101 (gpt-4o) and 105 (gpt-4) for one tool and two messages —
  this module gives exactly those numbers (tests/test_openai_upstream.py).
* **Estimates beyond that** (OpenAI documents nothing more): an assistant tool call counts its
  function name and arguments plus 3; a nested parameter schema (objects, arrays, anyOf) adds the
  tokens of its compact JSON; an image counts 85 tokens at `detail: low`, else 765 (a 1024x1024
  image at high detail; the real count depends on the image size, which is not decoded here);
  a file part counts 1,600 like the Messages estimate. So requests with tools that nest, with
  tool-call history or images are estimates, close but not exact.

The tokenizer is loaded on first use (about 1 s and 130 MB for o200k_base), so a gateway that never
counts for an OpenAI model never pays for it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import orjson

O200K = "o200k_base"
CL100K = "cl100k_base"
ENCODINGS = (O200K, CL100K)

PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3
PER_TOOL_CALL = 3
IMAGE_LOW = 85
IMAGE_HIGH = 765
PER_FILE = 1600
# The cookbook's tool-definition constants; only the per-function one differs by encoding.
FUNCTION_INIT = {O200K: 7, CL100K: 10}
PROPERTIES_INIT = 3
PROPERTY_KEY = 3
ENUM_INIT = -3
ENUM_ITEM = 3
FUNCTIONS_END = 12

# Model-id prefixes of the cl100k_base generation; everything else (newer OpenAI models, and
# open-weight models served by vLLM/Ollama, whose own tokenizer we do not have) uses o200k_base.
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada")
_CL100K_EXACT = ("gpt-4", "gpt-4-32k")

_lock = threading.Lock()
_counters: dict[str, Callable[[str], int]] = {}


def encoding_for_model(model: str) -> str:
    """The encoding OpenAI uses for `model` (by id; an Azure deployment name may hide it, so the
    config can name the encoding instead)."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(("gpt-4o", "gpt-4.")):
        return O200K
    if name in _CL100K_EXACT or name.startswith(_CL100K_PREFIXES):
        return CL100K
    return O200K


def counter(encoding: str) -> Callable[[str], int]:
    """`count(text) -> tokens` for an encoding, loading the tokenizer once per process.

    Blocking (about 1 s the first time): call it off the event loop."""
    try:
        return _counters[encoding]
    except KeyError:
        pass
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    with _lock:
        if encoding not in _counters:
            # The Rust bindings directly: the package's tiktoken-style wrapper would also build
            # Python rank tables (tens of MB) that counting never uses.
            with warnings.catch_warnings():  # bpe-openai 0.1.4 reads its data with a deprecated importlib call
                warnings.simplefilter("ignore", DeprecationWarning)
                from bpe_openai import _bindings

                _counters[encoding] = _bindings.tokenizer_for_encoding(encoding).count
    return _counters[encoding]


def _content_tokens(content: Any, count: Callable[[str], int]) -> int:
    if isinstance(content, str):
        return count(content)
    total = 0
    for part in content if isinstance(content, list) else ():
        if isinstance(part, str):
            total += count(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind == "text":
                total += count(str(part.get("text") or ""))
            elif kind == "refusal":
                total += count(str(part.get("refusal") or ""))
            elif kind == "image_url":
                image = part.get("image_url")
                detail = image.get("detail") if isinstance(image, dict) else None
                total += IMAGE_LOW if detail == "low" else IMAGE_HIGH
            elif kind in ("file", "input_audio"):
                total += PER_FILE
    return total


def _message_tokens(msg: dict[str, Any], count: Callable[[str], int]) -> int:
    total = PER_MESSAGE + count(str(msg.get("role") or ""))
    total += _content_tokens(msg.get("content"), count)
    name = msg.get("name")
    if isinstance(name, str) and name:
        total += count(name) + PER_NAME
    for call in msg.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += PER_TOOL_CALL + count(str(function.get("name") or ""))
            total += count(str(function.get("arguments") or ""))
    legacy = msg.get("function_call")
    if isinstance(legacy, dict):
        total += PER_TOOL_CALL + count(str(legacy.get("name") or "")) + count(str(legacy.get("arguments") or ""))
    return total


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def _property_tokens(key: str, schema: Any, count: Callable[[str], int]) -> int:
    if not isinstance(schema, dict):
        return PROPERTY_KEY + count(key)
    kind = schema.get("type")
    kind_text = kind if isinstance(kind, str) else orjson.dumps(kind).decode() if kind is not None else ""
    total = PROPERTY_KEY
    enum = schema.get("enum")
    if isinstance(enum, list):
        total += ENUM_INIT
        for item in enum:
            total += ENUM_ITEM + count(item if isinstance(item, str) else orjson.dumps(item).decode())
    description = _strip_period(str(schema.get("description") or ""))
    total += count(f"{key}:{kind_text}:{description}")
    nested = {k: v for k, v in schema.items() if k in ("properties", "items", "anyOf", "oneOf", "allOf")}
    if nested:
        total += count(orjson.dumps(nested).decode())
    return total


def _tools_tokens(tools: Any, encoding: str, count: Callable[[str], int]) -> int:
    functions = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            function = tool.get("function", tool)  # `functions` entries are the function itself
            if isinstance(function, dict) and function.get("name"):
                functions.append(function)
    if not functions:
        return 0
    total = 0
    for function in functions:
        total += FUNCTION_INIT[encoding]
        description = _strip_period(str(function.get("description") or ""))
        total += count(f"{function['name']}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(properties, dict) and properties:
            total += PROPERTIES_INIT
            for key, schema in properties.items():
                total += _property_tokens(str(key), schema, count)
    return total + FUNCTIONS_END


def count_chat_tokens(chat: dict[str, Any], encoding: str) -> int:
    """Input tokens of a chat.completions request body: messages, then tool definitions (module
    doc). Blocking: the first call loads the tokenizer."""
    count = counter(encoding)
    total = REPLY_PRIMING
    for msg in chat.get("messages") or ():
        if isinstance(msg, dict):
            total += _message_tokens(msg, count)
    tools = chat.get("tools")
    if tools is None:
        tools = chat.get("functions")
    return total + _tools_tokens(tools, encoding, count)
