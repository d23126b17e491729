"""The Responses state routes: `GET`/`DELETE /v1/responses/{id}`, `…/input_items`, and
`/v1/conversations…` (create, get, delete, list items, get an item).

They authenticate and are audited through the runner like every data-plane route, never go
upstream, and answer in the OpenAI envelope. State belongs to the key's owner (the user of a
personal key, the group of a service key; DECISIONS.md 15): an id that is unknown, another
owner's or deleted is 404, so a foreign id reads exactly like an unknown one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from tollway.store.conversations import InvalidCursor, Owner, StateStore, page_of
from tollway.surfaces.chat_completions import OpenAIDialect
from tollway.surfaces.handler import Exchange
from tollway.surfaces.responses import json_response, owner_of
from tollway.wire.refusal import Refusal
from tollway.wire.responses_items import ResponsesInvalid, input_items, normalise_items
from tollway.wire.responses_schema import bad_type, list_params, metadata

MAX_CONVERSATION_ITEMS = 20

Work = Callable[[Exchange, StateStore, Owner], Awaitable[Any]]


class StateDialect(OpenAIDialect):
    """One state route: WORK reads or writes the owner's state and returns the JSON to answer."""

    reads_body = False

    def __init__(self, route_name: str, work: Work, reads_body: bool = False) -> None:
        self.route_name = route_name
        self.work = work
        self.reads_body = reads_body
        self.empty_body_ok = reads_body

    async def respond(self, ex: Exchange) -> Response:
        principal = ex.call.principal
        assert principal is not None
        ex.call.group_id = principal.group_id
        body = await self.work(ex, StateStore(ex.gw.pipeline.keys.db), owner_of(principal))
        await ex.gw.pipeline.done(ex.call)
        return json_response(body, ex.request_id)


def _not_found(what: str, ident: str) -> Refusal:
    return Refusal(404, f"{what} with id '{ident[:100]}' not found.", code="not_found")


def _bad_cursor(after: str) -> Refusal:
    return Refusal(400, f"Invalid 'after': '{after[:100]}' is not an item of this list.", code="invalid_cursor",
                   param="after")


def _param(ex: Exchange, name: str) -> str:
    value: str = ex.request.path_params[name]
    return value


async def _get_response(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    response_id = _param(ex, "response_id")
    found = await states.get_response(owner, response_id)
    if found is None:
        raise _not_found("Response", response_id)
    return found


async def _delete_response(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    response_id = _param(ex, "response_id")
    if not await states.delete_response(owner, response_id):
        raise _not_found("Response", response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


async def _input_items(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    response_id = _param(ex, "response_id")
    limit, order, after = list_params(ex.request.query_params)
    items = await states.input_items(owner, response_id)
    if items is None:
        raise _not_found("Response", response_id)
    try:
        return page_of(items, limit=limit, order=order, after=after).body()
    except InvalidCursor:
        raise _bad_cursor(after or "") from None


async def _create_conversation(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    assert ex.call.principal is not None
    body = {} if ex.body is None else ex.body
    if not isinstance(body, dict):
        raise ResponsesInvalid("The request body must be a JSON object.", None)
    meta = metadata(body.get("metadata"))
    items: list[dict[str, Any]] = []
    if body.get("items") is not None:
        value = body["items"]
        if not isinstance(value, list):
            raise bad_type("items", "an array of items", value)
        if len(value) > MAX_CONVERSATION_ITEMS:
            raise ResponsesInvalid(f"Invalid 'items': at most {MAX_CONVERSATION_ITEMS} items at a time, got "
                                   f"{len(value)}.", "items")
        normalise_items(value, "items")  # names `items[i]…` in its errors
        items = input_items({"input": value})
    return await states.create_conversation(owner, ex.call.principal.key_id, metadata=meta, items=items)


async def _get_conversation(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    conversation_id = _param(ex, "conversation_id")
    found = await states.get_conversation(owner, conversation_id)
    if found is None:
        raise _not_found("Conversation", conversation_id)
    return found


async def _delete_conversation(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    conversation_id = _param(ex, "conversation_id")
    if not await states.delete_conversation(owner, conversation_id):
        raise _not_found("Conversation", conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


async def _conversation_items(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    conversation_id = _param(ex, "conversation_id")
    limit, order, after = list_params(ex.request.query_params)
    try:
        page = await states.list_items(owner, conversation_id, limit=limit, order=order, after=after)
    except InvalidCursor:
        raise _bad_cursor(after or "") from None
    if page is None:
        raise _not_found("Conversation", conversation_id)
    return page.body()


async def _conversation_item(ex: Exchange, states: StateStore, owner: Owner) -> Any:
    conversation_id, item_id = _param(ex, "conversation_id"), _param(ex, "item_id")
    item = await states.get_item(owner, conversation_id, item_id)
    if item is None:
        if await states.get_conversation(owner, conversation_id) is None:
            raise _not_found("Conversation", conversation_id)
        raise _not_found("Item", item_id)
    return item


GET_RESPONSE = StateDialect("responses_get", _get_response)
DELETE_RESPONSE = StateDialect("responses_delete", _delete_response)
INPUT_ITEMS = StateDialect("responses_input_items", _input_items)
CREATE_CONVERSATION = StateDialect("conversations_create", _create_conversation, reads_body=True)
GET_CONVERSATION = StateDialect("conversations_get", _get_conversation)
DELETE_CONVERSATION = StateDialect("conversations_delete", _delete_conversation)
CONVERSATION_ITEMS = StateDialect("conversations_items", _conversation_items)
CONVERSATION_ITEM = StateDialect("conversations_item", _conversation_item)
