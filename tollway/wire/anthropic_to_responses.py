"""Anthropic Messages → OpenAI Responses. Pure functions on plain dicts, no I/O.

The answer half of `/v1/responses` (ARCHITECTURE.md §1): the pipeline produced a canonical
Anthropic Message or event stream, and the client speaks the Responses dialect. Shapes follow
openai-python's own types (`types/responses/response.py`, `response_usage.py`,
`response_output_item.py`, `response_output_message.py`, `response_function_tool_call.py`,
`response_reasoning_item.py`, `response_stream_event.py` and the `*_event.py` files); the tests
parse everything produced here with those models, and run streams through the SDK's own stream
accumulator. Decisions made here, each with its reason:

* **Status is OpenAI's, not the documented product's** (wire-contract §1.6, §1.7): a turn that
  ends in tool calls is `completed` with `function_call` output items, because OpenAI's
  `incomplete_details.reason` has no `tool_use` value and stock clients (openai-python, codex)
  run tools from `completed` responses. `max_tokens` (and `model_context_window_exceeded`) →
  `incomplete` with reason `max_output_tokens`; `refusal` → `incomplete` with `content_filter`,
  OpenAI's word for a safety stop; everything else → `completed`. On an incomplete response the
  last output item is `incomplete` too, as OpenAI marks the item the limit cut.
* **Output items**: each run of consecutive `text` blocks is one `message` item (one
  `output_text` part per block, `annotations: []`: Anthropic citations carry no character
  offsets to build OpenAI annotations from); each `tool_use` is a `function_call` item
  (`call_id` is the Anthropic tool id, already valid both ways; `arguments` the input as a JSON
  string); each `thinking` block is a `reasoning` item whose single `summary_text` part holds
  the thinking text (Claude 4 returns summarised thinking, and `summary` is what clients such as
  codex display) and whose `encrypted_content` carries the block's signature
  (`tollway.thinking.v1:<signature>`); `redacted_thinking` is a `reasoning` item with an empty
  summary and `tollway.redacted.v1:<data>`. When a client sends those items back (stateless
  codex does; stored history does), `responses_to_anthropic` rebuilds the exact blocks, which
  Anthropic requires in a tool-use loop with thinking on. `encrypted_content` is always filled,
  not only with `include: ["reasoning.encrypted_content"]`: stored conversations need it, and
  the signature is no secret. Server-tool blocks (web search and the like) have no function-call
  equivalent and are left out, in the stream too.
* **Item ids** are derived, not random: `msg_`/`fc_`/`rs_` + 48 hex digits of
  SHA-256(response id, position). The stream and the non-stream path give the same ids, and
  stored items can be found again from the response id alone.
* **Usage**: OpenAI's `input_tokens` counts every input token, so it is Anthropic's input plus
  cache reads plus cache writes; `cached_tokens` = cache reads, `cache_write_tokens` = cache
  writes (a required field in current openai-python); `reasoning_tokens` is 0 because Anthropic
  does not report thinking tokens apart from output tokens (they are inside `output_tokens`).
* **Echoed settings**: `instructions`, `tools`, `tool_choice`, `text`, `reasoning`,
  `max_output_tokens`, `metadata`, … come from the client's request as it sent them (the
  curated system prompt a caller puts before `instructions` is ours and is not echoed);
  unset ones get OpenAI's defaults (`temperature`/`top_p` 1.0, `tool_choice` auto,
  `truncation` disabled, `parallel_tool_calls` true).
* **Streams** (`MessagesStreamToResponses`): every data object carries `type` (its event name)
  and a `sequence_number` rising from 0; an item's events share `output_index` and `item_id`.
  An item is closed (`response.output_item.done`) when the next item opens or the response
  ends, so the item the stop reason cut can still be marked `incomplete`. A tool call whose
  input streamed no fragment gets a `{}` delta, so the concatenated deltas always parse.
  An Anthropic `error` event → an `error` event (`code`, `message`, `param`) then
  `response.failed` whose `response.error.code` is one of OpenAI's codes
  (`rate_limit_exceeded`, `invalid_prompt`, else `server_error`); no `[DONE]`, as OpenAI sends
  none on this API.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.wire.ids import REDACTED_PREFIX, THINKING_PREFIX, item_id

# Anthropic stop_reason → OpenAI incomplete_details.reason; anything else is `completed`.
INCOMPLETE_REASONS: dict[str, str] = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}
# Anthropic error type → OpenAI ResponseError.code (a closed enum in openai-python).
ERROR_CODES: dict[str, str] = {
    "rate_limit_error": "rate_limit_exceeded",
    "invalid_request_error": "invalid_prompt",
}
STREAM_CUT = "The upstream stream ended before the response was complete."


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def response_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage → OpenAI Responses usage (module doc)."""
    u = usage if isinstance(usage, dict) else {}
    read = _count(u.get("cache_read_input_tokens"))
    write = _count(u.get("cache_creation_input_tokens"))
    total_input = _count(u.get("input_tokens")) + read + write
    output = _count(u.get("output_tokens"))
    return {
        "input_tokens": total_input,
        "input_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": total_input + output,
    }


