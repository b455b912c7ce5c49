"""TLS for mlstack's clients: trust exactly the CA a stack's outputs name, or the system's.

A cloud stack without its own domain serves HTTPS with a certificate from a private CA that
``up`` generated; its PEM is in the outputs (``metadata.ca_pem``, ``tracker.ca_pem``). Clients
verify the server against that CA only (never ``verify=False``); without a CA they use the
system's trust store.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile


@functools.lru_cache(maxsize=8)
def client_context(ca_pem: str | None) -> ssl.SSLContext:
    """A verifying client context: hostname checked, trust = ``ca_pem`` or the system store."""
    if ca_pem:
        return ssl.create_default_context(cadata=ca_pem)
    return ssl.create_default_context()


@functools.lru_cache(maxsize=8)
def ca_file(ca_pem: str) -> str:
    """The CA written once to a private file (for libraries that want a path: requests)."""
    fd, path = tempfile.mkstemp(prefix="mlstack-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write(ca_pem)
    return path
