"""Configuration of the cloud upstreams (bedrock, vertex, foundry): what is refused at start, with
a message naming the field, and where Bedrock's region comes from."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.config import ConfigError, parse_settings


def settings(upstream: dict[str, Any], **model: Any) -> Any:
    return parse_settings({"models": [{"id": "m", "upstream": upstream, **model}]})


@pytest.fixture(autouse=True)
def no_region_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


@pytest.mark.parametrize(("url", "region"), [
    ("https://bedrock-runtime.eu-west-1.amazonaws.com", "eu-west-1"),
    ("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
    ("https://vpce-0abc123-xyz.bedrock-runtime.ap-southeast-2.vpce.amazonaws.com", "ap-southeast-2"),
])
def test_bedrock_region_from_the_endpoint_host(url: str, region: str) -> None:
    assert settings({"provider": "bedrock", "base_url": url}).models[0].upstream.aws_region == region


def test_bedrock_region_from_config_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings({"provider": "bedrock", "region": "us-west-2",
                     "base_url": "https://bedrock-runtime.eu-west-1.amazonaws.com"}).models[0].upstream.aws_region == (
        "us-west-2")
    with pytest.raises(ConfigError, match="provider 'bedrock' needs region"):
        settings({"provider": "bedrock"})
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert settings({"provider": "bedrock"}).models[0].upstream.aws_region == "ca-central-1"


@pytest.mark.parametrize(("upstream", "message"), [
    ({"provider": "vertex", "region": "us-east5"}, "provider 'vertex' needs project and region"),
    ({"provider": "foundry", "api_key": "k"}, "provider 'foundry' needs base_url"),
    ({"provider": "foundry", "base_url": "https://r.services.ai.azure.com/anthropic"}, "exactly one of api_key or "
                                                                                       "entra"),
    ({"provider": "foundry", "base_url": "https://r.services.ai.azure.com/anthropic", "api_key": "k",
      "entra": {}}, "exactly one of api_key or entra"),
    ({"provider": "foundry", "base_url": "https://r.services.ai.azure.com/anthropic",
      "token_command": ["az"]}, "token_command and token_ttl were replaced by `entra`"),
    ({"provider": "foundry", "base_url": "https://r.services.ai.azure.com/anthropic",
      "entra": {"authority": "http://127.0.0.1:1"}}, "entra authority must be an https URL"),
    ({"provider": "foundry", "base_url": "https://r.services.ai.azure.com/anthropic",
      "entra": {"credential": "client_secret", "tenant_id": "t"}}, "needs tenant_id, client_id and client_secret"),
    ({"provider": "anthropic", "api_key": "k", "entra": {}}, "entra applies only to provider 'foundry'"),
    ({"provider": "anthropic", "api_key": "k", "region": "us-east-1"}, "region applies only to provider 'bedrock' "
                                                                        "or 'vertex'"),
    ({"provider": "bedrock", "region": "us-east-1", "project": "p"}, "project applies only to provider 'vertex'"),
    ({"provider": "openai", "extra_betas": ["x"]}, "extra_betas applies only to providers"),
])
def test_refused_configurations_name_the_problem(upstream: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(upstream)


def test_deployment_pricing_is_accepted() -> None:
    s = settings({"provider": "vertex", "project": "p", "region": "global", "pricing": {"input": 3, "output": 15}})
    assert s.models[0].upstream.pricing.output == 15
