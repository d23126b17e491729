"""One scan of one request: walk, match, count, redact, build the result."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import accumulate, chain, compress
from operator import not_
from typing import TYPE_CHECKING, Any, Protocol

from tollway.governance.dlp.cache import (
    CLEAN,
    MEDIA,
    Entry,
    VerdictCache,
    local_key,
    local_keys,
    unit_digest,
    units_bytes,
)
from tollway.governance.dlp.candidates import BATCH, SEP, Builtin
from tollway.governance.dlp.policy import DlpConfig
from tollway.governance.dlp.result import (
    DetectorFailed,
    DlpResult,
    Finding,
    RegexDetector,
    Span,
    TimedOut,
    placeholder,
)
from tollway.governance.dlp.walk import Walk

if TYPE_CHECKING:
    from tollway.governance.dlp.shared import SharedVerdicts


class Engine(Protocol):
    """What a scan reads from its engine (``engine.DlpEngine``; a protocol, so that this module does not
    import the one that imports it)."""

    config: DlpConfig
    clock: Callable[[], float]
    cache: VerdictCache | None
    fingerprint: bytes
    unit_key: Any
    builtin: Builtin
    detectors: tuple[RegexDetector, ...]
    categories: dict[str, str]
    scanned_units: int
    scanned_chars: int


class Scan:
    """The state of one ``inspect`` call, in three steps (``ainspect`` may run the middle one in a thread).

    ``prepare`` walks the body (every string to scan, with where it sits, in content units, and every
    binary block) and looks each unit up in the verdict cache. ``scan_misses`` runs the detectors over
    the units the cache did not know: the built-in ones once over their strings joined by NUL, in batches
    (no candidate pattern crosses a NUL, and one call instead of one per string saves the per-call
    overhead), custom ones per string; then stores what it found for each unit. ``finish`` counts the
    findings and records redactions in walk order.
    """

    def __init__(self, engine: Engine, table: dict[str, str]) -> None:
        self.engine = engine
        self.table = table
        self.clock = engine.clock
        self.timeout_s = engine.config.timeout_ms / 1000.0
        self.started = self.clock()
        self.walk = Walk()
        self.found: dict[int, list[Span]] = {}
        self.missed: list[Missed] = []  # each unit to scan (see ``Missed``)
        self.missed_chars = 0
        self.stored: list[tuple[bytes, Entry]] = []  # digest and entry of what the scan found (for the shared layer)
        self.digests: list[bytes | None] | None = None  # the shared digest of each missed unit (``take_shared``)
        self.counts: dict[tuple[str, str], int] = {}
        self.placeholders: dict[str, str] = {}
        self.numbering: dict[str, int] = {}
        self.edits: dict[tuple[int, Any], Any] = {}
        self.renames: dict[tuple[int, str], str] = {}

    def run(self, body: dict[str, Any]) -> None:
        self.prepare(body)
        self.scan_misses()
        self.finish()

    def prepare(self, body: dict[str, Any]) -> None:
        """Walk the body unit by unit; a unit the cache knows as clean is not even walked."""
        walk = self.walk
        texts = walk.texts
        binaries = walk.binaries
        cache = self.engine.cache
        found = self.found
        missed = self.missed
        chars = 0
        tags, values = walk.plan(body)
        unit = walk.unit
        if cache is None:
            for k in range(len(values)):
                a, m = len(texts), len(binaries)
                unit(k)
                missed.append((a, len(texts), None, None, len(binaries) > m))
                chars += sum(map(len, texts[a:]))
        else:
            fp, shared_key = self.engine.fingerprint, self.engine.unit_key
            datas = units_bytes(values)
            keys = local_keys(fp, shared_key, tags, datas)
            entries = cache.get_many(keys)
            # Only the units the cache does not know as clean are walked (a late turn: the last few).
            for k in [k for k, entry in enumerate(entries) if entry is not CLEAN]:
                tag, data, key, entry = tags[k], datas[k], keys[k], entries[k]
                a, m = len(texts), len(binaries)
                unit(k)
                b = len(texts)
                source = None if data is None else (tag, data, b"\x00")
                if data is None:  # not JSON-serialisable as is (a lone surrogate): key on the strings instead
                    data = SEP.join(texts[a:b]).encode("utf-8", "surrogatepass")
                    source = (tag, data, b"\x01")
                    key = local_key(fp, shared_key, tag + b"\x01", data)
                    entry = cache.get(key)
                if entry is None:
                    missed.append((a, b, key, source, len(binaries) > m))
                    chars += sum(map(len, texts[a:b]))
                else:
                    for i, s, e, kind in entry:
                        found.setdefault(a + i, []).append((s, e, kind))
        self.missed_chars = chars
        # The time budget grows with the text to scan, so that large ordinary input never times out.
        self.timeout_s += self.engine.config.timeout_ms_per_mb * chars / 1_000_000 / 1000.0

    def shared_digests(self) -> list[bytes]:
        """The shared layer's digest (SHA-256) of each missed unit that has one, in order: only new units pay it."""
        key = self.engine.unit_key
        return [unit_digest(key, *source) for _a, _b, _key, source, _media in self.missed if source is not None]

    def take_shared(self, shared: SharedVerdicts, values: list[Any], digests: list[bytes]) -> None:
        """Use what the shared layer knows (``values``, one per missed unit with a digest, in order, as
        ``digests``): a unit it has a valid entry for is not scanned, and goes into the process's cache."""
        texts = self.walk.texts
        cache = self.engine.cache
        values_left = iter(values)
        digests_left = iter(digests)
        still: list[Missed] = []
        self.digests = []
        chars = 0
        for unit in self.missed:
            a, b, key, source, media = unit
            value = digest = None
            if source is not None:
                value, digest = next(values_left), next(digests_left)
            entry = None if value is None else shared.check(value, [len(t) for t in texts[a:b]])
            if entry is None or key is None:
                self.digests.append(digest)
                still.append(unit)
                chars += sum(map(len, texts[a:b]))
                continue
            if cache is not None:
                cache.put(key, entry or (MEDIA if media else CLEAN))
            for i, s, e, kind in entry:
                self.found.setdefault(a + i, []).append((s, e, kind))
        self.missed = still
        self.missed_chars = chars

    def scan_misses(self, batch: int = BATCH) -> None:
        texts = self.walk.texts
        found: dict[int, list[Span]] = {}
        order = list(chain.from_iterable([range(a, b) for a, b, _key, _source, _media in self.missed]))
        picked = list(map(texts.__getitem__, order))
        # ASCII strings are batched apart from the others: one non-ASCII character makes a joined batch a
        # wider string, and then every character of it costs more to join, to match and to encode for Hyperscan.
        ascii_ = list(map(str.isascii, picked))
        if all(ascii_) or not any(ascii_):
            self._scan_builtin(order, picked, found, batch)
        else:
            for mask in (ascii_, list(map(not_, ascii_))):
                self._scan_builtin(list(compress(order, mask)), list(compress(picked, mask)), found, batch)
        for detector in self.engine.detectors:
            kind = detector.kind
            for i in order:
                try:
                    hits = [(s, e, kind) for s, e in detector.find(texts[i])]
                except Exception as exc:
                    raise DetectorFailed(kind, type(exc).__name__) from None
                if hits:
                    found.setdefault(i, []).extend(hits)
                self.check_time()
        cache = self.engine.cache
        digests = self.digests if self.digests is not None else [None] * len(self.missed)
        hit = sorted(found)  # the strings with findings: a unit without any (most) costs two bisections
        for (a, b, key, _source, media), digest in zip(self.missed, digests, strict=True):
            if key is not None and cache is not None:
                lo = bisect_left(hit, a)
                hi = bisect_left(hit, b, lo)
                entry = tuple((i - a, s, e, kind) for i in hit[lo:hi] for s, e, kind in found[i])
                cache.put(key, entry or (MEDIA if media else CLEAN))
                if digest is not None:
                    self.stored.append((digest, entry))
        self.engine.scanned_units += len(self.missed)
        self.engine.scanned_chars += sum(map(len, picked))
        for i, spans in found.items():
            self.found.setdefault(i, []).extend(spans)

    def _scan_builtin(self, order: list[int], picked: list[str], found: dict[int, list[Span]], batch: int) -> None:
        """The built-in detectors over ``picked`` (the strings ``order`` indexes), joined by NUL in batches of about
        ``batch`` characters, with a time check after each; their spans go to ``found`` by string index."""
        # ends[k]: the characters of picked[:k + 1], each with its separator (C-level maps: no Python per string).
        ends = list(accumulate(map(_PLUS_ONE, map(len, picked))))
        builtin = self.engine.builtin
        first = 0
        while first < len(order):
            base = ends[first - 1] if first else 0
            last = min(bisect_left(ends, base + batch, first) + 1, len(order))
            if last == first + 1:  # one large string (a paste): its spans as they are, no search per finding
                spans = builtin.scan(picked[first])
                if spans:
                    found.setdefault(order[first], []).extend(spans)
            else:
                idx = order[first:last]
                offsets = [0, *map(base.__rsub__, ends[first:last])]  # end - base for each
                for s, e, kind in builtin.scan(SEP.join(picked[first:last])):
                    j = bisect_right(offsets, s) - 1
                    found.setdefault(idx[j], []).append((s - offsets[j], e - offsets[j], kind))
            self.check_time()
            first = last

    def finish(self) -> None:
        """Count findings and record redactions in walk order (binary blocks in their place among them)."""
        texts = self.walk.texts
        slots = self.walk.slots
        found = self.found
        binaries = self.walk.binaries
        b = 0
        for i in sorted(found):
            while b < len(binaries) and binaries[b][0] <= i:
                self.binary(*binaries[b][1:])
                b += 1
            parent, key, where, is_key = slots[i]
            new = self.record(texts[i], found[i], where)
            if new is not None:
                if is_key:
                    self.renames[(id(parent), key)] = new
                else:
                    self.edits[(id(parent), key)] = new
        for entry in binaries[b:]:
            self.binary(*entry[1:])
        self.check_time()

    def record(self, text: str, spans: list[Span], where: str) -> str | None:
        """Count the findings in one string; return its redacted form, or None when it is unchanged."""
        table = self.table
        counts = self.counts
        kinds = [span[2] for span in spans]
        for kind in dict.fromkeys(kinds):  # per kind, not per finding (a dense paste has thousands of one kind)
            key = (where, kind)
            counts[key] = counts.get(key, 0) + kinds.count(kind)
        redact = [span for span in spans if table[span[2]] == "redact"]
        return self.redact(text, redact) if redact else None

    def redact(self, text: str, spans: list[Span]) -> str:
        # Merge overlapping spans; the merged span keeps the kind of the first (then longest) one, unless that is
        # the generic assignment and an overlapping one says what the value is (``GITHUB_TOKEN=ghp_…``:
        # ``[REDACTED:github_token:1]``).
        spans.sort(key=lambda sp: (sp[0], -sp[1]))
        merged: list[list[Any]] = []
        for s, e, kind in spans:
            if merged and s < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
                if merged[-1][2] in GENERIC_KINDS and kind not in GENERIC_KINDS:
                    merged[-1][2] = kind
            else:
                merged.append([s, e, kind])
        out: list[str] = []
        pos = 0
        for s, e, kind in merged:
            out.append(text[pos:s])
            out.append(self.placeholder_for(kind, text[s:e]))
            pos = e
        out.append(text[pos:])
        return "".join(out)

    def placeholder_for(self, kind: str, value: str) -> str:
        ph = self.placeholders.get(value)
        if ph is None:
            n = self.numbering.get(kind, 0) + 1
            self.numbering[kind] = n
            ph = self.placeholders[value] = placeholder(kind, n)
        return ph

    def binary(self, parent: list[Any], index: int, source: Any, where: str) -> None:
        key = (where, "binary")
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.table["binary"] == "redact":
            data = None
            if isinstance(source, dict):
                data = source.get("data") or source.get("url") or source.get("file_id")
            identity = f"\x00binary\x00{data}" if isinstance(data, str) else f"\x00binary\x00{where}"
            block = parent[index]
            replacement: dict[str, Any] = {"type": "text", "text": self.placeholder_for("binary", identity)}
            if isinstance(block, dict) and "cache_control" in block:
                replacement["cache_control"] = block["cache_control"]
            self.edits[(id(parent), index)] = replacement

    def check_time(self) -> None:
        if self.clock() - self.started > self.timeout_s:
            raise TimedOut

    # --- the result ---

    def result(self, body: dict[str, Any], policy: str) -> DlpResult:
        table = self.table
        categories = self.engine.categories
        findings = [Finding(kind, categories[kind], table[kind], where, n) for (where, kind), n in self.counts.items()]
        blocked_kinds = list(dict.fromkeys(f.kind for f in findings if f.action == "block"))
        changed = bool(self.edits or self.renames)
        out = copy_with_edits(body, self.edits, self.renames) if changed else body
        return DlpResult(findings, bool(blocked_kinds), blocked_kinds, policy, out, changed)


