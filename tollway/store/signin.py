"""Rows of the developer sign-in: device authorizations, sessions, tokens and IdP identities.

Every state change that decides an outcome (a device code used, a refresh token rotated) is one
conditional UPDATE, so two workers racing on the same code cannot both win. Issuing or revoking
an access token bumps the state version, so every gateway process's key cache sees it within
one refresh interval (the same path keys take).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from tollway.store.db import Database
from tollway.store.keys import KeyRow
from tollway.store.tables import signin_devices, signin_identities, signin_sessions, signin_tokens, users


def _aware(ts: datetime | None) -> datetime | None:
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_hash: str
    user_code: str
    expires_at: datetime
    interval: int
    last_poll_at: datetime | None
    status: str
    user_id: str | None
    oidc_state: str | None
    code_verifier: str | None
    nonce: str | None
    idp_refresh: str | None
    surface: str | None


def _device(r: Any) -> DeviceRow:
    m = r._mapping
    return DeviceRow(m["device_hash"], m["user_code"], _aware(m["expires_at"]) or datetime.now(UTC), m["interval"],
                     _aware(m["last_poll_at"]), m["status"], m["user_id"], m["oidc_state"], m["code_verifier"],
                     m["nonce"], m["idp_refresh"], m["surface"])


@dataclass(frozen=True, slots=True)
class RefreshUse:
    """What presenting a refresh token found: `ok`, or why not (unknown, expired, replayed, revoked)."""

    outcome: str
    user_id: str | None = None
    session_id: str | None = None
    idp_refresh: str | None = None


class SigninStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- device authorizations -------------------------------------------------------------

    async def create_device(self, device_hash: str, user_code: str, expires_at: datetime, interval: int,
                            surface: str | None) -> bool:
        """False when the user code is already taken (the caller draws another)."""
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(signin_devices.insert().values(
                    device_hash=device_hash, user_code=user_code, created_at=datetime.now(UTC),
                    expires_at=expires_at, interval=interval, status="pending", surface=surface))
        except IntegrityError:
            return False
        return True

    async def device_by(self, *, user_code: str | None = None, state: str | None = None,
                        device_hash: str | None = None) -> DeviceRow | None:
        q = select(signin_devices)
        if user_code is not None:
            q = q.where(signin_devices.c.user_code == user_code)
        elif state is not None:
            q = q.where(signin_devices.c.oidc_state == state)
        else:
            q = q.where(signin_devices.c.device_hash == device_hash)
        async with self.db.engine.connect() as conn:
            r = (await conn.execute(q)).first()
        return _device(r) if r is not None else None

    async def start_login(self, device_hash: str, state: str, verifier: str, nonce: str) -> bool:
        async with self.db.engine.begin() as conn:
            res = await conn.execute(update(signin_devices).where(
                signin_devices.c.device_hash == device_hash, signin_devices.c.status == "pending")
                .values(oidc_state=state, code_verifier=verifier, nonce=nonce))
        return bool(res.rowcount)

    async def authenticated(self, device_hash: str, user_id: str, approval_hash: str,
                            idp_refresh: str | None) -> bool:
        """The person signed in at the IdP; the code now waits for their explicit approval."""
        async with self.db.engine.begin() as conn:
            res = await conn.execute(update(signin_devices).where(
                signin_devices.c.device_hash == device_hash, signin_devices.c.status == "pending")
                .values(status="authenticated", user_id=user_id, approval_hash=approval_hash,
                        idp_refresh=idp_refresh, oidc_state=None, code_verifier=None))
        return bool(res.rowcount)

    async def decide(self, approval_hash: str, approve: bool) -> DeviceRow | None:
        async with self.db.engine.begin() as conn:
            r = (await conn.execute(select(signin_devices).where(
                signin_devices.c.approval_hash == approval_hash,
                signin_devices.c.status == "authenticated"))).first()
            if r is None:
                return None
            await conn.execute(update(signin_devices).where(
                signin_devices.c.device_hash == r.device_hash, signin_devices.c.status == "authenticated")
                .values(status="approved" if approve else "denied", approval_hash=None))
        return _device(r)

    async def poll(self, device_hash: str, now: datetime) -> tuple[DeviceRow | None, bool]:
        """The device row, and whether this poll came sooner than the interval allows."""
        async with self.db.engine.begin() as conn:
            r = (await conn.execute(select(signin_devices).where(signin_devices.c.device_hash == device_hash))).first()
            if r is None:
                return None, False
            row = _device(r)
            too_fast = row.last_poll_at is not None and (now - row.last_poll_at).total_seconds() < row.interval
            await conn.execute(update(signin_devices).where(signin_devices.c.device_hash == device_hash)
                               .values(last_poll_at=now))
        return row, too_fast

    async def consume(self, device_hash: str) -> bool:
        """Single use: only one poll turns an approved code into tokens."""
        async with self.db.engine.begin() as conn:
            res = await conn.execute(update(signin_devices).where(
                signin_devices.c.device_hash == device_hash, signin_devices.c.status == "approved")
                .values(status="used", idp_refresh=None))
        return bool(res.rowcount)

    # -- identities -------------------------------------------------------------------------

    async def linked_user(self, issuer: str, subject: str) -> str | None:
        async with self.db.engine.connect() as conn:
            return await conn.scalar(select(signin_identities.c.user_id).where(
                signin_identities.c.issuer == issuer, signin_identities.c.subject == subject))

    async def user_by_email(self, email: str) -> str | None:
        async with self.db.engine.connect() as conn:
            return await conn.scalar(select(users.c.id).where(users.c.email == email))

    async def link(self, issuer: str, subject: str, user_id: str) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(signin_identities.insert().values(
                issuer=issuer, subject=subject, user_id=user_id, created_at=datetime.now(UTC)))

    # -- sessions and tokens ----------------------------------------------------------------

    async def create_session(self, user_id: str, idp_refresh: str | None, surface: str | None) -> str:
        sid = "ses_" + secrets.token_hex(8)
        async with self.db.engine.begin() as conn:
            await conn.execute(signin_sessions.insert().values(
                id=sid, user_id=user_id, created_at=datetime.now(UTC), idp_refresh=idp_refresh, surface=surface))
        return sid

    async def mint(self, session_id: str, user_id: str, access: tuple[str, str, datetime],
                   refresh: tuple[str, str, datetime], idp_refresh: str | None = None) -> str:
        """Store an access and a refresh token, each (hash, display prefix, expiry); returns the access id."""
        now = datetime.now(UTC)
        access_id = "tok_" + secrets.token_hex(8)
        async with self.db.engine.begin() as conn:
            for kind, (digest, prefix, expires), tid in (("access", access, access_id),
                                                        ("refresh", refresh, "rtk_" + secrets.token_hex(8))):
                await conn.execute(signin_tokens.insert().values(
                    secret_hash=digest, id=tid, kind=kind, session_id=session_id, user_id=user_id,
                    prefix=prefix, created_at=now, expires_at=expires))
            if idp_refresh is not None:
                await conn.execute(update(signin_sessions).where(signin_sessions.c.id == session_id)
                                   .values(idp_refresh=idp_refresh))
            await self.db.bump_state(conn)
        return access_id

    async def check_refresh(self, digest: str, now: datetime) -> RefreshUse:
        """What a presented refresh token is. One already spent is a replay: its session is revoked."""
        async with self.db.engine.begin() as conn:
            r = (await conn.execute(select(signin_tokens, signin_sessions.c.revoked_at.label("ses_revoked"),
                                           signin_sessions.c.idp_refresh)
                                    .join(signin_sessions, signin_sessions.c.id == signin_tokens.c.session_id)
                                    .where(signin_tokens.c.secret_hash == digest,
                                           signin_tokens.c.kind == "refresh"))).first()
            if r is None:
                return RefreshUse("unknown")
            m = r._mapping
            if m["ses_revoked"] is not None or m["revoked_at"] is not None:
                return RefreshUse("revoked", m["user_id"], m["session_id"])
            if m["used_at"] is not None:
                await self._revoke_session(conn, m["session_id"], now)
                return RefreshUse("replayed", m["user_id"], m["session_id"])
            if (_aware(m["expires_at"]) or now) <= now:
                return RefreshUse("expired", m["user_id"], m["session_id"])
        return RefreshUse("ok", m["user_id"], m["session_id"], m["idp_refresh"])

    async def spend_refresh(self, digest: str, now: datetime) -> bool:
        """Single use: False when another request spent it first."""
        async with self.db.engine.begin() as conn:
            res = await conn.execute(update(signin_tokens).where(signin_tokens.c.secret_hash == digest,
                                                                 signin_tokens.c.used_at.is_(None),
                                                                 signin_tokens.c.revoked_at.is_(None))
                                     .values(used_at=now))
        return bool(res.rowcount)

    async def _revoke_session(self, conn: Any, session_id: str, now: datetime) -> None:
        await conn.execute(update(signin_sessions).where(signin_sessions.c.id == session_id,
                                                         signin_sessions.c.revoked_at.is_(None))
                           .values(revoked_at=now))
        await conn.execute(update(signin_tokens).where(signin_tokens.c.session_id == session_id,
                                                       signin_tokens.c.revoked_at.is_(None))
                           .values(revoked_at=now))
        await self.db.bump_state(conn)

    async def revoke_session(self, session_id: str) -> str | None:
        """End a session and all its tokens; returns the session's user id (None if unknown)."""
        async with self.db.engine.begin() as conn:
            await self._revoke_session(conn, session_id, datetime.now(UTC))
            return await conn.scalar(select(signin_sessions.c.user_id).where(signin_sessions.c.id == session_id))

    async def session_of(self, digest: str) -> str | None:
        """The session a token (access or refresh) belongs to, for RFC 7009 revocation."""
        async with self.db.engine.connect() as conn:
            return await conn.scalar(select(signin_tokens.c.session_id).where(signin_tokens.c.secret_hash == digest))

    async def access_keys(self, now: datetime) -> list[KeyRow]:
        """Live access tokens as personal key rows, for the key cache (expiry is checked there too)."""
        q = select(signin_tokens).where(signin_tokens.c.kind == "access", signin_tokens.c.revoked_at.is_(None),
                                        signin_tokens.c.expires_at > now)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [KeyRow(r.id, "sign-in", r.prefix, r.secret_hash, _aware(r.created_at) or now, None, "data",
                       r.user_id, None, None, _aware(r.expires_at)) for r in rows]
