"""The audit log through real HTTP and the real CLI: one record per request (refusals and
streams included) and per change, a chain that verifies and catches tampering, nothing lost
while the database is locked or the gateway is stopped."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, start_gateway

BODY = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "a secret prompt 7731"}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("audit"), {"server": {"key_refresh_interval": 0.2}})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin_key(gw: Gateway) -> str:
    return str(json.loads(gw.cli("keys", "create", "--name", "auditor", "--admin", "--json").stdout)["key"])


def records(gw: Gateway, admin_key: str, n: int = 1, timeout: float = 8.0, **filters: Any) -> list[dict[str, Any]]:
    """Audit records matching FILTERS once at least N are written (the writer is behind the request path)."""
    deadline = time.monotonic() + timeout
    data: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        data = httpx.get(gw.base_url + "/admin/v1/audit", params={"limit": 100, **filters},
                         headers={"x-api-key": admin_key}).json()["data"]
        if len(data) >= n:
            return data
        time.sleep(0.1)
    raise AssertionError(f"{len(data)} of {n} audit records for {filters}")


def wait_for_record(gw: Gateway, admin_key: str, match: Any, timeout: float = 8.0, **filters: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in records(gw, admin_key, **filters) if match(r)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no audit record matching {filters}")


def post(gw: Gateway, path: str, body: Any, key: str | None) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.post(gw.base_url + path, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(("path", "body", "use_key", "status"), [
    ("/v1/messages", BODY, True, 200),
    ("/v1/messages", {**BODY, "stream": True}, True, 200),
    ("/v1/messages/count_tokens", BODY, True, 200),
    ("/v1/messages", BODY, False, 401),
    ("/v1/messages", {"model": "tollway-mock"}, True, 400),
    ("/v1/messages", {**BODY, "model": "nope"}, True, 404),
], ids=["json", "stream", "count_tokens", "no-key", "bad-body", "unknown-model"])
def test_every_request_has_exactly_one_record(gw: Gateway, admin_key: str, path: str, body: Any, use_key: bool,
                                              status: int) -> None:
    resp = post(gw, path, body, gw.key if use_key else None)
    assert resp.status_code == status
    found = records(gw, admin_key, request_id=resp.headers["request-id"])
    assert len(found) == 1
    rec = found[0]
    assert rec["kind"] == "request" and rec["status"] == status
    assert rec["route"] == ("count_tokens" if "count_tokens" in path else "messages")
    assert rec["client"]["user_agent"].startswith("python-httpx")
    if use_key:
        assert rec["actor"]["key_id"] == gw.key_id
    else:
        assert rec["actor"] is None and rec["error_type"] == "authentication_error"


def test_records_hold_usage_and_never_secrets_or_prompts(gw: Gateway, admin_key: str) -> None:
    resp = post(gw, "/v1/messages", BODY, gw.key)
    rec = records(gw, admin_key, request_id=resp.headers["request-id"])[0]
    assert rec["usage"]["output"] == 5 and rec["usage"]["input"] > 0
    assert rec["requested_model"] == "tollway-mock" and rec["latency_ms"] >= 0
    dump = gw.cli("audit", "export").stdout
    assert gw.key not in dump and gw.key[3:] not in dump and admin_key not in dump
    assert "secret prompt 7731" not in dump


def test_admin_and_cli_changes_are_recorded(gw: Gateway, admin_key: str) -> None:
    created = httpx.post(gw.base_url + "/admin/v1/keys", json={"name": "audited"},
                         headers={"x-api-key": admin_key}).json()
    api_rec = wait_for_record(gw, admin_key, lambda r: r["action"] == "key.create" and r["target"] == created["id"],
                              kind="change")
    assert api_rec["actor"]["via"] == "admin_api" and api_rec["actor"]["key_id"].startswith("key_")
    assert created["key"] not in json.dumps(records(gw, admin_key, kind="change"))
    gw.cli("keys", "revoke", created["id"])
    cli_rec = wait_for_record(gw, admin_key, lambda r: r["action"] == "keys.revoke", kind="change")
    assert cli_rec["target"] == created["id"] and cli_rec["actor"]["via"] == "cli"


def test_verify_passes_then_names_tampering(gw: Gateway, admin_key: str, tmp_path: Path) -> None:
    for _ in range(3):
        post(gw, "/v1/messages", BODY, gw.key)
    records(gw, admin_key, 3, kind="request")
    ok = gw.cli("audit", "verify", "--json")
    assert all(r["ok"] for r in json.loads(ok.stdout))
    # Work on a copy, so the module's gateway keeps its intact log.
    db = gw.workdir / "tollway.db"
    copy = tmp_path / "copy.db"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    config = tmp_path / "copy.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{copy}'}}\n")
    writer, _seq = dst.execute("SELECT writer, max(seq) FROM audit_log WHERE writer LIKE 'gateway:%' "
                              "GROUP BY writer ORDER BY max(seq) DESC").fetchone()
    dst.execute("UPDATE audit_log SET body = replace(body, '\"status\":200', '\"status\":201') "
                "WHERE writer = ? AND seq = 2", (writer,))
    dst.commit()
    from tests.conftest import run_cli

    broken = run_cli("audit", "verify", "--json", config=config, check=False)
    assert broken.returncode == 1
    report = next(r for r in json.loads(broken.stdout) if r["writer"] == writer)
    assert report["problem"] == "broken link at record 2: its content does not match its hash"
    dst.execute("UPDATE audit_log SET body = replace(body, '\"status\":201', '\"status\":200') WHERE writer = ?",
                (writer,))
    dst.execute("DELETE FROM audit_log WHERE writer = ? AND seq = 2", (writer,))
    dst.commit()
    dst.close()
    missing = json.loads(run_cli("audit", "verify", "--json", config=config, check=False).stdout)
    assert next(r for r in missing if r["writer"] == writer)["problem"].startswith("missing link: records 2..2")


def test_nothing_is_lost_while_the_database_is_locked(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "locked", {"server": {"key_refresh_interval": 0.2},
                                             "store": {"url": f"sqlite:///{tmp_path}/locked/tollway.db",
                                                       "spill_dir": str(tmp_path / "spill")}})
    try:
        lock = sqlite3.connect(tmp_path / "locked" / "tollway.db", isolation_level=None, timeout=10)
        lock.execute("BEGIN EXCLUSIVE")
        ids = []
        for _ in range(30):
            resp = post(gw, "/v1/messages", BODY, gw.key)
            assert resp.status_code == 200
            ids.append(resp.headers["request-id"])
        deadline = time.monotonic() + 15
        spill = tmp_path / "spill" / "audit.spill.jsonl"
        while time.monotonic() < deadline and not spill.exists():
            time.sleep(0.2)
        assert spill.exists(), "the writer should have spilled while the database was locked"
        lock.execute("ROLLBACK")
        lock.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and spill.exists():
            time.sleep(0.2)
        assert not spill.exists(), "the spill file should be replayed once the database is back"
    finally:
        gw.stop()
    exported = [json.loads(line) for line in gw.cli("audit", "export").stdout.splitlines()]
    per_request = [r["request_id"] for r in exported if r["kind"] == "request"]
    assert sorted(i for i in per_request if i in ids) == sorted(ids)
    assert len(per_request) == len(set(per_request))
    assert all(r["ok"] for r in json.loads(gw.cli("audit", "verify", "--json").stdout))
    usage = sqlite3.connect(tmp_path / "locked" / "tollway.db").execute(
        "SELECT count(*) FROM usage WHERE request_id IN ({})".format(",".join("?" * len(ids))), ids).fetchone()[0]
    assert usage == 30


def test_sigterm_drains_the_queues(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "drain", {"server": {"key_refresh_interval": 0.2}})
    ids = [post(gw, "/v1/messages", BODY, gw.key).headers["request-id"] for _ in range(20)]
    gw.proc.send_signal(signal.SIGTERM)
    try:
        gw.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        raise
    exported = {json.loads(line)["request_id"] for line in gw.cli("audit", "export").stdout.splitlines()
                if '"kind":"request"' in line}
    assert set(ids) <= exported


def test_prune_keeps_the_chain_verifiable(gw: Gateway, admin_key: str) -> None:
    for _ in range(3):
        post(gw, "/v1/messages", BODY, gw.key)
    records(gw, admin_key, 3, kind="request")
    # An absolute cut-off between the records written and the next request: a span (`6s`) would
    # be counted back from whenever the CLI got going, which on a loaded machine is seconds later,
    # so the record that must stay needed seconds of margin. The payload cut-off is a span, so
    # both forms `--older-than` takes are parsed.
    cut = datetime.now(UTC)
    kept = post(gw, "/v1/messages", BODY, gw.key).headers["request-id"]
    records(gw, admin_key, request_id=kept)
    out = gw.cli("audit", "prune", "--older-than", cut.isoformat(), "--payloads-older-than", "3650d")
    assert "Pruned" in out.stdout and not out.stdout.startswith("Pruned 0 ")
    assert records(gw, admin_key, request_id=kept), "records newer than the cut-off stay"
    assert all(r["ok"] for r in json.loads(gw.cli("audit", "verify", "--json").stdout))


def test_export_filters_by_time(gw: Gateway) -> None:
    future = gw.cli("audit", "export", "--since", "2999-01-01").stdout
    assert future == ""
    assert gw.cli("audit", "export", "--until", "2999-01-01").stdout.count("\n") >= 1
