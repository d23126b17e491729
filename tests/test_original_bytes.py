"""The client's own bytes reach the upstream while nothing in the body had to change (issue 15
item 2), and the cheap checks that let the gateway forward them without walking the history.

Over real HTTP: a Claude Code-shaped request of about 100 KB, written with odd spacing, an
unusual key order, unicode and slash escapes and number spellings no serialiser would produce,
goes through the default governance (DLP on) and must arrive at the emulator byte for byte,
streamed or not, on /v1/messages and count_tokens. A redacted secret is the counter-case: then the
body is rebuilt, and the secret is gone from what the upstream received.
"""

from __future__ import annotations

import itertools
import random
import string
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator, SSEReply, default_stream_events, sse_event
from tollway.wire.messages_schema import RequestInvalid, _check_messages, _plainly_valid
from tollway.wire.nesting import MAX_DEPTH, _walk, serialised_within, too_deep

MODEL = "claude-sonnet-4-5-20250929"
ODD = '  "caf\\u00e9 \\ud83d\\ude00 \\/usr\\/bin \\"quoted\\" tab\\there"  '


def _headers(gateway: Gateway) -> dict[str, str]:
    return {"x-api-key": gateway.key, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def _history(turns: int) -> str:
    """A tool_use/tool_result history, hand-written JSON with irregular spacing."""
    rng = random.Random(15)
    parts = []
    for i in range(turns):
        words = " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(120))
        parts.append(f'{{"role":"user" ,"content":[ {{"type":"text","text":"{words}"}} ]}}')
        parts.append(f'{{ "content" : [{{"type":"tool_use","id":"toolu_{i:03d}","name":"Read",'
                     f'"input":{{"path":"\\/src\\/m{i}.py","limit":1.500E3}}}}],"role":"assistant"}}')
        parts.append(f'{{"role":"user","content":[{{"tool_use_id":"toolu_{i:03d}","type":"tool_result",'
                     f'"content":{ODD}}}]}}')
        parts.append(f'{{"role" :"assistant","content":"ok \\u2014 {words[:200]}"}}')
    parts.append('{"role":"user","content":"next step, please"}')
    return ",\n ".join(parts)


def _body(stream: bool | None, max_tokens: bool = True, turns: int = 60) -> bytes:
    tools = ",".join(f'{{"name":"T{i}","description":"{"x" * 400}","input_schema":{{"type":"object",'
                     f'"properties":{{}}}}}}' for i in range(20))
    fields = [f'"messages" : [ {_history(turns)} ]', '"system":[{"type":"text","text":' + ODD + '}]',
              f'"tools":[{tools}]', '"temperature" : 1.0000', '"future_field":{ }', f'"model":"{MODEL}"']
    if max_tokens:
        fields.insert(2, '"max_tokens":\t64')
    if stream is not None:
        fields.append(f'"stream" : {"true" if stream else "false"}')
    return ("\n{ " + " ,\n  ".join(fields) + " }\n").encode()


@pytest.mark.parametrize("stream", [False, True])
def test_a_large_unchanged_request_reaches_the_upstream_byte_for_byte(gateway: Gateway, upstream: AnthropicEmulator,
                                                                      stream: bool) -> None:
    sent = _body(stream)
    assert len(sent) > 90_000 and orjson.loads(sent)["model"] == MODEL  # valid JSON, as the client means it
    if stream:
        upstream.script(SSEReply([sse_event(e) for e in default_stream_events(MODEL, "fine")]))
    resp = httpx.post(gateway.base_url + "/v1/messages", content=sent, headers=_headers(gateway), timeout=30)
    assert resp.status_code == 200, resp.text
    if stream:
        assert b"event: message_stop" in resp.content
    assert upstream.received[0].body == sent


def test_count_tokens_forwards_the_clients_bytes_when_nothing_is_dropped(gateway: Gateway,
                                                                         upstream: AnthropicEmulator) -> None:
    sent = _body(None, max_tokens=False, turns=10)
    resp = httpx.post(gateway.base_url + "/v1/messages/count_tokens?beta=true", content=sent,
                      headers=_headers(gateway), timeout=30)
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].query == "beta=true"
    assert upstream.received[0].body == sent


