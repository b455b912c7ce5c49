"""One factory for the runner's AWS clients: ``aws_client("secretsmanager", region)``.

Credentials come only from boto3's standard chain (environment, profile, SSO, the ECS/Batch
task role); nothing here reads or stores one. Endpoints are boto3's own business too: it reads
``AWS_ENDPOINT_URL`` and the per-service ``AWS_ENDPOINT_URL_<SERVICE>`` (boto3 >= 1.28.57), so
the same code talks to AWS or to an emulator. Clients are cached per service, region and the
environment that shapes them: building one costs tens of milliseconds.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_CLIENTS: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()
# Variables that change which endpoint or identity a client uses: a change means a new client.
_SHAPING = (
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def _key(service: str, region: str | None) -> tuple[str, str, str]:
    import hashlib

    env = sorted(
        f"{k}={v}"
        for k, v in os.environ.items()
        if k.startswith("AWS_ENDPOINT_URL") or k in _SHAPING
    )
    # A digest, so no credential is kept around as a dictionary key.
    return (service, region or "", hashlib.sha256("\n".join(env).encode()).hexdigest())


def aws_client(service: str, region: str | None = None) -> Any:
    """A boto3 client for ``service`` in ``region`` (else the chain's region).

    Retries throttling and transient errors (standard mode); wrap its calls in
    :func:`runner.aws_errors.aws_errors` to turn failures into one clear line.
    """
    key = _key(service, region)
    with _LOCK:
        found = _CLIENTS.get(key)
        if found is not None:
            return found
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10)
        # A session per client: boto3's default session is not safe to share between threads.
        client = boto3.session.Session().client(service, region_name=region or None, config=config)
        _CLIENTS[key] = client
        return client


def clear_clients() -> None:
    """Forget every cached client (after credentials or endpoints change in-process)."""
    with _LOCK:
        _CLIENTS.clear()
