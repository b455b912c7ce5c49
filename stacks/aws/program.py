"""The AWS stack as one inline Pulumi program: seven components, one outputs contract.

The engine runs :func:`program` through the Automation API; the offline ``plan`` and the mock
tests run the same function under Pulumi's mocks. Inputs besides the spec come from the Pulumi
stack: its name is the mlstack stack id, and config ``mlstack:*`` carries the owner, the expiry
and the generated secrets (see :data:`SECRET_CONFIG`).
"""

from __future__ import annotations

from typing import Any

import pulumi

from stacks.aws import network, tls
from stacks.aws.artifact_store import ArtifactStore
from stacks.aws.base import AwsContext, StackIdentity
from stacks.aws.deployer import ModelDeployer
from stacks.aws.expiry import Expiry
from stacks.aws.metadata import MetadataServer
from stacks.aws.orchestrator import Orchestrator
from stacks.aws.registry import ContainerRegistry
from stacks.aws.secrets import SecretsBackend
from stacks.aws.tracker import Tracker
from stacks.outputs import OUTPUTS_VERSION
from stacks.spec import AwsStackSpec as StackSpec
from stacks.spec import DeployerFlavor, TrackerFlavor

PROJECT = "mlstack-aws"
# Secret config values the engine generates once per stack (stored encrypted in the stack).
SECRET_CONFIG = ("metadataToken", "dbPassword", "trackerPassword", "trackerFlaskKey")
# Config generated once per stack from the spec (the TLS material): stacks.aws.tls.
generated_config = tls.generated_config
plan_warnings = network.plan_warnings
# Component resource type -> the spec component it belongs to (for plan grouping).
COMPONENTS = {
    ArtifactStore.TYPE: "artifact_store",
    ContainerRegistry.TYPE: "container_registry",
    SecretsBackend.TYPE: "secrets",
    Orchestrator.TYPE: "orchestrator",
    MetadataServer.TYPE: "metadata",
    Tracker.TYPE: "tracker",
    ModelDeployer.TYPE: "deployer",
    Expiry.TYPE: "expiry",
}


def program(spec: StackSpec) -> None:
    """Declare every resource of an AWS stack and export the StackOutputs contract."""
    ident = StackIdentity.from_pulumi(spec)
    config = pulumi.Config("mlstack")
    ctx = AwsContext.create(ident)
    opts = ctx.opts()
    components = spec.components

    store = ArtifactStore(ctx, opts)
    registry = ContainerRegistry(ctx, opts)
    secrets = SecretsBackend(ctx, config.require_secret("metadataToken"), opts)
    orchestrator = Orchestrator(ctx, bucket_arn=store.arn, repository_arn=registry.arn, opts=opts)
    metadata = MetadataServer(
        ctx,
        network=orchestrator.network,
        repository_url=registry.url,
        repository_arn=registry.arn,
        token_secret=secrets.token,
        db_password=config.require_secret("dbPassword"),
        artifact_uri=store.uri,
        bucket_arn=store.arn,
        opts=opts,
    )
    tracker: dict[str, Any] = {"kind": "none"}
    services = {"metadata": metadata.service}
    if components.tracker.flavor is TrackerFlavor.mlflow:
        mlflow = Tracker(
            ctx,
            metadata=metadata,
            bucket=store.bucket,
            password=config.require_secret("trackerPassword"),
            flask_secret=config.require_secret("trackerFlaskKey"),
            opts=opts,
        )
        services["mlflow"] = mlflow.service
        tracker = mlflow.outputs()
    deployer: dict[str, Any] = {"kind": "none"}
    if components.deployer.flavor is DeployerFlavor.sagemaker:
        deployer = ModelDeployer(
            ctx, bucket_arn=store.arn, repository_arn=registry.arn, opts=opts
        ).outputs(ctx)
    if ident.expires_at != "never":
        Expiry(
            ctx,
            expires_at=ident.expires_at,
            cluster=metadata.platform.cluster,
            services=services,
            db=metadata.db,
            compute=orchestrator.compute,
            load_balancer=metadata.platform.load_balancer,
            endpoints=components.deployer.flavor is DeployerFlavor.sagemaker,
            opts=opts,
        )

    exports: dict[str, Any] = {
        "version": OUTPUTS_VERSION,
        "stack": spec.name,
        "stack_id": ident.stack_id,
        "provider": "aws",
        "region": ctx.region,
        "tags": ident.tags(),
        "artifact_store": store.outputs(ctx),
        "container_registry": registry.outputs(),
        "orchestrator": orchestrator.outputs(ctx),
        "secrets": secrets.outputs(ctx),
        "tracker": tracker,
        "deployer": deployer,
        "metadata": metadata.outputs(),
    }
    for key, value in exports.items():
        pulumi.export(key, value)
    # Not part of StackOutputs: where to point network.domain's DNS record (CNAME).
    pulumi.export("load_balancer_dns", metadata.load_balancer_dns)
