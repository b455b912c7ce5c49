"""Orchestrator: the stack's namespace, and a ServiceAccount whose Role may run Jobs in it.

Steps run as Jobs under the ``mlstack-orchestrator`` service account; nothing runs while idle.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.base import K8sContext, role

SERVICE_ACCOUNT = "mlstack-orchestrator"
COMPONENT = "orchestrator"


class Orchestrator(pulumi.ComponentResource):
    """Namespace + ServiceAccount + Role (Jobs, their Pods and logs) + RoleBinding."""

    TYPE = "mlstack:kubernetes:Orchestrator"

    def __init__(self, ctx: K8sContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, "orchestrator", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = k8s.core.v1.Namespace(
            "namespace", metadata=ctx.meta(ctx.namespace, COMPONENT, namespaced=False), opts=child
        )
        # From here on, every object names the created namespace, so it waits for it.
        self.ctx = dataclasses.replace(ctx, ns=self.namespace.metadata.name)
        k8s.core.v1.ServiceAccount(
            "orchestrator-account", metadata=self.ctx.meta(SERVICE_ACCOUNT, COMPONENT), opts=child
        )
        role(
            self.ctx,
            "mlstack-jobs",
            COMPONENT,
            [
                {
                    "api_groups": ["batch"],
                    "resources": ["jobs"],
                    "verbs": ["create", "get", "list", "watch", "delete", "patch"],
                },
                {
                    "api_groups": [""],
                    "resources": ["pods", "pods/log"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
            [SERVICE_ACCOUNT],
            self,
        )
        self.register_outputs({"namespace": self.namespace.metadata.name})

    def outputs(self) -> dict[str, Any]:
        spec = self.ctx.spec
        assert spec.kubernetes is not None
        return {
            "kind": "kubernetes",
            "max_parallel": spec.components.orchestrator.max_parallel,
            "namespace": self.ctx.ns,
            "context": spec.kubernetes.context,
            "service_account": SERVICE_ACCOUNT,
            "base_image": spec.components.orchestrator.base_image,
        }
