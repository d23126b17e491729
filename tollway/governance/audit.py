"""The tamper-evident audit log: every data-plane request and every control-plane change.

Each process (and each CLI invocation) is one writer with its own hash chain: a record's hash
is HMAC-SHA256 (keyed by TOLLWAY_AUDIT_KEY; plain SHA-256 without it) of the previous record's
hash and the record's canonical JSON (sorted keys). Its first record and its closing record are
anchored in the writer registry when stored (store/audit_writers.py). The
chain is built here, on the request path, in the order things happened (a few microseconds);
the records then go to the write-behind queue, which never drops one. Nothing secret is ever
put in a record: no keys, no prompt text, no DLP matches (only their kinds, counts and where).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

from tollway.store.audit import GENESIS, audit_key, chain_hash

Sink = Callable[[dict[str, Any]], None]


def new_writer_id(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class AuditLog:
    def __init__(self, sink: Sink, writer_id: str, enabled: bool = True, key: bytes | None = None) -> None:
        # Off only when the config says `audit.enabled: false`; callers on the hot path test it
        # first so that nothing is even built for a record nobody keeps.
        self.enabled = enabled
        self.sink = sink
        self.writer = writer_id
        self.seq = 0
        self.prev = GENESIS
        # The chain is keyed (HMAC-SHA256) when TOLLWAY_AUDIT_KEY is set: without the key nobody
        # can recompute it after an edit. Each record says whether it is keyed.
        self.key = key if key is not None else audit_key()

    def record(self, kind: str, payload: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        self.seq += 1
        data = {"writer": self.writer, "seq": self.seq, "ts": round(time.time(), 6), "kind": kind, **fields}
        if self.key:
            data["keyed"] = True
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
        digest = chain_hash(self.prev, body, self.key)
        rec: dict[str, Any] = {"writer": self.writer, "seq": self.seq, "body": body, "prev_hash": self.prev,
                               "hash": digest}
        if payload is not None:
            rec["payload"] = payload
        self.prev = digest
        self.sink(rec)
        return rec

    def close(self) -> None:
        """The writer's last record (kind `close`): storing it anchors the chain's end in the
        writer registry, so deleting this writer's newest records is detected without a
        checkpoint. Called once, when the process (or CLI command) is done writing; a writer
        that never wrote anything has nothing to close."""
        if self.enabled and self.seq:
            self.record("close")

    def change(self, action: str, target: str | None, actor: dict[str, Any], **details: Any) -> None:
        """A control-plane change (key created, grant changed, user disabled…)."""
        self.record("change", action=action, target=target, actor=actor, details=details or None)
