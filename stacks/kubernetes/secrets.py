"""Secrets backend: Kubernetes Secrets in the stack's namespace.

A Role limited to Secrets in this namespace is bound to the orchestrator's service account, so
steps read credentials at run time; nothing is baked into images.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.base import K8sContext, role

TOKEN_SECRET = "mlstack-metadata-token"
TOKEN_KEY = "token"
COMPONENT = "secrets"


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
        role(
            ctx,
            "mlstack-secrets",
            COMPONENT,
            [
                {
                    "api_groups": [""],
                    "resources": ["secrets"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
            readers,
            self,
        )
        self.register_outputs({})

    def outputs(self) -> dict[str, Any]:
        return {"kind": "kubernetes", "namespace": self.ctx.ns}
