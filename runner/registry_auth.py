"""Credentials for pushing to and querying a stack's container registry, keyed by its kind.

``registry_auth(outputs)`` looks the registry's kind up in :data:`REGISTRY_AUTHS` (a lazy
:class:`runner.roles.Role`, as every runtime role); packaging and the metadata server's image
pass what it returns to ``docker push`` (``auth_config``) and to the registry's HTTP API
(``header``) without knowing the kind. ECR's token comes from ``ecr:GetAuthorizationToken``
with the standard AWS credential chain, is cached in this process until shortly before its
``expiresAt``, and is renewed early when the registry answers 401. It lives only in memory:
never in a file, an argument, a log line or an error message.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.roles import Role

if TYPE_CHECKING:
    from stacks.outputs import StackOutputs


MAX_TAG = 128  # the Docker distribution spec's tag limit: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
SLUG_IN_TAG = 64  # room left for the content hash and derived suffixes (``-sagemaker1``)


class RegistryAuth:
    """A registry without authentication (local, kubernetes, none): nothing to send."""

    def __init__(self, host: str, region: str | None = None) -> None:
        self.host = host
        self.region = region

    def image_location(self, registry: str, slug: str, content_tag: str) -> tuple[str, str, str]:
        """``(registry, repository, tag)`` of a pipeline's image: one repository per pipeline.

        ``registry`` is the stack's registry URL without scheme, ``slug`` the pipeline's name
        reduced to ``[a-z0-9-]``, ``content_tag`` the image's content hash.
        """
        return registry, f"mlstack/{slug}", content_tag

    def auth_config(self) -> dict[str, str] | None:
        """Credentials for ``docker push`` (the SDK's ``auth_config``), or None."""
        return None

    def header(self) -> str | None:
        """The ``Authorization`` header value for the registry's HTTP API, or None."""
        return None

    def renew(self) -> bool:
        """The registry refused the credentials: drop them; True when fresh ones may help."""
        return False


REGISTRY_AUTHS: Role[RegistryAuth] = Role(
    "container registry auth",
    {
        "none": "runner.registry_auth:RegistryAuth",
        "local": "runner.registry_auth:RegistryAuth",
        "kubernetes": "runner.registry_auth:RegistryAuth",
        "ecr": "runner.registry_auth:EcrAuth",
    },
)


def registry_host(url: str) -> str:
    """``host[:port]`` of a registry or repository URL (scheme and path dropped)."""
    return url.split("://", 1)[-1].split("/", 1)[0]


def registry_auth(outputs: StackOutputs) -> RegistryAuth:
    """The credentials of the stack's registry, whatever its kind."""
    registry = outputs.container_registry
    host = registry_host(getattr(registry, "url", "") or "")
    return REGISTRY_AUTHS.get(registry.kind)(host, outputs.region)


def ecr_region(host: str) -> str | None:
    """The region of an ECR registry host (``ID.dkr.ecr.REGION.amazonaws.com``), else None."""
    parts = host.split(":")[0].split(".")
    if len(parts) >= 6 and parts[1:3] == ["dkr", "ecr"]:
        return parts[3]
    return None


def registry_auth_for_ref(ref: str) -> RegistryAuth:
    """The credentials for an image reference alone (no stack outputs at hand).

    The metadata server's image is pushed by ``up`` before the stack has outputs: an ECR host
    names its own kind and region; anything else is taken as a registry without auth.
    """
    host = registry_host(ref)
    kind = "ecr" if ecr_region(host) else "none"
    return REGISTRY_AUTHS.get(kind)(host, ecr_region(host))


# --- ECR ----------------------------------------------------------------------------------


RENEW_BEFORE = 300.0  # seconds before expiresAt: a long push must not outlive its token


@dataclass(frozen=True)
class EcrToken:
    """A decoded authorization token; its password never shows in a repr."""

    username: str
    password: str = field(repr=False)
    expires_at: float  # epoch seconds


_TOKENS: dict[tuple[str, ...], EcrToken] = {}
_TOKENS_LOCK = threading.Lock()


class EcrAuth(RegistryAuth):
    """ECR: ``AWS`` plus a 12-hour token from ``ecr:GetAuthorizationToken``, cached per process.

    The region is the registry host's (else the stack's). ``clock`` is the time source the
    expiry is checked against.
    """

    clock = staticmethod(time.time)

    def image_location(self, registry: str, slug: str, content_tag: str) -> tuple[str, str, str]:
        """The stack's one repository (the outputs' URL ``host/repo``), the pipeline in the tag.

        The stack's roles may push to and pull from that repository only; a path below it
        would be another repository, which does not exist. The tag is
        ``<slug>-<content hash>``: the slug is cut so the tag stays far below 128 characters.
        """
        host, _, repository = registry.partition("/")
        if not repository.strip("/"):  # a bare registry host: nothing to share
            return super().image_location(registry, slug, content_tag)
        tag = f"{slug[:SLUG_IN_TAG].rstrip('-')}-{content_tag}"
        return host, repository.strip("/"), tag[:MAX_TAG]

    def __init__(self, host: str, region: str | None = None) -> None:
        super().__init__(host, ecr_region(host) or region)
        registry_id = host.split(".")[0] if ecr_region(host) else ""
        self.registry_id = registry_id
        endpoint = os.environ.get("AWS_ENDPOINT_URL_ECR") or os.environ.get("AWS_ENDPOINT_URL", "")
        self._key = (self.region or "", registry_id, endpoint)

    def token(self) -> EcrToken:
        """The cached token, or a new one when there is none or it (nearly) expired."""
        with _TOKENS_LOCK:
            found = _TOKENS.get(self._key)
            if found is not None and found.expires_at - RENEW_BEFORE > self.clock():
                return found
            fresh = self._fetch()
            _TOKENS[self._key] = fresh
            return fresh

    def _fetch(self) -> EcrToken:
        from runner.aws_clients import aws_client
        from runner.aws_errors import aws_errors

        what = f"getting a push token for the container registry {self.host}"
        with aws_errors("ecr", what):
            client = aws_client("ecr", self.region)
            ids = {"registryIds": [self.registry_id]} if self.registry_id else {}
            data = client.get_authorization_token(**ids)["authorizationData"][0]
        decoded = base64.b64decode(data["authorizationToken"]).decode()
        username, _, password = decoded.partition(":")
        return EcrToken(username, password, data["expiresAt"].timestamp())

    def auth_config(self) -> dict[str, str] | None:
        token = self.token()
        return {"username": token.username, "password": token.password}

    def header(self) -> str | None:
        token = self.token()
        pair = f"{token.username}:{token.password}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"

    def renew(self) -> bool:
        with _TOKENS_LOCK:
            _TOKENS.pop(self._key, None)
        return True
