"""The single ordered list of governance steps every surface goes through.

    authenticate -> resolve the model (404) -> model access (403) -> limits and budget (429)
      -> DLP (400 block / redact / log; 500 if it cannot inspect) -> forward through the router
      (retries, deployments, fallbacks) -> settle limits, meter usage, audit

Surfaces call `admit` first (it needs only the headers, so a stranger's 32 MB body is never
read), then hand the validated canonical request to `messages` or `count_tokens`. Whatever
happens after `admit` — a refusal, an upstream error, a finished or abandoned stream — ends in
exactly one `finish`, which settles the reservation and writes the ledger record. Streams reach
it when the relay closes the upstream reply, so no surface can forget it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson

from tollway.config import ModelConfig
from tollway.governance.access import Catalogue
from tollway.governance.audit import AuditLog
from tollway.governance.dlp import DlpEngine, DlpError
from tollway.governance.identity import CredentialError, KeyCache, Principal, extract_credential
from tollway.governance.limits import Estimate, Limiter, LimitsUnavailable, Ticket, denial_message
from tollway.governance.metering import Meter, cost_micros, worst_case_micros
from tollway.observability import Metrics, server_timing
from tollway.upstream.base import UpstreamFailure, UpstreamReply, UpstreamRequest
from tollway.upstream.router import Deployment, Route, Router
from tollway.wire.errors import anthropic_type_for
from tollway.wire.messages_schema import RequestInvalid
from tollway.wire.openai_schema import ChatInvalid
from tollway.wire.sse import StreamTap, Usage
from tollway.wire.tokens import count_input_tokens

if TYPE_CHECKING:
    from tollway.tracing import CallTrace, Tracing

log = logging.getLogger("tollway.access")


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


METERED_ROUTES = ("messages", "count_tokens", "chat_completions", "responses")


@dataclass(slots=True)
class Call:
    """One data-plane request on its way through the pipeline, in canonical form."""

    request_id: str
    route_name: str
    headers: Mapping[str, str]
    client: dict[str, Any]
    principal: Principal | None = None
    body: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None
    query: str = ""
    stream: bool = False
    route: Route | None = field(default=None)
    # The id the client asked for, and the one the upstream was sent (they differ for aliases).
    requested_model: str = ""
    upstream_model: str = ""
    group_id: str | None = None
    ticket: Ticket = field(default_factory=Ticket)
    started: float = field(default_factory=time.perf_counter)
    finished: bool = False
    dlp: list[dict[str, Any]] = field(default_factory=list)
    # Which deployment answered, and every failed attempt before it (for usage and audit).
    deployment: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The answer's bytes, kept only when the paying group has payload capture on.
    captured: bytes | bytearray | None = None
    # Seconds the upstream took to answer (to its headers), and when the answer started here.
    upstream_s: float | None = None
    answered: float | None = None
    # The call's spans when tracing is on (tollway/tracing.py); None costs the hot path one test.
    trace: CallTrace | None = None

    def timing(self) -> str:
        """The Server-Timing value for a response starting now."""
        gateway = time.perf_counter() - self.started - (self.upstream_s or 0.0)
        return server_timing(gateway, self.upstream_s)

    @property
    def renamed(self) -> bool:
        return self.requested_model != self.upstream_model


def _status_type(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, GatewayError):
        return exc.status, exc.error_type or anthropic_type_for(exc.status)
    if isinstance(exc, RequestInvalid | ChatInvalid):
        return 400, "invalid_request_error"
    if isinstance(exc, UpstreamFailure):
        return exc.status, exc.error_type
    return 499, "client_closed_request"


RETRYABLE_STATUSES = frozenset((408, 429, 500, 502, 503, 504, 529))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a retry-after header (delta-seconds or an HTTP date), None when absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_usage(body: bytes) -> Usage:
    usage = Usage()
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        usage.update(orjson.loads(body).get("usage"))
    return usage


class Pipeline:
    def __init__(self, keys: KeyCache, catalogue: Catalogue, router: Router, limiter: Limiter,
                 meter: Meter, audit: AuditLog, metrics: Metrics, dlp: DlpEngine | None,
                 access_log: bool = True, payload_groups: frozenset[str] = frozenset(),
                 payload_max_bytes: int = 1 << 20) -> None:
        self.dlp = dlp
        self.payload_groups = payload_groups
        self.payload_max_bytes = payload_max_bytes
        self.keys = keys
        self.catalogue = catalogue
        self.router = router
        self.limiter = limiter
        self.meter = meter
        self.audit = audit
        self.metrics = metrics
        self.access_log = access_log
        self.tracer: Tracing | None = None  # set by the app when tracing is enabled

    # -- authentication and access ----------------------------------------------------------

    def begin(self, request_id: str, route_name: str, headers: Mapping[str, str], client: dict[str, Any]) -> Call:
        """Open a call; from here on it ends in exactly one `finish` (audit, and ledger once admitted)."""
        call = Call(request_id, route_name, headers, client)
        if self.tracer is not None:
            self.tracer.begin(call)
        return call

    async def admit(self, call: Call) -> Principal:
        """Authenticate a data-plane request (401 for anything but an active data key)."""
        try:
            secret = extract_credential(call.headers)
        except CredentialError as exc:
            raise GatewayError(401, str(exc)) from None
        principal = await self.keys.authenticate(secret)
        if principal is None:
            raise GatewayError(401, "invalid API key (unknown, revoked, expired, or its user is disabled)")
        if principal.kind != "data":
            raise GatewayError(401, "this is an admin key: it opens only the control plane (/admin/v1)")
        call.principal = principal
        return principal

    async def done(self, call: Call, status: int = 200) -> None:
        """End a call the gateway answered itself (the model list)."""
        await self.finish(call, status, Usage(), None)

    async def refused(self, call: Call, exc: BaseException) -> None:
        """End a call that was refused before or while forwarding (a no-op if already ended)."""
        status, error_type = _status_type(exc)
        await self.finish(call, status, Usage(), error_type)

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

    async def store_reachable(self) -> bool:
        return await self.keys.db.ping()

    @staticmethod
    def paying_group(principal: Principal, model_id: str) -> str | None:
        """A service key's group; for a personal key, the first of its groups that grants the model."""
        if principal.group_id:
            return principal.group_id
        for group_id, patterns in principal.group_grants:
            if any(p == model_id or fnmatchcase(model_id, p) for p in patterns):
                return group_id
        return None

    # -- the steps ------------------------------------------------------------------------------

    def _prepare(self, call: Call) -> None:
        assert call.principal is not None, "admit() comes first"
        requested = call.body["model"]
        call.requested_model = call.upstream_model = requested
        model = self.authorize(call.principal, requested)
        route = self.router.get(model.id)
        assert route is not None, "every catalogue model has a route"
        call.route = route
        call.group_id = self.paying_group(call.principal, model.id)

    def _request_for(self, call: Call, deployment: Deployment) -> UpstreamRequest:
        """The request one deployment gets: the client's bytes while its model id is unchanged."""
        call.upstream_model = deployment.upstream_model
        call.body["model"] = deployment.upstream_model
        raw = call.raw if deployment.upstream_model == call.requested_model else None
        return UpstreamRequest(call.body, raw, call.headers, call.stream, call.query)

    async def _attempts(self, call: Call, kind: str) -> UpstreamReply:
        """Send to the model's deployments, then its fallbacks, retrying what may be retried.

        Retries happen only here, before anything reaches the client: on connection errors,
        timeouts, 429, 5xx and 529, with full-jitter exponential backoff that honours the
        upstream's retry-after, all within the retry deadline. A deployment's breaker records
        every outcome. The last answer (or failure) is what the client gets when all fail.
        """
        assert call.route is not None
        policy = self.router.retry
        deadline = call.started + policy.deadline
        routes = [call.route] + [r for f in call.route.model.fallbacks if (r := self.router.get(f)) is not None]
        last_reply: UpstreamReply | None = None
        last_failure: UpstreamFailure | None = None
        for route in routes:
            tried: set[str] = set()
            for attempt in range(policy.max_attempts):
                now = time.monotonic()
                deployment = route.pick(tried, now)
                if deployment is None:
                    break  # every deployment of this model is open: go to the fallbacks
                tried.add(deployment.name)
                call.route, call.deployment = route, deployment.name
                req = self._request_for(call, deployment)
                upstream = deployment.upstream
                wait: float | None = None
                try:
                    send = upstream.messages if kind == "messages" else upstream.count_tokens
                    reply = await (send(req) if call.trace is None else call.trace.attempt(call, deployment, req, send))
                except UpstreamFailure as failure:
                    deployment.breaker.failure(time.monotonic())
                    call.attempts.append({"deployment": deployment.name, "status": failure.status,
                                          "error": failure.error_type})
                    last_failure, last_reply = failure, None
                else:
                    if reply.status not in RETRYABLE_STATUSES:
                        deployment.breaker.success()
                        if call.attempts:
                            call.attempts.append({"deployment": deployment.name, "status": reply.status})
                        return reply
                    if reply.status not in (408, 429):  # busy is not broken: only failures trip the breaker
                        deployment.breaker.failure(time.monotonic())
                    call.attempts.append({"deployment": deployment.name, "status": reply.status})
                    last_reply, last_failure = reply, None
                    wait = _retry_after(reply.headers.get("retry-after"))
                self.metrics.child(self.metrics.breaker, deployment.name).set(1 if deployment.breaker.open else 0)
                if attempt + 1 == policy.max_attempts:
                    break
                delay = wait if wait is not None else random.uniform(0, min(policy.max_delay,
                                                                            policy.base_delay * 2 ** attempt))
                if time.perf_counter() + delay >= deadline:
                    break
                self.metrics.child(self.metrics.retries, route.model.id).inc()
                await asyncio.sleep(delay)
        if last_reply is not None:
            return last_reply
        if last_failure is not None:
            raise last_failure
        raise GatewayError(503, "every deployment of this model is unavailable (circuit open); try again later",
                           "overloaded_error")

    async def _reserve(self, call: Call, metered: bool) -> None:
        p = call.principal
        assert p is not None
        scopes = [("key", p.key_id, p.key_name)]
        if p.user_id:
            scopes.append(("user", p.user_id, p.user_name or p.user_id))
        if call.group_id:
            scopes.append(("group", call.group_id, self.keys.group_names.get(call.group_id, call.group_id)))
        rules = self.limiter.rules(self.keys.limit_rules, scopes)
        if not rules:
            return
        estimate = Estimate(0, 0, 0)
        if metered and any(r.tpm is not None or r.budget_micros is not None for r in rules):
            assert call.route is not None
            model = call.route.model
            counted = count_input_tokens(call.body)
            # The mock counts exactly as the local count does; other upstreams get the margin.
            exact = all(d.provider == "mock" for d in call.route.deployments)
            margin = 1.0 if exact else self.limiter.config.estimate_margin
            input_tokens = math.ceil(counted * margin)
            max_tokens = int(call.body.get("max_tokens") or 0)
            estimate = Estimate(input_tokens, max_tokens, worst_case_micros(model.pricing, input_tokens, max_tokens))
        try:
            ticket, denial = await self.limiter.admit(self.limiter.checks(rules, estimate, metered=metered))
        except LimitsUnavailable:
            raise GatewayError(529, "rate limiting is unavailable; the request was refused (fail_closed)",
                               "overloaded_error") from None
        if denial is not None:
            headers = {"retry-after": str(max(1, round(denial.retry_after)))}
            if denial.check.kind == "budget":
                headers["x-should-retry"] = "false"
            raise GatewayError(429, denial_message(denial), "rate_limit_error", headers)
        call.ticket = ticket

    async def _inspect(self, call: Call) -> None:
        """DLP over everything the upstream will see. Fails closed: an engine error refuses the call."""
        if self.dlp is None:
            return
        p = call.principal
        assert p is not None
        ids = (p.group_id,) if p.group_id else p.group_ids
        names = [self.keys.group_names.get(g, g) for g in ids]
        try:
            result = await self.dlp.ainspect(call.body, names)
        except DlpError as exc:
            log.error("DLP inspection failed; refusing the request", extra={"request_id": call.request_id,
                                                                            "reason": str(exc)})
            if exc.status == 413:  # too large to scan in its budget: the same request would fail again
                raise GatewayError(413, str(exc), exc.error_type, {"x-should-retry": "false"}) from None
            raise GatewayError(500, "the request could not be inspected for data loss prevention and was not "
                               "forwarded", "api_error") from None
        if not result.findings:
            return
        call.dlp = [{"kind": f.kind, "category": f.category, "action": f.action, "where": f.where, "count": f.count}
                    for f in result.findings]
        for f in result.findings:
            self.metrics.child(self.metrics.dlp, f.kind, f.action).inc(f.count)
        if result.blocked:
            kinds = ", ".join(sorted(set(result.blocked_kinds)))
            raise GatewayError(400, f"blocked by DLP policy '{result.policy}': the request contains {kinds}",
                               "invalid_request_error", {"x-should-retry": "false"})
        if result.changed:
            call.body, call.raw = result.body, None

    async def messages(self, call: Call) -> UpstreamReply:
        return await self._forward(call, "messages")

    async def count_tokens(self, call: Call) -> UpstreamReply:
        call.route_name = "count_tokens"
        return await self._forward(call, "count_tokens")

    async def _forward(self, call: Call, kind: str) -> UpstreamReply:
        try:
            self._prepare(call)
            # count_tokens costs nothing upstream: it takes only request and concurrency limits.
            await self._reserve(call, metered=kind == "messages")
            await self._inspect(call)
            sent = time.perf_counter()
            reply = await self._attempts(call, kind)
            call.answered = time.perf_counter()
            call.upstream_s = call.answered - sent
        except BaseException as exc:
            status, error_type = _status_type(exc)
            await self.finish(call, status, Usage(), error_type)
            raise
        reply.headers.update(call.ticket.headers)
        reply.headers["server-timing"] = call.timing()
        capture = self._captures(call)
        if not reply.streaming:
            if capture:
                call.captured = reply.body[: self.payload_max_bytes]
            ok = reply.status < 400 and kind == "messages"
            await self.finish(call, reply.status, _body_usage(reply.body) if ok else Usage(),
                              None if reply.status < 400 else "upstream_error")
            return reply
        tap = reply.tap = StreamTap()
        if capture:
            tap.capture, tap.capture_limit = bytearray(), self.payload_max_bytes
            call.captured = tap.capture

        async def close() -> None:
            # 499 (client closed) when the stream ended neither with message_stop nor an error.
            status = 200 if tap.saw_stop or tap.error else 499
            await self.finish(call, status, tap.final_usage(), tap.error if tap.error else
                              (None if tap.saw_stop else "stream_incomplete"))

        reply.aclose = close
        return reply

    def _captures(self, call: Call) -> bool:
        return bool(self.payload_groups) and self.keys.group_names.get(call.group_id or "") in self.payload_groups

    def _payload(self, call: Call) -> dict[str, Any] | None:
        """Request (as forwarded: after DLP redaction) and response bodies for payload capture."""
        if not call.body or not self._captures(call):
            return None
        request = orjson.dumps(call.body)[: self.payload_max_bytes].decode("utf-8", "replace")
        response = bytes(call.captured).decode("utf-8", "replace") if call.captured is not None else None
        return {"request_id": call.request_id, "ts": time.time(), "request_body": request, "response_body": response}

    async def finish(self, call: Call, status: int, usage: Usage, error_type: str | None) -> None:
        """Settle the reservation, write the ledger and audit records: exactly once per call."""
        if call.finished:
            return
        call.finished = True
        model = call.route.model if call.route else None
        cost = cost_micros(model.pricing, usage) if model else 0
        p = call.principal
        requested = call.requested_model or (str(call.body.get("model")) if "model" in call.body else None)
        if p is not None and self.meter.enabled and call.route_name in METERED_ROUTES:
            self.meter.record(
                request_id=call.request_id, route=call.route_name, key_id=p.key_id, user_id=p.user_id,
                group_id=call.group_id, requested_model=requested or "", upstream_model=call.upstream_model,
                usage=usage, cost=cost, started=call.started, status=status, error_type=error_type,
                deployment=call.deployment, attempts=max(1, len(call.attempts)),
            )
        if self.audit.enabled:
            self._audit(call, status, usage, error_type, requested, cost)
        self._observe(call, status, usage, cost, requested, error_type)
        if call.trace is not None:
            call.trace.end(call, status, usage, cost, error_type)
        tokens = usage.input_tokens + usage.cache_creation_input_tokens + usage.output_tokens
        await self.limiter.settle(call.ticket, tokens, cost)

    def _audit(self, call: Call, status: int, usage: Usage, error_type: str | None, requested: str | None,
               cost: int) -> None:
        p = call.principal
        self.audit.record(
            "request", self._payload(call), request_id=call.request_id, route=call.route_name,
            actor={"key_id": p.key_id, "user_id": p.user_id, "group_id": call.group_id} if p else None,
            requested_model=requested, upstream_model=call.upstream_model or None, status=status,
            error_type=error_type, deployment=call.deployment, attempts=call.attempts or None,
            usage={"input": usage.input_tokens, "output": usage.output_tokens,
                   "cache_write": usage.cache_creation_input_tokens, "cache_read": usage.cache_read_input_tokens},
            cost_micros=cost, latency_ms=int((time.perf_counter() - call.started) * 1000), client=call.client,
            dlp=call.dlp or None,
        )

    def _observe(self, call: Call, status: int, usage: Usage, cost: int, model: str | None,
                 error_type: str | None) -> None:
        m = self.metrics
        now = time.perf_counter()
        # The catalogue id of the model that answered (a fallback's, after a fallback), never the
        # string the client sent: glob aliases and 404s would let a client mint series at will.
        label = call.route.model.id if call.route is not None else "-"
        route = call.route_name
        m.child(m.requests, route, label, str(status)).inc()
        m.child(m.latency, route).observe(now - call.started)
        if call.upstream_s is not None and call.answered is not None:
            m.child(m.upstream, route).observe(call.upstream_s)
            m.child(m.overhead, route).observe(call.answered - call.started - call.upstream_s)
        if cost:
            m.child(m.cost, label).inc(cost / 1_000_000)
        for kind, n in (("input", usage.input_tokens), ("output", usage.output_tokens),
                        ("cache_write", usage.cache_creation_input_tokens),
                        ("cache_read", usage.cache_read_input_tokens)):
            if n:
                m.child(m.tokens, label, kind).inc(n)
        if self.access_log:
            p = call.principal
            log.info("request", extra={
                "request_id": call.request_id, "route": call.route_name, "status": status, "model": model,
                "key_id": p.key_id if p else None, "error_type": error_type,
                "latency_ms": round((now - call.started) * 1000, 2),
                "upstream_ms": round(call.upstream_s * 1000, 2) if call.upstream_s is not None else None,
            })
