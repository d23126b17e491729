"""The cloud compatibility table (tollway/upstream/compat.py): every entry, one case each."""

from __future__ import annotations

import copy
import logging

import pytest

from tollway.upstream import compat
from tollway.upstream.compat import BETA_FIELDS, POLICIES, TOOL_FIELD_BETAS, adapt, dropped_counts, normalise_model

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
# What Claude Code 2.1.185 sends (wire-contract.md §4.3).
CLAUDE_CODE_BETAS = ("claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,"
                     "thinking-token-count-2026-05-13,context-management-2025-06-27,prompt-caching-scope-2026-01-05,"
                     "mid-conversation-system-2026-04-07,advisor-tool-2026-03-01,effort-2025-11-24,"
                     "extended-cache-ttl-2025-04-11")

TABLE = [(p, beta, sent) for p, policy in POLICIES.items() for beta, sent in policy.betas.items()]


@pytest.mark.parametrize(("provider", "beta", "sent"), TABLE, ids=[f"{p}:{b}" for p, b, _ in TABLE])
def test_every_accepted_beta_is_forwarded_as_the_cloud_names_it(provider: str, beta: str, sent: str) -> None:
    assert adapt(provider, BODY, f"unknown-beta-2099-01-01, {beta}").betas == [sent]


@pytest.mark.parametrize("provider", sorted(POLICIES))
def test_unknown_betas_are_dropped_logged_once_and_counted(provider: str, caplog: pytest.LogCaptureFixture) -> None:
    before = dropped_counts().get((provider, "beta"), 0)
    value = f"made-up-{provider}-2099-01-01"
    with caplog.at_level(logging.WARNING, "tollway.upstream.compat"):
        assert adapt(provider, BODY, value).betas == []
        assert adapt(provider, BODY, value).betas == []
    assert dropped_counts()[(provider, "beta")] == before + 2
    logged = [r for r in caplog.records if getattr(r, "value", None) == value]
    assert len(logged) == 1 and provider in logged[0].getMessage()


def test_extra_betas_from_the_config_are_forwarded() -> None:
    assert adapt("bedrock", BODY, "brand-new-2099-01-01", extra=["brand-new-2099-01-01"]).betas == [
        "brand-new-2099-01-01"]


def test_claude_code_betas_per_cloud() -> None:
    assert adapt("bedrock", BODY, CLAUDE_CODE_BETAS).betas == [
        "interleaved-thinking-2025-05-14", "context-management-2025-06-27", "effort-2025-11-24"]
    assert adapt("vertex", BODY, CLAUDE_CODE_BETAS).betas == [
        "interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    assert adapt("foundry", BODY, CLAUDE_CODE_BETAS).betas == [
        "claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
        "prompt-caching-scope-2026-01-05", "effort-2025-11-24", "extended-cache-ttl-2025-04-11"]


def test_renamed_beta_is_sent_once() -> None:
    assert adapt("vertex", BODY, "advanced-tool-use-2025-11-20,tool-search-tool-2025-10-19").betas == [
        "tool-search-tool-2025-10-19"]


@pytest.mark.parametrize(("field", "needs"), sorted(BETA_FIELDS.items()))
@pytest.mark.parametrize("provider", sorted(POLICIES))
def test_fields_that_need_a_beta(provider: str, field: str, needs: tuple[str, ...]) -> None:
    body = {**BODY, field: {"x": 1}}
    original = copy.deepcopy(body)
    without = adapt(provider, body, None)
    assert field not in without.body and body == original  # the caller's body is never changed
    supported = [b for b in needs if b in POLICIES[provider].betas]
    with_beta = adapt(provider, body, ",".join(needs))
    assert (field in with_beta.body) == bool(supported)


@pytest.mark.parametrize(("field", "needs"), sorted(TOOL_FIELD_BETAS.items()))
@pytest.mark.parametrize("provider", sorted(POLICIES))
def test_tool_fields_that_need_a_beta(provider: str, field: str, needs: tuple[str, ...]) -> None:
    tool = {"name": "t", "input_schema": {"type": "object"}, field: True}
    body = {**BODY, "tools": [tool, {"name": "u", "input_schema": {"type": "object"}}]}
    out = adapt(provider, body, None).body
    assert field not in out["tools"][0] and field in tool and out["tools"][1] is body["tools"][1]
    # Kept only when a beta it needs is sent under that name (a renamed beta is another feature).
    supported = any(POLICIES[provider].betas.get(b) == b for b in needs)
    assert (field in adapt(provider, body, ",".join(needs)).body["tools"][0]) == supported


def _ttl_body() -> dict:
    cached = {"type": "ephemeral", "ttl": "1h"}
    return {**BODY, "system": [{"type": "text", "text": "s", "cache_control": dict(cached)}],
            "tools": [{"name": "t", "input_schema": {}, "cache_control": dict(cached)}],
            "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "x", "content": [
                    {"type": "text", "text": "r", "cache_control": dict(cached)}]},
                {"type": "text", "text": "q", "cache_control": dict(cached)}]}]}


@pytest.mark.parametrize("provider", sorted(POLICIES))
def test_cache_ttl_where_the_cloud_needs_the_extended_ttl_beta(provider: str) -> None:
    body = _ttl_body()
    out = adapt(provider, body, None).body
    text = repr(out)
    if POLICIES[provider].ttl_needs_beta:
        assert "'ttl'" not in text and text.count("'ephemeral'") == 4
        assert "'ttl'" in repr(body)  # the original keeps it
        kept = adapt(provider, body, "extended-cache-ttl-2025-04-11", extra=["extended-cache-ttl-2025-04-11"]).body
        assert kept is body
    else:
        assert out is body


@pytest.mark.parametrize(("provider", "model", "expected"), [
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0[1m]",
     "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("vertex", "eu.claude-sonnet-4-5@20250929", "claude-sonnet-4-5@20250929"),
    ("vertex", "global.anthropic.claude-opus-4-1", "claude-opus-4-1"),
    ("vertex", "claude-sonnet-4-5@20250929[1M]", "claude-sonnet-4-5@20250929"),
    ("foundry", "us.claude-sonnet-4-5", "claude-sonnet-4-5"),
])
def test_model_ids_are_normalised(provider: str, model: str, expected: str) -> None:
    assert normalise_model(provider, model)[0] == expected


@pytest.mark.parametrize("provider", sorted(POLICIES))
def test_one_m_suffix_becomes_the_context_beta(provider: str) -> None:
    fit = adapt(provider, {**BODY, "model": "claude-sonnet-4-5[1m]"}, None)
    assert fit.model == "claude-sonnet-4-5" and fit.betas == [compat.CONTEXT_1M]


def test_unchanged_body_is_the_same_object() -> None:
    assert adapt("bedrock", BODY, "interleaved-thinking-2025-05-14").body is BODY


def test_drops_are_exported_as_a_prometheus_counter() -> None:
    from tollway.observability import Metrics

    adapt("vertex", BODY, "made-up-metric-2099-01-01")
    text = Metrics().render().decode()
    series = 'tollway_compat_dropped_total{provider="vertex",what="beta"}'
    line = next(x for x in text.splitlines() if x.startswith(series))
    assert float(line.rsplit(" ", 1)[1]) == dropped_counts()[("vertex", "beta")] >= 1
