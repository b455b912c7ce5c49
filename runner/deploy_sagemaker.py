"""The SageMaker deployer: a registered model version served as a SageMaker endpoint.

``deploy`` packs the model version's files as ``model.tar.gz`` in the stack's bucket, then
creates a SageMaker model (the serving image of the run's pipeline image, see
:mod:`runner.serving_image`), an endpoint config and the endpoint, each tagged with the
stack's tags, and waits for InService with backoff. A redeploy of a name moves the same
endpoint to a new endpoint config (UpdateEndpoint), so its name and URL stay; the replaced
model and config are deleted once the endpoint is InService on the new ones.

Every resource is recorded in its deployment's ``details["resources"]`` on the metadata server
before it is created (intent, then its ARN), and carries the stack's exact
``mlstack:stack-id`` tag, which is what ``down``'s drain finds runtime resources by
(:mod:`provisioner.sweep.aws_drain`). boto3 is imported lazily; its clients honour
``AWS_ENDPOINT_URL`` and the per-service variables; the region is the stack's.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.deploy import LIVE, DeployConflict, DeployError, Deployment
from runner.deployers import Deployer
from runner.endpoints import check_name
from runner.errors import MetadataError, RunnerError
from runner.runtime_resources import mark_deleted, record
from stacks.common.aws_naming import physical_name
from stacks.common.tags import EXPIRES_TAG, STACK_ID_TAG, STACK_TAG
from stacks.outputs import S3ArtifactStoreOutputs, SageMakerDeployerOutputs, StackOutputs

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import DeploymentOut
    from stacks.common.progress import Progress

VARIANT = "main"
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
_PRINCIPAL = re.compile(r"arn:aws[\w-]*:(?:iam|sts)::\d*:[\w+=,.@/-]+")
_DENIED_ACTION = re.compile(r"not authorized to perform: ([\w-]+:[\w*-]+)")


class SageMakerDeployer(Deployer):
    """Endpoints on SageMaker real-time hosting, one per deployment name."""

    wait_timeout = 1800.0  # a real endpoint takes 5-10 minutes to come InService
    runtime_packages = ("boto3",)  # a deploy step talks to SageMaker and S3 from its container

    def __init__(self, outputs: StackOutputs) -> None:
        super().__init__(outputs)
        if not isinstance(outputs.deployer, SageMakerDeployerOutputs):
            raise DeployError(f"stack {outputs.stack!r} has no SageMaker deployer")
        self.config = outputs.deployer
        self.region = outputs.region or os.environ.get("AWS_REGION") or "us-east-1"
        self._clients: dict[str, Any] = {}

    # -- the role's interface ---------------------------------------------------------------

    def prepare_image(self, image: str | None, progress: Progress) -> None:
        """Build (or reuse) and push the serving image of the run's pipeline image, on the
        host that built the pipeline image (steps on Batch have no Docker Engine)."""
        if image:
            from runner.registry_auth import registry_auth
            from runner.serving_image import ensure_serving_image

            ensure_serving_image(image, progress=progress, auth=registry_auth(self.outputs))

    def deploy(
        self,
        *,
        model_name: str,
        version: str,
        name: str,
        run_id: str | None,
        image: str | None = None,
    ) -> Deployment:
        """Create (or move to a new version) the endpoint ``name``; returns once InService."""
        from runner.serving_image import serving_ref

        if not image:
            raise DeployError(
                "the SageMaker deployer needs the image of the pipeline that deploys",
                "call deploy_model from a step run by `mlstack run` on a container orchestrator",
            )
        check_name(name)
        endpoint = physical_name(self.outputs.stack_id, name)
        with self._metadata() as client:
            live = [d for d in client.list_deployments(stack=self.outputs.stack)]
            live = [d for d in live if d.name == name and d.status in LIVE]
            try:  # reserve the name first: a refusal leaves nothing created
                record = client.create_deployment(
                    name=name, stack=self.outputs.stack, model_name=model_name,
                    model_version=version, endpoint_url=self.endpoint_url(endpoint),
                    run_id=run_id, replaces=[d.id for d in live],
                    details={"endpoint": endpoint, "instance_type": self.config.instance_type,
                             "region": self.region, "resources": []},
                )  # fmt: skip
            except MetadataError as exc:
                raise DeployConflict(exc.headline, exc.hint) from None
            created = _Created(client, record.id, self.outputs)
            try:
                self._deploy(created, endpoint, model_name, version, name, serving_ref(image))
            except BaseException:
                self._roll_back(created, endpoint)
                with contextlib.suppress(MetadataError):
                    client.update_deployment(record.id, status="failed")
                raise
            client.update_deployment(record.id, status="running")
            for old in live:
                self._retire(client, old, keep=endpoint)
        return Deployment(record.id, name, model_name, version, self.endpoint_url(endpoint))

    def undeploy(self, client: MetadataClient, deployment: DeploymentOut) -> None:
        """Delete the endpoint, its endpoint config and model; mark the deployment stopped."""
        resources = list(deployment.details.get("resources", []))
        endpoint = deployment.details.get("endpoint")
        if endpoint and deployment.status in LIVE:
            self._delete_endpoint(endpoint)
            self._drop_schedule(endpoint)
            mark_deleted(client, self.outputs.stack, "sagemaker:endpoint", endpoint)
        for res in resources:
            if res["kind"] != "sagemaker:endpoint":
                self._delete(res["kind"], res["name"])
                mark_deleted(client, self.outputs.stack, res["kind"], res["name"])
        gone = [{**r, "state": "deleted"} for r in resources]
        client.update_deployment(deployment.id, status="stopped", details={"resources": gone})

    def describe(self, deployment: DeploymentOut) -> str | None:
        """The endpoint's status on SageMaker (InService, Updating, ...), or why it is unknown."""
        endpoint = deployment.details.get("endpoint")
        if not endpoint or deployment.status not in LIVE:
            return None
        try:
            with self._aws("sagemaker:DescribeEndpoint"):
                return str(self._client("sagemaker").describe_endpoint(EndpointName=endpoint)[
                    "EndpointStatus"])  # fmt: skip
        except DeployError as exc:
            return f"unknown: {exc.headline}"

    def invoke(self, name: str, body: bytes | str, content_type: str = "application/json") -> bytes:
        """POST ``body`` to the endpoint ``name`` through sagemaker-runtime InvokeEndpoint."""
        endpoint = physical_name(self.outputs.stack_id, check_name(name))
        with self._aws("sagemaker:InvokeEndpoint"):
            answer = self._client("sagemaker-runtime").invoke_endpoint(
                EndpointName=endpoint, Body=body, ContentType=content_type
            )
        data: bytes = answer["Body"].read()
        return data

    def endpoint_url(self, endpoint: str) -> str:
        """The endpoint's URL (InvokeEndpoint is POST ``<url>/invocations``, SigV4-signed)."""
        base = str(self._client("sagemaker-runtime").meta.endpoint_url).rstrip("/")
        return f"{base}/endpoints/{endpoint}"

    # -- deploying ----------------------------------------------------------------------------

    def _deploy(
        self,
        created: _Created,
        endpoint: str,
        model_name: str,
        version: str,
        name: str,
        image: str,
    ) -> None:
        sm = self._client("sagemaker")
        tags = self._tags(name)
        unique = f"{endpoint[:54].rstrip('-')}-{created.record_id[:8]}"
        data_url = self._upload_model(model_name, version, name, unique)
        created.client.update_deployment(created.record_id, details={"model_data": data_url})
        with created("sagemaker:model", unique), self._aws("sagemaker:CreateModel"):
            created.arn = sm.create_model(
                ModelName=unique,
                ExecutionRoleArn=self.config.role_arn,
                PrimaryContainer={"Image": image, "ModelDataUrl": data_url, "Mode": "SingleModel"},
                Tags=tags,
            )["ModelArn"]
        with (
            created("sagemaker:endpoint-config", unique),
            self._aws("sagemaker:CreateEndpointConfig"),
        ):
            created.arn = sm.create_endpoint_config(
                EndpointConfigName=unique,
                ProductionVariants=[
                    {
                        "VariantName": VARIANT,
                        "ModelName": unique,
                        "InitialInstanceCount": 1,
                        "InstanceType": self.config.instance_type,
                        "InitialVariantWeight": 1.0,
                    }
                ],
                Tags=tags,
            )["EndpointConfigArn"]
        if self._endpoint_status(endpoint) is None:
            with created("sagemaker:endpoint", endpoint), self._aws("sagemaker:CreateEndpoint"):
                created.arn = sm.create_endpoint(
                    EndpointName=endpoint, EndpointConfigName=unique, Tags=tags
                )["EndpointArn"]
            created.new_endpoint = True
            self._schedule_expiry(created, endpoint)
        else:
            with created("sagemaker:endpoint", endpoint):
                created.arn = self._update_endpoint(endpoint, unique, tags)
        self._wait(endpoint, lambda s: s == "InService", "InService")

    def _update_endpoint(self, endpoint: str, config: str, tags: list[dict[str, str]]) -> str:
        """UpdateEndpoint to ``config``. An emulator without that operation (moto answers
        an HTML 500) gets the endpoint deleted and created again under the same name."""
        from botocore.exceptions import ClientError

        sm = self._client("sagemaker")
        try:
            answer = sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
            return str(answer["EndpointArn"])
        except ClientError as exc:
            if not _not_implemented(exc):
                raise self._translate(exc, "sagemaker:UpdateEndpoint") from None
        self._delete_endpoint(endpoint)
        with self._aws("sagemaker:CreateEndpoint"):
            return str(
                sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=tags)[
                    "EndpointArn"]
            )  # fmt: skip

    def _upload_model(self, model_name: str, version: str, name: str, unique: str) -> str:
        """The model version's files as model.tar.gz (files at the root) in the stack's bucket."""
        from runner.tracking import TrackerClient

        store = self.outputs.artifact_store
        if not isinstance(store, S3ArtifactStoreOutputs):
            raise DeployError(
                "the SageMaker deployer keeps model data in S3; the stack's artifact store is"
                f" {store.kind}",
                "use components.artifact_store: s3 on an aws stack",
            )
        bucket, _, prefix = store.uri.removeprefix("s3://").partition("/")
        key = "/".join(p for p in (prefix.strip("/"), "sagemaker", name, unique) if p)
        key += "/model.tar.gz"
        tracker = TrackerClient.for_outputs(self.outputs)
        with tempfile.TemporaryDirectory(prefix="mlstack-sagemaker-") as tmp:
            folder = Path(tracker.download_model(model_name, version, str(Path(tmp) / "model")))
            packed = Path(tmp) / "model.tar.gz"
            with tarfile.open(packed, "w:gz") as tar:
                for path in sorted(folder.rglob("*")):
                    tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
            with self._aws("s3:PutObject"), open(packed, "rb") as data:
                self._client("s3").put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def _retire(self, client: MetadataClient, old: DeploymentOut, keep: str) -> None:
        """A replaced deployment: its model and config go; the endpoint stays with the new."""
        resources = list(old.details.get("resources", []))
        for res in resources:
            if res["kind"] != "sagemaker:endpoint":
                self._delete(res["kind"], res["name"])
                mark_deleted(client, self.outputs.stack, res["kind"], res["name"])
        gone = [{**r, "state": "deleted" if r["name"] != keep else "moved"} for r in resources]
        client.update_deployment(old.id, status="stopped", details={"resources": gone})

    def _roll_back(self, created: _Created, endpoint: str) -> None:
        """What this deploy created goes again (an endpoint only when it made it)."""
        with contextlib.suppress(Exception):
            if created.new_endpoint:
                self._delete_endpoint(endpoint)
                mark_deleted(created.client, self.outputs.stack, "sagemaker:endpoint", endpoint)
            for kind, name in reversed(created.made):
                if kind != "sagemaker:endpoint":
                    self._delete(kind, name)
                    mark_deleted(created.client, self.outputs.stack, kind, name)

    # -- deleting and waiting -----------------------------------------------------------------

    def _delete_endpoint(self, endpoint: str) -> None:
        if self._endpoint_status(endpoint) is None:
            return
        with self._aws("sagemaker:DeleteEndpoint"), _missing_ok():
            self._client("sagemaker").delete_endpoint(EndpointName=endpoint)
        self._wait(endpoint, lambda s: s is None, "deleted")

    def _delete(self, kind: str, name: str) -> None:
        sm = self._client("sagemaker")
        if kind == "sagemaker:endpoint-config":
            with self._aws("sagemaker:DeleteEndpointConfig"), _missing_ok():
                sm.delete_endpoint_config(EndpointConfigName=name)
        elif kind == "sagemaker:model":
            with self._aws("sagemaker:DeleteModel"), _missing_ok():
                sm.delete_model(ModelName=name)

    def _endpoint_status(self, endpoint: str) -> str | None:
        """The endpoint's status, None when there is no such endpoint."""
        with self._aws("sagemaker:DescribeEndpoint"), _missing_ok():
            found = self._client("sagemaker").describe_endpoint(EndpointName=endpoint)
            return str(found["EndpointStatus"])
        return None

    def _wait(self, endpoint: str, done: Callable[[str | None], bool], what: str) -> None:
        """Poll the endpoint (1 s, doubling to 30 s) until ``done``; a Failed one says why."""
        deadline, pause = time.monotonic() + self.wait_timeout, 1.0
        while True:
            status = self._endpoint_status(endpoint)
            if done(status):
                return
            if status == "Failed":
                with self._aws("sagemaker:DescribeEndpoint"):
                    found = self._client("sagemaker").describe_endpoint(EndpointName=endpoint)
                raise DeployError(
                    f"endpoint {endpoint} failed: {found.get('FailureReason', 'no reason given')}",
                    "its CloudWatch log group /aws/sagemaker/Endpoints/" + endpoint + " says more",
                )
            if time.monotonic() > deadline:
                raise DeployError(
                    f"endpoint {endpoint} is {status}, not {what}, after {self.wait_timeout:.0f}s",
                    "see it in the SageMaker console; `mlstack undeploy` removes it",
                )
            time.sleep(pause)
            pause = min(pause * 2, 30.0)

    # -- expiry, tags, clients, errors ------------------------------------------------------

    def _schedule_expiry(self, created: _Created, endpoint: str) -> None:
        """A new endpoint gets a delete schedule at the stack's expiry (when it has one)."""
        expires = self.outputs.tags.get(EXPIRES_TAG, "never")
        if expires == "never":
            return
        from stacks.common.aws_expiry import schedule_endpoint_delete

        try:
            arn = schedule_endpoint_delete(
                self.outputs.stack_id, endpoint, expires, region=self.region,
                session=self._session(),
            )  # fmt: skip
        except Exception as exc:  # the drain and the reaper still remove the endpoint
            note = f"no delete schedule: {type(exc).__name__}"
            print(f"warning: endpoint {endpoint} has {note}", file=sys.stderr)
            created.client.update_deployment(created.record_id, details={"expiry_schedule": note})
            return
        created.client.update_deployment(created.record_id, details={"expiry_schedule": arn})

    def _drop_schedule(self, endpoint: str) -> None:
        from stacks.common.aws_expiry import remove_endpoint_schedule

        with contextlib.suppress(Exception):  # a stack without expiry has none
            remove_endpoint_schedule(
                self.outputs.stack_id, endpoint, region=self.region, session=self._session()
            )

    def _tags(self, name: str) -> list[dict[str, str]]:
        tags = {
            **self.outputs.tags,
            STACK_TAG: self.outputs.stack,
            STACK_ID_TAG: self.outputs.stack_id,
            "mlstack:deployment": name,
        }
        return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]

    def _session(self) -> Any:
        if "session" not in self._clients:
            import boto3

            self._clients["session"] = boto3.session.Session(region_name=self.region)
        return self._clients["session"]

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session().client(service, region_name=self.region)
        return self._clients[service]

    def _metadata(self) -> MetadataClient:
        from runner.metadata.client import MetadataClient

        token = self.outputs.metadata.token
        return MetadataClient(
            self.outputs.metadata.url,
            token.get_secret_value() if token else "",
            ca_pem=self.outputs.metadata.ca_pem,
        )

    @contextlib.contextmanager
    def _aws(self, action: str) -> Iterator[None]:
        """botocore errors of ``action`` as one DeployError line (the one place they map)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, action) from None

    def _translate(self, exc: Any, action: str) -> RunnerError:
        from botocore.exceptions import ClientError

        from runner.aws_errors import BAD_CREDENTIALS, translate

        what = f"deploying to SageMaker for stack {self.outputs.stack!r}"
        if not isinstance(exc, ClientError) or exc.response["Error"].get("Code") in BAD_CREDENTIALS:
            # No credentials, expired ones, no region, an endpoint that does not answer.
            return translate(exc, action.split(":")[0], what) or DeployError(f"{action}: {exc}")
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if code in DENIED or "not authorized to perform" in message:
            found = _PRINCIPAL.search(message)
            who = found.group(0) if found else "the role in use (the standard AWS chain)"
            named = _DENIED_ACTION.search(message)
            denied = named.group(1) if named else action
            what = denied if denied == action else f"{denied} (for {action})"
            return DeployError(
                f"AWS denied {what} to {who}",
                f"allow {denied} for that role (on an aws stack: the job role)",
            )
        if action == "sagemaker:CreateModel" and "role" in message.lower():
            return DeployError(
                f"SageMaker cannot use execution role {self.config.role_arn}: {message[:200]}",
                "the role must exist and trust sagemaker.amazonaws.com; `mlstack up` creates it",
            )
        return DeployError(f"{action} failed: {code}: {message[:240]}")


class _Created:
    """Records each resource on the deployment before it is created, then its ARN."""

    def __init__(self, client: MetadataClient, record_id: str, outputs: StackOutputs) -> None:
        self.client, self.record_id, self.outputs = client, record_id, outputs
        self.resources: list[dict[str, str]] = []
        self.made: list[tuple[str, str]] = []
        self.arn: str | None = None
        self.new_endpoint = False

    @contextlib.contextmanager
    def __call__(self, kind: str, name: str) -> Iterator[None]:
        entry = {"kind": kind, "name": name, "state": "creating"}
        self.resources.append(entry)
        self._save()  # intent first: a crash from here on leaves a trail
        self.arn = None
        yield
        self.made.append((kind, name))
        entry.update(state="created", arn=self.arn or "")
        self._save()
        record(self.client, self.outputs, kind, name, arn=self.arn)

    def _save(self) -> None:
        self.client.update_deployment(
            self.record_id, details={"resources": [dict(r) for r in self.resources]}
        )


@contextlib.contextmanager
def _missing_ok() -> Iterator[None]:
    """Swallow SageMaker's "could not find" (a ValidationException for a missing resource)."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = str(error.get("Message", "")).lower()
        if error.get("Code") != "ValidationException" or "could not find" not in message:
            raise


def _not_implemented(exc: Any) -> bool:
    """An answer no AWS service gives: a bare HTTP 500/501 with an HTML body (moto's reply to
    an operation it does not implement). AWS's own 500s carry a JSON error code."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    return code in ("500", "501") and "<html" in message.lower()
