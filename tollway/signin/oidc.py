"""The organisation's OpenID Connect identity provider, as a client (authorization code + PKCE).

Authlib builds the authorization URL (with the S256 code challenge) and speaks the token
endpoint; joserfc verifies the ID token's signature against the IdP's published JWKS and its
claims (iss, aud, exp, iat, nonce). Nothing here parses or checks a JWT by hand.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tollway.config import OidcConfig

log = logging.getLogger("tollway.signin")

_METADATA_TTL = 3600.0


class IdpError(Exception):
    """The IdP could not be used (unreachable, malformed answer, bad ID token)."""


class IdpRefused(Exception):
    """The IdP refused the grant (e.g. `invalid_grant` at refresh: the account is gone)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in, as the IdP told us, after validation."""

    issuer: str
    subject: str
    name: str
    email: str | None
    groups: tuple[str, ...]
    refresh_token: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


def _as_groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int))
    return ()


class IdentityProvider:
    def __init__(self, cfg: OidcConfig) -> None:
        self.cfg = cfg
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                resp = await http.get(url, headers={"accept": "application/json"})
                resp.raise_for_status()
                data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IdpError(f"cannot read {url}: {exc}") from None
        if not isinstance(data, dict):
            raise IdpError(f"{url} is not a JSON object")
        return data

    async def metadata(self) -> dict[str, Any]:
        """Issuer discovery (OIDC Discovery 1.0), cached for an hour; the issuer must match."""
        if self._metadata is None or time.monotonic() - self._metadata_at > _METADATA_TTL:
            meta = await self._get_json(self.cfg.issuer + "/.well-known/openid-configuration")
            if str(meta.get("issuer", "")).rstrip("/") != self.cfg.issuer:
                raise IdpError(f"discovery names issuer {meta.get('issuer')!r}, not {self.cfg.issuer!r}")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(name), str):
                    raise IdpError(f"discovery document has no {name}")
            self._metadata, self._metadata_at = meta, time.monotonic()
        return self._metadata

    async def _keyset(self, refetch: bool = False) -> KeySet:
        if self._keys is None or refetch:
            meta = await self.metadata()
            try:
                self._keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError) as exc:
                raise IdpError(f"the IdP's JWKS cannot be used: {exc}") from None
        return self._keys

    def _client(self, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.cfg.client_id, client_secret=self.cfg.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.cfg.client_secret else "none",
            scope=" ".join(self.cfg.scopes), redirect_uri=redirect_uri, code_challenge_method="S256", timeout=10.0,
        )

    async def authorization_url(self, redirect_uri: str, state: str, verifier: str, nonce: str) -> str:
        meta = await self.metadata()
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state,
                                                     code_verifier=verifier, nonce=nonce)
        return str(url)

    async def exchange(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> Identity:
        """Trade the authorization code (with the PKCE verifier) for a validated identity."""
        meta = await self.metadata()
        try:
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(meta["token_endpoint"], code=code, code_verifier=verifier,
                                                 grant_type="authorization_code")
        except OAuthError as exc:
            raise IdpRefused(f"the IdP refused the code: {exc.error}") from None
        except httpx.HTTPError as exc:
            raise IdpError(f"the IdP's token endpoint failed: {exc}") from None
        return await self._identity(dict(token), nonce)

    async def refresh(self, refresh_token: str) -> Identity | None:
        """Ask the IdP whether the account still exists; an identity when the answer holds an ID token."""
        meta = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.refresh_token(meta["token_endpoint"], refresh_token=refresh_token)
        except OAuthError as exc:
            raise IdpRefused(f"the IdP refused the refresh: {exc.error}") from None
        except httpx.HTTPError as exc:
            raise IdpError(f"the IdP's token endpoint failed: {exc}") from None
        token = dict(token)
        if "id_token" not in token:
            return None
        ident = await self._identity(token, None)
        return ident if ident.refresh_token else Identity(ident.issuer, ident.subject, ident.name, ident.email,
                                                          ident.groups, refresh_token, ident.claims)

    async def _identity(self, token: dict[str, Any], nonce: str | None) -> Identity:
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise IdpError("the IdP's token answer has no id_token (is the openid scope configured?)")
        claims = await self.validate(id_token, nonce)
        c = self.cfg.claims
        subject = str(claims["sub"])
        email = claims.get(c.email)
        name = claims.get(c.name) or email or subject
        return Identity(self.cfg.issuer, subject, str(name), str(email) if email else None,
                        _as_groups(claims.get(c.groups)), token.get("refresh_token"), claims)

    async def validate(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """Signature (JWKS, refetched once on an unknown key) and the claims OIDC Core §3.1.3.7 asks for."""
        try:
            decoded = jwt.decode(id_token, await self._keyset(), algorithms=self.cfg.algorithms)
        except JoseError:
            try:  # the IdP may have rotated its keys since we fetched them
                decoded = jwt.decode(id_token, await self._keyset(refetch=True), algorithms=self.cfg.algorithms)
            except JoseError as exc:
                raise IdpError(f"ID token signature rejected: {exc.error}") from None
        checks: dict[str, Any] = {
            "iss": {"essential": True, "value": self.cfg.issuer},
            "aud": {"essential": True, "value": self.cfg.client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        if nonce is not None:
            checks["nonce"] = {"essential": True, "value": nonce}
        try:
            jwt.JWTClaimsRegistry(leeway=60, **checks).validate(decoded.claims)
        except JoseError as exc:
            raise IdpError(f"ID token claims rejected: {exc.error} {exc.description or ''}".strip()) from None
        return dict(decoded.claims)
