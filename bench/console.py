"""Benchmark: the console's admin API calls on a large store (1,000,000 ledger rows and
1,000,000 audit records), p50/p95 per endpoint, through a real `tollway serve`.

Fills the store through the gateway's own write paths (`store.usage.write_batch`, which keeps the
daily and hourly rollups; `AuditLog` building real hash chains and `store.audit.write_batch`), in
batches, spread over the last 90 days: 200 users in 20 groups (half of them linked to an IdP),
400 keys, 70 limits rows, 2.5 % of requests with DLP findings, 10,000 control-plane changes.
Then starts `tollway serve` on the store and times every call each console page makes, over
loopback (so the server's own time is at most what is printed).

    .venv/bin/python bench/console.py                       # SQLite, bench/results/console.db
    .venv/bin/python bench/console.py --rows 100000 --calls 10
    .venv/bin/python bench/console.py --url postgresql://postgres@127.0.0.1:5432/tollway_bench_console

A PostgreSQL URL must name a database of its own (created here if missing, never dropped: run
again to reuse the filled store). A store already holding the rows is not filled again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml
from sqlalchemy import func, select

from tollway.governance.audit import AuditLog
from tollway.governance.identity import create_key
from tollway.store import audit as audit_store
from tollway.store.db import Database
from tollway.store.keys import KeyStore
from tollway.store.limit_rows import LimitStore
from tollway.store.principals import Directory
from tollway.store.signin import SigninStore
from tollway.store.tables import audit_log, usage
from tollway.store.usage import write_batch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "gpt-5", "tollway-mock"]
DAYS = 90
BATCH = 5000


async def ensure_pg_database(url: str) -> None:
    """Create the benchmark's own PostgreSQL database if it does not exist (never drops one)."""
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
    conn = await asyncpg.connect(admin)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def directory(db: Database) -> tuple[list[str], list[str], list[str]]:
    """Users, groups and keys (ids); made once, then read back."""
    d = Directory(db)
    have = await d.list_users(limit=1000)
    if len(have) >= 200:
        groups = [g.id for g in await d.list_groups(limit=1000)]
        keys = [k.id for k in await KeyStore(db).all(limit=1000, kind="data")]
        return [u.id for u in have], groups, keys
    groups = [(await d.create_group(f"team-{i:02d}", "", [MODELS[i % 5], "claude-*"])).id for i in range(20)]
    users, keys, store, limits = [], [], KeyStore(db), LimitStore(db)
    signin = SigninStore(db)
    for i in range(200):
        u = await d.create_user(f"user-{i:03d}", f"user-{i:03d}@example.com")
        users.append(u.id)
        await d.add_member(groups[i % 20], u.id)
        if i % 2 == 0:
            await signin.link("https://idp.example.com", f"sub-{i}", u.id)
        for j in range(2):
            row, _ = await create_key(store, f"user-{i:03d}-{j}", user_id=u.id)
            keys.append(row.id)
        if i < 50:
            await limits.set("user", u.id, rpm=600, tpm=None, concurrent=None, budget_micros=50_000_000,
                             budget_period="month", budget_mode=None)
    for g in groups:
        await limits.set("group", g, rpm=6000, tpm=None, concurrent=None, budget_micros=500_000_000,
                         budget_period="month", budget_mode=None)
    return users, groups, keys


def ledger_rows(start: int, n: int, total: int, users: list[str], groups: list[str], keys: list[str], now: float,
                rnd: random.Random) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """N ledger records and, for each, what its audit record says."""
    rows, audits = [], []
    for i in range(start, start + n):
        u = rnd.randrange(len(users))
        # Chronological, as traffic is (each batch a slice of the 90 days), with a little jitter.
        ts = now - DAYS * 86400 * (1 - (i + rnd.random()) / total)
        r = rnd.random()
        status = 200 if r < 0.95 else 429 if r < 0.98 else 500 if r < 0.99 else 400
        model = MODELS[rnd.randrange(5)]
        rid = f"req_{i:09d}{secrets.token_hex(3)}"
        latency = int(rnd.lognormvariate(6.5, 0.9))
        rec = {"request_id": rid, "ts": ts, "route": "messages", "key_id": keys[2 * u + rnd.randrange(2)],
               "user_id": users[u], "group_id": groups[u % 20], "requested_model": model, "upstream_model": model,
               "input_tokens": rnd.randrange(50_000), "output_tokens": rnd.randrange(4_000), "cache_write_tokens": 0,
               "cache_read_tokens": rnd.randrange(20_000),
               "cost_micros": rnd.randrange(200_000) if status == 200 else 0,
               "latency_ms": latency, "status": status, "error_type": None if status == 200 else "upstream_error",
               "deployment": model, "attempts": 1, "upstream_request_id": f"up_{rid}"}
        rows.append(rec)
        dlp = None
        if rnd.random() < 0.025:
            kind = "email" if rnd.random() < 0.8 else "aws_access_key"
            dlp = [{"kind": kind, "category": "pii" if kind == "email" else "secrets",
                    "action": "log" if kind == "email" else "redact", "where": ["messages"], "count": 1}]
        audits.append((rid, {"route": "messages", "actor": {"key_id": rec["key_id"], "user_id": users[u],
                                                           "group_id": rec["group_id"]},
                             "requested_model": model, "status": status, "latency_ms": latency, "dlp": dlp}))
    return rows, audits


