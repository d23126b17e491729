"""Secret detectors with a fixed shape (provider key prefixes, PEM blocks, JWTs).

Each ``on_*`` function is called by the candidate matcher (``candidates``) with the position of the
anchor character of its alternative and the match end, and returns the findings there, if any.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable

from tollway.governance.dlp.assignments import on_assignment
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.text import WORD, boundary_after, boundary_before, has_digit_and_letter


def on_aws_or_gcp(text: str, start: int, end: int) -> Iterable[Span]:
    if not boundary_before(text, start):
        return ()
    if text[start + 1] == "I":  # AIza…
        return ((start, end, "gcp_api_key"),) if boundary_after(text, end, WORD | {"-"}) else ()
    return ((start, end, "aws_access_key"),) if boundary_after(text, end) else ()


def on_pem(text: str, start: int, end: int) -> Iterable[Span]:
    return ((start - 5, end, "private_key"),)


def on_g(text: str, start: int, end: int) -> Iterable[Span]:
    if not boundary_before(text, start):
        return ()
    kind = "gitlab_token" if text.startswith("glpat-", start) else "github_token"
    return ((start, end, kind),)


def on_slack(text: str, start: int, end: int) -> Iterable[Span]:
    return ((start, end, "slack_token"),) if boundary_before(text, start) else ()


def on_k(text: str, start: int, end: int) -> Iterable[Span]:
    nxt = text[start + 1]
    if nxt == "_":  # sk_live_ / rk_live_
        s = start - 1
        return ((s, end, "stripe_key"),) if boundary_before(text, s) else ()
    if nxt == "-":  # sk-…
        s = start - 1
        body = text[start + 2:end]
        if not boundary_before(text, s, WORD | {"-"}) or not has_digit_and_letter(body):
            return ()
        return ((s, end, "anthropic_key" if body.startswith("ant-") else "openai_key"),)
    return on_assignment(text, start, end)


def on_jwt(text: str, start: int, end: int) -> Iterable[Span]:
    s = start - 2
    if not boundary_before(text, s, WORD | {"-"}):
        return ()
    header = text[s:text.index(".", start)]
    try:  # a JWT's first segment is a JSON object (its header); anything else that starts eyJ is not one
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return ()
    return ((s, end, "jwt"),) if isinstance(decoded, dict) else ()

