"""Instructions per request of the gateway, counted by valgrind's callgrind.

Wall-clock and CPU-time figures on a shared 2-core VM move by 2x between sessions (the same
emulator answered 27k req/s in one and 12k in another). An instruction count does not: it is
the same on a busy or an idle machine, so it is what before/after comparisons of Tollway's own
code use. It counts user-space instructions of every thread of the gateway process (the SQLite
worker thread included), not the kernel's work for sockets.

    .venv/bin/python bench/instructions.py                 # floors, off, default, on: 500 requests each
    .venv/bin/python bench/instructions.py --config on --config on-no-dlp -n 1000
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/instructions.py   # another version

The gateway starts under callgrind with instrumentation off (start-up is not counted), gets 200
warm-up requests, then instrumentation is switched on for exactly N requests (on 4 keep-alive
connections, non-streaming, the run.py request) and off again. Needs `valgrind`
(`apt-get install -y valgrind`); each configuration takes about a minute.

One thing does follow the load: how many records each write-behind flush carries. Under callgrind
the gateway serves a few dozen requests a second, so the 0.2 s flush interval sends batches of a
few records, whose size depends on how fast the machine is at the moment; the per-flush work
(transaction, rollups) then counts several times over per request, and two runs of the same
code differed by 15%. `--flush-interval 5` makes every batch 64 records (what a gateway under
real load sends, since 64 waiting records start a flush at once) and the count repeatable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import uvloop
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers.targets import GOVERNANCE_OFF, HIGH_LIMITS, PRICING
from run import (
    HOST,
    MODEL,
    UPSTREAM_KEY,
    Processes,
    RawConnection,
    build_request,
    create_key,
    free_port,
    http_ok,
    port_open,
    request_body,
    run_with_processes,
    tollway_bin,
    wait_for,
)

BENCH_DIR = Path(__file__).resolve().parent
CONNECTIONS = 4
WARMUP = 200
# `store.flush_interval` for the Tollway configurations (--flush-interval), None = the default.
FLUSH_INTERVAL: float | None = None


# What each configuration is; the ones below the first three switch one part off, so that the
# parts' costs are differences: DLP = on - on-no-dlp, limits = on - default, audit = on -
# on-no-audit, metering = default - default-no-metering (a budget needs metering, so that pair
# has no limits).
CONFIGS = {
    "floor-static": "bare Starlette on uvicorn answering a fixed body (bench/floor_app.py)",
    "floor-proxy": "the same + one aiohttp call upstream, as Tollway makes it",
    "off": "Tollway: auth and access only (DLP, metering, audit off, no limits)",
    "default": "Tollway's embedded defaults: + DLP, metering, audit",
    "on": "default + limits and a budget (memory backend, never reached)",
    "on-no-dlp": "on, DLP off",
    "on-no-audit": "on, audit off",
    "default-no-metering": "default, metering off",
    "default-no-dlp": "default, DLP off",
    "default-pyreqwest": "default, with pyreqwest as the upstream client (bench/transport_ab.py)",
}
DEFAULT_CONFIGS = ["floor-static", "floor-proxy", "off", "default", "on"]


def config_for(variant: str, tmp: Path, upstream_port: int) -> dict[str, Any]:
    """Tollway's config for a configuration named in CONFIGS."""
    config: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp}/tollway-{variant}.db", "spill_dir": str(tmp / f"spill-{variant}")},
        "models": [{"id": MODEL, "pricing": PRICING,
                    "upstream": {"provider": "anthropic", "base_url": f"http://{HOST}:{upstream_port}",
                                 "api_key": UPSTREAM_KEY}}],
    }
    if variant == "off":
        config.update(GOVERNANCE_OFF)
    if variant.startswith("on"):
        config["limits"] = {"backend": "memory", "defaults": {"key": HIGH_LIMITS}}
    for part in ("dlp", "audit", "metering"):
        if variant.endswith(f"-no-{part}"):
            config[part] = GOVERNANCE_OFF[part]
    if FLUSH_INTERVAL is not None:
        config["store"]["flush_interval"] = FLUSH_INTERVAL
    return config


def body_of(kb: int | None) -> bytes:
    """The run.py request, or with KB a Claude Code turn of about that size (bench/session_cpu.py:
    system prompt, 20 tools, a tool_use/tool_result history, `metadata.user_id`)."""
    if kb is None:
        return request_body(False)
    from session_cpu import session_turns

    return min(session_turns(1000, metadata=True, first_kb=min(kb, 50), last_kb=kb + 10),
               key=lambda body: abs(len(body) - kb * 1024))


