"""The browser side of the device flow: enter the code, sign in at the IdP, approve.

RFC 8628 §5.4: a code in the link (`?user_code=`) only pre-fills the form, the person still
presses Continue; after the IdP sign-in they see which code they are approving and must press
Approve, so a link sent by someone else cannot sign them in unawares. The approval form carries
a one-time token only this page received, which is also what stops cross-site posts.
"""

from __future__ import annotations

import html
import logging
import secrets
from datetime import UTC, datetime

from authlib.common.security import generate_token
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tollway.signin import codes
from tollway.signin.context import SigninContext, client_ip
from tollway.signin.oidc import IdpError, IdpRefused
from tollway.signin.provisioning import admit

log = logging.getLogger("tollway.signin")

_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
          "input{font-size:1.4rem;letter-spacing:.2rem;text-transform:uppercase;padding:.3rem;width:12rem}"
          "button{font-size:1rem;padding:.4rem 1rem;margin:.5rem .5rem 0 0}.err{color:#a00}code{font-size:1.2rem}")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
           f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head>"
           f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(doc, status, headers=_HEADERS)


def _code_form(prefill: str, error: str | None = None) -> str:
    err = f"<p class=err id=error>{html.escape(error)}</p>" if error else ""
    return (f"{err}<p>Enter the code Claude Code shows you.</p>"
            "<form method=post action=/device><input name=user_code id=user_code autocomplete=off "
            f"value='{html.escape(prefill, quote=True)}' autofocus> <button type=submit id=continue>Continue"
            "</button></form><p>You will sign in with your organisation's identity provider.</p>")


class VerificationPage:
    def __init__(self, ctx: SigninContext) -> None:
        self.ctx = ctx

    def _limited(self, request: Request) -> Response | None:
        if self.ctx.page_limit.allow(client_ip(request)):
            return None
        return page("Too many attempts", "<p class=err>Too many attempts from your address. Wait a minute and "
                    "try again.</p>", 429)

    async def show(self, request: Request) -> Response:
        if (limited := self._limited(request)) is not None:
            return limited
        return page("Sign in to Tollway", _code_form(request.query_params.get("user_code", "")[:16]))

    async def submit(self, request: Request) -> Response:
        if (limited := self._limited(request)) is not None:
            return limited
        form = await request.form()
        typed = form.get("user_code")
        code = codes.normalise_user_code(typed) if isinstance(typed, str) else None
        row = await self.ctx.store.device_by(user_code=code) if code else None
        if row is None or row.status != "pending" or row.expires_at <= datetime.now(UTC):
            return page("Sign in to Tollway", _code_form(typed if isinstance(typed, str) else "",
                                                         "That code is not valid or has expired."), 400)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(24), generate_token(64)
        if not await self.ctx.store.start_login(row.device_hash, state, verifier, nonce):
            return page("Sign in to Tollway", _code_form("", "That code is no longer waiting."), 400)
        try:
            url = await self.ctx.idp.authorization_url(self._callback(request), state, verifier, nonce)
        except IdpError as exc:
            log.warning("sign-in: identity provider unavailable: %s", exc)
            return page("Sign-in unavailable", "<p class=err>The identity provider cannot be reached.</p>", 503)
        return RedirectResponse(url, 303, headers={"cache-control": "no-store"})

    def _callback(self, request: Request) -> str:
        return self.ctx.base_url(request) + "/device/callback"

    async def callback(self, request: Request) -> Response:
        if (limited := self._limited(request)) is not None:
            return limited
        q = request.query_params
        row = await self.ctx.store.device_by(state=q["state"]) if q.get("state") else None
        if row is None or row.status != "pending" or row.expires_at <= datetime.now(UTC):
            return page("Sign-in failed", "<p class=err>This sign-in is unknown or has expired. Start again "
                        "from Claude Code.</p>", 400)
        if q.get("error") or not q.get("code"):
            return page("Sign-in failed", "<p class=err>The identity provider did not sign you in.</p>", 400)
        assert row.code_verifier is not None and row.nonce is not None
        try:
            ident = await self.ctx.idp.exchange(q["code"], self._callback(request), row.code_verifier, row.nonce)
        except (IdpError, IdpRefused) as exc:
            log.warning("sign-in: identity provider sign-in failed: %s", exc)
            self.ctx.event("signin.refused", None, client_ip(request), reason="idp_answer_rejected")
            return page("Sign-in failed", "<p class=err>The identity provider's answer could not be "
                        "verified.</p>", 400)
        user = await admit(self.ctx, ident, client_ip(request))
        if user is None:
            return page("Account disabled", "<p class=err>Your Tollway account is disabled.</p>", 403)
        approval = secrets.token_urlsafe(32)
        if not await self.ctx.store.authenticated(row.device_hash, user.id, codes.digest(approval),
                                                  self.ctx.seal(ident.refresh_token)):
            return page("Sign-in failed", "<p class=err>This sign-in is no longer waiting.</p>", 400)
        who = html.escape(user.email or user.name)
        return page("Approve sign-in", (
            f"<p>Signed in as <b id=who>{who}</b>.</p><p>Claude Code on a device asks to act as you with the code"
            f" <code id=code>{html.escape(row.user_code)}</code>. Approve only if you started this sign-in and "
            "the code matches the one on your screen.</p><form method=post action=/device/decision>"
            f"<input type=hidden name=approval value='{approval}'>"
            "<button name=decision value=approve id=approve>Approve</button>"
            "<button name=decision value=deny id=deny>Deny</button></form>"))

    async def decide(self, request: Request) -> Response:
        if (limited := self._limited(request)) is not None:
            return limited
        form = await request.form()
        approval, decision = form.get("approval"), form.get("decision")
        if not isinstance(approval, str) or decision not in ("approve", "deny"):
            return page("Sign-in failed", "<p class=err>Incomplete form.</p>", 400)
        row = await self.ctx.store.decide(codes.digest(approval), decision == "approve")
        if row is None:
            return page("Sign-in failed", "<p class=err>This sign-in is no longer waiting.</p>", 400)
        self.ctx.event("signin.device_authorized" if decision == "approve" else "signin.device_denied", row.user_id,
                       client_ip(request), surface=row.surface)
        if decision == "deny":
            return page("Sign-in denied", "<p id=done>Denied. Claude Code will not be signed in.</p>")
        return page("Signed in", "<p id=done>You are signed in. Return to Claude Code.</p>")

