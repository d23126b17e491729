"""Hosted tools on `/v1/responses` through the stock OpenAI SDK over HTTP, with the mock model:
MCP tools over stdio and streamable HTTP (test servers in tests/mcp_servers/, written with the
`mcp` SDK), `tollway_web_fetch` and its allow-list, grants (`tool:<name>`), the per-call timeout,
the iteration cap, and one usage-ledger row per hosted model call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, free_port, standard_config, start_gateway
from tests.emulator import AnthropicEmulator

ROOT = Path(__file__).resolve().parent.parent
PAGE = "Docs page: the answer is 42. " + "x" * 200


class _Page(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Page.hits.append(self.path)
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def search_url() -> Iterator[str]:
    """The streamable-HTTP MCP server on 127.0.0.1, stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.mcp_servers.search_server", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        os.kill(proc.pid, signal.SIGKILL)
        raise AssertionError("the MCP search server did not start")
    yield f"http://127.0.0.1:{port}/mcp"
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def hosted_config(upstream_url: str, search_url: str, max_iterations: int = 8) -> dict[str, Any]:
    return {
        **standard_config(upstream_url),
        "hosted_tools": {
            "max_iterations": max_iterations,
            "timeout_s": 2,
            "web_fetch": {"allow_hosts": ["127.0.0.1"], "max_bytes": 60},
            "mcp_servers": [
                {"name": "files", "command": [sys.executable, "-m", "tests.mcp_servers.files_server"],
                 "env": {"FILES_MOTD": "motd from env"}, "cwd": str(ROOT)},
                {"name": "search", "url": search_url},
                {"name": "broken", "command": [str(ROOT / "no-such-mcp-server")]},
            ],
        },
    }


