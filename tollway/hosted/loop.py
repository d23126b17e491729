"""The hosted-tool loop of `/v1/responses` (README "Hosted tools"): run the model's hosted calls,
call the model again, until it answers, calls a client function, or `hosted_tools.max_iterations`
model calls were made.

Each model call is a full pipeline call (limits, DLP over the tool results, metering, audit)
with its own request id: the client's for the first, `<id>-h<n>` for the n-th. Each tool run is
audited like a model call (who, which tool, how long, the outcome; never its arguments or
output, which may hold data). When the client leaves, the tool runs or the model call under
way are cancelled (the surface's `guard`, `while_connected`) and the loop ends.

Which tools a request may use is the access policy's (`governance.access.tool_allowed`); this
module only selects them (`hosted_tools`) and runs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.answer import Answer
from tollway.call import Call
from tollway.governance.access import tool_allowed
from tollway.governance.identity import Principal
from tollway.hosted.registry import Outcome, Registry
from tollway.hosted.tool import PREFIX, HostedTool
from tollway.pipeline import Pipeline
from tollway.wire.anthropic_to_responses import response_output_items
from tollway.wire.refusal import Refusal
from tollway.wire.responses_items import ResponsesInvalid

HOSTED_ALL = "tollway_tools"  # every hosted tool the key may use (README "Hosted tools")
HOSTED_ITEM = "mcp_call"  # the output item a hosted call appears as

# Awaits work while the client is connected: its result, or None once the client left.
Guard = Callable[[Awaitable[Any], "Call | None"], Awaitable[Any]]


def hosted_tools(tools: Any, registry: Registry | None, principal: Principal) -> list[HostedTool]:
    """The hosted tools a request's `tollway_*` tool types ask for: `tollway_tools` is every one
    the key may use; a named one must exist (else 400 `unsupported_tool_type`) and be allowed
    (else 403 `tool_access_denied`)."""
    if not isinstance(tools, list):
        return []
    available = registry.tools if registry is not None else {}
    chosen: dict[str, HostedTool] = {}
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or not kind.startswith(PREFIX):
            continue
        if kind == HOSTED_ALL:
            for name, hosted in available.items():
                if tool_allowed(principal, name):
                    chosen.setdefault(name, hosted)
            continue
        found = available.get(kind)
        if found is None:
            known = ", ".join(f"'{n}'" for n in (HOSTED_ALL, *sorted(available)))
            raise ResponsesInvalid(f"Tool type '{kind[:100]}' is not a hosted tool of this gateway. Hosted tool "
                                   f"types: {known}.", f"tools[{i}].type", "unsupported_tool_type")
        if not tool_allowed(principal, kind):
            raise Refusal(403, f"this API key is not allowed to use the hosted tool {kind}",
                          code="tool_access_denied", param=f"tools[{i}].type")
        chosen[kind] = found
    return list(chosen.values())


def hosted_items(message: dict[str, Any], base: str, hosted: dict[str, str],
                 outcomes: dict[str, Outcome] | None) -> list[dict[str, Any]]:
    """Output items of one model message, its hosted calls as `mcp_call` items.

    HOSTED maps hosted tool name → server label; OUTCOMES maps tool_use id → Outcome; a hosted
    call without one was not run (`incomplete`)."""
    items = response_output_items(message, response_id=base)
    uses = {b.get("id"): b for b in message.get("content") or () if isinstance(b, dict) and b.get("type") == "tool_use"}
    out: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") != "function_call" or item.get("name") not in hosted:
            out.append(item)
            continue
        use = uses.get(item.get("call_id"), {})
        outcome = (outcomes or {}).get(str(use.get("id")))
        out.append({
            "id": "mcp_" + str(item["id"]).split("_", 1)[-1], "type": HOSTED_ITEM, "server_label": hosted[item["name"]],
            "name": item["name"], "arguments": item["arguments"],
            "output": None if outcome is None or outcome.is_error else outcome.text,
            "error": outcome.text if outcome is not None and outcome.is_error else None,
            "status": "incomplete" if outcome is None else ("failed" if outcome.is_error else "completed"),
        })
    return out


def _add_usage(total: dict[str, int], usage: Any) -> None:
    if isinstance(usage, dict):
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value


async def _run_audited(pipeline: Pipeline, registry: Registry, call: Call, use: dict[str, Any]) -> Outcome:
    """Run one hosted call and audit it (module doc)."""
    started = time.perf_counter()
    p = call.principal

    def audit(status: str, output_chars: int) -> None:
        pipeline.audit.record(
            "hosted_tool", request_id=call.request_id, route="responses", tool=str(use["name"]),
            actor={"key_id": p.key_id, "user_id": p.user_id, "group_id": call.group_id} if p else None,
            status=status, output_chars=output_chars, latency_ms=int((time.perf_counter() - started) * 1000),
        )

    try:
        outcome = await registry.run(str(use["name"]), use.get("input"))
    except asyncio.CancelledError:  # the client left while the tool ran: it ran, so it is audited
        audit("cancelled", 0)
        raise
    audit("error" if outcome.is_error else "ok", len(outcome.text or ""))
    return outcome


@dataclass(slots=True)
class LoopEnd:
    """How the loop ended: the last answer, and what it gathered on the way."""

    answer: Answer
    message: dict[str, Any] | None = None  # the last answer's message; None when it is not one
    items: list[dict[str, Any]] = field(default_factory=list)  # the earlier iterations' output items
    usage: dict[str, int] = field(default_factory=dict)  # summed over every model call
    capped: bool = False  # stopped by max_iterations with hosted calls still pending
    left: bool = False  # the client left


async def hosted_loop(pipeline: Pipeline, registry: Registry, call: Call, answer: Answer, *, names: frozenset[str],
                      response_id: str, max_iterations: int, guard: Guard) -> LoopEnd:
    """Run the loop (module doc) from the first model ANSWER."""
    principal, requested, request_id = call.principal, call.requested_model, call.request_id
    servers = {name: registry.tools[name].server for name in names}
    end = LoopEnd(answer)
    iteration = 1
    while True:
        if answer.status >= 400:
            return end
        try:
            message = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or message.get("type") != "message":
            return end
        end.message = message
        _add_usage(end.usage, message.get("usage"))
        uses = [b for b in message.get("content") or () if isinstance(b, dict) and b.get("type") == "tool_use"]
        hosted = [u for u in uses if u.get("name") in names]
        if not hosted or len(hosted) != len(uses) or iteration >= max_iterations:
            end.capped = bool(hosted) and len(hosted) == len(uses)
            return end  # an answer, a client function call (the client's turn), or the cap
        outcomes = await guard(asyncio.gather(*(_run_audited(pipeline, registry, call, u) for u in hosted)), None)
        if outcomes is None:
            end.left = True
            return end
        by_id = {str(u["id"]): o for u, o in zip(hosted, outcomes, strict=True)}
        end.items.extend(hosted_items(message, f"{response_id}/h{iteration}", servers, by_id))
        results = [{"type": "tool_result", "tool_use_id": str(u["id"]), "content": o.text or "(no output)",
                    **({"is_error": True} if o.is_error else {})} for u, o in zip(hosted, outcomes, strict=True)]
        body = {**call.body, "model": requested,
                "messages": [*call.body["messages"], {"role": "assistant", "content": message["content"]},
                             {"role": "user", "content": results}]}
        iteration += 1
        call = pipeline.begin(f"{request_id}-h{iteration}", "responses", call.headers, call.client)
        call.principal, call.body, call.stream = principal, body, False
        answered = await guard(pipeline.messages(call), call)
        if answered is None:
            end.left = True
            return end
        answer = end.answer = answered
        end.message = None
