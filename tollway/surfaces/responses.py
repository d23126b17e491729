"""OpenAI Responses: `POST /v1/responses` (JSON and SSE), stored responses and conversations.

`POST /v1/responses` goes through the same pipeline as every model call (authenticate, authorize
the model, limits and budget, DLP, forward, meter, audit): the request is translated to the
canonical Messages request (`wire.responses_to_anthropic`, whose docstring holds every mapping
decision), and the canonical answer rendered back (`wire.anthropic_to_responses`). The state
routes (`GET`/`DELETE /v1/responses/{id}`, `…/input_items`, `/v1/conversations…`) authenticate
and are audited through the pipeline too, and never go upstream. Decisions:

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
  `tool_access_denied`). `_hosted_loop` runs the model's hosted calls and calls the model
  again, each time a full pipeline call with request id `<id>-h<n>`; the calls appear as
  `mcp_call` output items and are left out of stored state. Not with `stream: true` (400).
* **Streams**: named events, each `data` carrying `type` and a rising `sequence_number`; they
  end with `response.completed`, `response.incomplete` or `response.failed` (after an `error`
  event), with no `[DONE]`. During upstream silence a `: ping` comment goes out.
* **`model`** in every answer is the id the client asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.config import ResponsesConfig
from tollway.governance.identity import Principal
from tollway.hosted.registry import PREFIX as HOSTED_PREFIX
from tollway.hosted.registry import Outcome, Registry
from tollway.pipeline import Call, GatewayError
from tollway.store.conversations import InvalidCursor, Owner, StateStore, new_response_id, page_of
from tollway.surfaces.common import (
    JSON,
    SSE_HEADERS,
    RelayResponse,
    client_info,
    client_left,
    header_map,
    new_request_id,
    openai_error_response,
    openai_headers,
    openai_refusal,
    openai_upstream_error,
    parse_json,
    read_body,
    relay,
    while_connected,
)
from tollway.surfaces.state import Gateway, gateway_of
from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.wire.anthropic_to_responses import (
    MessagesStreamToResponses,
    frame,
    message_to_response,
    response_output_items,
    response_skeleton,
    response_usage,
)
from tollway.wire.messages_schema import RequestInvalid
from tollway.wire.responses_to_anthropic import (
    ResponsesInvalid,
    input_items,
    normalise_items,
    responses_request_to_messages,
)
from tollway.wire.sse_decode import SSEDecoder

log = logging.getLogger("tollway")
KEEPALIVE = b": ping\n\n"
EXTENSION = "tollway"
EXTENSION_KEYS = ("system_prompt",)
# OpenAI-hosted tools this gateway does not run (yet): left out of the model's tools (module doc).
OMITTED_TOOL_TYPES = ("web_search", "web_search_preview")
# Tool types this surface handles itself; the translator skips them (its `extra_tools` seam).
EXTRA_TOOL_TYPES = ("namespace", *OMITTED_TOOL_TYPES)
HOSTED_ALL = "tollway_tools"  # every hosted tool the key may use (README "Hosted tools")
HOSTED_ITEM = "mcp_call"  # the output item a hosted call appears as (module doc)
MAX_METADATA = 16
MAX_CONVERSATION_ITEMS = 20
class _WithHosted(Collection[str]):
    """EXTRA_TOOL_TYPES plus every `tollway_*` type: the hosted tools this surface expands."""

    def __contains__(self, kind: object) -> bool:
        return kind in EXTRA_TOOL_TYPES or (isinstance(kind, str) and kind.startswith(HOSTED_PREFIX))

    def __iter__(self) -> Iterator[str]:
        return iter(EXTRA_TOOL_TYPES)

    def __len__(self) -> int:
        return len(EXTRA_TOOL_TYPES)


WITH_HOSTED = _WithHosted()


class Refused(Exception):
    """A refusal this surface renders itself: status, message, OpenAI `code` and `param`."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


_REFUSALS = (GatewayError, RequestInvalid, UpstreamFailure, Refused, ResponsesInvalid)


def _owner(principal: Principal) -> Owner:
    if principal.user_id:
        return Owner("user", principal.user_id)
    assert principal.group_id is not None, "a data key has a user or a group"
    return Owner("group", principal.group_id)


