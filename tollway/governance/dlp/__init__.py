"""DLP: find secrets and personal data in a canonical (Messages) request before it leaves.

``DlpEngine(config).inspect(body, groups)`` walks the parsed request once and scans every piece of
text the upstream will see: ``tools[i]`` descriptions and input schemas, ``system`` (a string or
text blocks), and every message: string content, text blocks, ``tool_use`` inputs (all JSON
strings, keys included), ``tool_result`` content (a string or blocks, recursively), text
``document`` sources (and their title/context), the URLs of URL sources, and blocks of types it
does not know (all their strings). ``thinking``/``redacted_thinking`` blocks are not scanned: they
are the upstream's own output from an earlier turn, bound to it by a signature that any change
would break. Images and documents whose bytes cannot be read here (base64/PDF, URL and file
sources) are ``binary`` findings with the ``binary`` action. Pure CPU, no I/O.

Output: a ``DlpResult`` with one ``Finding`` per (location, kind) and how many matches there were,
whether the request is blocked, and the body to forward. Nothing in a result, a finding, or an
error ever holds a matched value; ``DlpResult.body`` is left out of its repr for that reason.

Redaction replaces each matched value with ``[REDACTED:<kind>:<n>]``, where ``n`` numbers the
distinct values of that kind in the request, from 1, in scan order (tools, then system, then
messages). The same value gets the same placeholder everywhere in the request; and because the
history is scanned oldest first, a conversation that only appends keeps its placeholders from
turn to turn (so prompt caching keeps working). For an assignment (``password = "…"``) only the value is replaced.
A redacted image or binary document becomes a text block ``[REDACTED:binary:<n>]``. When nothing is
redacted, ``result.body is body``; otherwise ``result.body`` is a deep copy and the input is never
modified.

Policy: ``groups`` are the caller's group names, in the caller's order; the first one that has an
entry under ``policies.groups`` selects that override (merged over the default, see
``policy``); with none, ``policies.default`` applies. ``result.policy`` names what applied.

Fails closed: an exception inside a detector, or a scan running longer than ``timeout_ms``, raises
``DlpError`` (with the detector kind and the exception type, never the data). The clock is checked
after every 256K characters of built-in scanning and after every string a custom pattern scans,
so one huge string can overrun before it is noticed.

How it stays fast (``bench/dlp.py``, 200 KB Claude Code request on this 2-core machine: 2.5 ms with
nothing found and 3.2 ms with redactions at best, 4.3 and 5.5 ms p50 while other test suites shared
the machine, load average 2.5-3): all built-in detectors share ONE compiled regular
expression, run once over all the strings of the request joined by NUL (one call instead of one per
string). Every alternative of it starts with a literal character, as rare as the pattern allows
(``AKIA`` at ``A``, ``-----BEGIN`` at ``B`` and ``eyJ`` at ``J`` with a look-behind, ``sk-`` and
``token`` at ``k``, ``password`` at ``w``, ``secret`` at ``c``, e-mail at ``@``, numbers at a digit),
so Python's ``re`` skips from one possible start to the next in C; an alternative that starts with
a character class or a group loses that and makes the whole pass several times slower, and so
does every extra anchor character (``(`` and ``+`` of phone numbers are picked up in Python for that
reason). Digit runs must start a run and hold at least 9 digits before they leave the regex, which
keeps dates, times and most numbers out of Python. The regex only finds candidates; checksums
(Luhn, IBAN mod 97), ranges (SSN), ``phonenumbers`` and the other checks run in Python on those
candidates alone. Custom patterns are compiled separately and cost one pass per string each.
With the ``hyperscan`` wheel, ``prefilter`` finds in one SIMD pass the positions where the regex can
match, and the regex is tried there alone (docs/dlp.md, "Matcher and the event loop").

Why not ``detect-secrets``: measured here (1.5.0), its ``scan_line`` over a 200 KB request takes
about 3.8 s, three orders of magnitude over the 5 ms budget, because it runs every plugin's
regexes, plus entropy and keyword heuristics, line by line in Python; it reports the secret value
and line number but no character span, which redaction needs; and its high-entropy plugins flag
hashes and UUIDs, which fill coding-agent traffic. The secret patterns here follow its plugins
(AWS, GitHub, GitLab, Slack, Stripe, JWT, private key, keyword assignments) in spirit.

Layout: ``policy`` (the config models; imports nothing of ours), ``result`` (findings, errors,
``RegexDetector``), ``text`` (character classes), the detectors by family (``secrets``,
``assignments``, ``numbers`` and ``phones``, ``pii``, ``placeholders``), ``prefilter`` (Hyperscan),
``candidates`` (the combined matcher), ``walk`` (content units), ``cache`` (the process's verdict
cache), ``shared`` (the verdicts shared in Redis), ``scan`` (one request), ``engine`` (``DlpEngine``)
and ``metrics`` (its Prometheus collector). Imports point one way, from ``engine`` down to
``policy`` and ``result``.

The names other code uses are importable from here; they are loaded on first use, so importing the
config models (``tollway.governance.dlp.policy``) does not load the detectors and ``phonenumbers``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.governance.dlp.engine import DlpEngine
    from tollway.governance.dlp.policy import BUILTIN_KINDS, DlpConfig
    from tollway.governance.dlp.result import DlpError, DlpResult, Finding, RegexDetector, placeholder

__all__ = ["BUILTIN_KINDS", "DlpConfig", "DlpEngine", "DlpError", "DlpResult", "Finding", "RegexDetector",
           "placeholder"]

_HOMES = {
    "DlpEngine": "engine", "BUILTIN_KINDS": "policy", "DlpConfig": "policy", "DlpError": "result",
    "DlpResult": "result", "Finding": "result", "RegexDetector": "result", "placeholder": "result",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
