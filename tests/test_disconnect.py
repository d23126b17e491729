"""A client that gives up on a non-streaming request (or a streaming one still waiting for the
upstream's first byte) makes the gateway close that request's upstream connection within a
second, on every surface that forwards, and the request is recorded once as 499.

Each test: the upstream emulator is scripted to answer only after several seconds; a real client
(the anthropic or openai SDK with a short timeout) gives up after ~0.5 s; the emulator, whose
handler is cancelled when its connection is lost, tells when the gateway closed the upstream
connection; the ledger and the audit log (admin API) must hold exactly one record of the request,
499 `client_closed_request`; the gateway must go on serving; and its log must show no traceback.
The request is found by a unique `x-claude-code-session-id`, which the audit records (the client
never saw a request-id: it left before the headers). Also here: a client leaving mid-upload, the
hosted-tool loop, and uvicorn's own cancellation at the end of the shutdown grace."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply, default_message
from tests.openai_emulator import OpenAIEmulator, chat_completion

OPENAI_KEY = "sk-openai-upstream-test"
CLAUDE = "claude-sonnet-4-5-20250929"
GPT = "gpt-emu"
SLOW = 5.0  # seconds the upstream "thinks": far longer than any client here waits
GIVE_UP = 0.5  # the client's timeout
PROMPT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def oai_emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture
def claude_up(emulator: AnthropicEmulator) -> AnthropicEmulator:
    emulator.reset()
    return emulator


@pytest.fixture
def gpt_up(oai_emu: OpenAIEmulator) -> OpenAIEmulator:
    oai_emu.reset()
    return oai_emu


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, oai_emu: OpenAIEmulator,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    anthropic_up = {"provider": "anthropic", "base_url": emulator.base_url, "api_key": "${TEST_UPSTREAM_KEY}"}
    config = {
        "server": {"ping_interval": 5},
        "retries": {"max_attempts": 1, "breaker_failures": 1000},
        "models": [
            {"id": CLAUDE, "upstream": anthropic_up},
            {"id": GPT, "upstream": {"provider": "openai", "base_url": oai_emu.base_url + "/v1",
                                     "api_key": "${TEST_OPENAI_KEY}", "model": "gpt-4o-mini"}},
        ],
        "hosted_tools": {"web_fetch": {"allow_hosts": ["127.0.0.1"], "max_bytes": 200}},
    }
    gateway = start_gateway(tmp_path_factory.mktemp("disconnect"), config,
                            env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_OPENAI_KEY": OPENAI_KEY})
    os.set_blocking(gateway.proc.stdout.fileno(), False)  # type: ignore[union-attr]
    yield gateway
    os.set_blocking(gateway.proc.stdout.fileno(), True)  # type: ignore[union-attr]
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> httpx.Client:
    key = json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)["key"]
    return httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"x-api-key": key}, timeout=10)


_LOG: list[bytes] = []


def gateway_log(gw: Gateway) -> str:
    """Everything the gateway process wrote (stdout and stderr) so far, read without blocking."""
    fd = gw.proc.stdout.fileno()  # type: ignore[union-attr]
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        _LOG.append(chunk)
    return b"".join(_LOG).decode("utf-8", "replace")


def records_of(admin: httpx.Client, session: str, n: int) -> list[dict[str, Any]]:
    """The request audit records of SESSION once N are written, then again after a pause, so a
    duplicate written late would be seen too."""
    deadline = time.monotonic() + 8
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        data = admin.get("/audit", params={"limit": 100, "kind": "request"}).json()["data"]
        found = [r for r in data if (r.get("client") or {}).get("session_id") == session]
        if len(found) >= n:
            time.sleep(0.5)
            data = admin.get("/audit", params={"limit": 100, "kind": "request"}).json()["data"]
            return [r for r in data if (r.get("client") or {}).get("session_id") == session]
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} of {n} audit records for session {session}")


def ledger_rows(admin: httpx.Client, request_id: str) -> list[dict[str, Any]]:
    rows = admin.get("/usage/requests", params={"limit": 1000}).json()
    return [r for r in rows if r["request_id"] == request_id]


def gives_up(call: Callable[[], Any], error: type[Exception], timeout: float = GIVE_UP) -> tuple[float, float]:
    """Run CALL, which must give up after TIMEOUT with ERROR; (when it started, when it left)."""
    started = time.monotonic()
    with pytest.raises(error):
        call()
    left = time.monotonic()
    assert left - started < timeout + 2, "the client's own timeout did not fire"
    return started, left


def assert_upstream_closed(up: AnthropicEmulator, started: float, left: float, n: int = 1) -> None:
    """The emulator saw the gateway close N upstream connections, after the client left (not
    before: the gateway did wait while the client did) and within a second of it leaving."""
    up.wait_for_disconnects(n, timeout=3)
    cut = up.disconnected_at[n - 1]
    assert started + GIVE_UP * 0.8 <= cut, "the upstream was closed before the client gave up"
    assert cut - left < 1.0, f"the upstream was closed {cut - left:.3f} s after the client left"


def assert_one_499(admin: httpx.Client, session: str) -> dict[str, Any]:
    [record] = records_of(admin, session, 1)
    assert record["status"] == 499 and record["error_type"] == "client_closed_request"
    [row] = ledger_rows(admin, record["request_id"])
    assert row["status"] == 499 and row["error_type"] == "client_closed_request"
    return record


def assert_clean_log(gw: Gateway) -> None:
    log = gateway_log(gw)
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]


def claude_client(gw: Gateway, session: str, timeout: float = GIVE_UP) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0, timeout=timeout,
                               default_headers={"x-claude-code-session-id": session})


def gpt_client(gw: Gateway, session: str, timeout: float = GIVE_UP) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0, timeout=timeout,
                         default_headers={"x-claude-code-session-id": session})


def test_messages_client_disconnect_cancels_the_upstream(gw: Gateway, claude_up: AnthropicEmulator,
                                                         admin: httpx.Client) -> None:
    claude_up.script(JSONReply(200, default_message(CLAUDE), delay=SLOW))
    session = uuid.uuid4().hex
    client = claude_client(gw, session)
    started, left = gives_up(lambda: client.messages.create(model=CLAUDE, max_tokens=5, messages=PROMPT),
                             anthropic.APITimeoutError)
    assert_upstream_closed(claude_up, started, left)
    assert_one_499(admin, session)
    # The gateway goes on serving, on the same client.
    msg = client.with_options(timeout=10).messages.create(model=CLAUDE, max_tokens=5, messages=PROMPT)
    assert msg.content[0].type == "text"
    assert_clean_log(gw)


def test_messages_stream_waiting_for_its_first_byte_is_cancelled_too(gw: Gateway, claude_up: AnthropicEmulator,
                                                                     admin: httpx.Client) -> None:
    """Before the upstream's headers there is no stream to close yet: the same watch applies."""
    claude_up.script(JSONReply(200, default_message(CLAUDE), delay=SLOW))
    session = uuid.uuid4().hex
    client = claude_client(gw, session)

    def stream() -> None:
        with client.messages.stream(model=CLAUDE, max_tokens=5, messages=PROMPT) as events:
            events.until_done()

    started, left = gives_up(stream, anthropic.APITimeoutError)
    assert_upstream_closed(claude_up, started, left)
    assert_one_499(admin, session)
    assert_clean_log(gw)