class Org:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.admin = json.loads(gw.cli("keys", "create", "--name", "admin", "--admin", "--json").stdout)["key"]
        self.limited = self._group_key("no-tools", ["tollway-*"])
        self.web_only = self._group_key("web-only", ["tollway-*", "tool:tollway_web_fetch"])

    def _group_key(self, group: str, grants: list[str]) -> str:
        headers = {"x-api-key": self.admin}
        base = self.gw.base_url + "/admin/v1"
        resp = httpx.post(base + "/groups", json={"name": group, "grants": grants}, headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text
        resp = httpx.post(base + "/keys", json={"name": group, "group_id": group}, headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["key"])

    def sdk(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.base_url + "/v1", api_key=key or self.gw.key, max_retries=0,
                             timeout=30)

    def ledger(self, prefix: str, count: int) -> list[dict[str, Any]]:
        """The ledger rows whose request id starts with PREFIX, once COUNT of them are written."""
        deadline = time.monotonic() + 10
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            resp = httpx.get(self.gw.base_url + "/admin/v1/usage/requests", params={"limit": 1000},
                             headers={"x-api-key": self.admin}, timeout=10)
            assert resp.status_code == 200, resp.text
            rows = [r for r in resp.json() if r["request_id"].startswith(prefix)]
            if len(rows) >= count:
                return rows
            time.sleep(0.2)
        return rows


@pytest.fixture(scope="module")
def org(emulator: AnthropicEmulator, search_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    gw = start_gateway(tmp_path_factory.mktemp("hosted"), hosted_config(emulator.base_url, search_url),
                       env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        yield Org(gw)
    finally:
        gw.stop()


def _ask(org: Org, text: str, tools: Any, key: str | None = None) -> Any:
    return org.sdk(key).responses.with_raw_response.create(model="tollway-mock", input=text, tools=tools,
                                                           store=False)


def _calls(resp: Any) -> list[Any]:
    return [item for item in resp.output if item.type == "mcp_call"]


def test_stdio_mcp_round_trip_and_ledger(org: Org) -> None:
    raw = _ask(org, 'call tollway_files_read_note with {"name": "todo.txt"}', [{"type": "tollway_tools"}])
    resp = raw.parse()
    assert resp.status == "completed"
    assert resp.output[-1].type == "message"
    assert resp.output[-1].content[0].text == "The tool returned: buy milk; ship Tollway"
    [call] = _calls(resp)
    assert call.name == "tollway_files_read_note" and call.server_label == "files"
    assert json.loads(call.arguments) == {"name": "todo.txt"}
    assert call.output == "buy milk; ship Tollway" and call.error is None and call.status == "completed"
    # Two model calls, each its own ledger row: the client's request id, then `<id>-h2`.
    request_id = raw.headers["request-id"]
    rows = org.ledger(request_id, 2)
    assert sorted(r["request_id"] for r in rows) == [request_id, f"{request_id}-h2"]
    assert all(r["route"] == "responses" and r["status"] == 200 and r["requested_model"] == "tollway-mock"
               for r in rows)
    assert resp.usage is not None and resp.usage.input_tokens == sum(r["input_tokens"] for r in rows)


def test_stdio_server_env(org: Org) -> None:
    resp = _ask(org, 'call tollway_files_read_note with {"name": "motd"}',
                [{"type": "tollway_files_read_note"}]).parse()
    assert resp.output[-1].content[0].text == "The tool returned: motd from env"


def test_streamable_http_mcp_round_trip(org: Org) -> None:
    resp = _ask(org, 'call tollway_search_lookup with {"term": "tollway"}',
                [{"type": "tollway_search_lookup"}]).parse()
    assert resp.output[-1].content[0].text == "The tool returned: Tollway is a self-hosted LLM gateway."
    [call] = _calls(resp)
    assert call.server_label == "search" and call.status == "completed"


def test_mcp_tool_error_goes_to_the_model(org: Org) -> None:
    resp = _ask(org, 'call tollway_files_read_note with {"name": "nope"}', [{"type": "tollway_tools"}]).parse()
    [call] = _calls(resp)
    assert call.status == "failed" and call.output is None and "no note named nope" in (call.error or "")
    assert resp.status == "completed" and "no note named nope" in resp.output[-1].content[0].text


def test_hanging_mcp_tool_is_cut_off(org: Org) -> None:
    started = time.monotonic()
    resp = _ask(org, 'call tollway_files_sleep with {"seconds": 60}', [{"type": "tollway_files_sleep"}]).parse()
    assert time.monotonic() - started < 15
    [call] = _calls(resp)
    assert call.status == "failed" and "did not answer within 2 s" in (call.error or "")
    assert resp.status == "completed" and resp.output[-1].content[0].text.startswith("The tool returned: the tool")
    # The session still works after a call was cut off.
    again = _ask(org, 'call tollway_files_read_note with {"name": "todo.txt"}', [{"type": "tollway_tools"}]).parse()
    assert again.output[-1].content[0].text == "The tool returned: buy milk; ship Tollway"


def test_web_fetch_allowed_host(org: Org, page: str) -> None:
    url = f"http://{page}/docs"
    resp = _ask(org, f'call tollway_web_fetch with {{"url": "{url}"}}', [{"type": "tollway_web_fetch"}]).parse()
    [call] = _calls(resp)
    assert call.server_label == "tollway" and call.status == "completed"
    assert call.output == PAGE[:60] + "\n[truncated to 60 bytes]"
    assert resp.output[-1].content[0].text.startswith("The tool returned: Docs page: the answer is 42.")


def test_web_fetch_refuses_other_hosts(org: Org, page: str) -> None:
    _Page.hits.clear()
    port = page.split(":")[1]
    url = f"http://localhost:{port}/secret"  # same server, but `localhost` is not on the allow-list
    resp = _ask(org, f'call tollway_web_fetch with {{"url": "{url}"}}', [{"type": "tollway_tools"}]).parse()
    [call] = _calls(resp)
    assert call.status == "failed" and "not on this gateway's web_fetch allow-list" in (call.error or "")
    assert _Page.hits == []


def test_grants_decide_which_tools(org: Org) -> None:
    # A named tool the key's grants lack: 403 in the OpenAI envelope.
    with pytest.raises(openai.PermissionDeniedError) as err:
        _ask(org, "hi", [{"type": "tollway_files_read_note"}], key=org.limited)
    assert err.value.status_code == 403 and err.value.code == "tool_access_denied"
    assert err.value.param == "tools[0].type"
    # `tollway_tools` expands to what the key may use: nothing for this key, so no hosted call.
    resp = _ask(org, 'call tollway_files_read_note with {"name": "todo.txt"}', [{"type": "tollway_tools"}],
                key=org.limited).parse()
    assert _calls(resp) == [] and resp.output_text.startswith("Hello from the Tollway mock model.")
    # A key granted only web_fetch gets only web_fetch.
    with pytest.raises(openai.PermissionDeniedError):
        _ask(org, "hi", [{"type": "tollway_search_lookup"}], key=org.web_only)
    resp = _ask(org, 'call tollway_search_lookup with {"term": "mcp"}', [{"type": "tollway_tools"}],
                key=org.web_only).parse()
    assert _calls(resp) == []


def test_unknown_hosted_tool_and_stream(org: Org) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _ask(org, "hi", [{"type": "tollway_nope"}])
    assert err.value.code == "unsupported_tool_type" and err.value.param == "tools[0].type"
    # The broken server was skipped at start: its tools do not exist.
    with pytest.raises(openai.BadRequestError):
        _ask(org, "hi", [{"type": "tollway_broken_anything"}])
    with pytest.raises(openai.BadRequestError) as err:
        org.sdk().responses.create(model="tollway-mock", input="hi", tools=[{"type": "tollway_tools"}],  # type: ignore[list-item]
                                   stream=True)
    assert err.value.code == "unsupported_parameter" and err.value.param == "stream"


def test_client_function_tools_still_return_to_the_client(org: Org) -> None:
    bash: Any = {"type": "function", "name": "Bash", "parameters": {"type": "object", "properties": {}}}
    resp = _ask(org, 'call Bash with {"command": "ls"}', [bash, {"type": "tollway_tools"}]).parse()
    assert [o.type for o in resp.output] == ["message", "function_call"] and resp.output[1].name == "Bash"


def test_iteration_cap(emulator: AnthropicEmulator, search_url: str, tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, hosted_config(emulator.base_url, search_url, max_iterations=1),
                       env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        org = Org(gw)
        raw = _ask(org, 'call tollway_search_lookup with {"term": "mcp"}', [{"type": "tollway_tools"}])
        resp = raw.parse()
        assert resp.status == "incomplete" and resp.incomplete_details is not None
        assert resp.incomplete_details.reason == "max_hosted_iterations"
        [call] = _calls(resp)
        assert call.status == "incomplete" and call.output is None and call.error is None
        assert len(org.ledger(raw.headers["request-id"], 1)) == 1
    finally:
        gw.stop()


def test_each_hosted_run_is_audited_without_its_data(org: Org) -> None:
    """Every hosted call is an audit record of its own: tool, outcome, duration; never the data."""
    resp = _ask(org, 'call tollway_files_read_note with {"name": "todo.txt"}', [{"type": "tollway_tools"}]).parse()
    assert resp.status == "completed"
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        data = httpx.get(org.gw.base_url + "/admin/v1/audit", params={"limit": 100},
                         headers={"x-api-key": org.admin}).json()["data"]
        found = [r for r in data if r["kind"] == "hosted_tool" and r["tool"] == "tollway_files_read_note"]
        time.sleep(0.1)
    assert found and found[0]["status"] == "ok" and found[0]["output_chars"] > 0
    assert "buy milk" not in json.dumps(found) and "todo.txt" not in json.dumps(found)
