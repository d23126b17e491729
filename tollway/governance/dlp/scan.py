"""One scan of one request: walk, match, count, redact, build the result."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from tollway.governance.dlp.candidates import BATCH, SEP
from tollway.governance.dlp.result import DetectorFailed, DlpResult, Finding, Span, TimedOut, placeholder
from tollway.governance.dlp.walk import Walk

if TYPE_CHECKING:
    from tollway.governance.dlp.engine import DlpEngine


class Scan:
    """The state of one ``inspect`` call.

    First the walk collects every string to scan (with where it sits) and every binary block; then the
    built-in detectors run once over all strings joined by NUL (no candidate pattern crosses a NUL, and
    one call instead of one per string saves the per-call overhead); then custom detectors run per
    string; then findings are counted and redactions recorded, in walk order.
    """

    def __init__(self, engine: DlpEngine, table: dict[str, str]) -> None:
        self.engine = engine
        self.table = table
        self.clock = engine.clock
        self.timeout_s = engine.config.timeout_ms / 1000.0
        self.started = self.clock()
        self.walk = Walk()
        self.counts: dict[tuple[str, str], int] = {}
        self.placeholders: dict[str, str] = {}
        self.numbering: dict[str, int] = {}
        self.edits: dict[tuple[int, Any], Any] = {}
        self.renames: dict[tuple[int, str], str] = {}

    # --- scanning ---

    def run(self, body: dict[str, Any]) -> None:
        self.walk.body(body)
        texts = self.walk.texts
        found: dict[int, list[Span]] = {}
        builtin = self.engine.builtin
        first = 0
        while first < len(texts):  # batches of about BATCH characters, with a time check after each
            last, size = first, 0
            while last < len(texts) and (size < BATCH or last == first):
                size += len(texts[last]) + 1
                last += 1
            batch = texts[first:last]
            offsets = list(accumulate([len(t) + 1 for t in batch], initial=0))
            for s, e, kind in builtin.scan(SEP.join(batch)):
                i = bisect_right(offsets, s) - 1
                found.setdefault(first + i, []).append((s - offsets[i], e - offsets[i], kind))
            self.check_time()
            first = last
        for detector in self.engine.detectors:
            kind = detector.kind
            for i, text in enumerate(texts):
                try:
                    hits = [(s, e, kind) for s, e in detector.find(text)]
                except Exception as exc:
                    raise DetectorFailed(kind, type(exc).__name__) from None
                if hits:
                    found.setdefault(i, []).extend(hits)
                self.check_time()
        binaries = self.walk.binaries
        b = 0
        for i, (parent, key, where, is_key) in enumerate(self.walk.slots):
            while b < len(binaries) and binaries[b][0] <= i:
                self.binary(*binaries[b][1:])
                b += 1
            spans = found.get(i)
            if spans:
                new = self.record(texts[i], spans, where)
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
        redact: list[Span] = []
        table = self.table
        counts = self.counts
        for span in spans:
            kind = span[2]
            key = (where, kind)
            counts[key] = counts.get(key, 0) + 1
            if table[kind] == "redact":
                redact.append(span)
        return self.redact(text, redact) if redact else None

    def redact(self, text: str, spans: list[Span]) -> str:
        # Merge overlapping spans; the merged span keeps the kind of the first (then longest) one.
        spans.sort(key=lambda sp: (sp[0], -sp[1]))
        merged: list[list[Any]] = []
        for s, e, kind in spans:
            if merged and s < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
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
