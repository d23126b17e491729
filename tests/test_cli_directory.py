"""The users, groups and keys commands, run as an operator runs them: the real `tollway` binary
on a fresh directory (its own SQLite store) per test."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli


def cli(tmp_path: Path, *args: str, config: Path | None = None) -> Any:
    """Run a command with --json in TMP_PATH and return the parsed output."""
    return json.loads(run_cli(*args, "--json", cwd=tmp_path, config=config).stdout)


def fails(tmp_path: Path, *args: str, code: int = 1) -> str:
    """Run a command that must fail with CODE; return its stderr, which must hold a message, not a traceback."""
    proc = run_cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stderr.strip() and "Traceback" not in proc.stderr
    return proc.stderr


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- groups --------------------------------------------------------------------------------


def test_the_builtin_default_group_exists_on_a_new_store(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "first")  # a change creates the store (a read refuses: test_cli_store.py)
    groups = cli(tmp_path, "groups", "list")
    assert [(g["id"], g["name"], g["grants"]) for g in groups] == [("grp_default", "default", ["*"])]
    assert cli(tmp_path, "groups", "get", "default")["id"] == "grp_default"
    assert "grp_default" in run_cli("groups", "list", cwd=tmp_path).stdout


def test_groups_create_with_grants_then_grant_and_ungrant(tmp_path: Path) -> None:
    created = cli(tmp_path, "groups", "create", "eng", "--description", "Engineers",
                  "--grant", "claude-*", "--grant", "tollway-mock")
    assert created["id"].startswith("grp_") and created["description"] == "Engineers"
    assert sorted(created["grants"]) == ["claude-*", "tollway-mock"]
    assert sorted(cli(tmp_path, "groups", "grant", "eng", "claude-[0-9]*")["grants"]) == [
        "claude-*", "claude-[0-9]*", "tollway-mock"]
    assert cli(tmp_path, "groups", "ungrant", created["id"], "claude-*")["grants"] == ["claude-[0-9]*", "tollway-mock"]
    # A glob with brackets is shown as written, not eaten as table markup.
    assert "claude-[0-9]*" in run_cli("groups", "get", "eng", cwd=tmp_path).stdout
    assert "has no grant" in fails(tmp_path, "groups", "ungrant", "eng", "claude-*")


def test_groups_update_renames_and_changes_the_description(tmp_path: Path) -> None:
    gid = cli(tmp_path, "groups", "create", "eng")["id"]
    updated = cli(tmp_path, "groups", "update", "eng", "--name", "platform", "--description", "Platform team")
    assert (updated["id"], updated["name"], updated["description"]) == (gid, "platform", "Platform team")
    assert cli(tmp_path, "groups", "get", "platform")["id"] == gid
    fails(tmp_path, "groups", "get", "eng")


def test_groups_add_and_remove_members(tmp_path: Path) -> None:
    cli(tmp_path, "groups", "create", "eng")
    alice = cli(tmp_path, "users", "create", "alice")["id"]
    assert cli(tmp_path, "groups", "add-member", "eng", "alice")["members"] == [alice]
    assert "already in group" in fails(tmp_path, "groups", "add-member", "eng", alice)
    shown = run_cli("groups", "get", "eng", cwd=tmp_path).stdout
    assert "alice" in shown  # members by name in the table
    assert cli(tmp_path, "users", "get", "alice")["groups"] == [cli(tmp_path, "groups", "get", "eng")["id"]]
    assert cli(tmp_path, "groups", "remove-member", "eng", "alice")["members"] == []
    assert "not in group" in fails(tmp_path, "groups", "remove-member", "eng", "alice")


def test_deleting_a_group_that_owns_an_active_key_exits_1(tmp_path: Path) -> None:
    cli(tmp_path, "groups", "create", "svc")
    key = cli(tmp_path, "keys", "create", "--name", "bot", "--group", "svc")
    assert "active keys" in fails(tmp_path, "groups", "delete", "svc")
    assert cli(tmp_path, "groups", "get", "svc")["name"] == "svc"
    run_cli("keys", "revoke", key["id"], cwd=tmp_path)
    assert cli(tmp_path, "groups", "delete", "svc")["deleted"] is True
    fails(tmp_path, "groups", "get", "svc")


def test_the_default_group_cannot_be_deleted(tmp_path: Path) -> None:
    assert "cannot be deleted" in fails(tmp_path, "groups", "delete", "default")


# -- users ---------------------------------------------------------------------------------


def test_users_create_with_groups_then_get_and_list(tmp_path: Path) -> None:
    eng = cli(tmp_path, "groups", "create", "eng")["id"]
    ops = cli(tmp_path, "groups", "create", "ops")["id"]
    alice = cli(tmp_path, "users", "create", "alice", "--email", "alice@example.com", "--group", "eng",
                "--group", ops)
    assert alice["id"].startswith("usr_") and alice["email"] == "alice@example.com"
    assert sorted(alice["groups"]) == sorted([eng, ops]) and alice["disabled"] is False
    bob = cli(tmp_path, "users", "create", "bob")
    assert cli(tmp_path, "users", "get", alice["id"])["name"] == "alice"
    assert cli(tmp_path, "users", "get", "bob")["id"] == bob["id"]
    assert [u["name"] for u in cli(tmp_path, "users", "list")] == ["alice", "bob"]
    assert [u["name"] for u in cli(tmp_path, "users", "list", "--group", "ops")] == ["alice"]
    table = run_cli("users", "list", cwd=tmp_path).stdout
    assert alice["id"] in table and "alice@example.com" in table and "eng, ops" in table


def test_users_create_with_a_taken_name_exits_1(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    assert "already exists" in fails(tmp_path, "users", "create", "alice")
    assert len(cli(tmp_path, "users", "list")) == 1


def test_users_create_with_an_unknown_group_exits_1_and_creates_no_user(tmp_path: Path) -> None:
    assert "no group nope" in fails(tmp_path, "users", "create", "carol", "--group", "nope")
    assert cli(tmp_path, "users", "list") == []


def test_users_update_changes_name_and_email(tmp_path: Path) -> None:
    uid = cli(tmp_path, "users", "create", "alice", "--email", "a@example.com")["id"]
    updated = cli(tmp_path, "users", "update", "alice", "--name", "alice2", "--email", "a2@example.com")
    assert (updated["id"], updated["name"], updated["email"]) == (uid, "alice2", "a2@example.com")
    assert cli(tmp_path, "users", "update", uid, "--email", "a3@example.com")["name"] == "alice2"


def test_users_update_to_a_taken_name_exits_1(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    cli(tmp_path, "users", "create", "bob")
    assert "already has that name" in fails(tmp_path, "users", "update", "bob", "--name", "alice")
    assert cli(tmp_path, "users", "get", "bob")["name"] == "bob"


def test_users_disable_and_enable_and_the_list_filters(tmp_path: Path) -> None:
    cli(tmp_path, "users", "create", "alice")
    cli(tmp_path, "users", "create", "bob")
    assert cli(tmp_path, "users", "disable", "alice")["disabled"] is True
    assert [u["name"] for u in cli(tmp_path, "users", "list", "--disabled")] == ["alice"]
    assert [u["name"] for u in cli(tmp_path, "users", "list", "--enabled")] == ["bob"]
    assert cli(tmp_path, "users", "enable", "alice")["disabled"] is False
    assert cli(tmp_path, "users", "list", "--disabled") == []


@pytest.mark.parametrize("args, message", [
    (("users", "get", "ghost"), "no user ghost"),
    (("users", "update", "ghost", "--name", "x"), "no user ghost"),
    (("users", "disable", "ghost"), "no user ghost"),
    (("users", "list", "--group", "ghost"), "no group ghost"),
    (("groups", "get", "ghost"), "no group ghost"),
    (("groups", "delete", "ghost"), "no group ghost"),
    (("groups", "grant", "ghost", "*"), "no group ghost"),
    (("groups", "add-member", "default", "ghost"), "no user ghost"),
    (("keys", "get", "key_ghost"), "no key key_ghost"),
    (("keys", "revoke", "key_ghost"), "no key key_ghost"),
    (("keys", "rotate", "key_ghost"), "no key key_ghost"),
    (("keys", "create", "--name", "k", "--user", "ghost"), "no user ghost"),
    (("keys", "list", "--group", "ghost"), "no group ghost"),
])
def test_not_found_exits_1_with_a_message(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    cli(tmp_path, "users", "create", "someone")  # the store exists; only the row is missing
    assert message in fails(tmp_path, *args)


# -- keys ----------------------------------------------------------------------------------


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
