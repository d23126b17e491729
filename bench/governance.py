"""Benchmark: what each governance feature adds to a request, in one run.

Starts bench/upstream.py once, then one gateway per variant, and measures non-streaming
requests at concurrency 1 (the same Python load generator as bench/run.py) directly and
through each gateway:

* baseline: authentication, model access, metering and audit (always on), DLP off, no limits;
* limits (memory): requests/min, tokens/min, concurrency and a budget on the key, memory backend;
* limits (redis): the same on the Redis backend (needs a Redis at --redis-url);
* DLP: the default policy (secrets redacted, personal data logged) on the same small request.

    .venv/bin/python bench/governance.py [--duration 6] [--redis-url redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from run import (
    HOST,
    MODEL,
    UPSTREAM_KEY,
    CpuMeter,
    Processes,
    build_request,
    create_key,
    free_port,
    http_ok,
    port_open,
    python_load,
    request_body,
    tollway_bin,
    wait_for,
)

BENCH_DIR = Path(__file__).parent
LIMITS = ["--rpm", "10000000", "--tpm", "1000000000", "--concurrent", "1000", "--budget", "1000000"]


def config(tmp: Path, upstream_port: int, *, dlp: bool, redis_url: str | None = None) -> Path:
    data: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp}/tollway.db", "spill_dir": str(tmp / "spill")},
        "dlp": {"enabled": dlp},
        "models": [{"id": MODEL, "upstream": {"provider": "anthropic", "base_url": f"http://{HOST}:{upstream_port}",
                                              "api_key": UPSTREAM_KEY},
                    "pricing": {"input": 3.0, "output": 15.0}}],
    }
    if redis_url:
        data["limits"] = {"backend": "redis", "redis_url": redis_url}
    path = tmp / "tollway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    procs = Processes()
    tollway = tollway_bin()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="tollway-gov-") as root:
            base = Path(root)
            up_port = free_port()
            with (base / "upstream.log").open("wb") as log:
                up = procs.start([sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(up_port)], log)
            wait_for(lambda: port_open(up_port), up, "upstream", base / "upstream.log")
            direct = python_load(up_port, build_request(up_port, "direct", request_body(False)), 1,
                                 args.duration, 1.0, False, CpuMeter(None))
            variants = [("baseline (auth, access, metering, audit)", False, None, False),
                        ("+ limits and budget, memory backend", False, None, True),
                        ("+ limits and budget, redis backend", False, args.redis_url, True),
                        ("+ DLP, default policy", True, None, False)]
            for name, dlp, redis_url, limited in variants:
                tmp = base / str(len(rows))
                tmp.mkdir()
                cfg = config(tmp, up_port, dlp=dlp, redis_url=redis_url)
                key = create_key(tollway, cfg)
                if limited:
                    key_id = subprocess.run([tollway, "keys", "list", "--json", "--config", str(cfg)],
                                            capture_output=True, text=True, check=True).stdout
                    import json

                    kid = json.loads(key_id)[0]["id"]
                    subprocess.run([tollway, "limits", "set", "key", kid, *LIMITS, "--config", str(cfg)],
                                   capture_output=True, check=True)
                port = free_port()
                with (tmp / "gw.log").open("wb") as log:
                    gw = procs.start([tollway, "serve", "--config", str(cfg), "--port", str(port)], log, cwd=tmp)
                wait_for(lambda p=port: http_ok(f"http://{HOST}:{p}/ready"), gw, "tollway", tmp / "gw.log")
                meter = CpuMeter(gw.pid)
                result = python_load(port, build_request(port, key, request_body(False)), 1, args.duration, 1.0,
                                     False, meter)
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors} errors (see {tmp / 'gw.log'})")
                rows.append((name, result))
                procs.stop(gw)
    finally:
        procs.stop_all()
    base_p50 = rows[0][1].p50_ms - direct.p50_ms
    print(f"direct: p50 {direct.p50_ms:.3f} ms, p99 {direct.p99_ms:.3f} ms\n")
    print("| variant (non-streaming, c=1) | added p50 | added p99 | vs baseline p50 | Tollway CPU/req |")
    print("|---|--:|--:|--:|--:|")
    for name, r in rows:
        added = r.p50_ms - direct.p50_ms
        cpu = f"{r.cpu_us_per_request:.0f} µs" if r.cpu_us_per_request else "-"
        print(f"| {name} | {added:.3f} ms | {r.p99_ms - direct.p99_ms:.3f} ms | {added - base_p50:+.3f} ms | {cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
