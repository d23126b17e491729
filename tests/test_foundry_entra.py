"""The Entra ID token cache of the Foundry upstream (tollway/upstream/foundry_entra.py) with an
injected clock, against the loopback Entra token endpoint (tests/foundry_emulator.py) through
azure-identity itself: reused until its refresh time, refreshed in the background while still
valid, never used in its last margin, a refused grant remembered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.foundry_emulator import EntraEmulator
from tollway.provider_config import EntraConfig
from tollway.upstream.base import UpstreamFailure
from tollway.upstream.foundry_entra import EntraToken

LIFETIME = 3600


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraEmulator]:
    with EntraEmulator(tmp_path_factory.mktemp("entra-unit"), "t1", "app", client_secret="s",
                       token_lifetime=LIFETIME) as e:
        yield e


def config(entra: EntraEmulator, secret: str = "s") -> EntraConfig:
    return EntraConfig(credential="client_secret", tenant_id="t1", client_id="app", client_secret=secret,
                       authority=entra.authority, ca_file=str(entra.ca_file))


class Clock:
    """Real time plus an offset: Entra's expiries are real times, the cache's decisions are not."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_reused_then_refreshed_in_the_background_then_awaited_past_its_margin(entra: EntraEmulator) -> None:
    async def run() -> None:
        clock = Clock()
        token = EntraToken(config(entra), "foundry (test)", clock)
        issued = len(entra.issued)
        first = await token.get()
        assert await token.get() == first and len(entra.issued) == issued + 1  # reused
        clock.offset = LIFETIME - 299  # inside the last 5 minutes: refresh time, still valid
        assert await token.get() == first  # served at once; the refresh runs behind it
        deadline = asyncio.get_running_loop().time() + 10
        while token.refreshes < 2:
            assert asyncio.get_running_loop().time() < deadline, "no background refresh"
            await asyncio.sleep(0.01)
        second = await token.get()
        assert second != first and len(entra.issued) == issued + 2
        # The second token (issued when the clock already ran 299 s ahead) has a margin of a tenth of the 299 s it
        # had left; 10 s before its expiry it is well inside it, whatever Entra's whole-second expiry rounds to
        # (at LIFETIME - 30 the test raced that rounding): not sent, a new one awaited.
        clock.offset = LIFETIME - 10
        third = await token.get()
        assert third not in (first, second) and token.refreshes == 3
        await token.close()
    asyncio.run(run())


def test_a_refused_grant_is_remembered_not_asked_again(entra: EntraEmulator) -> None:
    async def run() -> None:
        token = EntraToken(config(entra, secret="wrong"), "foundry (test)")
        refused = entra.refused
        for _ in range(3):
            with pytest.raises(UpstreamFailure) as err:
                await token.get()
            assert err.value.status == 502 and "foundry (test)" in err.value.message
            assert "ClientAuthenticationError" in err.value.message and "wrong" not in err.value.message
        assert entra.refused == refused + 1
    asyncio.run(run())


def test_http_authority_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="https"):
        EntraConfig(authority="http://127.0.0.1:1")