def test_count_tokens_client_disconnect_cancels_the_upstream(gw: Gateway, claude_up: AnthropicEmulator,
                                                             admin: httpx.Client) -> None:
    claude_up.script(JSONReply(200, {"input_tokens": 3}, delay=SLOW))
    session = uuid.uuid4().hex
    client = claude_client(gw, session)
    started, left = gives_up(lambda: client.messages.count_tokens(model=CLAUDE, messages=PROMPT),
                             anthropic.APITimeoutError)
    assert_upstream_closed(claude_up, started, left)
    record = assert_one_499(admin, session)
    assert record["route"] == "count_tokens"
    assert client.with_options(timeout=10).messages.count_tokens(model=CLAUDE, messages=PROMPT).input_tokens > 0
    assert_clean_log(gw)


def test_chat_completions_client_disconnect_cancels_the_openai_upstream(gw: Gateway, gpt_up: OpenAIEmulator,
                                                                        admin: httpx.Client) -> None:
    gpt_up.script(JSONReply(200, chat_completion("gpt-4o-mini"), delay=SLOW))
    session = uuid.uuid4().hex
    client = gpt_client(gw, session)
    started, left = gives_up(lambda: client.chat.completions.create(model=GPT, messages=PROMPT),  # type: ignore[arg-type]
                             openai.APITimeoutError)
    assert_upstream_closed(gpt_up, started, left)
    record = assert_one_499(admin, session)
    assert record["route"] == "chat_completions"
    answer = client.with_options(timeout=10).chat.completions.create(model=GPT, messages=PROMPT)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    assert_clean_log(gw)


