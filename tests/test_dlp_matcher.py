"""The Hyperscan prefilter never changes what the candidate matcher finds. Pure CPU.

The whole DLP suite also runs with the pure-Python matcher (``TOLLWAY_DLP_MATCHER=python``, see
docs/dlp.md); this file compares the two directly, whatever the environment says.
"""

from __future__ import annotations

import random
import string
import sys
from pathlib import Path

import pytest

from tests.test_dlp_config_forms import NEGATIVES as CONFIG_NEGATIVES
from tests.test_dlp_config_forms import PLACEHOLDERS as CONFIG_PLACEHOLDERS
from tests.test_dlp_config_forms import POSITIVES as CONFIG_POSITIVES
from tests.test_dlp_detectors import NEGATIVES, PLACEHOLDERS, POSITIVES
from tests.test_dlp_engine import FALSE_POSITIVES, TRUE_POSITIVES
from tests.test_dlp_secret_forms import NEGATIVES as FORM_NEGATIVES
from tests.test_dlp_secret_forms import PLACEHOLDERS as FORM_PLACEHOLDERS
from tests.test_dlp_secret_forms import POSITIVES as FORM_POSITIVES
from tests.test_dlp_tokens import NEGATIVES as TOKEN_NEGATIVES
from tests.test_dlp_tokens import PLACEHOLDERS as TOKEN_PLACEHOLDERS
from tests.test_dlp_tokens import POSITIVES as TOKEN_POSITIVES
from tollway.governance.dlp.candidates import Builtin
from tollway.governance.dlp.policy import DEFAULT_PHONE_REGIONS
from tollway.governance.dlp.prefilter import available

pytestmark = pytest.mark.skipif(not available(), reason="the hyperscan wheel is not installed on this platform")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def corpus() -> list[str]:
    texts = [t for _, t in (*POSITIVES, *NEGATIVES, *PLACEHOLDERS, *TRUE_POSITIVES, *TOKEN_POSITIVES,
                            *TOKEN_NEGATIVES, *TOKEN_PLACEHOLDERS, *FORM_NEGATIVES, *FORM_PLACEHOLDERS)]
    texts += [t for _, t, _s in FORM_POSITIVES] + list(FALSE_POSITIVES)
    texts += [t for _, t, _s in CONFIG_POSITIVES] + [t for _, t in (*CONFIG_NEGATIVES, *CONFIG_PLACEHOLDERS)]
    rng = random.Random(7)
    pieces = [*texts, " ", "\n", "x=", "key", "@", " @", "a@", "api_key", "Client-Key", "for key, v", "+1 ", "(",
              "-----BEGIN RSA PRIVATE KEY-----", "eyJ", "é", "日本", "curl", "-u", "-p", "mysql", "AKIA",
              '"auth": "', "pass: ", "user: ", 'default = "', "account key ", "cm9ib3Q6UXo4dkxtMktwOVJ0"]
    # Random mixtures: pieces glued together, so candidates meet at window edges and inside each other.
    for _ in range(300):
        texts.append("".join(rng.choice(pieces) + rng.choice(["", " ", "\n", "=", ":"]) for _ in range(8)))
    texts.append("".join(rng.choice(string.printable) for _ in range(20_000)))
    import dlp as bench_dlp  # the benchmark's Claude Code request (code, logs, prose, planted values)

    for planted in (True, False):
        texts.append("\x00".join(strings(bench_dlp.build_request(planted=planted))))
    return texts


@pytest.mark.parametrize("ip", [False, True])
def test_prefilter_finds_exactly_what_the_full_scan_finds(ip: bool) -> None:
    plain = Builtin(DEFAULT_PHONE_REGIONS, ip, prefilter=False)
    fast = Builtin(DEFAULT_PHONE_REGIONS, ip, prefilter=True)
    for text in corpus():
        assert fast.scan(text) == plain.scan(text), text[:200]
