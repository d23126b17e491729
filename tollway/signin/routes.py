"""The sign-in routes, for the app factory to add when `signin.enabled` is on."""

from __future__ import annotations

from starlette.routing import Route

from tollway.config import SigninConfig
from tollway.governance.audit import AuditLog
from tollway.governance.identity import KeyCache
from tollway.signin.context import build_context
from tollway.signin.extras import Extras
from tollway.signin.pages import VerificationPage
from tollway.signin.tokens import TokenEndpoints


def signin_routes(cfg: SigninConfig, keys: KeyCache, audit: AuditLog | None = None) -> list[Route]:
    """Routes, and the key cache taught to load sign-in access tokens beside keys. Sign-in events
    (authorised, issued, refreshed, revoked, refused, provisioned) go to AUDIT."""
    ctx = build_context(cfg, keys, audit)
    keys.extra_keys = ctx.store.access_keys
    oauth, pages, extras = TokenEndpoints(ctx), VerificationPage(ctx), Extras(ctx)
    return [
        Route("/.well-known/oauth-authorization-server", oauth.metadata, methods=["GET"]),
        Route("/oauth/device_authorization", oauth.device_authorization, methods=["POST"]),
        Route("/oauth/token", oauth.token, methods=["POST"]),
        Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
        Route("/device", pages.show, methods=["GET"]),
        Route("/device", pages.submit, methods=["POST"]),
        Route("/device/callback", pages.callback, methods=["GET"]),
        Route("/device/decision", pages.decide, methods=["POST"]),
        Route("/managed/settings", extras.managed_settings, methods=["GET"]),
        Route("/v1/metrics", extras.otlp, methods=["POST"]),
        Route("/v1/logs", extras.otlp, methods=["POST"]),
        Route("/v1/traces", extras.otlp, methods=["POST"]),
    ]
