"""Container registry: a distribution registry (Deployment, Service, PVC) in the namespace.

Pods reach it at ``registry.<namespace>.svc.cluster.local:5000``; nodes pull from it only if
their container runtime trusts that address (see the README, "Cloud stacks").
"""

from __future__ import annotations

from typing import Any

import pulumi

from stacks.kubernetes.base import K8sContext, deployment, service_url, volume_claim

REGISTRY_IMAGE = "docker.io/library/registry:2.8.3"
COMPONENT = "container_registry"
SIZE_GIB = 10


class ContainerRegistry(pulumi.ComponentResource):
    """PVC + registry Deployment + Service."""

    TYPE = "mlstack:kubernetes:ContainerRegistry"

    def __init__(self, ctx: K8sContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, "container-registry", None, opts)
        self.ctx = ctx
        volume_claim(ctx, "registry-data", COMPONENT, SIZE_GIB, self)
        _, self.service = deployment(
            ctx,
            "registry",
            COMPONENT,
            {
                "name": "registry",
                "image": REGISTRY_IMAGE,
                "env": [
                    {"name": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "value": "/data"},
                    {"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"},
                ],
                "readiness_probe": {"http_get": {"path": "/", "port": 5000}},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            },
            5000,
            self,
            claim="registry-data",
            exposed=True,
        )
        self.register_outputs({"url": self.url})

    @property
    def url(self) -> str:
        return f"{self.ctx.host('registry')}:5000"

    def outputs(self) -> dict[str, Any]:
        """The registry as the user's machine pushes to it (the load balancer when exposed)."""
        url = service_url(self.ctx, self.service, "registry", 5000)
        return {
            "kind": "kubernetes",
            "url": url.apply(lambda u: u.removeprefix("http://")),
        }
