"""Tollway against other gateways: the same load, on the same machine, in the same run.

    .venv/bin/python bench/compare.py --quick                 # a smoke run, about 3 minutes
    .venv/bin/python bench/compare.py                         # the full programme, about 20 minutes
    .venv/bin/python bench/compare.py --only tollway          # direct and the two Tollway variants
    .venv/bin/python bench/compare.py --targets direct,tollway-on,litellm --soak-seconds 120

Targets: `direct` (the upstream emulator itself, the baseline every "added" figure subtracts),
`tollway-off` and `tollway-on` (Tollway with governance off and fully on), `litellm` and `portkey`
(peers, each in its own environment under bench/envs/, created by bench/peers/setup.sh from the
pins committed in bench/peers/). Every target gets the same Anthropic `POST /v1/messages` request.

Per target it measures: added p50/p99 at concurrency 1; req/s and gateway CPU per request at
concurrency 64 (wrk); the most req/s at which p99 stays under 50 ms with a 20 ms upstream; streaming
time to first byte and per-event overhead; 500 streams held at once (all must complete); idle RSS
and RSS over a soak under steady load. It prints Markdown tables, the ratios of each peer to
Tollway and Tollway's targets, writes everything to bench/results/compare.json, and stops every
process it started by PID. See bench/README.md, "compare.py", for the methodology.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import targets as tg
from peers.procfs import TreeCpuMeter, process_tree, rss_bytes, tree_cpu_seconds, tree_rss_bytes
from run import (
    ANTHROPIC_VERSION,
    BUSY_LOAD,
    WRK_INSTALL_HINT,
    CpuMeter,
    Processes,
    RawConnection,
    ResponseError,
    Result,
    free_port,
    percentile,
    port_open,
    python_load,
    run_with_processes,
    tail,
    wait_for,
    write_report,
    wrk_load,
)
from upstream import STREAM_EVENTS, TEXT_PIECES

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "compare.json"
ALL_TARGETS = ("direct", "tollway-off", "tollway-on", "litellm", "portkey")
HIGH_CONCURRENCY = 64
SLOW_UPSTREAM_MS = 20.0
P99_LIMIT_MS = 50.0
HELD_STREAMS = 500
REQUEST_TIMEOUT = 10.0  # seconds; a request slower than this is an error, and cannot stall the run
MB = 1_000_000  # memory is shown in MB of 10^6 bytes, so "60 MB" in a target means 60,000,000 bytes
# The stream's text pieces as they appear inside the relayed JSON: a stream is complete when the
# client got every one of them and the final event.
EXPECTED_PIECES = [json.dumps(piece)[1:-1].encode() for piece in TEXT_PIECES]


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """How long everything runs. --quick shortens every step, for a smoke run of ~3 minutes."""

    quick: bool
    seconds: float  # each c=1 / c=64 / streaming measurement
    warmup: float
    probe_seconds: float  # each wrk run of the req/s-under-p99 search
    start_concurrency: int
    search_steps: int  # bisection steps after the doubling found a failing concurrency
    max_concurrency: int
    streams: int
    chunk_interval_ms: float  # the trickling emulator's pause between events (8 pauses a stream)
    held_probe_seconds: float
    soak_seconds: float
    soak_rate: float  # requests/s per gateway during the soak
    wrk: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        wrk = None if args.no_wrk else shutil.which("wrk")
        if args.quick:
            plan = cls(True, 1.5, 0.5, 1.0, 16, 1, 1024, HELD_STREAMS, 750.0, 1.5, 20.0, 50.0, wrk)
        else:
            plan = cls(False, 8.0, 1.0, 3.0, 8, 3, 1024, HELD_STREAMS, 2000.0, 4.0, 600.0, 50.0, wrk)
        if args.soak_seconds is not None:
            plan.soak_seconds = args.soak_seconds
        if args.soak_rate is not None:
            plan.soak_rate = args.soak_rate
        return plan


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class StreamStats:
    """Streaming at c=1: time to the first body byte, and how long the rest of the stream took."""

    requests: int
    errors: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    spread_p50_ms: float  # last byte minus first byte, per request, median
    events_relayed: int  # SSE data lines in one relayed stream


@dataclass
class Probe:
    concurrency: int
    rps: float
    p99_ms: float
    errors: int
    ok: bool


@dataclass
class SloSearch:
    """The most req/s with p99 < P99_LIMIT_MS and no errors, over the wrk probes run."""

    best_rps: float | None
    best_concurrency: int | None
    probes: list[Probe]
    note: str = ""


@dataclass
class Held:
    """HELD_STREAMS streams held open at once, plus a c=1 probe of a fast stream while they are."""

    streams: int
    completed: int
    errors: int
    error_kinds: dict[str, int]
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    open_seconds: float  # from the first request sent until the last stream's first event (nan: never)
    min_open_during_probe: int
    probe_requests: int
    probe_errors: int
    probe_ttfb_p50_ms: float
    probe_ttfb_p99_ms: float
    rss_before: int | None
    rss_peak_held: int | None


@dataclass
class Soak:
    seconds: float
    requests: int
    errors: int
    rss_reference_at_s: float
    rss_reference: int
    rss_peak: int
    rss_final: int
    grew: bool
    samples: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class Row:
    """Everything measured for one target."""

    key: str
    label: str
    version: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    idle_rss: int | None = None
    idle_cpu_pct: float | None = None
    c1: Result | None = None
    c64: Result | None = None
    stream: StreamStats | None = None
    slo: SloSearch | None = None
    held: Held | None = None
    soak: Soak | None = None
    rss_end: int | None = None


# --------------------------------------------------------------------------------------------
# Load generators
# --------------------------------------------------------------------------------------------


def wrk_script(path: Path, route: tg.Route) -> Path:
    """A Lua script that makes every wrk request the same POST the Python loops send."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{route.body(False).decode()}]==]",
             'wrk.headers["content-type"] = "application/json"',
             f'wrk.headers["anthropic-version"] = "{ANTHROPIC_VERSION}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in route.headers]
    path.write_text("\n".join(lines) + "\n")
    return path


