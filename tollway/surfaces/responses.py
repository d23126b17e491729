"""OpenAI Responses: `POST /v1/responses` (JSON and SSE), stored responses and conversations.

`POST /v1/responses` goes through the same pipeline as every model call (authenticate, authorize
the model, limits and budget, DLP, forward, meter, audit): the request is translated to the
canonical Messages request (`wire.responses_to_anthropic`, whose docstring holds every mapping
decision), and the canonical answer rendered back (`wire.anthropic_to_responses`). The state
routes (`GET`/`DELETE /v1/responses/{id}`, `…/input_items`, `/v1/conversations…`) authenticate
and are audited through the pipeline too, and never go upstream (surfaces/conversations.py).
This module is the Responses dialect; its parameter checks are in wire/responses_schema.py, the
hosted-tool loop in hosted/loop.py. Decisions:

* **Errors** are OpenAI envelopes with `request-id` and `x-request-id` (DECISIONS.md 14), 401
  included. A malformed request is 400 `invalid_request_error` with `param` the path at fault
  (`input[2].call_id`) and code `invalid_body`, `unsupported_parameter`,
  `unsupported_tool_type` or `mutually_exclusive_parameters` (`conversation` with
  `previous_response_id`). An id that is unknown, another owner's, deleted, or of a
  `store: false` response is 404 (code `previous_response_not_found`, `conversation_not_found`
  or `not_found`): a foreign id reads exactly like an unknown one.
* **State** (DECISIONS.md 15) belongs to the key's owner: the user of a personal key, the group
  of a service key; the key is recorded too. `store` defaults to `responses.store_default`,
  which a group may override (`responses.groups.<name>.store_default`). A stored response
  keeps its Response object, its own normalised input items and its output items;
  `previous_response_id` rebuilds the history from the chain (each turn's input then output,
  oldest first), without earlier `instructions`, as OpenAI specifies. `conversation` (an id or
  `{id}`) prepends the conversation's items, and after the response ends its input and output
  are appended (not when it failed) whatever `store` says: the conversation is the state the
  client asked for. State is written before the last event (or the JSON body) goes out, so a
  client chaining at once always finds it. The group whose settings apply is the group that
  pays for the call (`Pipeline.paying_group`): a service key's group, or the first of a
  personal key's groups that grants the model.
* **Curated system prompts** (DECISIONS.md 16): `{"tollway": {"system_prompt": <name> |
  "default" | "off"}}`, default `off`. `default` is the group's `system_prompt`, else
  `responses.default_system_prompt`, else nothing. The prompt goes before `instructions` and
  is not echoed in the response. The `tollway` block has no other keys; an unknown one, an
  unknown prompt name or a wrong type is a 400 naming `tollway.<key>`.
* **Tool types stock clients send that are not functions** (codex sends both by default):
  `namespace` (a named group of function tools) is flattened into the model's tools, and each
  call of one of its functions gets its `namespace` back on the `function_call` item;
  `web_search` / `web_search_preview` are OpenAI-hosted tools this gateway does not run yet:
  they are left out of what the model sees (it answers without searching) instead of failing
  the whole request. Any other non-function type is a 400 `unsupported_tool_type` (the
  translator's rule), except `tollway_*`.
* **Hosted tools** (README "Hosted tools"): `tollway_tools` / `tollway_<name>` types come in
  through the translator's `extra_tools` seam and are expanded here from the registry
  (`tollway.hosted`), checked against the key's grants (`tool:<name>`, 403
  `tool_access_denied`, `governance.access.tool_allowed`). `hosted.loop` runs the model's
  hosted calls and calls the model again, each time a full pipeline call with request id
  `<id>-h<n>`; the calls appear as `mcp_call` output items and are left out of stored
  state. Not with `stream: true` (400).
* **Streams**: named events, each `data` carrying `type` and a rising `sequence_number`; they
  end with `response.completed`, `response.incomplete` or `response.failed` (after an `error`
  event), with no `[DONE]`. During upstream silence a `: ping` comment goes out.
* **`model`** in every answer is the id the client asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response

from tollway.answer import Answer
from tollway.config import ResponsesConfig
from tollway.governance.identity import Principal
from tollway.hosted.loop import HOSTED_ITEM, hosted_items, hosted_loop, hosted_tools
from tollway.hosted.registry import Registry
from tollway.hosted.tool import PREFIX as HOSTED_PREFIX
from tollway.store.conversations import Owner, StateStore, new_response_id
from tollway.surfaces.chat_completions import OpenAIDialect
from tollway.surfaces.common import JSON, client_left, while_connected
from tollway.surfaces.envelopes import openai_error_response, openai_headers, openai_upstream_error
from tollway.surfaces.handler import Exchange
from tollway.surfaces.state import Gateway
from tollway.wire.anthropic_to_responses import (
    MessagesStreamToResponses,
    frame,
    message_to_response,
    response_skeleton,
    response_usage,
)
from tollway.wire.refusal import Refusal
from tollway.wire.responses_items import ResponsesInvalid, input_items
from tollway.wire.responses_schema import (
    bad_type,
    conversation_id,
    metadata,
    namespace_tools,
    optional_bool,
    tag_namespaces,
)
from tollway.wire.responses_to_anthropic import responses_request_to_messages
from tollway.wire.sse_decode import SSEDecoder

log = logging.getLogger("tollway")
KEEPALIVE = b": ping\n\n"
EXTENSION = "tollway"
EXTENSION_KEYS = ("system_prompt",)
# OpenAI-hosted tools this gateway does not run (yet): left out of the model's tools (module doc).
OMITTED_TOOL_TYPES = ("web_search", "web_search_preview")
# Tool types this surface handles itself; the translator skips them (its `extra_tools` seam).
EXTRA_TOOL_TYPES = ("namespace", *OMITTED_TOOL_TYPES)


class _WithHosted(Collection[str]):
    """EXTRA_TOOL_TYPES plus every `tollway_*` type: the hosted tools this surface expands."""

    def __contains__(self, kind: object) -> bool:
        return kind in EXTRA_TOOL_TYPES or (isinstance(kind, str) and kind.startswith(HOSTED_PREFIX))

    def __iter__(self) -> Iterator[str]:
        return iter(EXTRA_TOOL_TYPES)

    def __len__(self) -> int:
        return len(EXTRA_TOOL_TYPES)


WITH_HOSTED = _WithHosted()


def owner_of(principal: Principal) -> Owner:
    """Who stored state belongs to: the user of a personal key, the group of a service key."""
    if principal.user_id:
        return Owner("user", principal.user_id)
    assert principal.group_id is not None, "a data key has a user or a group"
    return Owner("group", principal.group_id)


def json_response(body: Any, request_id: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=openai_headers(request_id, headers), media_type=JSON)


def _group_name(gw: Gateway, principal: Principal, model: Any) -> str | None:
    """The name of the group whose `responses` settings apply: the one that pays (module doc)."""
    found = gw.pipeline.catalogue.resolve(model) if isinstance(model, str) else None
    if found is not None:
        group_id = gw.pipeline.paying_group(principal, found.id)
    else:
        group_id = principal.group_id or (principal.group_ids[0] if principal.group_ids else None)
    return gw.pipeline.keys.group_names.get(group_id) if group_id else None


def curated_prompt(cfg: ResponsesConfig, group: str | None, block: Any) -> str | None:
    """The curated system prompt a `tollway` block asks for (module doc); raises ResponsesInvalid."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise bad_type(EXTENSION, "an object", block)
    for key in block:
        if key not in EXTENSION_KEYS:
            raise ResponsesInvalid(f"Unknown parameter: '{EXTENSION}.{key}'. The '{EXTENSION}' block accepts: "
                                   + ", ".join(f"'{k}'" for k in EXTENSION_KEYS) + ".",
                                   f"{EXTENSION}.{key}", "unknown_parameter")
    choice = block.get("system_prompt")
    if choice is None or choice == "off":
        return None
    if not isinstance(choice, str):
        raise bad_type(f"{EXTENSION}.system_prompt", "a string", choice)
    if choice == "default":
        overrides = cfg.groups.get(group) if group else None
        name = (overrides.system_prompt if overrides else None) or cfg.default_system_prompt
        return cfg.system_prompts[name] if name else None
    if choice not in cfg.system_prompts:
        known = ", ".join(f"'{n}'" for n in ("default", "off", *sorted(cfg.system_prompts)))
        raise ResponsesInvalid(f"Invalid value for '{EXTENSION}.system_prompt': no system prompt named "
                               f"'{choice[:100]}'. Supported values are: {known}.", f"{EXTENSION}.system_prompt")
    return cfg.system_prompts[choice]


