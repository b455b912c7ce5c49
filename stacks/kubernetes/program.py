"""The Kubernetes stack as one inline Pulumi program, into an existing cluster.

The cluster comes from ``kubernetes.kubeconfig`` and ``kubernetes.context`` in the spec; the
Pulumi stack name is the mlstack stack id and config ``mlstack:*`` carries the owner, expiry
and generated secrets, exactly as for the AWS program.
"""

from __future__ import annotations

from typing import Any

import pulumi

from stacks.common.tags import stack_tags
from stacks.kubernetes.artifact_store import ArtifactStore
from stacks.kubernetes.base import K8sContext
from stacks.kubernetes.deployer import SERVICE_ACCOUNT as DEPLOYER_ACCOUNT
from stacks.kubernetes.deployer import ModelDeployer
from stacks.kubernetes.metadata import MetadataServer
from stacks.kubernetes.orchestrator import SERVICE_ACCOUNT as ORCHESTRATOR_ACCOUNT
from stacks.kubernetes.orchestrator import Orchestrator
from stacks.kubernetes.registry import ContainerRegistry
from stacks.kubernetes.secrets import SecretsBackend
from stacks.kubernetes.tracker import Tracker
from stacks.outputs import OUTPUTS_VERSION
from stacks.spec import DeployerFlavor, TrackerFlavor
from stacks.spec import KubernetesStackSpec as StackSpec

PROJECT = "mlstack-kubernetes"
SECRET_CONFIG = ("metadataToken", "minioPassword", "minioUserPassword")
COMPONENTS = {
    Orchestrator.TYPE: "orchestrator",
    ArtifactStore.TYPE: "artifact_store",
    ContainerRegistry.TYPE: "container_registry",
    SecretsBackend.TYPE: "secrets",
    MetadataServer.TYPE: "metadata",
    Tracker.TYPE: "tracker",
    ModelDeployer.TYPE: "deployer",
}


def plan_warnings(spec: StackSpec) -> list[str]:
    """Pre-flight notes for ``plan``: images the cluster may not be able to pull."""
    if spec.components.metadata.image is None:
        return [
            "warning: the metadata server's default image is in the stack's in-cluster"
            " registry, which nodes can pull from only if their container runtime trusts it;"
            " up does not wait for it; set components.metadata.image to an image in a"
            " registry your nodes can pull from"
        ]
    return []


def program(spec: StackSpec) -> None:
    """Declare every object of a Kubernetes stack and export the StackOutputs contract."""
    config = pulumi.Config("mlstack")
    base = K8sContext.from_pulumi(spec)
    opts = base.opts()
    components = spec.components

    orchestrator = Orchestrator(base, opts)
    ctx = orchestrator.ctx  # bound to the created namespace
    store = ArtifactStore(
        ctx,
        config.require_secret("minioPassword"),
        config.require_secret("minioUserPassword"),
        opts,
    )
    registry = ContainerRegistry(ctx, opts)
    deploys = components.deployer.flavor is DeployerFlavor.kubernetes
    readers = [ORCHESTRATOR_ACCOUNT] + ([DEPLOYER_ACCOUNT] if deploys else [])
    deployer: dict[str, Any] = {"kind": "none"}
    if deploys:
        deployer = ModelDeployer(ctx, opts).outputs()
    secrets = SecretsBackend(ctx, config.require_secret("metadataToken"), readers, opts)
    metadata = MetadataServer(ctx, registry_url=registry.url, store=store, opts=opts)
    tracker: dict[str, Any] = {"kind": "none"}
    if components.tracker.flavor is TrackerFlavor.mlflow:
        tracker = Tracker(ctx, store=store, metadata=metadata, opts=opts).outputs()

    exports: dict[str, Any] = {
        "version": OUTPUTS_VERSION,
        "stack": spec.name,
        "stack_id": base.stack_id,
        "provider": "kubernetes",
        "region": None,
        "tags": stack_tags(
            name=spec.name,
            stack_id=base.stack_id,
            owner=base.owner,
            expires_at=base.expires_at,
            extra=spec.tags,
        ),
        "artifact_store": store.outputs(),
        "container_registry": registry.outputs(),
        "orchestrator": orchestrator.outputs(),
        "secrets": secrets.outputs(),
        "tracker": tracker,
        "deployer": deployer,
        "metadata": metadata.outputs(),
    }
    for key, value in exports.items():
        pulumi.export(key, value)
