"""The single ordered list of governance steps every surface goes through.

    authenticate -> resolve the model (404) -> model access (403) -> forward through the router

Surfaces call `admit` first (it needs only the headers, so a stranger's 32 MB body is never
read), then hand the validated canonical request to `messages` or `count_tokens`. Later steps
(limits, DLP, metering, audit) belong here and nowhere else, so no route can skip one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.config import ModelConfig
from tollway.governance.access import Catalogue
from tollway.governance.identity import CredentialError, KeyCache, Principal, extract_credential
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
    # The id the client asked for, and the one the upstream was sent (they differ for aliases).
    requested_model: str = ""
    upstream_model: str = ""

    @property
    def renamed(self) -> bool:
        return self.requested_model != self.upstream_model


class Pipeline:
    def __init__(self, keys: KeyCache, catalogue: Catalogue, router: Router) -> None:
        self.keys = keys
        self.catalogue = catalogue
        self.router = router

    async def admit(self, headers: Mapping[str, str]) -> Principal:
        """Authenticate a data-plane request (401 for anything but an active data key)."""
        try:
            secret = extract_credential(headers)
        except CredentialError as exc:
            raise GatewayError(401, str(exc)) from None
        principal = await self.keys.authenticate(secret)
        if principal is None:
            raise GatewayError(401, "invalid API key (unknown, revoked, expired, or its user is disabled)")
        if principal.kind != "data":
            raise GatewayError(401, "this is an admin key: it opens only the control plane (/admin/v1)")
        return principal

    def authorize(self, principal: Principal, requested: str) -> ModelConfig:
        """The catalogue model a request means: 404 when unknown, 403 when the key may not use it."""
        model = self.catalogue.resolve(requested)
        if model is None:
            raise GatewayError(404, f"model: {requested}")
        if not self.catalogue.allowed(principal, model.id):
            raise GatewayError(403, f"this API key is not allowed to use model {requested}")
        return model

    def visible_models(self, principal: Principal) -> list[ModelConfig]:
        return self.catalogue.visible(principal)

    def _prepare(self, call: Call) -> UpstreamRequest:
        requested = call.body["model"]
        model = self.authorize(call.principal, requested)
        route = self.router.get(model.id)
        assert route is not None, "every catalogue model has a route"
        call.route = route
        call.requested_model = requested
        call.upstream_model = route.model.upstream_model
        if call.upstream_model != requested:
            call.body["model"] = call.upstream_model
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