async def _timed_send(conn: RawConnection, request: bytes, timeout: float, keep_body: bool = False,
                      on_first: Callable[[], None] | None = None) -> tuple[int, int, int, bytes]:
    """One request with a deadline; a late or broken answer closes the connection (next send reopens)."""
    try:
        async with asyncio.timeout(timeout):
            return await conn.send(request, keep_body, on_first)
    except (TimeoutError, ResponseError, OSError):
        conn.close()
        raise


async def _stream_c1(route: tg.Route, seconds: float, warmup: float) -> StreamStats:
    """Streaming requests back to back on one connection; each gives TTFB and last-minus-first byte."""
    conn = RawConnection(route.port)
    request = route.request(True)
    ttfb: list[int] = []
    spread: list[int] = []
    errors = 0
    try:
        _, _, _, body = await _timed_send(conn, request, REQUEST_TIMEOUT, keep_body=True)
        events = body.count(b"data:")
    except (TimeoutError, ResponseError, OSError):
        events = 0
    try:
        for record, length in ((False, warmup), (True, seconds)):
            if record:
                gc.collect()
                gc.disable()
            until = time.perf_counter() + length
            while time.perf_counter() < until:
                try:
                    status, first, last, _ = await _timed_send(conn, request, REQUEST_TIMEOUT)
                except (TimeoutError, ResponseError, OSError):
                    errors += record
                    continue
                if not record:
                    continue
                if status == 200:
                    ttfb.append(first)
                    spread.append(last - first)
                else:
                    errors += 1
    finally:
        gc.enable()
        conn.close()
    ttfb.sort()
    spread.sort()
    return StreamStats(len(ttfb), errors, percentile(ttfb, 50), percentile(ttfb, 99), percentile(spread, 50), events)


async def _held_streams(plan: Plan, trickle: tg.Route, fast: tg.Route, pid: int | None) -> Held:
    """Open plan.streams slow streams (in batches, so no listen queue overflows), wait until each
    has its first event (bounded, so the probe still runs while they are open), then probe a fast stream's
    TTFB at c=1 while they are open, sampling the gateway's RSS; then wait for every stream to end
    and check each arrived whole."""
    stream_seconds = (len(STREAM_EVENTS) - 1) * plan.chunk_interval_ms / 1000
    request = trickle.request(True)
    kinds: Counter[str] = Counter()
    ttfb: list[int] = []
    completed = 0
    in_flight = 0  # sent, first event arrived, not ended
    first_bytes = 0
    all_open_at = math.nan
    pids = process_tree(pid) if pid else []
    rss_peak = 0
    rss_before = sum(rss_bytes(p) for p in pids) if pids else None

    def opened() -> None:
        nonlocal in_flight, first_bytes, all_open_at
        in_flight += 1
        first_bytes += 1
        if first_bytes == plan.streams:
            all_open_at = time.perf_counter() - began

    async def one() -> None:
        nonlocal completed, in_flight
        conn = RawConnection(trickle.port)
        got_first = False

        def mark() -> None:
            nonlocal got_first
            got_first = True
            opened()

        try:
            status, first, _, body = await _timed_send(conn, request, stream_seconds + 60, keep_body=True,
                                                        on_first=mark)
        except (TimeoutError, ResponseError, OSError) as exc:
            kinds[type(exc).__name__] += 1
            return
        finally:
            in_flight -= got_first
            conn.close()
        ttfb.append(first)
        if status != 200:
            kinds[f"status {status}"] += 1
        elif b"message_stop" not in body or not all(piece in body for piece in EXPECTED_PIECES):
            kinds["incomplete stream"] += 1
        else:
            completed += 1

    async def sample_rss(until: float) -> None:
        nonlocal rss_peak
        while time.perf_counter() < until:
            if pids:
                rss_peak = max(rss_peak, sum(rss_bytes(p) for p in pids))
            await asyncio.sleep(0.2)

    began = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    batch = 50
    for start in range(0, plan.streams, batch):
        tasks += [asyncio.create_task(one()) for _ in range(min(batch, plan.streams - start))]
        await asyncio.sleep(0.05)
    # Wait for every first event, but leave the probe time to run while the streams are still open.
    wait_until = began + max(stream_seconds / 2, stream_seconds - plan.held_probe_seconds - 1.0)
    while first_bytes + sum(kinds.values()) < plan.streams and time.perf_counter() < wait_until:
        await asyncio.sleep(0.05)
    probe_until = time.perf_counter() + plan.held_probe_seconds
    sampler = asyncio.create_task(sample_rss(probe_until))
    probe_conn = RawConnection(fast.port)
    probe_request = fast.request(True)
    probe: list[int] = []
    probe_errors = 0
    min_open = in_flight
    try:
        while time.perf_counter() < probe_until:
            min_open = min(min_open, in_flight)
            try:
                status, first, _, _ = await _timed_send(probe_conn, probe_request, REQUEST_TIMEOUT)
            except (TimeoutError, ResponseError, OSError):
                probe_errors += 1
                continue
            if status == 200:
                probe.append(first)
            else:
                probe_errors += 1
        min_open = min(min_open, in_flight)
    finally:
        probe_conn.close()
    await sampler
    await asyncio.gather(*tasks)
    ttfb.sort()
    probe.sort()
    return Held(plan.streams, completed, plan.streams - completed, dict(kinds), percentile(ttfb, 50),
                percentile(ttfb, 99), all_open_at, min_open, len(probe), probe_errors, percentile(probe, 50),
                percentile(probe, 99), rss_before, rss_peak or None)


