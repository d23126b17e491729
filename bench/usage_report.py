"""Benchmark: a month's usage report by user over a 1,000,000-row ledger.

Seeds the ledger through the same write path the gateway uses (`store.usage.write_batch`,
which also maintains the daily rollup), then times `store.usage.report(by="user")` for one
month against a plain GROUP BY over the raw ledger, to show what the rollup buys.

    .venv/bin/python bench/usage_report.py [--rows 1000000] [--url sqlite:///bench/results/usage.db]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from tollway.store.db import Database
from tollway.store.tables import usage
from tollway.store.usage import report, write_batch


def records(n: int, start: datetime, seed: int = 7) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    users = [f"usr_{i:04d}" for i in range(200)]
    models = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "gpt-5", "tollway-mock"]
    out = []
    span = 30 * 86400
    for i in range(n):
        u = rnd.randrange(200)
        out.append({
            "request_id": f"req_bench_{i:08d}", "ts": start.timestamp() + rnd.random() * span, "route": "messages",
            "key_id": f"key_{u:04d}_{rnd.randrange(5)}", "user_id": users[u], "group_id": f"grp_{u % 20:02d}",
            "requested_model": rnd.choice(models), "upstream_model": "m", "input_tokens": rnd.randrange(50_000),
            "output_tokens": rnd.randrange(4_000), "cache_write_tokens": 0, "cache_read_tokens": rnd.randrange(20_000),
            "cost_micros": rnd.randrange(200_000), "latency_ms": rnd.randrange(5_000), "status": 200,
            "error_type": None,
        })
    return out


async def main(rows: int, url: str) -> None:
    db = Database(url)
    await db.migrate()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    async with db.engine.connect() as conn:
        have = int(await conn.scalar(select(func.count()).select_from(usage)) or 0)
    if have < rows:
        t0 = time.perf_counter()
        data = records(rows, start)[have:]
        for i in range(0, len(data), 5000):
            await write_batch(db, data[i : i + 5000])
        print(f"seeded {len(data):,} ledger rows in {time.perf_counter() - t0:.1f} s")
    since, until = date(2026, 10, 1), date(2026, 10, 31)

    async def timed(fn: object) -> float:
        t0 = time.perf_counter()
        await fn()  # type: ignore[operator]
        return time.perf_counter() - t0

    async def rollup() -> None:
        assert len(await report(db, "user", since, until)) == 200

    async def raw() -> None:
        q = (select(usage.c.user_id, func.sum(usage.c.cost_micros)).where(
            usage.c.ts >= datetime(2026, 10, 1, tzinfo=UTC), usage.c.ts < datetime(2026, 10, 31, tzinfo=UTC)
            + timedelta(days=1)).group_by(usage.c.user_id))
        async with db.engine.connect() as conn:
            await conn.execute(q)

    fast = [await timed(rollup) for _ in range(5)]
    slow = [await timed(raw) for _ in range(3)]
    print("| report | ledger rows | median |\n|---|---|---|")
    print(f"| month by user, daily rollup (`tollway usage --by user`) | {rows:,} | "
          f"{statistics.median(fast) * 1000:.1f} ms |")
    print(f"| month by user, GROUP BY over the raw ledger | {rows:,} | {statistics.median(slow) * 1000:.1f} ms |")
    await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="sqlite:///bench/results/usage.db")
    args = parser.parse_args()
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.rows, args.url))
