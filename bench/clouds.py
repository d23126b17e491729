"""Benchmark: what the cloud upstream paths (Bedrock, Vertex) cost the gateway, against the plain
Anthropic path, in the same run.

Starts one pre-encoded upstream process (this file with `--serve-upstream`) that answers as
Anthropic (`/v1/messages`), as Bedrock (`/model/{id}/invoke[-with-response-stream]`, the stream
in AWS event-stream frames) and as Vertex (`…:rawPredict`, `…:streamRawPredict`, plus a `/token`
endpoint for google-auth), then one `tollway serve` with three models, one per path: Bedrock
requests are SigV4-signed with static credentials, Vertex ones carry a google-auth
service-account token. For each path, at concurrency 1 with the same Python load generator as
bench/run.py, in interleaved rounds (medians reported):

* non-streaming: p50/p99 latency and the gateway's CPU per request (from /proc);
* streaming with 10 and with 110 text deltas: the gateway's CPU per request, and from the
  difference, its CPU per streamed event — Bedrock's event-stream decode against the plain SSE
  relay (target: at most 20 % more per event). Twice: "burst" (the upstream writes every event
  at once, so the gateway reads many per chunk) and "paced" (one event per millisecond, each its
  own read and write, as a model streams tokens); the target is judged on the paced figure.

Two more paths measure the cloud INGRESS (issue 13, items 6-8): "bedrock-ingress" and
"vertex-ingress" send the same requests in Bedrock's and Vertex's wire formats
(`/model/bench-anthropic/invoke[-with-response-stream]`, `…/models/bench-anthropic:[stream]rawPredict`)
to the Anthropic-upstream model, so their difference to "anthropic" is what the ingress adds: the
body conversion and, for Bedrock streams, the SSE → AWS event-stream encoding.

It also times, in-process, the per-event cost of the decoder (`wire.bedrock_stream`) against the
SSE usage tap the plain relay runs (`wire.sse.StreamTap`).

With `--instructions` it counts, instead of CPU time, the gateway's instructions per paced
streamed event under valgrind's callgrind (measure_instructions): on a loaded shared machine the
CPU time per event varies by ±50 % between runs, an instruction count by a few per cent.

    .venv/bin/python bench/clouds.py [--duration 3] [--rounds 3] [--quick] [--paths anthropic,bedrock,...]
    .venv/bin/python bench/clouds.py --instructions [--ir-requests 2] [--rounds 3] [--paths ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from run import (  # noqa: E402
    HOST,
    CpuMeter,
    Processes,
    build_request,
    create_key,
    free_port,
    http_ok,
    port_open,
    python_load,
    run_with_processes,
    tollway_bin,
    wait_for,
)

PATHS = ("anthropic", "bedrock", "vertex", "bedrock-ingress", "vertex-ingress")
# The cloud ingress (surfaces/bedrock.py, surfaces/vertex.py): the client speaks Bedrock's or
# Vertex's wire format to Tollway, and the upstream is the same Anthropic one as "anthropic", so
# the difference to that path is what the ingress adds (body conversion, event-stream encoding).
VERTEX_PREFIX = "/v1/projects/bench/locations/us-east5/publishers/anthropic/models/bench-anthropic"
FEW, MANY = 10, 110  # text deltas per streamed answer (the request's max_tokens asks for them)
TARGET_EVENT_RATIO = 1.20
OUTPUT = Path(__file__).resolve().parent / "results" / "clouds.json"


# --------------------------------------------------------------------------------------------
# The upstream (its own process)
# --------------------------------------------------------------------------------------------


def events(n: int) -> list[dict[str, Any]]:
    usage = {"input_tokens": 52, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    start = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "bench", "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": usage}
    return [{"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}
              for _ in range(n)),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": n}},
            {"type": "message_stop"}]


def serve_upstream(port: int, gap_ms: float = 1.0) -> None:
    import asyncio

    import uvloop
    from aiohttp import web

    from tests.bedrock_emulator import chunk_frame, stream_frames

    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "bench",
               "content": [{"type": "text", "text": "Hello from the bench."}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 52, "output_tokens": 6,
                                                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
    json_body = orjson.dumps(message)
    sse = {n: [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events(n)]
           for n in (FEW, MANY)}
    frames = {n: stream_frames(events(n)) for n in (FEW, MANY)}
    assert chunk_frame  # the emulator's encoder, checked against botocore in tests/test_bedrock_stream.py

    async def stream(request: web.Request, chunks: list[bytes], content_type: str, gap: float) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": content_type})
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(chunk)
            if gap:
                await asyncio.sleep(gap)
        await resp.write_eof()
        return resp

    async def handle(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        # max_tokens says how to stream: FEW or MANY deltas, back to back, or (when it ends in 1)
        # one event per millisecond, so that each event is its own read and write, as when a
        # model produces tokens.
        asked = int(body.get("max_tokens") or FEW)
        n, gap = (MANY if asked // 10 * 10 == MANY else FEW), (gap_ms / 1000 if asked % 10 == 1 else 0.0)
        path = request.path
        if path.endswith("/invoke-with-response-stream"):
            return await stream(request, frames[n], "application/vnd.amazon.eventstream", gap)
        if body.get("stream"):
            return await stream(request, sse[n], "text/event-stream; charset=utf-8", gap)
        return web.Response(body=json_body, content_type="application/json")

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "bench-token", "expires_in": 3600, "token_type": "Bearer"})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/{tail:.*}", handle)
    uvloop.install()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def service_account(tmp: Path, token_uri: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "bench", "private_key_id": "k",
                                "private_key": pem, "client_email": "bench@bench.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": token_uri}))
    return path


def config(tmp: Path, upstream: str, quiet: bool = False) -> Path:
    """The bench gateway's config. QUIET (the --instructions run) turns off what runs on timers
    rather than per event — the key-cache poll, the audit and usage writers — so that no counting
    window catches a burst of it; that work is the same for every path and not per event."""
    sa = service_account(tmp, upstream + "/token")
    models = [
        {"id": "bench-anthropic", "upstream": {"provider": "anthropic", "base_url": upstream, "api_key": "sk-bench"}},
        {"id": "bench-bedrock", "upstream": {"provider": "bedrock", "base_url": upstream, "region": "us-east-1",
                                             "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}},
        {"id": "bench-vertex", "upstream": {"provider": "vertex", "base_url": upstream + "/v1", "project": "bench",
                                            "region": "us-east5", "credentials_file": str(sa),
                                            "model": "claude-sonnet-4-5@20250929"}},
    ]
    data = {"store": {"url": f"sqlite:///{tmp}/tollway.db", "spill_dir": str(tmp / "spill")},
            "dlp": {"enabled": False}, "retries": {"max_attempts": 1}, "models": models}
    if quiet:
        data |= {"server": {"key_refresh_interval": 3600}, "audit": {"enabled": False},
                 "metering": {"enabled": False}}
    path = tmp / "tollway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def request_for(port: int, key: str, path: str, stream: bool, n: int) -> bytes:
    """The exact bytes of one request on PATH (run.build_request's, on the ingress routes for those)."""
    if path == "bedrock-ingress":
        route = "/model/bench-anthropic/" + ("invoke-with-response-stream" if stream else "invoke")
        data: dict[str, Any] = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": n,
                                "messages": [{"role": "user", "content": "Summarise why a gateway should be fast."}]}
    elif path == "vertex-ingress":
        route = VERTEX_PREFIX + (":streamRawPredict" if stream else ":rawPredict")
        data = {"anthropic_version": "vertex-2023-10-16", "max_tokens": n,
                "messages": [{"role": "user", "content": "Summarise why a gateway should be fast."}]}
        if stream:
            data["stream"] = True
    else:
        return build_request(port, key, body(path, stream, n))
    return build_request(port, key, orjson.dumps(data)).replace(b"POST /v1/messages ", f"POST {route} ".encode(), 1)


