"""The fixed-prefix token families added after issue 15 (item 3): Shopify, Grafana service accounts,
Doppler, age identities and Azure DevOps PATs. For each, positives, negatives (one character short,
glued to a longer word, wrong prefix, bad checksum) and placeholders, under both matchers. Pure CPU.

Values are synthetic, generated here from the documented formats (sources in docs/dlp.md, "Sources
of the later token formats"), with a seeded generator: no real credential is in this file. The
Bech32 encoder and Grafana's token generator are the quality benchmark's (bench/dlp_quality.py), written
from BIP 173 and Grafana's generator, independently of the detector's checks.
"""

from __future__ import annotations

import random
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig
from tollway.governance.dlp.prefilter import available
from tollway.governance.dlp.secrets import bech32_ok, grafana_checksum_ok

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from dlp_quality import BECH32, bech32
from dlp_quality import glsa as _glsa

_rng = random.Random(2026_12_03)
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def age_key() -> str:
    """The age spec: 32 random bytes, Bech32 with the HRP ``AGE-SECRET-KEY-``, written in upper case."""
    return bech32("age-secret-key-", bytes(_rng.randrange(256) for _ in range(32))).upper()


def glsa(secret: str | None = None) -> str:
    """Grafana's satokengen: ``glsa_<32>_`` and the CRC-32 of the rest, little-endian hex."""
    return _glsa(secret or rnd(32))


def ado_pat() -> str:
    """Microsoft Purview's definition: 84 letters and digits, ``AZDO`` at positions 76 to 79."""
    return rnd(76) + "AZDO" + rnd(4)


SHOPIFY = [f"{p}{rnd(32, HEX)}" for p in ("shpat_", "shpca_", "shppa_", "shpss_")]
GRAFANA = glsa()
DOPPLER = [f"dp.{t}.{rnd(43)}" for t in ("pt", "sa", "ct", "scim", "st")] + [f"dp.st.prd.{rnd(44)}"]
AGE = age_key()
ADO = ado_pat()

POSITIVES: list[tuple[str, str]] = [
    *[("shopify_token", f"X-Shopify-Access-Token: {t}") for t in SHOPIFY],
    ("shopify_token", f'SHOPIFY_API_SECRET="shpss_{rnd(32)}"'),
    ("grafana_token", f"GRAFANA_SA_TOKEN={GRAFANA}"),
    ("grafana_token", f'provider "grafana" {{ auth = "{glsa()}" }}'),
    *[("doppler_token", f"DOPPLER_TOKEN={t}") for t in DOPPLER],
    ("doppler_token", f"doppler run --token dp.st.dev_eu-1.{rnd(40)} -- ./start"),
    ("age_secret_key", f"# created: 2026-12-03T10:00:00Z\n# public key: age1{rnd(58, BECH32)}\n{AGE}\n"),
    ("age_secret_key", f'SOPS_AGE_KEY="{age_key()}"'),
    ("azure_devops_pat", f"AZURE_DEVOPS_EXT_PAT={ADO}"),
    ("azure_devops_pat", f"git clone https://build:{ado_pat()}@dev.azure.com/org/proj/_git/repo"),
    # the characters before AZDO read like an IBAN (DE89 + capitals and digits): not an IBAN candidate when glued
    ("azure_devops_pat", "AZURE_DEVOPS_EXT_PAT=" + rnd(40) + "DE89" + rnd(32, string.ascii_uppercase + string.digits)
     + "AZDO" + rnd(4)),
]

NEGATIVES: list[tuple[str, str]] = [
    # one character short
    ("shopify_token", f"token {SHOPIFY[0][:-1]}"),
    ("grafana_token", f"token {GRAFANA[:-1]}"),
    ("doppler_token", f"token dp.pt.{rnd(39)}"),
    ("age_secret_key", f"key {AGE[:-1]}"),
    ("azure_devops_pat", f"pat {ADO[1:]}"),
    # glued to a longer word on either side
    ("shopify_token", f"x{SHOPIFY[1]}"),
    ("shopify_token", f"{SHOPIFY[2]}0"),
    ("grafana_token", f"id_{GRAFANA}"),
    ("doppler_token", f"dp.pt.{rnd(43)}_suffix"),
    ("age_secret_key", f"{AGE}Q"),
    ("azure_devops_pat", f"x{ADO}"),
    ("azure_devops_pat", f"{ADO}x"),
    # wrong prefix or signature
    ("shopify_token", f"shpxx_{rnd(32, HEX)}"),
    ("grafana_token", "gl" + "xx" + GRAFANA[4:]),
    ("doppler_token", f"dp.zz.{rnd(43)}"),
    ("age_secret_key", "AGE-PUBLIC-KEY-1" + AGE[16:]),
    ("azure_devops_pat", rnd(76) + "AZDX" + rnd(4)),
    # the checksum is wrong
    ("grafana_token", GRAFANA[:-8] + ("00000000" if GRAFANA[-8:] != "00000000" else "11111111")),
    ("age_secret_key", AGE[:-1] + ("Q" if AGE[-1] != "Q" else "P")),
    ("age_secret_key", ("AGE-SECRET-KEY-1" + "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L" * 2)[:74]),
]

