"""Operations: Prometheus metrics, Server-Timing on every response, JSON access logs without secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.conftest import Gateway, start_gateway

BODY = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "observe me 4242"}]}
TIMING = re.compile(r"^gateway;dur=\d+\.\d{2}(, upstream;dur=\d+\.\d{2})?$")


def test_server_timing_on_success_and_error(gateway: Gateway) -> None:
    ok = httpx.post(gateway.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key})
    assert TIMING.match(ok.headers["server-timing"]) and "upstream;dur=" in ok.headers["server-timing"]
    with httpx.stream("POST", gateway.base_url + "/v1/messages", json={**BODY, "stream": True},
                      headers={"x-api-key": gateway.key}) as stream:
        assert "upstream;dur=" in stream.headers["server-timing"]
    refused = httpx.post(gateway.base_url + "/v1/messages", json=BODY)
    assert refused.status_code == 401 and TIMING.match(refused.headers["server-timing"])
    models = httpx.get(gateway.base_url + "/v1/models", headers={"x-api-key": gateway.key})
    assert TIMING.match(models.headers["server-timing"])


def test_metrics_count_requests_tokens_and_queues(gateway: Gateway) -> None:
    before = httpx.get(gateway.base_url + "/metrics").text
    for _ in range(2):
        httpx.post(gateway.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key})
    text = httpx.get(gateway.base_url + "/metrics").text

    def value(sample: str, body: str) -> float:
        m = re.search("^" + re.escape(sample) + r" ([0-9.e+]+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    sample = 'tollway_requests_total{model="tollway-mock",route="messages",status="200"}'
    assert value(sample, text) == value(sample, before) + 2
    assert value('tollway_tokens_total{kind="output",model="tollway-mock"}', text) >= 10
    assert "tollway_request_seconds_bucket" in text and "tollway_overhead_seconds_bucket" in text
    assert 'tollway_queue_depth{writer="audit"}' in text


def test_access_log_is_json_with_request_id_and_no_secrets(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "logs", {"server": {"access_log": True}})
    resp = httpx.post(gw.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gw.key})
    rid = resp.headers["request-id"]
    output = gw.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    entry = next(line for line in lines if line.get("request_id") == rid)
    assert entry["status"] == 200 and entry["route"] == "messages" and entry["key_id"] == gw.key_id
    assert gw.key not in output and "observe me 4242" not in output
