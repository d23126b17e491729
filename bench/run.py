"""Tollway's overhead benchmark: the same load sent to an upstream directly and through Tollway.

    .venv/bin/python bench/run.py [--duration 8] [--quick]

One run starts `bench/upstream.py` (a fast Anthropic-compatible emulator) and `tollway serve`
(one worker) as separate processes on loopback, then measures each scenario twice, once against
the upstream and once through the gateway, so the difference is what Tollway adds:

* non-streaming, concurrency 1: a precise Python loop on one keep-alive connection;
* non-streaming, concurrency 64: `wrk` (a C load generator, cheap on a 2-core machine), or the
  Python generator when wrk is not installed;
* streaming, concurrency 1 and 64: time to the first body byte, measured in Python.

It prints a Markdown table, checks the gateway's targets, writes the same as JSON to
bench/results/latest.json and stops every process it started, also on Ctrl-C or an error.
See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import gc
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import uvloop
import yaml

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
HOST = "127.0.0.1"
MODEL = "bench-model"
UPSTREAM_KEY = "sk-ant-bench-upstream"  # the emulator accepts any key; a literal keeps the config simple
ANTHROPIC_VERSION = "2023-06-01"
# About 200 characters, the size of a typical short chat turn.
PROMPT = (
    "Summarise in two sentences why a gateway in front of a language model API should add as little "
    "latency as possible, and name one thing it can do to keep its per-request overhead small."
)
WRK_INSTALL_HINT = "apt-get install -y wrk  (Debian/Ubuntu; brew install wrk on macOS)"
HIGH_CONCURRENCY = 64
BUSY_LOAD = 0.5  # a 1-minute load average above this before the run means someone else is using the CPUs


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in each child before exec: if this script is killed outright (SIGKILL, OOM), the
    kernel sends the child SIGTERM, so no upstream or gateway is left behind holding a port."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every child this run starts, so each is stopped by its own PID however the run ends."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], stdout: IO[bytes] | int, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one child; `env`, when given, replaces the inherited environment."""
        # A session of its own keeps a terminal's Ctrl-C away from the children: this script gets
        # it alone and stops them in order, instead of every process dying mid-write at once.
        proc = subprocess.Popen(
            list(argv), stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
            env=env, start_new_session=True, preexec_fn=_die_with_parent,
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after 5 s; by PID, so nothing else on the machine is touched."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """A `kill` of this script unwinds like Ctrl-C, so the `finally` that stops children runs."""
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far, from /proc (0.0 where there is no /proc).

    Dividing the gateway's CPU by its requests gives its cost per request, a number that, unlike
    latency, does not depend on how the two cores happened to be shared during the run."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client
# --------------------------------------------------------------------------------------------


def build_request(port: int, api_key: str, body: bytes) -> bytes:
    """The exact bytes of one POST /v1/messages, built once and written as is for every request."""
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {HOST}:{port}\r\ncontent-type: application/json\r\n"
        f"x-api-key: {api_key}\r\nanthropic-version: {ANTHROPIC_VERSION}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


class ResponseError(RuntimeError):
    """The server closed the connection or sent something this client cannot frame."""


class RawConnection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for this benchmark.

    Raw asyncio streams rather than an HTTP client library: a library costs 100 µs or more per
    request in Python, more than the overhead being measured, and its jitter would land in p99.
    Here a request is one write of pre-built bytes and a response is a few buffered reads.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, self.port)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def send(self, request: bytes, keep_body: bool = False,
                   on_first: Callable[[], None] | None = None) -> tuple[int, int, int, bytes]:
        """(status, ns to the first body byte, ns to the last byte, body if asked) for one request.

        For a chunked (streaming) answer the first body byte is the first chunk's size line, which
        a server writes together with the chunk, so that moment is when the first event arrived.
        `on_first` is called at that moment (bench/compare.py counts streams that are open)."""
        if self._writer is None:
            await self.open()
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        start = time.perf_counter_ns()
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, chunked, close = _framing(head)
            parts: list[bytes] = []
            if chunked:
                line = await reader.readuntil(b"\r\n")
                first = time.perf_counter_ns()
                if on_first is not None:
                    on_first()
                while True:
                    size = int(line.split(b";", 1)[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")  # the blank line that ends the (empty) trailers
                        break
                    chunk = await reader.readexactly(size + 2)
                    if keep_body:
                        parts.append(chunk[:-2])
                    line = await reader.readuntil(b"\r\n")
            else:
                first = time.perf_counter_ns()
                if on_first is not None:
                    on_first()
                if length:
                    parts.append(await reader.readexactly(length))
            end = time.perf_counter_ns()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError) as exc:
            self.close()
            raise ResponseError(f"{type(exc).__name__}: {exc}") from None
        if close:
            self.close()
        return status, first - start, end - start, b"".join(parts)


def _framing(head: bytes) -> tuple[int, bool, bool]:
    """(content-length, chunked?, connection: close?) from a response head."""
    length, chunked, close = 0, False, False
    for line in head.lower().split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = b"close" in value
    return length, chunked, close


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One side (direct or via Tollway) of one scenario. Latencies in milliseconds."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    tool: str
    cpu_us_per_request: float | None = None  # the gateway's own CPU; None for the direct side


def percentile(sorted_ns: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in milliseconds."""
    if not sorted_ns:
        return math.nan
    rank = max(0, math.ceil(pct / 100 * len(sorted_ns)) - 1)
    return sorted_ns[rank] / 1e6


class CpuMeter:
    """The gateway's CPU over the measured window only, so warm-up requests do not count."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._start = 0.0

    def start(self) -> None:
        if self.pid:
            self._start = cpu_seconds(self.pid)

    def per_request_us(self, requests: int) -> float | None:
        if not self.pid or not requests:
            return None
        return (cpu_seconds(self.pid) - self._start) * 1e6 / requests


async def _python_load(port: int, request: bytes, concurrency: int, seconds: float, warmup: float,
                       ttfb: bool, meter: CpuMeter, timeout: float | None = None) -> Result:
    """`concurrency` connections, each sending `request` back to back for `seconds`.

    The garbage collector is off while measuring: its pauses would be the load generator's, not
    the server's, and would show up in p99. With `timeout` (seconds), a request that takes longer
    counts as an error and its connection is replaced, so a stuck server cannot stall the run
    (bench/compare.py, which measures gateways it does not control, sets it)."""
    conns = [RawConnection(port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    samples: list[int] = []
    errors = 0

    async def worker(conn: RawConnection, until: float, record: bool) -> None:
        nonlocal errors
        while time.perf_counter() < until:
            try:
                if timeout is None:
                    status, first_ns, total_ns, _ = await conn.send(request)
                else:
                    async with asyncio.timeout(timeout):
                        status, first_ns, total_ns, _ = await conn.send(request)
            except (ResponseError, TimeoutError):
                conn.close()  # after a timeout the response is half read: the next send reconnects
                if record:
                    errors += 1
                continue
            if record:
                if status == 200:
                    samples.append(first_ns if ttfb else total_ns)
                else:
                    errors += 1

    try:
        if warmup > 0:
            until = time.perf_counter() + warmup
            await asyncio.gather(*(worker(c, until, False) for c in conns))
        gc.collect()
        gc.disable()
        meter.start()
        began = time.perf_counter()
        await asyncio.gather(*(worker(c, began + seconds, True) for c in conns))
        elapsed = time.perf_counter() - began
    finally:
        gc.enable()
        for c in conns:
            c.close()
    cpu = meter.per_request_us(len(samples))
    samples.sort()
    return Result(len(samples), errors, elapsed, len(samples) / elapsed, percentile(samples, 50),
                  percentile(samples, 99), "python", cpu)


def python_load(port: int, request: bytes, concurrency: int, seconds: float, warmup: float,
                ttfb: bool, meter: CpuMeter, timeout: float | None = None) -> Result:
    return uvloop.run(_python_load(port, request, concurrency, seconds, warmup, ttfb, meter, timeout))


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _wrk_ms(value: str, unit: str) -> float:
    return float(value) * _WRK_UNITS[unit]


def parse_wrk(output: str) -> Result:
    """Requests, errors and the 50th/99th percentiles from `wrk --latency` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    dist = {pct: _wrk_ms(value, unit) for pct, value, unit
            in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)}
    if not done or "50" not in dist or "99" not in dist:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    seconds = _wrk_ms(done.group(2), done.group(3)) / 1000
    non2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non2xx = int(non2xx_match.group(1)) if non2xx_match else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    ok = int(done.group(1)) - non2xx  # throughput counts only the answers a client could use
    errors = non2xx + (sum(map(int, sock.groups())) if sock else 0)
    return Result(ok, errors, seconds, ok / seconds, dist["50"], dist["99"], "wrk")