async def _soak(plan: Plan, gateways: dict[str, tg.Target]) -> dict[str, Soak]:
    """Every gateway at once under the same steady load (plan.soak_rate req/s each, one in four
    streaming, on four connections), sampling each process tree's RSS every second."""
    connections = 4
    interval = connections / plan.soak_rate
    end = time.perf_counter() + plan.soak_seconds
    counts = {key: [0, 0] for key in gateways}  # requests, errors
    samples: dict[str, list[tuple[float, int]]] = {key: [] for key in gateways}

    async def client(key: str, route: tg.Route, index: int) -> None:
        conn = RawConnection(route.port)
        request = route.request(stream=index == 0)
        due = time.perf_counter() + index * interval / connections
        try:
            while due < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                try:
                    status, _, _, _ = await _timed_send(conn, request, REQUEST_TIMEOUT)
                    counts[key][0] += 1
                    counts[key][1] += status != 200
                except (TimeoutError, ResponseError, OSError):
                    counts[key][0] += 1
                    counts[key][1] += 1
                due = max(due + interval, time.perf_counter())  # late: no burst to catch up
        finally:
            conn.close()

    async def sampler() -> None:
        began = time.perf_counter()
        trees: dict[str, list[int]] = {}
        tick = 0
        while time.perf_counter() < end:
            for key, target in gateways.items():
                if target.pid is None:
                    continue
                if tick % 10 == 0:
                    trees[key] = process_tree(target.pid)  # now and then: a gateway may start helpers
                samples[key].append((round(time.perf_counter() - began, 1), sum(rss_bytes(p) for p in trees[key])))
            tick += 1
            await asyncio.sleep(max(0.0, began + tick - time.perf_counter()))
        for key, target in gateways.items():  # one last sample at the very end
            if target.pid is not None:
                samples[key].append((round(time.perf_counter() - began, 1), tree_rss_bytes(target.pid)))

    tasks = [client(key, target.routes["fast"], i) for key, target in gateways.items() for i in range(connections)]
    await asyncio.gather(sampler(), *tasks)
    reference_at = min(60.0, plan.soak_seconds / 2)
    out = {}
    for key, series in samples.items():
        if not series:
            continue
        reference = next((rss for t, rss in series if t >= reference_at), series[0][1])
        final = series[-1][1]
        out[key] = Soak(plan.soak_seconds, counts[key][0], counts[key][1], reference_at, reference,
                        max(rss for _, rss in series), final, grew=final > reference + max(2 * MB, 0.03 * reference),
                        samples=_thin(series, 120))
    return out


def _thin(series: list[tuple[float, int]], points: int) -> list[tuple[float, int]]:
    """At most `points` samples for the JSON, always keeping the last."""
    step = max(1, math.ceil(len(series) / points))
    kept = series[::step]
    return kept if kept[-1] == series[-1] else [*kept, series[-1]]


# --------------------------------------------------------------------------------------------
# Scenarios, one target at a time
# --------------------------------------------------------------------------------------------


def settle(target: tg.Target, limit: float = 30.0) -> None:
    """Wait until the gateway is idle (under 5% of a core over 0.2 s), at most `limit` seconds.

    wrk stops with requests still in flight; a gateway slower than the load keeps working on
    them after wrk has gone. Without this, the next measurement (of it, or of the next target
    sharing the two cores) would start while that backlog is still being served."""
    if target.pid is None:
        time.sleep(0.2)
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(target.pid)
        time.sleep(0.2)
        if tree_cpu_seconds(target.pid) - before < 0.01:
            return


