"""Incremental scanning (issue 15): the verdict cache never changes a verdict. Pure CPU, no network."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tollway.governance.dlp import DlpEngine, DlpError
from tollway.governance.dlp.cache import CLEAN, MEDIA, VerdictCache
from tollway.governance.dlp.engine import INLINE_CHARS
from tollway.governance.dlp.policy import DlpConfig

AWS = "AKIAZ7QW3ERT5YUI9OPL"
GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
EMAIL = "maria.gonzalez@example-corp.com"
REDACT_ALL = {"policies": {"default": {"actions": {"secrets": "redact", "pii": "redact"}}}}


def session(turns: int, secret_at: int | None = None) -> dict[str, Any]:
    """A Claude Code-shaped request after ``turns`` turns: system, tools, tool_use/tool_result history."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": f"fix the bug, {EMAIL}"}]}]
    for t in range(turns):
        command = f"cat src/module_{t}.py" + (f" # {GH}" if t == secret_at else "")
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Reading module {t}."},
            {"type": "tool_use", "id": f"toolu_{t:04d}", "name": "Bash", "input": {"command": command}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{t:04d}",
             "content": f"def f_{t}(x):\n    return x * {t}  # owner {EMAIL} key {AWS if t % 3 == 0 else 'none'}\n"}]})
    return {
        "model": "m", "max_tokens": 100,
        "system": [{"type": "text", "text": "You are Claude Code. " * 50}],
        "tools": [{"name": f"Tool{i}", "description": "Runs things. " * 20,
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
                  for i in range(20)],
        "messages": messages,
    }


def summary(result: Any) -> tuple[Any, ...]:
    return (sorted((f.kind, f.where, f.count, f.action) for f in result.findings), result.blocked, result.changed,
            json.dumps(result.body, sort_keys=False))


def test_cold_and_warm_scans_give_identical_findings_and_bytes() -> None:
    body = session(30)
    cold = DlpEngine(DlpConfig(**REDACT_ALL, cache_items=0)).inspect(copy.deepcopy(body))
    engine = DlpEngine(DlpConfig(**REDACT_ALL))
    first = engine.inspect(copy.deepcopy(body))
    cache = engine.cache
    assert cache is not None and len(cache) > 50
    misses = cache.misses
    warm = engine.inspect(copy.deepcopy(body))
    assert cache.misses == misses and cache.hits > 50  # the second scan found every unit in the cache
    assert summary(cold) == summary(first) == summary(warm)
    assert AWS not in summary(warm)[3] and EMAIL not in summary(warm)[3]


def test_a_growing_session_keeps_its_redacted_history_byte_identical() -> None:
    engine = DlpEngine(DlpConfig(**REDACT_ALL))
    previous = engine.inspect(session(10)).body
    current = engine.inspect(session(11)).body
    assert current["messages"][:len(previous["messages"])] == previous["messages"]
    assert json.dumps(current["system"]) == json.dumps(previous["system"])


def test_a_secret_added_in_turn_n_is_caught_in_turn_n() -> None:
    engine = DlpEngine(DlpConfig())
    for turn in range(1, 8):
        result = engine.inspect(session(turn, secret_at=5))
        has_gh = any(f.kind == "github_token" for f in result.findings)
        assert has_gh == (turn > 5), turn
        assert GH not in json.dumps(result.body)


def test_a_unit_changed_by_one_character_is_rescanned() -> None:
    engine = DlpEngine(DlpConfig())
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": f"key {AWS[:-1]}"}]}
    assert engine.inspect(body).findings == []
    body["messages"][0]["content"] = f"key {AWS}"
    assert [f.kind for f in engine.inspect(body).findings] == ["aws_access_key"]


def test_a_unit_with_an_image_reports_its_binary_finding_on_every_turn() -> None:
    engine = DlpEngine(DlpConfig(binary="redact"))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    body = {"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is in this screenshot?"}, image]},
        {"role": "assistant", "content": "a terminal"},
        {"role": "user", "content": "thanks"}]}
    results = [engine.inspect(copy.deepcopy(body)) for _ in range(3)]
    assert engine.cache is not None and engine.cache.hits >= 6  # the later turns found every unit
    entries = list(engine.cache._entries.values())
    assert sum(e is MEDIA for e in entries) == 1 and sum(e is CLEAN for e in entries) == len(entries) - 1
    for result in results:
        assert [(f.kind, f.where, f.count) for f in result.findings] == [("binary", "messages[0].content[1]", 1)]
        assert result.body["messages"][0]["content"][1] == {"type": "text", "text": "[REDACTED:binary:1]"}


