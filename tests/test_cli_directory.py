"""The users and groups commands (and what each command says when a row is missing), run as an
operator runs them: the real `tollway` binary on a fresh directory (its own SQLite store) per
test. The keys commands are in test_cli_keys.py (a file per subject, so parallel workers share
the CLI's start-up cost)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(scope="module")
def store_with_someone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the not-found cases: it exists, only the rows asked for are missing (a
    refused command changes nothing, so the cases cannot see each other)."""
    workdir = tmp_path_factory.mktemp("not-found")
    cli(workdir, "users", "create", "someone")
    return workdir


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
def test_not_found_exits_1_with_a_message(store_with_someone: Path, args: tuple[str, ...], message: str) -> None:
    assert message in fails(store_with_someone, *args)
