"""Text dense with e-mail addresses and IBANs: ``dense.table`` gives the regex's and the handlers' answers. Pure CPU.

``dense.table`` answers, for the anchors of a dense text, where the candidate regex's match ends and what the
handler finds there, without either. Compared here with the regex's ``match`` and the handlers at every '@' and
every digit of random and adversarial texts, and ``Builtin.scan`` with the plain per-candidate loops (the
anchors of the Hyperscan prefilter, or every match of the regex) on texts dense enough for the table to be used.
"""

from __future__ import annotations

import random

import pytest

from tollway.governance.dlp.candidates import Builtin, _handle
from tollway.governance.dlp.dense import DENSE_BYTES_PER_ANCHOR, DENSE_MIN_ANCHORS, table
from tollway.governance.dlp.policy import DEFAULT_PHONE_REGIONS
from tollway.governance.dlp.prefilter import available
from tollway.governance.dlp.result import Span

_LOCAL = "abcxyzABZ0129_%+-."
_COUNTRIES = ["DE", "GB", "FR", "NL", "CH", "NO", "MT", "RU", "LC", "IT", "XX"]
_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "CH": 21, "NO": 15, "MT": 31, "RU": 33, "LC": 32, "IT": 27,
            "XX": 20}


def _iban(rng: random.Random) -> str:
    """An IBAN, valid or not, compact or in groups, sometimes with letters in its BBAN or the wrong length."""
    cc = rng.choice(_COUNTRIES)
    n = _LENGTHS[cc] + rng.choice([0, 0, 0, 0, -1, 1, -5, 3])
    alphabet = "0123456789" if rng.random() < 0.7 else "0123456789ABCDEFXYZ"
    bban = "".join(rng.choice(alphabet) for _ in range(max(n - 4, 1)))
    num = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
    check = f"{98 - num % 97:02d}" if rng.random() < 0.8 else f"{rng.randrange(100):02d}"
    iban = cc + check + bban
    if rng.random() < 0.25:
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def _local(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return rng.choice(["u", "first.last", "a_b", "x+tag", "o'"]) + str(rng.randrange(10**6))
    if r < 0.7:
        return "".join(rng.choice(_LOCAL) for _ in range(rng.randint(0, 12)))
    if r < 0.8:
        return "".join(rng.choice("ab.") for _ in range(rng.randint(1, 8)))  # dots, '..'
    if r < 0.9:
        return rng.choice([".", "-", "+", ".-", "+."]) + "name" + rng.choice(["", ".", "-"])
    return "".join(rng.choice("abc12_.") for _ in range(rng.randint(60, 80)))  # 64 and more


def _domain(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return f"mail{rng.randrange(100)}.example-corp.com"
    if r < 0.8:
        return rng.choice(["x.io", "a.b.c.de", "2x.png", "icon.PNG", "b-.com", "-a.com", "a..com", "a.-b.com",
                           "a.c0m", "a.c", "host", "h.abcdefghijklmnopqrstuvwxyz", "ex.com.", "exa_mple.com",
                           "x.com-", "x.co-uk", "123.45.67.89", "a" * 70 + ".com", "b" * 60 + ".com", ""])
    labels = ["".join(rng.choice("ab9-") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 4))]
    return ".".join(labels) + "." + "".join(rng.choice("abcZ") for _ in range(rng.randint(1, 26)))


def _piece(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return f"{_local(rng)}@{_domain(rng)}"
    if r < 0.65:
        return _iban(rng)
    return rng.choice([
        f"https://user:pa55w0rd{rng.randrange(100)}@db.example.com/x", f"postgres://app:{rng.randrange(10**6)}@db/x",
        "git@github.com:org/repo.git", "git@github.com: see", "icon@2x.png", "@decorator", "a@b", "@@x.com",
        f"x{rng.randrange(100)}@host.com:8080", "mailto:first.last@example.org", "IBAN", "DE89",
        "aDE89370400440532013000",
        "DE893704004405320130009", "DE89370400440532013000x", "1DE89370400440532013000", "u@x.com.", "u@x.com-y",
        "+1 415 555 2671", "4111 1111 1111 1111", "tel 0612345678", "_DE89370400440532013000", "DE89 3704",
    ])


def _text(rng: random.Random) -> str:
    seps = [", ", " ", "\n", "\x00", "", ";", "<", ">", " (", ":", "/", "://"]
    pieces = [_piece(rng) for _ in range(rng.randint(60, 160))]
    out = pieces[0]
    for p in pieces[1:]:
        out += (rng.choice(seps) if rng.random() < 0.85 else "") + p
    return out


def _answers(builtin: Builtin, text: str, at: int) -> tuple[int, list[Span]] | None:
    """What the per-candidate path does at ``at``: the regex's match end and the handler's findings."""
    m = builtin.candidates.match(text, at)
    if m is None:
        return None
    return m.end(), list(_handle(builtin.handlers, m, text, at, m.end()))


@pytest.mark.parametrize("ip", [False, True])
def test_table_answers_as_the_regex_and_the_handlers(ip: bool) -> None:
    rng = random.Random(21 + ip)
    builtin = Builtin(DEFAULT_PHONE_REGIONS, ip)
    answered = {"@": 0, "iban": 0, "found": 0}
    for _ in range(300):
        text = _text(rng)
        positions = [k for k, c in enumerate(text) if c == "@" or c.isdigit()]
        for at, answer in zip(positions, table(text, positions), strict=True):
            if answer is None:
                continue
            assert _answers(builtin, text, at) == (answer[0], list(answer[1])), (text[max(0, at - 70):at + 70], at)
            answered["@" if text[at] == "@" else "iban"] += 1
            answered["found"] += bool(answer[1])
        builtin.forget()
    assert min(answered.values()) > 1000, answered


def _anchor_reference(builtin: Builtin, text: str) -> list[Span]:
    """The per-candidate loop over the prefilter's anchors: the regex matched and the handler called at each."""
    anchors = builtin.prefilter.anchors(text)  # type: ignore[union-attr]
    if anchors is None:
        return _reference(builtin, text)
    out: list[Span] = []
    pos = 0
    try:
        for a in anchors:
            if a >= pos:
                m = builtin.candidates.match(text, a)
                if m is not None:
                    pos = m.end()
                    out.extend(_handle(builtin.handlers, m, text, a, pos))
    finally:
        builtin.forget()
    return out


def _reference(builtin: Builtin, text: str) -> list[Span]:
    """The per-candidate loop over every match of the regex (the pure-Python matcher)."""
    try:
        return [s for m in builtin.candidates.finditer(text) for s in _handle(builtin.handlers, m, text, m.start(),
                                                                                m.end())]
    finally:
        builtin.forget()


@pytest.mark.parametrize("matcher", ["hyperscan", "python"])
def test_scan_of_dense_text_finds_what_the_per_candidate_loop_finds(matcher: str) -> None:
    if matcher == "hyperscan" and not available():
        pytest.skip("hyperscan is not installed")
    builtin = Builtin(DEFAULT_PHONE_REGIONS, prefilter=matcher == "hyperscan")
    rng = random.Random(23)
    dense = found = 0
    for _ in range(150):
        text = _text(rng)
        if builtin.prefilter is not None:
            anchors = builtin.prefilter.anchors(text)
            dense += (anchors is not None and len(anchors) >= DENSE_MIN_ANCHORS
                      and len(anchors) * DENSE_BYTES_PER_ANCHOR >= len(text))
            expected = _anchor_reference(builtin, text)
        else:
            expected = _reference(builtin, text)
        assert builtin.scan(text) == expected
        found += len(expected)
    assert found > 3000
    assert dense > 100 or builtin.prefilter is None
