"""Passwords given to a command on its command line with a short flag: ``curl -u user:<password>``,
``mysql -uroot -p<password>``, ``redis-cli -a <password>``, ``sshpass -p <password>``, HTTPie's
``http -a user:<password>`` and ``--auth-type bearer --auth <token>``, ``docker login -p <password>``.

A short flag (``-p``, ``-a``) names a password only for the command that defines it, so the candidate is the
command's name (``COMMANDS``: its anchor character and the rest of its name, followed by a space); the handler
reads the rest of the line for the flag and reports the password alone. The candidate's match ends at the
command's name (the rest is a look-ahead), so the scan goes on inside its arguments (a ``-H "Authorization: …"``
there is still found).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from tollway.governance.dlp.assignments import nontrivial
from tollway.governance.dlp.placeholders import is_placeholder
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.text import WORD, boundary_before

_VALUE = r"""(?:'(?P<sq>[^'\n\x00]+)'|"(?P<dq>[^"\n\x00]+)"|(?P<bare>[^\s'"`\x00]+))"""
#: (group name, anchor, the candidate regex after the anchor, the prefilter's pattern, the anchor's offset in it,
#: the flag and its value on the rest of the line, the kind reported)
COMMANDS: tuple[tuple[str, str, str, str, int, re.Pattern[str], str], ...] = (
    # curl -u/--user user:password (https://curl.se/docs/manpage.html#-u); the password is after the first ':'
    ("curl", "c", r"url(?=[ \t])", r"curl[ \t]", 0,
     re.compile(rf"[ \t](?:-u|--user)(?:[ \t]+|=)?{_VALUE}"), "url_credentials"),
    # mysql/mysqldump/mysqladmin -p<password>: glued to the flag (``-p dbname`` is a prompt, then a database)
    ("mysql", "y", r"sql(?<=mysql)(?:dump|admin)?(?=[ \t])", r"mysql(?:dump|admin)?[ \t]", 1,
     re.compile(rf"[ \t]-p{_VALUE}"), "password_assignment"),
    # redis-cli -a <password>
    ("rediscli", "c", r"li(?<=redis-cli)(?=[ \t])", r"redis-cli[ \t]", 6,
     re.compile(rf"[ \t]-a[ \t]+{_VALUE}"), "password_assignment"),
    # HTTPie: http/https -a/--auth user:password, or a token with --auth-type bearer (httpie.io/docs/cli/
    # authentication); the look-ahead asks for the flag, so that "http " in prose costs no handler call
    ("httpie", "p", r"(?<=http)s?(?=[ \t])(?=[^\n\x00]{0,400}?[ \t](?:--auth|-a)[ \t=])", r"https?[ \t]", 3,
     re.compile(rf"[ \t](?:--auth|-a)(?:[ \t]+|=){_VALUE}"), "url_credentials"),
    # sshpass -p <password>
    ("sshpass", "p", r"ass(?<=sshpass)(?=[ \t])", r"sshpass[ \t]", 3,
     re.compile(rf"[ \t]-p[ \t]*{_VALUE}"), "password_assignment"),
    # docker login -p/--password <password> (docs.docker.com/reference/cli/docker/login/; the CLI warns against it,
    # CI scripts do it anyway)
    ("docker", "k", r"er(?<=docker)(?=[ \t]+login[ \t])", r"docker[ \t]+login[ \t]", 3,
     re.compile(rf"[ \t](?:-p|--password)(?:[ \t]+|=){_VALUE}"), "password_assignment"),
)
_LINE = 400  # how far along the line a command's flag is looked for
_NAME_CHARS = WORD | {"-", "."}
_BEARER = re.compile(r"[ \t](?:--auth-type|-A)(?:[ \t]+|=)bearer\b")
_TRIVIAL = frozenset(("password", "pass", "passwd", "pwd", "secret"))


def _make(command: str, offset: int, flag: re.Pattern[str], kind: str) -> Callable[[str, int, int], Iterable[Span]]:
    """The handler of one command: its name not glued to a longer word, then its flag on the same line."""
    def on_command(text: str, start: int, end: int) -> Iterable[Span]:
        if not boundary_before(text, start - offset, _NAME_CHARS):
            return ()
        stop = text.find("\n", end, end + _LINE)
        m = flag.search(text, end, stop if stop >= 0 else end + _LINE)
        if m is None:
            return ()
        group = next(g for g in ("sq", "dq", "bare") if m.group(g) is not None)
        vs, ve = m.span(group)
        if command == "httpie" and _BEARER.search(text, end, m.start()) is not None:  # a token, not user:password
            if not nontrivial(text[vs:ve], True):
                return ()
            return ((vs, ve, "authorization_header"),)
        if command in ("curl", "httpie"):  # user:password
            colon = text.find(":", vs, ve)
            if colon < 0:
                return ()
            vs = colon + 1
            value = text[vs:ve]
            if len(value) < 3 or value.startswith("$") or value.lower() in _TRIVIAL or is_placeholder(value):
                return ()
        elif not nontrivial(text[vs:ve], True):
            return ()
        return ((vs, ve, kind),)
    return on_command


#: The handler of each command's group.
HANDLERS: dict[str, Callable[[str, int, int], Iterable[Span]]] = {
    name: _make(name, offset, flag, kind) for name, _a, _p, _h, offset, flag, kind in COMMANDS}
