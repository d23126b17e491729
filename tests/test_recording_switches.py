"""`audit.enabled` and `metering.enabled`: off means nothing recorded, and nothing else changes.

They exist so the benchmark can measure governance off against on, and for throwaway gateways;
a governed gateway keeps both on (the defaults). Budgets need the ledger, so turning metering
off while a budget is configured is refused at start-up.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anthropic

from tests.conftest import run_cli, start_gateway


def _count(db: Path, table: str) -> int:
    return int(sqlite3.connect(db).execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_recording_off_answers_and_keeps_no_records(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, {"audit": {"enabled": False}, "metering": {"enabled": False}})
    try:
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        msg = client.messages.create(model="tollway-mock", max_tokens=8,
                                     messages=[{"role": "user", "content": "hello"}])
        assert msg.content and msg.usage.output_tokens > 0
        with client.messages.stream(model="tollway-mock", max_tokens=8,
                                    messages=[{"role": "user", "content": "hello"}]) as stream:
            assert stream.get_final_message().stop_reason in ("end_turn", "max_tokens")
    finally:
        gw.stop()
    db = tmp_path / "tollway.db"
    assert _count(db, "usage") == 0
    assert _count(db, "audit_log") == 0  # not even the CLI's `keys create`


def test_recording_on_by_default_keeps_both(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, {})
    try:
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        client.messages.create(model="tollway-mock", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    finally:
        gw.stop()
    db = tmp_path / "tollway.db"
    assert _count(db, "usage") == 1
    assert _count(db, "audit_log") == 2  # the request and the gateway's closing record


def test_a_budget_without_the_ledger_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text("metering: {enabled: false}\nlimits: {defaults: {user: {budget_usd: 5}}}\n")
    proc = run_cli("config", "check", config=config, check=False)
    assert proc.returncode != 0
    assert "limits.defaults.user.budget_usd needs metering.enabled: true" in proc.stdout + proc.stderr
