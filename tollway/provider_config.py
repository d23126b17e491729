"""The upstream (provider) part of the configuration: where a model's calls go, with what
credentials, and at what prices. Its own module because it is the part that grows with every
provider; `tollway.config` re-exports what it defines, so callers import from there.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pricing(_Strict):
    """USD per million tokens. Cache prices default to Anthropic's ratios of the input price."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cache_write: float | None = Field(None, ge=0)
    cache_read: float | None = Field(None, ge=0)


EntraCredential = Literal["default", "client_secret", "workload_identity", "managed_identity", "environment",
                          "azure_cli"]


class EntraConfig(_Strict):
    """foundry: a Microsoft Entra ID token from azure-identity (docs/providers.md, "Foundry").
    Unset ids fall back to azure-identity's environment variables (AZURE_TENANT_ID,
    AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST)."""

    credential: EntraCredential = "default"
    tenant_id: str | None = None
    client_id: str | None = Field(None, description="the app registration, or a user-assigned managed identity")
    client_secret: str | None = Field(None, description="client_secret only (use ${ENV})")
    token_file: str | None = Field(None, description="workload_identity: the federated token file")
    authority: str | None = Field(None, description="https host of the authority; default: AZURE_AUTHORITY_HOST "
                                  "or login.microsoftonline.com")
    scope: str = "https://cognitiveservices.azure.com/.default"
    ca_file: str | None = Field(None, description="a CA bundle the authority's certificate is checked against")

    @model_validator(mode="after")
    def _needs(self) -> EntraConfig:
        if self.credential == "client_secret" and not (self.tenant_id and self.client_id and self.client_secret):
            raise ValueError("entra credential 'client_secret' needs tenant_id, client_id and client_secret")
        if self.client_secret is not None and self.credential != "client_secret":
            raise ValueError("entra client_secret applies only to credential 'client_secret'")
        if self.token_file is not None and self.credential != "workload_identity":
            raise ValueError("entra token_file applies only to credential 'workload_identity'")
        if self.authority is not None and not self.authority.startswith("https://"):
            raise ValueError("entra authority must be an https URL (azure-identity refuses any other)")
        return self


