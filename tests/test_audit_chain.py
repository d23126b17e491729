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

    def __init__(self, gw: Gateway, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        self.db = where / "copy.db"
        src, dst = sqlite3.connect(gw.workdir / "tollway.db"), sqlite3.connect(self.db)
        src.backup(dst)
        src.close()
        self.sql = dst
        self.checkpoints = where / "checkpoints.jsonl"
        shutil.copy(gw.workdir / "checkpoints.jsonl", self.checkpoints)
        self.config = where / "copy.yaml"
        self.config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{self.db}"},
                                               "audit": {"checkpoint_sink": str(self.checkpoints)}}))

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
