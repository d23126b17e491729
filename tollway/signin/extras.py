"""The optional bearer endpoints Claude Code calls once signed in: `/managed/settings` (its
managed settings, per group, from the config) and the OTLP sinks `/v1/{metrics,logs,traces}`.

Both authenticate exactly like the data plane (keys or sign-in tokens, through the key cache)
and refuse in the Anthropic envelope, so Claude Code shows the message and prompts a sign-in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tollway.governance.identity import CredentialError, Principal, extract_credential
from tollway.signin.context import SigninContext
from tollway.surfaces.common import new_request_id
from tollway.surfaces.envelopes import error_response

log = logging.getLogger("tollway.signin")

_OTLP_MAX_BYTES = 8 * 1024 * 1024


def settings_checksum(settings: dict[str, Any]) -> str:
    """Claude Code's own value: SHA-256 of the JSON with keys sorted at every level, no whitespace."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class Extras:
    def __init__(self, ctx: SigninContext) -> None:
        self.ctx = ctx

    async def _principal(self, request: Request) -> Principal | Response:
        try:
            secret = extract_credential(request.headers)
        except CredentialError as exc:
            return error_response(401, str(exc), new_request_id())
        principal = await self.ctx.keys.authenticate(secret)
        if principal is None:
            return error_response(401, "invalid, expired or revoked credential; sign in again", new_request_id(),
                                  headers={"x-should-retry": "false"})
        return principal

    def _settings_for(self, principal: Principal) -> dict[str, Any] | None:
        """The first of the caller's groups (by name) that has settings wins; None when none has."""
        names = sorted(self.ctx.keys.group_names.get(g, g) for g in principal.group_ids)
        for name in names:
            if name in self.ctx.cfg.managed_settings:
                return self.ctx.cfg.managed_settings[name]
        return None

    async def managed_settings(self, request: Request) -> Response:
        found = await self._principal(request)
        if isinstance(found, Response):
            return found
        settings = self._settings_for(found)
        if settings is None:
            return error_response(404, "no managed settings for this user", new_request_id(), "not_found_error")
        checksum = settings_checksum(settings)
        etag = f'"{checksum}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        return JSONResponse({"uuid": checksum.removeprefix("sha256:")[:32], "checksum": checksum,
                             "settings": settings}, headers={"etag": etag})

    async def otlp(self, request: Request) -> Response:
        """Accept telemetry; forward it to the configured collector, or drop it. Never 404."""
        found = await self._principal(request)
        if isinstance(found, Response):
            return found
        body = await request.body()
        collector = self.ctx.cfg.otlp_collector
        if collector and len(body) <= _OTLP_MAX_BYTES:
            url = collector.rstrip("/") + request.url.path
            headers = {"content-type": request.headers.get("content-type", "application/x-protobuf")}
            try:
                async with httpx.AsyncClient(timeout=5.0) as http:
                    await http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:  # telemetry is best effort: the client is not told
                log.warning("OTLP forward to %s failed: %s", url, exc)
        return JSONResponse({}, headers={"content-type": "application/json"})