async def fill(db: Database, rows: int) -> None:
    users, groups, keys = await directory(db)
    async with db.engine.connect() as conn:
        have = int(await conn.scalar(select(func.count()).select_from(usage)) or 0)
        have_audit = int(await conn.scalar(select(func.count()).select_from(audit_log)) or 0)
    if have >= rows and have_audit >= rows:
        print(f"store already holds {have:,} ledger rows and {have_audit:,} audit records")
        return
    rnd = random.Random(have)
    now = time.time()
    t0 = time.perf_counter()
    pending: list[dict[str, Any]] = []
    # A few writers (gateway processes), each with its own chain; their `ts` is when written, so
    # the records' own times come from the ledger rows' (as a request's audit record's would).
    logs = [AuditLog(pending.append, f"gateway:bench:{w}", key=b"") for w in range(4)]
    done = 0
    while done < rows - have:
        n = min(BATCH, rows - have - done)
        batch, audits = ledger_rows(have + done, n, rows, users, groups, keys, now, rnd)
        await write_batch(db, batch)
        for j, (rid, fields) in enumerate(audits):
            log = logs[j % 4]
            log_ts = batch[j]["ts"]
            log.record("request", None, request_id=rid, **fields)
            rec = pending[-1]
            # Re-stamp the record with its request's time (and re-hash: the chain stays valid).
            body = rec["body"].replace('"ts":', '"ts_written":', 1)
            rec["body"] = body[:-1] + f',"ts":{round(log_ts, 6)}}}'
            rec["hash"] = audit_store.chain_hash(rec["prev_hash"], rec["body"])
            log.prev = rec["hash"]
            if j % 100 == 0:
                log.change("user.update", users[j % len(users)], {"key_id": "key_admin", "via": "admin_api"},
                           fields=["email"])
                chg = pending[-1]
                chg["body"] = chg["body"].replace('"ts":', '"ts_written":', 1)[:-1] + f',"ts":{round(log_ts, 6)}}}'
                chg["hash"] = audit_store.chain_hash(chg["prev_hash"], chg["body"])
                log.prev = chg["hash"]
        await audit_store.write_batch(db, pending)
        pending.clear()
        done += n
        if done % 100_000 < BATCH:
            print(f"  {have + done:,} ledger rows and their audit records ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    print(f"filled {done:,} ledger rows and {done + done // 100:,} audit records in {time.perf_counter() - t0:.0f} s")


async def admin_key(db: Database) -> tuple[str, dict[str, str]]:
    _, secret = await create_key(KeyStore(db), "bench-console", kind="admin")
    d = Directory(db)
    user = (await d.list_users(limit=1))[0].id
    async with db.engine.connect() as conn:
        rid = await conn.scalar(select(usage.c.request_id).order_by(usage.c.ts.desc()).limit(1))
    return secret, {"user": user, "request_id": str(rid)}


def serve(url: str, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    config = {"store": {"url": url}, "models": [{"id": m, "upstream": {"provider": "mock"}} for m in MODELS]}
    path = workdir / "tollway.yaml"
    path.write_text(yaml.safe_dump(config))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TOLLWAY_AUDIT_KEY"} | {"TOLLWAY_DATA_DIR": str(workdir)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tollway"), "serve", "--config", str(path), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("tollway serve did not become ready")


def endpoints(ids: dict[str, str], users: list[str]) -> list[tuple[str, str]]:
    """What each page calls when it opens (the usage page: this month), and its common searches."""
    idents = "&".join(f"user_id={u}" for u in users[:50])
    month = time.strftime("%Y-%m-01", time.gmtime())
    return [
        ("overview", "/insights/overview?days=30"), ("overview", "/insights/overview?days=1"),
        ("overview", "/insights/overview?days=90"),
        ("users & groups", "/users?limit=50"), ("users & groups", "/groups?limit=100"),
        ("users & groups", f"/insights/identities?{idents}"),
        ("keys", "/keys?limit=100"), ("models", "/insights/models"),
        ("usage", f"/usage?by=user&since={month}"), ("usage", f"/usage?by=key&since={month}"),
        ("usage", f"/usage?by=group&since={month}"), ("usage", f"/usage?by=day&since={month}"),
        ("usage", f"/usage?by=model&since={month}&user=" + ids["user"]), ("usage", "/usage?by=user"),
        ("request log", "/insights/requests?limit=50"), ("request log", f"/insights/requests?user={ids['user']}"),
        ("request log", "/insights/requests?model=gpt-5"), ("request log", "/insights/requests?status=500"),
        ("request log", "/insights/requests?errors=true"),
        ("request log", f"/insights/requests?request_id={ids['request_id']}"),
        ("request log", f"/insights/requests/{ids['request_id']}"),
        ("audit log", "/audit?limit=50"), ("audit log", "/audit?limit=50&kind=change"),
        ("audit log", f"/audit?limit=50&actor={ids['user']}"), ("audit log", "/audit?limit=50&dlp=true"),
        ("audit log", f"/audit?limit=50&request_id={ids['request_id']}"),
        ("audit log", "/insights/audit/verification"),
        ("DLP", "/insights/dlp?days=30"), ("limits", "/insights/limits"),
    ]


def measure(base: str, secret: str, calls: list[tuple[str, str]], n: int) -> list[tuple[str, str, float, float]]:
    out = []
    with httpx.Client(base_url=base + "/admin/v1", headers={"authorization": f"Bearer {secret}"}, timeout=60) as c:
        for page, path in calls:
            for _ in range(2):  # warm-up (the first admin request also builds the admin app)
                assert c.get(path).status_code == 200, (path, c.get(path).text[:300])
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                resp = c.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert resp.status_code == 200, resp.text[:300]
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            out.append((page, path, statistics.median(times), p95))
    return out


def verify_time(base: str, secret: str) -> float:
    with httpx.Client(base_url=base + "/admin/v1", headers={"authorization": f"Bearer {secret}"}, timeout=60) as c:
        t0 = time.perf_counter()
        c.post("/insights/audit/verification")
        while (state := c.get("/insights/audit/verification").json())["state"] == "running":
            time.sleep(0.5)
        assert state["ok"], state
        return time.perf_counter() - t0


async def prepare(url: str, rows: int) -> tuple[str, dict[str, str], list[str]]:
    if url.startswith("postgresql"):
        await ensure_pg_database(url)
    db = Database(url)
    if db.is_sqlite:  # the fill only: a bigger page cache for a million-row index build
        from sqlalchemy import event

        event.listen(db.engine.sync_engine, "connect",
                     lambda conn, _: conn.execute("PRAGMA cache_size=-262144"))  # 256 MiB
    await db.migrate()
    await fill(db, rows)
    secret, ids = await admin_key(db)
    users = [u.id for u in await Directory(db).list_users(limit=200)]
    await db.close()
    return secret, ids, users


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="ledger rows (and about as many audit records)")
    ap.add_argument("--url", default=f"sqlite:///{ROOT}/bench/results/console.db")
    ap.add_argument("--calls", type=int, default=20, help="timed calls per endpoint")
    ap.add_argument("--verify", action="store_true", help="also time a full audit chain verification")
    args = ap.parse_args()
    secret, ids, users = asyncio.run(prepare(args.url, args.rows))
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = serve(args.url, Path(tmp))
        try:
            results = measure(base, secret, endpoints(ids, users), args.calls)
            took = verify_time(base, secret) if args.verify else None
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"\n{args.rows:,} ledger rows, {args.calls} calls per endpoint, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, store {args.url.split(':')[0]}\n")
    print("| page | admin API call | p50 | p95 |\n|---|---|---|---|")
    for page, path, p50, p95 in results:
        shown = path if len(path) < 70 else path[:67] + "..."
        print(f"| {page} | `GET {shown}` | {p50:.1f} ms | {p95:.1f} ms |")
    worst = max(results, key=lambda r: r[3])
    print(f"\nslowest p95: {worst[3]:.1f} ms ({worst[1][:60]})")
    if took is not None:
        print(f"full audit verification (background, every chain): {took:.1f} s")


if __name__ == "__main__":
    main()
