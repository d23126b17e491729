"""Secret detectors with a fixed shape: provider key prefixes, PEM blocks, JWTs, URL credentials,
``Authorization`` lines.

``TOKENS`` lists the fixed-prefix tokens, each as ``(kind, before, anchor, after, offset)``: the
token is ``before + anchor + after`` (``before`` a fixed-width regex, checked with a look-behind),
the match starts at the one-character ``anchor``, chosen as rare as the format allows (see
``candidates``). A token counts when it is not glued to a longer word on either side, its part
after the fixed prefix is not a placeholder (``placeholders``), and, for the formats that carry
one, its checksum is right (``_CHECKS``: Grafana's CRC-32, age's Bech32). Sources for every
format are cited next to its generator in bench/dlp_quality.py and, for the later kinds, in
docs/dlp.md.

Each ``on_*`` function is called by the candidate matcher with the position of the anchor
character of its alternative and the match end, and returns the findings there, if any.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import zlib
from collections.abc import Callable, Iterable

from tollway.governance.dlp.placeholders import is_placeholder
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.text import ALNUM, WORD, boundary_after, boundary_before, has_digit_and_letter

_B64 = "[A-Za-z0-9+/]"
_GL = "(?:pat|dt|rt|cbt|ptt|ft|imt|agent|oas|soat|ffct)"
_BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"  # BIP 173's data alphabet (upper case), in value order

# (kind, before, anchor, after[, value offset]): a value offset > 0 reports only the part of the match that
# starts that many characters after the anchor (AccountKey=<value>); one < 0, only its last -offset characters (a
# key after other arguments of a call).
TOKENS: list[tuple[str, str, str, str, int]] = [
    ("github_token", "", "g", r"h[pousr]_[A-Za-z0-9]{36,}", 0),
    ("github_token", "", "g", r"ithub_pat_[A-Za-z0-9_]{22,}", 0),
    ("gitlab_token", "", "g", rf"l{_GL}-[A-Za-z0-9_\-]{{20,}}", 0),
    ("gitlab_token", "", "G", r"R1348941[A-Za-z0-9_\-]{20,}", 0),
    ("slack_token", "", "x", r"ox[abprs]-[0-9]{6,}-[A-Za-z0-9\-]{8,}", 0),
    ("slack_token", "", "x", r"oxe[.\-][A-Za-z0-9.\-]{20,}", 0),
    ("slack_token", "", "x", r"app-[0-9]-[A-Za-z0-9\-]{20,}", 0),
    ("slack_webhook", r"hooks\.slac", "k", r"\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}", 0),
    # The same URL percent-encoded, as a query parameter's value (``?redirect=https%3A%2F%2Fhooks.slack.com%2F…``).
    ("slack_webhook", r"hooks\.slac", "k",
     r"\.com%2[Ff](?:services|workflows|triggers)%2[Ff](?:[A-Za-z0-9_\-]|%2[Ff]){20,}", 0),
    ("stripe_key", "[sr]", "k", r"_(?:live|test)_[A-Za-z0-9]{10,}", 0),
    ("stripe_key", "whse", "c", r"_[A-Za-z0-9+/=]{24,}", 0),
    ("aws_access_key", "", "A", r"(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}", 0),
    ("gcp_api_key", "", "A", r"Iza[0-9A-Za-z_\-]{35}", 0),
    ("azure_storage_key", "AccountKe", "y", rf"={_B64}{{86}}==", 2),
    ("azure_storage_key", "SharedAccessKe", "y", rf"={_B64}{{43}}=", 2),
    ("azure_storage_key", "[?&]si", "g", r"=[A-Za-z0-9%+/]{40,120}", 2),
    # The SDK's credential object: the account name, then the account key (the last 88 characters).
    ("azure_storage_key", "StorageSharedKe", "y", rf"""Credential\([ \t]*["'][^"'\n]{{1,64}}["'][ \t]*,[ \t]*["']"""
                                                  rf"{_B64}{{86}}==", -88),
    ("azure_client_secret", r"[A-Za-z0-9_~.\-]{3}[0-9]", "Q", r"~[A-Za-z0-9_~.\-]{31,34}", 0),
    ("twilio_api_key", "S", "K", r"[0-9a-fA-F]{32}", 0),
    ("sendgrid_key", "S", "G", r"\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}", 0),
    ("npm_token", "n", "p", r"m_[A-Za-z0-9]{36}", 0),
    ("pypi_token", "", "p", r"ypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}", 0),
    ("huggingface_token", "h", "f", r"_[A-Za-z]{34}", 0),
    ("huggingface_token", "api_or", "g", r"_[A-Za-z]{34}", 0),
    ("databricks_token", "", "d", r"api[a-f0-9]{32}(?:-[0-9])?", 0),
    ("hashicorp_token", "h", "v", r"[sbr]\.[A-Za-z0-9_\-]{24,}", 0),
    ("hashicorp_token", r"[A-Za-z0-9]{14}\.atlas", "v", r"1\.[A-Za-z0-9\-_=]{60,70}", 0),
    ("digitalocean_token", "", "d", r"o[por]_v1_[a-f0-9]{64}", 0),
    ("sentry_token", "sntr", "y", r"u_[a-f0-9]{64}", 0),
    ("sentry_token", "sntr", "y", r"s_eyJ[A-Za-z0-9+/=_\-]{40,}", 0),
    # Shopify: shpat_/shpca_/shppa_ access tokens and shpss_ app secrets, 32 characters after the prefix.
    ("shopify_token", "sh", "p", r"(?:at|ca|pa|ss)_[A-Za-z0-9]{32}", 0),
    # Grafana service-account tokens: glsa_<32 letters/digits>_<CRC-32 of the rest, 8 hex>.
    ("grafana_token", "", "g", r"lsa_[A-Za-z0-9]{32}_[a-f0-9]{8}", 0),
    # Doppler: personal, service account, CLI, SCIM and service tokens (the latter with or without the
    # config's name before the secret). The name is `+`, not `{1,40}`: ``prefilter`` shortens the first bounded
    # repeat, which must be the last one; it cannot backtrack far (no '.' in it, and a '.' must follow).
    ("doppler_token", "", "d", r"p\.(?:pt|sa|ct|scim|st)\.(?:[a-z0-9_\-]+\.)?[A-Za-z0-9]{40,}", 0),
    # age X25519 identities: Bech32 of 32 bytes with the HRP AGE-SECRET-KEY- (upper case), checksum checked.
    ("age_secret_key", "", "A", rf"GE-SECRET-KEY-1[{_BECH32}]{{58}}", 0),
    # A PEM private key in base64, as Kubernetes stores it (a TLS Secret's ``tls.key``, a kubeconfig's
    # ``client-key-data``): base64 of "-----BEGIN", then a header that names a private key (checked decoded).
    ("private_key", "LS0tLS1CRUd", "J", r"Ti[A-Za-z0-9+/]{60,}={0,2}", 0),
    # Azure DevOps PATs: 84 letters and digits with the signature AZDO at 76-79; anchored on its rare Z.
    ("azure_devops_pat", "[A-Za-z0-9]{76}A", "Z", r"DO[A-Za-z0-9]{4}", 0),
]

