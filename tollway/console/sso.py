"""Single sign-on into the console: the OIDC authorization-code flow of tollway/signin (its
IdP client and just-in-time provisioning, reused as they are), ending in a Tollway access token
for that person, which the console then sends to the admin API as `Authorization: Bearer`.

The flow's state, PKCE verifier and nonce travel in a short-lived HttpOnly cookie scoped to the
callback path, so any gateway worker can finish a sign-in another one started; the `state` in
the callback must equal the cookie's (the cross-site request check). The token is minted as a
sign-in session (surface `console`), like Claude Code's: revocable, hashed at rest, expiring.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from authlib.common.security import generate_token
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tollway.console import pages
from tollway.governance.audit import AuditLog
from tollway.signin import codes
from tollway.signin.context import SigninContext, client_ip
from tollway.signin.oidc import IdpError, IdpRefused
from tollway.signin.provisioning import admit

log = logging.getLogger("tollway.console")
COOKIE = "tollway_console_login"
CALLBACK = "/console/callback"
LOGIN_TTL = 600


class ConsoleSignin:
    def __init__(self, ctx: SigninContext, audit: AuditLog) -> None:
        self.ctx, self.audit = ctx, audit

    def _callback(self, request: Request) -> str:
        return self.ctx.base_url(request) + CALLBACK

    async def login(self, request: Request) -> Response:
        if not self.ctx.page_limit.allow(client_ip(request)):
            return pages.message("Too many attempts", "Too many sign-in attempts from your address; wait a minute.",
                                 429)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(24), generate_token(64)
        try:
            url = await self.ctx.idp.authorization_url(self._callback(request), state, verifier, nonce)
        except IdpError as exc:
            log.warning("console sign-in: identity provider unavailable: %s", exc)
            return pages.message("Sign-in unavailable", "The identity provider cannot be reached.", 503)
        resp = RedirectResponse(url, 303, headers={"cache-control": "no-store"})
        resp.set_cookie(COOKIE, f"{state}.{verifier}.{nonce}", max_age=LOGIN_TTL, path=CALLBACK, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
        return resp

    async def callback(self, request: Request) -> Response:
        if not self.ctx.page_limit.allow(client_ip(request)):
            return pages.message("Too many attempts", "Too many sign-in attempts from your address; wait a minute.",
                                 429)
        parts = request.cookies.get(COOKIE, "").split(".")
        q = request.query_params
        if len(parts) != 3 or not secrets.compare_digest(parts[0], q.get("state", "")):
            return self._done(pages.message("Sign-in failed", "This sign-in is unknown or has expired. Start again "
                                            "from the console.", 400))
        if q.get("error") or not q.get("code"):
            return self._done(pages.message("Sign-in failed", "The identity provider did not sign you in.", 400))
        _, verifier, nonce = parts
        try:
            ident = await self.ctx.idp.exchange(q["code"], self._callback(request), verifier, nonce)
        except (IdpError, IdpRefused) as exc:
            log.warning("console sign-in: identity provider sign-in failed: %s", exc)
            return self._done(pages.message("Sign-in failed", "The identity provider's answer could not be "
                                            "verified.", 400))
        user = await admit(self.ctx, ident, client_ip(request))
        if user is None:
            return self._done(pages.message("Account disabled", "Your Tollway account is disabled.", 403))
        token = await self._mint(user.id)
        self.audit.change("console.sign_in", user.id, {"user_id": user.id, "via": "console_sso",
                                                       "remote_addr": client_ip(request)}, issuer=ident.issuer)
        log.info("console sign-in: user %s", user.id)
        return self._done(pages.handoff(token, user.name, user.email, int(self.ctx.cfg.access_token_ttl)))

    async def _mint(self, user_id: str) -> str:
        """An access token (and its session) for the console; its refresh token is not handed out:
        when the access token expires the person signs in again."""
        now = datetime.now(UTC)
        access, refresh = codes.new_access_token(), codes.new_refresh_token()
        session = await self.ctx.store.create_session(user_id, None, "console")
        await self.ctx.store.mint(
            session, user_id,
            (codes.digest(access), access[:codes.PREFIX_LEN], now + timedelta(seconds=self.ctx.cfg.access_token_ttl)),
            (codes.digest(refresh), refresh[:codes.PREFIX_LEN], now + timedelta(seconds=self.ctx.cfg.access_token_ttl)),
        )
        await self.ctx.keys.refresh()  # usable on this process at once
        return access

    @staticmethod
    def _done(resp: Response) -> Response:
        resp.delete_cookie(COOKIE, path=CALLBACK)
        return resp
