"""Issue 17 item 8: an upstream's redirect is never followed. A hostile upstream answering
`307 Location: http://127.0.0.1:<other port>/…` would otherwise have the gateway re-post the
prompt, with the provider's key, to a server the operator never configured. A 3xx from an
upstream is an upstream error: 502 in the client's dialect, and nothing reaches the other port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.hostile import HostileUpstream, Received, head

ANTHROPIC_SECRET = "sk-ant-redirect-secret-0123456789"
OPENAI_SECRET = "sk-openai-redirect-secret-0123456789"
PROMPT = "the confidential prompt 7f3a9c"
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [{"type": "text",
           "text": "hi from elsewhere"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 1, "output_tokens": 1}}
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi from elsewhere"},
                           "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


async def _answer_anything(writer: asyncio.StreamWriter, got: Received) -> None:
    """The server the redirect points at: it would answer, and so prove the prompt arrived."""
    body = orjson.dumps(COMPLETION if "chat/completions" in got.request_line else MESSAGE)
    writer.write(head("200 OK", {"content-type": "application/json", "content-length": str(len(body))}) + body)


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[HostileUpstream]:
    with HostileUpstream(_answer_anything) as server:
        yield server


@pytest.fixture(scope="module")
def redirector(elsewhere: HostileUpstream) -> Iterator[HostileUpstream]:
    async def redirect(writer: asyncio.StreamWriter, got: Received) -> None:
        path = got.request_line.split()[1]
        status = "308 Permanent Redirect" if "chat/completions" in path else "307 Temporary Redirect"
        writer.write(head(status, {"location": f"{elsewhere.base_url}{path}", "content-length": "0"}))

    with HostileUpstream(redirect) as server:
        yield server


@pytest.fixture(scope="module")
def gw(redirector: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "retries": NO_RETRIES,
        "models": [
            {"id": "anthropic-m", "upstream": {"provider": "anthropic", "base_url": redirector.base_url,
                                               "api_key": ANTHROPIC_SECRET}},
            {"id": "openai-m", "upstream": {"provider": "openai", "base_url": redirector.base_url + "/v1",
                                            "api_key": OPENAI_SECRET}},
        ],
    }
    gateway = start_gateway(Path(tmp_path_factory.mktemp("redirects")), config)
    yield gateway
    gateway.stop()


def _nothing_reached(elsewhere: HostileUpstream) -> None:
    seen = b"".join(r.request_line.encode() + orjson.dumps(r.headers) + r.body for r in elsewhere.requests())
    assert PROMPT.encode() not in seen
    assert ANTHROPIC_SECRET.encode() not in seen and OPENAI_SECRET.encode() not in seen
    assert elsewhere.requests() == []


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_upstream_redirect_is_a_502_and_nothing_follows(
        gw: Gateway, redirector: HostileUpstream, elsewhere: HostileUpstream, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    before = len(redirector.requests())
    with pytest.raises(anthropic.APIStatusError) as caught:
        kwargs: dict[str, Any] = {"model": "anthropic-m", "max_tokens": 16,
                                  "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            with client.messages.stream(**kwargs) as s:
                s.get_final_message()
        else:
            client.messages.create(**kwargs)
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "redirect" in body["error"]["message"]
    assert len(redirector.requests()) == before + 1  # the redirector was asked, once
    _nothing_reached(elsewhere)


def test_openai_upstream_redirect_is_a_502_in_the_openai_dialect(
        gw: Gateway, redirector: HostileUpstream, elsewhere: HostileUpstream) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="openai-m", messages=[{"role": "user", "content": PROMPT}])
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and "redirect" in body["message"]
    _nothing_reached(elsewhere)


# ---------------------------------------------------------------------------------------------
# tollway_web_fetch: redirects between allowed hosts are followed (public pages move), but no
# credential ever travels: no cookie from one hop on the next, no user:password URL.


def _fetch(url: str, hosts: list[str]) -> tuple[str, bool]:
    from tollway.config import HostedToolsConfig, WebFetchConfig
    from tollway.hosted.registry import Registry
    from tollway.hosted.web_fetch import NAME

    async def run() -> tuple[str, bool]:
        registry = Registry(HostedToolsConfig(web_fetch=WebFetchConfig(allow_hosts=hosts)))
        await registry.start()
        try:
            outcome = await registry.run(NAME, {"url": url})
            return outcome.text, outcome.is_error
        finally:
            await registry.close()

    return asyncio.run(run())


def test_web_fetch_follows_a_redirect_without_carrying_cookies() -> None:
    async def page(writer: asyncio.StreamWriter, got: Received) -> None:
        if got.request_line.startswith("GET /old"):
            writer.write(head("302 Found", {"location": "/new", "set-cookie": "session=hunter2; Path=/",
                                            "content-length": "0"}))
        else:
            body = b"the new page"
            writer.write(head("200 OK", {"content-type": "text/plain", "content-length": str(len(body))}) + body)

    with HostileUpstream(page) as server:
        text, failed = _fetch(f"http://localhost:{server.port}/old", ["localhost"])  # IPs get no cookies
        assert (text, failed) == ("the new page", False)
        [_first, second] = server.requests()
        assert second.request_line.startswith("GET /new")
        assert "cookie" not in second.headers and "authorization" not in second.headers


def test_web_fetch_refuses_credentials_in_the_url_and_redirects_off_the_allow_list() -> None:
    async def page(writer: asyncio.StreamWriter, got: Received) -> None:
        writer.write(head("307 Temporary Redirect", {"location": "http://localhost:1/", "content-length": "0"}))

    with HostileUpstream(page) as server:
        text, failed = _fetch(f"http://user:pw@127.0.0.1:{server.port}/", ["127.0.0.1"])
        assert failed and "user name or password" in text
        assert server.requests() == []  # refused before any connection
        text, failed = _fetch(server.base_url + "/", ["127.0.0.1"])
        assert failed and "not on this gateway's web_fetch allow-list" in text
