"""Issue 17 item 13: `/metrics` and the admin API docs can be put behind a key by configuration
(`server.metrics_auth`, `server.docs_auth`); by default they stay open, as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, start_gateway


def _start(tmp: Path, metrics_auth: str, docs_auth: str) -> tuple[Gateway, str]:
    config: dict[str, Any] = {"server": {"metrics_auth": metrics_auth, "docs_auth": docs_auth},
                              "models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]}
    gw = start_gateway(tmp, config)
    admin = json.loads(gw.cli("keys", "create", "--name", "admin", "--admin", "--json").stdout)["key"]
    return gw, str(admin)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    gw, admin = _start(tmp_path_factory.mktemp("keyed"), "key", "admin")
    yield gw, admin
    gw.stop()


@pytest.fixture(scope="module")
def admin_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    gw, admin = _start(tmp_path_factory.mktemp("admin-only"), "admin", "off")
    yield gw, admin
    gw.stop()


def _get(gw: Gateway, path: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(gw.base_url + path, headers=headers, timeout=30)


def _refused(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["type"] == "authentication_error"


def test_metrics_behind_any_key(keyed: tuple[Gateway, str]) -> None:
    gw, _ = keyed
    _refused(_get(gw, "/metrics"))
    _refused(_get(gw, "/metrics", "tw-not-a-key"))
    resp = _get(gw, "/metrics", gw.key)  # a data key, as a scraper's would be
    assert resp.status_code == 200 and "tollway_" in resp.text


def test_docs_behind_an_admin_key(keyed: tuple[Gateway, str]) -> None:
    gw, admin = keyed
    for path in ("/admin/v1/openapi.json", "/admin/v1/docs"):
        _refused(_get(gw, path))
        _refused(_get(gw, path, gw.key))  # a data key is not enough
    spec = _get(gw, "/admin/v1/openapi.json", admin)
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Tollway admin API"
    assert "/users" in spec.json()["paths"]
    page = _get(gw, "/admin/v1/docs", admin)
    assert page.status_code == 200 and "/admin/v1/openapi.json" in page.text


def test_metrics_admin_only_and_docs_off(admin_only: tuple[Gateway, str]) -> None:
    gw, admin = admin_only
    _refused(_get(gw, "/metrics", gw.key))
    assert _get(gw, "/metrics", admin).status_code == 200
    for path in ("/admin/v1/openapi.json", "/admin/v1/docs"):
        assert _get(gw, path, admin).status_code == 404