#: Which fixed prefix each kind's token starts with, for ``is_placeholder`` (the rest is the secret).
_PREFIX = re.compile(r"^(?:gh[pousr]_|github_pat_|gl[a-z]+-|GR1348941|xox[a-z]-|xoxe[.\-]|xapp-|[sr]k_(?:live|test)_|"
                     r"whsec_|AKIA|ASIA|ABIA|ACCA|AIza|SK|SG\.|npm_|pypi-|hf_|api_org_|dapi|hv[sbr]\.|do[por]_v1_|"
                     r"sntry[us]_|shp(?:at|ca|pa|ss)_|glsa_|dp\.(?:pt|sa|ct|scim|st)\.(?:[a-z0-9_\-]+\.)?|"
                     r"AGE-SECRET-KEY-1)")
_TOKEN_CHARS = WORD | {"-"}


def token_width(before: str) -> int:
    """The fixed width of a ``before`` regex (a literal, character classes and ``{n}`` counts)."""
    return len(re.sub(r"\[[^\]]*\](?:\{(\d+)\})?|\\.", lambda m: "x" * int(m.group(1) or 1), before))


def make_on_token(kind: str, back: int, offset: int) -> Callable[[str, int, int], Iterable[Span]]:
    """The handler of one ``TOKENS`` entry: boundaries, then the placeholder policy."""
    def on_token(text: str, start: int, end: int) -> Iterable[Span]:
        s = start - back
        if offset:  # a key=value pair: the value alone, and the name before it is context, not part of it
            s = start + offset if offset > 0 else end + offset
            if is_placeholder(text[s:end]):
                return ()
            return ((s, end, kind),)
        if not boundary_before(text, s, _TOKEN_CHARS if kind != "slack_webhook" else ALNUM) \
                and text[s - 3:s].upper() != "%2F":  # (a percent-encoded webhook URL: https%3A%2F%2Fhooks…)
            return ()
        if not boundary_after(text, end, ALNUM if kind in _GREEDY_TAIL else _TOKEN_CHARS):
            return ()
        value = text[s:end]
        m = _PREFIX.match(value)
        if is_placeholder(value[m.end():] if m else value):
            return ()
        if check is not None and not check(value):
            return ()
        if kind == "aws_access_key":
            return ((s, end, kind), *aws_secrets_near(text, s, end))
        return ((s, end, kind),)
    check = _CHECKS.get(kind)
    return on_token


