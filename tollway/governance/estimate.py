"""What a request will cost, guessed before it is forwarded, and the guards on what it may cost.

Budgets reserve before forwarding, so they need a number before the upstream has counted
anything. Two numbers are kept per request (docs/budgets.md):

* the **bound**: the most the request can cost. Every byte of the body counted as a token
  (a byte-level tokenizer never makes more tokens than bytes, whatever the text: dense prose,
  CJK, digits) plus a fixed allowance for what the upstream adds (tool-use system prompt,
  message framing), at the dearest input rate, plus all of `max_tokens` at the output rate.
  Strict-mode budgets reserve this.
* the **expectation**: the body size times the largest input cost per byte seen in this
  model's recent answers (times `estimate_margin`; cache reads and writes priced as they
  came), or before any answer half a token per byte at the input price; plus the largest
  output of this key's recent answers on the model (else the model's, else
  `expected_output_tokens`), capped by `max_tokens`, at the output price. Expected-mode
  budgets reserve this, so their worst overshoot is what the requests in flight did not
  reserve (bound minus expectation).

Neither walks the body: Claude Code sends 50-500 KB bodies every turn, and the size is known
from the bytes read. The Messages and chat surfaces hand the client's byte count on
(`Call.size`): it bounds the body that goes upstream (stripping `metadata` only shrinks it; a chat
body translated to Messages carries the same text). Only a body the gateway enlarged (a Responses
turn with stored history, the cloud ingress) is measured by one C-level `orjson.dumps`.

The upstream's usage is never trusted past what the request allows: output tokens are clamped
to `max_tokens` (and flagged), and a stream that runs past `max_tokens` plus a margin, or past
the budget that was left when it was admitted, is cut off with an `event: error`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

import orjson

from tollway.config import Pricing
from tollway.upstream.base import UpstreamFailure
from tollway.wire.sse import StreamTap, Usage
from tollway.wire.tokens import count_input_tokens

log = logging.getLogger("tollway.limits")

# Tokens an upstream may add to what the body holds: Anthropic's tool-use system prompt is
# 313-346 tokens, and each message's role framing a few more (the body's own JSON framing per
# message, ~30 bytes, already covers those).
OVERHEAD_TOKENS = 512
# Tokens per body byte assumed before any answer from the model was seen, and the floor of the
# learned ratio (one token per three bytes: one per CJK character in UTF-8).
PRIOR_RATIO = 0.5
FLOOR_RATIO = 1 / 3
# Answers remembered per key/model and per model.
HISTORY = 8
# A stream is cut off once it has produced this much more than max_tokens: the upstream's own
# count past max_tokens + max(CUTOFF_MIN, 10 %), or this many bytes of deltas per allowed token
# (no real token is longer once escaped into an SSE delta; the byte count needs no parsing).
CUTOFF_MIN = 64
CUTOFF_BYTES_PER_TOKEN = 32


def body_size(body: dict[str, Any], raw: bytes | None) -> int:
    """The body's size in bytes: the client's bytes when they are forwarded as they are, else one
    C-level serialisation of the rebuilt body (no Python walk of it)."""
    return len(raw) if raw is not None else len(orjson.dumps(body))


class History:
    """Recent answers, per model and per (key, model), in this process: output tokens, input
    tokens per body byte, and input cost per body byte (which prices cache reads and writes as
    they came, so a conversation served from the cache is expected to cost what it does).
    Bounded: a few numbers per key and model."""

    def __init__(self, max_entries: int = 65536) -> None:
        self.outputs: dict[tuple[str, str], deque[int]] = {}
        self.ratios: dict[str, deque[float]] = {}
        self.costs: dict[str, deque[float]] = {}
        self.max_entries = max_entries

    def _ring(self, table: dict[Any, deque[Any]], key: Any) -> deque[Any]:
        ring = table.get(key)
        if ring is None:
            if len(table) >= self.max_entries:
                table.clear()
            ring = table[key] = deque(maxlen=HISTORY)
        return ring

    def learn(self, key_id: str, model: str, size: int, usage: Usage, complete: bool,
              pricing: Pricing | None = None) -> None:
        """Remember one answer; a stream cut short says nothing about how long answers are."""
        if size > 0:
            read = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            if read > 0:
                self._ring(self.ratios, model).append(read / size)
                if pricing is not None:
                    self._ring(self.costs, model).append(input_cost(pricing, usage) / size)
        if complete:
            self._ring(self.outputs, (key_id, model)).append(usage.output_tokens)
            self._ring(self.outputs, ("", model)).append(usage.output_tokens)

    def ratio(self, model: str, margin: float) -> float:
        """Input tokens per body byte: the largest recently seen (times the margin), between one
        per CJK character and one per byte; the prior before any answer."""
        seen = self.ratios.get(model)
        if not seen:
            return PRIOR_RATIO
        return min(1.0, max(FLOOR_RATIO, max(seen) * margin))

    def input_micros(self, model: str, size: int, margin: float, pricing: Pricing) -> int:
        """Expected input cost: the largest recent cost per byte times the margin, or before any
        answer the prior ratio at the input price."""
        seen = self.costs.get(model)
        if not seen:
            return math.ceil(size * PRIOR_RATIO * pricing.input)
        return math.ceil(size * max(seen) * margin)

    def output(self, key_id: str, model: str, default: int) -> int:
        seen = self.outputs.get((key_id, model)) or self.outputs.get(("", model))
        return max(seen) if seen else default


def input_cost(p: Pricing, u: Usage) -> float:
    write = p.cache_write if p.cache_write is not None else p.input * 1.25
    read = p.cache_read if p.cache_read is not None else p.input * 0.1
    return u.input_tokens * p.input + u.cache_creation_input_tokens * write + u.cache_read_input_tokens * read


def dearest_input(p: Pricing) -> float:
    write = p.cache_write if p.cache_write is not None else p.input * 1.25
    return max(p.input, write)


def cost_of(p: Pricing, input_tokens: int, output_tokens: int) -> int:
    """Micro-dollars for input tokens at the dearest input rate and output tokens."""
    return math.ceil(input_tokens * dearest_input(p) + output_tokens * p.output)


def exact_input(body: dict[str, Any]) -> int:
    """The mock model's own count (it counts exactly this way), for mock-only routes."""
    return count_input_tokens(body)


