"""Identity and model access through real HTTP: admin API set-up, the stock SDK on the data plane.

Runs on SQLite, and on PostgreSQL too when TOLLWAY_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator
from tests.stores import store_url

BODY: dict[str, Any] = {"max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]}


def access_config(upstream_url: str) -> dict[str, Any]:
    emu = {"provider": "anthropic", "base_url": upstream_url, "api_key": "${TEST_UPSTREAM_KEY}"}
    return {
        "server": {"key_refresh_interval": 0.5},
        "key_rotation_grace": 3600,
        "models": [
            {"id": "tollway-mock", "upstream": {"provider": "mock"}},
            {"id": "claude-sonnet-4-5-20250929", "upstream": emu},
            {"id": "claude-haiku-4-5", "upstream": {**emu, "model": "claude-haiku-4-5-20251001"}},
        ],
        "aliases": {"claude-3-5-haiku-*": "claude-haiku-4-5", "sonnet": "claude-sonnet-4-5-20250929"},
    }


class Admin:
    """A thin client for the admin API with an admin key made by the CLI."""

    def __init__(self, gw: Gateway) -> None:
        import json

        created = json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)
        self.key = created["key"]
        self.http = httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"x-api-key": self.key}, timeout=10)

    def __call__(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, **kwargs)
        assert resp.status_code == expect, resp.text
        return resp.json() if resp.content else None


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gw(request: pytest.FixtureRequest, emulator: AnthropicEmulator,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp(f"access-{request.param}")
    with store_url(request.param, workdir) as url:
        config = {**access_config(emulator.base_url), "store": {"url": url}}
        gateway = start_gateway(workdir, config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
        yield gateway
        gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> Admin:
    return Admin(gw)


@pytest.fixture(scope="module")
def org(admin: Admin) -> dict[str, Any]:
    """Two groups, two users (one in both groups), and keys of every kind."""
    admin("POST", "/groups", 201, json={"name": "claude-users", "grants": ["claude-*"]})
    admin("POST", "/groups", 201, json={"name": "mockers", "grants": ["tollway-mock"]})
    ann = admin("POST", "/users", 201, json={"name": "ann", "email": "ann@example.com", "groups": ["claude-users"]})
    bob = admin("POST", "/users", 201, json={"name": "bob", "groups": ["claude-users", "mockers"]})
    keys = {
        "ann": admin("POST", "/keys", 201, json={"name": "ann-laptop", "user_id": ann["id"]}),
        "bob": admin("POST", "/keys", 201, json={"name": "bob-laptop", "user_id": "bob"}),
        "bob_narrow": admin("POST", "/keys", 201, json={"name": "bob-ci", "user_id": "bob",
                                                         "models": ["tollway-mock"]}),
        "service": admin("POST", "/keys", 201, json={"name": "svc", "group_id": "mockers"}),
    }
    return {"ann": ann, "bob": bob, "keys": keys}


def sdk(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)


def wait_for_status(fn: Any, status: int, seconds: float = 3.0) -> int:
    deadline = time.monotonic() + seconds
    got = fn()
    while got != status and time.monotonic() < deadline:
        time.sleep(0.05)
        got = fn()
    return int(got)


def messages_status(gw: Gateway, key: str, model: str = "tollway-mock") -> int:
    return httpx.post(gw.base_url + "/v1/messages", json={**BODY, "model": model},
                      headers={"x-api-key": key}).status_code


def test_user_may_use_the_union_of_group_grants(gw: Gateway, org: dict[str, Any]) -> None:
    bob = sdk(gw, org["keys"]["bob"]["key"])
    assert bob.messages.create(model="tollway-mock", **BODY).stop_reason == "max_tokens"
    assert bob.messages.create(model="claude-sonnet-4-5-20250929", **BODY).content
    ann = sdk(gw, org["keys"]["ann"]["key"])
    with pytest.raises(anthropic.PermissionDeniedError) as exc:
        ann.messages.create(model="tollway-mock", **BODY)
    assert exc.value.body["error"]["type"] == "permission_error"


@pytest.mark.parametrize("route", ["messages", "count_tokens", "model"])
def test_model_outside_the_grants_is_403_on_every_route(gw: Gateway, org: dict[str, Any], route: str) -> None:
    ann = sdk(gw, org["keys"]["ann"]["key"])
    with pytest.raises(anthropic.PermissionDeniedError):
        if route == "messages":
            ann.messages.create(model="tollway-mock", **BODY)
        elif route == "count_tokens":
            ann.messages.count_tokens(model="tollway-mock", messages=BODY["messages"])
        else:
            ann.models.retrieve("tollway-mock")
    # An unknown model stays a 404, whatever the grants.
    with pytest.raises(anthropic.NotFoundError):
        ann.messages.create(model="no-such-model", **BODY)


def test_models_list_shows_only_what_the_key_may_use(gw: Gateway, org: dict[str, Any]) -> None:
    ids = {name: [m.id for m in sdk(gw, k["key"]).models.list()] for name, k in org["keys"].items()}
    assert ids["ann"] == ["claude-sonnet-4-5-20250929", "claude-haiku-4-5"]
    assert ids["bob"] == ["tollway-mock", "claude-sonnet-4-5-20250929", "claude-haiku-4-5"]
    assert ids["bob_narrow"] == ["tollway-mock"]
    assert ids["service"] == ["tollway-mock"]


def test_a_key_narrows_its_owners_grants(gw: Gateway, org: dict[str, Any]) -> None:
    narrow = org["keys"]["bob_narrow"]["key"]
    assert messages_status(gw, narrow, "tollway-mock") == 200
    assert messages_status(gw, narrow, "claude-sonnet-4-5-20250929") == 403


def test_service_key_acts_as_its_group(gw: Gateway, org: dict[str, Any]) -> None:
    svc = org["keys"]["service"]["key"]
    assert messages_status(gw, svc, "tollway-mock") == 200
    assert messages_status(gw, svc, "claude-haiku-4-5") == 403


@pytest.mark.parametrize("stream", [False, True])
def test_alias_resolves_and_reports_the_requested_id(gw: Gateway, org: dict[str, Any], upstream: AnthropicEmulator,
                                                     stream: bool) -> None:
    ann = sdk(gw, org["keys"]["ann"]["key"])
    if stream:
        with ann.messages.stream(model="claude-3-5-haiku-20241022", **BODY) as s:
            msg = s.get_final_message()
    else:
        msg = ann.messages.create(model="claude-3-5-haiku-20241022", **BODY)
    assert msg.model == "claude-3-5-haiku-20241022"
    assert upstream.received[-1].json["model"] == "claude-haiku-4-5-20251001"
    exact = ann.messages.create(model="sonnet", **BODY)
    assert exact.model == "sonnet"
    assert upstream.received[-1].json["model"] == "claude-sonnet-4-5-20250929"


def test_alias_access_is_decided_on_the_catalogue_model(gw: Gateway, org: dict[str, Any]) -> None:
    assert messages_status(gw, org["keys"]["service"]["key"], "claude-3-5-haiku-20241022") == 403


def test_admin_key_is_refused_on_the_data_plane(gw: Gateway, admin: Admin) -> None:
    resp = httpx.post(gw.base_url + "/v1/messages", json={**BODY, "model": "tollway-mock"},
                      headers={"x-api-key": admin.key})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"


def test_data_key_is_refused_on_the_control_plane(gw: Gateway, org: dict[str, Any]) -> None:
    resp = httpx.get(gw.base_url + "/admin/v1/users", headers={"x-api-key": org["keys"]["bob"]["key"]})
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert httpx.get(gw.base_url + "/admin/v1/users").status_code == 401


def test_revoked_key_fails_on_its_next_request(gw: Gateway, admin: Admin) -> None:
    key = admin("POST", "/keys", 201, json={"name": "soon-revoked"})
    assert messages_status(gw, key["key"]) == 200
    assert admin("POST", f"/keys/{key['id']}/revoke")["status"] == "revoked"
    assert messages_status(gw, key["key"]) == 401
    admin("POST", f"/keys/{key['id']}/revoke", 409)


def test_expired_key_fails(gw: Gateway, admin: Admin) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    key = admin("POST", "/keys", 201, json={"name": "short", "expires_at": expires})
    assert messages_status(gw, key["key"]) == 200
    time.sleep(1.6)
    assert messages_status(gw, key["key"]) == 401
    assert admin("GET", f"/keys/{key['id']}")["status"] == "expired"


def test_rotated_key_old_secret_works_during_grace_only(gw: Gateway, admin: Admin) -> None:
    old = admin("POST", "/keys", 201, json={"name": "rotating"})
    rotated = admin("POST", f"/keys/{old['id']}/rotate", json={"grace_seconds": 1.5})
    new_secret = rotated["key"]["key"]
    assert rotated["replaced"]["replaced_by"] == rotated["key"]["id"]
    assert messages_status(gw, old["key"]) == 200
    assert messages_status(gw, new_secret) == 200
    time.sleep(1.6)
    assert messages_status(gw, old["key"]) == 401
    assert messages_status(gw, new_secret) == 200


def test_rotation_without_body_uses_the_configured_grace(gw: Gateway, admin: Admin) -> None:
    old = admin("POST", "/keys", 201, json={"name": "rotating-default"})
    rotated = admin("POST", f"/keys/{old['id']}/rotate")
    ends = datetime.fromisoformat(rotated["replaced"]["expires_at"])
    assert timedelta(minutes=59) < ends - datetime.now(UTC) <= timedelta(hours=1)


def test_disabled_user_keys_fail_and_come_back(gw: Gateway, admin: Admin) -> None:
    user = admin("POST", "/users", 201, json={"name": "carol", "groups": ["mockers"]})
    key = admin("POST", "/keys", 201, json={"name": "carol-key", "user_id": user["id"]})
    assert messages_status(gw, key["key"]) == 200
    admin("POST", f"/users/{user['id']}/disable")
    assert messages_status(gw, key["key"]) == 401
    admin("POST", f"/users/{user['id']}/enable")
    assert messages_status(gw, key["key"]) == 200


def test_grant_changes_take_effect(gw: Gateway, admin: Admin) -> None:
    group = admin("POST", "/groups", 201, json={"name": "late", "grants": []})
    key = admin("POST", "/keys", 201, json={"name": "late-svc", "group_id": group["id"]})
    assert messages_status(gw, key["key"]) == 403
    admin("POST", f"/groups/{group['id']}/grants", json={"pattern": "tollway-*"})
    assert messages_status(gw, key["key"]) == 200
    admin("DELETE", f"/groups/{group['id']}/grants", params={"pattern": "tollway-*"})
    assert messages_status(gw, key["key"]) == 403


def test_admin_api_errors_and_paging(gw: Gateway, admin: Admin) -> None:
    assert admin("GET", "/users/nobody", 404)["error"]["type"] == "not_found"
    assert admin("POST", "/groups", 409, json={"name": "mockers"})["error"]["type"] == "conflict"
    assert admin("POST", "/groups", 422, json={"nam": "x"})["error"]["type"] == "invalid_request_error"
    assert admin("POST", "/keys", 404, json={"name": "x", "user_id": "nobody"})["error"]["type"] == "not_found"
    assert admin("POST", "/keys", 409, json={"name": "x", "kind": "admin", "group_id": "mockers"})
    admin("DELETE", "/groups/mockers", 409)
    first = admin("GET", "/users", params={"limit": 1})
    assert len(first["data"]) == 1 and first["has_more"]
    rest = admin("GET", "/users", params={"limit": 100, "after": first["last_id"]})
    assert first["data"][0]["id"] not in [u["id"] for u in rest["data"]]
    names = [u["name"] for u in first["data"] + rest["data"]]
    assert {"ann", "bob"} <= set(names)
    listed = admin("GET", "/keys", params={"limit": 100})
    assert all("key" not in k for k in listed["data"])
    assert admin("GET", "/openapi.json")["info"]["title"] == "Tollway admin API"


def test_text_filters_with_control_characters_are_422_not_500(gw: Gateway, admin: Admin) -> None:
    """PostgreSQL refuses a NUL in a string: a filter carrying one must be refused as bad input
    before it reaches SQL, on every route that filters usage by text (schemathesis found /usage)."""
    for path, name in (("/usage", "model"), ("/usage", "key_id"), ("/usage", "user"), ("/usage", "group"),
                       ("/audit", "model"), ("/insights/requests", "model")):
        for bad in ("d\x00x", "a\nb"):
            body = admin("GET", path, 422, params={name: bad})
            assert body["error"]["type"] == "invalid_request_error", (path, name, body)
    # A well-formed filter still answers (a model nobody asked for: no rows), and an empty one is no filter.
    assert admin("GET", "/usage", params={"user": "", "group": "", "key_id": ""})["object"] == "usage_report"
    assert admin("GET", "/usage", params={"by": "model", "model": "never-requested-model"})["data"] == []


def test_changes_reach_another_process_within_two_seconds(gw: Gateway, admin: Admin, tmp_path: Path) -> None:
    """Two gateway processes on one database: a change made through one is live on the other."""
    other = start_gateway(tmp_path / "second", {**gw_config(gw)}, env=gw.env)
    try:
        key = admin("POST", "/keys", 201, json={"name": "shared", "group_id": "mockers"})
        assert messages_status(other, key["key"]) == 200
        admin("POST", f"/keys/{key['id']}/revoke")
        started = time.monotonic()
        assert wait_for_status(lambda: messages_status(other, key["key"]), 401, 3.0) == 401
        assert time.monotonic() - started < 2.0
    finally:
        other.stop()


def gw_config(gw: Gateway) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load(gw.config.read_text()))
