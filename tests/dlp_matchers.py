"""One DLP engine per matcher, shared by the DLP form tests: each form is checked under the Hyperscan prefilter
and the pure-Python matcher, which must agree. An engine takes a second or more to build (the Hyperscan
database, the phone metadata), so each is built once per test process and matcher."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig, DlpPolicy
from tollway.governance.dlp.prefilter import available

MATCHERS = ["python", pytest.param("hyperscan", marks=pytest.mark.skipif(not available(),
                                                                          reason="no hyperscan wheel here"))]
_engines: dict[tuple[str, bool], DlpEngine] = {}


def engine_for(matcher: str, monkeypatch: pytest.MonkeyPatch, *, redact_pii: bool) -> DlpEngine:
    """The engine of MATCHER, no verdict cache; REDACT_PII: personal data redacted too (default: logged), so a
    test reads every finding in the forwarded text."""
    key = (matcher, redact_pii)
    if key not in _engines:
        monkeypatch.setenv("TOLLWAY_DLP_MATCHER", matcher)
        policies = {"default": DlpPolicy(actions={"secrets": "redact", "pii": "redact"})} if redact_pii else {}
        _engines[key] = DlpEngine(DlpConfig(cache_items=0, **({"policies": policies} if policies else {})))
        _engines[key].wait_ready()
    assert _engines[key].matcher == matcher
    return _engines[key]


def forwarded(engine: DlpEngine, text: str) -> str:
    """TEXT as the engine forwards it, sent as one user message."""
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    content = engine.inspect(body).body["messages"][0]["content"]
    assert isinstance(content, str)
    return content
