"""Credentials in configuration files whose name alone says too little: Docker's registry ``auth`` (base64 of
``user:password``), the ``pass`` of an auth object (nodemailer's ``auth: { user, pass }``), a Terraform
``variable "db_password"``'s ``default``, and an Azure storage account key named in prose ("the storage account
key is …").

Each name is also an ordinary word of code (``auth``, ``pass``, ``default``, "account key"), so each candidate asks
for what the form has besides the name (``FORMS``: a base64 value, a quoted default, the key's own shape), and its
handler for the context that makes it a credential: a value that decodes to ``user:password``, a ``user`` key beside
the ``pass`` or an ``auth`` object around it, a ``variable`` block whose name is secret-named. Only the value is
reported.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable

from tollway.governance.dlp.assignments import nontrivial, on_assignment
from tollway.governance.dlp.placeholders import is_placeholder
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.text import WORD

_B64_VALUE = re.compile(r"""["']?[ \t]*[:=][ \t]*(["']?)([A-Za-z0-9+/]{8,}={0,2})(["']?)""")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


def on_docker_auth(text: str, start: int, end: int) -> Iterable[Span]:
    """``"auth": "<base64>"`` (``~/.docker/config.json``'s ``auths``, a Kubernetes ``.dockerconfigjson``) and
    ``_auth=<base64>`` (``.npmrc``): reported when the value decodes to printable ``user:password`` and the password
    is not a placeholder (the decoding is the context: a random or hashed base64 value almost never reads so).
    ``start`` is the 'u' of ``auth``; the key must be ``auth`` or ``_auth`` whole (not ``oauth``)."""
    k = start - 1
    if k > 0 and (text[k - 1].isalnum() or (text[k - 1] == "_" and k > 1 and text[k - 2] in WORD)):
        return ()
    m = _B64_VALUE.match(text, k + 4)
    if m is None or m.group(1) != m.group(3):
        return ()
    value = m.group(2)
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ()
    user, colon, password = decoded.partition(":")
    if not colon or not user or len(password) < 3 or _PRINTABLE.fullmatch(decoded) is None:
        return ()
    if is_placeholder(password) or password.startswith("$") or password.lower() in _TRIVIAL_PASSWORDS:
        return ()
    return ((m.start(2), m.end(2), "password_assignment"),)


_TRIVIAL_PASSWORDS = frozenset(("password", "pass", "passwd", "pwd", "secret"))
# A sibling key that names the account (``user: 'a@b.c'``, ``"username": …``) or an ``auth`` object around the pass.
_SIBLING = re.compile(r"""(?<![A-Za-z0-9_\-.])(?:user|username|user_name|login|email)["']?[ \t]*:""")
_AUTH_PARENT = re.compile(r"""(?<![A-Za-z0-9_\-.])auth["']?[ \t]*[:=]""")
_OBJECT_REACH = 160  # characters either side of ``pass`` where its sibling or its ``auth`` parent is looked for


def on_pass_key(text: str, start: int, end: int) -> Iterable[Span]:
    """``pass: '…'`` / ``"pass": "…"`` whose key is ``pass`` whole (``bypass``, ``pass_rate``, ``render_pass`` do
    not reach here), with a ``user`` key beside it or an ``auth`` object around it (nodemailer's
    ``auth: { user: 'a@b.c', pass: '…' }``, the same in JSON or YAML): ``pass`` alone is a word of code and tests.
    ``start`` is its 'p'; the value is read and judged as any assignment's."""
    lo = max(0, start - _OBJECT_REACH)
    if _SIBLING.search(text, lo, min(len(text), end + _OBJECT_REACH)) is None \
            and _AUTH_PARENT.search(text, lo, start) is None:
        return ()
    return on_assignment(text, start, end)


# A form body or a query string (``username=bob&pass=…``): the pair is one of several ``&``-joined fields, with a
# ``user`` field among them.
_QUERY_USER = re.compile(r"(?<![A-Za-z0-9_\-.])(?:user|username|user_name|login|email)=[^\s&\"'`\x00]")


def on_pass_field(text: str, start: int, end: int) -> Iterable[Span]:
    """``pass=…`` as a field of a form body or a query string (``?user=bob&pass=…``, ``pass=…&username=bob``),
    with a ``user`` field within reach: ``pass=`` alone is code (``pass=0``, ``pass=first``). ``start`` is its 'p'."""
    k = start
    value_end = k + 5
    while value_end < len(text) and text[value_end] not in "& \t\n\r\"'`#\x00":
        value_end += 1
    if not ((k > 0 and text[k - 1] in "?&") or text.startswith("&", value_end)):
        return ()
    if _QUERY_USER.search(text, max(0, k - _OBJECT_REACH), min(len(text), value_end + _OBJECT_REACH)) is None:
        return ()
    return on_assignment(text, start, end)


_VARIABLE = re.compile(r"""variable[ \t]+"([A-Za-z0-9_\-]{1,80})"[ \t]*\{""")
_SECRET_NAME = re.compile(r"(?i)passw(?:or)?d|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key"
                          r"|credential|passphrase|(?:^|[_\-])pass$")
_DEFAULT_VALUE = re.compile(r"""[ \t]*=[ \t]*"((?:[^"\\\n\x00]|\\.)+)\"""")  # (HCL escapes: \" inside)
_BLOCK_REACH = 2000  # how far before ``default`` its ``variable`` block may open


def on_tf_default(text: str, start: int, end: int) -> Iterable[Span]:
    """Terraform/HCL: the ``default = "…"`` of a ``variable`` whose name is secret-named (``variable "db_password"
    { … default = "…" }``, across lines). The block must still be open where ``default`` is (its braces counted),
    so that a later variable's default is not taken for this one's. ``start`` is the 'd' of ``default``."""
    if start > 0 and (text[start - 1] in WORD or text[start - 1] in ".-"):
        return ()
    at = text.rfind("variable", max(0, start - _BLOCK_REACH), start)
    if at < 0:
        return ()
    block = _VARIABLE.match(text, at)
    if block is None or _SECRET_NAME.search(block.group(1)) is None:
        return ()
    inside = text[block.end():start]
    if inside.count("{") + 1 <= inside.count("}"):  # the variable's block closed before this default
        return ()
    m = _DEFAULT_VALUE.match(text, end)
    if m is None:
        return ()
    if not nontrivial(m.group(1), True):
        return ()
    return ((m.start(1), m.end(1), "password_assignment"),)


_AZURE_KEY_NEAR = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])")
_PROSE_REACH = 60  # characters after "account key" where the key itself may start
_SENTENCE_END = re.compile(r"[.;!?](?=\s)")