def test_local_keys_are_keyed_hashes_unless_the_hash_seed_is_fixed() -> None:
    """With Python's per-process random hash key, the process's cache keys on ``hash()`` (SipHash, keyed); with
    ``PYTHONHASHSEED`` fixed, anyone could compute that hash, so the key is SHA-256 instead."""
    script = (
        "import json\n"
        "from tollway.governance.dlp import DlpEngine, cache\n"
        "from tollway.governance.dlp.policy import DlpConfig\n"
        "e = DlpEngine(DlpConfig())\n"
        "text = [{'role': 'user', 'content': 'key AKIAZ7QW3ERT5YUI9OPL'}]\n"
        "body = lambda: {'model': 'm', 'max_tokens': 1, 'messages': text}\n"
        "e.inspect(body()); again = e.inspect(body())\n"
        "keys = list(e.cache._entries)\n"
        "print(json.dumps([cache.SECRET_HASH, [len(k) for k in keys], [type(k[-1]).__name__ for k in keys], "
        "[f.kind for f in again.findings], e.cache.hits]))\n")
    out = {}
    for seed in ("random", "0", "1234"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        out[seed] = json.loads(done.stdout)
    secret, lengths, types, kinds, hits = out["random"]
    assert secret is True and set(lengths) == {4} and set(types) == {"int"}
    assert kinds == ["aws_access_key"] and hits >= 1
    for seed in ("0", "1234"):
        secret, lengths, types, kinds, hits = out[seed]
        assert secret is False and set(lengths) == {2} and set(types) == {"bytes"}
        assert kinds == ["aws_access_key"] and hits >= 1


def test_ascii_and_wider_strings_batched_apart_give_the_findings_of_each_string_alone() -> None:
    """The scan batches ASCII strings apart from the others; each string's findings are those it has alone."""
    pieces = [f"key {AWS} ok", "café ☕ no secrets here", f"naïve {EMAIL} — done", "plain text",
              f"└── {GH} ├──", f"mail {EMAIL}", "日本語のテキスト 4111 1111 1111 1111", "x" * 70_000 + f" {AWS}"]
    engine = DlpEngine(DlpConfig(**REDACT_ALL, cache_items=0))
    whole = engine.inspect({"model": "m", "max_tokens": 1,
                            "messages": [{"role": "user", "content": p} for p in pieces]})
    alone = []
    for k, piece in enumerate(pieces):
        messages = [{"role": "user", "content": "-"}] * k + [{"role": "user", "content": piece}]
        alone += engine.inspect({"model": "m", "max_tokens": 1, "messages": messages}).findings
    assert sorted((f.kind, f.where, f.count) for f in whole.findings) == sorted(
        (f.kind, f.where, f.count) for f in alone)
    assert {f.kind for f in whole.findings} >= {"aws_access_key", "github_token", "email", "payment_card"}


def test_the_cache_holds_positions_and_kinds_never_values() -> None:
    engine = DlpEngine(DlpConfig(**REDACT_ALL))
    engine.inspect(session(5))
    assert engine.cache is not None
    entries = list(engine.cache._entries.values())
    assert any(entries)
    for entry in entries:
        for i, s, e, kind in entry:
            assert isinstance(i, int) and isinstance(s, int) and isinstance(e, int) and kind.isidentifier()
    dumped = repr(engine.cache._entries)
    assert AWS not in dumped and EMAIL not in dumped and "maria" not in dumped


def test_a_policy_change_invalidates_the_cache() -> None:
    shared = VerdictCache()
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "see ticket PROJECT-ALPHA"}]}
    before = DlpEngine(DlpConfig(), cache=shared)
    assert before.inspect(body).findings == [] and len(shared) >= 1
    after = DlpEngine(DlpConfig(custom=[{"name": "codename", "pattern": "PROJECT-[A-Z]{5}"}]), cache=shared)
    assert after.fingerprint != before.fingerprint
    assert [f.kind for f in after.inspect(body).findings] == ["codename"]
    regions = DlpEngine(DlpConfig(phone_regions=["US"]), cache=shared)
    assert regions.fingerprint not in (before.fingerprint, after.fingerprint)