def measure_c1(plan: Plan, target: tg.Target) -> Result:
    route = target.routes["fast"]
    return python_load(route.port, route.request(False), 1, plan.seconds, plan.warmup, False,
                       TreeCpuMeter(target.pid), timeout=REQUEST_TIMEOUT)


def measure_c64(plan: Plan, procs: Processes, tmp: Path, target: tg.Target) -> Result:
    route = target.routes["fast"]
    meter = TreeCpuMeter(target.pid)
    if plan.wrk is None:
        return python_load(route.port, route.request(False), HIGH_CONCURRENCY, plan.seconds, plan.warmup, False,
                           meter, timeout=REQUEST_TIMEOUT)
    script = wrk_script(tmp / f"{target.key}-fast.lua", route)
    wrk_load(procs, plan.wrk, route.port, script, HIGH_CONCURRENCY, plan.warmup, 0.0, CpuMeter(None))  # warm-up
    settle(target)
    result = wrk_load(procs, plan.wrk, route.port, script, HIGH_CONCURRENCY, plan.seconds, 0.0, meter)
    settle(target)
    return result


def slo_search(plan: Plan, procs: Processes, tmp: Path, target: tg.Target) -> SloSearch:
    """Doubling concurrency from plan.start_concurrency until p99 >= 50 ms (or errors), then
    bisecting between the last passing and the first failing concurrency a few times. wrk is a
    closed loop, so concurrency is the knob and req/s the result."""
    if plan.wrk is None:
        return SloSearch(None, None, [], f"needs wrk ({WRK_INSTALL_HINT})")
    route = target.routes["slow"]
    script = wrk_script(tmp / f"{target.key}-slow.lua", route)
    probes: list[Probe] = []

    def probe(concurrency: int) -> bool:
        r = wrk_load(procs, plan.wrk or "wrk", route.port, script, concurrency, plan.probe_seconds, 0.0,
                     CpuMeter(None))
        settle(target)
        ok = r.p99_ms < P99_LIMIT_MS and r.errors == 0
        probes.append(Probe(concurrency, r.rps, r.p99_ms, r.errors, ok))
        return ok

    good, bad = 0, 0
    c = plan.start_concurrency
    while c <= plan.max_concurrency:  # bounded: doubling up to max_concurrency
        if probe(c):
            good, c = c, c * 2
        else:
            bad = c
            break
    note = "" if bad else f"p99 stayed under {P99_LIMIT_MS:g} ms up to c={plan.max_concurrency}, the search's cap"
    if bad:
        for _ in range(plan.search_steps if good else plan.search_steps + 2):
            mid = (good + bad) // 2
            if mid in (good, bad) or mid < 1:
                break
            if probe(mid):
                good = mid
            else:
                bad = mid
    passing = [p for p in probes if p.ok]
    if not passing:
        return SloSearch(None, None, probes, f"p99 was over {P99_LIMIT_MS:g} ms (or errors) at every concurrency tried")
    best = max(passing, key=lambda p: p.rps)
    return SloSearch(best.rps, best.concurrency, probes, note)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _signed(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return ("+" if value >= 0 else "-") + _ms(abs(value))


def _mb(value: int | None) -> str:
    return "—" if not value else f"{value / MB:.1f}"


def _rps(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.0f}"


def _err(n: int) -> str:
    return f" ({n} err)" if n else ""


@dataclass
class Derived:
    """The "added" figures of one target: its value minus direct's, from the same run."""

    c1_p50: float | None = None
    c1_p99: float | None = None
    ttfb_p50: float | None = None
    ttfb_p99: float | None = None
    per_event: float | None = None
    held_probe_p50: float | None = None
    held_probe_p99: float | None = None


def derive(row: Row, base: Row | None) -> Derived:
    d = Derived()
    if base is None or row.key == "direct":
        return d
    if row.c1 and base.c1:
        d.c1_p50, d.c1_p99 = row.c1.p50_ms - base.c1.p50_ms, row.c1.p99_ms - base.c1.p99_ms
    if row.stream and base.stream:
        d.ttfb_p50 = row.stream.ttfb_p50_ms - base.stream.ttfb_p50_ms
        d.ttfb_p99 = row.stream.ttfb_p99_ms - base.stream.ttfb_p99_ms
        d.per_event = (row.stream.spread_p50_ms - base.stream.spread_p50_ms) / (len(STREAM_EVENTS) - 1)
    if row.held and base.held:
        d.held_probe_p50 = row.held.probe_ttfb_p50_ms - base.held.probe_ttfb_p50_ms
        d.held_probe_p99 = row.held.probe_ttfb_p99_ms - base.held.probe_ttfb_p99_ms
    return d


def tables(rows: list[Row]) -> str:
    base = next((r for r in rows if r.key == "direct"), None)
    measured = [r for r in rows if not r.skipped]
    out = ["**Latency and throughput** (one worker each; 0 ms upstream except the last column)", "",
           "| target | added p50, c=1 | added p99, c=1 | req/s, c=64 | CPU/req | "
           f"max req/s with p99 < {P99_LIMIT_MS:g} ms ({SLOW_UPSTREAM_MS:g} ms upstream) |",
           "|---|--:|--:|--:|--:|--:|"]
    for r in measured:
        d = derive(r, base)
        if r.key == "direct":
            c1 = (f"{_ms(r.c1.p50_ms)} abs", f"{_ms(r.c1.p99_ms)} abs") if r.c1 else ("—", "—")
        else:
            c1 = (_signed(d.c1_p50) + (_err(r.c1.errors) if r.c1 else ""), _signed(d.c1_p99))
        c64 = (_rps(r.c64.rps) + _err(r.c64.errors)) if r.c64 else "—"
        cpu = f"{r.c64.cpu_us_per_request:.0f} µs" if r.c64 and r.c64.cpu_us_per_request else "—"
        slo = "—"
        if r.slo:
            slo = f"{_rps(r.slo.best_rps)} (c={r.slo.best_concurrency})" if r.slo.best_rps else "none"
        out.append(f"| {r.label} | {c1[0]} | {c1[1]} | {c64} | {cpu} | {slo} |")
    out += ["", "**Streaming and memory** (MB = 10^6 bytes, RSS of the gateway's process tree)", "",
            "| target | added TTFB p50 / p99, c=1 | added per event | "
            f"{HELD_STREAMS} streams: ok / errors | their TTFB p50 / p99 | added TTFB p50 / p99 while held "
            "| RSS held | idle RSS | soak: peak / final (ref) |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in measured:
        d = derive(r, base)
        if r.key == "direct":
            ttfb = f"{_ms(r.stream.ttfb_p50_ms)} / {_ms(r.stream.ttfb_p99_ms)} abs" if r.stream else "—"
            per_event = "—"
            probe = (f"{_ms(r.held.probe_ttfb_p50_ms)} / {_ms(r.held.probe_ttfb_p99_ms)} abs") if r.held else "—"
        else:
            ttfb = f"{_signed(d.ttfb_p50)} / {_signed(d.ttfb_p99)}"
            per_event = _signed(d.per_event)
            probe = f"{_signed(d.held_probe_p50)} / {_signed(d.held_probe_p99)}"
        held = f"{r.held.completed} / {r.held.errors}" if r.held else "—"
        held_ttfb = f"{_ms(r.held.ttfb_p50_ms)} / {_ms(r.held.ttfb_p99_ms)}" if r.held else "—"
        soak = "—"
        if r.soak:
            soak = (f"{_mb(r.soak.rss_peak)} / {_mb(r.soak.rss_final)} ({_mb(r.soak.rss_reference)}) "
                    f"{'**grew**' if r.soak.grew else 'flat'}{_err(r.soak.errors)}")
        rss_held = _mb(r.held.rss_peak_held) if r.held else "—"
        out.append(f"| {r.label} | {ttfb} | {per_event} | {held} | {held_ttfb} | {probe} | {rss_held} "
                   f"| {_mb(r.idle_rss)} | {soak} |")
    out += ["", "Latencies in ms. Added = the target minus direct, same run. The direct row shows absolute values. "
            "CPU/req = the gateway process tree's user+system CPU per request at c=64. Added per event = "
            "(last byte - first byte of a stream, median) minus direct's, divided by the "
            f"{len(STREAM_EVENTS) - 1} events after the first. Soak: peak and final RSS, and in parentheses the "
            "reference it is compared with (RSS at 1 minute, or half-way through a shorter soak)."]
    skipped = [r for r in rows if r.skipped]
    if skipped:
        out += ["", *(f"Not measured: {r.label}: {r.skipped}." for r in skipped)]
    return "\n".join(out)


@dataclass
class Ratio:
    name: str
    lower_is_better: bool
    get: Callable[[Row, Derived], float | None]


RATIOS = [
    Ratio("added p50 c=1", True, lambda r, d: d.c1_p50),
    Ratio("added p99 c=1", True, lambda r, d: d.c1_p99),
    Ratio("CPU/req", True, lambda r, d: r.c64.cpu_us_per_request if r.c64 else None),
    Ratio("req/s c=64", False, lambda r, d: r.c64.rps if r.c64 else None),
    Ratio(f"max req/s p99<{P99_LIMIT_MS:g}ms", False, lambda r, d: r.slo.best_rps if r.slo else None),
    Ratio("added TTFB p50", True, lambda r, d: d.ttfb_p50),
    Ratio(f"added TTFB p50, {HELD_STREAMS} held", True, lambda r, d: d.held_probe_p50),
    Ratio("idle RSS", True, lambda r, d: float(r.idle_rss) if r.idle_rss else None),
]


def ratio_table(rows: list[Row]) -> str:
    """peer / Tollway for costs (latency, CPU, memory), Tollway / peer for throughput: above 1,
    Tollway is better by that factor; below 1, the peer is."""
    base = next((r for r in rows if r.key == "direct"), None)
    by_key = {r.key: r for r in rows if not r.skipped}
    peers = [r for r in rows if r.key in ("litellm", "portkey") and not r.skipped]
    ours = [by_key[k] for k in ("tollway-off", "tollway-on") if k in by_key]
    if not peers or not ours:
        return ""
    out = ["**Ratios** (peer ÷ Tollway for latency, CPU and memory; Tollway ÷ peer for req/s: above 1 = Tollway "
           "better by that factor)", "", "| peer vs | " + " | ".join(r.name for r in RATIOS) + " |",
           "|---|" + "--:|" * len(RATIOS)]
    for peer in peers:
        for tw in ours:
            cells = []
            for ratio in RATIOS:
                p, t = ratio.get(peer, derive(peer, base)), ratio.get(tw, derive(tw, base))
                cells.append(_ratio(p, t, ratio.lower_is_better))
            out.append(f"| {peer.label} vs {tw.label} | " + " | ".join(cells) + " |")
    out += ["", "An added latency under 0.01 ms (or negative) on either side makes its ratio meaningless: "
            "shown as n/a."]
    return "\n".join(out)


def _ratio(peer: float | None, ours: float | None, lower_is_better: bool) -> str:
    if peer is None or ours is None or math.isnan(peer) or math.isnan(ours):
        return "—"
    num, den = (peer, ours) if lower_is_better else (ours, peer)
    if num < 0.01 or den < 0.01:
        return "n/a"
    return f"{num / den:.1f}x"


@dataclass
class Check:
    description: str
    limit: str
    measured: str
    met: bool
    note: str = ""


def target_checks(rows: list[Row]) -> list[Check]:
    """Tollway with governance on against the performance issue's targets."""
    base = next((r for r in rows if r.key == "direct"), None)
    row = next((r for r in rows if r.key == "tollway-on" and not r.skipped), None)
    if row is None:
        return []
    d = derive(row, base)
    checks: list[Check] = []

    def add(description: str, limit: str, value: float | None, ok: Callable[[float], bool], shown: str,
            errors: int = 0) -> None:
        met = value is not None and not math.isnan(value) and ok(value) and errors == 0
        checks.append(Check(description, limit, shown, met, f"{errors} failed requests" if errors else ""))

    c1_errors = row.c1.errors if row.c1 else 0
    add("added p50, non-streaming, c=1", "≤ 0.5 ms", d.c1_p50, lambda v: v <= 0.5, f"{_ms(d.c1_p50)} ms", c1_errors)
    add("added p99, non-streaming, c=1", "≤ 1.5 ms", d.c1_p99, lambda v: v <= 1.5, f"{_ms(d.c1_p99)} ms", c1_errors)
    if row.c64:
        add(f"req/s, non-streaming, c={HIGH_CONCURRENCY}", "≥ 3,000", row.c64.rps, lambda v: v >= 3000,
            _rps(row.c64.rps), row.c64.errors)
        cpu = row.c64.cpu_us_per_request
        add("CPU per request", "≤ 0.35 ms", cpu / 1000 if cpu else None, lambda v: v <= 0.35,
            f"{cpu / 1000:.3f} ms" if cpu else "—", row.c64.errors)
    if row.held:
        add(f"added TTFB p50, streaming, {HELD_STREAMS} streams held", "≤ 1 ms", d.held_probe_p50,
            lambda v: v <= 1.0, f"{_ms(d.held_probe_p50)} ms", row.held.errors + row.held.probe_errors)
    add("idle RSS", "≤ 60 MB", row.idle_rss / MB if row.idle_rss else None, lambda v: v <= 60,
        f"{_mb(row.idle_rss)} MB")
    if row.soak:
        checks.append(Check(f"RSS flat over the soak ({row.soak.seconds:g} s)", "final ≤ ref + max(2 MB, 3%)",
                            f"{_mb(row.soak.rss_reference)} → {_mb(row.soak.rss_final)} MB", not row.soak.grew))
    return checks


def checks_table(checks: list[Check]) -> str:
    if not checks:
        return ""
    out = ["**Tollway (governance on) against its targets**", "",
           "| target | limit | measured | |", "|---|--:|--:|---|"]
    out += [f"| {c.description} | {c.limit} | {c.measured} | {'met' if c.met else '**missed**'}"
            f"{f' ({c.note})' if c.note else ''} |" for c in checks]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def select_targets(args: argparse.Namespace) -> list[str]:
    if args.targets:
        wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in ALL_TARGETS]
        if unknown:
            raise SystemExit(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(ALL_TARGETS)}")
    elif args.only:
        wanted = [t for t in ALL_TARGETS if t.startswith(args.only)]
        if not wanted:
            raise SystemExit(f"--only {args.only} matches none of {', '.join(ALL_TARGETS)}")
    else:
        wanted = list(ALL_TARGETS)
    if "direct" not in wanted:
        print("note: adding `direct`: every added figure subtracts it", file=sys.stderr)
    return [t for t in ALL_TARGETS if t in wanted or t == "direct"]


def raise_fd_limit(needed: int) -> None:
    """Each held stream is a socket in this process, and one or two in the gateway: the children
    inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        print(f"warning: the open-file limit is {want}, below the {needed} the held streams need", file=sys.stderr)


def start_upstreams(procs: Processes, tmp: Path, plan: Plan) -> tuple[tg.Upstreams, dict[str, int]]:
    """The three emulators, each its own process, with a listen queue deep enough for bursts."""
    ports: dict[str, int] = {}
    pids: dict[str, int] = {}
    options: dict[str, list[str]] = {"fast": [], "slow": ["--delay-ms", str(SLOW_UPSTREAM_MS)],
               "trickle": ["--chunk-interval-ms", str(plan.chunk_interval_ms)]}
    started = []
    for kind, extra in options.items():
        port = free_port()
        log = tmp / f"upstream-{kind}.log"
        with log.open("wb") as out:
            proc = procs.start([sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port), "--backlog",
                                "4096", *extra], out)
        started.append((kind, port, proc, log))
    for kind, port, proc, log in started:
        wait_for(functools.partial(port_open, port), proc, f"bench/upstream.py ({kind})", log)
        ports[kind], pids[kind] = port, proc.pid
    return tg.Upstreams(ports["fast"], ports["slow"], ports["trickle"]), pids


def start_targets(procs: Processes, tmp: Path, upstreams: tg.Upstreams, keys: list[str],
                  rows: dict[str, Row]) -> dict[str, tg.Target]:
    """Start every gateway at once (LiteLLM alone takes ~20 s to import), then wait for each and
    send it one request of each kind."""
    started: dict[str, tg.Target] = {}
    for key in keys:
        row = rows[key]
        if key == "direct":
            started[key] = tg.direct(upstreams)
        elif key in ("tollway-off", "tollway-on"):
            started[key] = tg.tollway(procs, tmp, upstreams, governance=key == "tollway-on")
        elif key == "litellm":
            why = tg.litellm_available()
            if why:
                row.skipped = why
                continue
            started[key] = tg.litellm(procs, tmp, upstreams)
        elif key == "portkey":
            why = tg.portkey_available()
            if why:
                row.skipped = why
                continue
            started[key] = tg.portkey(procs, tmp, upstreams)
    for key, target in started.items():
        target.wait_ready()
        tg.sanity_check(target)
        rows[key].version, rows[key].notes = target.version, list(target.notes)
        print(f"  {target.label:<26} ready" + (f" (pid {target.pid}, port {target.routes['fast'].port})"
                                                if target.pid else ""), file=sys.stderr)
    return started


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    plan = Plan.from_args(args)
    keys = select_targets(args)
    rows = {key: Row(key, key) for key in keys}
    raise_fd_limit(4 * plan.streams + 1024)
    if plan.wrk is None:
        why = "disabled by --no-wrk" if args.no_wrk else f"not installed; install it with: {WRK_INSTALL_HINT}"
        print(f"note: wrk {why}. c={HIGH_CONCURRENCY} uses the Python load generator (a lower bound) and the "
              "req/s-under-p99 search is skipped.", file=sys.stderr)
    load_before = os.getloadavg()[0]
    if load_before > BUSY_LOAD:
        print(f"warning: the 1-minute load average is {load_before:.2f} before starting: other processes are using "
              "the CPUs, so every figure will be noisy.", file=sys.stderr)

    upstreams, upstream_pids = start_upstreams(procs, tmp, plan)
    started = start_targets(procs, tmp, upstreams, keys, rows)
    for key, target in started.items():
        rows[key].label = target.label
    for key, row in rows.items():
        if row.skipped:
            row.label = key
            print(f"  {key:<26} skipped: {row.skipped}", file=sys.stderr)
    gateways = {k: t for k, t in started.items() if t.is_gateway}

    # Idle: after start-up and the sanity requests, nothing for 2 s.
    cpu0 = {k: tree_cpu_seconds(t.pid) for k, t in gateways.items() if t.pid}
    time.sleep(2.0)
    for key, target in gateways.items():
        assert target.pid is not None
        rows[key].idle_rss = tree_rss_bytes(target.pid)
        rows[key].idle_cpu_pct = (tree_cpu_seconds(target.pid) - cpu0[key]) / 2.0 * 100
    print("idle RSS: " + ", ".join(f"{rows[k].label} {_mb(rows[k].idle_rss)} MB" for k in gateways), file=sys.stderr)

    if gateways and plan.soak_seconds > 0:
        print(f"soak: {plan.soak_seconds:g} s, {plan.soak_rate:g} req/s per gateway, all gateways at once",
              file=sys.stderr)
        for key, soak in uvloop.run(_soak(plan, gateways)).items():
            rows[key].soak = soak
            print(f"  {rows[key].label:<26} {soak.requests} requests ({soak.requests / soak.seconds:.0f}/s)"
                  f"{_err(soak.errors)}, RSS "
                  f"{_mb(soak.rss_reference)} at {soak.rss_reference_at_s:g} s → {_mb(soak.rss_final)} MB final, "
                  f"peak {_mb(soak.rss_peak)}", file=sys.stderr)

    def each(name: str, fn: Callable[[tg.Target], Any], attr: str, show: Callable[[Any], str]) -> None:
        """One scenario for every target in turn. A target that fails it (wrk cannot parse its
        answers, a connection refused) gets no figure and a note; the others are still measured."""
        print(f"{name}:", file=sys.stderr)
        for key, target in started.items():
            try:
                result = fn(target)
            except (RuntimeError, OSError) as exc:
                rows[key].notes.append(f"{name}: not measured: {str(exc).splitlines()[0] if str(exc) else exc!r}")
                print(f"  {target.label:<26} failed: {exc}", file=sys.stderr)
            else:
                setattr(rows[key], attr, result)
                print(f"  {target.label:<26} {show(result)}", file=sys.stderr)
            if not target.alive():
                raise RuntimeError(f"{target.label} exited during the run:\n{tail(target.log) if target.log else ''}")

    each("non-streaming, c=1", lambda t: measure_c1(plan, t), "c1",
         lambda r: f"p50 {_ms(r.p50_ms)} ms, p99 {_ms(r.p99_ms)} ms, {_rps(r.rps)} req/s{_err(r.errors)}")
    each(f"non-streaming, c={HIGH_CONCURRENCY}", lambda t: measure_c64(plan, procs, tmp, t), "c64",
         lambda r: f"{_rps(r.rps)} req/s, p99 {_ms(r.p99_ms)} ms{_err(r.errors)}"
                   + (f", {r.cpu_us_per_request:.0f} µs CPU/req" if r.cpu_us_per_request else ""))
    each("streaming, c=1", lambda t: uvloop.run(_stream_c1(t.routes["fast"], plan.seconds, plan.warmup)), "stream",
         lambda s: f"TTFB p50 {_ms(s.ttfb_p50_ms)} ms, p99 {_ms(s.ttfb_p99_ms)} ms, rest of the stream "
                   f"{_ms(s.spread_p50_ms)} ms, {s.events_relayed} events{_err(s.errors)}")
    each(f"most req/s with p99 < {P99_LIMIT_MS:g} ms, {SLOW_UPSTREAM_MS:g} ms upstream",
         lambda t: slo_search(plan, procs, tmp, t), "slo",
         lambda s: (f"{_rps(s.best_rps)} req/s at c={s.best_concurrency}" if s.best_rps else "none")
                   + f" [{', '.join(f'c={p.concurrency}: {_rps(p.rps)}/{_ms(p.p99_ms)}' for p in s.probes)}]"
                   + (f" {s.note}" if s.note else ""))

    def held(target: tg.Target) -> Held:
        return uvloop.run(_held_streams(plan, target.routes["trickle"], target.routes["fast"], target.pid))

    each(f"{plan.streams} streams held", held, "held",
         lambda h: f"{h.completed}/{h.streams} complete{_err(h.errors)} {h.error_kinds or ''}, TTFB p50 "
                   f"{_ms(h.ttfb_p50_ms)} p99 {_ms(h.ttfb_p99_ms)} ms, all open after {h.open_seconds:.2f} s; probe "
                   f"TTFB p50 {_ms(h.probe_ttfb_p50_ms)} p99 {_ms(h.probe_ttfb_p99_ms)} ms{_err(h.probe_errors)} "
                   f"with ≥ {h.min_open_during_probe} open; RSS {_mb(h.rss_peak_held)} MB")
    for key, target in gateways.items():
        if target.pid:
            rows[key].rss_end = tree_rss_bytes(target.pid)

    ordered = [rows[k] for k in keys]
    checks = target_checks(ordered)
    parts = [tables(ordered), ratio_table(ordered), checks_table(checks)]
    notes = [f"- {r.label}: {n}" for r in ordered for n in r.notes]
    if notes:
        parts.append("Notes:\n" + "\n".join(notes))
    markdown = "\n\n".join(p for p in parts if p)
    print()
    print(markdown)
    print()
    missed = [c for c in checks if not c.met]
    if checks:
        print("All targets met." if not missed else f"{len(missed)} of {len(checks)} targets missed.")

    write_report(args.output, load_before, {
        "plan": asdict(plan),
        "upstreams": {"ports": asdict(upstreams), "pids": upstream_pids, "slow_delay_ms": SLOW_UPSTREAM_MS,
                      "events_per_stream": len(STREAM_EVENTS)},
        "targets": [{**asdict(r), "added": asdict(derive(r, rows.get("direct")))} for r in ordered],
        "checks": [asdict(c) for c in checks],
        "markdown": markdown,
    }, machine={"node": _node_version()})
    return 0 if not missed or not args.strict else 1


def _node_version() -> str:
    node = shutil.which("node")
    if not node:
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorten every step (a ~3 minute smoke run)")
    parser.add_argument("--targets", help=f"comma-separated, from {','.join(ALL_TARGETS)} (direct is always added)")
    parser.add_argument("--only", help="the targets whose name starts with this, e.g. `tollway` (plus direct)")
    parser.add_argument("--soak-seconds", type=float, help="soak length (default 600, 20 with --quick; 0: no soak)")
    parser.add_argument("--soak-rate", type=float, help="requests/s per gateway during the soak (default 50)")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when one of Tollway's targets is missed")
    return parser.parse_args(argv)


def main() -> int:
    return run_with_processes(run, parse_args(), "tollway-compare-")


if __name__ == "__main__":
    sys.exit(main())
