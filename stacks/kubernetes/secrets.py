"""Secrets backend: Kubernetes Secrets in the stack's namespace, least privilege.

Readers (the orchestrator's and deployer's service accounts) may ``get``/``list`` exactly the
Secrets named in :data:`READABLE`: the metadata token, the user secrets Secret and the MinIO
user's keys; never MinIO's root credentials. Only the stack's own service account
(:data:`WRITER_ACCOUNT`) may write, and only the user secrets Secret (``update``/``patch``;
it exists from ``up`` on, so nobody needs ``create`` or ``delete``).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.base import K8sContext, role

TOKEN_SECRET = "mlstack-metadata-token"
TOKEN_KEY = "token"
USER_SECRETS = "mlstack-user-secrets"
WRITER_ACCOUNT = "mlstack-stack"
COMPONENT = "secrets"
READ_VERBS = ["get", "list"]  # list is limited to resourceNames by a metadata.name selector
WRITE_VERBS = ["get", "update", "patch"]


def readable() -> list[str]:
    """The Secrets readers may read (MinIO's root credentials are not among them)."""
    from stacks.kubernetes.artifact_store import CREDENTIALS

    return [TOKEN_SECRET, USER_SECRETS, CREDENTIALS]


class SecretsBackend(pulumi.ComponentResource):
    """The metadata token Secret and a namespace-scoped Role over Secrets."""

    TYPE = "mlstack:kubernetes:SecretsBackend"

    def __init__(
        self,
        ctx: K8sContext,
        metadata_token: pulumi.Input[str],
        readers: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "secrets", None, opts)
        self.ctx = ctx
        k8s.core.v1.Secret(
            "metadata-token",
            metadata=ctx.meta(TOKEN_SECRET, COMPONENT),
            string_data={TOKEN_KEY: pulumi.Output.secret(metadata_token)},
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self)
        k8s.core.v1.Secret(
            "user-secrets", metadata=ctx.meta(USER_SECRETS, COMPONENT), type="Opaque", opts=child
        )
        k8s.core.v1.ServiceAccount(
            "stack-account", metadata=ctx.meta(WRITER_ACCOUNT, COMPONENT), opts=child
        )
        role(
            ctx,
            "mlstack-secrets",
            COMPONENT,
            [
                {
                    "api_groups": [""],
                    "resources": ["secrets"],
                    "resource_names": readable(),
                    "verbs": READ_VERBS,
                }
            ],
            readers,
            self,
        )
        role(
            ctx,
            "mlstack-secrets-writer",
            COMPONENT,
            [
                {
                    "api_groups": [""],
                    "resources": ["secrets"],
                    "resource_names": [USER_SECRETS],
                    "verbs": WRITE_VERBS,
                }
            ],
            [WRITER_ACCOUNT],
            self,
        )
        self.register_outputs({})

    def outputs(self) -> dict[str, Any]:
        return {"kind": "kubernetes", "namespace": self.ctx.ns}