def _store_default(cfg: ResponsesConfig, group: str | None) -> bool:
    overrides = cfg.groups.get(group) if group else None
    if overrides is not None and overrides.store_default is not None:
        return overrides.store_default
    return cfg.store_default


# -- POST /v1/responses ----------------------------------------------------------------------------


@dataclass(slots=True)
class Turn:
    """One `POST /v1/responses` on its way: what it asked for and what state it touches."""

    request: dict[str, Any]
    response_id: str
    created_at: int
    owner: Owner
    key_id: str
    store: bool
    stream: bool
    previous_response_id: str | None
    conversation_id: str | None
    canonical: dict[str, Any] = field(default_factory=dict)
    input_items: list[dict[str, Any]] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)
    hosted: frozenset[str] = frozenset()

    def skeleton(self, model: str) -> dict[str, Any]:
        return response_skeleton(response_id=self.response_id, model=model, created_at=self.created_at,
                                 request=self.request, previous_response_id=self.previous_response_id,
                                 conversation_id=self.conversation_id, store=self.store)


async def _plan(gw: Gateway, principal: Principal, body: Any, registry: Registry | None = None) -> Turn:
    """Check the request, load the history it continues, translate it (module doc)."""
    if not isinstance(body, dict):
        raise ResponsesInvalid("The request body must be a JSON object.", None)
    cfg = gw.settings.responses
    group = _group_name(gw, principal, body.get("model"))
    prompt = curated_prompt(cfg, group, body.get(EXTENSION))
    store = optional_bool(body, "store")
    stream = optional_bool(body, "stream")
    metadata(body.get("metadata"))
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise bad_type("previous_response_id", "a non-empty string", previous)
    conversation = conversation_id(body.get("conversation"))
    if previous is not None and conversation is not None:
        raise ResponsesInvalid("Mutually exclusive parameters: Ensure you are only providing one of: "
                               "'previous_response_id' or 'conversation'.", "conversation",
                               "mutually_exclusive_parameters")
    owner = owner_of(principal)
    turn = Turn(body, new_response_id(), int(time.time()), owner, principal.key_id,
                _store_default(cfg, group) if store is None else store, bool(stream), previous, conversation)
    states = StateStore(gw.pipeline.keys.db)
    history: list[dict[str, Any]] | None = None
    if previous is not None:
        history = await states.history(owner, previous)
        if history is None:
            raise Refusal(404, f"Previous response with id '{previous[:100]}' not found.",
                          code="previous_response_not_found", param="previous_response_id")
    elif conversation is not None:
        history = await states.all_items(owner, conversation)
        if history is None:
            raise Refusal(404, f"Conversation with id '{conversation[:100]}' not found.",
                          code="conversation_not_found", param="conversation")
    canonical = responses_request_to_messages(body, history, prefix_system=prompt, extra_tools=WITH_HOSTED)
    extra, turn.namespaces = namespace_tools(body.get("tools"))
    if extra:
        canonical["tools"] = [*canonical.get("tools", ()), *extra]
    hosted = hosted_tools(body.get("tools"), registry, principal)
    if hosted:
        if turn.stream:
            raise ResponsesInvalid("Hosted tools (tollway_*) cannot be combined with 'stream: true' on this gateway "
                                   "yet; send the request without streaming.", "stream", "unsupported_parameter")
        taken = {t.get("name") for t in canonical.get("tools", ())}
        for tool in hosted:
            if tool.name in taken:
                raise ResponsesInvalid(f"Invalid 'tools': the function name '{tool.name}' is the name of a hosted "
                                       "tool this request also asks for.", "tools")
        canonical["tools"] = [*canonical.get("tools", ()), *(t.definition() for t in hosted)]
        turn.hosted = frozenset(t.name for t in hosted)
    if not canonical.get("tools"):
        canonical.pop("tool_choice", None)  # only omitted tools were asked for
    turn.canonical = canonical
    turn.input_items = input_items(body, response_id=turn.response_id) if body.get("input") is not None else []
    return turn