def test_group_policies_share_the_cache_but_apply_their_own_actions() -> None:
    config = DlpConfig(policies={"groups": {"strict": {"actions": {"pii": "redact"}}}})
    engine = DlpEngine(config)
    body = session(3)
    logged = engine.inspect(copy.deepcopy(body))
    redacted = engine.inspect(copy.deepcopy(body), ["strict"])
    assert engine.cache is not None and engine.cache.hits > 0
    assert EMAIL in json.dumps(logged.body) and EMAIL not in json.dumps(redacted.body)
    assert {f.action for f in redacted.findings if f.kind == "email"} == {"redact"}


_SOAK = f"""
import json, tracemalloc
from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig
engine = DlpEngine(DlpConfig(cache_items=2_000, timeout_ms=60_000))  # bounds, not speed, on a loaded CI
engine.wait_ready()
cache = engine.cache
tracemalloc.start()
sizes, bounded = [], True
for turn in range(0, 600, 3):
    body = {{"model": "m", "max_tokens": 1, "messages": [
        {{"role": "user", "content": f"turn {{turn}} line {{k}}: mail {EMAIL} key {AWS}"}} for k in range(30)]}}
    engine.inspect(body)
    bounded = bounded and cache.size <= 2_000
    if turn in (150, 300, 597):
        sizes.append(tracemalloc.get_traced_memory()[0])
print(json.dumps({{"sizes": sizes, "bounded": bounded, "len": len(cache)}}))
"""


def test_the_cache_is_bounded_over_a_long_session() -> None:
    """In a fresh interpreter: in this one, other tests' engines may still be warming up in their threads, and
    tracemalloc would count what they allocate."""
    proc = subprocess.run([sys.executable, "-c", _SOAK], capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(proc.stdout)
    assert out["bounded"] and out["len"] < 2_000
    sizes = out["sizes"]
    # Memory flat once the cache is full: the last snapshot within 15 % of the one at turn 150.
    assert sizes[2] < sizes[0] * 1.15 + 200_000, sizes


def test_ainspect_matches_inspect_and_scans_large_new_text_off_the_loop() -> None:
    text = " ".join(f"call +1 415-555-{k % 10000:04d} or mail u{k}@example-corp.com" for k in range(8_000))
    assert len(text) > INLINE_CHARS
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    expected = DlpEngine(DlpConfig(cache_items=0, timeout_ms=60_000)).inspect(body)

    async def run() -> tuple[Any, int]:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        result = await DlpEngine(DlpConfig(timeout_ms=60_000)).ainspect(body)
        done = True
        await task
        return result, ticks

    started = time.perf_counter()
    result, ticks = asyncio.run(run())
    elapsed = time.perf_counter() - started
    assert summary(result) == summary(expected)
    # The loop kept running during the scan (it would tick once at most if the scan held it).
    assert ticks >= 5 or elapsed < 0.05, (ticks, elapsed)


def test_a_scan_over_its_budget_is_a_413_not_a_500() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # every reading one second later: any budget is exceeded
        return now[0]

    engine = DlpEngine(DlpConfig(), clock=clock)
    with pytest.raises(DlpError) as info:
        engine.inspect({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 100}]})
    assert info.value.status == 413 and info.value.error_type == "request_too_large"
    assert "timeout_ms_per_mb" in str(info.value)