def body(path: str, stream: bool, n: int = FEW) -> bytes:
    out: dict[str, Any] = {"model": f"bench-{path}", "max_tokens": n,
                           "messages": [{"role": "user", "content": "Summarise why a gateway should be fast."}]}
    if stream:
        out["stream"] = True
    return orjson.dumps(out)


def measure(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    tollway = tollway_bin()
    up_port, gw_port = free_port(), free_port()
    up_log = (tmp / "upstream.log").open("wb")
    up = procs.start([sys.executable, __file__, "--serve-upstream", str(up_port)], up_log, cwd=ROOT)
    wait_for(lambda: port_open(up_port), up, "the upstream", tmp / "upstream.log")
    cfg = config(tmp, f"http://{HOST}:{up_port}")
    key = create_key(tollway, cfg)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_EC2_METADATA_DISABLED": "true"}
    gw_log = (tmp / "gateway.log").open("wb")
    gw = procs.start([tollway, "serve", "--config", str(cfg), "--port", str(gw_port)], gw_log, cwd=tmp, env=env)
    wait_for(lambda: http_ok(f"http://{HOST}:{gw_port}/ready"), gw, "tollway", tmp / "gateway.log")

    kinds = ("json", f"stream{FEW}", f"stream{MANY}", f"paced{FEW}", f"paced{MANY}")
    paths = args.paths
    scenarios = [(p, kind) for p in paths for kind in kinds]
    samples: dict[tuple[str, str], list[Any]] = {s: [] for s in scenarios}
    for r in range(args.rounds):
        for path, kind in scenarios:
            stream = kind != "json"
            n = (MANY if kind.endswith(str(MANY)) else FEW) + (1 if kind.startswith("paced") else 0)
            request = request_for(gw_port, key, path, stream, n)
            # Paced answers take 10-100x longer: measured longer, so /proc's 10 ms CPU ticks average out.
            seconds = args.duration * (4 if kind.startswith("paced") else 1)
            result = python_load(gw_port, request, 1, seconds, args.warmup, False, CpuMeter(gw.pid))
            if result.errors or not result.requests:
                raise RuntimeError(f"{path} {kind}: {result.errors} errors, {result.requests} answers")
            samples[(path, kind)].append(result)
            print(f"round {r + 1} {path:9} {kind:9} p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms  "
                  f"cpu {result.cpu_us_per_request:7.1f} µs/req", flush=True)

    def med(path: str, kind: str, attr: str) -> float:
        return float(statistics.median(getattr(x, attr) for x in samples[(path, kind)]))

    report: dict[str, Any] = {"rounds": args.rounds, "duration_s": args.duration, "paths": {}}
    def per_event(path: str, kind: str) -> float:
        return (med(path, f"{kind}{MANY}", "cpu_us_per_request") - med(path, f"{kind}{FEW}", "cpu_us_per_request")) / (
            MANY - FEW)

    for path in paths:
        report["paths"][path] = {
            "json_p50_ms": med(path, "json", "p50_ms"), "json_p99_ms": med(path, "json", "p99_ms"),
            "json_cpu_us": med(path, "json", "cpu_us_per_request"),
            "stream_cpu_us": med(path, f"stream{FEW}", "cpu_us_per_request"),
            "cpu_us_per_event": per_event(path, "stream"), "paced_cpu_us_per_event": per_event(path, "paced"),
        }
    report["decode"] = decode_microbench()
    print_report(report)
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {OUTPUT}")
    base = report["paths"]["anthropic"]["paced_cpu_us_per_event"]
    met = all(report["paths"][p]["paced_cpu_us_per_event"] <= base * TARGET_EVENT_RATIO
              for p in ("bedrock", "bedrock-ingress") if p in report["paths"])
    return 0 if met or not args.strict else 1


IR_GAP_MS = 25.0  # under callgrind the gateway is ~50x slower: events this far apart are still one per read


def measure_instructions(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    """Per streamed event, the gateway's instructions (valgrind's callgrind, `Ir`), by path.

    CPU time on a loaded 2-core machine varies by ±50 % between runs; an instruction count does
    not depend on what else runs. The gateway runs under callgrind with instrumentation off until
    each scenario: counters zeroed, instrumentation on, `--ir-requests` paced streams of FEW and of
    MANY deltas (the upstream writes one event every IR_GAP_MS, so each is its own read), then a
    dump read back. Per event = (Ir per request with MANY - with FEW) / (MANY - FEW)."""
    import asyncio
    import re
    import subprocess

    from run import RawConnection

    tollway = tollway_bin()
    up_port, gw_port = free_port(), free_port()
    up_log = (tmp / "upstream.log").open("wb")
    up = procs.start([sys.executable, __file__, "--serve-upstream", str(up_port), "--gap-ms", str(IR_GAP_MS)],
                     up_log, cwd=ROOT)
    wait_for(lambda: port_open(up_port), up, "the upstream", tmp / "upstream.log")
    cfg = config(tmp, f"http://{HOST}:{up_port}", quiet=True)
    key = create_key(tollway, cfg)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_EC2_METADATA_DISABLED": "true"}
    out = tmp / "cg.out"
    gw_log = (tmp / "gateway.log").open("wb")
    gw = procs.start(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                      sys.executable, tollway, "serve", "--config", str(cfg), "--port", str(gw_port)],
                     gw_log, cwd=tmp, env=env)
    deadline = time.monotonic() + 600
    while not http_ok(f"http://{HOST}:{gw_port}/ready"):
        if gw.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"tollway under valgrind did not start:\n{(tmp / 'gateway.log').read_text()[-2000:]}")
        time.sleep(1)

    def control(*flags: str) -> None:
        subprocess.run(["callgrind_control", *flags, str(gw.pid)], check=True, capture_output=True, timeout=120)

    def instructions(request: bytes | None, idle_s: float = 0.0) -> float:
        """Ir per request over --ir-requests requests (one warm-up request first, not counted);
        with REQUEST None, the Ir of IDLE_S seconds without any (timers, background writers)."""
        async def send(n: int) -> None:
            assert request is not None
            conn = RawConnection(gw_port)
            for _ in range(n):
                status = (await conn.send(request))[0]
                if status != 200:
                    raise RuntimeError(f"status {status}")
            conn.close()
        if request is not None:
            asyncio.run(send(1))
        control("--zero")
        control("--instr=on")
        if request is None:
            time.sleep(idle_s)
        else:
            asyncio.run(send(args.ir_requests))
        control("--instr=off")
        before = set(tmp.glob("cg.out*"))
        control("--dump")
        dumped = max(set(tmp.glob("cg.out*")) - before or tmp.glob("cg.out*"), key=lambda p: p.stat().st_mtime)
        totals = re.search(r"^totals: (\d+)", dumped.read_text(errors="replace"), re.M)
        if totals is None:
            raise RuntimeError(f"no totals in {dumped}")
        return int(totals.group(1)) / (args.ir_requests if request is not None else 1)

    # A MANY stream lasts (MANY - FEW) gaps longer than a FEW one; what the idle gateway runs in
    # that time (timers, writers, key-cache polls) is no event's cost and is subtracted.
    idle = instructions(None, (MANY - FEW) * IR_GAP_MS / 1000) / (MANY - FEW)
    report: dict[str, Any] = {"mode": "callgrind Ir", "requests": args.ir_requests, "rounds": args.rounds,
                              "gap_ms": IR_GAP_MS, "idle_ir_per_event_time": idle, "paths": {}}
    print(f"idle gateway: {idle:,.0f} Ir per event's time ({IR_GAP_MS} ms)", flush=True)
    # Background work (writers, key-cache polls) lands in some windows and not others: interleaved
    # rounds, and the median of each path's per-event samples.
    samples: dict[str, list[float]] = {path: [] for path in args.paths}
    for r in range(args.rounds):
        for path in args.paths:
            few = instructions(request_for(gw_port, key, path, True, FEW + 1))
            many = instructions(request_for(gw_port, key, path, True, MANY + 1))
            samples[path].append((many - few) / (MANY - FEW) - idle)
            print(f"round {r + 1} {path:16} Ir/request {few:12,.0f} ({FEW} deltas) {many:12,.0f} ({MANY} deltas)  "
                  f"Ir/event {samples[path][-1]:10,.0f}", flush=True)
    for path, values in samples.items():
        report["paths"][path] = {"ir_per_event": statistics.median(values), "samples": values}
    base = report["paths"]["anthropic"]["ir_per_event"]
    print("\n| path | instructions per streamed event, paced: median (range) | vs plain SSE relay |\n|---|---|---|")
    for path, r in report["paths"].items():
        ratio = "" if path == "anthropic" else f"{r['ir_per_event'] / base - 1:+.1%}"
        low, high = min(r["samples"]), max(r["samples"])
        print(f"| {path} | {r['ir_per_event']:,.0f} ({low:,.0f} to {high:,.0f}) | {ratio} |")
    OUTPUT.parent.mkdir(exist_ok=True)
    target = OUTPUT.with_name("clouds_instructions.json")
    target.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {target}")
    return 0