class UpstreamConfig(_Strict):
    """Where a model's calls go. `model` is the provider's id for it (defaults to the catalogue id).

    `provider: openai` is any OpenAI-compatible Chat Completions server (OpenAI, Azure OpenAI,
    vLLM, Ollama…): `base_url` is the URL the OpenAI SDK would use (`https://api.openai.com/v1`,
    `http://host:8000/v1`), requests go to `{base_url}/chat/completions`. With `api_version` and
    `deployment` it is Azure OpenAI: `{base_url}/openai/deployments/{deployment}/chat/completions
    ?api-version=…` with the key in an `api-key` header.

    The clouds (docs/providers.md): `provider: bedrock` (`region`, or a `base_url` whose host names
    one, or AWS_REGION; the AWS credential chain, `aws_profile`, or a Bedrock API key in
    `api_key`), `provider: vertex` (`project` and `region`; application default credentials or
    `credentials_file`), `provider: foundry` (`base_url` of the resource's Anthropic endpoint;
    `api_key`, or `entra`: a Microsoft Entra ID token through azure-identity). `pricing` here overrides
    the catalogue model's pricing for calls this deployment answered.
    """

    provider: Literal["anthropic", "openai", "mock", "bedrock", "vertex", "foundry"]
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    connect_timeout: float = Field(10.0, gt=0, description="seconds to open a connection")
    first_byte_timeout: float = Field(120.0, gt=0, description="seconds until the upstream's response headers")
    read_timeout: float = Field(600.0, gt=0, description="seconds of silence allowed between body chunks")
    max_connections: int = Field(512, ge=1)
    max_response_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="largest non-streaming answer read (after decompression); "
        "a larger one is a 502")
    max_event_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="longest stream event or line; a stream "
        "whose event grows past it ends with an error event")
    chunk_delay_ms: float = Field(0.0, ge=0, description="mock only: pause between streamed events")
    organization: str | None = Field(None, description="openai only: sent as OpenAI-Organization")
    api_version: str | None = Field(None, description="openai only: Azure OpenAI api-version (with deployment)")
    deployment: str | None = Field(None, description="openai only: Azure OpenAI deployment name (with api_version)")
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="openai only: the output-limit field the upstream wants (o-series: "
        "max_completion_tokens)")
    reasoning: bool = Field(False, description="openai only: send reasoning_effort for Anthropic `thinking` "
                            "(only reasoning models accept it)")
    tokenizer: Literal["o200k_base", "cl100k_base"] | None = Field(
        None, description="openai only: encoding of the local count_tokens (default: chosen by model id)")
    region: str | None = Field(None, description="bedrock, vertex: the cloud region (vertex: `global` too)")
    project: str | None = Field(None, description="vertex only: the Google Cloud project id")
    aws_profile: str | None = Field(None, description="bedrock only: a profile of the shared AWS config files")
    credentials_file: str | None = Field(None, description="vertex only: a service-account (or external-account) "
                                         "JSON file; default: application default credentials")
    entra: EntraConfig | None = Field(None, description="foundry only: authenticate with a Microsoft Entra ID token")
    extra_betas: tuple[str, ...] = Field((), description="bedrock, vertex, foundry: anthropic-beta "
                                   "values to forward beyond the compatibility table (tollway/upstream/compat.py)")
    pricing: Pricing | None = Field(None, description="this deployment's prices; default: the model's pricing")

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: object) -> object:
        if isinstance(data, dict) and ("token_command" in data or "token_ttl" in data):
            raise ValueError("token_command and token_ttl were replaced by `entra` (azure-identity; "
                             "docs/providers.md, Foundry)")
        return data

    @model_validator(mode="after")
    def _provider_needs(self) -> UpstreamConfig:
        if self.provider == "anthropic" and not self.api_key:
            raise ValueError("api_key is required for provider 'anthropic' (use ${ANTHROPIC_API_KEY})")
        if self.provider != "openai":
            for name in ("organization", "api_version", "deployment", "tokenizer"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies only to provider 'openai'")
        for name, providers in _CLOUD_FIELDS.items():
            if getattr(self, name) is not None and self.provider not in providers:
                raise ValueError(f"{name} applies only to provider {' or '.join(repr(p) for p in providers)}")
        if self.extra_betas and self.provider not in ("bedrock", "vertex", "foundry"):
            raise ValueError("extra_betas applies only to providers 'bedrock', 'vertex' and 'foundry'")
        if self.provider == "bedrock" and not self.aws_region:
            raise ValueError("provider 'bedrock' needs region (or a base_url such as "
                             "https://bedrock-runtime.us-east-1.amazonaws.com, or AWS_REGION)")
        if self.provider == "vertex" and not (self.project and self.region):
            raise ValueError("provider 'vertex' needs project and region")
        if self.provider == "foundry":
            if not self.base_url:
                raise ValueError("provider 'foundry' needs base_url (https://<resource>.services.ai.azure.com/anthropic)")
            if (self.api_key is None) == (self.entra is None):
                raise ValueError("provider 'foundry' needs exactly one of api_key or entra (Entra ID)")
        if (self.api_version is None) != (self.deployment is None):
            raise ValueError("api_version and deployment go together (Azure OpenAI)")
        if self.deployment is not None and not (self.api_key and self.base_url):
            raise ValueError("Azure OpenAI (deployment) needs base_url (https://<resource>.openai.azure.com) "
                             "and api_key")
        return self

    @property
    def resolved_base_url(self) -> str:
        default = "https://api.openai.com/v1" if self.provider == "openai" else "https://api.anthropic.com"
        return (self.base_url or default).rstrip("/")

    @property
    def aws_region(self) -> str | None:
        """bedrock: the region from the config, else from the endpoint host (VPC endpoints too), else the
        environment; None leaves it to the AWS profile."""
        return (self.region or _aws_region_in(self.base_url) or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION"))


# Provider-specific UpstreamConfig fields and the providers they apply to.
_CLOUD_FIELDS: dict[str, tuple[str, ...]] = {
    "region": ("bedrock", "vertex"), "project": ("vertex",), "aws_profile": ("bedrock",),
    "credentials_file": ("vertex",), "entra": ("foundry",),
}
# bedrock-runtime.us-east-1.amazonaws.com, bedrock-runtime-fips.us-gov-west-1.amazonaws.com,
# vpce-0abc.bedrock-runtime.eu-west-1.vpce.amazonaws.com
_AWS_HOST_REGION = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d+)\.")


def _aws_region_in(url: str | None) -> str | None:
    m = _AWS_HOST_REGION.search(url or "")
    return m.group(1) if m else None
