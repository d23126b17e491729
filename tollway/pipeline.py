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
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import orjson

from tollway.answer import Answer
from tollway.call import Call
from tollway.config import ModelConfig, Pricing
from tollway.governance.access import Catalogue, matches
from tollway.governance.audit import AuditLog
from tollway.governance.dlp import DlpEngine, DlpError
from tollway.governance.estimate import clamp_output
from tollway.governance.identity import CredentialError, KeyCache, Principal, extract_credential
from tollway.governance.limits import Estimate, Limiter, LimitsUnavailable, denial_message
from tollway.governance.metering import Meter, cost_micros
from tollway.observability import Metrics
from tollway.store.writebehind import refusing_writer
from tollway.upstream.base import UpstreamFailure, UpstreamReply, UpstreamRequest
from tollway.upstream.router import Deployment, Route, Router
from tollway.wire.errors import anthropic_type_for
from tollway.wire.refusal import Refusal
from tollway.wire.sse import Usage

if TYPE_CHECKING:
    from tollway.tracing import Tracing

log = logging.getLogger("tollway.access")
upstream_log = logging.getLogger("tollway.upstream")

# The refusal the gateway originates. One type for every refusal (wire/refusal.py); the old
# name stays for the call sites that read better with it.
GatewayError = Refusal
__all__ = ["METERED_ROUTES", "Call", "GatewayError", "Pipeline", "Refusal"]

METERED_ROUTES = ("messages", "count_tokens", "chat_completions", "responses",
                  # the cloud ingress (surfaces/bedrock.py, surfaces/vertex.py)
                  "bedrock_invoke", "bedrock_invoke_stream", "bedrock_count_tokens",
                  "vertex_raw_predict", "vertex_stream_raw_predict", "vertex_count_tokens")
INTERNAL_ERROR = "internal error in the gateway"
# An upstream id is the upstream's string: bounded before it is recorded (the column is 200).
MAX_UPSTREAM_ID = 200


def outcome_of(exc: BaseException) -> tuple[int, str]:
    """(status, error type) a call that ended with EXC is recorded as: a refusal as what the
    client sees, a cancellation (the client left, or shutdown) as 499, anything else as 500."""
    if isinstance(exc, Refusal):
        return exc.status, exc.error_type or anthropic_type_for(exc.status)
    if isinstance(exc, asyncio.CancelledError):
        return 499, "client_closed_request"
    return 500, "api_error"


RETRYABLE_STATUSES = frozenset((408, 429, 500, 502, 503, 504, 529))


def counts_as_failure(status: int, retry_after: float | None) -> bool:
    """Whether an upstream answer counts against its deployment's breaker (upstream/breaker.py):
    busy is not broken, so 408 and 429 never do, nor a 503/529 that says when to come back."""
    if status in (408, 429):
        return False
    return not (status in (503, 529) and retry_after is not None)