def decode_microbench(n: int = 20000) -> dict[str, float]:
    """In-process: µs per event to decode Bedrock frames into SSE, against the SSE tap the relay runs."""
    from tests.bedrock_emulator import stream_frames
    from tollway.wire.bedrock_stream import BedrockStreamDecoder
    from tollway.wire.cloud_ingress import SseToEventStream
    from tollway.wire.sse import StreamTap

    evs = events(100)
    frames = stream_frames(evs)
    sse = [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in evs]
    rounds = max(1, n // len(evs))

    def run(feed: Any, chunks: list[bytes], fresh: Any) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                target = fresh()
                for chunk in chunks:
                    feed(target, chunk)
            best = min(best, (time.perf_counter() - started) / (rounds * len(chunks)) * 1e6)
        return best

    tap = run(lambda t, c: t.feed(c), sse, StreamTap)
    decode = run(lambda t, c: t.feed(c), frames, BedrockStreamDecoder)
    encode = run(lambda t, c: t.feed(c), sse, SseToEventStream)
    return {"sse_tap_us_per_event": tap, "bedrock_decode_us_per_event": decode, "bedrock_encode_us_per_event": encode}


def print_report(report: dict[str, Any]) -> None:
    base = report["paths"]["anthropic"]
    print("\n| path | non-streaming p50 | p99 | gateway CPU / request | CPU / event, burst | CPU / event, paced |")
    print("|---|---|---|---|---|---|")
    for path, r in report["paths"].items():
        added = "" if path == "anthropic" else (
            f" ({r['json_p50_ms'] - base['json_p50_ms']:+.3f} ms)")
        cpu = "" if path == "anthropic" else f" ({r['json_cpu_us'] - base['json_cpu_us']:+.0f} µs)"
        cells = []
        for name in ("cpu_us_per_event", "paced_cpu_us_per_event"):
            ratio = "" if path == "anthropic" else f" ({r[name] / base[name] - 1:+.0%})"
            cells.append(f"{r[name]:.1f} µs{ratio}")
        print(f"| {path} | {r['json_p50_ms']:.3f} ms{added} | {r['json_p99_ms']:.3f} ms | "
              f"{r['json_cpu_us']:.0f} µs{cpu} | {cells[0]} | {cells[1]} |")
    d = report["decode"]
    print(f"\nin-process, per event: SSE tap {d['sse_tap_us_per_event']:.2f} µs, Bedrock event-stream decode to "
          f"SSE {d['bedrock_decode_us_per_event']:.2f} µs, SSE encode to event-stream (ingress) "
          f"{d['bedrock_encode_us_per_event']:.2f} µs")
    for path in ("bedrock", "bedrock-ingress"):
        if path in report["paths"]:
            b = report["paths"][path]["paced_cpu_us_per_event"] / base["paced_cpu_us_per_event"]
            print(f"target: {path} CPU per streamed event (paced) at most {TARGET_EVENT_RATIO:.0%} of the plain "
                  f"relay's -> {b:.0%} ({'met' if b <= TARGET_EVENT_RATIO else 'MISSED'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 s per measurement, 1 round")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the per-event target is missed")
    parser.add_argument("--gap-ms", type=float, default=1.0, help=argparse.SUPPRESS)  # the upstream's pace
    parser.add_argument("--instructions", action="store_true",
                        help="count the gateway's CPU instructions per streamed event under valgrind's callgrind "
                        "(paced streams), which the machine's load does not change")
    parser.add_argument("--ir-requests", type=int, default=3, help="--instructions: requests per scenario")
    parser.add_argument("--paths", type=lambda v: tuple(v.split(",")), default=PATHS,
                        help=f"comma-separated, anthropic first (default: all of {','.join(PATHS)})")
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.gap_ms)
        return 0
    if args.quick:
        args.duration, args.rounds, args.warmup = 1.0, 1, 0.3
    if args.paths[0] != "anthropic" or not set(args.paths) <= set(PATHS):
        parser.error(f"--paths: anthropic first, then any of {', '.join(PATHS[1:])}")
    return run_with_processes(measure_instructions if args.instructions else measure, args, "tollway-clouds-bench-")


if __name__ == "__main__":
    sys.exit(main())
