"""Offline plan: run a stack program under Pulumi's own mocks and list what ``up`` would create.

No CLI, no provider plugin, no credentials: :func:`run_program` registers every resource with
an in-process mock monitor that echoes inputs back with plausible ids, ARNs and host names.
Each run happens in a copy of the current ``contextvars`` context with Pulumi's runtime state
reset, so a second run in the same process (or a later real ``up``) starts clean.

The mock tests use the same function to assert resources, inputs and exported outputs.
"""

from __future__ import annotations

import contextvars
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from provisioner.engines.base import PlannedChange, PlanResult
from stacks.spec import StackSpec

PLAN_ACCOUNT = "123456789012"
PLAN_SECRET = "generated-at-up"

# Key inputs worth showing (and pricing) per resource type: label -> dotted input path.
DETAILS: dict[str, dict[str, str]] = {
    "aws:s3/bucket:Bucket": {"bucket": "bucket", "force_destroy": "forceDestroy"},
    "aws:s3/bucketVersioning:BucketVersioning": {"versioning": "versioningConfiguration.status"},
    "aws:ecr/repository:Repository": {
        "name": "name",
        "force_delete": "forceDelete",
        "scan_on_push": "imageScanningConfiguration.scanOnPush",
    },
    "aws:secretsmanager/secret:Secret": {
        "name": "name",
        "recovery_window_days": "recoveryWindowInDays",
    },
    "aws:batch/computeEnvironment:ComputeEnvironment": {
        "compute": "computeResources.type",
        "max_vcpus": "computeResources.maxVcpus",
    },
    "aws:batch/jobQueue:JobQueue": {"name": "name"},
    "aws:cloudwatch/logGroup:LogGroup": {"name": "name", "retention_days": "retentionInDays"},
    "aws:rds/instance:Instance": {
        "engine": "engine",
        "engine_version": "engineVersion",
        "instance_class": "instanceClass",
        "storage_gib": "allocatedStorage",
        "storage_type": "storageType",
        "multi_az": "multiAz",
        "skip_final_snapshot": "skipFinalSnapshot",
        "deletion_protection": "deletionProtection",
    },
    "aws:ecs/taskDefinition:TaskDefinition": {
        "family": "family",
        "cpu_units": "cpu",
        "memory_mib": "memory",
    },
    "aws:ecs/service:Service": {
        "launch_type": "launchType",
        "count": "desiredCount",
        "public_ip": "networkConfiguration.assignPublicIp",
        "task_definition": "taskDefinition",
    },
    "aws:lb/loadBalancer:LoadBalancer": {"lb_type": "loadBalancerType", "internal": "internal"},
    "aws:lb/listener:Listener": {"port": "port"},
    "aws:ec2/vpc:Vpc": {"cidr": "cidrBlock"},
    "aws:ec2/subnet:Subnet": {"cidr": "cidrBlock"},
    "aws:iam/role:Role": {"name": "name"},
    "aws:scheduler/schedule:Schedule": {
        "schedule": "scheduleExpression",
        "starts": "startDate",
        "target": "target.arn",
    },
    "kubernetes:core/v1:Namespace": {"name": "metadata.name"},
    "kubernetes:apps/v1:Deployment": {
        "count": "spec.replicas",
        "image": "spec.template.spec.containers.0.image",
        "cpu": "spec.template.spec.containers.0.resources.requests.cpu",
        "memory": "spec.template.spec.containers.0.resources.requests.memory",
    },
    "kubernetes:core/v1:PersistentVolumeClaim": {
        "size": "spec.resources.requests.storage",
        "storage_class": "spec.storageClassName",
    },
    "kubernetes:core/v1:Service": {"port": "spec.ports.0.port"},
    "kubernetes:batch/v1:Job": {"image": "spec.template.spec.containers.0.image"},
}


