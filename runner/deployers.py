"""Model deployers: what serves a registered model version as an endpoint, one per kind.

``deployer_for(outputs)`` returns the client of the stack's deployer kind; ``deploy_model``
in steps and ``mlstack undeploy`` go through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import RunnerError
from runner.roles import Role

if TYPE_CHECKING:
    from runner.deploy import Deployment
    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import DeploymentOut
    from stacks.common.progress import Progress
    from stacks.outputs import StackOutputs


class Deployer:
    """No deployer: deploying is an error that says how to get one."""

    runtime_packages: tuple[str, ...] = ()  # what a step's image needs to deploy through it

    def __init__(self, outputs: StackOutputs) -> None:
        self.outputs = outputs

    def prepare_image(self, image: str | None, progress: Progress) -> None:
        """Before a run's steps start, on the driver's host: ready what deploying from the
        run's image (``image``, None without one) needs. Nothing, for most deployers."""

    def deploy(
        self,
        *,
        model_name: str,
        version: str,
        name: str,
        run_id: str | None,
        image: str | None = None,
    ) -> Deployment:
        raise RunnerError(
            f"stack {self.outputs.stack!r} has no model deployer",
            "set components.deployer in the stack spec and run `mlstack up`",
        )

    def undeploy(self, client: MetadataClient, deployment: DeploymentOut) -> None:
        raise RunnerError(f"stack {self.outputs.stack!r} has no model deployer")

    def describe(self, deployment: DeploymentOut) -> str | None:
        """The endpoint's live status where the deployer can ask for it, else None."""
        return None


class LocalDeployer(Deployer):
    """The local stack's deployer service (``mlflow models serve`` endpoints on this host)."""

    def deploy(
        self,
        *,
        model_name: str,
        version: str,
        name: str,
        run_id: str | None,
        image: str | None = None,
    ) -> Deployment:
        from runner.deploy import deploy_local

        return deploy_local(
            self.outputs, model_name=model_name, version=version, name=name, run_id=run_id
        )

    def undeploy(self, client: MetadataClient, deployment: DeploymentOut) -> None:
        from runner.deploy import undeploy
        from stacks.outputs import LocalDeployerOutputs

        assert isinstance(self.outputs.deployer, LocalDeployerOutputs)
        undeploy(self.outputs.deployer.workdir, client, deployment)


DEPLOYERS: Role[Deployer] = Role(
    "deployer",
    {
        "local": "runner.deployers:LocalDeployer",
        "none": "runner.deployers:Deployer",
        "sagemaker": "runner.deploy_sagemaker:SageMakerDeployer",
    },
)


def deployer_for(outputs: StackOutputs) -> Deployer:
    """The client of the stack's deployer kind."""
    return DEPLOYERS.get(outputs.deployer.kind)(outputs)
