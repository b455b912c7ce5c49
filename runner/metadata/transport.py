"""HTTP transport of the metadata client: stdlib ``http.client``, one keep-alive connection.

Building an httpx client costs ~90 ms on these machines (it loads the CA bundle); a request
over a warm ``http.client`` connection costs a few ms. Requests are serialised on the one
connection (thread-safe), and a forked child opens its own connection (fork-safe).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from runner.errors import MetadataError

T = TypeVar("T")

_UNREACHABLE_HINT = "is the stack up? `mlstack up` starts it; check the metadata URL in its outputs"
# Errors that mean a reused keep-alive connection was closed by the server while idle.
_DROPPED = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


def encode_body(model: type[BaseModel], what: str, **fields: Any) -> bytes:
    """Validate a request body here, so a bad argument fails before any round trip."""
    sent = {key: value for key, value in fields.items() if value is not None}
    try:
        return model.model_validate(sent).model_dump_json(exclude_unset=True).encode()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise MetadataError(f"invalid {what}: {problems}") from None


class Transport:
    """One kept-alive HTTP connection to a metadata server, and its error mapping."""

    def __init__(self, url: str, token: str, timeout: float, ca_pem: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MetadataError(
                f"metadata server URL {url!r} is not an http:// or https:// URL",
                hint="use the metadata URL from the stack outputs, e.g. http://127.0.0.1:8123",
            )
        if not token:
            raise MetadataError(
                "no metadata token given", hint="use the metadata token from the stack outputs"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port or (443 if self._https else 80)
        except ValueError as exc:
            raise MetadataError(f"metadata server URL {url!r} has a bad port") from exc
        self._prefix = parts.path.rstrip("/")
        self._token = SecretStr(token)
        self._ca_pem = ca_pem
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Transport(url={self.url!r})"

    def close(self) -> None:
        """Close the connection; a later request reconnects."""
        with self._lock:
            self._drop()

    def call(
        self,
        adapter: TypeAdapter[T],
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        query: dict[str, Any] | None = None,
        what: str | None = None,
    ) -> T:
        """Send a request and parse a 2xx answer with ``adapter``; map any other answer."""
        if query:
            pairs = {key: str(value) for key, value in query.items() if value is not None}
            path = f"{path}?{urlencode(pairs)}" if pairs else path
        status, data = self.send(method, path, body)
        return self.parse(adapter, status, data, method, path, what)

    def parse(
        self,
        adapter: TypeAdapter[T],
        status: int,
        data: bytes,
        method: str,
        path: str,
        what: str | None,
    ) -> T:
        """Parse a 2xx answer with ``adapter``, or raise the MetadataError for its status."""
        if not 200 <= status < 300:
            raise self._error(status, data, method, path, what)
        try:
            return adapter.validate_json(data)
        except ValidationError as exc:
            raise MetadataError(
                f"metadata server at {self.url} sent an unexpected answer to {method} {path}",
                hint="is that URL really an mlstack metadata server of the same version?",
            ) from exc

    def _error(
        self, status: int, data: bytes, method: str, path: str, what: str | None
    ) -> MetadataError:
        detail = self._detail(data)
        if status == 401:
            return MetadataError(
                "metadata server refused the token",
                hint="use the metadata token from this stack's outputs",
            )
        if status == 404:
            # The server's detail names the missing thing ("run 'ab12' not found").
            missing = detail or f"{what or method + ' ' + path} not found"
            return MetadataError(f"{missing} on the metadata server at {self.url}")
        if status == 409:
            return MetadataError(f"metadata server refused {method} {path}: {detail}")
        return MetadataError(f"metadata server answered {status} to {method} {path}: {detail}")

    def _detail(self, data: bytes) -> str:
        """The server's ``detail``, flattened to one short line, with the token scrubbed."""
        try:
            detail: Any = json.loads(data).get("detail", "")
        except (ValueError, AttributeError):
            detail = data.decode("utf-8", "replace")
        if isinstance(detail, list):  # FastAPI's 422: a list of {loc, msg, ...}
            detail = "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}"
                if isinstance(item, dict)
                else str(item)
                for item in detail
            )
        text = " ".join(str(detail).split())[:500]
        return text.replace(self._token.get_secret_value(), "***")

    def send(
        self, method: str, path: str, body: bytes | None, *, auth: bool = True
    ) -> tuple[int, bytes]:
        """One request on the kept-alive connection, reconnecting once if it was dropped."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        if self._pid != os.getpid():
            # Forked: the parent's socket and lock are not ours to use.
            self._conn, self._lock, self._pid = None, threading.Lock(), os.getpid()
        target = self._prefix + path
        with self._lock:
            for attempt in (1, 2):
                conn, reused = self._connection()
                try:
                    conn.request(method, target, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except _DROPPED as exc:
                    self._drop()
                    if reused and attempt == 1:
                        continue  # the server closed the idle connection: reconnect once
                    raise MetadataError(
                        f"metadata server at {self.url} dropped the connection",
                        hint=_UNREACHABLE_HINT,
                    ) from exc
                except TimeoutError as exc:
                    self._drop()
                    raise MetadataError(
                        f"metadata server at {self.url} did not answer within {self.timeout:g} s",
                        hint="the server may be overloaded; retry, or raise the client timeout",
                    ) from exc
                except OSError as exc:  # refused, unreachable, unknown host
                    self._drop()
                    raise MetadataError(
                        f"metadata server at {self.url} is not reachable", hint=_UNREACHABLE_HINT
                    ) from exc
                except http.client.HTTPException as exc:
                    self._drop()
                    raise MetadataError(
                        f"metadata server at {self.url} sent a malformed response",
                        hint="is that URL really an mlstack metadata server?",
                    ) from exc
                if response.will_close:
                    self._drop()
                return response.status, data
        raise AssertionError("not reached")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The kept-alive connection and whether it is already open."""
        conn = self._conn
        if conn is not None and conn.sock is not None and _dropped(conn.sock):
            self._drop()
            conn = None
        if conn is None:
            if self._https:
                from runner.tls import client_context

                conn = self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout,
                    context=client_context(self._ca_pem),
                )  # fmt: skip
            else:
                conn = self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return conn, conn.sock is not None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket was closed by the server (it reads as ready)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
