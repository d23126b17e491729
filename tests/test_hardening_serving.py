"""Issue 17 items 9 and 13, the connection side (tollway/serving.py): a header-read timeout
(slowloris, sockets that never send anything), the idle keep-alive timeout, a connection cap that
answers a clear 503, and malformed HTTP answered with a JSON envelope instead of uvicorn's plain
text. Raw sockets, bounded counts (200), and lowered limits in the config so the test is fast."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import Gateway, start_gateway

HEADER_TIMEOUT = 1.0
KEEP_ALIVE = 1.0
CAP = 40
SOCKETS = 200


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {"server": {"header_timeout": HEADER_TIMEOUT, "keep_alive_timeout": KEEP_ALIVE,
                         "max_connections": CAP},
              "models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]}
    gateway = start_gateway(Path(tmp_path_factory.mktemp("serving")), config)
    yield gateway
    gateway.stop()


def _connect(gw: Gateway) -> socket.socket:
    port = int(gw.base_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket, into: dict[socket.socket, bytes]) -> bool:
    """Read what is there; True once the server has closed the connection."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
            into[sock] = into.get(sock, b"") + data
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _wait_closed(socks: list[socket.socket], deadline: float, trickle: bool = False) -> dict[socket.socket, bytes]:
    """Poll until the server closed every socket (or the deadline); with `trickle`, send one more
    header byte on each open socket per round, as a slowloris client does."""
    got: dict[socket.socket, bytes] = {}
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        for sock in list(open_):
            if _drain(sock, got):
                open_.discard(sock)
            elif trickle:
                with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                    sock.send(b"x")
        time.sleep(0.1)
    assert not open_, f"{len(open_)} of {len(socks)} connections still open"
    return got


def _envelope(raw: bytes) -> tuple[int, dict[str, object], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body), head


def _healthy(gw: Gateway) -> None:
    resp = httpx.get(gw.base_url + "/v1/models", headers={"x-api-key": gw.key}, timeout=10)
    assert resp.status_code == 200


def test_slowloris_connections_are_cut_and_the_excess_refused(gw: Gateway) -> None:
    socks = [_connect(gw) for _ in range(SOCKETS)]
    started = time.monotonic()
    for sock in socks:
        with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):  # already refused
            sock.send(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-slow: ")
    got = _wait_closed(socks, started + HEADER_TIMEOUT + 8, trickle=True)
    statuses: dict[int, int] = {}
    for sock in socks:
        status, body, _ = _envelope(got[sock])
        statuses[status] = statuses.get(status, 0) + 1
        assert body["type"] == "error"
        error = body["error"]
        assert isinstance(error, dict)
        if status == 503:
            assert error["type"] == "overloaded_error" and "server.max_connections" in error["message"]
        else:
            assert status == 408 and "server.header_timeout" in error["message"]
        sock.close()
    assert statuses.get(503, 0) >= SOCKETS - CAP and statuses.get(408, 0) >= 1, statuses
    _healthy(gw)


def test_sockets_that_never_send_are_closed(gw: Gateway) -> None:
    socks = [_connect(gw) for _ in range(SOCKETS)]
    started = time.monotonic()
    _wait_closed(socks, started + HEADER_TIMEOUT + 8)
    for sock in socks:
        sock.close()
    _healthy(gw)


def test_kept_alive_connection_is_closed_when_idle_or_slow(gw: Gateway) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    idle = _connect(gw)
    idle.send(request)
    slow = _connect(gw)
    slow.send(request)
    time.sleep(0.2)
    slow.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the next request's headers never finish
    got = _wait_closed([idle, slow], time.monotonic() + KEEP_ALIVE + HEADER_TIMEOUT + 5)
    assert got[idle].startswith(b"HTTP/1.1 200") and got[idle].count(b"HTTP/1.1") == 1
    second = got[slow].split(b"HTTP/1.1 ")[2]
    assert second.startswith(b"408")
    idle.close()
    slow.close()


@pytest.mark.parametrize("garbage", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
                                     b"POST /v1/messages HTTP/1.1\r\nContent-Length: -1\r\n\r\n"])
def test_malformed_http_is_a_json_envelope(gw: Gateway, garbage: bytes) -> None:
    sock = _connect(gw)
    sock.send(garbage)
    got = _wait_closed([sock], time.monotonic() + 5)
    status, body, head = _envelope(got[sock])
    assert status == 400 and body["type"] == "error"
    error = body["error"]
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    assert b"request-id:" in head.lower() and str(body["request_id"]).startswith("req_")
    sock.close()
