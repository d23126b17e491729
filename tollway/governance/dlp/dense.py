"""Text dense with e-mail addresses or IBANs: each candidate's match end and findings without the candidate regex.

At 30 or more addresses or IBANs per KB, the scan spent most of its time on two things per candidate:
the combined candidate regex's ``match`` at the anchor (a match object over all of its groups, and the
domain's backtracking) and the handler's chain of calls. In the common case both are decided by one
small possessive regex per side of the '@' (or one per IBAN), so ``table`` answers for all the anchors
of a dense text in one loop, with no call of the combined regex and no handler chain. It answers only
where its answer is provably the regex's and the handler's (see ``_DOMAIN``, ``_LOCAL`` and ``_IBAN``);
elsewhere it answers None and the scan matches and calls the handler as before.
tests/test_dlp_dense.py compares it with the regex and the handlers on random and adversarial text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tollway.governance.dlp.pii import _FILE_TLDS, _IBAN_LENGTHS, LOCAL_LETTERS, _iban_mod97_ok, on_email
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.secrets import url_credentials
from tollway.governance.dlp.text import ALNUM, caseless

#: One answer: the end of the candidate regex's match at the anchor, and the handler's findings there.
Answer = tuple[int, Iterable[Span]] | None

#: Anchors per byte from which ``table`` pays (below it, the few candidates are matched one by one).
DENSE_BYTES_PER_ANCHOR = 128
DENSE_MIN_ANCHORS = 32

# After an '@': labels of letters and digits with inner '-' (none empty, none starting or ending with '-'), each
# followed by a '.', then a last label of 2 to 24 letters that is no file extension, and then nothing that could
# continue the domain (a letter, digit, '.' or '-', or any non-ASCII character: a label may be bücher) nor a ':'
# (git@host:org/repo): ASCII domains only, others are left to the regex. The e-mail branch of the
# candidate regex, ``L(?:\.L)*\.[A-Za-z]{2,24}`` then no letter, digit or '-' + letter or digit (``L``: such a label
# of 1 to 63 characters), then matches exactly the same characters when the domain is at most 63 long: its greedy
# path takes every label, fails the final ``\.[A-Za-z]``, gives the last label back and takes it as the top-level
# domain. ``on_email`` then refuses it neither as a file name nor as an SSH address.


_DOMAIN = re.compile(r"(?:[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+\.)++"
                     rf"(?!(?:{caseless(sorted(_FILE_TLDS))})(?![A-Za-z0-9.\-]))"
                     r"[A-Za-z]{2,24}+(?![A-Za-z0-9.\-:]|[^\x00-\x7f])").match
# The local part read backwards on the reversed text, from the character before the '@': characters of
# ``pii.LOCAL_LETTERS``, '%', '+', '-' with single dots between them, the last one read (the first of the local
# part) none of '.', '-', '+', and then a character that is none of these nor '/'. ``on_email``'s backward rule
# reads exactly these (when at most 64), strips nothing, and refuses none of them (no '://' can end right before
# them).
_LOCAL = re.compile(rf"[{LOCAL_LETTERS}%+\-]++(?:\.[{LOCAL_LETTERS}%+\-]++)*+(?<=[{LOCAL_LETTERS}%])"
                    rf"(?=[^{LOCAL_LETTERS}%+\-./])").match
# A compact IBAN from its country code: not glued to a letter or digit before it, the check digits, then 11 to
# 29 more of [A-Z0-9] and no further one (not even after a space, as in an IBAN written in groups). The candidate
# regex's IBAN branch (at the first check digit, ``[0-9](?:[ \-]?[A-Z0-9]){11,30}``, greedy) takes the same
# characters; the other branches at a digit refuse a digit after a letter.
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})([0-9]{2})([A-Z0-9]{11,29}+)(?![ \-]?[A-Z0-9])").match


def table(text: str, anchors: Sequence[int]) -> list[Answer]:
    """Per anchor of ``anchors``: (end of the candidate regex's match there, the handler's findings), for an '@'
    before a plain domain and for the first check digit of a compact IBAN; None elsewhere (match and handle)."""
    n = len(text)
    urls = "://" in text  # then an address may be a URL's credentials: its handler decides
    back = text[::-1]
    out: list[Answer] = []
    append = out.append
    for a in anchors:
        if text[a] == "@":
            m = _DOMAIN(text, a + 1)
            if m is None or m.end() - a > 64:  # (a label of 64 or more is no label)
                append(None)
                continue
            end = m.end()
            if urls and text.rfind("://", a - 420 if a > 420 else 0, a) >= 0:
                found = url_credentials(text, a)
                append((end, (found,) if found is not None else on_email(text, a, end)))
                continue
            local = _LOCAL(back, n - a)
            if local is None or local.end() - (n - a) > 64:
                append((end, on_email(text, a, end)))
            else:
                append((end, ((a - (local.end() - (n - a)), end, "email"),)))
        elif a >= 2:
            m = _IBAN(text, a - 2)
            if m is None:
                append(None)
                continue
            end = m.end()
            cc, check, bban = m.groups()
            if len(bban) + 4 != _IBAN_LENGTHS.get(cc) or (end < n and text[end] in ALNUM):
                append((end, ()))  # no such country, too short (not in groups here), too long, or glued
            elif _iban_mod97_ok(cc + check + bban):
                append((end, ((a - 2, end, "iban"),)))
            else:
                append((end, ()))
        else:
            append(None)
    return out
