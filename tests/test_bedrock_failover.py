"""One catalogue model served by two clouds: a Bedrock throttle or a Bedrock credential failure
fails over to Vertex, the breaker then keeps Bedrock out, and the ledger prices each call at the
prices of the deployment that answered it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.bedrock_emulator import AwsError, BedrockEmulator
from tests.conftest import Gateway, start_gateway
from tests.test_bedrock import ISOLATED_AWS, KEY_ID, PROFILE_MODEL, SECRET, bedrock
from tests.test_resilience import admin_client, ledger_row
from tests.test_vertex import new_key, public_pem, service_account_file, vertex
from tests.vertex_emulator import VertexEmulator

BEDROCK_PRICES = {"input": 3.0, "output": 15.0}
VERTEX_PRICES = {"input": 6.0, "output": 30.0}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def clouds(key: rsa.RSAPrivateKey) -> Iterator[tuple[BedrockEmulator, VertexEmulator]]:
    with BedrockEmulator(credentials={KEY_ID: (SECRET, None)}) as b, VertexEmulator(public_pem(key)) as v:
        yield b, v


@pytest.fixture
def emus(clouds: tuple[BedrockEmulator, VertexEmulator]) -> tuple[BedrockEmulator, VertexEmulator]:
    for emu in clouds:
        emu.reset()
    return clouds


def deployments(b: BedrockEmulator, v: VertexEmulator, creds: Any, prefix: str = "",
                **bedrock_extra: Any) -> list[dict[str, Any]]:
    # Bedrock is all but always picked first (weight); Vertex is where a failed attempt goes next.
    return [{"name": prefix + "bedrock-east", "weight": 1000,
             "upstream": bedrock(b.base_url, PROFILE_MODEL, pricing=BEDROCK_PRICES, **bedrock_extra)},
            {"name": prefix + "vertex-east5", "weight": 0.001, "upstream": vertex(v, creds, pricing=VERTEX_PRICES)}]


@pytest.fixture(scope="module")
def gw(clouds: tuple[BedrockEmulator, VertexEmulator], key: rsa.RSAPrivateKey,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    b, v = clouds
    work = tmp_path_factory.mktemp("mixed")
    creds = service_account_file(work / "sa.json", key, v.token_uri)
    config = {
        "retries": {"max_attempts": 3, "base_delay": 0.01, "breaker_failures": 1, "breaker_cooldown": 600},
        "models": [
            {"id": "claude-everywhere", "deployments": deployments(b, v, creds), "pricing": {"input": 100.0}},
            {"id": "claude-bad-bedrock-key", "deployments": deployments(b, v, creds, "badkey-",
                                                                              api_key="ABSK-revoked")},
        ],
    }
    env = {**ISOLATED_AWS, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    gateway = start_gateway(work, config, env=env)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> httpx.Client:
    return admin_client(gw)


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def priced(row: dict[str, Any], prices: dict[str, float]) -> int:
    return round(row["input_tokens"] * prices["input"] + row["output_tokens"] * prices["output"])


def test_each_cloud_is_priced_at_its_own_prices_and_throttling_fails_over(
        gw: Gateway, emus: tuple[BedrockEmulator, VertexEmulator], admin: httpx.Client) -> None:
    b, v = emus
    resp = client(gw).messages.with_raw_response.create(model="claude-everywhere", max_tokens=50,
                                                        messages=[{"role": "user", "content": "first"}])
    row = ledger_row(admin, resp.http_response.headers["request-id"])
    assert row["deployment"] == "bedrock-east" and row["cost_micros"] == priced(row, BEDROCK_PRICES) > 0
    b.script(AwsError(429, "ThrottlingException", "Too many tokens, please wait before trying again.",
                      {"retry-after": "0"}))
    with client(gw).messages.stream(model="claude-everywhere", max_tokens=50,
                                    messages=[{"role": "user", "content": "second"}]) as stream:
        message = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    assert message.content[0].text.endswith("You said: second")
    assert [s.path.rsplit("/", 1)[1] for s in b.received] == ["invoke", "invoke-with-response-stream"]
    assert len(v.received) == 1 and v.received[0].path.endswith(":streamRawPredict")
    row = ledger_row(admin, request_id)
    assert row["deployment"] == "vertex-east5" and row["attempts"] == 2
    assert row["upstream_model"] == "claude-sonnet-4-5@20250929"
    assert row["cost_micros"] == priced(row, VERTEX_PRICES) > 0


def test_refused_cloud_credentials_fail_over_and_the_breaker_keeps_that_cloud_out(
        gw: Gateway, emus: tuple[BedrockEmulator, VertexEmulator], admin: httpx.Client) -> None:
    b, v = emus
    for i in range(3):
        msg = client(gw).messages.create(model="claude-bad-bedrock-key", max_tokens=50,
                                         messages=[{"role": "user", "content": f"turn {i}"}])
        assert msg.content[0].text.endswith(f"You said: turn {i}")
    # Bedrock refused once (403 → 502 for the breaker); its breaker then stays open: no retry storm.
    assert len(b.received) == 1 and b.received[0].headers["authorization"] == "Bearer ABSK-revoked"
    assert len(v.received) == 3
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = httpx.get(gw.base_url + "/metrics").text
        if 'tollway_breaker_open{deployment="badkey-bedrock-east"} 1.0' in metrics:
            break
        time.sleep(0.1)
    assert 'tollway_breaker_open{deployment="badkey-bedrock-east"} 1.0' in metrics
