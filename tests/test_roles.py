"""Roles on the admin API, through real HTTP against one `tollway serve`: admin keys with each role
(made with `tollway keys create --admin --role …`) and signed-in people whose role comes from the
config's `signin.roles` or is stored on the user. Each role is refused (403 `permission_error`,
audited as a refusal) what it may not do and allowed what it may; every change is audited with
the acting key or person."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator
from tests.oidc_provider import IdpUser, OidcProvider
from tests.signin_flow import CLIENT_ID, CLIENT_SECRET, sign_in, signin_config, start_signin_gateway

API = "/admin/v1"


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        provider.users["ada"] = IdpUser("pw-ada", "ada@example.com", "ada", ["eng-platform"])
        provider.users["gil"] = IdpUser("pw-gil", "gil@example.com", "gil", ["eng-web"])
        provider.users["aud"] = IdpUser("pw-aud", "aud@example.com", "aud", ["audit"])
        provider.users["dev"] = IdpUser("pw-dev", "dev@example.com", "dev", ["eng-web"])
        provider.users["sam"] = IdpUser("pw-sam", "sam@example.com", "sam", ["sales"])
        yield provider


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = signin_config(
        emulator.base_url, idp,
        group_rules=[{"match": "eng-*", "group": "engineering"}, {"match": "sales", "group": "sales"},
                     {"match": "audit", "group": "auditors"}],
        roles=[{"email": "ada@example.com", "role": "org_admin"},
               {"email": "gil@*", "role": "group_admin", "groups": ["engineering"]},
               {"group": "auditors", "role": "auditor"}])
    gateway = start_signin_gateway(tmp_path_factory.mktemp("roles"), config)
    yield gateway
    gateway.stop()


def admin_key(gw: Gateway, name: str, *args: str) -> dict[str, Any]:
    return dict(json.loads(gw.cli("keys", "create", "--name", name, "--admin", *args, "--json").stdout))


@pytest.fixture(scope="module")
def creds(gw: Gateway) -> dict[str, str]:
    """A bearer for each kind of caller."""
    org = admin_key(gw, "org")
    for group in ("engineering", "sales", "auditors"):
        ok(call(gw, org["key"], "POST", "/groups", json={"name": group, "grants": ["*"]}), 201)
    ga = admin_key(gw, "eng-admin", "--role", "group_admin", "--group", "engineering")
    aud = ok(call(gw, org["key"], "POST", "/keys", json={"name": "auditor", "kind": "admin", "role": "auditor"}), 201)
    assert (org["role"], ga["role"], aud["role"]) == ("org_admin", "group_admin", "auditor")
    assert ga["role_groups"] and aud["role_groups"] == []
    people = {name: sign_in(gw, name)["access_token"] for name in ("ada", "gil", "aud", "dev", "sam")}
    return {"org_key": org["key"], "org_key_id": org["id"], "ga_key": ga["key"], "ga_key_id": ga["id"],
            "aud_key": aud["key"], **people}


def call(gw: Gateway, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, gw.base_url + API + path, headers={"authorization": f"Bearer {token}"},
                         timeout=10, **kw)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else None


def refused(resp: httpx.Response) -> str:
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["type"] == "permission_error" and error["message"]
    return str(error["message"])


def ids(page: dict[str, Any]) -> set[str]:
    return {item["id"] for item in page["data"]}


# ----- /me: what the console decides its pages from -------------------------------------------

def test_me_for_each_kind_of_caller(gw: Gateway, creds: dict[str, str]) -> None:
    me = ok(call(gw, creds["org_key"], "GET", "/me"))
    assert me["role"] == "org_admin" and me["user"] is None and me["key_id"] == creds["org_key_id"]
    assert "admin_keys.write" in me["permissions"] and "self.keys" not in me["permissions"] and me["scope"] == "all"
    ga = ok(call(gw, creds["ga_key"], "GET", "/me"))
    assert ga["role"] == "group_admin" and [g["name"] for g in ga["groups"]] == ["engineering"]
    assert ga["scope"] == "groups" and "audit.read" not in ga["permissions"]
    ada = ok(call(gw, creds["ada"], "GET", "/me"))
    assert ada["role"] == "org_admin" and ada["user"]["email"] == "ada@example.com"
    assert ada["key_id"].startswith("tok_") and "self.keys" in ada["permissions"]
    gil = ok(call(gw, creds["gil"], "GET", "/me"))
    assert gil["role"] == "group_admin" and [g["name"] for g in gil["groups"]] == ["engineering"]
    assert ok(call(gw, creds["aud"], "GET", "/me"))["role"] == "auditor"
    dev = ok(call(gw, creds["dev"], "GET", "/me"))
    assert dev["role"] == "developer" and dev["scope"] == "self"
    assert sorted(dev["permissions"]) == ["self.keys", "self.usage"]
    assert dev["user"]["name"] == "dev" and [g["name"] for g in dev["groups"]] == ["engineering"]


def test_a_data_key_and_no_key_do_not_open_the_admin_api(gw: Gateway) -> None:
    assert call(gw, gw.key, "GET", "/me").status_code == 401
    assert httpx.get(gw.base_url + API + "/me").status_code == 401


# ----- developer --------------------------------------------------------------------------------

def test_a_developer_manages_only_their_own_keys(gw: Gateway, creds: dict[str, str]) -> None:
    dev = creds["dev"]
    for method, path in (("GET", "/users"), ("GET", "/keys"), ("GET", "/audit"), ("GET", "/usage"),
                         ("GET", "/limits"), ("GET", "/alerts")):
        refused(call(gw, dev, method, path))
    refused(call(gw, dev, "POST", "/keys", json={"name": "sneaky", "kind": "admin"}))
    created = ok(call(gw, dev, "POST", "/me/keys", json={"name": "laptop"}), 201)
    me = ok(call(gw, dev, "GET", "/me"))
    assert created["user_id"] == me["user"]["id"] and created["kind"] == "data" and created["key"].startswith("tw-")
    assert created["id"] in ids(ok(call(gw, dev, "GET", "/me/keys")))
    # The key works on the data plane as the developer's own.
    models = httpx.get(gw.base_url + "/v1/models", headers={"x-api-key": created["key"]})
    assert models.status_code == 200
    rotated = ok(call(gw, dev, "POST", f"/me/keys/{created['id']}/rotate", json={"grace_seconds": 0}))
    assert rotated["replaced"]["id"] == created["id"]
    ok(call(gw, dev, "POST", f"/me/keys/{rotated['key']['id']}/revoke"))
    # Someone else's key: refused, and the key is untouched.
    other = ok(call(gw, creds["sam"], "POST", "/me/keys", json={"name": "sam's"}), 201)
    refused(call(gw, dev, "POST", f"/me/keys/{other['id']}/revoke"))
    assert ok(call(gw, creds["org_key"], "GET", f"/keys/{other['id']}"))["status"] == "active"
    assert ok(call(gw, dev, "GET", "/me/usage"))["object"] == "usage_report"


def test_an_admin_key_has_no_personal_keys(gw: Gateway, creds: dict[str, str]) -> None:
    refused(call(gw, creds["org_key"], "GET", "/me/keys"))


# ----- auditor ----------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["aud_key", "aud"])
def test_an_auditor_reads_everything_and_changes_nothing(gw: Gateway, creds: dict[str, str], who: str) -> None:
    token = creds[who]
    for path in ("/users", "/groups", "/keys", "/limits", "/usage?by=group", "/usage/requests", "/audit",
                 "/alerts", "/alerts/deliveries"):
        ok(call(gw, token, "GET", path))
    refused(call(gw, token, "POST", "/users", json={"name": f"by-{who}"}))
    refused(call(gw, token, "POST", "/groups", json={"name": f"g-{who}"}))
    refused(call(gw, token, "PUT", "/limits/group/sales", json={"rpm": 5}))
    refused(call(gw, token, "POST", "/keys", json={"name": "x", "group_id": "sales"}))
    refused(call(gw, token, "POST", f"/keys/{creds['org_key_id']}/revoke"))
    refused(call(gw, token, "POST", "/alerts", json={"name": "a", "kind": "budget",
                                                     "webhook_url": "http://127.0.0.1:9/x"}))
    refused(call(gw, token, "PUT", "/users/dev/role", json={"role": "org_admin"}))


# ----- group admin ------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["ga_key", "gil"])
def test_a_group_admin_runs_their_group_only(gw: Gateway, creds: dict[str, str], who: str) -> None:
    token = creds[who]
    users = {u["name"] for u in ok(call(gw, token, "GET", "/users"))["data"]}
    assert "dev" in users and "sam" not in users
    refused(call(gw, token, "GET", "/users/sam"))
    refused(call(gw, token, "POST", "/users/sam/disable"))
    made = ok(call(gw, token, "POST", "/users", json={"name": f"new-{who}", "groups": ["engineering"]}), 201)
    refused(call(gw, token, "POST", "/users", json={"name": f"out-{who}", "groups": ["sales"]}))
    refused(call(gw, token, "POST", "/users", json={"name": f"nogroup-{who}"}))
    assert {g["name"] for g in ok(call(gw, token, "GET", "/groups"))["data"]} == {"engineering"}
    refused(call(gw, token, "GET", "/groups/sales"))
    refused(call(gw, token, "POST", "/groups", json={"name": f"mine-{who}"}))
    refused(call(gw, token, "PUT", "/groups/engineering/grants", json={"patterns": ["*"]}))
    ok(call(gw, token, "DELETE", f"/groups/engineering/members/{made['id']}"))
    ok(call(gw, token, "POST", "/groups/engineering/members", json={"user_id": made["id"]}))
    refused(call(gw, token, "POST", "/groups/sales/members", json={"user_id": made["id"]}))
    key = ok(call(gw, token, "POST", "/keys", json={"name": "svc", "group_id": "engineering"}), 201)
    ok(call(gw, token, "POST", "/keys", json={"name": "personal", "user_id": made["id"]}), 201)
    refused(call(gw, token, "POST", "/keys", json={"name": "svc", "group_id": "sales"}))
    refused(call(gw, token, "POST", "/keys", json={"name": "root", "kind": "admin"}))
    sales_key = ok(call(gw, creds["org_key"], "POST", "/keys", json={"name": "sales-svc", "group_id": "sales"}), 201)
    refused(call(gw, token, "POST", f"/keys/{sales_key['id']}/revoke"))
    refused(call(gw, token, "GET", f"/keys/{sales_key['id']}"))
    listed = ids(ok(call(gw, token, "GET", "/keys?limit=100")))
    assert key["id"] in listed and sales_key["id"] not in listed and creds["org_key_id"] not in listed
    ok(call(gw, token, "PUT", "/limits/group/engineering", json={"rpm": 1000}))
    ok(call(gw, token, "PUT", f"/limits/key/{key['id']}", json={"rpm": 100}))
    refused(call(gw, token, "PUT", "/limits/group/sales", json={"rpm": 1}))
    assert ok(call(gw, token, "GET", "/usage?by=group"))["object"] == "usage_report"
    refused(call(gw, token, "GET", "/usage?group=sales"))
    refused(call(gw, token, "GET", "/audit"))
    refused(call(gw, token, "GET", "/alerts"))
    ok(call(gw, token, "POST", f"/keys/{key['id']}/revoke"))


def test_a_group_admin_cannot_take_over_people_with_roles(gw: Gateway, creds: dict[str, str]) -> None:
    org, ga = creds["org_key"], creds["ga_key"]
    boss = ok(call(gw, org, "POST", "/users", json={"name": "eng-boss", "groups": ["engineering"]}), 201)
    ok(call(gw, org, "PUT", f"/users/{boss['id']}/role", json={"role": "org_admin"}))
    refused(call(gw, ga, "POST", f"/users/{boss['id']}/disable"))
    refused(call(gw, ga, "PATCH", f"/users/{boss['id']}", json={"name": "renamed"}))
    refused(call(gw, ga, "POST", "/keys", json={"name": "as-boss", "user_id": boss["id"]}))
    # Sign-in adopts users by email: a group admin may not point someone's email elsewhere.
    refused(call(gw, ga, "PATCH", "/users/dev", json={"email": "mine@example.com"}))
    assert ok(call(gw, ga, "PATCH", "/users/dev", json={"name": "dev"}))["email"] == "dev@example.com"
    assert not ok(call(gw, org, "GET", f"/users/{boss['id']}"))["disabled"]


# ----- org admin, stored roles, audit -----------------------------------------------------------

def test_an_org_admin_person_gives_a_stored_role_which_beats_the_config(gw: Gateway, creds: dict[str, str]) -> None:
    refused(call(gw, creds["gil"], "PUT", "/users/sam/role", json={"role": "auditor"}))
    refused(call(gw, creds["gil"], "PATCH", "/users/dev", json={"role": "org_admin"}))
    user = ok(call(gw, creds["ada"], "PUT", "/users/sam/role", json={"role": "auditor"}))
    assert user["role"] == "auditor"
    assert ok(call(gw, creds["sam"], "GET", "/me"))["role"] == "auditor"
    ok(call(gw, creds["sam"], "GET", "/audit"))
    ok(call(gw, creds["ada"], "PATCH", "/users/sam", json={"role": None}))
    assert ok(call(gw, creds["sam"], "GET", "/me"))["role"] == "developer"
    cli = json.loads(gw.cli("users", "set-role", "sam", "group_admin", "--group", "sales", "--json").stdout)
    assert cli["role"] == "group_admin"
    me = ok(call(gw, creds["sam"], "GET", "/me"))
    assert me["role"] == "group_admin" and [g["name"] for g in me["groups"]] == ["sales"]
    assert ok(call(gw, creds["ada"], "PUT", "/users/sam/role", json={"role": None}))["role"] is None
    ok(call(gw, creds["ada"], "POST", "/groups", json={"name": "made-by-ada"}), 201)


def test_changes_and_refusals_are_audited_with_the_actor(gw: Gateway, creds: dict[str, str]) -> None:
    made = ok(call(gw, creds["ga_key"], "POST", "/users", json={"name": "audited", "groups": ["engineering"]}), 201)
    refused(call(gw, creds["dev"], "POST", "/users", json={"name": "nope"}))
    dev_id = ok(call(gw, creds["dev"], "GET", "/me"))["user"]["id"]
    key = ok(call(gw, creds["dev"], "POST", "/me/keys", json={"name": "audited-key"}), 201)
    org = creds["org_key"]

    def records(kind: str) -> list[dict[str, Any]]:
        return list(ok(call(gw, org, "GET", f"/audit?kind={kind}&limit=100"))["data"])

    # The audit log is written behind the request: poll until the records are in.
    create = until(lambda: next((r for r in records("change") if r["action"] == "user.create"
                                 and r["target"] == made["id"]), None))
    assert create["actor"]["key_id"] == creds["ga_key_id"] and create["actor"]["role"] == "group_admin"
    mine = until(lambda: next((r for r in records("change") if r["action"] == "key.create"
                               and r["target"] == key["id"]), None))
    assert mine["actor"]["user_id"] == dev_id and mine["actor"]["key_id"].startswith("tok_")
    hit = until(lambda: next((r for r in records("refusal") if r["actor"]["user_id"] == dev_id
                              and r["target"] == API + "/users" and r["details"]["method"] == "POST"), None))
    assert hit["action"] == "permission.denied" and hit["details"]["permission"] == "users.write"
    everything = json.dumps(records("change") + records("refusal"))
    assert "tw-" not in everything and "twa-" not in everything


def until(what: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := what()) is not None:
            return found
        time.sleep(0.1)
    pytest.fail(f"not found within {seconds} s")
