"""Probes: liveness, readiness, and the unauthenticated calls Claude Code makes (DECISIONS.md 11)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Gateway


@pytest.mark.parametrize("path", ["/", "/api/hello"])
def test_head_and_get_answer_200(gateway: Gateway, path: str) -> None:
    assert httpx.head(gateway.base_url + path).status_code == 200
    assert httpx.get(gateway.base_url + path).status_code == 200


def test_event_logging_is_accepted_without_auth(gateway: Gateway) -> None:
    resp = httpx.post(gateway.base_url + "/api/event_logging/batch", json={"events": [{"name": "x"}]})
    assert resp.status_code == 204


def test_health_and_ready(gateway: Gateway) -> None:
    assert httpx.get(gateway.base_url + "/health").json() == {"status": "alive"}
    ready = httpx.get(gateway.base_url + "/ready")
    assert ready.status_code == 200 and ready.json()["store"] is True


def test_beta_query_is_accepted(gateway: Gateway) -> None:
    body = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    headers = {"x-api-key": gateway.key}
    assert httpx.post(gateway.base_url + "/v1/messages?beta=true", json=body, headers=headers).status_code == 200
    resp = httpx.post(gateway.base_url + "/v1/messages/count_tokens?beta=true", json=body, headers=headers)
    assert resp.status_code == 200 and resp.json()["input_tokens"] > 0
