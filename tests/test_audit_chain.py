"""Tamper evidence of the audit log against a real gateway and the real CLI (issue 16, audit;
issue 17.12): keyed chains, every stored column covered, signed checkpoints exported to a file,
and `tollway audit verify` naming what was removed, edited or forged.

Each attack works on a copy of the gateway's SQLite store and of its checkpoint file, as an
attacker with write access to the database (but not to the environment's key) would."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.conftest import Gateway, run_cli, start_gateway

KEY = secrets.token_hex(32)
ENV = {"TOLLWAY_AUDIT_KEY": KEY}
BODY = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("chain")
    gateway = start_gateway(work, {
        "server": {"key_refresh_interval": 0.2},
        "audit": {"checkpoint_sink": str(work / "checkpoints.jsonl"), "checkpoint_interval": 0.3},
        "models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}],
    }, env=ENV)
    for _ in range(6):
        httpx.post(gateway.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key})
    gateway.cli("keys", "create", "--name", "made-by-cli")
    # Wait until a checkpoint names the CLI writer and all six requests of the gateway writer.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        heads = _last_heads(work / "checkpoints.jsonl")
        if any(w.startswith("cli:") for w in heads) and any(
                w.startswith("gateway:") and s >= 6 for w, (s, _) in heads.items()):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no checkpoint covering the records was exported")
    yield gateway
    gateway.stop()


def _last_heads(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    return orjson.loads(lines[-1])["heads"] if lines else {}


class Copy:
    """A copy of the store and the checkpoint file, with a config pointing at both."""

    def __init__(self, gw: Gateway, where: Path, checkpoints: bool = True) -> None:
        where.mkdir(parents=True, exist_ok=True)
        self.db = where / "copy.db"
        src, dst = sqlite3.connect(gw.workdir / "tollway.db"), sqlite3.connect(self.db)
        src.backup(dst)
        src.close()
        self.sql = dst
        self.checkpoints = where / "checkpoints.jsonl"
        shutil.copy(gw.workdir / "checkpoints.jsonl", self.checkpoints)
        self.config = where / "copy.yaml"
        # Without `checkpoints`, verify sees only the database: what the chains and the writer
        # registry alone can show.
        audit = {"checkpoint_sink": str(self.checkpoints)} if checkpoints else {}
        self.config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{self.db}"}, "audit": audit}))

    def gateway_writer(self) -> tuple[str, int]:
        row = self.sql.execute("SELECT writer, max(seq) FROM audit_log WHERE writer LIKE 'gateway:%' "
                               "GROUP BY writer ORDER BY max(seq) DESC").fetchone()
        return row[0], int(row[1])

    def verify(self, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
        self.sql.commit()
        out = run_cli("audit", "verify", "--json", config=self.config, env=ENV if env is None else env, check=False)
        return out.returncode, json.loads(out.stdout)


def problems(reports: list[dict[str, Any]]) -> list[str]:
    return [f"{r['writer']}: {r['problem']}" for r in reports if not r["ok"]]


def test_the_intact_log_verifies_with_its_checkpoints(gw: Gateway, tmp_path: Path) -> None:
    code, reports = Copy(gw, tmp_path).verify()
    assert code == 0, problems(reports)
    assert any(r["writer"].startswith("cli:") for r in reports)


def test_an_edit_with_every_later_hash_recomputed_is_detected(gw: Gateway, tmp_path: Path) -> None:
    """Without the key, an attacker can only recompute plain SHA-256: the chain is keyed."""
    copy = Copy(gw, tmp_path)
    writer, _top = copy.gateway_writer()
    rows = copy.sql.execute("SELECT seq, body, prev_hash FROM audit_log WHERE writer = ? ORDER BY seq",
                            (writer,)).fetchall()
    prev = rows[0][2]
    for seq, body, _ in rows:
        if seq == 2:
            body = body.replace('"status":200', '"status":201')
        digest = hashlib.sha256((prev + body).encode()).hexdigest()
        copy.sql.execute("UPDATE audit_log SET body = ?, prev_hash = ?, hash = ? WHERE writer = ? AND seq = ?",
                         (body, prev, digest, writer, seq))
        prev = digest
    code, reports = copy.verify()
    assert code == 1
    report = next(r for r in reports if r["writer"] == writer)
    assert report["problem"].startswith("broken link at record 1:"), report


@pytest.mark.parametrize("column, value", [("status", 500), ("actor_key_id", "key_someoneelse"),
                                           ("dlp_hit", 1), ("model", "other-model")])
def test_editing_only_a_filter_column_is_detected(gw: Gateway, tmp_path: Path, column: str, value: Any) -> None:
    copy = Copy(gw, tmp_path)
    writer, _ = copy.gateway_writer()
    seq = copy.sql.execute("SELECT min(seq) FROM audit_log WHERE writer = ? AND kind = 'request'",
                           (writer,)).fetchone()[0]
    copy.sql.execute(f"UPDATE audit_log SET {column} = ? WHERE writer = ? AND seq = ?", (value, writer, seq))
    code, reports = copy.verify()
    assert code == 1
    assert next(r for r in reports if r["writer"] == writer)["problem"] == \
        f"broken link at record {seq}: column {column} differs from the hashed record"


def test_truncating_the_newest_records_is_detected_against_the_checkpoint(gw: Gateway, tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path)
    writer, top = copy.gateway_writer()
    copy.sql.execute("DELETE FROM audit_log WHERE writer = ? AND seq > ?", (writer, top - 3))
    code, reports = copy.verify()
    assert code == 1
    problem = next(r for r in reports if r["writer"] == writer)["problem"]
    assert problem.startswith("truncated:") and f"first missing record: {top - 2}" in problem


def test_deleting_a_whole_writer_is_detected(gw: Gateway, tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path)
    cli_writer = copy.sql.execute("SELECT writer FROM audit_log WHERE writer LIKE 'cli:%' LIMIT 1").fetchone()[0]
    copy.sql.execute("DELETE FROM audit_log WHERE writer = ?", (cli_writer,))
    code, reports = copy.verify()
    assert code == 1
    assert next(r for r in reports if r["writer"] == cli_writer)["problem"].startswith("missing writer:")


def test_a_forged_checkpoint_is_detected(gw: Gateway, tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path)
    forged = {"ts": time.time(), "heads": {}, "sig": hashlib.sha256(b"guess").hexdigest()}
    with open(copy.checkpoints, "ab") as fh:
        fh.write(orjson.dumps(forged) + b"\n")
    code, reports = copy.verify()
    assert code == 1
    assert any(r["writer"] == "checkpoints" and "bad signature" in r["problem"] for r in reports)


def test_a_keyed_chain_is_not_passed_without_the_key(gw: Gateway, tmp_path: Path) -> None:
    code, reports = Copy(gw, tmp_path).verify(env={"TOLLWAY_AUDIT_KEY": ""})
    assert code == 1
    assert any("TOLLWAY_AUDIT_KEY" in (r["problem"] or "") for r in reports)


# The writer registry: what the database alone shows, without any checkpoint.

def _cli_writer(copy: Copy) -> tuple[str, int]:
    """The CLI writer (one `keys create`): its change record, then its closing record."""
    writer, top = copy.sql.execute("SELECT writer, max(seq) FROM audit_log WHERE writer LIKE 'cli:%' "
                                   "GROUP BY writer").fetchone()
    return writer, int(top)


def test_every_writer_is_registered_and_the_cli_closes_its_chain(gw: Gateway, tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path, checkpoints=False)
    writer, top = _cli_writer(copy)
    events = copy.sql.execute("SELECT event, seq FROM audit_writers WHERE writer = ? ORDER BY n",
                              (writer,)).fetchall()
    assert events == [("open", 1), ("close", top)]
    kinds = [k for (k,) in copy.sql.execute("SELECT kind FROM audit_log WHERE writer = ? ORDER BY seq", (writer,))]
    assert kinds == ["change", "close"]
    registered = {w for (w,) in copy.sql.execute("SELECT writer FROM audit_writers WHERE event = 'open'")}
    assert registered == {w for (w,) in copy.sql.execute("SELECT DISTINCT writer FROM audit_log")}
    code, reports = copy.verify()
    assert code == 0, problems(reports)
    assert any(r["writer"] == "writers" and r["ok"] and r["records"] >= 3 for r in reports)


def test_deleting_a_whole_writer_is_detected_without_a_checkpoint(gw: Gateway, tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path, checkpoints=False)
    writer, _ = _cli_writer(copy)
    n = copy.sql.execute("SELECT n FROM audit_writers WHERE writer = ? AND event = 'open'", (writer,)).fetchone()[0]
    copy.sql.execute("DELETE FROM audit_log WHERE writer = ?", (writer,))
    code, reports = copy.verify()
    assert code == 1
    problem = next(r for r in reports if r["writer"] == writer)["problem"]
    assert problem.startswith(f"missing writer: registered as writer entry {n} "), problem
    assert problem.endswith("none of its records are left")


def test_deleting_a_closed_writers_newest_record_is_detected_without_a_checkpoint(gw: Gateway,
                                                                                  tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path, checkpoints=False)
    writer, top = _cli_writer(copy)
    copy.sql.execute("DELETE FROM audit_log WHERE writer = ? AND seq = ?", (writer, top))
    code, reports = copy.verify()
    assert code == 1
    problem = next(r for r in reports if r["writer"] == writer)["problem"]
    assert problem.startswith(f"truncated: the writer closed at record {top} ")
    assert problem.endswith(f"the log ends at {top - 1}; first missing record: {top}")


def test_removing_a_writer_from_the_registry_is_detected(gw: Gateway, tmp_path: Path) -> None:
    """Deleting the oldest writer's records and its registry entries leaves a gap in the registry."""
    copy = Copy(gw, tmp_path, checkpoints=False)
    writer = copy.sql.execute("SELECT writer FROM audit_writers WHERE n = 1").fetchone()[0]
    copy.sql.execute("DELETE FROM audit_log WHERE writer = ?", (writer,))
    copy.sql.execute("DELETE FROM audit_writers WHERE writer = ?", (writer,))
    after = copy.sql.execute("SELECT min(n) FROM audit_writers").fetchone()[0]
    assert after is not None and after > 1  # another writer registered after it
    code, reports = copy.verify()
    assert code == 1
    problem = next(r for r in reports if r["writer"] == "writers")["problem"]
    assert problem == f"missing entries: writer registry entries 1..{after - 1} are absent before entry {after}"