#: Kinds that say where a value was (assigned to a secret's name), not what it is: in a redaction, a kind that
#: says what it is wins over them.
GENERIC_KINDS = frozenset(("password_assignment",))
_PLUS_ONE = (1).__add__  # a string's length plus its separator, mapped in C

#: A unit to scan: its first string and end in ``walk.texts``, its key in the process's cache (None without
#: a cache), what its shared digest is computed from (tag, bytes, separator; None when it has none) and
#: whether it holds a media block.
Missed = tuple[int, int, Any, tuple[bytes, bytes, bytes] | None, bool]

_MISSING = object()


def copy_with_edits(value: Any, edits: dict[tuple[int, Any], Any], renames: dict[tuple[int, str], str]) -> Any:
    """A deep copy of a JSON value with the recorded edits (keyed by id of the original container) applied.

    Strings and numbers are immutable and shared, as ``copy.deepcopy`` does; only the containers that
    hold an edit take the slow path.
    """
    touched = {cid for cid, _ in edits} | {cid for cid, _ in renames}

    def copy(v: Any) -> Any:
        if isinstance(v, dict):
            vid = id(v)
            if vid in touched:
                out: dict[Any, Any] = {}
                for k, x in v.items():
                    new = edits.get((vid, k), _MISSING)
                    out[renames.get((vid, k), k)] = copy(x) if new is _MISSING else new
                return out
            return {k: copy(x) if isinstance(x, _CONTAINERS) else x for k, x in v.items()}
        if isinstance(v, list):
            vid = id(v)
            if vid in touched:
                items = []
                for i, x in enumerate(v):
                    new = edits.get((vid, i), _MISSING)
                    items.append(copy(x) if new is _MISSING else new)
                return items
            return [copy(x) if isinstance(x, _CONTAINERS) else x for x in v]
        return v

    return copy(value)


_CONTAINERS = (dict, list)
