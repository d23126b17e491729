"""uvicorn's own protocol against Tollway's one-write protocol (tollway/serving.py), on the floor app.

The floor app (`floor_app.py static`: bare Starlette answering a fixed body) isolates what the
server protocol costs, with nothing of Tollway's in the way. The two protocols take turns, round
after round, so a machine that speeds up or slows down during the run (this one does) affects
both alike; the medians are printed.

    .venv/bin/python bench/one_write.py               # 3 rounds of 5 s each, wrk -c64
    .venv/bin/python bench/one_write.py --rounds 5 --duration 8
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from run import (
    HOST,
    CpuMeter,
    Processes,
    free_port,
    port_open,
    request_body,
    run_with_processes,
    wait_for,
    wrk_load,
    wrk_script,
)

BENCH_DIR = Path(__file__).resolve().parent
PROTOCOLS = ("httptools", "one-write")


def run(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    script = wrk_script(tmp / "post.lua", "unused", request_body(False))
    results: dict[str, list[tuple[float, float, float]]] = {p: [] for p in PROTOCOLS}
    for round_no in range(1, args.rounds + 1):
        for protocol in PROTOCOLS:
            port = free_port()
            log = tmp / f"floor-{protocol}.log"
            with log.open("wb") as out:
                proc = procs.start([sys.executable, str(BENCH_DIR / "floor_app.py"), str(port), "static", "0",
                                    protocol], out)
            wait_for(lambda port=port: port_open(port), proc, f"floor app ({protocol})", log)
            result = wrk_load(procs, wrk, port, script, 64, args.duration, 1.0, CpuMeter(proc.pid))
            procs.stop(proc)
            cpu = result.cpu_us_per_request or 0.0
            results[protocol].append((result.rps, cpu, result.p99_ms))
            print(f"round {round_no}  {protocol:<10} {result.rps:>9,.0f} req/s  {cpu:6.1f} µs CPU/req  "
                  f"p99 {result.p99_ms:.2f} ms", flush=True)
    print(f"\n| protocol ({HOST}, wrk -c64, floor app) | req/s (median) | CPU/req (median) |\n|---|--:|--:|")
    for protocol in PROTOCOLS:
        rps = statistics.median(r for r, _, _ in results[protocol])
        cpu = statistics.median(c for _, c, _ in results[protocol])
        print(f"| {protocol} | {rps:,.0f} | {cpu:.1f} µs |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    return run_with_processes(run, parser.parse_args(), "tollway-one-write-")


if __name__ == "__main__":
    sys.exit(main())