def test_a_redacted_request_is_rebuilt_without_the_secret(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """The counter-case: DLP changed the body, so the client's bytes must not be what goes out."""
    secret = "ghp_" + "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=36))
    sent = _body(False, turns=3).replace(b'"next step, please"', b'"my token is %s"' % secret.encode())
    resp = httpx.post(gateway.base_url + "/v1/messages", content=sent, headers=_headers(gateway), timeout=30)
    assert resp.status_code == 200, resp.text
    received = upstream.received[0].body
    assert received != sent and secret.encode() not in received
    assert orjson.loads(received)["system"] == orjson.loads(sent)["system"]


# ----- the checks that replaced walks of the body (pure) -----

def _nested(depth: int, kind: int) -> Any:
    value: Any = "leaf" * 50
    for i in range(depth):
        value = [value] if (i + kind) % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [1, 2, 64, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, 253, 254, 255,
                                   600])
@pytest.mark.parametrize("kind", [0, 1])
def test_the_depth_check_agrees_with_a_walk_at_every_boundary(depth: int, kind: int) -> None:
    value = _nested(depth, kind)
    raw = orjson.dumps(value) if depth < 250 else b"[" * depth  # only its length matters past orjson's limit
    assert too_deep(raw, value) is (depth > MAX_DEPTH)
    assert _walk(value, MAX_DEPTH) is (depth > MAX_DEPTH)
    assert too_deep(raw, value, limit=8) is (depth > 8)


def test_a_small_body_takes_the_shortcut_and_gets_the_same_answer() -> None:
    for depth in (3, MAX_DEPTH, MAX_DEPTH + 1):
        value = _nested(depth, 0)
        raw = orjson.dumps(value)
        expected = depth > MAX_DEPTH
        assert too_deep(raw, value) is expected
        assert (serialised_within(value, raw=raw) is None) is expected
        assert (serialised_within(value) is None) is expected
    small = {"model": "m", "messages": [{"role": "user", "content": "é"}]}
    assert serialised_within(small, raw=orjson.dumps(small)) == serialised_within(small) == orjson.dumps(small)


def test_a_deep_value_inside_a_long_history_is_still_found() -> None:
    history = [{"role": "user", "content": [{"type": "text", "text": "x" * 100}]} for _ in range(2000)]
    # The tool result's value starts 6 levels down: body, messages, message, content, block, value.
    history.append({"role": "user", "content": [{"type": "tool_result", "content": _nested(MAX_DEPTH - 4, 0)}]})
    body = {"messages": history}
    assert too_deep(orjson.dumps(body), body)
    body["messages"][-1]["content"][0]["content"] = _nested(MAX_DEPTH - 5, 0)
    assert not too_deep(orjson.dumps(body), body)


def test_the_fast_message_check_never_accepts_what_the_full_check_refuses() -> None:
    """Every sequence of up to four messages over a set of good and bad roles and contents."""
    shapes: list[Any] = [{"role": r, "content": c} for r in ("user", "assistant", "system", "tool", None)
                         for c in ("x", [], None, 5)]
    shapes += [{"content": "x"}, {"role": "user"}, "not an object"]
    accepted = 0
    for n in range(5):
        for messages in itertools.product(shapes, repeat=n) if n < 4 else itertools.islice(
                itertools.product(shapes, repeat=n), 0, None, 7):
            msgs = list(messages)
            try:
                _check_messages(msgs)
                valid = True
            except RequestInvalid:
                valid = False
            assert _plainly_valid(msgs) is valid, msgs
            accepted += valid
    assert accepted > 10