def _render_refusal(exc: Exception, request_id: str, call: Call) -> Response:
    timing = {"server-timing": call.timing()}
    if isinstance(exc, Refused):
        return openai_error_response(exc.status, exc.message, request_id, code=exc.code, param=exc.param,
                                     headers=timing)
    if isinstance(exc, ResponsesInvalid):
        return openai_error_response(400, exc.message, request_id, code=exc.code, param=exc.param, headers=timing)
    return openai_refusal(exc, request_id, call)


async def _account(gw: Gateway, call: Call, exc: Exception) -> None:
    """End a refused call in the pipeline's books as the status the client sees."""
    if isinstance(exc, Refused):
        await gw.pipeline.refused(call, GatewayError(exc.status, exc.message))
    elif isinstance(exc, ResponsesInvalid):
        await gw.pipeline.refused(call, GatewayError(400, exc.message, "invalid_request_error"))
    else:
        await gw.pipeline.refused(call, exc)


def _json(body: Any, request_id: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=openai_headers(request_id, headers), media_type=JSON)


# -- request checks ------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _bad_type(param: str, expected: str, value: Any) -> ResponsesInvalid:
    return ResponsesInvalid(f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
                            param)


def _metadata(value: Any) -> dict[str, str]:
    """OpenAI's metadata: up to 16 string pairs, keys ≤ 64 and values ≤ 512 characters."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad_type("metadata", "an object", value)
    if len(value) > MAX_METADATA:
        raise ResponsesInvalid(f"Invalid 'metadata': too many keys ({len(value)}); at most {MAX_METADATA}.",
                               "metadata")
    for key, item in value.items():
        if len(key) > 64:
            raise ResponsesInvalid(f"Invalid 'metadata': key '{key[:64]}…' is longer than 64 characters.",
                                   "metadata")
        if not isinstance(item, str):
            raise _bad_type(f"metadata.{key}", "a string", item)
        if len(item) > 512:
            raise ResponsesInvalid(f"Invalid 'metadata.{key}': longer than 512 characters.", f"metadata.{key}")
    return value


def _optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _bad_type(name, "a boolean", value)
    return value


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
        raise _bad_type(EXTENSION, "an object", block)
    for key in block:
        if key not in EXTENSION_KEYS:
            raise ResponsesInvalid(f"Unknown parameter: '{EXTENSION}.{key}'. The '{EXTENSION}' block accepts: "
                                   + ", ".join(f"'{k}'" for k in EXTENSION_KEYS) + ".",
                                   f"{EXTENSION}.{key}", "unknown_parameter")
    choice = block.get("system_prompt")
    if choice is None or choice == "off":
        return None
    if not isinstance(choice, str):
        raise _bad_type(f"{EXTENSION}.system_prompt", "a string", choice)
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


def _conversation_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        inner = value.get("id")
        if not isinstance(inner, str) or not inner:
            raise ResponsesInvalid("Invalid 'conversation.id': expected a non-empty string.", "conversation.id")
        return inner
    if not isinstance(value, str) or not value:
        raise _bad_type("conversation", "a string or an object with 'id'", value)
    return value


def namespace_tools(tools: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(Anthropic tools for the functions inside `namespace` tools, function name → namespace).

    The translator has already checked `tools` is a list of objects. Names must stay unique
    once flattened, among themselves and with the top-level functions."""
    if not isinstance(tools, list):
        return [], {}
    taken = {t.get("name") for t in tools if isinstance(t, dict) and t.get("type") == "function"}
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "namespace":
            continue
        path = f"tools[{i}]"
        space = tool.get("name")
        if not isinstance(space, str) or not space:
            raise ResponsesInvalid(f"Invalid '{path}.name': expected a non-empty string.", f"{path}.name")
        members = tool.get("tools")
        if not isinstance(members, list):
            raise _bad_type(f"{path}.tools", "an array", members)
        for j, member in enumerate(members):
            where = f"{path}.tools[{j}]"
            if not isinstance(member, dict):
                raise _bad_type(where, "an object", member)
            if member.get("type") != "function":
                raise ResponsesInvalid(f"Tool type '{member.get('type')}' is not supported inside a namespace on "
                                       "this gateway; only 'function' tools are.", f"{where}.type",
                                       "unsupported_tool_type")
            name = member.get("name")
            if not isinstance(name, str) or not name:
                raise ResponsesInvalid(f"Invalid '{where}.name': expected a non-empty string.", f"{where}.name")
            if name in taken:
                raise ResponsesInvalid(f"Invalid '{where}.name': the function name '{name}' is used twice; "
                                       "function names must be unique across namespaces.", f"{where}.name")
            taken.add(name)
            names[name] = space
            schema = member.get("parameters")
            schema = dict(schema) if isinstance(schema, dict) else {"type": "object", "properties": {}}
            schema.setdefault("type", "object")
            converted: dict[str, Any] = {"name": name, "input_schema": schema}
            if isinstance(member.get("description"), str) and member["description"]:
                converted["description"] = member["description"]
            if isinstance(member.get("strict"), bool):
                converted["strict"] = member["strict"]
            out.append(converted)
    return out, names


