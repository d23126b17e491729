"""Tollway → Microsoft Foundry (tests/foundry_emulator.py) with the real anthropic SDK: an API key,
and Microsoft Entra ID tokens through azure-identity (client secret, DefaultAzureCredential's
chain, workload identity) from a loopback Entra token endpoint over TLS, which the Foundry
emulator checks: reused, refreshed before expiry, and a refused grant a clear 502 without a storm."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.foundry_emulator import EntraEmulator, FoundryEmulator

FOUNDRY_KEY = "foundry-test-key"
TOOLS = [{"name": "Bash", "description": "run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]
TENANT, APP, SECRET = "tollway-tenant", "tollway-app", "app-secret-1"
LIFETIME = 6  # seconds: refreshed about 3 s after issue, never used in its last 0.6 s


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_api_key_message_stream_tools_and_count(gw: Gateway, emu: FoundryEmulator) -> None:
    emu.reset()
    c = client(gw)
    resp = c.messages.with_raw_response.create(
        model="claude-foundry", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "fast-mode-2026-02-01,interleaved-thinking-2025-05-14"})
    assert resp.parse().content[0].text == "Hello from the Tollway mock model. You said: hi"
    assert resp.http_response.headers["apim-request-id"].startswith("foundry-")
    seen = emu.received[-1]
    assert seen.path == "/anthropic/v1/messages" and seen.headers["api-key"] == FOUNDRY_KEY
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14" and seen.json["model"] == (
        "claude-sonnet-4-5")
    ask = [{"role": "user", "content": 'call Bash with {"command": "pwd"}'}]
    with c.messages.stream(model="claude-foundry", max_tokens=200, tools=TOOLS, messages=ask) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use" and first.content[-1].input == {"command": "pwd"}
    counted = c.messages.count_tokens(model="claude-foundry", messages=[{"role": "user", "content": "count"}])
    assert counted.input_tokens > 0 and emu.received[-1].path == "/anthropic/v1/messages/count_tokens"


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraEmulator]:
    with EntraEmulator(tmp_path_factory.mktemp("entra"), TENANT, APP, client_secret=SECRET,
                       federated_token="federated-1", token_lifetime=LIFETIME) as e:
        yield e


@pytest.fixture(scope="module")
def emu(entra: EntraEmulator) -> Iterator[FoundryEmulator]:
    with FoundryEmulator(api_key=FOUNDRY_KEY, entra=entra) as e:
        yield e


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("workload") / "federated-token"
    path.write_text("federated-1")
    return path


@pytest.fixture(scope="module")
def gw(emu: FoundryEmulator, entra: EntraEmulator, federated: Path,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway: a model with the resource key, and one per way of obtaining an Entra token,
    all against the same Entra tenant."""
    ca = str(entra.ca_file)

    def model(name: str, auth: dict) -> dict:
        return {"id": name, "upstream": {"provider": "foundry", "base_url": emu.base_url,
                                         "model": "claude-sonnet-4-5", **auth}}
    config = {"retries": NO_RETRIES, "models": [
        model("claude-foundry", {"api_key": "${TEST_FOUNDRY_KEY}"}),
        model("secret", {"entra": {"credential": "client_secret", "tenant_id": TENANT, "client_id": APP,
                                   "client_secret": "${TEST_ENTRA_SECRET}", "authority": entra.authority,
                                   "ca_file": ca}}),
        model("workload", {"entra": {"credential": "workload_identity", "tenant_id": TENANT, "client_id": APP,
                                     "token_file": str(federated), "authority": entra.authority, "ca_file": ca}}),
        # DefaultAzureCredential's chain, configured as a deployment is: the AZURE_* variables.
        model("default", {"entra": {"ca_file": ca}}),
        model("refused", {"entra": {"credential": "client_secret", "tenant_id": TENANT, "client_id": APP,
                                    "client_secret": "not-the-secret", "authority": entra.authority,
                                    "ca_file": ca}}),
    ]}
    env = {"TEST_FOUNDRY_KEY": FOUNDRY_KEY, "TEST_ENTRA_SECRET": SECRET, "AZURE_TENANT_ID": TENANT,
           "AZURE_CLIENT_ID": APP, "AZURE_CLIENT_SECRET": SECRET, "AZURE_AUTHORITY_HOST": entra.authority}
    gateway = start_gateway(tmp_path_factory.mktemp("foundry"), config, env=env)
    yield gateway
    gateway.stop()


def ask(gw: Gateway, model: str, text: str = "x") -> anthropic.types.Message:
    return client(gw).messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": text}])


def test_entra_token_is_reused_then_refreshed_before_it_expires(gw: Gateway, emu: FoundryEmulator,
                                                                 entra: EntraEmulator) -> None:
    foundry = emu
    first = len(entra.issued)
    ask(gw, "secret")
    token = foundry.received[-1].headers["authorization"][7:]
    mine = [i for i in entra.issued if i.token == token]
    assert len(entra.issued) == first + 1 and mine, "the first request obtained one token"
    # Requests keep coming: the token is reused, and replaced while it is still valid.
    deadline = time.monotonic() + 4 * LIFETIME
    used: list[str] = []
    while time.monotonic() < deadline:
        ask(gw, "secret")  # a 401 from Foundry (an expired token) would raise here
        used.append(foundry.received[-1].headers["authorization"][7:])
        if used[-1] != token:
            break
        time.sleep(0.1)  # a client's pace, not a wait for the gateway
    else:
        raise AssertionError("the token was never refreshed")
    assert used.count(token) >= 2, "the token was reused"
    successor = next(i for i in entra.issued if i.token == used[-1])
    assert successor.at < mine[0].expires, "the new token was obtained before the old one expired"


def test_default_credential_chain_and_workload_identity_get_tokens(gw: Gateway, emu: FoundryEmulator,
                                                                   entra: EntraEmulator, federated: Path) -> None:
    foundry = emu
    for model in ("default", "workload"):
        assert ask(gw, model, model).content[0].text.endswith(f"You said: {model}")
        assert entra.valid(foundry.received[-1].headers["authorization"][7:])
    # The cluster rotates the federated token: the next grant presents the new one.
    federated.write_text("federated-2")
    entra.federated_token = "federated-2"
    gw_token = foundry.received[-1].headers["authorization"][7:]
    deadline = time.monotonic() + 4 * LIFETIME
    while foundry.received[-1].headers["authorization"][7:] == gw_token:
        assert time.monotonic() < deadline, "the workload identity token was never refreshed"
        ask(gw, "workload")
        time.sleep(0.1)
    assert entra.valid(foundry.received[-1].headers["authorization"][7:])


def test_refused_entra_grant_is_a_502_naming_the_upstream_and_not_asked_again_at_once(
        gw: Gateway, entra: EntraEmulator) -> None:
    refused = entra.refused
    for _ in range(3):
        with pytest.raises(anthropic.InternalServerError) as err:
            ask(gw, "refused")
        assert err.value.status_code == 502
        message = err.value.body["error"]["message"]
        assert "foundry (127.0.0.1)" in message and "ClientAuthenticationError" in message
        assert "not-the-secret" not in message
    assert entra.refused == refused + 1, "a refused grant is remembered, not retried per request"
