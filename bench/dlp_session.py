"""Session workload: a Claude Code-shaped conversation that grows turn by turn, through a real gateway.

Starts ``bench/upstream.py`` and ``tollway serve`` (default governance: DLP on with the default
policy), then plays ``--sessions`` conversations over ONE keep-alive connection each. A session is
bench/dlp.py's Claude Code request (system prompt, 20 tools, a tool_use/tool_result history) cut
after more and more of its history, so every turn re-sends the previous turn's request plus a few
KB, from about 50 KB to about 230 KB, as Claude Code does. The gateway's CPU (user + system, from
/proc) is read around every request and summed per bucket of turns: early (the first turns, ~50-80
KB) and late (the last turns, ~200-230 KB); /proc's 10 ms ticks average out over the sum.

Then a 120 KB request, sent directly to the upstream and through Tollway alternately: p50 and what
the gateway adds, (a) the same body every time (what a retry or a re-send costs) and (b) a body with
new content every time (a cold DLP scan of all of it).

    .venv/bin/python bench/dlp_session.py                  # 12 sessions
    .venv/bin/python bench/dlp_session.py --sessions 30 --json
    .venv/bin/python bench/dlp_session.py --in-process     # DLP alone, in this process (CPU per request)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dlp as corpus
import run


def session_turns(seed: int, first_kb: int = 50, last_kb: int = 230) -> list[bytes]:
    """The request bodies of one growing session, one per turn (each ends on a user message)."""
    full = corpus.build_request(planted=False, target_kb=last_kb, seed=seed)
    full["model"], full["stream"], full["max_tokens"] = run.MODEL, False, 1024
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


async def play(port: int, key: str, pid: int, sessions: int, bucket: int) -> dict[str, Any]:
    early: list[float] = []
    late: list[float] = []
    early_kb: list[float] = []
    late_kb: list[float] = []
    for s in range(sessions):
        turns = session_turns(seed=1000 + s)
        conn = run.RawConnection(port)
        try:
            for i, body in enumerate(turns):
                request = run.build_request(port, key, body)
                before = run.cpu_seconds(pid)
                status, _, _, answer = await conn.send(request, keep_body=True)
                used = run.cpu_seconds(pid) - before
                if status != 200:
                    raise RuntimeError(f"turn {i}: {status} {answer[:300]!r}")
                if i < bucket:
                    early.append(used)
                    early_kb.append(len(body) / 1024)
                elif i >= len(turns) - bucket:
                    late.append(used)
                    late_kb.append(len(body) / 1024)
        finally:
            conn.close()
    return {
        "sessions": sessions,
        "turns_per_bucket": bucket,
        "early_kb": round(statistics.mean(early_kb), 1),
        "late_kb": round(statistics.mean(late_kb), 1),
        "early_cpu_ms_per_request": round(sum(early) * 1000 / len(early), 3),
        "late_cpu_ms_per_request": round(sum(late) * 1000 / len(late), 3),
    }


@functools.lru_cache(maxsize=1)
def _base_120kb() -> dict[str, Any]:
    base = corpus.build_request(planted=False, target_kb=120, seed=5)
    base["model"], base["stream"], base["max_tokens"] = run.MODEL, False, 1024
    return base


def request_120kb(fresh: int | None) -> bytes:
    """The 120 KB request: the same bytes every time (``fresh`` None), or new content in every unit."""
    base = _base_120kb()
    b = (
        base
        if fresh is None
        else {**base, "messages": [*base["messages"][:-1], {"role": "user", "content": f"variant {fresh}"}]}
    )
    if fresh is not None:  # new content in every unit: a system prompt no scan has seen
        b = {
            **b,
            "system": [{"type": "text", "text": f"session {fresh}: " + base["system"][1]["text"]}],
            "tools": [{**t, "description": f"{fresh} {t['description']}"} for t in base["tools"]],
            "messages": [
                {**m, "content": f"{fresh} {m['content']}"}
                if isinstance(m["content"], str)
                else {
                    **m,
                    "content": [
                        {**c, "text": f"{fresh} {c['text']}"} if c.get("type") == "text" else c
                        for c in m["content"]
                    ],
                }
                for m in b["messages"]
            ],
        }
    return json.dumps(b, separators=(",", ":"), ensure_ascii=False).encode()


async def added_latency(direct_port: int, port: int, key: str, rounds: int) -> dict[str, Any]:
    """p50 of a 120 KB request direct vs through Tollway, same body and fresh bodies, alternating."""
    body = request_120kb

    out: dict[str, Any] = {"kb": round(len(body(None)) / 1024, 1)}
    for label, fresh in (("same_body", False), ("fresh_body", True)):
        direct_conn, gw_conn = run.RawConnection(direct_port), run.RawConnection(port)
        d: list[int] = []
        t: list[int] = []
        try:
            for i in range(rounds + 5):
                payload = body(i if fresh else None)
                _, _, dn, _ = await direct_conn.send(run.build_request(direct_port, key, payload))
                status, _, tn, answer = await gw_conn.send(run.build_request(port, key, payload), keep_body=True)
                if status != 200:
                    raise RuntimeError(f"{status} {answer[:300]!r}")
                if i >= 5:
                    d.append(dn)
                    t.append(tn)
        finally:
            direct_conn.close()
            gw_conn.close()
        out[label] = {
            "direct_p50_ms": round(statistics.median(d) / 1e6, 3),
            "tollway_p50_ms": round(statistics.median(t) / 1e6, 3),
            "added_p50_ms": round((statistics.median(t) - statistics.median(d)) / 1e6, 3),
        }
    return out


def in_process(sessions: int, bucket: int, rounds: int) -> dict[str, Any]:
    """DLP alone: ``DlpEngine.ainspect`` (default policy) in this process, CPU per request (process time, so a
    scan in a worker thread counts), for the same session turns and the 120 KB request. Unlike the gateway
    figures, this is not rounded to /proc's 10 ms ticks, and other processes' load inflates it less."""
    import orjson

    from tollway.governance.dlp import DlpEngine
    from tollway.governance.dlp.policy import DlpConfig

    async def measure() -> dict[str, Any]:
        engine = DlpEngine(DlpConfig())
        engine.wait_ready()
        early: list[float] = []
        late: list[float] = []
        for s in range(sessions):
            turns = session_turns(seed=1000 + s)
            for i, raw in enumerate(turns):
                body = orjson.loads(raw)
                started = time.process_time()
                await engine.ainspect(body)
                used = time.process_time() - started
                if i < bucket:
                    early.append(used)
                elif i >= len(turns) - bucket:
                    late.append(used)
        same: list[float] = []
        fresh: list[float] = []
        for i in range(rounds + 1):
            for out, payload in ((same, request_120kb(None)), (fresh, request_120kb(10_000 + i))):
                body = orjson.loads(payload)
                started = time.process_time()
                await engine.ainspect(body)
                if i:
                    out.append(time.process_time() - started)
        return {
            "early_cpu_ms_per_request": round(statistics.mean(early) * 1000, 3),
            "late_cpu_ms_per_request": round(statistics.mean(late) * 1000, 3),
            "kb_120_same_body_cpu_ms_p50": round(statistics.median(same) * 1000, 3),
            "kb_120_fresh_body_cpu_ms_p50": round(statistics.median(fresh) * 1000, 3),
        }

    return asyncio.run(measure())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--bucket", type=int, default=5, help="turns in the early and the late bucket")
    parser.add_argument("--rounds", type=int, default=60, help="requests per 120 KB latency measurement")
    parser.add_argument("--dlp", choices=("on", "off"), default="on",
                        help="off: the same run with dlp.enabled false, to see what DLP itself costs")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--in-process", action="store_true",
                        help="only DLP's own CPU per request, in this process (no upstream, no gateway)")
    args = parser.parse_args()
    if args.in_process:
        alone = in_process(args.sessions, args.bucket, args.rounds)
        alone["load_average_1min"] = round(os.getloadavg()[0], 2)
        alone["matcher"] = os.environ.get("TOLLWAY_DLP_MATCHER", "auto")
        print(json.dumps(alone, indent=2))
        return 0
    procs = run.Processes()
    with tempfile.TemporaryDirectory(prefix="tollway-dlp-session-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            upstream_port = run.start_upstream(procs, tmp)
            tollway = run.tollway_bin()
            config = run.write_config(tmp, upstream_port)
            if args.dlp == "off":
                run.without_dlp(config)
            key = run.create_key(tollway, config)
            port, gateway = run.start_tollway(procs, tmp, config)
            started = time.perf_counter()
            session = asyncio.run(play(port, key, gateway.pid, args.sessions, args.bucket))
            latency = asyncio.run(added_latency(upstream_port, port, key, args.rounds))
            result = {
                "session": session,
                "request_120kb": latency,
                "seconds": round(time.perf_counter() - started, 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "matcher": os.environ.get("TOLLWAY_DLP_MATCHER", "auto"),
                "dlp": args.dlp,
            }
        finally:
            procs.stop_all()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        s, lat = result["session"], result["request_120kb"]
        print(f"DLP {result['dlp']}; session workload ({s['sessions']} sessions, keep-alive, "
              f"{s['turns_per_bucket']} turns per bucket):")
        print(f"  early turns (~{s['early_kb']} KB): {s['early_cpu_ms_per_request']:.2f} ms gateway CPU per request")
        print(f"  late turns  (~{s['late_kb']} KB): {s['late_cpu_ms_per_request']:.2f} ms gateway CPU per request")
        for label in ("same_body", "fresh_body"):
            m = lat[label]
            print(
                f"  {lat['kb']} KB request, {label.replace('_', ' ')}: direct p50 {m['direct_p50_ms']:.2f} ms, "
                f"Tollway p50 {m['tollway_p50_ms']:.2f} ms, added {m['added_p50_ms']:+.2f} ms"
            )
        print(f"  load average (1 min) at the end: {result['load_average_1min']} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
