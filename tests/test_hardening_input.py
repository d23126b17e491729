"""Issue 17 item 9: a deterministic input problem is the client's, so it gets a 400 in its own
dialect, never a 500 that SDKs retry. The case the red team found: JSON nested 1,000 levels deep
(in a tool's input or schema) parsed, then failed deep inside the gateway when re-serialised.
(The bodies are written by hand: no JSON library of the test's would encode them either.)"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Gateway

DEPTH = 1000


def _nested(depth: int) -> str:
    return '{"a": [' * (depth // 2) + '"leaf"' + "]}" * (depth // 2)


def _post(gw: Gateway, path: str, body: str) -> httpx.Response:
    headers = {"x-api-key": gw.key, "authorization": f"Bearer {gw.key}", "content-type": "application/json"}
    return httpx.post(gw.base_url + path, content=body.encode(), timeout=30,
                      headers=headers if path == "/v1/messages" else {**headers, "x-api-key": ""})


def _messages(depth: int) -> str:
    return ('{"model": "tollway-mock", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}, '
            '{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": '
            + _nested(depth) + '}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": '
            '"toolu_1", "content": "ok"}]}]}')


def test_deep_tool_input_is_a_400_in_the_anthropic_envelope(gateway: Gateway) -> None:
    resp = _post(gateway, "/v1/messages", _messages(DEPTH))
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "nested" in body["error"]["message"]


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", '{"model": "tollway-mock", "messages": [{"role": "user", "content": "hi"}], '
                             '"tools": [{"type": "function", "function": {"name": "t", "parameters": '
                             + _nested(DEPTH) + '}}]}'),
    ("/v1/responses", '{"model": "tollway-mock", "input": "hi", "tools": [{"type": "function", "name": "t", '
                      '"parameters": ' + _nested(DEPTH) + '}]}'),
])
def test_deep_tool_schema_is_a_400_in_the_openai_envelope(gateway: Gateway, path: str, body: str) -> None:
    resp = _post(gateway, path, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and "nested" in error["message"]


def test_moderate_nesting_still_works(gateway: Gateway) -> None:
    resp = _post(gateway, "/v1/messages", _messages(60))
    assert resp.status_code == 200, resp.text
