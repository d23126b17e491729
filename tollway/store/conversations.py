"""Stored state of `/v1/responses`: responses with their input and output items, conversations
with their items, and retention.

Everything is owned: a user (personal keys) or a group (service keys), given as an `Owner` on
every call, and a row of another owner is treated as absent, so a foreign id reads exactly like
an unknown one (DECISIONS.md 15). The key that made a row is recorded beside its owner.

Items are plain dicts in the shapes the Responses API lists them (openai-python's
`ResponseItem`), stored as orjson text. A response keeps only its own input; the history of a
`previous_response_id` chain is rebuilt by walking the chain back (one recursive query).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.db import Database
from tollway.store.tables import conversation_items, conversations, responses

# A chain longer than this is cut (oldest turns first): no client builds one, and the walk
# must end even on a corrupted table.
MAX_CHAIN = 10_000


class InvalidCursor(ValueError):
    """An `after` cursor that names no item of the list."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Who stored state belongs to: `("user", usr_…)` for personal keys, `("group", grp_…)` for
    service keys."""

    kind: str
    id: str


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(24)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _epoch(ts: datetime) -> int:
    return int((ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp())


def _owned(table: Any, owner: Owner) -> Any:
    return and_(table.c.owner_kind == owner.kind, table.c.owner_id == owner.id)


def conversation_object(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "object": "conversation", "created_at": _epoch(m["created_at"]),
            "metadata": orjson.loads(m["metadata"])}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: items in the order asked, and whether more follow."""

    data: list[dict[str, Any]]
    has_more: bool

    def body(self) -> dict[str, Any]:
        return {"object": "list", "data": self.data, "first_id": self.data[0]["id"] if self.data else None,
                "last_id": self.data[-1]["id"] if self.data else None, "has_more": self.has_more}


