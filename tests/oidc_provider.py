"""A small OpenID Connect provider on loopback, for the sign-in tests.

What a real IdP does on the paths Tollway uses: discovery, a JWKS holding an RSA key generated
with `cryptography`, an authorize endpoint that shows a login form (the "scriptable login": a
browser fills in a username and password from `users`), and a token endpoint that checks the
client's secret and the PKCE verifier (S256) and answers RS256-signed ID tokens and refresh
tokens. `remove_user` makes the account disappear, so the next refresh is refused with
`invalid_grant` as an IdP does for a deprovisioned person.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.loopback import LoopbackServer


@dataclass
class IdpUser:
    password: str
    email: str
    name: str
    groups: list[str] = field(default_factory=list)


class OidcProvider(LoopbackServer):
    thread_name = "oidc-provider"

    def __init__(self, client_id: str, client_secret: str) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-" + secrets.token_hex(4)
        self.key = RSAKey.import_key(private, {"kid": self.kid, "use": "sig", "alg": "RS256"})
        self.users: dict[str, IdpUser] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, str] = {}  # refresh token -> username
        self._lock = threading.Lock()
        self.pkce_checked = 0  # authorization codes redeemed with a matching S256 verifier
        self.refreshes = 0
        self._server: asyncio.Server | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await super()._close()

    def remove_user(self, username: str) -> None:
        with self._lock:
            self.users.pop(username, None)

    # ----- the server -----
    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/authorize", self._login)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None
        self._server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
        })

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="bad client or response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.Response(status=400, text="PKCE (S256) is required")
        hidden = "".join(f"<input type=hidden name={k} value='{html.escape(v, quote=True)}'>" for k, v in q.items())
        return web.Response(content_type="text/html", text=(
            "<!doctype html><title>Test IdP</title><form method=post action=/authorize>"
            f"{hidden}<input name=username id=username><input name=password id=password type=password>"
            "<button id=signin>Sign in</button></form>"))

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        user = self.users.get(username)
        if user is None or user.password != password:
            return web.Response(status=401, content_type="text/html", text="<p id=bad>wrong password</p>")
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {k: str(form.get(k, "")) for k in
                                 ("redirect_uri", "nonce", "code_challenge", "client_id", "scope")}
            self._codes[code]["username"] = username
        target = str(form["redirect_uri"]) + "?" + urlencode({"code": code, "state": str(form.get("state", ""))})
        raise web.HTTPFound(target)

    def _client_ok(self, request: web.Request, form: Any) -> bool:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            cid, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        return cid == self.client_id and secret == self.client_secret

    def _id_token(self, username: str, nonce: str | None) -> str:
        user = self.users[username]
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": "sub-" + username, "aud": self.client_id,
                                  "iat": now, "exp": now + 300, "email": user.email,
                                  "preferred_username": user.name, "groups": list(user.groups)}
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": self.kid}, claims, self.key)

    def _tokens(self, username: str, nonce: str | None) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(24)
        self._refresh[refresh] = username
        return {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                "refresh_token": refresh, "id_token": self._id_token(username, nonce)}

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._client_ok(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        with self._lock:
            if form.get("grant_type") == "authorization_code":
                grant = self._codes.pop(str(form.get("code", "")), None)
                if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                    return web.json_response({"error": "invalid_grant"}, status=400)
                verifier = str(form.get("code_verifier", ""))
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if challenge != grant["code_challenge"]:
                    return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
                self.pkce_checked += 1
                return web.json_response(self._tokens(grant["username"], grant["nonce"]))
            if form.get("grant_type") == "refresh_token":
                username = self._refresh.pop(str(form.get("refresh_token", "")), None)
                if username is None or username not in self.users:
                    return web.json_response({"error": "invalid_grant"}, status=400)
                self.refreshes += 1
                return web.json_response(self._tokens(username, None))
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