@dataclass
class MockedResource:
    """One resource the program registered, with the inputs it passed."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    provider: str = ""
    component: str = ""
    dependencies: list[str] = field(default_factory=list)  # URNs of explicit depends_on

    def get(self, path: str) -> Any:
        """The input at a dotted path (``spec.ports.0.port``), or None."""
        value: Any = self.inputs
        for part in path.split("."):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value


@dataclass
class MockRun:
    """Everything a program declared: resources in registration order and resolved exports."""

    resources: list[MockedResource]
    outputs: dict[str, Any]
    components: dict[str, str] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[MockedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> MockedResource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]


def _physical_name(typ: str, name: str, inputs: dict[str, Any]) -> str:
    for key in ("name", "bucket", "identifier", "family"):
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    return name


def _fake_state(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Inputs echoed back plus the computed attributes other resources and outputs read."""
    physical = _physical_name(typ, name, inputs)
    state = dict(inputs)
    if typ == "kubernetes:core/v1:Service" and (inputs.get("spec") or {}).get("type") == (
        "LoadBalancer"
    ):  # what the cloud's load balancer controller reports once it has an address
        state["status"] = {"loadBalancer": {"ingress": [{"hostname": f"{name}.plan.example"}]}}
    if not typ.startswith("aws:"):
        return state
    acct = PLAN_ACCOUNT
    service, _, kind = typ.split(":")[1].partition("/")
    kind = kind.split(":")[0]
    state["arn"] = f"arn:aws:{service}:{region}:{acct}:{kind}/{physical}"
    state.setdefault("name", physical)
    if typ == "aws:s3/bucket:Bucket":
        state["arn"] = f"arn:aws:s3:::{physical}"
        state["bucketDomainName"] = f"{physical}.s3.amazonaws.com"
    elif typ == "aws:ecr/repository:Repository":
        state["repositoryUrl"] = f"{acct}.dkr.ecr.{region}.amazonaws.com/{physical}"
    elif typ == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{acct}:role/{physical}"
    elif typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = f"arn:aws:secretsmanager:{region}:{acct}:secret:{physical}-AbCdEf"
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{region}:{acct}:log-group:{physical}"
    elif typ == "aws:rds/instance:Instance":
        state["address"] = f"{physical}.plan.{region}.rds.amazonaws.com"
        state["port"] = 5432
        state["endpoint"] = f"{state['address']}:5432"
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        state["dnsName"] = f"{physical}-0.{region}.elb.amazonaws.com"
    return state


def _fake_call(token: str, region: str) -> dict[str, Any]:
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": PLAN_ACCOUNT,
            "arn": f"arn:aws:iam::{PLAN_ACCOUNT}:user/plan",
            "userId": "PLAN",
            "id": PLAN_ACCOUNT,
        }
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        names = [f"{region}{z}" for z in "abc"]
        return {"names": names, "zoneIds": [f"z-{n}" for n in names], "id": region}
    return {}


def _make_mocks(region: str) -> Any:
    import pulumi

    class RecordingMocks(pulumi.runtime.Mocks):
        """Echo inputs back as state with fake ids, ARNs and host names."""

        def __init__(self) -> None:
            self.inputs: dict[tuple[str, str], tuple[dict[str, Any], str, bool]] = {}

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
            self.inputs[(args.typ, args.name)] = (
                dict(args.inputs),
                args.provider or "",
                bool(args.custom),
            )
            state = _fake_state(args.typ, args.name, dict(args.inputs), region)
            return f"{args.name}-id", state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
            return _fake_call(args.token, region), []

    return RecordingMocks()


def run_program(
    fn: Callable[[], None],
    *,
    project: str,
    stack: str,
    config: dict[str, str],
    secret_keys: list[str] | None = None,
    region: str = "us-east-1",
    components: dict[str, str] | None = None,
) -> MockRun:
    """Run ``fn`` as a Pulumi program under mocks; return its resources and resolved exports."""
    import pulumi  # noqa: F401 - initialise Pulumi's runtime defaults in this context first

    def isolated() -> MockRun:
        import threading

        import pulumi.runtime
        from pulumi.runtime import settings
        from pulumi.runtime.mocks import MockMonitor
        from pulumi.runtime.stack import run_pulumi_func
        from pulumi.runtime.sync_await import _sync_await

        settings.ROOT.set(None)
        # a set in recent SDKs, a deque in older ones (3.165): keep the installed type
        settings.SETTINGS.outputs = type(settings.SETTINGS.outputs)()
        settings.SETTINGS.lock = threading.Lock()
        pulumi.runtime.set_all_config(dict(config), list(secret_keys or []))
        mocks = _make_mocks(region)

        class ParentRecordingMonitor(MockMonitor):
            def __init__(self) -> None:
                super().__init__(mocks)
                self.parents: dict[str, str] = {}
                self.dependencies: dict[str, list[str]] = {}

            def RegisterResource(self, request: Any) -> Any:
                response = super().RegisterResource(request)
                self.parents[response.urn] = request.parent
                self.dependencies[response.urn] = list(request.dependencies)
                return response

        monitor = ParentRecordingMonitor()
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=False, monitor=monitor
        )
        exported: dict[str, Any] = {}

        def body() -> None:
            fn()
            root = settings.get_root_resource()
            outputs = getattr(root, "outputs", {})
            exported.update(_sync_await(pulumi.Output.from_input(outputs).future()) or {})

        _sync_await(run_pulumi_func(body))
        return _collect(monitor, mocks, exported, components or {})

    return contextvars.copy_context().run(isolated)


