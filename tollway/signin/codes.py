"""The secrets of the device flow and how they are stored.

Device codes, access and refresh tokens are 256 random bits (RFC 8628 §5.2 asks for enough
entropy that guessing is hopeless) and are stored only as SHA-256, like keys: as high-entropy
secrets a fast hash loses nothing. User codes are typed by people, so they come from RFC 8628
§6.1's base-20 alphabet (no vowels, no look-alikes) in two groups of four: 20^8 ≈ 2^34.6,
enough because a code lives minutes and guessing is rate limited per IP.
"""

from __future__ import annotations

import secrets

from tollway.governance.identity import hash_secret

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
ACCESS_PREFIX = "twa-"
REFRESH_PREFIX = "twr-"
PREFIX_LEN = 10


def new_device_code() -> str:
    return secrets.token_urlsafe(32)


def new_access_token() -> str:
    return ACCESS_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def new_user_code() -> str:
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_user_code(typed: str) -> str | None:
    """What a person typed, as stored: case and separators forgiven; None if it cannot be a code."""
    chars = [c for c in typed.upper() if c.isalnum()]
    if len(chars) != 8 or any(c not in USER_CODE_ALPHABET for c in chars):
        return None
    return "".join(chars[:4]) + "-" + "".join(chars[4:])


def digest(secret: str) -> str:
    return hash_secret(secret)