def page_of(items: Sequence[dict[str, Any]], *, limit: int, order: str, after: str | None) -> Page:
    """Page a list held in memory (`items` oldest first) with OpenAI's limit/order/after."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    start = 0
    if after is not None:
        at = next((i for i, item in enumerate(ordered) if item.get("id") == after), None)
        if at is None:
            raise InvalidCursor(after)
        start = at + 1
    chunk = ordered[start : start + limit]
    return Page(chunk, start + limit < len(ordered))


class StateStore:
    """Responses and conversations of one database; cheap to build, holds no state itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- responses ----------------------------------------------------------------------------

    async def record_turn(
        self, owner: Owner, key_id: str, *, response: dict[str, Any], input_items: list[dict[str, Any]],
        store: bool, conversation_id: str | None,
    ) -> None:
        """After a response ended: store it (when `store`) and append its input and output to its
        conversation (when it has one and did not fail), in one transaction."""
        output = response.get("output") or []
        now = datetime.now(UTC)
        async with self.db.engine.begin() as conn:
            if store:
                await conn.execute(responses.insert().values(
                    id=response["id"], owner_kind=owner.kind, owner_id=owner.id, key_id=key_id,
                    created_at=datetime.fromtimestamp(int(response.get("created_at") or now.timestamp()), UTC),
                    model=str(response.get("model") or "")[:200],
                    previous_response_id=response.get("previous_response_id"), conversation_id=conversation_id,
                    body=_dumps(response), input_items=_dumps(input_items), output_items=_dumps(output),
                ))
            if conversation_id is not None and response.get("status") != "failed":
                await self._append(conn, owner, conversation_id, [*input_items, *output], now)

    async def get_response(self, owner: Owner, response_id: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            body = await conn.scalar(select(responses.c.body).where(responses.c.id == response_id,
                                                                    _owned(responses, owner)))
        return orjson.loads(body) if body is not None else None

    async def input_items(self, owner: Owner, response_id: str) -> list[dict[str, Any]] | None:
        async with self.db.engine.connect() as conn:
            text = await conn.scalar(select(responses.c.input_items).where(responses.c.id == response_id,
                                                                           _owned(responses, owner)))
        return orjson.loads(text) if text is not None else None

    async def delete_response(self, owner: Owner, response_id: str) -> bool:
        async with self.db.engine.begin() as conn:
            result = await conn.execute(delete(responses).where(responses.c.id == response_id,
                                                                _owned(responses, owner)))
        return bool(result.rowcount)

    async def history(self, owner: Owner, previous_response_id: str) -> list[dict[str, Any]] | None:
        """The items a `previous_response_id` continues: each earlier turn's input then output,
        oldest first, following the chain back while its links exist and are the owner's.
        None when the previous response itself is not there (unknown, foreign, deleted, or made
        with `store: false`)."""
        r = responses.alias("r")
        start = select(responses.c.id, responses.c.previous_response_id, literal(0).label("depth")).where(
            responses.c.id == previous_response_id, _owned(responses, owner))
        chain = start.cte("chain", recursive=True)
        chain = chain.union_all(
            select(r.c.id, r.c.previous_response_id, chain.c.depth + 1)
            .where(r.c.id == chain.c.previous_response_id, _owned(r, owner), chain.c.depth < MAX_CHAIN)
        )
        query = (select(responses.c.input_items, responses.c.output_items)
                 .join(chain, chain.c.id == responses.c.id).order_by(chain.c.depth.desc()))
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        items: list[dict[str, Any]] = []
        for inputs, outputs in rows:
            items.extend(orjson.loads(inputs))
            items.extend(orjson.loads(outputs))
        return items

    # -- conversations ------------------------------------------------------------------------

    async def create_conversation(self, owner: Owner, key_id: str, *, metadata: dict[str, str],
                                  items: list[dict[str, Any]]) -> dict[str, Any]:
        now = datetime.now(UTC)
        cid = new_conversation_id()
        async with self.db.engine.begin() as conn:
            await conn.execute(conversations.insert().values(
                id=cid, owner_kind=owner.kind, owner_id=owner.id, key_id=key_id, created_at=now, updated_at=now,
                metadata=_dumps(metadata), item_count=0,
            ))
            if items:
                await self._append(conn, owner, cid, items, now)
        return {"id": cid, "object": "conversation", "created_at": _epoch(now), "metadata": metadata}

    async def get_conversation(self, owner: Owner, conversation_id: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(conversations).where(
                conversations.c.id == conversation_id, _owned(conversations, owner)))).first()
        return conversation_object(row) if row is not None else None

    async def delete_conversation(self, owner: Owner, conversation_id: str) -> bool:
        async with self.db.engine.begin() as conn:
            found = await conn.scalar(select(conversations.c.id).where(
                conversations.c.id == conversation_id, _owned(conversations, owner)))
            if found is None:
                return False
            await conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id == found))
            await conn.execute(delete(conversations).where(conversations.c.id == found))
        return True

    async def all_items(self, owner: Owner, conversation_id: str) -> list[dict[str, Any]] | None:
        """Every item of a conversation, oldest first; None when it is not the owner's."""
        async with self.db.engine.connect() as conn:
            if not await self._exists(conn, owner, conversation_id):
                return None
            texts = (await conn.execute(select(conversation_items.c.item)
                                        .where(conversation_items.c.conversation_id == conversation_id)
                                        .order_by(conversation_items.c.seq))).scalars().all()
        return [orjson.loads(t) for t in texts]

    async def list_items(self, owner: Owner, conversation_id: str, *, limit: int, order: str,
                         after: str | None) -> Page | None:
        """One page of a conversation's items; None when it is not the owner's; `InvalidCursor`
        when `after` names no item of it."""
        c = conversation_items.c
        query = select(c.item).where(c.conversation_id == conversation_id)
        async with self.db.engine.connect() as conn:
            if not await self._exists(conn, owner, conversation_id):
                return None
            if after is not None:
                seq = await conn.scalar(select(func.min(c.seq)).where(c.conversation_id == conversation_id,
                                                                       c.item_id == after))
                if seq is None:
                    raise InvalidCursor(after)
                query = query.where(c.seq > seq if order == "asc" else c.seq < seq)
            query = query.order_by(c.seq.asc() if order == "asc" else c.seq.desc()).limit(limit + 1)
            texts = (await conn.execute(query)).scalars().all()
        return Page([orjson.loads(t) for t in texts[:limit]], len(texts) > limit)

    async def get_item(self, owner: Owner, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        c = conversation_items.c
        async with self.db.engine.connect() as conn:
            if not await self._exists(conn, owner, conversation_id):
                return None
            text = await conn.scalar(select(c.item).where(c.conversation_id == conversation_id, c.item_id == item_id)
                                     .order_by(c.seq).limit(1))
        return orjson.loads(text) if text is not None else None

    async def _exists(self, conn: AsyncConnection, owner: Owner, conversation_id: str) -> bool:
        found = await conn.scalar(select(conversations.c.id).where(
            conversations.c.id == conversation_id, _owned(conversations, owner)))
        return found is not None

    async def _append(self, conn: AsyncConnection, owner: Owner, conversation_id: str,
                      items: Sequence[dict[str, Any]], now: datetime) -> None:
        """Append items in order. The count is bumped first: that UPDATE takes the row's write
        lock, so concurrent appends to one conversation queue up instead of colliding on `seq`."""
        if not items:
            return
        result = await conn.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id, _owned(conversations, owner))
            .values(item_count=conversations.c.item_count + len(items), updated_at=now)
        )
        if not result.rowcount:
            return  # deleted meanwhile: nothing to append to
        count = int(await conn.scalar(select(conversations.c.item_count)
                                      .where(conversations.c.id == conversation_id)) or 0)
        first = count - len(items)
        await conn.execute(conversation_items.insert(), [
            {"conversation_id": conversation_id, "seq": first + n, "item_id": str(item.get("id") or ""),
             "created_at": now, "item": _dumps(item)}
            for n, item in enumerate(items)
        ])


async def prune(db: Database, before: datetime) -> tuple[int, int]:
    """Retention: delete responses created before `before` and conversations not added to since
    then (with their items). Returns (responses, conversations) deleted."""
    async with db.engine.begin() as conn:
        gone = await conn.execute(delete(responses).where(responses.c.created_at < before))
        old = select(conversations.c.id).where(conversations.c.updated_at < before).scalar_subquery()
        await conn.execute(delete(conversation_items).where(conversation_items.c.conversation_id.in_(old)))
        convs = await conn.execute(delete(conversations).where(conversations.c.updated_at < before))
    return int(gone.rowcount or 0), int(convs.rowcount or 0)