async def _send(port: int, key: str, n: int, body: bytes) -> None:
    request = build_request(port, key, body)

    async def one_connection(count: int) -> None:
        conn = RawConnection(port)
        try:
            for _ in range(count):
                status, _, _, _ = await conn.send(request)
                if status != 200:
                    raise RuntimeError(f"the gateway answered {status}")
        finally:
            conn.close()

    await asyncio.gather(*(one_connection(n // CONNECTIONS) for _ in range(CONNECTIONS)))


def _instrument(pid: int, on: bool) -> None:
    """Switch callgrind's counting on or off in the running gateway."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True, capture_output=True,
                   timeout=120)


def count(variant: str, n: int, procs: Processes, tmp: Path, upstream_port: int, keep: Path | None = None,
          body: bytes = b"") -> float:
    """Instructions per request for one configuration."""
    body = body or request_body(False)
    port = free_port()
    if variant == "default-pyreqwest":
        path = tmp / f"tollway-{variant}.yaml"
        path.write_text(yaml.safe_dump(config_for(variant, tmp, upstream_port), sort_keys=False))
        key = create_key(tollway_bin(), path)
        command = [sys.executable, str(BENCH_DIR / "transport_ab.py"), "serve-pyreqwest", "--config", str(path),
                   "--port", str(port)]
    elif variant.startswith("floor-"):
        key = "unused"
        command = [sys.executable, str(BENCH_DIR / "floor_app.py"), str(port), variant.removeprefix("floor-"),
                   str(upstream_port)]
    else:
        path = tmp / f"tollway-{variant}.yaml"
        path.write_text(yaml.safe_dump(config_for(variant, tmp, upstream_port), sort_keys=False))
        tollway = tollway_bin()
        key = create_key(tollway, path)
        command = [tollway, "serve", "--config", str(path), "--port", str(port)]
    log = tmp / f"callgrind-{variant}.log"
    with log.open("wb") as out:
        proc = procs.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                            f"--callgrind-out-file={tmp}/callgrind.out.{variant}", *command],
                           out, cwd=tmp, env=dict(os.environ))
    wait_for(lambda: http_ok(f"http://{HOST}:{port}/ready"), proc, f"{variant} under callgrind", log,
             timeout=300)
    uvloop.run(_send(port, key, WARMUP, body))
    sent = n // CONNECTIONS * CONNECTIONS
    _instrument(proc.pid, True)
    uvloop.run(_send(port, key, sent, body))
    _instrument(proc.pid, False)
    procs.stop(proc)
    if keep is not None:  # for callgrind_annotate
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / f"callgrind.out.{variant}", keep / f"callgrind.out.{variant}")
    found = re.search(r"Collected : ([\d,]+)", log.read_text(errors="replace"))
    if not found:
        raise RuntimeError(f"no instruction count in the callgrind log:\n{log.read_text(errors='replace')[-2000:]}")
    return int(found.group(1).replace(",", "")) / sent


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    global FLUSH_INTERVAL
    FLUSH_INTERVAL = args.flush_interval
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise RuntimeError("valgrind is not installed (apt-get install -y valgrind)")
    upstream_port = free_port()
    with (tmp / "upstream.log").open("wb") as out:
        upstream = procs.start([sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(upstream_port)], out)
    wait_for(lambda: port_open(upstream_port), upstream, "bench/upstream.py", tmp / "upstream.log")
    print("| configuration | what it is | instructions/request |\n|---|---|--:|")
    for variant in args.config or DEFAULT_CONFIGS:
        counted = count(variant, args.n, procs, tmp, upstream_port, args.keep, body_of(args.body_kb))
        print(f"| {variant} | {CONFIGS[variant]} | {counted:,.0f} |", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=list(CONFIGS), action="append",
                        help=f"configuration(s) to count (default: {', '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("-n", type=int, default=500, help="requests counted per configuration (default 500)")
    parser.add_argument("--body-kb", type=int, help="send a Claude Code turn of about this many KB instead")
    parser.add_argument("--flush-interval", type=float,
                        help="store.flush_interval for Tollway (seconds). Under callgrind the gateway serves "
                             "a few dozen requests a second, so the default 0.2 s flushes batches of a few "
                             "records whose size follows the machine's load; a long interval makes every "
                             "batch 64 records, as under real load, and the count repeatable")
    parser.add_argument("--keep", type=Path, help="copy each callgrind.out.<configuration> here (callgrind_annotate)")
    return run_with_processes(run, parser.parse_args(), "tollway-instr-")


if __name__ == "__main__":
    sys.exit(main())