# An AWS secret access key: 40 base64 characters (no '=': 30 bytes), not inside a longer base64 run.
_AWS_SECRET_NEAR = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_HEX = frozenset("0123456789abcdefABCDEF")
AWS_SECRET_REACH = 100  # characters either side of an access key id where its secret is looked for


def _is_path(value: str) -> bool:
    """An absolute path (``/Users/Alice/Projects/App2024/build/Logs``): '/' first, three or more, short segments.
    A random secret that starts with '/' has one or two more, its segments long."""
    return value[0] == "/" and value.count("/") >= 3 and max(map(len, value.split("/"))) <= 20


def aws_secrets_near(text: str, start: int, end: int) -> tuple[Span, ...]:
    """AWS secret access keys within ``AWS_SECRET_REACH`` characters of the access key id at ``start:end``.

    An SDK call (``NewStaticCredentials("AKIA…", "<secret>", "")``), a table row or a sentence gives the secret
    no name; the key id next to it is the context. A 40-character run counts only with upper- and lower-case
    letters and a digit (a random secret has all three; a word run rarely does), not all hex (a SHA-1), not as
    an absolute path (``_is_path``), and not as a placeholder.
    """
    found: list[Span] = []
    # (the search runs 41 characters past the reach, so that a longer run there is not cut to 40)
    for m in _AWS_SECRET_NEAR.finditer(text, max(0, start - AWS_SECRET_REACH - 40), end + AWS_SECRET_REACH + 41):
        v = m.group()
        if start - m.end() > AWS_SECRET_REACH or m.start() - end > AWS_SECRET_REACH:
            continue
        if (any(c.isupper() for c in v) and any(c.islower() for c in v) and any(c.isdigit() for c in v)
                and not set(v) <= _HEX and not _is_path(v)
                and not is_placeholder(v)):
            found.append((m.start(), m.end(), "aws_secret_key"))
    return tuple(found)


def grafana_checksum_ok(token: str) -> bool:
    """Grafana's satokengen: the last 8 hex are the CRC-32 (IEEE) of ``glsa_<secret>``, little-endian.

    A real token always passes; a hand-made lookalike (``glsa_<32 letters>_deadbeef``) almost never does.
    """
    key, _, checksum = token.rpartition("_")
    return zlib.crc32(key.encode()).to_bytes(4, "little").hex() == checksum


_BECH32_VALUES = {c: i for i, c in enumerate(_BECH32)}
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def bech32_ok(value: str) -> bool:
    """Whether a Bech32 string (``<hrp>1<data and 6 checksum characters>``) has a valid BIP 173 checksum.

    The HRP is taken in lower case, as BIP 173 computes it for upper-case strings too.
    """
    hrp, _, data = value.rpartition("1")
    chk = 1
    for v in [ord(c) >> 5 for c in hrp.lower()] + [0] + [ord(c) & 31 for c in hrp.lower()] + \
            [_BECH32_VALUES[c] for c in data.upper()]:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_BECH32_GEN):
            if top >> i & 1:
                chk ^= g
    return chk == 1


#: Checksums that a kind's tokens carry, checked after the placeholder policy (on the whole token).
def base64_pem_key_ok(value: str) -> bool:
    """Whether base64 ``value`` starts with the header of a PEM private key (``-----BEGIN … PRIVATE KEY-----``):
    a certificate or a public key in the same place is not a secret."""
    try:
        head = base64.b64decode(value[:96], validate=True)
    except (binascii.Error, ValueError):
        return False
    line = head.split(b"\n", 1)[0]
    return line.startswith(b"-----BEGIN ") and b"PRIVATE KEY" in line


