"""Microsoft Entra ID tokens for the Foundry upstream, through azure-identity's async credentials.

Decisions, each with its reason:

* **The library, not a command**: azure-identity (`azure.identity.aio`) does every grant a
  workload uses — client secret, workload identity federation (AKS), managed identity,
  environment variables, the Azure CLI, and DefaultAzureCredential's chain of them — with
  Entra's own error answers. Its async credentials speak HTTP through aiohttp, so obtaining a
  token never blocks the event loop (no thread, no subprocess except the Azure CLI's own).
* **Our own refresh schedule**: a token is reused until its refresh time — Entra's `refresh_on`
  when it sends one, else 5 minutes before expiry, or half-way through a token that lives less
  than 10 minutes. From then on the next request starts one background refresh and goes on with
  the still-valid token; only a token within its last `margin` (a tenth of its life, at most 60 s)
  is never used: requests wait for the new one. azure-identity's own cache would hand back the
  same token for 30 s after any request and up to its very last second, which a request in
  flight can outlive; so each refresh asks a fresh credential object, which has no cache.
* **Failures**: a refused grant or an unreachable authority is remembered for a few seconds
  (cloud.FailureMemo: a 502 naming the upstream, no request storm against Entra); a failed
  background refresh is logged and tried again after that pause while the token still serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from tollway.provider_config import EntraConfig
from tollway.upstream.cloud import CREDENTIAL_RETRY_S, FailureMemo

log = logging.getLogger("tollway.upstream")
REFRESH_BEFORE_S = 300.0
MAX_MARGIN_S = 60.0


def credential(cfg: EntraConfig) -> Any:
    """A new azure-identity async credential for CFG (module doc: one per refresh). azure-identity
    is imported here, so a gateway without an Entra upstream never loads it."""
    from azure.identity import aio as identity

    common: dict[str, Any] = {}
    if cfg.authority:
        common["authority"] = cfg.authority
    if cfg.ca_file:
        common["connection_verify"] = cfg.ca_file
    kind = cfg.credential
    if kind == "client_secret":
        assert cfg.tenant_id and cfg.client_id and cfg.client_secret  # EntraConfig checks
        return identity.ClientSecretCredential(cfg.tenant_id, cfg.client_id, cfg.client_secret, **common)
    if kind == "workload_identity":
        ids = {k: v for k, v in (("tenant_id", cfg.tenant_id), ("client_id", cfg.client_id),
                                 ("token_file_path", cfg.token_file)) if v}
        return identity.WorkloadIdentityCredential(**ids, **common)
    if kind == "managed_identity":
        return identity.ManagedIdentityCredential(client_id=cfg.client_id, **common)
    if kind == "environment":
        return identity.EnvironmentCredential(**common)
    if kind == "azure_cli":
        return identity.AzureCliCredential(tenant_id=cfg.tenant_id or "")  # the CLI has its own authority
    ids = {k: v for k, v in (("managed_identity_client_id", cfg.client_id),
                             ("workload_identity_client_id", cfg.client_id),
                             ("workload_identity_tenant_id", cfg.tenant_id)) if v}
    return identity.DefaultAzureCredential(**ids, **common)


class EntraToken:
    """One upstream's Entra token: cached, refreshed ahead of expiry (module doc). Clock injectable."""

    def __init__(self, cfg: EntraConfig, label: str, clock: Callable[[], float] = time.time) -> None:
        self._cfg = cfg
        self._label = label
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = self._usable_until = 0.0
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self._memo = FailureMemo()
        self.refreshes = 0

    async def get(self) -> str:
        now = self._clock()
        token = self._token
        if token is not None and now < self._usable_until:
            if now >= self._refresh_at and self._background is None:
                self._background = asyncio.get_running_loop().create_task(self._refresh_in_background())
            return token
        async with self._lock:
            if self._token is not None and self._clock() < self._usable_until:
                return self._token
            return await self._refresh()

    async def _refresh(self) -> str:
        """Under the lock: ask Entra for a new token (raises the remembered failure)."""
        self._memo.check()
        cred = credential(self._cfg)
        try:
            info = await cred.get_token_info(self._cfg.scope)
        except Exception as exc:  # azure-identity raises ClientAuthenticationError, CredentialUnavailableError…
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise self._memo.remember(self._label, f"{type(exc).__name__}: {first_line}"[:300]) from None
        finally:
            await cred.close()
        self._memo.clear()
        now = self._clock()
        life = max(0.0, info.expires_on - now)
        self._token = info.token
        self._usable_until = info.expires_on - min(MAX_MARGIN_S, life / 10)
        self._refresh_at = (info.refresh_on if info.refresh_on else
                            info.expires_on - min(REFRESH_BEFORE_S, life / 2))
        self.refreshes += 1
        return info.token

    async def _refresh_in_background(self) -> None:
        try:
            async with self._lock:
                if self._clock() >= self._refresh_at:
                    await self._refresh()
        except Exception:  # logged by FailureMemo.remember; the current token serves until its margin
            self._refresh_at = self._clock() + CREDENTIAL_RETRY_S  # the next try after the memo's pause
            log.warning("an Entra ID token refresh failed; the current token is used until it expires",
                        extra={"upstream": self._label})
        finally:
            self._background = None

    def invalidate(self) -> None:
        """After the resource refused the token: ask Entra again next time."""
        self._token = None
        self._usable_until = self._refresh_at = 0.0

    async def close(self) -> None:
        task = self._background
        if task is not None:
            task.cancel()