def response_status(stop_reason: Any) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) for an Anthropic stop_reason (module doc)."""
    reason = INCOMPLETE_REASONS.get(str(stop_reason))
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def error_code_for(error_type: Any) -> str:
    """An OpenAI `ResponseError.code` for an Anthropic error type."""
    return ERROR_CODES.get(str(error_type), "server_error")


def response_skeleton(
    *,
    response_id: str,
    model: str,
    created_at: int,
    request: dict[str, Any],
    previous_response_id: str | None,
    conversation_id: str | None,
    store: bool,
) -> dict[str, Any]:
    """The Response object before any output: `status: in_progress`, empty `output`, no usage.

    `request` is the client's Responses request body; the settings it carries are echoed as
    OpenAI echoes them (module doc). `message_to_response` and `MessagesStreamToResponses` both
    start from this, so a streamed and a non-streamed answer describe the request identically.
    """
    req = request if isinstance(request, dict) else {}

    def given(name: str, kind: str, default: Any) -> Any:
        value = req.get(name)
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
        }[kind]
        return value if ok else default

    reasoning = req.get("reasoning")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": given("instructions", "str", None),
        "max_output_tokens": given("max_output_tokens", "int", None),
        "max_tool_calls": given("max_tool_calls", "int", None),
        "model": model,
        "output": [],
        "parallel_tool_calls": given("parallel_tool_calls", "bool", True),
        "previous_response_id": previous_response_id,
        "conversation": {"id": conversation_id} if conversation_id else None,
        "prompt_cache_key": given("prompt_cache_key", "str", None),
        "reasoning": {
            "effort": reasoning.get("effort") if isinstance(reasoning, dict) else None,
            "summary": reasoning.get("summary") if isinstance(reasoning, dict) else None,
        },
        "safety_identifier": given("safety_identifier", "str", None),
        "service_tier": "default",
        "store": store,
        "temperature": given("temperature", "number", 1.0),
        "text": req["text"] if isinstance(req.get("text"), dict) else {"format": {"type": "text"}},
        "tool_choice": req["tool_choice"] if isinstance(req.get("tool_choice"), str | dict) else "auto",
        "tools": [t for t in req["tools"] if isinstance(t, dict)] if isinstance(req.get("tools"), list) else [],
        "top_logprobs": given("top_logprobs", "int", 0),
        "top_p": given("top_p", "number", 1.0),
        "truncation": req["truncation"] if req.get("truncation") in ("auto", "disabled") else "disabled",
        "usage": None,
        "user": given("user", "str", None),
        "metadata": req["metadata"] if isinstance(req.get("metadata"), dict) else {},
    }


# ---------------------------------------------------------------------------------------------
# Output items


def _message_item(response_id: str, index: int) -> dict[str, Any]:
    return {
        "id": item_id("msg", response_id, f"out{index}"),
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning_item(response_id: str, index: int) -> dict[str, Any]:
    return {
        "id": item_id("rs", response_id, f"out{index}"),
        "type": "reasoning",
        "status": "in_progress",
        "summary": [],
    }


def _call_item(response_id: str, index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item_id("fc", response_id, f"out{index}"),
        "type": "function_call",
        "status": "in_progress",
        "call_id": str(block.get("id") or ""),
        "name": str(block.get("name") or ""),
        "arguments": "",
    }


def response_output_items(
    message: dict[str, Any], *, response_id: str | None = None, status: str = "completed"
) -> list[dict[str, Any]]:
    """The Responses output items for an Anthropic Message's content (module doc).

    Ids derive from `response_id` (the message id when not given). With `status="incomplete"`
    the last item is marked incomplete; every other item is completed.
    """
    base = response_id or str(message.get("id") or "")
    items: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None  # the message item a run of text blocks goes into
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            if current is None:
                current = _message_item(base, len(items))
                items.append(current)
            current["content"].append(_text_part(str(block.get("text") or "")))
            continue
        if kind == "thinking":
            item = _reasoning_item(base, len(items))
            item["summary"] = [{"type": "summary_text", "text": str(block.get("thinking") or "")}]
            item["encrypted_content"] = THINKING_PREFIX + str(block.get("signature") or "")
        elif kind == "redacted_thinking":
            item = _reasoning_item(base, len(items))
            item["encrypted_content"] = REDACTED_PREFIX + str(block.get("data") or "")
        elif kind == "tool_use":
            item = _call_item(base, len(items), block)
            item["arguments"] = orjson.dumps(block.get("input") or {}).decode()
        else:
            continue  # server-tool blocks: no Responses equivalent (module doc); a text run goes on
        current = None
        items.append(item)
    for item in items:
        item["status"] = "completed"
    if status == "incomplete" and items:
        items[-1]["status"] = "incomplete"
    return items


def message_to_response(
    message: dict[str, Any],
    *,
    response_id: str,
    model: str,
    created_at: int,
    request: dict[str, Any],
    previous_response_id: str | None,
    conversation_id: str | None,
    store: bool,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """An Anthropic Message → an OpenAI Response object, as openai-python's `Response` parses it.

    `model` is the id the client asked for; `request` is its Responses request body (echoed
    settings, module doc); `completed_at` is reported for completed responses when given.
    """
    status, details = response_status(message.get("stop_reason"))
    response = response_skeleton(
        response_id=response_id,
        model=model,
        created_at=created_at,
        request=request,
        previous_response_id=previous_response_id,
        conversation_id=conversation_id,
        store=store,
    )
    response["status"] = status
    response["completed_at"] = completed_at if status == "completed" else None
    response["incomplete_details"] = details
    response["output"] = response_output_items(message, response_id=response_id, status=status)
    response["usage"] = response_usage(message.get("usage"))
    return response


# ---------------------------------------------------------------------------------------------
# Stream: Anthropic events → Responses events


def frame(name: str, data: dict[str, Any]) -> bytes:
    """One Responses SSE event: `event: <name>`, compact JSON data, blank-line terminated."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _snapshot(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of an item that later deltas cannot change (events handed out stay as sent)."""
    out = dict(item)
    for key in ("content", "summary"):
        if isinstance(out.get(key), list):
            out[key] = [dict(part) for part in out[key]]
    return out