def test_truncating_the_registry_with_its_newest_writer_is_detected_against_the_checkpoint(
        gw: Gateway, tmp_path: Path) -> None:
    copy = Copy(gw, tmp_path)
    writer = copy.sql.execute("SELECT writer FROM audit_writers ORDER BY n DESC LIMIT 1").fetchone()[0]
    copy.sql.execute("DELETE FROM audit_log WHERE writer = ?", (writer,))
    copy.sql.execute("DELETE FROM audit_writers WHERE writer = ?", (writer,))
    left = copy.sql.execute("SELECT max(n) FROM audit_writers").fetchone()[0]
    code, reports = copy.verify()
    assert code == 1
    registry = next(r for r in reports if r["writer"] == "writers")["problem"]
    assert registry is not None and registry.startswith("truncated: the checkpoint of "), registry
    assert registry.endswith(f"the registry ends at {left}; first missing entry: {left + 1}")


def test_a_writer_nobody_registered_is_detected(gw: Gateway, tmp_path: Path) -> None:
    """Records copied in under a new writer name, each with a valid keyed hash: still named."""
    import hmac

    copy = Copy(gw, tmp_path, checkpoints=False)
    writer, _ = copy.gateway_writer()
    body = copy.sql.execute("SELECT body FROM audit_log WHERE writer = ? AND seq = 1", (writer,)).fetchone()[0]
    fake = "gateway:elsewhere:1:00000000"
    data = json.loads(body)
    data["writer"] = fake
    forged = json.dumps(data, sort_keys=True, separators=(",", ":"))
    digest = hmac.new(KEY.encode(), ("0" * 64 + forged).encode(), hashlib.sha256).hexdigest()
    copy.sql.execute("INSERT INTO audit_log (writer, seq, ts, kind, request_id, actor_key_id, actor_user_id, "
                     "actor_group_id, route, model, status, dlp_hit, body, prev_hash, hash) SELECT ?, seq, ts, kind, "
                     "request_id, actor_key_id, actor_user_id, actor_group_id, route, model, status, dlp_hit, ?, ?, ? "
                     "FROM audit_log WHERE writer = ? AND seq = 1", (fake, forged, "0" * 64, digest, writer))
    code, reports = copy.verify()
    assert code == 1
    assert next(r for r in reports if r["writer"] == fake)["problem"].startswith("not in the writer registry")


def test_a_gateway_closes_its_chain_when_it_stops(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, {"models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]},
                            env=ENV)
    try:
        for _ in range(3):
            httpx.post(gateway.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key})
    finally:
        gateway.stop()
    sql = sqlite3.connect(gateway.workdir / "tollway.db")
    writer, top, kind = sql.execute("SELECT writer, seq, kind FROM audit_log WHERE writer LIKE 'gateway:%' "
                                    "ORDER BY seq DESC LIMIT 1").fetchone()
    assert kind == "close"
    assert sql.execute("SELECT seq FROM audit_writers WHERE writer = ? AND event = 'close'",
                       (writer,)).fetchone() == (top,)
    sql.execute("DELETE FROM audit_log WHERE writer = ? AND seq >= ?", (writer, top - 1))
    sql.commit()
    config = tmp_path / "verify.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{gateway.workdir / 'tollway.db'}"}}))
    out = run_cli("audit", "verify", "--json", config=config, env=ENV, check=False)
    assert out.returncode == 1
    problem = next(r for r in json.loads(out.stdout) if r["writer"] == writer)["problem"]
    assert problem.endswith(f"first missing record: {top - 1}"), problem
