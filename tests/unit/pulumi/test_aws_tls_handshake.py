"""A real TLS handshake on 127.0.0.1 with the material an AWS ``up`` generates.

The server presents the generated server certificate (as ACM would on the load balancer);
mlstack's client trusts only the CA from the stack's outputs. The load balancer's name is
resolved to 127.0.0.1 inside this process only: the TLS, the certificate chain and the host
name check are real.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.engines.pulumi_plan import run_stack_program
from runner.errors import MetadataError
from runner.metadata.client import MetadataClient
from runner.metadata.transport import Transport
from runner.tls import client_context
from stacks.aws import tls
from stacks.outputs import StackOutputs
from stacks.spec import StackSpec

pytestmark = [pytest.mark.services, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SPEC = StackSpec.model_validate({"name": "demo", "provider": "aws", "region": "eu-west-1"})
TOKEN = "handshake-test-token"


@pytest.fixture(scope="module")
def material() -> dict[str, str]:
    return {k: v for k, (v, _) in tls.generated_config(SPEC).items()}


@pytest.fixture(scope="module")
def outputs(material: dict[str, str]) -> StackOutputs:
    config = {
        "mlstack:owner": "alice", "mlstack:expiresAt": "never",
        "mlstack:metadataToken": TOKEN, "mlstack:dbPassword": "pw",
        "mlstack:trackerPassword": "pw", "mlstack:trackerFlaskKey": "k",
        **{f"mlstack:{k}": v for k, v in material.items()},
    }  # fmt: skip
    result = run_stack_program(SPEC, "stacks.aws.program", "demo-a1b2c3", config)
    return StackOutputs.model_validate(
        {k: v for k, v in result.outputs.items() if k in StackOutputs.model_fields}
    )


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(material: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An HTTPS server on a free 127.0.0.1 port with the generated certificate + chain."""
    folder = tmp_path_factory.mktemp("tls")
    chain, key = folder / "chain.pem", folder / "key.pem"
    chain.write_text(material[tls.CERT_CONFIG] + material[tls.CA_CONFIG])
    key.write_text(material[tls.KEY_CONFIG])
    key.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def lb_resolves_here(monkeypatch: pytest.MonkeyPatch, outputs: StackOutputs) -> str:
    """Resolve the load balancer's host name (from the outputs) to 127.0.0.1 in this process."""
    host = outputs.metadata.url.split("//", 1)[1].rsplit(":", 1)[0]
    real = socket.getaddrinfo

    def fake(name: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if name == host else name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return host


def test_client_from_the_outputs_verifies_the_server(
    outputs: StackOutputs, server: int, lb_resolves_here: str
) -> None:
    url = f"https://{lb_resolves_here}:{server}"
    client = MetadataClient(url, TOKEN, ca_pem=outputs.metadata.ca_pem)
    assert client.health() is True
    with (
        socket.create_connection((lb_resolves_here, server), timeout=5) as raw,
        client_context(outputs.metadata.ca_pem).wrap_socket(
            raw, server_hostname=lb_resolves_here
        ) as conn,
    ):
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
        names = [v for k, v in conn.getpeercert()["subjectAltName"]]
        assert f"*.{SPEC.region}.elb.amazonaws.com" in names


def test_without_the_ca_the_handshake_fails(server: int, lb_resolves_here: str) -> None:
    url = f"https://{lb_resolves_here}:{server}"
    transport = Transport(url, TOKEN, 5.0)  # the system's trust store only
    with pytest.raises(MetadataError, match=r"(?i)certificate|ssl|tls|not reachable"):
        transport.send("GET", "/health", None, auth=False)
    with (
        socket.create_connection((lb_resolves_here, server), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname=lb_resolves_here)


def test_another_stacks_ca_or_another_name_fails(
    outputs: StackOutputs, server: int, lb_resolves_here: str, tmp_path: Path
) -> None:
    other = tls.generate(tls.lb_hostnames("eu-west-1"), "mlstack other")
    with (
        socket.create_connection(("127.0.0.1", server), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client_context(other.ca_pem).wrap_socket(raw, server_hostname=lb_resolves_here)
    with (
        socket.create_connection(("127.0.0.1", server), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):  # right CA, wrong host name: the check is on
        client_context(outputs.metadata.ca_pem).wrap_socket(raw, server_hostname="example.com")