def test_chat_completions_client_disconnect_cancels_an_anthropic_upstream(gw: Gateway, claude_up: AnthropicEmulator,
                                                                          admin: httpx.Client) -> None:
    claude_up.script(JSONReply(200, default_message(CLAUDE), delay=SLOW))
    session = uuid.uuid4().hex
    client = gpt_client(gw, session)
    started, left = gives_up(lambda: client.chat.completions.create(model=CLAUDE, messages=PROMPT),  # type: ignore[arg-type]
                             openai.APITimeoutError)
    assert_upstream_closed(claude_up, started, left)
    assert_one_499(admin, session)
    assert_clean_log(gw)


def test_responses_client_disconnect_cancels_the_upstream(gw: Gateway, claude_up: AnthropicEmulator,
                                                          admin: httpx.Client) -> None:
    claude_up.script(JSONReply(200, default_message(CLAUDE), delay=SLOW))
    session = uuid.uuid4().hex
    client = gpt_client(gw, session)
    started, left = gives_up(lambda: client.responses.create(model=CLAUDE, input="hi"), openai.APITimeoutError)
    assert_upstream_closed(claude_up, started, left)
    record = assert_one_499(admin, session)
    assert record["route"] == "responses"
    assert client.with_options(timeout=10).responses.create(model=CLAUDE, input="hi").output_text
    assert_clean_log(gw)


def test_responses_hosted_loop_cancels_the_model_call_under_way(gw: Gateway, claude_up: AnthropicEmulator,
                                                                admin: httpx.Client) -> None:
    """The hosted-tool loop makes several model calls: the first answers at once with a hosted
    tool call, the tool runs, and the second model call is still waiting when the client leaves.
    That one is cancelled and recorded as 499; the first stays recorded as answered."""
    tool_call = default_message(CLAUDE)
    tool_call["content"] = [{"type": "tool_use", "id": "toolu_emu_1", "name": "tollway_web_fetch",
                             "input": {"url": gw.base_url + "/health"}}]
    tool_call["stop_reason"] = "tool_use"
    claude_up.script(JSONReply(200, tool_call), JSONReply(200, default_message(CLAUDE), delay=SLOW))
    session = uuid.uuid4().hex
    client = gpt_client(gw, session, timeout=1.0)
    started, left = gives_up(lambda: client.responses.create(model=CLAUDE, input="fetch it",
                                                             tools=[{"type": "tollway_web_fetch"}]),  # type: ignore[list-item]
                             openai.APITimeoutError, timeout=1.0)
    assert len(claude_up.received) == 2, "the second model call was never made"
    assert_upstream_closed(claude_up, started, left)
    first, second = sorted(records_of(admin, session, 2), key=lambda r: r["request_id"])
    assert second["request_id"] == first["request_id"] + "-h2"
    assert (first["status"], second["status"]) == (200, 499)
    assert second["error_type"] == "client_closed_request"
    assert [r["status"] for r in ledger_rows(admin, second["request_id"])] == [499]
    assert [r["status"] for r in ledger_rows(admin, first["request_id"])] == [200]
    assert claude_up.disconnects == 1
    assert_clean_log(gw)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/v1/responses"])
def test_client_leaving_mid_upload_is_recorded_once_as_499(gw: Gateway, admin: httpx.Client, path: str) -> None:
    """Authenticated, then gone before the whole body arrived: one 499 record, no traceback."""
    session = uuid.uuid4().hex
    port = int(gw.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {gw.key}\r\n"
                    f"x-claude-code-session-id: {session}\r\ncontent-type: application/json\r\n"
                    f"content-length: 1000\r\n\r\n{{\"model\": ".encode())
        time.sleep(0.3)
    assert_one_499(admin, session)
    assert_clean_log(gw)