def _tag(item: Any, names: dict[str, str]) -> None:
    if isinstance(item, dict) and item.get("type") == "function_call" and item.get("name") in names:
        item["namespace"] = names[item["name"]]


def tag_namespaces(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Put `namespace` back on the function calls of a Response or stream event (module doc)."""
    if names:
        _tag(data.get("item"), names)
        response = data["response"] if isinstance(data.get("response"), dict) else data
        for item in response.get("output") or ():
            _tag(item, names)
    return data


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
    store = _optional_bool(body, "store")
    stream = _optional_bool(body, "stream")
    _metadata(body.get("metadata"))
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise _bad_type("previous_response_id", "a non-empty string", previous)
    conversation = _conversation_id(body.get("conversation"))
    if previous is not None and conversation is not None:
        raise ResponsesInvalid("Mutually exclusive parameters: Ensure you are only providing one of: "
                               "'previous_response_id' or 'conversation'.", "conversation",
                               "mutually_exclusive_parameters")
    owner = _owner(principal)
    turn = Turn(body, new_response_id(), int(time.time()), owner, principal.key_id,
                _store_default(cfg, group) if store is None else store, bool(stream), previous, conversation)
    states = StateStore(gw.pipeline.keys.db)
    history: list[dict[str, Any]] | None = None
    if previous is not None:
        history = await states.history(owner, previous)
        if history is None:
            raise Refused(404, f"Previous response with id '{previous[:100]}' not found.",
                          "previous_response_not_found", "previous_response_id")
    elif conversation is not None:
        history = await states.all_items(owner, conversation)
        if history is None:
            raise Refused(404, f"Conversation with id '{conversation[:100]}' not found.", "conversation_not_found",
                          "conversation")
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


async def _render(gw: Gateway, reply: UpstreamReply, turn: Turn, request_id: str, model: str) -> Response:
    if reply.status >= 400:
        return openai_upstream_error(reply, request_id)
    try:
        message = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "message":
        return openai_error_response(502, "the upstream answered with something that is not a message",
                                     request_id, headers=reply.headers)
    response = message_to_response(
        message, response_id=turn.response_id, model=model, created_at=turn.created_at, request=turn.request,
        previous_response_id=turn.previous_response_id, conversation_id=turn.conversation_id, store=turn.store,
        completed_at=int(time.time()),
    )
    tag_namespaces(response, turn.namespaces)
    await _record(gw, turn, response)
    return _json(response, request_id, reply.status, reply.headers)


# -- hosted tools (README "Hosted tools") ----------------------------------------------------------


def hosted_allowed(principal: Principal, name: str) -> bool:
    """A key may use hosted tool NAME when a grant of its groups matches `tool:<name>` and, if the
    key narrows its models, one of the key's patterns matches it too: the rule models follow."""
    target = f"tool:{name}"

    def matches(patterns: tuple[str, ...]) -> bool:
        return any(p == target or fnmatchcase(target, p) for p in patterns)

    return matches(principal.grants) and (principal.key_models is None or matches(principal.key_models))


def hosted_tools(tools: Any, registry: Registry | None, principal: Principal) -> list[Any]:
    """The hosted tools a request's `tollway_*` tool types ask for: `tollway_tools` is every one
    the key may use; a named one must exist (else 400 `unsupported_tool_type`) and be allowed
    (else 403 `tool_access_denied`)."""
    if not isinstance(tools, list):
        return []
    available = registry.tools if registry is not None else {}
    chosen: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or not kind.startswith(HOSTED_PREFIX):
            continue
        if kind == HOSTED_ALL:
            for name, hosted in available.items():
                if hosted_allowed(principal, name):
                    chosen.setdefault(name, hosted)
            continue
        found = available.get(kind)
        if found is None:
            known = ", ".join(f"'{n}'" for n in (HOSTED_ALL, *sorted(available)))
            raise ResponsesInvalid(f"Tool type '{kind[:100]}' is not a hosted tool of this gateway. Hosted tool "
                                   f"types: {known}.", f"tools[{i}].type", "unsupported_tool_type")
        if not hosted_allowed(principal, kind):
            raise Refused(403, f"this API key is not allowed to use the hosted tool {kind}", "tool_access_denied",
                          f"tools[{i}].type")
        chosen[kind] = found
    return list(chosen.values())


def _hosted_items(message: dict[str, Any], base: str, hosted: dict[str, str],
                  outcomes: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Output items of one model message, its hosted calls as `mcp_call` items (module doc).

    HOSTED maps hosted tool name → server label; OUTCOMES maps tool_use id → Outcome; a hosted
    call without one was not run (`incomplete`)."""
    items = response_output_items(message, response_id=base)
    uses = {b.get("id"): b for b in message.get("content") or () if isinstance(b, dict) and b.get("type") == "tool_use"}
    out: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") != "function_call" or item.get("name") not in hosted:
            out.append(item)
            continue
        use = uses.get(item.get("call_id"), {})
        outcome = (outcomes or {}).get(str(use.get("id")))
        out.append({
            "id": "mcp_" + str(item["id"]).split("_", 1)[-1], "type": HOSTED_ITEM, "server_label": hosted[item["name"]],
            "name": item["name"], "arguments": item["arguments"],
            "output": None if outcome is None or outcome.is_error else outcome.text,
            "error": outcome.text if outcome is not None and outcome.is_error else None,
            "status": "incomplete" if outcome is None else ("failed" if outcome.is_error else "completed"),
        })
    return out


def _add_usage(total: dict[str, int], usage: Any) -> None:
    if isinstance(usage, dict):
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value


async def _run_audited(gw: Gateway, registry: Registry, call: Call, use: dict[str, Any]) -> Outcome:
    """Run one hosted call and audit it like a model call: who, which tool, how long, the outcome
    (never its arguments or output, which may hold data)."""
    started = time.perf_counter()
    p = call.principal

    def audit(status: str, output_chars: int) -> None:
        gw.pipeline.audit.record(
            "hosted_tool", request_id=call.request_id, route="responses", tool=str(use["name"]),
            actor={"key_id": p.key_id, "user_id": p.user_id, "group_id": call.group_id} if p else None,
            status=status, output_chars=output_chars, latency_ms=int((time.perf_counter() - started) * 1000),
        )

    try:
        outcome = await registry.run(str(use["name"]), use.get("input"))
    except asyncio.CancelledError:  # the client left while the tool ran: it ran, so it is audited
        audit("cancelled", 0)
        raise
    audit("error" if outcome.is_error else "ok", len(outcome.text or ""))
    return outcome


async def _hosted_loop(request: Request, gw: Gateway, registry: Registry, call: Call, turn: Turn,
                       reply: UpstreamReply, request_id: str) -> Response:
    """Run the model's hosted calls and call it again, until it answers, calls a client function,
    or `hosted_tools.max_iterations` model calls were made (module doc). Each model call is a
    full pipeline call (limits, DLP over the tool results, metering, audit) with its own request
    id: the client's for the first, `<id>-h<n>` for the n-th. When the client leaves, the tool
    runs or the model call under way are cancelled (`while_connected`) and the loop ends."""
    principal = call.principal
    requested = call.requested_model
    model = requested or str(turn.request["model"])
    limit = gw.settings.hosted_tools.max_iterations
    servers = {name: registry.tools[name].server for name in turn.hosted}
    items: list[dict[str, Any]] = []
    usage: dict[str, int] = {}
    iteration = 1
    while True:
        if reply.status >= 400:
            return openai_upstream_error(reply, request_id)
        try:
            message = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or message.get("type") != "message":
            return openai_error_response(502, "the upstream answered with something that is not a message",
                                         request_id, headers=reply.headers)
        _add_usage(usage, message.get("usage"))
        uses = [b for b in message.get("content") or () if isinstance(b, dict) and b.get("type") == "tool_use"]
        hosted = [u for u in uses if u.get("name") in turn.hosted]
        if not hosted or len(hosted) != len(uses) or iteration >= limit:
            break  # an answer, a client function call (the client's turn), or the cap
        outcomes = await while_connected(request, asyncio.gather(*(_run_audited(gw, registry, call, u)
                                                                   for u in hosted)))
        if outcomes is None:
            return client_left(request_id)
        by_id = {str(u["id"]): o for u, o in zip(hosted, outcomes, strict=True)}
        items.extend(_hosted_items(message, f"{turn.response_id}/h{iteration}", servers, by_id))
        results = [{"type": "tool_result", "tool_use_id": str(u["id"]), "content": o.text or "(no output)",
                    **({"is_error": True} if o.is_error else {})} for u, o in zip(hosted, outcomes, strict=True)]
        body = {**call.body, "model": requested,
                "messages": [*call.body["messages"], {"role": "assistant", "content": message["content"]},
                             {"role": "user", "content": results}]}
        iteration += 1
        call = gw.pipeline.begin(f"{request_id}-h{iteration}", "responses", call.headers, call.client)
        call.principal, call.body, call.stream = principal, body, False
        answered = await while_connected(request, gw.pipeline.messages(call), call)
        if answered is None:
            return client_left(request_id)
        reply = answered
    response = message_to_response(
        message, response_id=turn.response_id, model=model, created_at=turn.created_at, request=turn.request,
        previous_response_id=turn.previous_response_id, conversation_id=turn.conversation_id, store=turn.store,
        completed_at=int(time.time()),
    )
    capped = bool(hosted) and len(hosted) == len(uses)
    response["output"] = [*items, *_hosted_items(message, turn.response_id, servers, None)]
    response["usage"] = response_usage(usage)
    if capped:
        response["status"], response["completed_at"] = "incomplete", None
        response["incomplete_details"] = {"reason": "max_hosted_iterations"}
    tag_namespaces(response, turn.namespaces)
    # Stored state keeps what a later turn can replay: the hosted calls are not part of it.
    await _record(gw, turn, {**response, "output": [i for i in response["output"] if i["type"] != HOSTED_ITEM]})
    return _json(response, request_id, reply.status, reply.headers)


async def _events(gw: Gateway, reply: UpstreamReply, turn: Turn, model: str) -> AsyncIterator[bytes]:
    """The canonical event stream as Responses events. `relay` does the relaying proper (pings
    during silence, upstream failures as an `error` event, the metering tap, closing the reply);
    this re-frames its events and stores the state before the last event goes out."""
    convert = MessagesStreamToResponses(turn.skeleton(model))
    decoder = SSEDecoder()
    source: AsyncGenerator[bytes, None] = relay(reply, gw.settings.server.ping_interval)  # type: ignore[assignment]
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


async def create_response(request: Request) -> Response:
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, "responses", headers, client_info(request, headers))
    try:
        principal = await gw.pipeline.admit(call)
        raw = await read_body(request, gw.settings.server.max_body_bytes)
        registry: Registry | None = getattr(request.app.state, "hosted", None)
        turn = await _plan(gw, principal, parse_json(raw), registry)
        call.body, call.raw, call.query = turn.canonical, None, ""
        call.stream = turn.stream
        answered = await while_connected(request, gw.pipeline.messages(call), call)
        if answered is None:
            return client_left(request_id)
        reply = answered
        if turn.hosted and registry is not None and not reply.streaming:
            return await _hosted_loop(request, gw, registry, call, turn, reply, request_id)
    except _REFUSALS as exc:
        await _account(gw, call, exc)
        return _render_refusal(exc, request_id, call)
    except Exception as exc:  # a bug of ours: the client still gets its dialect's envelope
        log.error("unhandled error on POST /v1/responses", exc_info=exc)
        await gw.pipeline.refused(call, GatewayError(500, "internal error in the gateway"))
        return openai_error_response(500, "internal error in the gateway", request_id)
    model = call.requested_model or str(turn.request["model"])
    if not reply.streaming:
        return await _render(gw, reply, turn, request_id, model)
    return RelayResponse(
        _events(gw, reply, turn, model),
        200,
        headers=openai_headers(request_id, {**SSE_HEADERS, **reply.headers}),
        media_type="text/event-stream",
    )


# -- the state routes --------------------------------------------------------------------------------

Work = Callable[[Gateway, Owner, Principal], Awaitable[Any]]


async def _state_route(request: Request, route_name: str, work: Work) -> Response:
    """Authenticate (and audit) through the pipeline, run `work`, answer its JSON or the refusal."""
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, route_name, headers, client_info(request, headers))
    try:
        principal = await gw.pipeline.admit(call)
        call.group_id = principal.group_id
        body = await work(gw, _owner(principal), principal)
    except _REFUSALS as exc:
        await _account(gw, call, exc)
        return _render_refusal(exc, request_id, call)
    except Exception as exc:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        await gw.pipeline.refused(call, GatewayError(500, "internal error in the gateway"))
        return openai_error_response(500, "internal error in the gateway", request_id)
    await gw.pipeline.done(call)
    return _json(body, request_id)


def _not_found(what: str, ident: str) -> Refused:
    return Refused(404, f"{what} with id '{ident[:100]}' not found.", "not_found")


def _list_params(request: Request) -> tuple[int, str, str | None]:
    """limit (1-100, default 20), order (asc|desc, default desc), after (an item id)."""
    q = request.query_params
    raw_limit = q.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ResponsesInvalid(f"Invalid 'limit': expected an integer between 1 and 100, got '{raw_limit[:20]}'.",
                               "limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ResponsesInvalid(f"Invalid 'order': expected 'asc' or 'desc', got '{order[:20]}'.", "order")
    after = q.get("after") or None
    return limit, order, after


def _bad_cursor(after: str) -> Refused:
    return Refused(400, f"Invalid 'after': '{after[:100]}' is not an item of this list.", "invalid_cursor", "after")


async def get_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        found = await StateStore(gw.pipeline.keys.db).get_response(owner, response_id)
        if found is None:
            raise _not_found("Response", response_id)
        return found

    return await _state_route(request, "responses_get", work)


async def delete_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        if not await StateStore(gw.pipeline.keys.db).delete_response(owner, response_id):
            raise _not_found("Response", response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    return await _state_route(request, "responses_delete", work)


async def list_input_items(request: Request) -> Response:
    response_id = request.path_params["response_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        limit, order, after = _list_params(request)
        items = await StateStore(gw.pipeline.keys.db).input_items(owner, response_id)
        if items is None:
            raise _not_found("Response", response_id)
        try:
            return page_of(items, limit=limit, order=order, after=after).body()
        except InvalidCursor:
            raise _bad_cursor(after or "") from None

    return await _state_route(request, "responses_input_items", work)


async def create_conversation(request: Request) -> Response:
    async def work(gw: Gateway, owner: Owner, principal: Principal) -> Any:
        raw = await read_body(request, gw.settings.server.max_body_bytes)
        body = parse_json(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ResponsesInvalid("The request body must be a JSON object.", None)
        metadata = _metadata(body.get("metadata"))
        items: list[dict[str, Any]] = []
        if body.get("items") is not None:
            value = body["items"]
            if not isinstance(value, list):
                raise _bad_type("items", "an array of items", value)
            if len(value) > MAX_CONVERSATION_ITEMS:
                raise ResponsesInvalid(f"Invalid 'items': at most {MAX_CONVERSATION_ITEMS} items at a time, got "
                                       f"{len(value)}.", "items")
            normalise_items(value, "items")  # names `items[i]…` in its errors
            items = input_items({"input": value})
        return await StateStore(gw.pipeline.keys.db).create_conversation(owner, principal.key_id, metadata=metadata,
                                                                         items=items)

    return await _state_route(request, "conversations_create", work)


async def get_conversation(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        found = await StateStore(gw.pipeline.keys.db).get_conversation(owner, conversation_id)
        if found is None:
            raise _not_found("Conversation", conversation_id)
        return found

    return await _state_route(request, "conversations_get", work)


async def delete_conversation(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        if not await StateStore(gw.pipeline.keys.db).delete_conversation(owner, conversation_id):
            raise _not_found("Conversation", conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    return await _state_route(request, "conversations_delete", work)


async def list_conversation_items(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        limit, order, after = _list_params(request)
        try:
            page = await StateStore(gw.pipeline.keys.db).list_items(owner, conversation_id, limit=limit, order=order,
                                                                    after=after)
        except InvalidCursor:
            raise _bad_cursor(after or "") from None
        if page is None:
            raise _not_found("Conversation", conversation_id)
        return page.body()

    return await _state_route(request, "conversations_items", work)


async def get_conversation_item(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    item_id = request.path_params["item_id"]

    async def work(gw: Gateway, owner: Owner, _: Principal) -> Any:
        states = StateStore(gw.pipeline.keys.db)
        item = await states.get_item(owner, conversation_id, item_id)
        if item is None:
            if await states.get_conversation(owner, conversation_id) is None:
                raise _not_found("Conversation", conversation_id)
            raise _not_found("Item", item_id)
        return item

    return await _state_route(request, "conversations_item", work)