def _collect(monitor: Any, mocks: Any, exported: dict[str, Any], table: dict[str, str]) -> MockRun:
    resources: list[MockedResource] = []
    parents: dict[str, str] = monitor.parents
    for urn in list(parents):  # every registration, in order (older SDKs lack a getter)
        type_ = urn.split("::")[2].split("$")[-1]
        name = urn.split("::")[-1]
        inputs, provider, custom = mocks.inputs.get((type_, name), ({}, "", False))
        component, cursor = "", urn
        while cursor and not component:  # the nearest enclosing mlstack component
            component = table.get(cursor.split("::")[2].split("$")[-1], "")
            cursor = parents.get(cursor, "")
        resources.append(
            MockedResource(
                urn=urn,
                type=type_,
                name=name,
                inputs=inputs,
                custom=custom,
                provider=provider,
                component=component,
                dependencies=monitor.dependencies.get(urn, []),
            )
        )
    return MockRun(resources=resources, outputs=exported, components=table)


# -- plan ---------------------------------------------------------------------------------


def plan_config(spec: StackSpec, secret_names: tuple[str, ...]) -> dict[str, str]:
    """Config the program reads, with placeholders for the secrets ``up`` generates."""
    ttl = spec.ttl_delta
    expires = (datetime.now(UTC) + ttl).strftime("%Y-%m-%dT%H:%M:%SZ") if ttl else "never"
    config = {"mlstack:owner": spec.owner or "unknown", "mlstack:expiresAt": expires}
    config.update({f"mlstack:{name}": PLAN_SECRET for name in secret_names})
    return config


def run_stack_program(
    spec: StackSpec, module: str | ModuleType, stack_id: str, config: dict[str, str] | None = None
) -> MockRun:
    """Run a provider's stack program module (``stacks.aws.program``) for ``spec`` under mocks."""
    mod = importlib.import_module(module) if isinstance(module, str) else module
    secret_names: tuple[str, ...] = mod.SECRET_CONFIG
    generate = getattr(mod, "generated_config", None)
    generated = generate(spec) if generate else {}
    if config is None:
        config = plan_config(spec, secret_names)
        config.update({f"mlstack:{k}": v for k, (v, _) in generated.items()})
    secret_keys = [f"mlstack:{name}" for name in secret_names]
    secret_keys += [f"mlstack:{k}" for k, (_, secret) in generated.items() if secret]
    return run_program(
        lambda: mod.program(spec),
        project=mod.PROJECT,
        stack=stack_id,
        config=config,
        secret_keys=secret_keys,
        region=getattr(spec, "region", None) or "us-east-1",
        components=mod.COMPONENTS,
    )


def changes(run: MockRun, spec: StackSpec, reason: str) -> list[PlannedChange]:
    """Every custom (cloud) resource as a ``create``, with its key inputs as details."""
    found: list[PlannedChange] = []
    for res in run.resources:
        if not res.custom or res.type.startswith("pulumi:providers:"):
            continue
        details: dict[str, Any] = {}
        region, target = getattr(spec, "region", None), getattr(spec, "kubernetes", None)
        if region and res.type.startswith("aws:"):
            details["region"] = region
        if target is not None and res.type.startswith("kubernetes:"):
            details["context"] = target.context
        for label, path in DETAILS.get(res.type, {}).items():
            value = res.get(path)
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # protobuf numbers arrive as floats
            if value is not None:
                details[label] = value
        details.setdefault("count", 1)
        found.append(
            PlannedChange(
                component=res.component or "stack",
                resource=res.name,
                action="create",
                reason=reason,
                type=res.type,
                details=details,
            )
        )
    order = list(dict.fromkeys(run.components.values()))
    rank = {name: i for i, name in enumerate(order)}
    # Registration order is not deterministic (it is async): sort for a stable plan.
    found.sort(key=lambda c: (rank.get(c.component, len(rank)), c.type, c.resource))
    return found


def mock_plan(spec: StackSpec, module: str, stack_id: str, reason: str) -> PlanResult:
    """The offline plan of ``spec``: every resource ``up`` would create, grouped by component."""
    run = run_stack_program(spec, module, stack_id)
    return PlanResult(
        stack=spec.name, provider=spec.provider.value, changes=changes(run, spec, reason)
    )