_CHECKS: dict[str, Callable[[str], bool]] = {"grafana_token": grafana_checksum_ok, "age_secret_key": bech32_ok,
                                             "private_key": base64_pem_key_ok}


# Tokens whose tail class already takes '-' and '_' (they may end before one).
_GREEDY_TAIL = frozenset(("github_token", "gitlab_token", "slack_token", "slack_webhook", "gcp_api_key",
                          "hashicorp_token", "sentry_token", "sendgrid_key", "pypi_token", "azure_client_secret"))


def on_pem(text: str, start: int, end: int) -> Iterable[Span]:
    header_end = text.find("-----", start + 5)
    if is_placeholder(text[header_end + 5:end].split("-----END", 1)[0].strip()):
        return ()
    return ((start - 5, end, "private_key"),)


def on_ppk(text: str, start: int, end: int) -> Iterable[Span]:
    """A PuTTY private key file (``PuTTY-User-Key-File-2/3:`` … ``Private-Lines: N``, its N base64 lines and its
    ``Private-MAC``), whole, unless its private lines are a placeholder."""
    at = text.find("Private-Lines:", start, end)
    count = int(text[at + 14:text.index("\n", at)].strip())
    lines_start = stop = text.index("\n", at) + 1
    for _ in range(count):
        nl = text.find("\n", stop, end)
        stop = end if nl < 0 else nl + 1
    private = text[lines_start:stop]
    if is_placeholder(private.replace("\n", "").replace("\r", "")):
        return ()
    mac = _PPK_MAC.match(text, stop)
    return ((start, mac.end() if mac else stop - (text[stop - 1:stop] == "\n"), "private_key"),)


_PPK_MAC = re.compile(r"Private-MAC:[ \t]*[0-9a-fA-F]+")
# PuTTY's key file format (the PuTTY manual, appendix C "PPK file format"), from its header line to the end of its
# private lines and its MAC, when the private lines are within 8000 characters of the header.
PPK = (r"uTTY-User-Key-File-[23]:[^\x00]{0,8000}?Private-Lines:[ \t]*[0-9]{1,3}\r?\n"
       r"(?:[A-Za-z0-9+/=]+(?:\r?\n|\Z))+(?:Private-MAC:[ \t]*[0-9a-fA-F]+)?")


def on_sk(text: str, start: int, end: int) -> Iterable[Span]:
    """``sk-…``: OpenAI and Anthropic keys."""
    s = start - 1
    body = text[start + 2:end]
    if not boundary_before(text, s, WORD | {"-"}) or not has_digit_and_letter(body) or is_placeholder(body):
        return ()
    return ((s, end, "anthropic_key" if body.startswith("ant-") else "openai_key"),)


def on_jwt(text: str, start: int, end: int) -> Iterable[Span]:
    s = start - 2
    if not boundary_before(text, s, WORD | {"-"}):
        return ()
    header = text[s:text.index(".", start)]
    try:  # a JWT's first segment is a JSON object (its header); anything else that starts eyJ is not one
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return ()
    return ((s, end, "jwt"),) if isinstance(decoded, dict) else ()


# scheme://user:password@  (the look-back from an '@'); the password is what is reported.
_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{1,30}://[^\s/:@\"'`]{0,128}:([^\s/@\"'`]{3,256})@$")


_AUTHORITY_END = re.compile(r"""[/?#\s"'`\x00]""")


# Data source names without a scheme: Go's MySQL driver (``user:password@tcp(host:3306)/db``, also ``unix(``),
# and Oracle's thin JDBC URL (``jdbc:oracle:thin:user/password@host:1521:SID``).
_GO_DSN = re.compile(r"""(?:^|(?<=[\s"'`=(,]))[A-Za-z0-9_.\-]{1,64}:([^\s/@"'`:]{3,256})@$""")
_ORACLE = re.compile(r"""jdbc:oracle:thin:[^\s/@"'`:]{1,64}/([^\s/@"'`]{3,256})@$""")