def clamp_output(usage: Usage, max_tokens: Any, request_id: str, model: str) -> bool:
    """Clamp the output tokens an upstream claims to the request's max_tokens; True (and a
    warning an operator should act on) when the upstream claimed more."""
    if not isinstance(max_tokens, int) or max_tokens <= 0 or usage.output_tokens <= max_tokens:
        return False
    log.warning("upstream usage claims more output than max_tokens allows; billed at max_tokens",
                extra={"request_id": request_id, "model": model, "claimed": usage.output_tokens,
                       "max_tokens": max_tokens})
    usage.output_tokens = max_tokens
    return True


class StreamCut(UpstreamFailure):
    """A stream cut off by the tap, with the bytes of the cutting chunk that are still relayed
    (whole events before the one that would cross the cut-off)."""

    def __init__(self, failure: UpstreamFailure, relay: bytes) -> None:
        super().__init__(failure.status, failure.error_type, failure.message)
        self.relay = relay


class GuardedTap(StreamTap):
    """The metering tap with two cut-offs the relay enforces on its own (it calls `feed` per
    chunk and turns an UpstreamFailure into an `event: error`): output past max_tokens plus a
    margin, and, when configured, a running cost that reaches what was left of the budget.

    The event that would cross a cut-off is withheld (with the rest of its chunk): neither
    relayed nor billed, so a stream stopped at the budget is billed less than what was left."""

    __slots__ = ("_allowance", "_cut_bytes", "_cut_tokens", "_max_tokens", "_pricing")

    def __init__(self, max_tokens: int, pricing: Pricing | None, allowance: int | None) -> None:
        super().__init__()
        limit = max_tokens + max(CUTOFF_MIN, max_tokens // 10) if max_tokens > 0 else 0
        self._max_tokens = max_tokens
        self._cut_tokens = limit
        self._cut_bytes = limit * CUTOFF_BYTES_PER_TOKEN
        self._pricing = pricing
        self._allowance = allowance

    def running_cost(self) -> int:
        assert self._pricing is not None
        u = self.usage
        output = max(u.output_tokens, -(-self.delta_bytes // 4))
        p = self._pricing
        write = p.cache_write if p.cache_write is not None else p.input * 1.25
        read = p.cache_read if p.cache_read is not None else p.input * 0.1
        return round(u.input_tokens * p.input + output * p.output + u.cache_creation_input_tokens * write
                     + u.cache_read_input_tokens * read)

    def _over(self) -> UpstreamFailure | None:
        if self._cut_tokens and (self.usage.output_tokens > self._cut_tokens or self.delta_bytes > self._cut_bytes):
            return UpstreamFailure(502, "api_error", f"the upstream went on past max_tokens ({self._max_tokens}); "
                                   "Tollway cut the stream off and billed at most max_tokens")
        if self._allowance is not None and self._pricing is not None and self.running_cost() >= self._allowance:
            return UpstreamFailure(429, "rate_limit_error", "budget reached: this stream's running cost reached what "
                                   f"was left of the budget when it started (${self._allowance / 1e6:.4f}); Tollway "
                                   "stopped it. Raise the budget or wait for its reset.")
        return None

    def _state(self) -> tuple[Any, ...]:
        u = self.usage
        return (list(self._tail), self._held, self._skipping, self.delta_bytes, self.saw_delta, self.saw_stop,
                self.error, self.stop_reason, self.model, u.input_tokens, u.output_tokens,
                u.cache_creation_input_tokens, u.cache_read_input_tokens,
                len(self.capture) if self.capture is not None else 0)

    def _restore(self, state: tuple[Any, ...]) -> None:
        u = self.usage
        (self._tail, self._held, self._skipping, self.delta_bytes, self.saw_delta, self.saw_stop, self.error,
         self.stop_reason, self.model, u.input_tokens, u.output_tokens, u.cache_creation_input_tokens,
         u.cache_read_input_tokens, kept) = state
        if self.capture is not None:
            del self.capture[kept:]

    def feed(self, chunk: bytes) -> None:
        """Take in a chunk, unless it carries the stream past a cut-off: then the events of the
        chunk before the one that crosses it are taken in (the relay sends them, `StreamCut.relay`)
        and the rest is neither relayed nor billed; the relay ends the stream.

        The cut is per event, not per chunk: how the upstream's bytes were split into reads (a
        busy gateway reads many events at once) must not change what is relayed and billed —
        a whole read withheld could drop the `message_start` and bill nothing for the input
        the upstream consumed."""
        before = self._state()
        super().feed(chunk)
        over = self._over()
        if over is None:
            return
        # Rare (once per stream at most): feed again up to each event end, to find the crossing one.
        self._restore(before)
        relayed, start = 0, 0
        while (end := chunk.find(b"\n\n", start)) >= 0:
            start = end + 2
            state = self._state()
            super().feed(chunk[relayed:start])
            if (crossed := self._over()) is not None:
                over = crossed
                self._restore(state)
                break
            relayed = start
        # (Without a break, only a partial event is left after `relayed`: it is not relayed either.)
        raise StreamCut(over, chunk[:relayed])

