"""What each cloud accepts of the Anthropic Messages API: one table, applied by every cloud adapter.

Claude Code and the SDKs send `anthropic-beta` values and newer fields that Anthropic's own API
takes but a cloud may not yet; Bedrock and Vertex answer an unknown beta with a 400, which a user
sees as a broken gateway (the peers' most reported cloud breakage). So before a request leaves
for a cloud:

* **betas** not in the provider's table are dropped (a warning the first time a value is dropped
  for a provider, and the `tollway_compat_dropped_total` counter every time — never a 400 for the
  user); some are renamed to the cloud's name for the same feature. `extra_betas` in an
  upstream's config adds values the table does not know yet;
* **fields** that need a dropped beta are removed (`context_management` without the
  context-management beta, `defer_loading` on tools without a tool-search beta…), and
  `cache_control.ttl` is removed where the cloud takes it only with the extended-TTL beta;
* **model ids** are normalised: Claude Code's `[1m]` suffix becomes the 1M-context beta, and a
  Bedrock cross-region prefix (`us.`, `eu.`, `global.`…) is removed for clouds that do not use one.

The table is documented in docs/providers.md ("Compatibility table"); each entry has a test in
tests/test_compat.py. Pure functions and a counter: no I/O.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tollway.upstream.compat")

CONTEXT_1M = "context-1m-2025-08-07"
EXTENDED_TTL = "extended-cache-ttl-2025-04-11"
TOOL_SEARCH = ("tool-search-tool-2025-10-19", "advanced-tool-use-2025-11-20")


@dataclass(frozen=True, slots=True)
class CloudPolicy:
    """One provider's row of the table."""

    provider: str
    # accepted beta value -> the value the cloud wants for it (usually the same)
    betas: dict[str, str]
    # the cloud takes cache_control.ttl only when EXTENDED_TTL is among the betas sent
    ttl_needs_beta: bool
    # "[1m]" model suffixes and region prefixes
    strip_region_prefix: bool
    notes: dict[str, str] = field(default_factory=dict)


def _same(*values: str) -> dict[str, str]:
    return {v: v for v in values}


POLICIES: dict[str, CloudPolicy] = {
    # Bedrock InvokeModel's documented beta list for Anthropic models (the anthropic_beta body field).
    "bedrock": CloudPolicy(
        "bedrock",
        {**_same("computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
                 "token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14", "output-128k-2025-02-19",
                 "dev-full-thinking-2025-05-14", CONTEXT_1M, "context-management-2025-06-27", "effort-2025-11-24",
                 "tool-search-tool-2025-10-19", "tool-examples-2025-10-29",
                 "fine-grained-tool-streaming-2025-05-14"),
         "advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19"},
        ttl_needs_beta=True, strip_region_prefix=False,
    ),
    # Vertex AI rawPredict (the anthropic-beta header).
    "vertex": CloudPolicy(
        "vertex",
        {**_same("computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
                 "interleaved-thinking-2025-05-14", CONTEXT_1M, "context-management-2025-06-27",
                 "tool-search-tool-2025-10-19", "web-search-2025-03-05"),
         "advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19"},
        ttl_needs_beta=True, strip_region_prefix=True,
    ),
    # Microsoft Foundry: the Anthropic API itself, less the betas Foundry does not serve.
    "foundry": CloudPolicy(
        "foundry",
        _same("claude-code-20250219", "computer-use-2025-01-24", "computer-use-2025-11-24",
              "interleaved-thinking-2025-05-14", CONTEXT_1M, "context-management-2025-06-27", "effort-2025-11-24",
              "advanced-tool-use-2025-11-20", "tool-search-tool-2025-10-19", "code-execution-2025-08-25",
              "files-api-2025-04-14", "mcp-client-2025-04-04", "mcp-client-2025-11-20", "skills-2025-10-02",
              "structured-outputs-2025-11-13", "web-fetch-2025-09-10", "web-search-2025-03-05",
              "prompt-caching-scope-2026-01-05", EXTENDED_TTL),
        ttl_needs_beta=False, strip_region_prefix=True,
    ),
}

# Top-level body fields that only exist with one of these betas: removed when none of them is sent.
BETA_FIELDS: dict[str, tuple[str, ...]] = {
    "context_management": ("context-management-2025-06-27",),
    "mcp_servers": ("mcp-client-2025-04-04", "mcp-client-2025-11-20"),
    "container": ("code-execution-2025-08-25", "skills-2025-10-02"),
    "output_format": ("structured-outputs-2025-11-13",),
}
# Fields of a tool definition that only exist with one of these betas.
TOOL_FIELD_BETAS: dict[str, tuple[str, ...]] = {
    "defer_loading": TOOL_SEARCH,
    "input_examples": ("tool-examples-2025-10-29", "advanced-tool-use-2025-11-20"),
}

_ONE_M = re.compile(r"\[1m\]$", re.IGNORECASE)
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|au|jp|us-gov|global)\.(?=anthropic\.|claude)")


