"""The keys commands, run as an operator runs them: the real `tollway` binary on a fresh directory
(its own SQLite store) per test. (Users and groups: test_cli_directory.py.)"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli
from tests.test_cli_directory import cli, fails, when


def test_keys_create_without_owner_belongs_to_the_default_group(tmp_path: Path) -> None:
    key = cli(tmp_path, "keys", "create", "--name", "ci")
    assert set(key) == {"id", "name", "key", "kind", "user_id", "group_id", "models", "expires_at"}
    assert key["key"].startswith("tw-") and key["name"] == "ci"
    assert (key["kind"], key["user_id"], key["group_id"], key["models"], key["expires_at"]) == (
        "data", None, "grp_default", None, None)


def test_keys_create_for_a_user_with_models_and_expiry(tmp_path: Path) -> None:
    uid = cli(tmp_path, "users", "create", "alice")["id"]
    key = cli(tmp_path, "keys", "create", "--name", "laptop", "--user", "alice", "--models", "claude-*",
              "--models", "tollway-mock", "--expires", "30d")
    assert (key["user_id"], key["group_id"], key["models"]) == (uid, None, ["claude-*", "tollway-mock"])
    assert abs(when(key["expires_at"]) - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    got = cli(tmp_path, "keys", "get", key["id"])
    assert (got["user_id"], got["models"], got["status"]) == (uid, ["claude-*", "tollway-mock"], "active")
    assert key["key"] not in json.dumps(got)


def test_keys_create_for_a_group_by_name(tmp_path: Path) -> None:
    gid = cli(tmp_path, "groups", "create", "svc")["id"]
    key = cli(tmp_path, "keys", "create", "--name", "bot", "--group", "svc")
    assert (key["kind"], key["user_id"], key["group_id"]) == ("data", None, gid)


@pytest.mark.parametrize("spec, expected", [
    ("12h", lambda now: now + timedelta(hours=12)),
    ("45m", lambda now: now + timedelta(minutes=45)),
    ("90s", lambda now: now + timedelta(seconds=90)),
    ("2031-01-01", lambda now: datetime(2031, 1, 1, tzinfo=UTC)),
    ("2031-01-01T12:00:00+02:00", lambda now: datetime(2031, 1, 1, 10, tzinfo=UTC)),
])
def test_keys_create_expires_accepts_durations_and_iso_dates(tmp_path: Path, spec: str, expected: Any) -> None:
    key = cli(tmp_path, "keys", "create", "--name", "k", "--expires", spec)
    assert abs(when(key["expires_at"]) - expected(datetime.now(UTC))) < timedelta(minutes=1)


@pytest.mark.parametrize("spec", ["soon", "2001-01-01", "30x"])
def test_keys_create_refuses_a_bad_or_past_expiry(tmp_path: Path, spec: str) -> None:
    assert "--expires" in fails(tmp_path, "keys", "create", "--name", "k", "--expires", spec, code=2)
    assert not (tmp_path / "tollway.db").exists()  # refused before the store was even opened: no key


def test_keys_create_admin_has_no_owner(tmp_path: Path) -> None:
    key = cli(tmp_path, "keys", "create", "--name", "ops", "--admin")
    assert (key["kind"], key["user_id"], key["group_id"], key["models"]) == ("admin", None, None, None)


@pytest.mark.parametrize("extra", [("--user", "alice"), ("--group", "default"), ("--models", "tollway-mock")])
def test_keys_create_admin_refuses_owner_and_models(tmp_path: Path, extra: tuple[str, str]) -> None:
    cli(tmp_path, "users", "create", "alice")
    assert "--admin" in fails(tmp_path, "keys", "create", "--name", "ops", "--admin", *extra, code=2)
    assert cli(tmp_path, "keys", "list") == []


def test_keys_create_refuses_both_user_and_group(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    assert "not both" in fails(tmp_path, "keys", "create", "--name", "k", "--user", "alice", "--group", "default",
                               code=2)


def test_keys_list_filters_by_user_group_and_admin(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    cli(tmp_path, "groups", "create", "svc")
    mine = cli(tmp_path, "keys", "create", "--name", "mine", "--user", "alice")["id"]
    bot = cli(tmp_path, "keys", "create", "--name", "bot", "--group", "svc")["id"]
    plain = cli(tmp_path, "keys", "create", "--name", "plain")["id"]
    ops = cli(tmp_path, "keys", "create", "--name", "ops", "--admin")["id"]
    ids = lambda *args: [k["id"] for k in cli(tmp_path, "keys", "list", *args)]  # noqa: E731
    assert ids() == [mine, bot, plain, ops]
    assert ids("--user", "alice") == [mine]
    assert ids("--group", "svc") == [bot]
    assert ids("--group", "default") == [plain]
    assert ids("--admin") == [ops]


def test_keys_list_table_shows_owner_models_and_status(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    cli(tmp_path, "keys", "create", "--name", "mine", "--user", "alice", "--models", "tollway-mock")
    short = cli(tmp_path, "keys", "create", "--name", "short", "--expires", "1s")["id"]
    gone = cli(tmp_path, "keys", "create", "--name", "gone")["id"]
    run_cli("keys", "revoke", gone, cwd=tmp_path)
    time.sleep(1.2)
    table = run_cli("keys", "list", cwd=tmp_path).stdout
    for header in ("id", "name", "prefix", "kind", "owner", "models", "expires", "status"):
        assert header in table
    assert "user alice" in table and "group default" in table and "tollway-mock" in table
    assert {k["id"]: k["status"] for k in cli(tmp_path, "keys", "list")}[short] == "expired"
    assert "expired" in table and "revoked" in table and "active" in table


def test_keys_rotate_returns_a_new_secret_and_the_old_key_expires_within_the_grace(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    old = cli(tmp_path, "keys", "create", "--name", "laptop", "--user", "alice", "--models", "tollway-mock")
    before = datetime.now(UTC)
    rotated = cli(tmp_path, "keys", "rotate", old["id"], "--grace", "1h")
    assert set(rotated) == {"id", "key", "replaces", "old_key_expires_at"}
    assert rotated["replaces"] == old["id"] and rotated["id"] != old["id"]
    assert rotated["key"].startswith("tw-") and rotated["key"] != old["key"]
    ends = when(rotated["old_key_expires_at"])
    assert before + timedelta(minutes=59) < ends <= datetime.now(UTC) + timedelta(hours=1)
    new = cli(tmp_path, "keys", "get", rotated["id"])
    assert (new["name"], new["user_id"], new["models"]) == ("laptop", old["user_id"], ["tollway-mock"])
    previous = cli(tmp_path, "keys", "get", old["id"])
    assert previous["replaced_by"] == rotated["id"] and when(previous["expires_at"]) == ends
    assert rotated["key"] not in json.dumps(cli(tmp_path, "keys", "list"))


def test_keys_rotate_grace_defaults_to_the_config(tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/t.db"}, "key_rotation_grace": 600}))
    old = cli(tmp_path, "keys", "create", "--name", "k", config=config)["id"]
    rotated = cli(tmp_path, "keys", "rotate", old, config=config)
    expected = datetime.now(UTC) + timedelta(minutes=10)
    assert abs(when(rotated["old_key_expires_at"]) - expected) < timedelta(minutes=1)


def test_keys_rotate_prints_the_new_secret_once(tmp_path: Path) -> None:
    old = cli(tmp_path, "keys", "create", "--name", "k")["id"]
    out = run_cli("keys", "rotate", old, cwd=tmp_path).stdout
    secrets = [word for word in out.split() if word.startswith("tw-")]
    assert len(secrets) == 1 and len(secrets[0]) >= 40
    new_id = cli(tmp_path, "keys", "get", old)["replaced_by"]
    assert new_id in out and secrets[0] not in run_cli("keys", "get", new_id, cwd=tmp_path).stdout


def test_keys_rotate_refuses_a_revoked_key(tmp_path: Path) -> None:
    old = cli(tmp_path, "keys", "create", "--name", "k")["id"]
    run_cli("keys", "revoke", old, cwd=tmp_path)
    assert "only an active key" in fails(tmp_path, "keys", "rotate", old)


def test_keys_revoke_twice_exits_1(tmp_path: Path) -> None:
    key = cli(tmp_path, "keys", "create", "--name", "k")["id"]
    assert cli(tmp_path, "keys", "revoke", key)["status"] == "revoked"
    assert "already revoked" in fails(tmp_path, "keys", "revoke", key)