def wrk_script(path: Path, api_key: str, body: bytes) -> Path:
    """A Lua script that makes every wrk request the same POST the Python loops send."""
    text = "\n".join([
        'wrk.method = "POST"',
        f"wrk.body = [==[{body.decode()}]==]",
        'wrk.headers["content-type"] = "application/json"',
        f'wrk.headers["x-api-key"] = "{api_key}"',
        f'wrk.headers["anthropic-version"] = "{ANTHROPIC_VERSION}"',
        "",
    ])
    path.write_text(text)
    return path


def wrk_load(procs: Processes, wrk: str, port: int, script: Path, concurrency: int, seconds: float,
             warmup: float, meter: CpuMeter) -> Result:
    """One wrk thread: at 64 connections it outruns the gateway and leaves it the most CPU."""
    url = f"http://{HOST}:{port}/v1/messages"

    def run(duration: float) -> str:
        argv = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
                "--latency", "-s", str(script), url]
        proc = procs.start(argv, subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=duration + 30)
        finally:
            procs.stop(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out.decode(errors='replace')}")
        return out.decode()

    if warmup > 0:
        run(warmup)
    meter.start()
    result = parse_wrk(run(seconds))
    result.cpu_us_per_request = meter.per_request_us(result.requests)
    return result


# --------------------------------------------------------------------------------------------
# Scenarios, table and targets
# --------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    stream: bool
    concurrency: int
    metric: str  # what p50/p99 measure
    direct: Result | None = None
    tollway: Result | None = None

    @property
    def added_p50_ms(self) -> float:
        assert self.direct and self.tollway
        return self.tollway.p50_ms - self.direct.p50_ms

    @property
    def added_p99_ms(self) -> float:
        assert self.direct and self.tollway
        return self.tollway.p99_ms - self.direct.p99_ms


