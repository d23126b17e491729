"""How audit records and writer-registry entries are hashed, and where the key comes from.

`hash = HMAC-SHA256(key, prev_hash + body)` with the key from the environment
(`TOLLWAY_AUDIT_KEY`), or `sha256(prev_hash + body)` when none is set — then anyone with write
access to the database can recompute a whole chain (docs/audit.md says so). Kept apart from the
record and registry modules so that both chains hash the same way without importing each other.
"""

from __future__ import annotations

import hashlib
import hmac
import os

GENESIS = "0" * 64
KEY_ENV = "TOLLWAY_AUDIT_KEY"


def audit_key() -> bytes | None:
    """The secret that keys every chain and signs checkpoints, from the environment (or None)."""
    value = os.environ.get(KEY_ENV)
    return value.encode() if value else None


def chain_hash(prev_hash: str, body: str, key: bytes | None = None) -> str:
    data = (prev_hash + body).encode()
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()
