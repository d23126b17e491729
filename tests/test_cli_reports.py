"""Reports people can read: `tollway usage` and GET /admin/v1/usage with names beside ids, filters,
budgets used and left, an 80-column table; and `tollway limits set` keeping the limits it is not
given. A real gateway and the real `tollway` binary; usage comes from real requests to the mock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, run_cli, start_gateway

PRICING = {"input": 1000.0, "output": 2000.0}  # $/M tokens: a few tokens cost a visible fraction of a dollar
PROMPT = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "report me"}]}
DEFAULTS = {"user": {"rpm": 100, "budget_usd": 5.0, "budget_period": "month"}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("reports"), {
        "server": {"key_refresh_interval": 0.2},
        "limits": {"backend": "memory", "defaults": DEFAULTS},
        "models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}, "pricing": PRICING},
                   {"id": "other-mock", "upstream": {"provider": "mock"}, "pricing": PRICING}],
    })
    yield gateway
    gateway.stop()


def cli_json(gw: Gateway, *args: str) -> Any:
    return json.loads(gw.cli(*args, "--json").stdout)


def usage_json(gw: Gateway, *args: str) -> list[dict[str, Any]]:
    return list(cli_json(gw, "usage", *args))


def wait_for_requests(gw: Gateway, key_id: str, n: int) -> None:
    """Poll until the write-behind has put N requests of KEY_ID in the rollup."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = {r["key"]: r for r in usage_json(gw, "--by", "key")}
        if rows.get(key_id, {}).get("requests") == n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{key_id} never reached {n} requests in the usage rollup")


@pytest.fixture(scope="module")
def people(gw: Gateway) -> dict[str, Any]:
    """alice (in group eng) with a personal key used 3 times on tollway-mock and once on other-mock;
    a service key of group eng used twice."""
    gw.cli("groups", "create", "eng", "--grant", "*")
    alice = cli_json(gw, "users", "create", "alice", "--group", "eng")
    laptop = cli_json(gw, "keys", "create", "--name", "alice-laptop", "--user", "alice")
    bot = cli_json(gw, "keys", "create", "--name", "ci-bot", "--group", "eng")
    for key, model, n in ((laptop, "tollway-mock", 3), (laptop, "other-mock", 1), (bot, "tollway-mock", 2)):
        for _ in range(n):
            resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                              json={**PROMPT, "model": model}, timeout=10)
            assert resp.status_code == 200, resp.text
    wait_for_requests(gw, laptop["id"], 4)
    wait_for_requests(gw, bot["id"], 2)
    return {"alice": alice, "laptop": laptop, "bot": bot}


def test_the_table_shows_key_names_beside_ids_and_fits_80_columns(gw: Gateway, people: dict[str, Any]) -> None:
    out = run_cli("usage", "--by", "key", config=gw.config, env={"COLUMNS": "80"}).stdout
    for line in out.splitlines():
        assert len(line) <= 80, line
    assert "alice-laptop" in out and people["laptop"]["id"] in out
    assert "ci-bot" in out and people["bot"]["id"] in out
    wide = run_cli("usage", "--by", "user", "--wide", config=gw.config, env={"COLUMNS": "100"}).stdout
    assert all(len(line) <= 100 for line in wide.splitlines()) and "cache wr" in wide and "of $5.00/mo" in wide


def test_by_user_shows_the_name_and_the_budget_used_and_left(gw: Gateway, people: dict[str, Any]) -> None:
    rows = {r["user"]: r for r in usage_json(gw, "--by", "user")}
    spent = rows[people["alice"]["id"]]["cost_micros"]
    assert spent > 0
    out = run_cli("usage", "--by", "user", config=gw.config, env={"COLUMNS": "80"}).stdout
    lines = out.splitlines()
    at = next(i for i, ln in enumerate(lines) if "alice" in ln)
    # The config default budget for users ($5 a month) applies: spent and what is left, in dollars.
    left = f"${(5_000_000 - spent) / 1_000_000:,.2f}"
    assert f"${spent / 1_000_000:.4f}" in lines[at] and left in lines[at], lines[at]
    assert people["alice"]["id"] in lines[at + 1] and "of $5.00/mo" in lines[at + 1]
    assert all(len(line) <= 80 for line in lines)