# ---------------------------------------------------------------------------------------------
# What was dropped: counted always, logged once per (provider, what, value)

_counts: Counter[tuple[str, str]] = Counter()
_logged: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def _dropped(provider: str, what: str, value: str) -> None:
    with _lock:
        _counts[(provider, what)] += 1
        first = (provider, what, value) not in _logged
        if first:
            _logged.add((provider, what, value))
    if first:
        log.warning("dropped an unsupported %s before forwarding to %s (logged once; counted in "
                    "tollway_compat_dropped_total)", what, provider, extra={"provider": provider, "value": value})


def dropped_counts() -> dict[tuple[str, str], int]:
    """(provider, what) -> how many times something was dropped, `what` being beta, field or ttl."""
    with _lock:
        return dict(_counts)


class CompatCollector:
    """A Prometheus collector for the drop counter (registered on the Metrics registry)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("tollway_compat_dropped", "Beta values and fields dropped before a cloud "
                                     "upstream (tollway/upstream/compat.py)", labels=["provider", "what"])
        for (provider, what), n in sorted(dropped_counts().items()):
            family.add_metric([provider, what], n)
        yield family


# ---------------------------------------------------------------------------------------------
# The adaptation


@dataclass(slots=True)
class Adapted:
    """A request made fit for one cloud: the model id, the body (a copy when anything changed) and
    the betas to send."""

    model: str
    body: dict[str, Any]
    betas: list[str]


def split_betas(header: str | None) -> list[str]:
    return [b.strip() for b in (header or "").split(",") if b.strip()]


def normalise_model(provider: str, model: str) -> tuple[str, bool]:
    """(the cloud's model id, whether it asked for the 1M context window)."""
    one_m = bool(_ONE_M.search(model))
    if one_m:
        model = _ONE_M.sub("", model)
    policy = POLICIES.get(provider)
    if policy is not None and policy.strip_region_prefix:
        model = _REGION_PREFIX.sub("", model)
        if provider == "vertex" and model.startswith("anthropic."):
            model = model[len("anthropic."):]
    return model, one_m


def accepted_betas(provider: str, wanted: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The betas this provider gets, in the client's order, renamed where the cloud names them
    differently, each once; the others are dropped (logged once, counted)."""
    policy = POLICIES[provider]
    allowed = set(extra)
    out: list[str] = []
    for beta in wanted:
        sent = policy.betas.get(beta) or (beta if beta in allowed else None)
        if sent is None:
            _dropped(provider, "beta", beta)
        elif sent not in out:
            out.append(sent)
    return out


def _without_ttl(node: Any, provider: str) -> Any:
    """NODE with `ttl` removed from every cache_control in it; the same object when there is none."""
    if isinstance(node, list):
        items = [_without_ttl(x, provider) for x in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    if not isinstance(node, dict):
        return node
    changed: dict[str, Any] | None = None
    cache = node.get("cache_control")
    if isinstance(cache, dict) and "ttl" in cache:
        changed = dict(node)
        changed["cache_control"] = {k: v for k, v in cache.items() if k != "ttl"}
        _dropped(provider, "ttl", "cache_control.ttl")
    for key in ("content", "system", "tools", "messages"):
        inner = node.get(key)
        if isinstance(inner, list):
            new = _without_ttl(inner, provider)
            if new is not inner:
                changed = changed if changed is not None else dict(node)
                changed[key] = new
    return changed if changed is not None else node


def adapt(provider: str, body: dict[str, Any], beta_header: str | None, extra: Iterable[str] = ()) -> Adapted:
    """Fit a canonical request for PROVIDER (module doc). BODY is never changed in place: the
    pipeline retries and fails over with the same one."""
    policy = POLICIES[provider]
    model, one_m = normalise_model(provider, str(body.get("model") or ""))
    wanted = split_betas(beta_header)
    if one_m and CONTEXT_1M not in wanted:
        wanted.append(CONTEXT_1M)
    betas = accepted_betas(provider, wanted, extra)
    out: dict[str, Any] | None = None
    for name, needs in BETA_FIELDS.items():
        if name in body and not any(b in betas for b in needs):
            out = out if out is not None else dict(body)
            del out[name]
            _dropped(provider, "field", name)
    tools = body.get("tools")
    if isinstance(tools, list):
        new_tools = []
        for tool in tools:
            if isinstance(tool, dict):
                bad = [f for f, needs in TOOL_FIELD_BETAS.items() if f in tool and not any(b in betas for b in needs)]
                if bad:
                    tool = {k: v for k, v in tool.items() if k not in bad}
                    for f in bad:
                        _dropped(provider, "field", f"tools[].{f}")
            new_tools.append(tool)
        if any(a is not b for a, b in zip(new_tools, tools, strict=True)):
            out = out if out is not None else dict(body)
            out["tools"] = new_tools
    if policy.ttl_needs_beta and EXTENDED_TTL not in betas:
        current = out if out is not None else body
        stripped = _without_ttl(current, provider)
        if stripped is not current:
            out = stripped
    return Adapted(model, out if out is not None else body, betas)
