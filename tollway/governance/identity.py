"""Who is calling: key secrets, their hashes, and the in-memory principal cache.

Secrets are `tw-` plus 256 random bits, stored only as SHA-256: a key has far more entropy than
any password, so a slow hash would add cost per request and no safety. The data plane never
queries the database for a known key: a background task polls one version counter and rebuilds
the cache when any process (this one, another worker, the CLI) changed keys, users or groups.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tollway.governance.limits import LimitRule
from tollway.store.db import Database, bounded
from tollway.store.keys import KeyRow, KeyStore, NewKey, lineage_roots
from tollway.store.principals import Directory, Snapshot

log = logging.getLogger("tollway.identity")

SECRET_PREFIX = "tw-"
DISPLAY_PREFIX_LEN = 10
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
    models: list[str] | None = None, expires_at: datetime | None = None, role: str | None = None,
    role_groups: Sequence[str] = (),
) -> tuple[KeyRow, str]:
    """Create a key; the secret is returned once and never stored. `role` only for admin keys."""
    secret = new_secret()
    new = NewKey(name, display_prefix(secret), hash_secret(secret), kind, user_id, group_id, models, expires_at,
                 role, role_groups)
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
    rows = {(r.scope, r.scope_id): r for r in snap.limits}
    roots = lineage_roots(snap.keys)
    out: dict[tuple[str, str], LimitRule] = {}
    for (scope, scope_id), r in rows.items():
        counter_id = roots.get(scope_id, scope_id) if scope == "key" else scope_id
        out[(scope, scope_id)] = LimitRule(scope, counter_id, names[scope].get(scope_id, scope_id), r.rpm, r.tpm,
                                           r.concurrent, r.budget_micros, r.budget_period or "month",
                                           r.budget_mode)
    # A rotated key without a row of its own keeps the limits of the nearest key it replaced.
    before = {k.replaced_by: k.id for k in snap.keys if k.replaced_by}
    for key in snap.keys:
        ancestor, steps = key.id, 0
        while ("key", key.id) not in out and ancestor in before and steps < len(before):
            steps += 1
            ancestor = before[ancestor]
            if ("key", ancestor) in out:
                out[("key", key.id)] = out[("key", ancestor)]
    return out


class KeyCache:
    """Principals by key hash, kept fresh by polling the store's state version.

    An unknown key costs no database query of its own. It may be a key another process created a
    moment ago, so it waits for a version check that started after it arrived — one check shared
    by every unknown key waiting at that moment, and at most one per `min_check_gap` seconds, so a
    flood of random keys costs a handful of queries a second. A key still unknown after that is
    remembered with the state version it was checked against; the entry is honoured only while
    the cache holds that version (every reload drops them all), so it never outlives a newer
    state: a key re-enabled elsewhere is seen as soon as the version moves. A check that fails or
    times out (the store down or hung) leaves the key unknown: 401, never a 500.

    `clock` (wall time, for expiry) and `monotonic` (for the check gap) are injectable so the
    tests can move time without sleeping.
    """

    def __init__(self, db: Database, refresh_interval: float, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, check_timeout: float = 1.0,
                 min_check_gap: float = 0.05) -> None:
        self.db = db
        self.keys = KeyStore(db)
        self.directory = Directory(db)
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.monotonic = monotonic
        self.check_timeout = check_timeout
        self.min_check_gap = min_check_gap
        self._by_hash: dict[str, Principal] = {}
        self.limit_rules: dict[tuple[str, str], LimitRule] = {}
        self.group_names: dict[str, str] = {}
        self._unknown: dict[str, int] = {}  # key hash -> the state version it was unknown at
        self._version = -1
        self._task: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None
        self._checks_started = 0
        self._check_at = float("-inf")
        self.version_checks = 0
        # A second source of personal credentials loaded with the keys: the access tokens that
        # developer sign-in mints (tollway/signin). They then authenticate exactly like keys.
        self.extra_keys: Callable[[datetime], Awaitable[list[KeyRow]]] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="tollway-key-cache")

    async def stop(self) -> None:
        """Stop polling; bounded, as a refresh stuck on a hung database may not end when cancelled."""
        for task in (self._task, self._check):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)

    async def reload(self) -> None:
        version, snap = await self.directory.snapshot()
        if version < self._version:
            return  # a concurrent reload already applied a newer snapshot: never go back
        snap_now = datetime.fromtimestamp(self.clock()).astimezone()
        if self.extra_keys is not None:
            snap = dataclasses.replace(snap, keys=[*snap.keys, *await self.extra_keys(snap_now)])
        self._by_hash = _principals(snap, snap_now)
        self.limit_rules = _limit_rules(snap)
        self.group_names = snap.group_names
        self._unknown.clear()
        self._version = version

    async def refresh(self) -> bool:
        """Reload if anything changed since the last load; True when it did."""
        self.version_checks += 1
        if await self.db.state_version() != self._version:
            await self.reload()
            return True
        return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await bounded(self.refresh(), max(self.refresh_interval, self.check_timeout) * 5)
            except Exception:  # the store may be briefly down; keep serving from the cache
                log.warning("key cache refresh failed; serving the last known keys", exc_info=True)

    async def _checked(self) -> None:
        try:
            await bounded(self.refresh(), self.check_timeout)
        except Exception as exc:  # the store is down or hung: the key stays unknown (401)
            log.warning("key cache: version check for an unknown key failed (%s)", type(exc).__name__)

    async def _fresh_check(self) -> None:
        """Return once a version check that started after this call has finished."""
        arrived = self._checks_started
        while True:
            task = self._check
            if task is not None and self._checks_started > arrived:
                await asyncio.wait({task})
                return
            if task is not None and not task.done():
                await asyncio.wait({task})  # it started before we arrived: wait, then a newer one
                continue
            gap = self._check_at + self.min_check_gap - self.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
                continue
            self._check_at = self.monotonic()
            self._checks_started += 1
            self._check = asyncio.ensure_future(self._checked())

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal for a secret, or None. A known key costs one hash and one dict lookup."""
        digest = hash_secret(secret)
        principal = self._by_hash.get(digest)
        if principal is not None:
            return None if principal.expired(self.clock()) else principal
        if self._unknown.get(digest) == self._version:
            return None
        await self._fresh_check()
        # Looked up again whether or not this call's check reloaded: the poller may have reloaded
        # meanwhile, and then the check finds nothing new although the key is now cached.
        principal = self._by_hash.get(digest)
        if principal is not None:
            return None if principal.expired(self.clock()) else principal
        if len(self._unknown) >= _NEGATIVE_MAX:
            self._unknown.clear()
        self._unknown[digest] = self._version
        return None