class SlowPage:
    """A web page that never answers: it accepts one connection, reads the request, and notes
    when the other side closes it (the hosted web fetch giving up)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/slow"
        self.closed = threading.Event()
        self.closed_at = 0.0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while conn.recv(65536):
                pass
            self.closed_at = time.monotonic()
            self.closed.set()

    def close(self) -> None:
        self.listener.close()


def test_responses_hosted_tool_run_is_cancelled_when_the_client_leaves(gw: Gateway, claude_up: AnthropicEmulator,
                                                                       admin: httpx.Client) -> None:
    """The client leaves while a hosted tool runs (a web fetch of a page that never answers): the
    tool run is cancelled (its connection closed within a second), audited as `cancelled`, and
    the model is not called again."""
    page = SlowPage()
    try:
        tool_call = default_message(CLAUDE)
        tool_call["content"] = [{"type": "tool_use", "id": "toolu_emu_2", "name": "tollway_web_fetch",
                                 "input": {"url": page.url}}]
        tool_call["stop_reason"] = "tool_use"
        claude_up.script(JSONReply(200, tool_call))
        session = uuid.uuid4().hex
        client = gpt_client(gw, session, timeout=1.0)
        _, left = gives_up(lambda: client.responses.create(model=CLAUDE, input="fetch it",
                                                           tools=[{"type": "tollway_web_fetch"}]),  # type: ignore[list-item]
                           openai.APITimeoutError, timeout=1.0)
        assert page.closed.wait(3), "the tool's connection was not closed"
        assert page.closed_at - left < 1.0
    finally:
        page.close()
    [record] = records_of(admin, session, 1)
    assert record["status"] == 200  # the one model call was answered; the tool run was cut
    deadline = time.monotonic() + 8
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not runs:
        data = admin.get("/audit", params={"limit": 100}).json()["data"]
        runs = [r for r in data if r["kind"] == "hosted_tool" and r["request_id"] == record["request_id"]]
        time.sleep(0.1)
    assert [r["status"] for r in runs] == ["cancelled"]
    assert len(claude_up.received) == 1
    assert_clean_log(gw)


def test_shutdown_cancel_is_not_mistaken_for_a_client_disconnect(emulator: AnthropicEmulator,
                                                                 tmp_path: Path) -> None:
    """On SIGTERM a request that finishes within `shutdown_grace` is answered; one still waiting
    when the grace ends is cancelled by uvicorn. That cancellation must propagate (the client,
    still connected, gets uvicorn's 500) and not be taken for the client leaving (which answers
    nobody): the watch tells its own cancellation apart from uvicorn's."""
    emulator.reset()
    gw = start_gateway(tmp_path / "term", {
        "server": {"shutdown_grace": 1.5},
        "retries": {"max_attempts": 1},
        "models": [{"id": CLAUDE, "upstream": {"provider": "anthropic", "base_url": emulator.base_url,
                                               "api_key": "${TEST_UPSTREAM_KEY}"}}],
    }, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    emulator.script(JSONReply(200, default_message(CLAUDE), delay=10), JSONReply(200, default_message(CLAUDE),
                                                                                 delay=0.8))
    statuses: dict[str, int] = {}

    def send(name: str) -> None:
        resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": gw.key}, timeout=15,
                          json={"model": CLAUDE, "max_tokens": 5, "messages": PROMPT})
        statuses[name] = resp.status_code

    try:
        threads = {"stuck": threading.Thread(target=send, args=("stuck",)),
                   "quick": threading.Thread(target=send, args=("quick",))}
        threads["stuck"].start()
        emulator.wait_for(1)
        threads["quick"].start()
        emulator.wait_for(2)
        terminated = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        for t in threads.values():
            t.join(timeout=15)
        gw.proc.wait(timeout=15)
    finally:
        if gw.proc.poll() is None:
            gw.proc.kill()
    assert statuses == {"quick": 200, "stuck": 500}
    assert time.monotonic() - terminated < 5
    emulator.wait_for_disconnects(1, timeout=3)  # the stuck request's upstream connection was closed
    assert gw.cli("audit", "export").stdout.count('"route":"messages"') == 2
