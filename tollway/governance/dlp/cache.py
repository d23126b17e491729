"""The verdict cache: what the detectors found in a content unit, keyed by a digest of the unit.

Claude Code re-sends the whole conversation every turn; all but the last few units were seen on
the previous turn (and the system prompt and tools on every session's first turn). A unit (see
``walk``) is its walk's tag and its compact JSON (orjson; a string's UTF-8).

Two digests, because the cost of the one every turn pays grows with the history:

- **In the process** (``local_key``): the engine's fingerprint, the tag, the length of the unit's
  bytes and ``hash()`` of them. CPython hashes bytes with SipHash-1-3 under a 128-bit key drawn at
  random when the process starts: a keyed function made so that whoever does not know the key
  cannot make two inputs collide, and about 3.5 times cheaper here than SHA-256 (Claude Code's
  late turns re-send ~220 KB every time). When ``PYTHONHASHSEED`` fixes that key, anyone who knows
  it could build a unit that collides with a clean one, so the key is then SHA-256 as below.
- **Across processes** (the shared layer in Redis, ``unit_digest``): SHA-256 (truncated to 128 bits)
  over the fingerprint, the tag and the bytes, computed only for the units the process did not
  know.

The fingerprint is a digest of everything that decides what the detectors find (the whole
``DlpConfig``, the detectors added in code, ``DETECTORS_VERSION``), so a changed policy never reads
an entry written under another one.

A unit whose entry is ``CLEAN`` (nothing found, no media block) is not even walked on a later turn:
its JSON (made in C) and its hash are all it costs. An entry is the tuple of findings of the unit:
(string index in the unit, start, end, kind), positions and kinds, never the matched text; a unit
that holds an image or a document with nothing else found is ``MEDIA`` (walked again for its
``binary`` finding, which is not cached). Actions are applied per request (a group's policy may
differ), and redaction is recomputed from the positions over the request's own text, so a warm scan
gives the same findings and the same forwarded bytes as a cold one (the placeholders are numbered in
walk order in both cases).

Bounded: at most ``max_items`` units and findings together (an entry costs 1 + its findings),
least recently used first out. About 250 bytes an item (measured with tracemalloc), so the default
50,000 take about 12 MB.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from itertools import compress, repeat
from operator import is_not
from typing import Any

import orjson

#: Bumped whenever a detector changes what it finds, so entries of an older build are never reused.
DETECTORS_VERSION = "2026-12-04.20"

Entry = tuple[tuple[int, int, int, str], ...]  # (string index in the unit, start, end, kind)


class _Media(tuple):
    """The type of ``MEDIA``: an empty entry that is not ``CLEAN``."""

    __slots__ = ()


#: The entry of a unit with nothing found (and no media block): such a unit is not walked again.
CLEAN: Entry = ()
#: The entry of a unit with nothing found but an image or document block (walked again for its ``binary`` finding).
MEDIA: Entry = _Media()

#: Whether ``hash()`` is keyed at random for this process (CPython's default): see the module docstring.
SECRET_HASH = bool(sys.flags.hash_randomization) and os.environ.get("PYTHONHASHSEED", "random") in ("", "random")


def fingerprint(parts: Iterable[str]) -> bytes:
    """A 32-byte key for the unit digests, from what decides the findings."""
    h = hashlib.blake2b(digest_size=32)
    for part in (DETECTORS_VERSION, *parts):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.digest()


def unit_bytes(value: Any) -> bytes | None:
    """A unit's bytes for its digest: a string's UTF-8, anything else its compact JSON (orjson, in C), or None
    when it has no JSON form (a lone surrogate, a non-string key)."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return None


def units_bytes(values: list[Any]) -> list[bytes | None]:
    """``unit_bytes`` of each value. One comprehension with orjson inline, not a call per unit: a late Claude Code
    turn has a hundred and more units, nearly all known to the cache, and this is most of what they cost."""
    dumps = orjson.dumps
    try:
        return [v.encode("utf-8") if type(v) is str else dumps(v) for v in values]
    except (UnicodeEncodeError, TypeError, orjson.JSONEncodeError):  # one of them has no bytes: each on its own
        return [unit_bytes(v) for v in values]


def local_keys(fingerprint: bytes, shared_key: Any, tags: list[bytes], datas: list[bytes | None]) -> list[Any]:
    """``local_key`` of each unit (None for a unit without bytes), made by C-level maps when ``hash()`` is keyed."""
    if SECRET_HASH and None not in datas:
        return list(zip(repeat(fingerprint), tags, map(len, datas), map(hash, datas)))  # type: ignore[arg-type]
    return [None if data is None else local_key(fingerprint, shared_key, tag, data)
            for tag, data in zip(tags, datas, strict=True)]


def local_key(fingerprint: bytes, shared_key: Any, tag: bytes, data: bytes) -> tuple[Any, ...]:
    """The key of a unit in the process's cache (see the module docstring): keyed ``hash()`` and length, or
    SHA-256 when ``hash()`` is not keyed at random."""
    if SECRET_HASH:
        return (fingerprint, tag, len(data), hash(data))
    return (fingerprint, unit_digest(shared_key, tag, data))


def unit_key(fingerprint: bytes) -> Any:
    """What ``unit_digest`` starts from: SHA-256 over an engine's fingerprint (copied per unit)."""
    return hashlib.sha256(fingerprint)


def unit_digest(key: Any, tag: bytes, data: bytes, sep: bytes = b"\x00") -> bytes:
    """The 16-byte digest of a unit (its walk's tag and its bytes) under an engine's fingerprint (``unit_key``):
    SHA-256 (with the CPU's SHA instructions, about twice BLAKE2b's speed here), truncated."""
    h = key.copy()
    h.update(tag + sep)
    h.update(data)
    return h.digest()[:16]


class VerdictCache:
    """A bounded LRU map from unit key (``local_key``) to its findings. Thread-safe (scans may run in worker
    threads). One cache may serve several engines: the keys hold the engine's fingerprint."""

    def __init__(self, max_items: int = 50_000) -> None:
        self.max_items = max_items
        self._entries: OrderedDict[Any, Entry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Units plus findings held (the bounded quantity)."""
        return self._size

    def get(self, digest: Any) -> Entry | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(digest)
            self.hits += 1
            return entry

    def get_many(self, digests: list[Any]) -> list[Entry | None]:
        """``get`` for each digest (None stays None), under one lock, by C-level maps (no Python step per digest)."""
        with self._lock:
            entries = self._entries
            out: list[Entry | None] = list(map(entries.get, digests))  # None is never a key
            known = list(compress(digests, map(is_not, out, repeat(None))))
            deque(map(entries.move_to_end, known), 0)
            self.hits += len(known)
            self.misses += len(digests) - digests.count(None) - len(known)
        return out

    def put(self, digest: Any, entry: Entry) -> None:
        cost = 1 + len(entry)
        if cost > self.max_items:
            return
        with self._lock:
            old = self._entries.pop(digest, None)
            if old is not None:
                self._size -= 1 + len(old)
            self._entries[digest] = entry
            self._size += cost
            while self._size > self.max_items:
                _, evicted = self._entries.popitem(last=False)
                self._size -= 1 + len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0