@dataclass
class Target:
    description: str
    limit: float
    unit: str
    at_most: bool  # True: value must be <= limit; False: >= limit
    value: float = math.nan
    met: bool = False
    note: str = ""

    def check(self, value: float, errors: int = 0) -> None:
        """A run with failed requests misses the target whatever the number: fast errors are no win."""
        self.value = value
        self.met = (value <= self.limit if self.at_most else value >= self.limit) and errors == 0
        self.note = f"{errors} failed requests" if errors else ""


def _ms(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "-") + _ms(abs(value))


def markdown(scenarios: list[Scenario], targets: list[Target]) -> str:
    rows = [
        "| scenario | tool | req/s direct | req/s Tollway | p50 direct | p50 Tollway | added p50 "
        "| p99 direct | p99 Tollway | added p99 | Tollway CPU/req |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in scenarios:
        if not (s.direct and s.tollway):
            continue
        cpu = s.tollway.cpu_us_per_request
        rows.append(
            f"| {s.name} | {s.direct.tool} | {s.direct.rps:,.0f} | {s.tollway.rps:,.0f} "
            f"| {_ms(s.direct.p50_ms)} | {_ms(s.tollway.p50_ms)} | **{_signed(s.added_p50_ms)}** "
            f"| {_ms(s.direct.p99_ms)} | {_ms(s.tollway.p99_ms)} | **{_signed(s.added_p99_ms)}** "
            f"| {'' if cpu is None else f'{cpu:.0f} µs'} |"
        )
    rows += ["", "Latencies in ms: non-streaming rows time the whole response, streaming rows the first "
             "body byte (the first SSE event). Added = Tollway minus direct. Tollway CPU/req = the gateway "
             "process's user+system CPU per request.",
             "", "| target | limit | measured | |", "|---|--:|--:|---|"]
    for t in targets:
        sign = "≤" if t.at_most else "≥"
        value = f"{t.value:,.0f}" if t.unit == "req/s" else _ms(t.value)
        rows.append(f"| {t.description} | {sign} {t.limit:,g} {t.unit} | {value} {t.unit} "
                    f"| {'met' if t.met else '**missed**'}{f' ({t.note})' if t.note else ''} |")
    return "\n".join(rows)


def evaluate(scenarios: dict[str, Scenario]) -> list[Target]:
    """The gateway's targets for one worker on a 2-core machine shared with load and upstream."""
    targets = []
    c1, c64, s1 = scenarios.get("json-1"), scenarios.get("json-64"), scenarios.get("stream-1")
    if c1 and c1.direct and c1.tollway:
        t = Target("added p50, non-streaming, c=1", 0.6, "ms", True)
        t.check(c1.added_p50_ms, c1.tollway.errors)
        u = Target("added p99, non-streaming, c=1", 1.5, "ms", True)
        u.check(c1.added_p99_ms, c1.tollway.errors)
        targets += [t, u]
    if c64 and c64.tollway:
        t = Target(f"throughput via Tollway, non-streaming, c={HIGH_CONCURRENCY}", 3000, "req/s", False)
        t.check(c64.tollway.rps, c64.tollway.errors)
        targets.append(t)
    if s1 and s1.direct and s1.tollway:
        t = Target("added TTFB p50, streaming, c=1", 1.0, "ms", True)
        t.check(s1.added_p50_ms, s1.tollway.errors)
        targets.append(t)
    return targets


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path,
             timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n{tail(log)}")
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready after {timeout:.0f} s:\n{tail(log)}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def tollway_bin() -> str:
    near = Path(sys.executable).parent / "tollway"
    found = str(near) if near.exists() else shutil.which("tollway")
    if not found:
        raise RuntimeError("the `tollway` command is not installed; run this with the project's venv python")
    return found


def write_config(tmp: Path, upstream_port: int) -> Path:
    config = {
        "store": {"url": f"sqlite:///{tmp}/tollway.db"},
        "models": [{
            "id": MODEL,
            "upstream": {"provider": "anthropic", "base_url": f"http://{HOST}:{upstream_port}",
                         "api_key": UPSTREAM_KEY},
        }],
    }
    path = tmp / "tollway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def create_key(tollway: str, config: Path) -> str:
    proc = subprocess.run([tollway, "keys", "create", "--name", "bench", "--json", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"tollway keys create failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return str(json.loads(proc.stdout)["key"])


def start_upstream(procs: Processes, tmp: Path) -> int:
    """Start bench/upstream.py on a free port (its log in TMP) and return the port once it listens."""
    port = free_port()
    with (tmp / "upstream.log").open("wb") as log:
        proc = procs.start([sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port)], log)
    wait_for(lambda: port_open(port), proc, "bench/upstream.py", tmp / "upstream.log")
    return port


def start_tollway(procs: Processes, tmp: Path, config: Path,
                  prefix: Sequence[str] | None = None) -> tuple[int, subprocess.Popen[bytes]]:
    """Start `tollway serve` on CONFIG (PREFIX: another way to run the command, e.g. under cProfile) on a
    free port, its log in TMP; return the port and the process once /ready answers."""
    port = free_port()
    with (tmp / "tollway.log").open("wb") as log:
        proc = procs.start([*(prefix or [tollway_bin()]), "serve", "--config", str(config), "--port", str(port)],
                           log, cwd=tmp)
    wait_for(lambda: http_ok(f"http://{HOST}:{port}/ready"), proc, "tollway serve", tmp / "tollway.log")
    return port, proc


def without_dlp(config: Path) -> None:
    """Switch DLP off in the config file written by `write_config`."""
    settings = yaml.safe_load(config.read_text())
    settings["dlp"] = {"enabled": False}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))