# A legacy Azure DevOps personal access token: 52 characters of lower-case base32 (the format before Sprint 241's
# 84-character PATs). Only in context (an Azure DevOps URL, a name that says so, a Basic credential): bare, too
# many lower-case-and-digit runs (hashes, identifiers) have the shape.
ADO_LEGACY = re.compile(r"[a-z2-7]{52}")
_ADO_HOSTS = ("dev.azure.com", "ssh.dev.azure.com", "vssps.dev.azure.com")
# ``https://<pat>@dev.azure.com/org/…``: Azure DevOps takes the PAT as the user name, with no password.
_ADO_USER_PAT = re.compile(r"://([a-z2-7]{52})@$")


def _ado_host(text: str, at: int) -> bool:
    """Whether the host after the ``@`` at ``at`` is Azure DevOps (``dev.azure.com``, ``<org>.visualstudio.com``)."""
    host = text[at + 1:at + 120].split("/", 1)[0].split(":", 1)[0].lower()
    return host in _ADO_HOSTS or host.endswith(".visualstudio.com")


def url_credentials(text: str, at: int) -> Span | None:
    """A password in a URL whose ``@`` is at ``at`` (``postgres://app:pw@db/x``), or in a data source name
    (``app:pw@tcp(db:3306)/x``, ``jdbc:oracle:thin:app/pw@db:1521:X``), if any. A legacy Azure DevOps PAT in an
    Azure DevOps URL, as its password or its user name, is reported as ``azure_devops_pat``."""
    lo = max(0, at - 420)
    scheme = text.rfind("://", lo, at)
    if at - scheme == 55 and _ado_host(text, at):
        pat = _ADO_USER_PAT.search(text, scheme, at + 1)
        if pat is not None and not is_placeholder(pat.group(1)):
            return (pat.start(1), pat.end(1), "azure_devops_pat")
    if scheme < 0 or text.find("@", scheme, at) >= 0:  # no "scheme://" right before this '@': most e-mails
        if text.startswith(("tcp(", "unix("), at + 1):
            m = _GO_DSN.search(text, max(0, at - 330), at + 1)
        elif text.rfind("jdbc:oracle:thin:", max(0, at - 340), at) >= 0:
            m = _ORACLE.search(text, max(0, at - 340), at + 1)
        else:
            return None
    else:
        m = _URL_CREDENTIALS.search(text, max(lo, scheme - 32), at + 1)
    if m is None:
        return None
    value = m.group(1)
    if is_placeholder(value) or value.startswith("$") or value.lower() in ("password", "pass", "passwd", "pwd"):
        return None
    if ADO_LEGACY.fullmatch(value) and _ado_host(text, at):
        return (m.start(1), m.end(1), "azure_devops_pat")
    return (m.start(1), _userinfo_end(text, at), "url_credentials")


def _userinfo_end(text: str, at: int) -> int:
    """Where a URL's password ends, given the first ``@`` after it at ``at``: at the last ``@`` of the authority
    (up to the first ``/ ? #``, space or quote). RFC 3986 wants an ``@`` in a password percent-encoded, but people
    write ``postgres://app:p@ss@db/app`` and drivers take the last ``@``: stopping at the first forwarded ``ss``."""
    stop = _AUTHORITY_END.search(text, at + 1, at + 256)
    last = text.rfind("@", at + 1, stop.start() if stop is not None else min(len(text), at + 256))
    return last if last > at else at


# Authorization: Basic/Bearer/Token <credential>  (the anchor is the 'z' or 'Z' of "authorization", any case:
# ``AUTHORIZATION: Bearer …`` is a header too). The name may be quoted (``"Authorization": "Bearer …"``) or a
# backtick template (``{ Authorization: `Bearer …` }``), and set through a call whose arguments are the name and the
# value (``Header.Set("Authorization", "Bearer …")``, ``setRequestProperty("Authorization", "Basic …")``).
# A Digest credential is a list of parameters (``username="…", realm=…, response="…"``), in any order: its candidate
# ends at the scheme, and ``on_authorization`` reads the line for the response.
# A HAR file (and other name/value lists) writes ``{"name": "Authorization", "value": "Bearer …"}``. A map's entry
# may be set by index or written with ``=>`` (``headers["Authorization"] = "Bearer …"``, PHP's
# ``'Authorization' => 'Bearer …'``).
AUTHZ = (r"""(?i:(?<=authoriz)ation)(?:["'`]?\]?[ \t]*(?:=>|[:=])|["'`][ \t]*,(?:[ \t]*["'](?i:value)["'][ \t]*:)?)"""
         r"""[ \t]*["'`]?(?:(?i:basic|bearer|token)"""
         r"[ \t]+[A-Za-z0-9._~+/=\-]{8,4096}|(?i:digest)[ \t]+(?=[A-Za-z]))")
