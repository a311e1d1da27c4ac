"""The real server process under hostile connections: trickled heads, malformed requests, clients
that leave mid-answer (issue 12). One log line each, never a traceback; the server keeps serving."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser.helpers import Server, run_server

HEAD_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server(tiny_city, tmp_path_factory) -> Iterator[Server]:
    with run_server(tiny_city, tmp_path_factory.mktemp("guard"), "--head-timeout", str(HEAD_TIMEOUT)) as srv:
        yield srv


def connect(server: Server) -> socket.socket:
    port = int(server.base_url.rstrip("/").rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def still_serving(server: Server) -> None:
    with urllib.request.urlopen(server.base_url + "api/health", timeout=10) as resp:
        assert resp.status == 200


def test_a_trickled_request_head_is_cut_off(server):
    sock = connect(server)
    request = b"GET /city/city.json HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    start, sent = time.monotonic(), 0
    with pytest.raises(OSError):  # reset or broken pipe once the server has closed it
        for byte in request:
            sock.send(bytes([byte]))
            sent += 1
            time.sleep(0.1)
    took = time.monotonic() - start
    assert sent < len(request), "the server took the whole trickled head"
    assert took < 4 * HEAD_TIMEOUT + 5, took
    sock.close()
    time.sleep(0.3)
    assert "no complete request head within 2 s" in server.log()
    still_serving(server)


def test_an_idle_keep_alive_connection_outlives_the_head_deadline(server):
    sock = connect(server)
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    time.sleep(HEAD_TIMEOUT + 1)  # idle, between requests: not a slow head
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "lines"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 1),
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 1),
        # TLS to the plain port: aiohttp itself keeps this internet noise at debug level
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)) + b"\r\n\r\n", 0),
    ],
    ids=["bad-header", "long-url", "tls-hello"],
)
def test_a_malformed_request_is_one_log_line(server, request_bytes, lines):
    before = server.log()
    sock = connect(server)
    sock.sendall(request_bytes)
    assert sock.recv(64).startswith(b"HTTP/1.0 400")
    sock.close()
    time.sleep(0.3)
    new = server.log()[len(before) :]
    assert "Traceback" not in new, new
    assert new.count("malformed request from 127.0.0.1") == lines, new
    assert len(new.splitlines()) == lines, new
    still_serving(server)


def test_a_client_leaving_mid_answer_is_no_error(server, tiny_city):
    tile = next((tiny_city / "lidar").rglob("*.glb"))
    before = server.log()
    for _ in range(5):
        sock = connect(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /city/{tile.relative_to(tiny_city).as_posix()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(100)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset on close
        sock.close()
    time.sleep(0.5)
    new = server.log()[len(before) :]
    assert "Traceback" not in new and "Error handling request" not in new, new
    still_serving(server)