async def _record(gw: Gateway, turn: Turn, response: dict[str, Any]) -> None:
    """Write the turn's state; a failure is logged, and the client still gets its answer."""
    if not turn.store and turn.conversation_id is None:
        return
    try:
        await StateStore(gw.pipeline.keys.db).record_turn(
            turn.owner, turn.key_id, response=response, input_items=turn.input_items, store=turn.store,
            conversation_id=turn.conversation_id)
    except Exception as exc:
        log.error("could not store response %s", turn.response_id, exc_info=exc)


async def _events(gw: Gateway, source: Any, turn: Turn, model: str) -> AsyncIterator[bytes]:
    """The canonical event stream as Responses events. The pipeline's answer does the relaying
    proper (pings during silence, upstream failures as an `error` event, the metering tap, ending
    the call); this re-frames its events and stores the state before the last event goes out."""
    convert = MessagesStreamToResponses(turn.skeleton(model))
    decoder = SSEDecoder()
    recorded = False

    async def framed(events: list[tuple[str, dict[str, Any]]]) -> bytes:
        nonlocal recorded
        if convert.response is not None and not recorded:
            recorded = True
            await _record(gw, turn, tag_namespaces(convert.response, turn.namespaces))
        return b"".join(frame(name, tag_namespaces(data, turn.namespaces)) for name, data in events)

    try:
        async for data in source:
            out: list[bytes] = []
            events: list[tuple[str, dict[str, Any]]] = []
            for event in decoder.feed(data):
                if event.event == "ping":
                    out.append(KEEPALIVE)
                    continue
                try:
                    parsed = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    continue
                events.extend(convert.feed(parsed))
            chunk = b"".join(out) + await framed(events)
            if chunk:
                yield chunk
        tail = convert.finish()
        if tail:
            yield await framed(tail)
    finally:
        await source.aclose()