def sanity_check(port: int, key: str) -> None:
    """One request of each kind through the gateway, so a misconfiguration fails loudly here
    instead of being measured as a very fast stream of 401s."""

    async def check() -> None:
        conn = RawConnection(port)
        try:
            for stream in (False, True):
                status, _, _, body = await conn.send(build_request(port, key, request_body(stream)), keep_body=True)
                expected = b"event: message_stop" if stream else b'"type":"message"'
                if status != 200 or expected not in body:
                    raise RuntimeError(f"Tollway answered {status} to the benchmark request:\n{body[:500]!r}")
        finally:
            conn.close()

    uvloop.run(check())


@dataclass
class Plan:
    seconds: float
    warmup: float
    wrk: str | None


def measure(plan: Plan, procs: Processes, tmp: Path, scenario: Scenario, port: int, key: str,
            gateway_pid: int | None) -> Result:
    """One side of one scenario: wrk for non-streaming at high concurrency, Python otherwise."""
    body = request_body(scenario.stream)
    meter = CpuMeter(gateway_pid)
    if plan.wrk and not scenario.stream and scenario.concurrency > 1:
        script = wrk_script(tmp / f"post-{port}.lua", key, body)
        return wrk_load(procs, plan.wrk, port, script, scenario.concurrency, plan.seconds, plan.warmup, meter)
    return python_load(port, build_request(port, key, body), scenario.concurrency, plan.seconds,
                       plan.warmup, scenario.stream, meter)


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    seconds = 2.0 if args.quick else args.duration
    warmup = 0.5 if args.quick else 1.0
    wrk = None if args.no_wrk else shutil.which("wrk")
    if wrk is None:
        why = "disabled by --no-wrk" if args.no_wrk else f"not installed; install it with: {WRK_INSTALL_HINT}"
        print(f"note: wrk {why}. Using the Python load generator for c={HIGH_CONCURRENCY}, which costs more "
              "CPU on this machine, so its req/s are a lower bound.", file=sys.stderr)
    plan = Plan(seconds, warmup, wrk)
    tollway = tollway_bin()
    load_before = os.getloadavg()[0]
    if load_before > BUSY_LOAD:
        print(f"warning: the 1-minute load average is {load_before:.2f} before starting: other processes are "
              "using the CPUs, so latencies and req/s will be noisy (and worse than on an idle machine).",
              file=sys.stderr)

    upstream_port = free_port()
    upstream_log = tmp / "upstream.log"
    with upstream_log.open("wb") as log:
        upstream = procs.start([sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(upstream_port),
                                "--delay-ms", str(args.upstream_delay_ms)], log)
    wait_for(lambda: port_open(upstream_port), upstream, "bench/upstream.py", upstream_log)

    config = write_config(tmp, upstream_port)
    key = create_key(tollway, config)
    gateway_port = free_port()
    gateway_log = tmp / "tollway.log"
    with gateway_log.open("wb") as log:
        gateway = procs.start([tollway, "serve", "--config", str(config), "--port", str(gateway_port)], log,
                              cwd=tmp)
    wait_for(lambda: http_ok(f"http://{HOST}:{gateway_port}/ready"), gateway, "tollway serve", gateway_log)
    sanity_check(gateway_port, key)
    print(f"upstream pid {upstream.pid} on :{upstream_port}, tollway pid {gateway.pid} on :{gateway_port}; "
          f"{seconds:g} s per measurement after {warmup:g} s warm-up", file=sys.stderr)

    scenarios = {
        "json-1": Scenario("non-streaming, c=1", False, 1, "time to the last byte of the response"),
        "json-64": Scenario(f"non-streaming, c={HIGH_CONCURRENCY}", False, HIGH_CONCURRENCY,
                            "time to the last byte of the response"),
        "stream-1": Scenario("streaming TTFB, c=1", True, 1, "time to the first body byte (first SSE event)"),
        "stream-64": Scenario(f"streaming TTFB, c={HIGH_CONCURRENCY}", True, HIGH_CONCURRENCY,
                              "time to the first body byte (first SSE event)"),
    }
    for scenario in scenarios.values():
        for side, port, pid in (("direct", upstream_port, None), ("tollway", gateway_port, gateway.pid)):
            r = measure(plan, procs, tmp, scenario, port, key, pid)
            setattr(scenario, side, r)
            errors = f", {r.errors} errors" if r.errors else ""
            print(f"  {scenario.name:<24} {side:<8} {r.rps:>9,.0f} req/s  p50 {_ms(r.p50_ms):>7} ms  "
                  f"p99 {_ms(r.p99_ms):>7} ms  ({r.tool}{errors})", file=sys.stderr)
        if gateway.poll() is not None:
            raise RuntimeError(f"tollway exited during the run:\n{tail(gateway_log)}")

    targets = evaluate(scenarios)
    ordered = list(scenarios.values())
    table = markdown(ordered, targets)
    print()
    print(table)
    print()
    missed = [t for t in targets if not t.met]
    print("All targets met." if not missed else f"{len(missed)} of {len(targets)} targets missed.")

    write_report(args.output, load_before, {
        "settings": {"seconds_per_measurement": seconds, "warmup_seconds": warmup, "quick": args.quick,
                     "wrk": wrk, "upstream_delay_ms": args.upstream_delay_ms, "concurrency_high": HIGH_CONCURRENCY},
        "scenarios": [{**asdict(s), "added_p50_ms": s.added_p50_ms,
                       "added_p99_ms": s.added_p99_ms} for s in ordered],
        "targets": [asdict(t) for t in targets],
        "markdown": table,
    })
    return 0 if not missed or not args.strict else 1


def write_report(path: Path, load_before: float, results: dict[str, Any],
                 machine: dict[str, Any] | None = None) -> None:
    """The JSON a benchmark leaves behind: when, on what machine, under what load, then RESULTS."""
    report = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    **(machine or {})},
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        **results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (default 8)")
    parser.add_argument("--quick", action="store_true", help="2 s per measurement, for a smoke run")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0, help="upstream pause before each answer")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def run_with_processes(run_fn: Callable[[argparse.Namespace, Processes, Path], int], args: argparse.Namespace,
                       prefix: str) -> int:
    """Run a benchmark with a scratch directory and a process list, stopping every child it started
    (by PID) however it ends: normally, on an error, on Ctrl-C or on `kill`. Shared by the bench
    scripts."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    # A shell that starts this in the background ignores SIGINT for it; take it back, so that
    # `kill -INT` stops a run as cleanly as Ctrl-C does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run_fn(args, procs, tmp)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the processes this run started", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    return run_with_processes(run, parse_args(), "tollway-bench-")


if __name__ == "__main__":
    sys.exit(main())