def _pricing(call: Call) -> Pricing:
    """The prices of what answered: the deployment's own `pricing` when it has one (one model may be
    served by clouds that charge differently), else the catalogue model's."""
    assert call.route is not None
    for d in call.route.deployments:
        if d.name == call.deployment and d.config.pricing is not None:
            return d.config.pricing
    return call.route.model.pricing


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
        if (writer := refusing_writer()) is not None:  # on_record_loss: refuse (docs/reliability.md)
            raise GatewayError(503, f"the gateway cannot keep its {writer} records right now; try again later")
        try:
            secret = extract_credential(call.headers)
        except CredentialError as exc:
            raise Refusal(401, str(exc)) from None
        principal = await self.keys.authenticate(secret)
        if principal is None:
            # x-should-retry: false — retrying cannot help; Claude Code prompts a new sign-in at once.
            raise Refusal(401, "invalid API key (unknown, revoked, expired, or its user is disabled)",
                          headers={"x-should-retry": "false"})
        if principal.kind != "data":
            raise Refusal(401, "this is an admin key: it opens only the control plane (/admin/v1)")
        call.principal = principal
        return principal

    async def done(self, call: Call, status: int = 200) -> None:
        """End a call the gateway answered itself (the model list, stored state)."""
        await self.finish(call, status, Usage(), None)

    async def refused(self, call: Call, exc: BaseException) -> None:
        """End a call that was refused or failed before its answer (a no-op if already ended)."""
        status, error_type = outcome_of(exc)
        await self.finish(call, status, Usage(), error_type)

    def authorize(self, principal: Principal, requested: str) -> ModelConfig:
        """The catalogue model a request means: 404 when unknown, 403 when the key may not use it."""
        model = self.catalogue.resolve(requested)
        if model is None:
            raise Refusal(404, f"model: {requested}")
        if not self.catalogue.allowed(principal, model.id):
            raise Refusal(403, f"this API key is not allowed to use model {requested}")
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
            if matches(patterns, model_id):
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

    def routes_for(self, call: Call) -> list[Route]:
        """The model's route, then each fallback the caller may use. A fallback the caller's grants
        do not cover is skipped, and the skip logged: a fallback never widens what a key reaches."""
        assert call.route is not None and call.principal is not None
        routes = [call.route]
        for fallback in call.route.model.fallbacks:
            route = self.router.get(fallback)
            if route is None:
                continue
            if not self.catalogue.allowed(call.principal, route.model.id):
                log.warning("fallback skipped: the caller may not use it", extra={
                    "request_id": call.request_id, "model": call.route.model.id, "fallback": route.model.id,
                    "key_id": call.principal.key_id})
                continue
            routes.append(route)
        return routes

    def _request_for(self, call: Call, deployment: Deployment) -> UpstreamRequest:
        """The request one deployment gets: the body's bytes as the surface made them (the client's
        own while nothing changed) while its model id is unchanged.
        Each attempt gets its own copy of the body, so what is recorded (usage, audit, payload
        capture) is what the deployment that answered was sent."""
        model = deployment.upstream_model
        body = call.body if call.body.get("model") == model else {**call.body, "model": model}
        raw = call.raw if model == call.requested_model else None
        return UpstreamRequest(body, raw, call.headers, call.stream, call.query, native=call.native)

    def _attempt_failed(self, call: Call, deployment: Deployment, attempt: int, failed: set[str],
                        status: int, error: str, counts: bool, upstream_id: str | None) -> None:
        """Book and log one failed attempt; its deployment's breaker hears of it once per request."""
        call.attempts.append({"deployment": deployment.name, "status": status, "error": error,
                              **({"upstream_request_id": upstream_id} if upstream_id else {})})
        upstream_log.warning("upstream attempt failed", extra={
            "request_id": call.request_id, "model": deployment.upstream_model, "deployment": deployment.name,
            "status": status, "error": error, "attempt": attempt, "upstream_request_id": upstream_id})
        if counts and deployment.name not in failed:
            failed.add(deployment.name)
            deployment.breaker.failure()

    async def _attempts(self, call: Call, kind: str) -> UpstreamReply:
        """Send to the model's deployments, then its fallbacks, retrying what may be retried.

        Retries happen only here, before anything reaches the client: on connection errors,
        timeouts, 429, 5xx and 529, with full-jitter exponential backoff that honours the
        upstream's retry-after, all within the retry deadline. Breakers are consulted only when
        the request has more than one deployment to choose from (a breaker exists to fail
        over), and each hears of a request's failures once. The last answer (or failure) is
        what the client gets when all fail, its message naming the model and deployment.
        """
        assert call.route is not None
        policy = self.router.retry
        deadline = call.started + policy.deadline
        routes = self.routes_for(call)
        use_breakers = sum(len(r.deployments) for r in routes) > 1
        last_reply: UpstreamReply | None = None
        last_failure: UpstreamFailure | None = None
        failed: set[str] = set()
        attempt_no = 0
        for route in routes:
            tried: set[str] = set()
            for attempt in range(policy.max_attempts):
                deployment = route.pick(tried, use_breakers)
                if deployment is None:
                    break  # every deployment of this model is open: go to the fallbacks
                tried.add(deployment.name)
                attempt_no += 1
                req = self._request_for(call, deployment)
                upstream = deployment.upstream
                wait: float | None = None
                try:
                    send = upstream.messages if kind == "messages" else upstream.count_tokens
                    reply = await (send(req) if call.trace is None else call.trace.attempt(call, deployment, req, send))
                except UpstreamFailure as failure:
                    self._attempt_failed(call, deployment, attempt_no, failed, failure.status, failure.error_type,
                                         True, None)
                    last_failure, last_reply = _naming(failure, route, deployment), None
                    call.route, call.deployment, call.upstream_model = route, deployment.name, deployment.upstream_model
                else:
                    call.route, call.deployment, call.upstream_model = route, deployment.name, deployment.upstream_model
                    call.body = req.body
                    call.upstream_request_id = _bounded(reply.request_id)
                    if reply.status not in RETRYABLE_STATUSES:
                        deployment.breaker.success()
                        if call.attempts:
                            call.attempts.append({"deployment": deployment.name, "status": reply.status})
                        return reply
                    wait = _retry_after(reply.headers.get("retry-after"))
                    self._attempt_failed(call, deployment, attempt_no, failed, reply.status, f"HTTP {reply.status}",
                                         counts_as_failure(reply.status, wait), call.upstream_request_id)
                    last_reply, last_failure = reply, None
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
        wait_s = min((d.breaker.retry_in() for r in routes for d in r.deployments), default=1.0)
        raise Refusal(529, f"every deployment of model {call.route.model.id} is unavailable (circuit open); "
                      "try again later", "overloaded_error", {"retry-after": str(max(1, math.ceil(wait_s)))})

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
            estimate = self.limiter.estimate(call.route, call.body, call.raw, p.key_id, call.size or None)
        try:
            ticket, denial = await self.limiter.admit(self.limiter.checks(rules, estimate, metered=metered), estimate)
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
            call.body, call.raw, call.native = result.body, None, None

    async def messages(self, call: Call) -> Answer:
        return await self._forward(call, "messages")

    async def count_tokens(self, call: Call) -> Answer:
        if not call.route_name.endswith("count_tokens"):  # the cloud ingress keeps its own name
            call.route_name = "count_tokens"
        return await self._forward(call, "count_tokens")

    async def _forward(self, call: Call, kind: str) -> Answer:
        """Run the steps and forward; the call is finished here unless the answer is a stream,
        whose `Answer.events()` finishes it (tollway/answer.py)."""
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
            await self.refused(call, exc)
            raise
        reply.headers.update(call.ticket.headers)
        reply.headers["server-timing"] = call.timing()
        if call.upstream_request_id:
            reply.headers["upstream-request-id"] = call.upstream_request_id
        answer = Answer(call, reply, self.finish)
        capture = self._captures(call)
        if not reply.streaming:
            if capture:
                call.captured = reply.body[: self.payload_max_bytes]
            ok = reply.status < 400 and kind == "messages"
            await self.finish(call, reply.status, _body_usage(reply.body) if ok else Usage(),
                              None if reply.status < 400 else "upstream_error")
            return answer
        answer.tap = self.limiter.tap(call.ticket, call.body.get("max_tokens"),
                                      call.route.model.pricing if call.route else None)
        if capture:
            answer.tap.capture, answer.tap.capture_limit = bytearray(), self.payload_max_bytes
            call.captured = answer.tap.capture
        return answer

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
        if clamp_output(usage, call.body.get("max_tokens"), call.request_id, call.upstream_model):
            error_type = error_type or "usage_clamped"
        cost = cost_micros(_pricing(call), usage) if model else 0
        p = call.principal
        requested = call.requested_model or (str(call.body.get("model")) if "model" in call.body else None)
        if p is not None and self.meter.enabled and call.route_name in METERED_ROUTES:
            self.meter.record(
                request_id=call.request_id, route=call.route_name, key_id=p.key_id, user_id=p.user_id,
                group_id=call.group_id, requested_model=requested or "", upstream_model=call.upstream_model,
                usage=usage, cost=cost, started=call.started, status=status, error_type=error_type,
                deployment=call.deployment, attempts=max(1, len(call.attempts)),
                upstream_request_id=call.upstream_request_id,
            )
        if self.audit.enabled:
            self._audit(call, status, usage, error_type, requested, cost)
        self._observe(call, status, usage, cost, requested, error_type)
        if call.trace is not None:
            call.trace.end(call, status, usage, cost, error_type)
        tokens = usage.input_tokens + usage.cache_creation_input_tokens + usage.output_tokens
        await self.limiter.settle(call.ticket, tokens, cost, usage, status == 200 and error_type is None)

    def _audit(self, call: Call, status: int, usage: Usage, error_type: str | None, requested: str | None,
               cost: int) -> None:
        p = call.principal
        self.audit.record(
            "request", self._payload(call), request_id=call.request_id, route=call.route_name,
            actor={"key_id": p.key_id, "user_id": p.user_id, "group_id": call.group_id} if p else None,
            requested_model=requested, upstream_model=call.upstream_model or None, status=status,
            error_type=error_type, deployment=call.deployment, attempts=call.attempts or None,
            upstream_request_id=call.upstream_request_id,
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
        m.requests.inc((route, label, str(status)))
        m.latency.observe((route,), now - call.started)
        if call.upstream_s is not None and call.answered is not None:
            m.upstream.observe((route,), call.upstream_s)
            m.overhead.observe((route,), call.answered - call.started - call.upstream_s)
        if cost:
            m.cost.inc((label,), cost / 1_000_000)
        for kind, n in (("input", usage.input_tokens), ("output", usage.output_tokens),
                        ("cache_write", usage.cache_creation_input_tokens),
                        ("cache_read", usage.cache_read_input_tokens)):
            if n:
                m.tokens.inc((label, kind), n)
        if self.access_log:
            p = call.principal
            log.info("request", extra={
                "request_id": call.request_id, "route": call.route_name, "status": status, "model": model,
                "key_id": p.key_id if p else None, "error_type": error_type,
                "latency_ms": round((now - call.started) * 1000, 2),
                "upstream_ms": round(call.upstream_s * 1000, 2) if call.upstream_s is not None else None,
            })


def _bounded(value: str | None) -> str | None:
    """An upstream's request id as recorded: NULs removed, at most MAX_UPSTREAM_ID characters."""
    if not value:
        return None
    value = value.replace("\x00", "")
    return value[:MAX_UPSTREAM_ID] or None


def _naming(failure: UpstreamFailure, route: Route, deployment: Deployment) -> UpstreamFailure:
    """The failure as the client sees it: its message names the model and deployment that failed."""
    return UpstreamFailure(failure.status, failure.error_type,
                           f"{failure.message} (model {route.model.id}, deployment {deployment.name})")
