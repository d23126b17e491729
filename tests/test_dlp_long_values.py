"""Secrets longer than 256 characters are redacted whole (a defect found by a held-out probe: an
assignment's value and the fixed-prefix tokens were read up to 256 characters, so a longer unquoted
value was redacted only in part, with the rest forwarded, and a longer quoted value or token was not
found at all). AWS session tokens are about 700 characters; Vault batch tokens and Slack's rotating
tokens run past 256. Both matchers. Synthetic values from a seeded generator."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig
from tollway.governance.dlp.prefilter import available

_rng = random.Random(20261203)
B64 = string.ascii_letters + string.digits + "+/"
ALNUM = string.ascii_letters + string.digits


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


MATCHERS = ["python", pytest.param("hyperscan", marks=pytest.mark.skipif(not available(),
                                                                          reason="no hyperscan wheel here"))]
_engines: dict[str, DlpEngine] = {}


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DlpEngine]:
    matcher = request.param
    if matcher not in _engines:
        monkeypatch.setenv("TOLLWAY_DLP_MATCHER", matcher)
        _engines[matcher] = DlpEngine(DlpConfig(cache_items=0))
        _engines[matcher].wait_ready()
    assert _engines[matcher].matcher == matcher
    yield _engines[matcher]


SESSION = rnd(716, B64)
CASES = [
    ("password_assignment", "[default]\naws_session_token = {v}\n", SESSION),
    ("password_assignment", "AWS_SESSION_TOKEN={v}", rnd(2048, B64)),
    ("password_assignment", 'password: "{v}"', rnd(300)),
    ("password_assignment", '{{"Credentials": {{"SessionToken": "{v}", "Expiration": "2026-12-03T10:00:00Z"}}}}',
     SESSION),
    ("password_assignment", "<password>{v}</password>", rnd(400)),
    ("slack_token", "SLACK_TOKEN is {v} here", "xoxe.xoxp-1-" + rnd(400)),
    ("slack_token", "token {v}", "xoxe-1-" + rnd(300)),
    ("hashicorp_token", "vault token {v}", "hvb." + rnd(400, ALNUM + "_-")),
    ("github_token", "see {v}", "github_pat_" + rnd(300, ALNUM + "_")),
]


@pytest.mark.parametrize(("kind", "template", "value"), CASES, ids=[f"{k}-{i}" for i, (k, _t, _v) in enumerate(CASES)])
def test_a_long_secret_is_found_and_redacted_whole(engine: DlpEngine, kind: str, template: str, value: str) -> None:
    assert len(value) > 256
    body: dict[str, Any] = {"model": "m", "max_tokens": 1,
                            "messages": [{"role": "user", "content": template.format(v=value)}]}
    result = engine.inspect(body)
    assert kind in {f.kind for f in result.findings}
    forwarded = orjson.dumps(result.body).decode()
    assert value[:16] not in forwarded and value[-16:] not in forwarded  # neither end of it is forwarded
