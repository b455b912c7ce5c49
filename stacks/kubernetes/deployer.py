"""Model deployer: a ServiceAccount whose Role manages model Deployments and Services."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.base import K8sContext, role

SERVICE_ACCOUNT = "mlstack-deployer"
COMPONENT = "deployer"


class ModelDeployer(pulumi.ComponentResource):
    """ServiceAccount + Role (apps/deployments, services) + RoleBinding, in the namespace."""

    TYPE = "mlstack:kubernetes:ModelDeployer"

    def __init__(self, ctx: K8sContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, "deployer", None, opts)
        self.ctx = ctx
        k8s.core.v1.ServiceAccount(
            "deployer-account",
            metadata=ctx.meta(SERVICE_ACCOUNT, COMPONENT),
            opts=pulumi.ResourceOptions(parent=self),
        )
        verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
        role(
            ctx,
            "mlstack-deployments",
            COMPONENT,
            [
                {"api_groups": ["apps"], "resources": ["deployments"], "verbs": verbs},
                {"api_groups": [""], "resources": ["services"], "verbs": verbs},
                {"api_groups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            ],
            [SERVICE_ACCOUNT],
            self,
        )
        self.register_outputs({})

    def outputs(self) -> dict[str, Any]:
        return {
            "kind": "kubernetes",
            "namespace": self.ctx.ns,
            "service_account": SERVICE_ACCOUNT,
        }
