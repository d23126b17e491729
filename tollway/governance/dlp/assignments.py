"""Assignments to secret-named variables: ``password = "…"``, ``API_KEY: …``, ``token => …``,
``<password>…</password>``, ``--password …``.

The candidate matcher finds the keyword followed by an assignment operator (``ASSIGN_GATE``, a
look-ahead); ``on_assignment`` reads the value and decides whether it looks like a real credential.
Only the value is reported (and so redacted), never the name.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from itertools import pairwise

from tollway.governance.dlp.placeholders import is_placeholder
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.secrets import ADO_LEGACY
from tollway.governance.dlp.text import WORD, has_digit_and_letter

# After a keyword: end of the identifier, an assignment operator and at least 6 characters of value.
# A look-ahead, so that the scan goes on inside the value; _ASSIGN_VALUE then reads the value.
# The operator: ``=``, ``:``, ``:=``, ``=>``, ``"KEY"] =`` (a map or environment entry), or a comma after a quoted
# name (``setProperty("X_TOKEN", "…")``, ``put("password", "…")``), which then needs a quoted value.
# Also a type annotation before the ``=`` (``PASSWORD: str = "…"``, ``token: Optional[str] = "…"``: first, or the
# annotation would be read as the value) and an XML attribute pair (``<add key="ApiKey" value="…"/>``,
# ``<property name="password" value="…"/>``: the name is an attribute's value, ``value=`` the operator).
_OP = r"(?::=|=>|=(?!=)|:(?![:/]))"
# (A space before its ``=``: a base64 value has none, so ``token: abc=def`` is not read as a type and a value.)
_ANNOTATION = r"[ \t]*:[ \t]*[A-Za-z_][A-Za-z0-9_.]{0,40}(?:\[[A-Za-z0-9_., ]{0,40}\])?[ \t]+=(?![=>])"
_ATTR_PAIR = r"""["'][ \t]+(?i:value)[ \t]*=(?=[ \t]*["'])"""
# A C# auto-property's initialiser: ``public string ClientSecret { get; set; } = "…";`` (also ``init``,
# ``private set``, get-only).
_PROPERTY = (r"[ \t]*\{[ \t]*get;(?:[ \t]*(?:(?:private|protected|internal)[ \t]+)?(?:set|init);)?[ \t]*\}"
             r"[ \t]*=(?![=>])")
# The same pair in JSON, as Postman collections and HAR files write a form's fields:
# ``{"key": "password", "value": "…"}``, ``{"name": "api_key", "value": "…"}``.
_JSON_PAIR = r"""["'][ \t]*,[ \t]*["'](?i:value)["'][ \t]*:(?=[ \t]*["'])"""
_OPERATOR = (rf"""(?:{_ANNOTATION}|{_ATTR_PAIR}|{_JSON_PAIR}|{_PROPERTY}|\\?["']\]?[ \t]*{_OP}|[ \t]*{_OP}"""
             r"""|\\?["'][ \t]*,(?=[ \t]*\\?["']))""")
# An XML element (``<password>…</password>``: Maven's settings.xml, Spring and .NET configuration) is an
# assignment too: ``>``, then the element's text up to its closing tag, on one line.
_XML = r">[^<>\n\x00]{6,}</"
# A command-line flag (``--password VALUE``, ``--api-key "VALUE"``): a space is its operator, so the validator
# only takes it after ``--``.
_FLAG = r"""[ \t]+(?:["'][^"'\n\x00]{6}|[^\s"'`\-$<{\x00][^\s"'`\x00]{5})"""
# Prose: ``my password is …``, ``the wifi passphrase is "…"`` (the validator takes it after password, passwd and
# passphrase only).
_PROSE = r"""[ \t]+(?:is|was)[ \t]+(?:["'][^"'\n\x00]{6}|[^\s"'`\x00]{6})"""
# Percent-encoded, as a query string or a JSON body inside another URL's parameter (``next=%2Flogin%3Fpassword%3D…
# %26…``, ``data=%7B%22password%22%3A%22…%22%7D``): the operator is ``%3D`` or ``%22%3A%22``, the value a run of
# URL characters and escapes up to an encoded ``&``, ``"`` or ``,`` (``%26``, ``%22``, ``%2C``).
_ENC_CHARS = r"[A-Za-z0-9+._\-~!*]"
_ENC_QUERY = rf"(?:{_ENC_CHARS}|%(?!26)[0-9A-Fa-f]{{2}})"  # a character of a query's value: up to an encoded '&'
# A character of a JSON string: up to an encoded '"', but an escaped one (\", %5C%22) is part of it.
# (Characters a query may also hold raw, ``? / : @ $ ' ( )``, are part of it: stopping at a raw ``?`` forwarded the
# rest of the password.)
_ENC_JSON = rf"(?:{_ENC_CHARS}|[?/:@$'()]|%5[Cc]%[0-9A-Fa-f]{{2}}|%(?!22)[0-9A-Fa-f]{{2}})"
_ENC_JSON_OP = r"%22%3[Aa](?:%20)*%22"
ASSIGN_GATE = (rf"""(?=(?![A-Za-z0-9_])(?:{_OPERATOR}[ \t]*"""
               r"""(?:\\?["'`][^"'`\n\x00]{6}|[^\s"'`,;)}\]\[(<{$&\x00]{6})"""
               rf"""|{_XML}|{_PROSE}|{_FLAG}|%3[Dd]{_ENC_QUERY}{{6}}|{_ENC_JSON_OP}{_ENC_JSON}{{6}}))""")
_ASSIGN_VALUE = re.compile(
    rf"""(?![A-Za-z0-9_])(?:{_OPERATOR}[ \t]*"""
    r"""(?:\\?(?P<q>["'`])(?P<qv>[^"'`\n\x00]+?)\\?(?P=q)|(?P<uv>[^\s"'`,;)}\]&\x00]+))"""
    r"""|>[ \t]*(?P<xv>[^<>\n\x00]+?)[ \t]*</"""
    r"""|[ \t]+(?:is|was)[ \t]+(?:(?P<pq>["'])(?P<pqv>[^"'\n\x00]+?)(?P=pq)|(?P<pv>[^\s"'`\x00]+))"""
    r"""|[ \t]+(?:(?P<fq>["'])(?P<fqv>[^"'\n\x00]+?)(?P=fq)|(?P<fv>[^\s"'`\x00]+))"""
    rf"|%3[Dd](?P<ev>{_ENC_QUERY}+)|{_ENC_JSON_OP}(?P<jv>{_ENC_JSON}+))"
)
# Sensitive identifier endings. Each alternative below matches the literal letters after its anchor,
# then checks the whole word with a case-insensitive look-behind.
KEY_WORDS = [f"{p}{sep}key" for p in ("api", "access", "private", "auth", "signing", "encryption", "master",
                                       "client", "app", "license", "consumer", "hmac", "aes", "jwt")
             for sep in ("", "_", "-")]
# Names of an Azure storage account key outside a connection string (``AZURE_STORAGE_KEY=…``,
# ``storage_account_key = "…"``, ``az storage … --account-key …``). Only the key's own shape counts under them
# (88 base64 characters ending ``==``, 64 random bytes): ``account_key`` and ``storage_key`` name identifiers too.
AZURE_KEY_WORDS = ("storage_key", "storage-key", "storagekey", "storageaccountkey", "account_key", "account-key")
KEY_WORDS += AZURE_KEY_WORDS
BEHIND_KEY = "|".join(f"(?<={w})" for w in KEY_WORDS)
# ``pass`` ends a credential's name only after what owns a credential (detect-secrets' db_pass, database_pass,
# key_pass; the services .env files name so): ``render_pass``, ``lint_pass``, ``high_pass`` are code, not secrets.
PASS_OWNERS = ("db", "database", "key", "keystore", "truststore", "smtp", "mail", "email", "redis", "mysql", "pg",
               "postgres", "mongo", "ldap", "ftp", "sftp", "admin", "root", "user", "bind", "sql", "rabbitmq", "amqp",
               "wifi", "vpn", "default", "become", "ssh", "proxy", "vnc")
BEHIND_PASS = "|".join(rf"(?<={o}[_\-]pass)" for o in PASS_OWNERS)
# ``pat`` (a personal access token) ends a credential's name only after Azure DevOps' names (``AZURE_DEVOPS_PAT``,
# ``ADO_PAT``, ``AZDO_PAT``, ``VSTS_PAT``): ``pat`` alone is a path, a pattern, a name.
PAT_OWNERS = ("devops", "ado", "azdo", "vsts")
BEHIND_PAT = r"(?<=[_\-]pat)(?i:" + "|".join(rf"(?<={o}[_\-]pat)" for o in PAT_OWNERS) + ")"  # (path: one step)
#: The keywords of a command-line flag (``--db-password VALUE``), each right after a '-', '_' or '.': the Hyperscan
#: prefilter looks for exactly these (a separator, the keyword, a space), and ``on_assignment`` takes a flag only when
#: its name ends so, so that both matchers find the same flags.
#: Each is (the keyword's regex, where in it the candidate regex's anchor character is), so the prefilter can report
#: that anchor at a fixed offset.
FLAG_WORDS: tuple[tuple[str, int], ...] = (
    (r"secret(?:[_\-]?key)?", 2), (r"passw(?:or)?d", 4), ("pwd", 1), ("token", 2), ("passphrase", 4),
    *((re.escape(w), len(w) - 3) for w in KEY_WORDS), *((rf"{o}[_\-]pass", len(o) + 1) for o in PASS_OWNERS))
_FLAG_NAME = re.compile(r"(?i)[_\-.](?:" + "|".join(word for word, _at in FLAG_WORDS) + r")\Z")


_TRIVIAL = frozenset(("none", "null", "nil", "true", "false", "undefined", "required", "optional", "string",
                      "str", "bytes", "int", "empty", "default", "unknown", "hidden", "masked", "secret",
                      "password", "passwd", "token", "api_key", "apikey"))
_BEARER = re.compile(r"(?i)(?:bearer|basic|token)\s+\S{8,}")
#: Kubernetes bootstrap tokens (kubeadm join --token): 6 and 16 lower-case letters or digits, dot-joined.
_BOOTSTRAP = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
_PARTS = re.compile(r"[_\-.]")
_TEMPLATE = re.compile(r"\{[\w.]*\}")
# A .env or shell line's NAME=value: the value is data, not code, so brackets in it are a password's characters
# (``SMTP_PASS=3W=/&pVAX%Lc9IqR+GV#(eX{``), as they are in quotes.
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*=(?!=)")
_CALL = re.compile(r"[\w.]+\(.*\)")
_DOTTED_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_AZURE_KEY = re.compile(r"[A-Za-z0-9/+]{86}==")
_LINE_START = re.compile(r"(?:^|[\n\x00])[ \t]*\Z")
# The start of a configuration line, before its name: indentation, a YAML list's dash, ``export``/``set``/``ENV``.
_LINE_HEAD = re.compile(r"(?:^|[\n\x00])[ \t]*(?:(?:export|set|ENV)[ \t]+|-[ \t]*)?\Z")
_CONSONANTS = re.compile(r"[b-df-hj-np-tv-z]{3,}")
_PASSPHRASE = re.compile(r"[a-z]{3,}(?:-[a-z]{3,}){3,7}")
_PASSWORD_NAMES = ("password", "passwd", "passphrase", "pass", "pwd")
#: Names of CSRF tokens (Django's ``csrftoken`` cookie and ``csrfmiddlewaretoken`` field, Angular's ``XSRF-TOKEN``,
#: Rails' ``authenticity_token``): random, but they prove only that a request came from the site's own form.
_ANTI_FORGERY = ("csrftoken", "csrf_token", "csrf-token", "xsrf-token", "xsrf_token", "xsrftoken",
                 "csrfmiddlewaretoken", "authenticity_token")
_ARN_BEFORE = re.compile(r"arn:aws[\w-]*:[\w-]+:[\w-]*:\d*:\Z")
# A configuration line's unquoted value ends at a space, or at an ``&`` that starts the next field of a form body
# (``pass=…&username=admin``); an ``&`` inside a password is not followed by ``name=``.
#: The rest of a quoted value after an escaped quote: escaped characters and others, up to the closing quote.
_QUOTED_REST = {q: re.compile(rf"(?:[^{q}\\\n\x00]|\\[^\n\x00])*{q}?") for q in "\"'`"}
#: A hard-coded fallback after a reference (``process.env.JWT_SECRET || "…"``, ``?? "…"``, Python's ``or "…"``):
#: the reference is code, the fallback a secret in the source.
_FALLBACK = re.compile(r"""[ \t]*(?:\|\||\?\?|or)[ \t]*(["'`])([^"'`\n\x00]{6,})\1""")
_VALUE_END = re.compile(r"[\s\x00]|&(?=[A-Za-z_][\w.\-\[\]]*=)")
_ENTRY_END = re.compile(r"""[\s\x00;"']""")
_NETRC_LOGIN = re.compile(r"(?:^|\s)login[ \t]+\S+[ \t]+\Z")
_ATTR_NAME = re.compile(r"""(?i:key|name)["']?[ \t]*[:=][ \t]*["']\Z""")
_CONFIGURE_SET = re.compile(r"(?<![A-Za-z0-9_\-])configure[ \t]+set[ \t]+\Z")


# A name that says Azure DevOps (``AZURE_DEVOPS_PAT``, ``ADO_PAT``, ``azure_devops_token``, Azure Pipelines'
# ``SYSTEM_ACCESSTOKEN``): a legacy PAT's shape (``secrets.ADO_LEGACY``) under it is reported as ``azure_devops_pat``.
_ADO_NAME = re.compile(r"devops|azdo|vsts|azure|accesstoken|(?:^|[_\-.])ado[_\-]")
_WORDY = re.compile(r"_?[a-z][a-z0-9]*(?:[_\-.][a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|#[0-9A-Fa-f]{3,8}")


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def nontrivial(value: str, quoted: bool) -> bool:
    """Whether an assigned value looks like a real credential rather than a name, a reference or a placeholder.

    A percent-encoded value (``password=%21S3cr%40t``, a form body or a query string) is judged decoded: its
    escapes are not a format string (``%s``), and ``%7B%7B…%7D%7D`` is a template like ``{{…}}``. (``+`` stays:
    ``unquote``, not ``unquote_plus``, so a form-encoded password is not taken for a sentence.)"""
    if "%" in value and _PERCENT.search(value) is not None:
        decoded = value
        for _ in range(3):  # encoded once more inside another parameter's value: %2540 is '@'
            decoded = urllib.parse.unquote(decoded)
            if _PERCENT.search(decoded) is None:
                break
        if _PERCENT.search(decoded) is not None or ("{" in decoded and "}" in decoded):  # %7B%7Bx%7D%7D: a template
            return False
        if decoded[:1] == "$" and decoded[1:2] not in ("{", "("):  # %24… is a '$' sent as is, not a variable
            decoded = "!" + decoded[1:]
        return nontrivial(decoded.replace("{", "!"), quoted)  # (a lone brace is a symbol of the password)
    if len(value) < 6 or value.startswith(("[REDACTED:", "$", "%", "/", "./", "../", "~/", "http:", "https:")):
        return False
    low = value.lower()
    if low in _TRIVIAL or is_placeholder(value):
        return False
    if _TEMPLATE.search(value) is not None:  # a template: {name}, {0}, {}, #{x}, %{x}
        return False
    if any(c.isspace() for c in value):  # "Bearer <token>", or a passphrase (quoted, a few words, not a sentence)
        if _BEARER.fullmatch(value) is not None:
            return True
        words = value.split()
        # A '!' may end a passphrase whose words all start with a capital or a digit ("Summer Vacation 2024!"); a
        # message ("Passwords do not match!") has lower-case words.
        if value[-1] == "!" and all(w[0].isupper() or w[0].isdigit() for w in words):
            value = value[:-1]
        return (quoted and 2 <= len(words) <= 6 and len(value) >= 10 and value[-1] not in ".?!:;,"
                and (len(words) >= 4 or any(not w.isalpha() for w in words)))
    if _BOOTSTRAP.fullmatch(value) and any(c.isdigit() for c in value):  # a kubeadm bootstrap token
        return True
    if _WORDY.fullmatch(value) and not _random_part(value):  # snake_case / kebab-case / dotted names, ENV_VAR_NAMES,
        return False  # #colours (a 32-hex part is no word: Mailchimp's <32 hex>-us15)
    classes = (any(c.islower() for c in value) + any(c.isupper() for c in value)
               + any(c.isdigit() for c in value) + any(not c.isalnum() for c in value))
    if quoted:
        return classes >= 2 or len(value) >= 16
    # Unquoted: reject what reads as code (calls, indexing, dotted names, identifiers without digits).
    if any(c in value for c in "()[]{}<>"):
        return False
    if _DOTTED_IDENT.fullmatch(value) and (not any(c.isdigit() for c in value) or "." in value) \
            and not _random_segment(value):
        return False
    return classes >= 2 and len(value) >= 8


def _random_segment(value: str) -> bool:
    """Whether a dotted value has a part that reads as random, not as a name: five or more characters with a digit
    and the case flipping at a third of its letters or more (``jF2qQ.mq3CWQyZ``; not ``OAuth2Client``)."""
    for part in value.split("."):
        letters = [c for c in part if c.isalpha()]
        if len(part) >= 5 and len(letters) < len(part) and len(letters) >= 3 \
                and sum(a.islower() != b.islower() for a, b in pairwise(letters)) >= 0.35 * (len(letters) - 1):
            return True
    return False


def _random_part(value: str) -> bool:
    """Whether a name-shaped value has a part of 20 or more letters and digits with both in it (not a word)."""
    return any(len(part) >= 20 and has_digit_and_letter(part) for part in _PARTS.split(value))


def random_words(value: str, key: str) -> bool:
    """Two shapes of password that ``nontrivial`` takes for names, accepted as a value of a secret-named name on a
    configuration line, in quotes or after ``.netrc``'s ``password``:

    - letters only, at least 10, that read as random: a run of five consonants, or two of three or more with one
      of four (``pjsudiuvawwdmeqj``, a Google app password); or the case flipping at a third of the letters or
      more (``uRFyyjQgBrkZ``). Words and identifiers do not (``downgrades``, ``credentials``, ``userPassword``).
    - under a password's name, a passphrase of four or more lower-case words joined by dashes
      (``violet-timber-maple-harbor``, as password managers make them)."""
    if len(value) < 10 or not value.isascii() or value.lower() in _TRIVIAL or is_placeholder(value):
        return False
    if value.isalpha():
        runs = [len(r) for r in _CONSONANTS.findall(value.lower())]
        flips = sum(a.islower() != b.islower() for a, b in pairwise(value))
        longest = max(runs, default=0)
        return longest >= 5 or (longest >= 4 and len(runs) >= 2) or flips >= 0.35 * len(value)
    return _PASSPHRASE.fullmatch(value) is not None and key.endswith(_PASSWORD_NAMES)


def _space_assigns(text: str, k: int, op: int, key: str) -> bool:
    """Whether a space (``NAME VALUE``) assigns here: after a ``--flag`` or ``aws configure set NAME`` whose name ends
    in a keyword right after a separator (``FLAG_WORDS``), or after ``password`` as a ``.netrc`` line has it (first on
    its line, or after ``login <user>``)."""
    if key == "password" and (_LINE_START.search(text, max(0, k - 64), k) is not None
                              or _NETRC_LOGIN.search(text, max(0, k - 128), k) is not None):
        return True
    return _FLAG_NAME.search(text, max(k, op - 64), op) is not None and (
        text.startswith("--", k) or _CONFIGURE_SET.search(text, max(0, k - 40), k) is not None)


def _whole_value(text: str, k: int, ve: int, config: bool) -> int:
    """Where an unquoted value read up to ``ve`` really ends, for the name at ``k`` (``config``: the name starts a
    configuration line, which the caller decided once for this and ``_unquoted_ok``). The value regex stops at
    ``, ; ) } ] &`` (in code they end it: ``f(token=abc, …)``); but on a configuration line
    (``DB_PASSWORD=Tr0ub4dor&3xy`` in a .env file, ``password: I9Ta:Us,r[tp9`` in YAML, ``x.password=…`` in a
    properties file) the value runs to the next space, and in a connection string's entry
    (``…;Password=Mosk1to&3317;…``) to the next ``;`` or quote. Stopping early there forwarded the rest of the
    password."""
    if config:
        stop = _VALUE_END.search(text, ve)
    elif k > 0 and text[k - 1] == ";":
        stop = _ENTRY_END.search(text, ve)
    else:
        return ve
    end = stop.start() if stop is not None else len(text)
    while end > ve and text[end - 1] in ",;":  # a code line's separator (``password: cfg.DBPassword,``)
        end -= 1
    return end


def _escaped_end(text: str, ve: int, quote: str) -> int:
    """Where a quoted value really ends when the quote the value regex stopped at is escaped inside it
    (``{"password": "xSRk2heW\\"7SdhRk9W"}``: JSON has no other way to write a quote in a string). Reading up to
    the escaped quote forwarded the rest of the password. The end is the next unescaped ``quote`` on the line, or
    the line's end."""
    m = _QUOTED_REST[quote].match(text, ve)
    return m.end() - 1 if m is not None and text[m.end() - 1] == quote else (m.end() if m is not None else ve)


def _unquoted_ok(text: str, k: int, vs: int, short_end: int, end: int, key: str, config: bool) -> bool:
    """Whether an unquoted value, read to where code would end it (``short_end``) or to its real end (``end``,
    ``_whole_value``), looks like a credential. On a configuration line, brackets may be part of it (a .env
    ``NAME=value`` is data, unless it is a call) and random letters or a passphrase count (``random_words``)."""
    if nontrivial(text[vs:short_end], False):
        return True
    value = text[vs:end]
    if k > 0 and text[k - 1] == ";":  # a connection string's entry: delimited like a quoted value
        return nontrivial(value, True) or random_words(value, key)
    if not config:
        return nontrivial(value, False)
    env = _ENV_NAME.match(text, k) is not None and _CALL.fullmatch(value) is None
    return nontrivial(value, env) or random_words(value, key)


def on_assignment(text: str, start: int, end: int) -> Iterable[Span]:
    vm = _ASSIGN_VALUE.search(text, start + 1)
    if vm is None or vm.start() > end:
        return ()
    group = next(g for g in ("qv", "xv", "pqv", "pv", "fqv", "fv", "uv", "ev", "jv") if vm.group(g) is not None)
    vs, ve = vm.span(group)
    if group == "qv" and text[ve] == "\\" and text[vs - 2] != "\\":
        ve = _escaped_end(text, ve, text[vs - 1])
    if group == "pv":  # prose: the sentence's punctuation is not part of the value
        while ve > vs and text[ve - 1] in ".,;:!?)":
            ve -= 1
    k = vm.start()
    while k > 0 and (text[k - 1] in WORD or text[k - 1] in ".-"):
        k -= 1
    key = text[k:vm.start()].lower()
    if group == "uv":
        fallback = _FALLBACK.match(text, vm.end(group))
        if fallback is not None and nontrivial(fallback.group(2), True):  # process.env.X || "<hard-coded>"
            vs, ve = fallback.span(2)
        else:
            config = _LINE_HEAD.search(text, max(0, k - 64), k) is not None  # the name starts a line
            ve = _whole_value(text, k, ve, config)
            if not _unquoted_ok(text, k, vs, vm.end(group), ve, key, config):
                return ()
    elif not nontrivial(text[vs:ve], group not in ("fv", "pv", "ev")) \
            and not ((group == "qv" or (group == "fv" and _space_assigns(text, k, vm.start(), key)))
                     and random_words(text[vs:ve], key)):
        return ()
    value = text[vs:ve]
    if group == "xv" and (k == 0 or text[k - 1] != "<"):  # an element's text follows its opening tag only
        return ()
    if group in ("fqv", "fv") and not _space_assigns(text, k, vm.start(), key):
        return ()
    if group in ("pqv", "pv") and not key.endswith(("password", "passwd", "passphrase")):
        return ()
    if group == "qv" and "value" in text[vm.start():vs].lower() \
            and _ATTR_NAME.search(text, max(0, k - 24), k) is None:  # key="ApiKey" value="…", name="password" …
        return ()
    if key.endswith(_ANTI_FORGERY):  # a form's or cookie's anti-forgery token authenticates nobody
        return ()
    if k > 0 and text[k - 1] == ":" and _ARN_BEFORE.search(text, max(0, k - 200), k) is not None:
        return ()  # arn:aws:secretsmanager:…:secret:name names a secret; it is not one
    if k >= 2 and text.startswith("${", k - 2) and value[0] in "?+":  # ${VAR:?message}, ${VAR:+alternative}
        return ()
    if key.endswith(("secret_key", "secret-key", "secretkey")) and _AWS_SECRET.fullmatch(value) \
            and "aws" in text[max(0, k - 300):k].lower():  # Terraform's provider "aws", Spring's cloud.aws.…
        return ((vs, ve, "aws_secret_key"),)
    if _AZURE_KEY.fullmatch(value) and ("storage" in key or key.endswith(AZURE_KEY_WORDS)):
        return ((vs, ve, "azure_storage_key"),)
    if key.endswith(AZURE_KEY_WORDS):  # any other value under these names: an identifier as often as a secret
        return ()
    if "secret" in key and ("aws" in key or "access" in key) and _AWS_SECRET.fullmatch(value):
        return ((vs, ve, "aws_secret_key"),)
    if key.endswith(("accountkey", "sharedaccesskey")):  # Azure connection strings
        return ((vs, ve, "azure_storage_key"),)
    if ADO_LEGACY.fullmatch(value) and _ADO_NAME.search(key) is not None:  # AZURE_DEVOPS_PAT, SYSTEM_ACCESSTOKEN
        return ((vs, ve, "azure_devops_pat"),)
    return ((vs, ve, "password_assignment"),)
