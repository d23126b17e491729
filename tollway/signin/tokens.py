"""The OAuth 2.0 endpoints Claude Code calls: RFC 8414 metadata, RFC 8628 device authorization,
the token endpoint (device and refresh grants) and RFC 7009 revocation.

Errors are `{"error", "error_description"}` as RFC 6749 §5.2 has them, never the Anthropic
envelope. Refusing a refresh with 401 `invalid_grant` is how Claude Code learns to send its
user through sign-in again: that is the deprovisioning hook.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tollway.signin import codes
from tollway.signin.context import SigninContext, client_ip
from tollway.signin.oidc import IdpError, IdpRefused
from tollway.signin.provisioning import sync_groups
from tollway.store.errors import NotFound

log = logging.getLogger("tollway.signin")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    """The form fields as strings; unknown fields are ignored (RFC 6749 §3.2, RFC 8628 §3.1)."""
    try:
        form = await request.form()
    except Exception:
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


class TokenEndpoints:
    def __init__(self, ctx: SigninContext) -> None:
        self.ctx = ctx

    async def metadata(self, request: Request) -> Response:
        base = self.ctx.base_url(request)
        return JSONResponse({
            "issuer": base,
            "device_authorization_endpoint": base + "/oauth/device_authorization",
            "token_endpoint": base + "/oauth/token",
            "revocation_endpoint": base + "/oauth/revoke",
            "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
        })

    async def device_authorization(self, request: Request) -> Response:
        if not self.ctx.token_limit.allow(client_ip(request)):
            return oauth_error("slow_down", "too many sign-in requests from this address", 429)
        form = await _form(request)
        surface = (form.get("surface") or "")[:40] or None
        device_code = codes.new_device_code()
        expires = datetime.now(UTC) + timedelta(seconds=self.ctx.cfg.device_code_ttl)
        for _ in range(5):
            user_code = codes.new_user_code()
            if await self.ctx.store.create_device(codes.digest(device_code), user_code, expires,
                                                  self.ctx.cfg.poll_interval, surface):
                break
        else:
            return oauth_error("temporarily_unavailable", "could not allocate a user code", 503)
        verify = self.ctx.base_url(request) + "/device"
        return JSONResponse({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verify,
            "verification_uri_complete": f"{verify}?user_code={user_code}",
            "expires_in": int(self.ctx.cfg.device_code_ttl),
            "interval": self.ctx.cfg.poll_interval,
        }, headers=NO_STORE)

    async def token(self, request: Request) -> Response:
        if not self.ctx.token_limit.allow(client_ip(request)):
            return oauth_error("slow_down", "too many token requests from this address", 429)
        form = await _form(request)
        grant = form.get("grant_type")
        ip = client_ip(request)
        if grant == DEVICE_GRANT:
            return await self._device_grant(form.get("device_code") or "", ip)
        if grant == "refresh_token":
            return await self._refresh_grant(form.get("refresh_token") or "", ip)
        return oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported here")

    async def _device_grant(self, device_code: str, ip: str) -> Response:
        now = datetime.now(UTC)
        device_hash = codes.digest(device_code)
        row, too_fast = await self.ctx.store.poll(device_hash, now)
        if row is None or row.status == "used":
            return oauth_error("invalid_grant", "unknown or already used device_code")
        if row.status == "denied":
            return oauth_error("access_denied", "the sign-in was denied in the browser")
        if row.expires_at <= now:
            return oauth_error("expired_token", "the device code expired; start the sign-in again")
        if row.status != "approved":
            if too_fast:
                return oauth_error("slow_down", f"poll at most every {row.interval} s")
            return oauth_error("authorization_pending", "waiting for the person to approve in the browser")
        if not await self.ctx.store.consume(device_hash):
            return oauth_error("invalid_grant", "the device code was already used")
        assert row.user_id is not None
        user = await self.ctx.directory.get_user(row.user_id)
        if user.disabled:
            self.ctx.event("signin.refused", user.id, ip, reason="user_disabled")
            return oauth_error("access_denied", "this user is disabled in Tollway")
        session = await self.ctx.store.create_session(user.id, row.idp_refresh, row.surface)
        log.info("sign-in: session %s issued to user %s", session, user.id)
        return await self._issue(session, user.id, user.email, ip=ip, action="signin.token_issued")

    async def _issue(self, session: str, user_id: str, email: str | None, idp_refresh: str | None = None, *,
                     ip: str, action: str) -> Response:
        now = datetime.now(UTC)
        access, refresh = codes.new_access_token(), codes.new_refresh_token()
        token_id = await self.ctx.store.mint(
            session, user_id,
            (codes.digest(access), access[:codes.PREFIX_LEN], now + timedelta(seconds=self.ctx.cfg.access_token_ttl)),
            (codes.digest(refresh), refresh[:codes.PREFIX_LEN],
             now + timedelta(seconds=self.ctx.cfg.refresh_token_ttl)),
            idp_refresh,
        )
        self.ctx.event(action, user_id, ip, session=session, token_id=token_id)
        # Make the new token usable on this process at once, not a refresh interval later.
        await self.ctx.keys.refresh()
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                "expires_in": int(self.ctx.cfg.access_token_ttl), "refresh_token": refresh}
        if email:
            body["email"] = email
        return JSONResponse(body, headers=NO_STORE)

    async def _refresh_grant(self, refresh_token: str, ip: str) -> Response:
        now = datetime.now(UTC)
        digest = codes.digest(refresh_token)
        found = await self.ctx.store.check_refresh(digest, now)
        if found.outcome != "ok":
            self.ctx.event("signin.refresh_refused", found.user_id, ip, reason=found.outcome,
                           session=found.session_id)
            return oauth_error("invalid_grant", f"refresh token {found.outcome}; sign in again", 401)
        assert found.user_id is not None and found.session_id is not None
        try:
            user = await self.ctx.directory.get_user(found.user_id)
        except NotFound:
            user = None
        if user is None or user.disabled:
            await self.ctx.store.revoke_session(found.session_id)
            self.ctx.event("signin.refresh_refused", found.user_id, ip, reason="user_disabled",
                           session=found.session_id)
            return oauth_error("invalid_grant", "this user is disabled in Tollway; sign in again", 401)
        new_idp_refresh: str | None = None
        idp_refresh = self.ctx.unseal(found.idp_refresh)
        if idp_refresh is not None:
            try:
                ident = await self.ctx.idp.refresh(idp_refresh)
            except IdpRefused:
                log.info("sign-in: the IdP no longer accepts user %s; session %s revoked", user.id, found.session_id)
                await self.ctx.store.revoke_session(found.session_id)
                self.ctx.event("user.deprovisioned", user.id, ip, reason="idp_refused_refresh",
                               session=found.session_id)
                return oauth_error("invalid_grant", "the identity provider no longer accepts this account", 401)
            except IdpError as exc:
                log.warning("sign-in refresh: identity provider unavailable: %s", exc)
                return oauth_error("temporarily_unavailable", "the identity provider cannot be reached", 503)
            if ident is not None:
                joined, left = await sync_groups(self.ctx.directory, user.id, ident.groups, self.ctx.cfg)
                if joined or left:
                    self.ctx.event("user.groups_synced", user.id, ip, joined=list(joined), left=list(left))
                if ident.refresh_token and ident.refresh_token != idp_refresh:
                    new_idp_refresh = self.ctx.seal(ident.refresh_token)
        if not await self.ctx.store.spend_refresh(digest, now):
            await self.ctx.store.revoke_session(found.session_id)
            self.ctx.event("signin.refresh_refused", user.id, ip, reason="replayed", session=found.session_id)
            return oauth_error("invalid_grant", "refresh token already used; sign in again", 401)
        return await self._issue(found.session_id, user.id, None, new_idp_refresh, ip=ip,
                                 action="signin.token_refreshed")

    async def revoke(self, request: Request) -> Response:
        """RFC 7009: revoking either token ends the whole session; unknown tokens answer 200 too."""
        if not self.ctx.token_limit.allow(client_ip(request)):
            return oauth_error("slow_down", "too many requests from this address", 429)
        token = (await _form(request)).get("token") or ""
        session = await self.ctx.store.session_of(codes.digest(token)) if token else None
        if session is not None:
            user_id = await self.ctx.store.revoke_session(session)
            self.ctx.event("signin.token_revoked", user_id, client_ip(request), session=session)
            await self.ctx.keys.refresh()
        return Response(status_code=200, headers=NO_STORE)
