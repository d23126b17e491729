"""What every sign-in endpoint shares: the config, the store, the IdP and the rate windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request

from tollway.config import SigninConfig
from tollway.governance.audit import AuditLog
from tollway.governance.identity import KeyCache
from tollway.signin.limits import PerIpWindow
from tollway.signin.oidc import IdentityProvider
from tollway.store.principals import Directory
from tollway.store.signin import SigninStore


@dataclass
class SigninContext:
    cfg: SigninConfig
    store: SigninStore
    directory: Directory
    keys: KeyCache
    idp: IdentityProvider
    page_limit: PerIpWindow
    token_limit: PerIpWindow
    fernet: Fernet | None = field(default=None)
    audit: AuditLog | None = field(default=None)

    def event(self, action: str, user_id: str | None, ip: str | None, **details: Any) -> None:
        """Audit a sign-in event (kind `signin`): who, from where, what — never a token or code,
        only ids (`ses_…`, `tok_…`) and outcomes."""
        if self.audit is not None:
            self.audit.record("signin", action=action, target=user_id,
                              actor={"user_id": user_id, "via": "signin", "remote_addr": ip},
                              details={k: v for k, v in details.items() if v is not None} or None)

    def base_url(self, request: Request) -> str:
        """Where browsers and Claude Code reach this gateway (the issuer)."""
        return (self.cfg.public_url or str(request.base_url)).rstrip("/")

    def seal(self, secret: str | None) -> str | None:
        """Encrypt an IdP refresh token for storage; None when no key is configured (then not kept)."""
        if secret is None or self.fernet is None:
            return None
        return self.fernet.encrypt(secret.encode()).decode()

    def unseal(self, sealed: str | None) -> str | None:
        if sealed is None or self.fernet is None:
            return None
        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:  # the key was changed: the stored token is useless, not an error
            return None


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def build_context(cfg: SigninConfig, keys: KeyCache, audit: AuditLog | None = None) -> SigninContext:
    assert cfg.oidc is not None
    return SigninContext(
        cfg, SigninStore(keys.db), Directory(keys.db), keys, IdentityProvider(cfg.oidc),
        PerIpWindow(cfg.page_rate_per_minute), PerIpWindow(cfg.token_rate_per_minute),
        Fernet(cfg.encryption_key.encode()) if cfg.encryption_key else None, audit,
    )