class ResponsesDialect(OpenAIDialect):
    """`POST /v1/responses` (module doc)."""

    route_name = "responses"

    async def to_canonical(self, ex: Exchange) -> None:
        assert ex.call.principal is not None
        registry: Registry | None = getattr(ex.request.app.state, "hosted", None)
        turn = await _plan(ex.gw, ex.call.principal, ex.body, registry)
        ex.state["turn"], ex.state["registry"] = turn, registry
        call = ex.call
        call.body, call.raw, call.query = turn.canonical, None, ""
        call.stream = turn.stream

    def model(self, ex: Exchange) -> str:
        return ex.call.requested_model or str(ex.state["turn"].request["model"])

    async def answered(self, ex: Exchange, answer: Answer) -> Response:
        turn: Turn = ex.state["turn"]
        registry: Registry | None = ex.state["registry"]
        if turn.hosted and registry is not None and not answer.streaming:
            return await self._hosted(ex, registry, answer)
        return await super().answered(ex, answer)

    async def render(self, ex: Exchange, answer: Answer) -> Response:
        turn: Turn = ex.state["turn"]
        message = _message(answer)
        if message is None:
            return _not_a_message(answer, ex.request_id)
        response = message_to_response(
            message, response_id=turn.response_id, model=self.model(ex), created_at=turn.created_at,
            request=turn.request, previous_response_id=turn.previous_response_id,
            conversation_id=turn.conversation_id, store=turn.store, completed_at=int(time.time()),
        )
        tag_namespaces(response, turn.namespaces)
        await _record(ex.gw, turn, response)
        return json_response(response, ex.request_id, answer.status, answer.headers)

    def reframe(self, ex: Exchange, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return _events(ex.gw, events, ex.state["turn"], self.model(ex))

    async def _hosted(self, ex: Exchange, registry: Registry, answer: Answer) -> Response:
        """The hosted-tool loop (hosted/loop.py), then the Response with its `mcp_call` items."""
        turn: Turn = ex.state["turn"]
        end = await hosted_loop(ex.gw.pipeline, registry, ex.call, answer, names=turn.hosted,
                                response_id=turn.response_id, max_iterations=ex.gw.settings.hosted_tools.max_iterations,
                                guard=lambda work, call: while_connected(ex.request, work, call))
        if end.left:
            return client_left(ex.request_id)
        if end.message is None:
            return _not_a_message(end.answer, ex.request_id)
        servers = {name: registry.tools[name].server for name in turn.hosted}
        response = message_to_response(
            end.message, response_id=turn.response_id, model=self.model(ex), created_at=turn.created_at,
            request=turn.request, previous_response_id=turn.previous_response_id,
            conversation_id=turn.conversation_id, store=turn.store, completed_at=int(time.time()),
        )
        response["output"] = [*end.items, *hosted_items(end.message, turn.response_id, servers, None)]
        response["usage"] = response_usage(end.usage)
        if end.capped:
            response["status"], response["completed_at"] = "incomplete", None
            response["incomplete_details"] = {"reason": "max_hosted_iterations"}
        tag_namespaces(response, turn.namespaces)
        # Stored state keeps what a later turn can replay: the hosted calls are not part of it.
        await _record(ex.gw, turn, {**response, "output": [i for i in response["output"] if i["type"] != HOSTED_ITEM]})
        return json_response(response, ex.request_id, end.answer.status, end.answer.headers)


def _message(answer: Answer) -> dict[str, Any] | None:
    if answer.status >= 400:
        return None
    try:
        message = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and message.get("type") == "message" else None


def _not_a_message(answer: Answer, request_id: str) -> Response:
    if answer.status >= 400:
        return openai_upstream_error(answer.reply, request_id)
    return openai_error_response(502, "the upstream answered with something that is not a message",
                                 request_id, headers=answer.headers)
