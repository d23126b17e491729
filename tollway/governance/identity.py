"""Who is calling: key secrets, their hashes, and the in-memory principal cache.

Secrets are `tw-` plus 256 random bits, stored only as SHA-256: a key has far more entropy than
any password, so a slow hash would add cost per request and no safety. The data plane never
queries the database for a known key: a background task polls one version counter and rebuilds
the cache when any process (this one, another worker, the CLI) changed keys, users or groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tollway.governance.limits import LimitRule
from tollway.store.db import Database
from tollway.store.keys import KeyRow, KeyStore, NewKey
from tollway.store.principals import Directory, Snapshot

log = logging.getLogger("tollway.identity")

SECRET_PREFIX = "tw-"
DISPLAY_PREFIX_LEN = 10
_NEGATIVE_TTL = 1.0
_NEGATIVE_MAX = 10_000


class CredentialError(ValueError):
    """The request carries no usable credential (→ 401, whatever the plane)."""


def extract_credential(headers: Mapping[str, str]) -> str:
    """DECISIONS.md 6: Bearer wins; a present but malformed Authorization is final."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CredentialError("malformed Authorization header: expected 'Bearer <key>'")
        return token
    key = headers.get("x-api-key")
    if not key:
        raise CredentialError("missing API key: send it in x-api-key or Authorization: Bearer")
    return key


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LEN]


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity a request acts as, with everything access decisions need, precomputed."""

    key_id: str
    key_name: str
    kind: str
    user_id: str | None
    user_name: str | None
    group_id: str | None
    group_ids: tuple[str, ...]
    grants: tuple[str, ...]
    key_models: tuple[str, ...] | None
    expires_at: float | None
    # (group id, its grant patterns) in a stable order: the first group whose grants allow a
    # model is the one a personal key's request is metered and budgeted against.
    group_grants: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Memo of access decisions by model id; rebuilt with the principal on every cache reload.
    decisions: dict[str, bool] = field(default_factory=dict, compare=False, hash=False)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


async def create_key(
    keys: KeyStore, name: str, *, kind: str = "data", user_id: str | None = None, group_id: str | None = None,
    models: list[str] | None = None, expires_at: datetime | None = None,
) -> tuple[KeyRow, str]:
    """Create a key; the secret is returned once and never stored."""
    secret = new_secret()
    new = NewKey(name, display_prefix(secret), hash_secret(secret), kind, user_id, group_id, models, expires_at)
    return await keys.create(new), secret


async def rotate_key(keys: KeyStore, key_id: str, grace: timedelta) -> tuple[KeyRow, KeyRow, str]:
    """Replace a key's secret; the old one keeps working for `grace`. Returns (old, new, secret)."""
    secret = new_secret()
    old, new = await keys.rotate(key_id, display_prefix(secret), hash_secret(secret), grace)
    return old, new, secret


def _principals(snap: Snapshot, now: datetime) -> dict[str, Principal]:
    """Build the cache: keys of disabled users, revoked or expired keys are simply absent."""
    out: dict[str, Principal] = {}
    for key in snap.keys:
        if key.status(now) != "active":
            continue
        user = snap.users.get(key.user_id) if key.user_id else None
        if key.user_id and (user is None or user.disabled):
            continue
        group_ids = snap.member_of.get(key.user_id, ()) if key.user_id else ((key.group_id,) if key.group_id else ())
        patterns = tuple(dict.fromkeys(p for g in group_ids for p in snap.grants.get(g, ())))
        out[key.secret_hash] = Principal(
            key.id, key.name, key.kind, key.user_id, user.name if user else None, key.group_id, group_ids,
            patterns, key.models, key.expires_at.timestamp() if key.expires_at else None,
            tuple((g, snap.grants.get(g, ())) for g in sorted(group_ids)),
        )
    return out


def _limit_rules(snap: Snapshot) -> dict[tuple[str, str], LimitRule]:
    names: dict[str, dict[str, str]] = {
        "key": {k.id: k.name for k in snap.keys},
        "user": {u.id: u.name for u in snap.users.values()},
        "group": snap.group_names,
    }
    return {
        (r.scope, r.scope_id): LimitRule(r.scope, r.scope_id, names[r.scope].get(r.scope_id, r.scope_id), r.rpm,
                                         r.tpm, r.concurrent, r.budget_micros, r.budget_period or "month")
        for r in snap.limits
    }


class KeyCache:
    """Principals by key hash, kept fresh by polling the store's state version."""

    def __init__(self, db: Database, refresh_interval: float) -> None:
        self.db = db
        self.keys = KeyStore(db)
        self.directory = Directory(db)
        self.refresh_interval = refresh_interval
        self._by_hash: dict[str, Principal] = {}
        self.limit_rules: dict[tuple[str, str], LimitRule] = {}
        self.group_names: dict[str, str] = {}
        self._unknown: dict[str, float] = {}
        self._version = -1
        self._task: asyncio.Task[None] | None = None
        # A second source of personal credentials loaded with the keys: the access tokens that
        # developer sign-in mints (tollway/signin). They then authenticate exactly like keys.
        self.extra_keys: Callable[[datetime], Awaitable[list[KeyRow]]] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="tollway-key-cache")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        version, snap = await self.directory.snapshot()
        if version < self._version:
            return  # a concurrent reload already applied a newer snapshot: never go back
        if self.extra_keys is not None:
            snap = dataclasses.replace(snap, keys=[*snap.keys, *await self.extra_keys(datetime.now().astimezone())])
        self._by_hash = _principals(snap, datetime.now().astimezone())
        self.limit_rules = _limit_rules(snap)
        self.group_names = snap.group_names
        self._unknown.clear()
        self._version = version

    async def refresh(self) -> bool:
        """Reload if anything changed since the last load; True when it did."""
        if await self.db.state_version() != self._version:
            await self.reload()
            return True
        return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception:  # the store may be briefly down; keep serving from the cache
                log.warning("key cache refresh failed; serving the last known keys", exc_info=True)

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal for a secret, or None. A known key costs one hash and one dict lookup."""
        digest = hash_secret(secret)
        now = time.time()
        principal = self._by_hash.get(digest)
        if principal is not None:
            return None if principal.expired(now) else principal
        # Unknown here: it may have been created a moment ago by another process. One cheap
        # version check tells; misses are remembered briefly so a flood of bad keys cannot
        # hammer the database.
        mono = time.monotonic()
        if self._unknown.get(digest, 0.0) > mono:
            return None
        await self.refresh()
        # Looked up again whether or not this call reloaded: the poller may have reloaded while
        # it awaited the version, and then this refresh finds nothing new although the key is
        # now cached (a fresh key refused once with 401 under load, before this).
        principal = self._by_hash.get(digest)
        if principal is not None:
            return None if principal.expired(now) else principal
        if len(self._unknown) >= _NEGATIVE_MAX:
            self._unknown.clear()
        self._unknown[digest] = mono + _NEGATIVE_TTL
        return None