class _Block:
    """One Anthropic content block being streamed, and where it lands in the Responses output."""

    __slots__ = ("content_index", "item", "kind", "output_index", "part", "signature", "stopped")

    def __init__(self, kind: str, item: dict[str, Any], output_index: int) -> None:
        self.kind = kind  # text | thinking | redacted_thinking | tool_use
        self.item = item
        self.output_index = output_index
        self.content_index = 0
        self.part: dict[str, Any] = {}
        self.signature = ""
        self.stopped = False


class MessagesStreamToResponses:
    """Anthropic stream events → OpenAI Responses stream events, one event at a time.

    Built with the response skeleton (`response_skeleton`); `feed` returns `(event name, data)`
    pairs ready for `frame`. The order follows OpenAI's stream (openai-python's
    `ResponseStreamState` accumulates it, the tests check): `response.created`,
    `response.in_progress`; per item `response.output_item.added` … `response.output_item.done`
    with, for a message, `response.content_part.added`, `response.output_text.delta`…,
    `response.output_text.done`, `response.content_part.done` per text block; for a function
    call `response.function_call_arguments.delta`… and `.done`; for reasoning the
    `response.reasoning_summary_part.*` / `response.reasoning_summary_text.*` events; then
    `response.completed` or `response.incomplete` carrying the whole response with usage.
    An Anthropic `error` event (or `fail`) ends it with `error` and `response.failed`; `finish`
    ends a stream that stopped without `message_stop` (module doc).
    """

    __slots__ = ("_blocks", "_done", "_items", "_open", "_response", "_seq", "_skeleton", "_started",
                 "_stop_reason", "_usage")

    def __init__(self, response_skeleton: dict[str, Any]) -> None:
        self._skeleton = response_skeleton
        self._seq = 0
        self._started = False
        self._done = False
        self._items: list[dict[str, Any]] = []  # every output item so far, in output order
        self._open: dict[str, Any] | None = None  # the last item, until it is closed
        self._blocks: dict[Any, _Block | None] = {}  # Anthropic block index → block (None: left out)
        self._usage: dict[str, Any] = {}
        self._stop_reason: Any = None
        self._response: dict[str, Any] | None = None

    @property
    def response(self) -> dict[str, Any] | None:
        """The final Response object once the stream has ended (completed, incomplete or failed)."""
        return self._response

    # -- emission ----------------------------------------------------------------------------

    def _emit(self, out: list[tuple[str, dict[str, Any]]], name: str, data: dict[str, Any]) -> None:
        out.append((name, {"type": name, **data, "sequence_number": self._seq}))
        self._seq += 1

    def _whole(self, status: str) -> dict[str, Any]:
        return {**self._skeleton, "status": status, "output": [_snapshot(i) for i in self._items]}

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        """`response.created` and `response.in_progress`, once; `feed` calls it on the first event,
        a surface may call it earlier to flush the stream's head before the upstream answers."""
        out: list[tuple[str, dict[str, Any]]] = []
        if not self._started:
            self._started = True
            self._emit(out, "response.created", {"response": self._whole("in_progress")})
            self._emit(out, "response.in_progress", {"response": self._whole("in_progress")})
        return out

    # -- items -------------------------------------------------------------------------------

    def _close_item(self, out: list[tuple[str, dict[str, Any]]], status: str = "completed") -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        item["status"] = status
        self._emit(out, "response.output_item.done", {"output_index": len(self._items) - 1, "item": _snapshot(item)})

    def _open_item(self, item: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> int:
        self._close_item(out)
        self._items.append(item)
        self._open = item
        index = len(self._items) - 1
        self._emit(out, "response.output_item.added", {"output_index": index, "item": _snapshot(item)})
        return index

    def _block_start(self, event: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        block = event.get("content_block")
        block = block if isinstance(block, dict) else {}
        kind = block.get("type")
        rid = self._skeleton["id"]
        position = len(self._items)
        state: _Block | None = None
        if kind == "text":
            item = self._open
            if item is None or item.get("type") != "message":
                self._open_item(_message_item(rid, position), out)
                item = self._open
            assert item is not None
            state = _Block("text", item, len(self._items) - 1)
            state.content_index = len(item["content"])
            state.part = _text_part("")
            item["content"].append(state.part)
            self._emit(out, "response.content_part.added", {
                "item_id": item["id"], "output_index": state.output_index,
                "content_index": state.content_index, "part": dict(state.part),
            })
            if block.get("text"):
                self._text_delta(state, str(block["text"]), out)
        elif kind == "thinking":
            item = _reasoning_item(rid, position)
            state = _Block("thinking", item, self._open_item(item, out))
            state.part = {"type": "summary_text", "text": ""}
            item["summary"].append(state.part)
            self._emit(out, "response.reasoning_summary_part.added", {
                "item_id": item["id"], "output_index": state.output_index, "summary_index": 0,
                "part": dict(state.part),
            })
            if block.get("thinking"):
                self._thinking_delta(state, str(block["thinking"]), out)
            state.signature = str(block.get("signature") or "")
        elif kind == "redacted_thinking":
            item = _reasoning_item(rid, position)
            item["encrypted_content"] = REDACTED_PREFIX + str(block.get("data") or "")
            state = _Block("redacted_thinking", item, self._open_item(item, out))
        elif kind == "tool_use":
            item = _call_item(rid, position, block)
            state = _Block("tool_use", item, self._open_item(item, out))
            initial = block.get("input")
            if isinstance(initial, dict) and initial:
                self._arguments_delta(state, orjson.dumps(initial).decode(), out)
        self._blocks[event.get("index")] = state  # None: a block left out (module doc)

    def _text_delta(self, state: _Block, text: str, out: list[tuple[str, dict[str, Any]]]) -> None:
        state.part["text"] += text
        self._emit(out, "response.output_text.delta", {
            "item_id": state.item["id"], "output_index": state.output_index,
            "content_index": state.content_index, "delta": text, "logprobs": [],
        })

    def _thinking_delta(self, state: _Block, text: str, out: list[tuple[str, dict[str, Any]]]) -> None:
        state.part["text"] += text
        self._emit(out, "response.reasoning_summary_text.delta", {
            "item_id": state.item["id"], "output_index": state.output_index, "summary_index": 0, "delta": text,
        })

    def _arguments_delta(self, state: _Block, fragment: str, out: list[tuple[str, dict[str, Any]]]) -> None:
        state.item["arguments"] += fragment
        self._emit(out, "response.function_call_arguments.delta", {
            "item_id": state.item["id"], "output_index": state.output_index, "delta": fragment,
        })

    def _block_delta(self, event: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        state = self._blocks.get(event.get("index"))
        delta = event.get("delta")
        if state is None or state.stopped or not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta" and state.kind == "text" and delta.get("text"):
            self._text_delta(state, str(delta["text"]), out)
        elif kind == "thinking_delta" and state.kind == "thinking" and delta.get("thinking"):
            self._thinking_delta(state, str(delta["thinking"]), out)
        elif kind == "signature_delta" and state.kind == "thinking":
            state.signature += str(delta.get("signature") or "")
        elif kind == "input_json_delta" and state.kind == "tool_use" and delta.get("partial_json"):
            self._arguments_delta(state, str(delta["partial_json"]), out)
        # citations_delta and kinds added later: nothing to say in this dialect

    def _block_stop(self, state: _Block | None, out: list[tuple[str, dict[str, Any]]]) -> None:
        if state is None or state.stopped:
            return
        state.stopped = True
        item = state.item
        common = {"item_id": item["id"], "output_index": state.output_index}
        if state.kind == "text":
            text = state.part["text"]
            self._emit(out, "response.output_text.done",
                       {**common, "content_index": state.content_index, "text": text, "logprobs": []})
            self._emit(out, "response.content_part.done",
                       {**common, "content_index": state.content_index, "part": dict(state.part)})
        elif state.kind == "thinking":
            text = state.part["text"]
            item["encrypted_content"] = THINKING_PREFIX + state.signature
            self._emit(out, "response.reasoning_summary_text.done", {**common, "summary_index": 0, "text": text})
            self._emit(out, "response.reasoning_summary_part.done",
                       {**common, "summary_index": 0, "part": dict(state.part)})
        elif state.kind == "tool_use":
            if not item["arguments"]:
                self._arguments_delta(state, "{}", out)  # so the concatenated deltas parse (module doc)
            self._emit(out, "response.function_call_arguments.done",
                       {**common, "name": item["name"], "arguments": item["arguments"]})

    # -- public API --------------------------------------------------------------------------

    def feed(self, event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Responses events for one Anthropic event (possibly none)."""
        if self._done or not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "error":
            error = event.get("error")
            error = error if isinstance(error, dict) else {}
            return self.fail(str(error.get("type") or "api_error"), str(error.get("message") or "stream error"))
        out = self.start()
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "content_block_start":
            self._block_start(event, out)
        elif kind == "content_block_delta":
            self._block_delta(event, out)
        elif kind == "content_block_stop":
            self._block_stop(self._blocks.get(event.get("index")), out)
        elif kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict):  # cumulative: later values overwrite
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            out.extend(self._complete())
        # ping and event types added later: nothing to say in this dialect
        return out

    def _complete(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for state in self._blocks.values():
            self._block_stop(state, out)
        status, details = response_status(self._stop_reason)
        self._close_item(out, status)
        response = self._whole(status)
        response["incomplete_details"] = details
        response["usage"] = response_usage(self._usage)
        self._response = response
        self._done = True
        self._emit(out, "response.completed" if status == "completed" else "response.incomplete",
                   {"response": response})
        return out

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """The Anthropic stream ended without `message_stop`. With the stop reason already known
        (`message_delta` came) the response ends normally; otherwise the answer is cut short,
        which is a failure: `error` and `response.failed`."""
        if self._done:
            return []
        if self._stop_reason is not None:
            return self.start() + self._complete()
        return self.fail("api_error", STREAM_CUT)

    def fail(self, error_type: str, message: str) -> list[tuple[str, dict[str, Any]]]:
        """The upstream failed mid-stream: an `error` event, then `response.failed` carrying the
        output so far (items still open marked incomplete) and the usage known."""
        if self._done:
            return []
        out = self.start()
        code = error_code_for(error_type)
        self._emit(out, "error", {"code": code, "message": message, "param": None})
        if self._open is not None:
            self._open["status"] = "incomplete"
            self._open = None
        response = self._whole("failed")
        response["error"] = {"code": code, "message": message}
        response["usage"] = response_usage(self._usage) if self._usage else None
        self._response = response
        self._done = True
        self._emit(out, "response.failed", {"response": response})
        return out
