"""Budgets through a real gateway: expected and strict mode, refusals with numbers, upstream usage
that is never trusted past max_tokens, and 50-request bursts in both modes.

The upstream is the Anthropic emulator answering with scripted usage, so the tests set what
each answer really costs; clients are the real anthropic SDK and aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply, SSEReply, default_message, default_stream_events, sse_event
from tests.test_limits import Admin, limits_config

MODEL = "claude-sonnet-4-5-20250929"  # $3/M input, $3.75/M cache write, $15/M output
INPUT, WRITE, READ, OUTPUT = 3.0, 3.75, 0.3, 15.0


# One alias of MODEL per burst: the estimator learns per model id, so each burst meets a model
# nothing was learned about yet (a cold start) on the module's one gateway.
BURSTS = [(mode, output) for mode in ("strict", "expected") for output in (1000, 8000)]


def burst_model(mode: str, output: int) -> str:
    return f"burst-{mode}-{output}"


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = limits_config(emulator.base_url)
    sonnet = next(m for m in config["models"] if m["id"] == MODEL)
    config["models"] += [{**sonnet, "id": burst_model(*b), "upstream": {**sonnet["upstream"], "model": MODEL}}
                         for b in BURSTS]
    gateway = start_gateway(tmp_path_factory.mktemp("budgets"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> Admin:
    return Admin(gw)


def sdk(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)


def answer(input_tokens: int, output_tokens: int, cache_write: int = 0) -> JSONReply:
    body = default_message(MODEL, input_tokens=input_tokens, output_tokens=output_tokens)
    body["usage"]["cache_creation_input_tokens"] = cache_write
    return JSONReply(200, body)


def streamed(input_tokens: int, output_tokens: int, cache_write: int = 0, cache_read: int = 0) -> SSEReply:
    events = default_stream_events(MODEL, input_tokens=input_tokens, output_tokens=output_tokens)
    events[0]["message"]["usage"].update(cache_creation_input_tokens=cache_write, cache_read_input_tokens=cache_read)
    return SSEReply([sse_event(e) for e in events])


def stream(client: anthropic.Anthropic, **body: Any) -> anthropic.types.Message:
    """One streamed turn, as Claude Code sends every turn."""
    with client.messages.stream(**body) as s:
        return s.get_final_message()


def claude_code_first_request() -> dict[str, Any]:
    """The shape and size of Claude Code's first turn: a ~12 KB system prompt, ~16 tools with long
    descriptions and schemas (~60 KB), cache_control, and max_tokens 32,000."""
    tools = [{"name": f"Tool{i}", "description": ("Use this tool to read, edit and search files in the "
                                                  "project; it returns results with line numbers. ") * 30,
              "input_schema": {"type": "object", "properties": {f"arg{j}": {"type": "string",
                                                                             "description": "a path or pattern " * 8}
                                                                for j in range(6)}}}
             for i in range(16)]
    return {"model": MODEL, "max_tokens": 32000,
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's CLI for coding. " * 240,
                        "cache_control": {"type": "ephemeral"}}],
            "tools": tools, "messages": [{"role": "user", "content": "Explain this repository."}]}


def test_quarter_dollar_budget_admits_a_claude_code_first_request_and_stops_once_spent(
        gw: Gateway, admin: Admin, upstream: AnthropicEmulator) -> None:
    body = claude_code_first_request()
    assert 60_000 < len(orjson.dumps(body)) < 100_000
    key = admin.key("claude-code", budget_usd=0.25)
    client = sdk(gw, key["key"])
    # Turn 1 writes the prefix to the cache: 21,000 tokens, 1,200 output ($0.0969).
    upstream.script(streamed(50, 1200, cache_write=21_000))
    assert stream(client, **body).usage.output_tokens == 1200
    # Turn 2 reads it back ($0.0243); turn 3 brings 34,000 fresh tokens of tool results ($0.1308).
    # Each is admitted on its expected cost; together they reach the budget ($0.2520).
    messages = body["messages"]
    for fresh, output in ((2000, 800), (34_000, 1500)):
        messages = [*messages, {"role": "assistant", "content": "Looking."}, {"role": "user", "content": "Go on."}]
        upstream.script(streamed(fresh, output, cache_read=21_000))
        stream(client, **{**body, "messages": messages})
    rows = admin.ledger(key["id"], 3)
    spent = sum(r["cost_micros"] for r in rows)
    assert spent == round(50 * INPUT + 21_000 * WRITE + 1200 * OUTPUT) \
        + round(2000 * INPUT + 21_000 * READ + 800 * OUTPUT) + round(34_000 * INPUT + 21_000 * READ + 1500 * OUTPUT)
    assert spent >= 250_000  # the real spend reached the budget: the key stops
    with pytest.raises(anthropic.RateLimitError) as refused:
        stream(client, model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert "monthly budget of $0.25 for key claude-code (expected mode) has $0.00 left" in message
    assert f"(${spent / 1e6:.4f} spent" in message and "It is spent" in message
    assert "resets at" in message and "--budget USD" in message
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.received) == 3  # the refused request never reached the upstream


def test_strict_budget_refuses_it_with_the_numbers_and_the_cli_switches_modes(
        gw: Gateway, admin: Admin, upstream: AnthropicEmulator) -> None:
    body = claude_code_first_request()
    key = admin.key("strict-cc", budget_usd=0.25, budget_mode="strict")
    with pytest.raises(anthropic.RateLimitError) as refused:
        stream(sdk(gw, key["key"]), **body)
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    # Every body byte a token at the cache-write rate, plus all of max_tokens (the SDK's JSON
    # spacing makes its body a little larger than orjson's).
    worst = math.ceil((len(orjson.dumps(body)) + 512) * WRITE + 32000 * OUTPUT) / 1e6
    assert "(strict mode) has $0.25 left ($0.00 spent, $0.00 reserved" in message
    quoted = float(re.search(r"could cost up to \$([0-9.]+)", message).group(1))  # type: ignore[union-attr]
    assert worst <= quoted < worst * 1.05 and "lower max_tokens" in message
    assert "--budget-mode expected" in message
    assert not upstream.received
    out = json.loads(gw.cli("limits", "set", "key", key["id"], "--budget", "0.25", "--budget-mode", "expected",
                            "--json").stdout)
    assert out["budget_mode"] == "expected"
    assert admin("GET", f"/limits/key/{key['id']}")["budget_mode"] == "expected"
    upstream.script(streamed(50, 300, cache_write=21_000))
    deadline = 50
    while deadline:  # the gateway picks up the CLI's change within its key refresh (0.2 s)
        try:
            stream(sdk(gw, key["key"]), **body)
            break
        except anthropic.RateLimitError:
            deadline -= 1
            asyncio.run(asyncio.sleep(0.1))
    assert deadline, "the switch to expected mode never took effect"


def test_upstream_output_is_clamped_to_max_tokens_and_flagged(gw: Gateway, admin: Admin,
                                                              upstream: AnthropicEmulator) -> None:
    key = admin.key("clamped")
    upstream.script(answer(20, 10_000_000))
    sdk(gw, key["key"]).messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "x"}])
    row = admin.ledger(key["id"], 1)[0]
    assert row["output_tokens"] == 50 and row["error_type"] == "usage_clamped"
    assert row["cost_micros"] == round(20 * INPUT + 50 * OUTPUT)  # not $150


def test_never_ending_stream_is_cut_off_past_max_tokens(gw: Gateway, admin: Admin,
                                                         upstream: AnthropicEmulator) -> None:
    key = admin.key("runaway")
    events = default_stream_events(MODEL, text="word " * 20_000, output_tokens=20_000)
    upstream.script(SSEReply([sse_event(e) for e in events]))
    with sdk(gw, key["key"]).messages.stream(model=MODEL, max_tokens=50,
                                             messages=[{"role": "user", "content": "x"}]) as stream, \
            pytest.raises(anthropic.APIStatusError) as cut:
        for _ in stream:
            pass
    assert "past max_tokens (50)" in str(cut.value)
    row = admin.ledger(key["id"], 1)[0]
    assert row["output_tokens"] <= 50 and row["error_type"] == "api_error"


# -- bursts: 50 concurrent requests against a budget, in both modes --------------------------------------

CJK = "数据治理与预算控制" * 240  # 2,160 characters, 6,480 bytes: about one token per character


def burst_body(model: str, max_tokens: int) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": CJK}]})


async def _burst(url: str, key: str, body: bytes, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            async with session.post(url + "/v1/messages", data=body,
                                    headers={"x-api-key": key, "content-type": "application/json"}) as resp:
                await resp.read()
                return resp.status

        return await asyncio.gather(*(one() for _ in range(n)))


def run_burst(gw: Gateway, admin: Admin, upstream: AnthropicEmulator, mode: str, output: int,
              max_tokens: int = 8000, budget: float = 1.0) -> dict[str, Any]:
    """50 requests at once on a cold start (a model alias of this burst's own, nothing learned about
    its answers yet); every answer bills 2,170 input tokens (CJK: a token per character) and OUTPUT
    tokens. Returns what docs/budgets.md reports."""
    key = admin.key(f"burst-{mode}-{output}", budget_usd=budget, budget_mode=mode)
    upstream.reset()
    upstream.script(*(JSONReply(200, default_message(MODEL, input_tokens=2170, output_tokens=output), delay=0.05)
                      for _ in range(50)))
    body = burst_body(burst_model(mode, output), max_tokens)
    statuses = asyncio.run(_burst(gw.base_url, key["key"], body, 50))
    rows = admin.ledger(key["id"], 50)
    spent = sum(r["cost_micros"] for r in rows)
    allowed = statuses.count(200)
    worst = math.ceil((len(body) + 512) * WRITE + max_tokens * OUTPUT)
    # The least an expected-mode reservation can be: the input ratio at its floor (1/3), and the
    # output at the prior (4,096) or, once answers came back, what they used.
    expected = math.ceil(math.ceil(len(body) / 3) * WRITE + min(max_tokens, 4096, output) * OUTPUT)
    result = {"mode": mode, "allowed": allowed, "refused": statuses.count(429), "budget": round(budget * 1e6),
              "spent": spent, "overshoot": max(0, spent - round(budget * 1e6)),
              "bound": allowed * (worst - (worst if mode == "strict" else expected))}
    print(f"\nburst {mode} output={output}/{max_tokens}: {result}")
    assert allowed + result["refused"] == 50 and allowed >= 1
    return result


@pytest.mark.parametrize("output", [1000, 8000])
def test_burst_in_strict_mode_never_overspends(gw: Gateway, admin: Admin, upstream: AnthropicEmulator,
                                               output: int) -> None:
    r = run_burst(gw, admin, upstream, "strict", output)
    assert r["spent"] <= r["budget"] and r["overshoot"] == 0


@pytest.mark.parametrize("output", [1000, 8000])
def test_burst_in_expected_mode_overshoots_at_most_the_unreserved_part(
        gw: Gateway, admin: Admin, upstream: AnthropicEmulator, output: int) -> None:
    r = run_burst(gw, admin, upstream, "expected", output)
    assert r["overshoot"] <= r["bound"]
    if output <= 4096:  # answers within the expectation: no overshoot at all
        assert r["overshoot"] == 0


def test_stream_stops_when_its_running_cost_reaches_the_budget_left(emulator: AnthropicEmulator,
                                                                    tmp_path: Any) -> None:
    cfg = limits_config(emulator.base_url, backend="memory", stop_streams_at_budget=True)
    gw = start_gateway(tmp_path, cfg, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        admin = Admin(gw)
        key = admin.key("stopped", budget_usd=0.10)
        emulator.reset()
        # An answer that would cost $0.03 + 200 KB of output (~$0.75) if it ran to the end.
        events = default_stream_events(MODEL, text=("abcdefghij" * 10 + " ") * 2000, input_tokens=10_000,
                                       output_tokens=50_000)
        emulator.script(SSEReply([sse_event(e) for e in events]))
        client = sdk(gw, key["key"])
        with client.messages.stream(model=MODEL, max_tokens=32000, messages=[{"role": "user", "content": "go"}]) \
                as s, pytest.raises(anthropic.APIStatusError) as cut:
            for _ in s:
                pass
        assert "budget reached" in str(cut.value) and "($0.1000)" in str(cut.value)
        row = admin.ledger(key["id"], 1)[0]
        assert row["error_type"] == "rate_limit_error"
        # Billed what was relayed, which stopped short of the budget (the chunk that would have crossed
        # it was withheld); far from the $0.78 the whole answer would have cost.
        assert 30_000 < row["cost_micros"] < 100_000
        with pytest.raises(anthropic.RateLimitError, match="expected to cost"):  # what is left is too little
            client.messages.create(model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "hi"}])
    finally:
        gw.stop()