PLACEHOLDERS: list[tuple[str, str]] = [
    ("shopify_token", "X-Shopify-Access-Token: shpat_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("shopify_token", "X-Shopify-Access-Token: shpat_<token>"),
    ("shopify_token", "SHOPIFY_TOKEN=shpat_${SHOPIFY_TOKEN}"),
    ("grafana_token", "GRAFANA_TOKEN=glsa_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_xxxxxxxx"),
    ("grafana_token", "token: glsa_<token>"),
    ("grafana_token", "token: glsa_${GRAFANA_SA_TOKEN}"),
    ("doppler_token", "echo 'dp.st.prd.xxxx' | doppler configure set token"),
    ("doppler_token", "DOPPLER_TOKEN=dp.pt.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("doppler_token", "DOPPLER_TOKEN=dp.st.<token>"),
    ("doppler_token", "DOPPLER_TOKEN=dp.pt.${DOPPLER_TOKEN}"),
    ("age_secret_key", "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"),
    ("age_secret_key", "AGE-SECRET-KEY-1XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
    ("age_secret_key", "SOPS_AGE_KEY=AGE-SECRET-KEY-1<your-key>"),
    ("age_secret_key", "SOPS_AGE_KEY=${AGE_SECRET_KEY}"),
    ("azure_devops_pat", 'PAT = "abcdefghijklmnopqrstuvwxyz012345679ABCDEFGHIJKLMNOPQRSTUVWXYZ'
                         'abcdefghijklmnoAZDOabcd"'),
    ("azure_devops_pat", "PAT=" + "x" * 76 + "AZDO" + "xxxx"),
    ("azure_devops_pat", "AZURE_DEVOPS_EXT_PAT=<token>"),
    ("azure_devops_pat", "AZURE_DEVOPS_EXT_PAT=${ADO_PAT}"),
]

MATCHERS = ["python", pytest.param("hyperscan", marks=pytest.mark.skipif(not available(),
                                                                          reason="no hyperscan wheel here"))]
_engines: dict[str, DlpEngine] = {}


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DlpEngine]:
    """One engine per matcher for the module (the environment variable, which wins over the config, is set
    while it is built)."""
    matcher = request.param
    if matcher not in _engines:
        monkeypatch.setenv("TOLLWAY_DLP_MATCHER", matcher)
        _engines[matcher] = DlpEngine(DlpConfig(cache_items=0))
        _engines[matcher].wait_ready()
    assert _engines[matcher].matcher == matcher
    yield _engines[matcher]


def kinds(engine: DlpEngine, text: str) -> set[str]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    return {f.kind for f in engine.inspect(body).findings}


@pytest.mark.parametrize(("kind", "text"), POSITIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(POSITIVES)])
def test_positive(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind in kinds(engine, text)


@pytest.mark.parametrize(("kind", "text"), NEGATIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(NEGATIVES)])
def test_negative(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind not in kinds(engine, text)


@pytest.mark.parametrize(("kind", "text"), PLACEHOLDERS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(PLACEHOLDERS)])
def test_placeholder_is_not_a_finding(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind not in kinds(engine, text)


def test_the_whole_token_is_redacted(engine: DlpEngine) -> None:
    text = f"a {SHOPIFY[0]} b {GRAFANA} c {DOPPLER[-1]} d {AGE} e {ADO} f"
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    out = engine.inspect(body).body["messages"][0]["content"]
    assert out == ("a [REDACTED:shopify_token:1] b [REDACTED:grafana_token:1] c [REDACTED:doppler_token:1] "
                   "d [REDACTED:age_secret_key:1] e [REDACTED:azure_devops_pat:1] f")


def test_the_checksums_against_published_values() -> None:
    # The age spec's example identity and an identity of age's test kit carry valid checksums; one changed
    # character breaks it.
    assert bech32_ok("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
    assert bech32_ok("AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6")
    assert not bech32_ok("AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F7")
    assert all(bech32_ok(age_key()) for _ in range(200))
    assert all(grafana_checksum_ok(glsa()) for _ in range(200))
    assert not grafana_checksum_ok(glsa()[:-1] + "g")
