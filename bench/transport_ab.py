"""aiohttp or pyreqwest as Tollway's upstream transport? Measured on Tollway itself (issue 15 item 7).

Issue 15 measured a floor proxy (parse, forward, answer) using about a quarter less CPU per
request with `pyreqwest` (Rust's reqwest) as its upstream client than with aiohttp. This checks
whether Tollway gains the same. `ReqwestAnthropicUpstream` below is a prototype of
upstream/anthropic.py on pyreqwest: pooled keep-alive client, connect and read timeouts, the
first-byte limit, no redirects (a 3xx is a 502), transport errors mapped to 502/504, bounded
non-streaming reads and chunked streaming reads. `serve-pyreqwest` runs `tollway serve` with it in
place of `AnthropicUpstream` (the only change; the evaluation is not wired into Tollway).

The measurement starts the bench upstream and, in turn, a gateway on each transport (default
governance, one worker), and alternates rounds A B A B: each round is a short warm-up then
``--seconds`` of small non-streaming requests at concurrency ``--concurrency`` (bench/run.py's
Python load generator; wrk when installed), then streaming at c=1. Reported per round: req/s,
p50, and the gateway's CPU per request (/proc, user + system); then the idle RSS of each gateway.

    .venv/bin/pip install pyreqwest==0.15.1      # not a dependency of Tollway
    .venv/bin/python bench/transport_ab.py --rounds 2 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

from tollway.upstream.anthropic import AnthropicUpstream
from tollway.upstream.base import UpstreamFailure, UpstreamReply, UpstreamRequest
from tollway.upstream.http import RELAYED_HEADERS, EventBound

try:
    from pyreqwest.client import Client, ClientBuilder
    from pyreqwest.exceptions import RequestTimeoutError, TransportError
except ImportError:  # only the evaluation needs it
    Client = ClientBuilder = None  # type: ignore[assignment,misc]


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


class ReqwestAnthropicUpstream(AnthropicUpstream):
    """upstream/anthropic.py with pyreqwest in place of aiohttp (module doc)."""

    _client: Any = None

    async def start(self) -> None:
        cfg = self.cfg
        builder = (ClientBuilder().max_connections(cfg.max_connections).connect_timeout(_seconds(cfg.connect_timeout))
                   .read_timeout(_seconds(cfg.read_timeout)).follow_redirects(False).error_for_status(False)
                   .default_cookie_store(False).gzip(True).http1_only())
        self._client = builder.build()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _post(self, path: str, req: UpstreamRequest) -> UpstreamReply:
        client = self._client
        assert client is not None, "upstream used before start()"
        url = self.base_url + path + ("?" + req.query if req.query else "")
        data = req.raw if req.raw is not None else __import__("orjson").dumps(req.body)
        request = client.post(url).headers(self._headers(req)).body_bytes(data).build_streamed()
        try:
            async with asyncio.timeout(self.cfg.first_byte_timeout):
                resp = await request.__aenter__()
        except TimeoutError:
            raise UpstreamFailure(504, "timeout_error", "the upstream did not answer in time") from None
        except TransportError as exc:
            raise UpstreamFailure(502, "api_error", f"the upstream could not be reached ({type(exc).__name__})") \
                from None
        finished = False

        def close() -> None:
            nonlocal finished
            if not finished:
                finished = True
                asyncio.get_running_loop().create_task(request.__aexit__(None, None, None))

        if 300 <= resp.status < 400:
            close()
            raise UpstreamFailure(502, "api_error", f"the upstream answered with a redirect ({resp.status}); "
                                                    "Tollway does not follow redirects from upstreams")
        headers = {h: v for h in RELAYED_HEADERS if (v := resp.get_header(h)) is not None}
        upstream_id = resp.get_header("request-id")
        content_type = resp.get_header("content-type") or "application/json"
        reader = resp.body_reader
        if req.stream and resp.status == 200 and content_type.startswith("text/event-stream"):
            bound = EventBound(self.cfg.max_event_bytes)

            async def read() -> bytes:
                try:
                    chunk = await reader.read_chunk()
                except RequestTimeoutError:
                    raise UpstreamFailure(504, "timeout_error", "the upstream stream stalled") from None
                except TransportError:
                    raise UpstreamFailure(502, "api_error", "the upstream stream broke off") from None
                return b"" if chunk is None else bound.check(bytes(chunk))

            return UpstreamReply(resp.status, content_type, headers=headers, read=read, close=close, streaming=True,
                                 request_id=upstream_id)
        limit = self.cfg.max_response_bytes
        body = bytearray()
        try:
            while (chunk := await reader.read_chunk()) is not None:
                body += chunk
                if len(body) > limit:
                    raise UpstreamFailure(502, "api_error", f"the upstream's answer is larger than {limit} bytes")
        except RequestTimeoutError:
            raise UpstreamFailure(504, "timeout_error", "the upstream did not finish in time") from None
        except TransportError:
            raise UpstreamFailure(502, "api_error", "the upstream broke off its answer") from None
        finally:
            close()
        return UpstreamReply(resp.status, content_type, body=bytes(body), headers=headers, request_id=upstream_id)


def serve_pyreqwest(argv: list[str]) -> None:
    """`tollway serve ARGV` with the pyreqwest transport for Anthropic upstreams."""
    import tollway.upstream.router as router
    from tollway.cli import app

    router.AnthropicUpstream = ReqwestAnthropicUpstream  # type: ignore[misc]
    sys.argv = ["tollway", "serve", *argv]
    app()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_gateway(label: str, procs: run.Processes, tmp: Path, upstream_port: int, key: str, config: Path,
                    seconds: float, concurrency: int) -> dict[str, Any]:
    port = run.free_port()
    argv = ["serve", "--config", str(config), "--port", str(port)]
    cmd = [run.tollway_bin(), *argv] if label == "aiohttp" else \
        [sys.executable, str(Path(__file__).resolve()), "serve-pyreqwest", *argv[1:]]
    with (tmp / f"{label}.log").open("wb") as log:
        gateway = procs.start(cmd, log, cwd=tmp)
    try:
        run.wait_for(lambda: run.http_ok(f"http://{run.HOST}:{port}/ready"), gateway, label, tmp / f"{label}.log")
        run.sanity_check(port, key)
        idle = rss_mb(gateway.pid)
        wrk = shutil.which("wrk")
        body = run.request_body(False)
        meter = run.CpuMeter(gateway.pid)
        if wrk:
            script = run.wrk_script(tmp / f"post-{port}.lua", key, body)
            small = run.wrk_load(procs, wrk, port, script, concurrency, seconds, 1.0, meter)
        else:
            small = run.python_load(port, run.build_request(port, key, body), concurrency, seconds, 1.0, False, meter)
        meter = run.CpuMeter(gateway.pid)
        stream = run.python_load(port, run.build_request(port, key, run.request_body(True)), 1, seconds / 2, 0.5,
                                 True, meter)
        return {"transport": label, "idle_rss_mb": round(idle, 1), "rps": round(small.rps),
                "p50_ms": round(small.p50_ms, 3), "cpu_us_per_request": round(small.cpu_us_per_request or 0.0, 1),
                "errors": small.errors, "stream_ttfb_p50_ms": round(stream.p50_ms, 3),
                "stream_cpu_us_per_request": round(stream.cpu_us_per_request or 0.0, 1), "tool": small.tool}
    finally:
        procs.stop(gateway)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-pyreqwest":
        serve_pyreqwest(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if ClientBuilder is None:
        print("pyreqwest is not installed: .venv/bin/pip install pyreqwest==0.15.1", file=sys.stderr)
        return 2
    procs = run.Processes()
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tollway-transport-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            upstream_port = run.start_upstream(procs, tmp)
            config = run.write_config(tmp, upstream_port)
            key = run.create_key(run.tollway_bin(), config)
            for r in range(args.rounds):
                for label in ("aiohttp", "pyreqwest"):
                    result = measure_gateway(label, procs, tmp, upstream_port, key, config, args.seconds,
                                             args.concurrency)
                    result["round"] = r + 1
                    results.append(result)
                    print(json.dumps(result), file=sys.stderr)
        finally:
            procs.stop_all()
    summary: dict[str, Any] = {"load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
                               "concurrency": args.concurrency, "seconds": args.seconds, "rounds": results}
    for label in ("aiohttp", "pyreqwest"):
        mine = [r for r in results if r["transport"] == label]
        summary[label] = {k: round(statistics.median(r[k] for r in mine), 3)
                          for k in ("rps", "p50_ms", "cpu_us_per_request", "stream_ttfb_p50_ms",
                                    "stream_cpu_us_per_request", "idle_rss_mb")}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"| transport | req/s c={args.concurrency} | p50 ms | CPU/req µs | stream TTFB p50 ms | "
              "stream CPU/req µs | idle RSS MB |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        for label in ("aiohttp", "pyreqwest"):
            s = summary[label]
            print(f"| {label} | {s['rps']:,.0f} | {s['p50_ms']} | {s['cpu_us_per_request']} | "
                  f"{s['stream_ttfb_p50_ms']} | {s['stream_cpu_us_per_request']} | {s['idle_rss_mb']} |")
        print(f"(medians of {args.rounds} alternating rounds; load average {load_before:.2f} before, "
              f"{summary['load_average_1m']['after']:.2f} after, on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