def test_filters_narrow_to_one_user_group_key_or_model(gw: Gateway, people: dict[str, Any]) -> None:
    laptop, bot = people["laptop"]["id"], people["bot"]["id"]
    assert [r["key"] for r in usage_json(gw, "--by", "key", "--user", "alice")] == [laptop]
    # Usage is booked to the group that granted access: alice's personal key counts for eng too.
    assert {r["key"] for r in usage_json(gw, "--by", "key", "--group", "eng")} == {laptop, bot}
    assert [r["model"] for r in usage_json(gw, "--by", "model", "--key", laptop)] == ["other-mock", "tollway-mock"]
    by_model = {r["model"]: r["requests"] for r in usage_json(gw, "--by", "model", "--key", laptop)}
    assert by_model == {"other-mock": 1, "tollway-mock": 3}
    assert [r["requests"] for r in usage_json(gw, "--by", "key", "--model", "other-mock")] == [1]
    missing = gw.cli("usage", "--user", "nobody", check=False)
    assert missing.returncode == 1 and "nobody" in missing.stderr and "Traceback" not in missing.stderr


def test_json_and_csv_keep_their_shape(gw: Gateway, people: dict[str, Any]) -> None:
    rows = usage_json(gw, "--by", "key")
    assert list(rows[0]) == ["key", "requests", "errors", "input_tokens", "output_tokens", "cache_write_tokens",
                             "cache_read_tokens", "cost_micros", "cost_usd"]
    header = gw.cli("usage", "--by", "user", "--csv").stdout.splitlines()[0]
    assert header == ("user,requests,errors,input_tokens,output_tokens,cache_write_tokens,cache_read_tokens,"
                      "cost_usd,cost_micros")


def test_the_admin_api_report_has_names_filters_and_budgets(gw: Gateway, people: dict[str, Any]) -> None:
    admin_key = cli_json(gw, "keys", "create", "--name", "ops", "--admin")["key"]
    http = httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"x-api-key": admin_key}, timeout=10)
    users = http.get("/usage", params={"by": "user", "user": "alice"}).json()["data"]
    assert [(u["key"], u["name"]) for u in users] == [(people["alice"]["id"], "alice")]
    alice = users[0]
    assert alice["budget_usd"] == 5.0 and alice["budget_period"] == "month"
    assert alice["budget_spent_usd"] == pytest.approx(alice["cost_usd"])
    assert alice["budget_remaining_usd"] == pytest.approx(5.0 - alice["cost_usd"])
    keys = http.get("/usage", params={"by": "key", "group": "eng", "model": "tollway-mock"}).json()["data"]
    assert sorted((k["name"], k["requests"], k["budget_usd"]) for k in keys) == [("alice-laptop", 3, None),
                                                                                  ("ci-bot", 2, None)]
    models = http.get("/usage", params={"by": "model", "model": "other-mock"}).json()["data"]
    assert [(m["key"], m["requests"], m["name"]) for m in models] == [("other-mock", 1, None)]
    assert http.get("/usage", params={"user": "nobody"}).status_code == 404


def test_limits_set_changes_only_what_it_is_given(gw: Gateway) -> None:
    cli_json(gw, "users", "create", "bob")
    # The first set starts from the config defaults for users: the budget and rpm stay.
    first = cli_json(gw, "limits", "set", "user", "bob", "--tpm", "5000")
    assert (first["rpm"], first["tpm"], first["budget_usd"], first["budget_period"]) == (100, 5000, 5.0, "month")
    second = cli_json(gw, "limits", "set", "user", "bob", "--budget", "2", "--period", "day")
    assert (second["rpm"], second["tpm"], second["budget_usd"], second["budget_period"]) == (100, 5000, 2.0, "day")
    third = cli_json(gw, "limits", "set", "user", "bob", "--rpm", "7")
    assert (third["rpm"], third["tpm"], third["budget_usd"], third["budget_period"]) == (7, 5000, 2.0, "day")
    cleared = cli_json(gw, "limits", "set", "user", "bob", "--unset", "budget", "--unset", "tpm")
    assert (cleared["rpm"], cleared["tpm"], cleared["budget_usd"]) == (7, None, None)
    assert cli_json(gw, "limits", "get", "user", "bob") == cleared
    bad = gw.cli("limits", "set", "user", "bob", "--unset", "colour", check=False)
    assert bad.returncode == 2 and "--unset takes" in bad.stderr
