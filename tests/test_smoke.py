"""The basic promise: the stock Anthropic SDK talks to Tollway unmodified."""

from __future__ import annotations

from typing import Any


def test_create_against_mock(client: Any) -> None:
    msg = client.messages.create(model="tollway-mock", max_tokens=100,
                                 messages=[{"role": "user", "content": "ping"}])
    assert msg.content[0].text.endswith("You said: ping")
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == len(msg.content[0].text.split())


def test_create_against_emulator(client: Any, upstream: Any) -> None:
    msg = client.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=100,
                                 messages=[{"role": "user", "content": "ping"}])
    assert msg.content[0].text == "Hello from the emulator."
    assert len(upstream.received) == 1
