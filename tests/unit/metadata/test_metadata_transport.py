"""Connection handling of the client's transport, against a tiny scripted HTTP server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from runner.errors import MetadataError
from runner.metadata.client import MetadataClient

TOKEN = "transport-test-token"
PIPELINE = {"id": "p1", "name": "p", "created_at": "2024-01-01T00:00:00Z"}

# A handler gets the connection's index and the request's index on it, and returns the
# response bytes, or None to close the connection without answering.
Handler = Callable[[int, int], bytes | None]
Starter = Callable[[Handler], str]


def _response(status: int, body: object) -> bytes:
    payload = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return True


def _call(url: str, call: Callable[[MetadataClient], object]) -> None:
    with MetadataClient(url, TOKEN, timeout=5) as client:
        call(client)


@pytest.fixture
def scripted() -> Iterator[Starter]:
    """Start a one-thread HTTP server that answers as the handler says; returns its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(handler: Handler) -> str:
        def serve() -> None:
            index = 0
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    request = 0
                    with contextlib.suppress(OSError):  # the client went away
                        while _read_request(conn):
                            answer = handler(index, request)
                            if answer is None:
                                break
                            conn.sendall(answer)
                            request += 1
                index += 1

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
    listener.close()
    for thread in threads:
        thread.join(timeout=5)


def test_reconnects_once_when_a_kept_alive_connection_is_dropped(scripted: Starter) -> None:
    # Connection 0 answers once, then closes on the second request without answering.
    url = scripted(lambda conn, req: None if (conn, req) == (0, 1) else _response(200, PIPELINE))
    with MetadataClient(url, TOKEN) as client:
        assert client.get_or_create_pipeline("p").id == "p1"
        assert client.get_or_create_pipeline("p").id == "p1"  # retried on a new connection


def test_gives_up_when_a_fresh_connection_is_dropped(scripted: Starter) -> None:
    url = scripted(lambda conn, req: None)
    with pytest.raises(MetadataError, match="dropped the connection"):
        _call(url, MetadataClient.list_pipelines)


def test_error_details_never_echo_the_token(scripted: Starter) -> None:
    url = scripted(lambda conn, req: _response(500, {"detail": f"bad header Bearer {TOKEN}"}))
    with pytest.raises(MetadataError, match="answered 500") as caught:
        _call(url, MetadataClient.list_pipelines)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


def test_a_server_that_is_not_a_metadata_server(scripted: Starter) -> None:
    url = scripted(lambda conn, req: _response(200, {"hello": "world"}))
    with pytest.raises(MetadataError, match="unexpected answer"):
        _call(url, lambda client: client.get_or_create_pipeline("p"))
