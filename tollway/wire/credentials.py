"""Header checks both planes apply before reading a credential or a body. Pure: no I/O.

Why refuse a repeated credential header: servers and proxies disagree about which of two
`x-api-key` (or `authorization`) headers counts — Starlette's dict keeps the last, its
`Headers.get` the first — so a request carrying two could be authenticated as one key by the
gateway and attributed to another by whatever sits in front. Ambiguity is refused (401) instead
of resolved.
"""

from __future__ import annotations

from collections.abc import Iterable

CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")


def ambiguous_credentials(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The name of a credential header sent more than once, or None."""
    seen: set[bytes] = set()
    for name, _ in raw_headers:
        lowered = name.lower()
        if lowered in CREDENTIAL_HEADERS:
            if lowered in seen:
                return lowered.decode()
            seen.add(lowered)
    return None


def json_content_type(value: str) -> bool:
    """Whether a content-type names JSON (`application/json`, `application/*+json`, any parameters)."""
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