# .NET: ``new AuthenticationHeaderValue("Bearer", "<credential>")`` (the anchor is its 'A'); the scheme and the
# credential are two arguments.
AUTHZ_DOTNET = (r"""uthenticationHeaderValue\([ \t]*["'](?i:basic|bearer|token|digest)["'][ \t]*,[ \t]*@?["']"""
                r"[A-Za-z0-9._~+/=\-]{8,4096}")
_AUTHZ_VALUE = re.compile(r"""(?i:basic|bearer|token|digest)(?:[ \t]+|["'][ \t]*,[ \t]*@?["'])""")


# HTTP Digest (RFC 7616): the credential is the ``response`` parameter, a hash (MD5: 32 hex; SHA-256 and
# SHA-512/256: 64) of the password with the username, realm and nonce. It is reported: with the nonce and realm it
# is an offline dictionary attack on the password, and it replays while the nonce is valid. The other parameters
# (username, realm, nonce, uri) are not secrets and are forwarded. (The quote may be escaped: a header inside a
# JSON string.)
_DIGEST_RESPONSE = re.compile(r"""(?<![A-Za-z0-9_])response[ \t]*=[ \t]*(?:\\?")?"""
                              r"([0-9a-fA-F]{32}(?:[0-9a-fA-F]{32})?)(?![0-9a-fA-F])")
_DIGEST_REACH = 2000  # how far along the header the response parameter is looked for


def _digest_response(text: str, end: int) -> Iterable[Span]:
    """The ``response="<hex>"`` of a Digest credential whose scheme ends before ``end``, on the same line."""
    stop = text.find("\n", end, end + _DIGEST_REACH)
    m = _DIGEST_RESPONSE.search(text, end - 1, stop if stop >= 0 else end + _DIGEST_REACH)
    if m is None or is_placeholder(m.group(1)):
        return ()
    return ((m.start(1), m.end(1), "authorization_header"),)


def on_authorization(text: str, start: int, end: int) -> Iterable[Span]:
    vm = _AUTHZ_VALUE.search(text, start, end)
    if vm is None:
        return ()
    if text[vm.start()] in "dD":  # Digest: its response parameter, not the first parameter's text
        return _digest_response(text, vm.end())
    value = text[vm.end():end]
    if value.startswith("eyJ"):  # a JWT: reported as one (the same span)
        found = tuple(on_jwt(text, vm.end() + 2, end))
        if found:
            return found
    if is_placeholder(value) or (not has_digit_and_letter(value) and len(value) < 20):
        return ()
    return ((vm.end(), end, provider_kind(value) or _basic_kind(text[vm.start():vm.start() + 5].lower(), value)),)


def _basic_kind(scheme: str, value: str) -> str:
    """``azure_devops_pat`` for a Basic credential whose password is a legacy Azure DevOps PAT (``git -c
    http.extraheader="AUTHORIZATION: basic <base64 of :pat>"``, as Azure Pipelines documents), else
    ``authorization_header``."""
    if scheme == "basic" and 72 <= len(value) <= 200:  # base64 of ":" and 52 characters is 72
        try:
            decoded = base64.b64decode(value, validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            return "authorization_header"
        if ":" in decoded and ADO_LEGACY.fullmatch(decoded.rpartition(":")[2]):
            return "azure_devops_pat"
    return "authorization_header"


@functools.lru_cache(maxsize=1)
def _whole_tokens() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Each fixed-prefix token format as a regex of the whole token (``TOKENS`` entries that report a value after a
    name, such as ``AccountKey=``, are left out)."""
    return tuple((kind, re.compile(before + re.escape(anchor) + after))
                 for kind, before, anchor, after, offset in TOKENS if not offset)


def provider_kind(value: str) -> str | None:
    """The kind of a provider's token that is ``value`` whole (``Authorization: Bearer ghp_…`` is a GitHub token),
    with the token's own placeholder policy and checksum, or None."""
    for kind, pattern in _whole_tokens():
        if pattern.fullmatch(value):
            m = _PREFIX.match(value)
            check = _CHECKS.get(kind)
            if not is_placeholder(value[m.end():] if m else value) and (check is None or check(value)):
                return kind
    return None
