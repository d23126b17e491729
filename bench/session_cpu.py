"""Is the gateway's own CPU per request flat in the history length? (issue 15 item 2)

Claude Code re-sends the whole conversation every turn, so a turn's body grows from ~50 KB to
several hundred. With DLP off, nothing on the request path should cost per KB of history but the
one parse (and the one C-level depth check): no validation walk, no estimate walk, no
re-serialisation while nothing in the body changes. This plays ``--sessions`` growing sessions
(bench/dlp.py's Claude Code request cut after more and more of its history, as
bench/dlp_session.py does) over one keep-alive connection each, through ``tollway serve`` with
default governance but ``dlp.enabled: false``, reads the gateway's CPU (user + system, /proc)
around every request, and reports the CPU per request in size buckets and the least-squares slope
in µs of gateway CPU per KB of body.

By default every turn carries ``metadata.user_id`` as Claude Code's requests do: the gateway strips
it (docs/decisions.md 2), so the body is serialised once before forwarding. ``--no-metadata``
leaves it out: the client's bytes are then forwarded as they came.

    .venv/bin/python bench/session_cpu.py                    # 12 sessions, DLP off
    .venv/bin/python bench/session_cpu.py --no-metadata --json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dlp as corpus
import run

BUCKETS_KB = (50, 100, 150, 200, 250)
# `tollway serve` under cProfile, the stats written when the server exits: uvicorn re-raises the
# SIGTERM it stopped on once it is done, and this handler turns it into a normal exit.
PROFILED = """
import atexit, cProfile, signal, sys, time
out = sys.argv.pop(1)
profile = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
atexit.register(lambda: (profile.disable(), profile.dump_stats(out)))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
profile.enable()
from tollway.cli import app
sys.argv[0] = "tollway"
app()
"""
METADATA = {"user_id": "user_5f2c0e_account_3b1d9a7e-0c41-4f6e-9a55-1d2f3e4a5b6c_session_7c9e"}


def session_turns(seed: int, metadata: bool, first_kb: int = 50, last_kb: int = 230) -> list[bytes]:
    """The bodies of one growing session, one per turn ending on a user message."""
    full = corpus.build_request(planted=False, target_kb=last_kb, seed=seed)
    full["model"], full["stream"], full["max_tokens"] = run.MODEL, False, 1024
    if metadata:
        full["metadata"] = METADATA
    messages = full["messages"]
    turns = []
    for n in range(1, len(messages) + 1):
        if messages[n - 1]["role"] != "user":
            continue
        # UTF-8 as Claude Code sends it (Node's JSON.stringify does not escape non-ASCII characters)
        body = json.dumps({**full, "messages": messages[:n]}, separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) >= first_kb * 1024:
            turns.append(body)
    return turns


async def play(port: int, key: str, pid: int, sessions: int, metadata: bool) -> list[tuple[float, float]]:
    """(body KB, gateway CPU seconds) for every turn of every session."""
    samples: list[tuple[float, float]] = []
    for s in range(sessions):
        conn = run.RawConnection(port)
        try:
            for i, body in enumerate(session_turns(1000 + s, metadata)):
                request = run.build_request(port, key, body)
                before = run.cpu_seconds(pid)
                status, _, _, answer = await conn.send(request, keep_body=True)
                used = run.cpu_seconds(pid) - before
                if status != 200:
                    raise RuntimeError(f"turn {i}: {status} {answer[:300]!r}")
                samples.append((len(body) / 1024, used))
        finally:
            conn.close()
    return samples


def summarise(samples: list[tuple[float, float]]) -> dict[str, Any]:
    buckets = []
    for low, high in itertools.pairwise(BUCKETS_KB):
        inside = [cpu for kb, cpu in samples if low <= kb < high]
        if inside:
            buckets.append({"kb": f"{low}-{high}", "requests": len(inside),
                            "cpu_ms_per_request": round(sum(inside) * 1000 / len(inside), 3)})
    kbs = [kb for kb, _ in samples]
    mean_kb, mean_cpu = statistics.mean(kbs), statistics.mean(cpu for _, cpu in samples)
    slope = sum((kb - mean_kb) * (cpu - mean_cpu) for kb, cpu in samples) / sum((kb - mean_kb) ** 2 for kb in kbs)
    return {"requests": len(samples), "buckets": buckets, "slope_us_per_kb": round(slope * 1e6, 2),
            "cpu_ms_per_request": round(mean_cpu * 1000, 3), "mean_kb": round(mean_kb, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--no-metadata", action="store_true", help="turns without Claude Code's metadata.user_id")
    parser.add_argument("--dlp", choices=("on", "off"), default="off")
    parser.add_argument("--profile", type=Path, help="run the gateway under cProfile, its stats written here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    procs = run.Processes()
    with tempfile.TemporaryDirectory(prefix="tollway-session-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            upstream_port = run.start_upstream(procs, tmp)
            tollway = run.tollway_bin()
            config = run.write_config(tmp, upstream_port)
            if args.dlp == "off":
                run.without_dlp(config)
            key = run.create_key(tollway, config)
            prefix = None if args.profile is None else [sys.executable, "-c", PROFILED, str(args.profile.resolve())]
            port, gateway = run.start_tollway(procs, tmp, config, prefix)
            result = summarise(asyncio.run(play(port, key, gateway.pid, args.sessions, not args.no_metadata)))
            result.update(dlp=args.dlp, metadata=not args.no_metadata, load_average_1min=round(os.getloadavg()[0], 2))
        finally:
            procs.stop_all()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"DLP {result['dlp']}, metadata {'on' if result['metadata'] else 'off'}; {result['requests']} requests:")
    for b in result["buckets"]:
        print(f"  {b['kb']:>8} KB: {b['cpu_ms_per_request']:.3f} ms gateway CPU per request ({b['requests']} requests)")
    print(f"  slope: {result['slope_us_per_kb']} µs of gateway CPU per KB of body")
    print(f"  load average (1 min) at the end: {result['load_average_1min']} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
