"""The stable front of a model endpoint: a TCP relay on the port its URL names.

    python -m runner.endpoint_front --port 8200 --backend-file DIR/front-NAME.backend

Each new connection is relayed to the port written in the backend file, read per
connection, so a redeploy swaps the model behind the URL by rewriting that file once the
new endpoint is healthy; connections already open finish on the old one. Standard library
only, no token: it never sees more than the bytes it relays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path


def backend_port(path: Path) -> int | None:
    """The port in ``path``, or None when it is missing or not a port."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def write_backend(path: Path, port: int) -> None:
    """Point the front at ``port``: written aside and renamed, so no reader sees half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.chmod(0o600)
    tmp.replace(path)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _relay(
    backend_file: Path, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
) -> None:
    port = backend_port(backend_file)
    try:
        if port is None:
            raise ConnectionRefusedError
        back_r, back_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(ConnectionError, OSError):
            await client_w.drain()
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, back_w), _pipe(back_r, client_w))
    for writer in (client_w, back_w):
        writer.close()


async def serve(host: str, port: int, backend_file: Path) -> None:
    """Relay connections on ``host:port`` until SIGTERM or SIGINT."""
    server = await asyncio.start_server(
        lambda r, w: _relay(backend_file, r, w), host, port, reuse_address=True
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with server:
        await stopping.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.endpoint_front")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-file", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.backend_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
