"""The single ordered list of governance steps every surface goes through.

    authenticate -> resolve the model (404) -> forward through the router

Surfaces call `admit` first (it needs only the headers, so a stranger's 32 MB body is never
read), then hand the validated canonical request to `messages` or `count_tokens`. Later steps
(model access, limits, DLP, metering, audit) belong here and nowhere else, so no route can
skip one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.governance.identity import KeyCache, Principal
from tollway.upstream.base import UpstreamReply, UpstreamRequest
from tollway.upstream.router import Route, Router


class GatewayError(Exception):
    """A refusal the gateway originates; surfaces render it in their dialect's envelope."""

    def __init__(
        self, status: int, message: str, error_type: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}


@dataclass(slots=True)
class Call:
    """One data-plane request on its way through the pipeline, in canonical form."""

    request_id: str
    principal: Principal
    body: dict[str, Any]
    raw: bytes | None
    headers: Mapping[str, str]
    query: str = ""
    stream: bool = False
    route: Route | None = field(default=None)


def _credential(headers: Mapping[str, str]) -> str:
    """DECISIONS.md 6: Bearer wins; a present but malformed Authorization is final."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GatewayError(401, "malformed Authorization header: expected 'Bearer <key>'")
        return token
    key = headers.get("x-api-key")
    if not key:
        raise GatewayError(401, "missing API key: send it in x-api-key or Authorization: Bearer")
    return key


class Pipeline:
    def __init__(self, keys: KeyCache, router: Router) -> None:
        self.keys = keys
        self.router = router

    async def admit(self, headers: Mapping[str, str]) -> Principal:
        principal = await self.keys.authenticate(_credential(headers))
        if principal is None:
            raise GatewayError(401, "invalid API key")
        return principal

    def resolve(self, model_id: str) -> Route:
        route = self.router.get(model_id)
        if route is None:
            raise GatewayError(404, f"model: {model_id}")
        return route

    def _prepare(self, call: Call) -> UpstreamRequest:
        call.route = route = self.resolve(call.body["model"])
        upstream_model = route.model.upstream_model
        if upstream_model != call.body["model"]:
            call.body["model"] = upstream_model
            call.raw = None
        return UpstreamRequest(call.body, call.raw, call.headers, call.stream, call.query)

    async def messages(self, call: Call) -> UpstreamReply:
        req = self._prepare(call)
        assert call.route is not None
        return await call.route.upstream.messages(req)

    async def count_tokens(self, call: Call) -> UpstreamReply:
        req = self._prepare(call)
        assert call.route is not None
        return await call.route.upstream.count_tokens(req)

    async def store_reachable(self) -> bool:
        return await self.keys.db.ping()
