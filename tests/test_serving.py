"""How answers leave the gateway on the wire (tollway/serving.py): each in one TCP segment.

The kernel counts the segments that carried data into a socket (`tcpi_data_segs_in` of
TCP_INFO, Linux 4.6+). uvloop sets TCP_NODELAY, so every write of the server is a segment of its
own: an answer whose head and body were written separately arrives as two.
"""

from __future__ import annotations

import socket
import struct

import orjson
import pytest

from tests.conftest import Gateway

TCPI_DATA_SEGS_IN = 152  # offset in struct tcp_info (include/uapi/linux/tcp.h)


def data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < TCPI_DATA_SEGS_IN + 4:
        pytest.fail("this kernel's TCP_INFO has no tcpi_data_segs_in (Linux 4.6+ is needed)")
    return int(struct.unpack_from("I", info, TCPI_DATA_SEGS_IN)[0])


def request(method: str, path: str, key: str, body: dict[str, object] | None = None, close: bool = False) -> bytes:
    raw = orjson.dumps(body) if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"x-api-key: {key}", "anthropic-version: 2023-06-01",
            "content-type: application/json", f"content-length: {len(raw)}"]
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + raw


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a content-length: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the answer's head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length")
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer's body"
        body += chunk
    return int(lines[0].split()[1]), body


MESSAGE = {"model": "tollway-mock", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/v1/messages", MESSAGE, 200),
    ("POST", "/v1/messages/count_tokens", {"model": "tollway-mock", "messages": MESSAGE["messages"]}, 200),
    ("GET", "/v1/models", None, 200),
    ("POST", "/v1/messages", {"model": "tollway-mock"}, 400),
    ("POST", "/v1/messages", {"model": "no-such-model", **{k: v for k, v in MESSAGE.items() if k != "model"}}, 404),
])
def test_each_answer_is_one_segment_on_a_kept_alive_connection(
        gateway: Gateway, method: str, path: str, body: dict[str, object] | None, status: int) -> None:
    with socket.create_connection(("127.0.0.1", int(gateway.base_url.rsplit(":", 1)[1])), timeout=10) as sock:
        for n in (1, 2, 3):
            sock.sendall(request(method, path, gateway.key, body))
            got, payload = read_answer(sock)
            assert got == status, payload
            assert data_segments_in(sock) == n  # head and body together, every time


def test_an_unauthenticated_answer_is_one_segment_too(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", int(gateway.base_url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(request("POST", "/v1/messages", "tw-not-a-key", MESSAGE))
        status, payload = read_answer(sock)
        assert status == 401 and orjson.loads(payload)["error"]["type"] == "authentication_error"
        assert data_segments_in(sock) == 1


def test_connection_close_sends_the_whole_answer_before_closing(gateway: Gateway) -> None:
    """The held write goes out before the transport closes: nothing is cut off or reordered."""
    with socket.create_connection(("127.0.0.1", int(gateway.base_url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(request("POST", "/v1/messages", gateway.key, MESSAGE, close=True))
        status, payload = read_answer(sock)
        assert status == 200 and orjson.loads(payload)["type"] == "message"
        assert sock.recv(1) == b"", "the gateway closes the connection after the answer"
        assert data_segments_in(sock) == 1