def on_prose_azure_key(text: str, start: int, end: int) -> Iterable[Span]:
    """An Azure storage account key (88 base64 characters ending ``==``, 64 random bytes) within a few words after
    "storage key", "account key" or "AccountKey" on the same line ("the storage account key is …", "AccountKey:
    …"). The key's shape is required: those words name settings and identifiers too."""
    stop = text.find("\n", end, end + _PROSE_REACH + 88)
    m = _AZURE_KEY_NEAR.search(text, end, stop if stop >= 0 else end + _PROSE_REACH + 88)
    if m is None or m.start() - end > _PROSE_REACH or is_placeholder(m.group()):
        return ()
    if _SENTENCE_END.search(text, end, m.start()) is not None or text[m.start() - 1] == "-":
        return ()  # another sentence ("… rotated every 90 days; integrity sha512-…"), or a hash's prefix
    return ((m.start(), m.end(), "azure_storage_key"),)


_DOCKER_GATE = r"""(?=["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9+/]{8})"""
_PASS_GATE = r"""(?=["']?[ \t]*:[ \t]*(?:["'`][^"'`\n\x00]{6}|[^\s"'`,;)}\]\[(<{$&\x00]{6}))"""
_PROSE_WORDS = r"(?i:(?<=account[ \t]key)|(?<=storage[ \t]key)|(?<=accountkey))"
# (not ``AccountKey=…``: a connection string's entry, ``secrets.TOKENS``' at the 'y')
_PROSE_KEY = r"""(?!=)(?=[^\n\x00]{0,60}?[A-Za-z0-9+/]{86}==)"""
#: (group name, anchor, the candidate regex after the anchor, the prefilter's patterns as (pattern, offset of the
#: anchor in a hit, caseless), the handler, the kinds reported). Each regex starts with a literal character after its
#: anchor: ``candidates`` puts it before the group, so that the pure-Python matcher leaves the branch at a glance
#: where the anchor is not followed by it (a named group first costs a step of ``re`` at every anchor character).
#: The anchors are chosen for that too: the 'u' of ``auth`` (not its more frequent 'h'), the 'k' of "account key".
FORMS: tuple[tuple[str, str, str, tuple[tuple[str, int, bool], ...], Callable[[str, int, int], Iterable[Span]],
                   str], ...] = (
    ("dockerauth", "u", rf"th(?<=auth){_DOCKER_GATE}", ((r"auth[\"']?[ \t]*[:=][ \t]*[\"']?[A-Za-z0-9+/]{8}", 1,
                                                        False),), on_docker_auth, "password_assignment"),
    ("passkey", "p", rf"ass(?<![A-Za-z0-9_\-.$]pass){_PASS_GATE}", ((r"[^A-Za-z0-9_\-.$]pass[\"']?[ \t]*:", 1, False),
                                                                (r"^pass[\"']?[ \t]*:", 0, False)),
     on_pass_key, "password_assignment"),
    ("passfield", "p", r"ass(?<![A-Za-z0-9_\-.$%]pass)(?==[^\s&\"'`#\x00]{6})",
     ((r"[^A-Za-z0-9_\-.$%]pass=", 1, False), (r"^pass=", 0, False)), on_pass_field, "password_assignment"),
    ("tfdefault", "d", r"efault(?=[ \t]*=[ \t]*\"(?:[^\"\\\n\x00]|\\.){6})", ((r"default[ \t]*=[ \t]*\"", 0, False),),
     on_tf_default, "password_assignment"),
    # "account key", "storage key", "AccountKey": anchored on the 'k' or 'K' of key (the prefilter is caseless, so
    # each hit is at that letter in either case)
    ("azprose", "k", rf"ey{_PROSE_WORDS}{_PROSE_KEY}",
     ((r"account[ \t]key", 8, True), (r"storage[ \t]key", 8, True), (r"accountkey", 7, True)),
     on_prose_azure_key, "azure_storage_key"),
    ("azprosE", "K", rf"ey{_PROSE_WORDS}{_PROSE_KEY}", (), on_prose_azure_key, "azure_storage_key"),
)

#: The handler of each form's group.
HANDLERS: dict[str, Callable[[str, int, int], Iterable[Span]]] = {f[0]: f[4] for f in FORMS}
