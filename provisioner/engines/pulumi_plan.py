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

PLAN_SECRET = "generated-at-up"


def provider_mocks(typ: str) -> ModuleType | None:
    """The mock data kept beside the program of the resource type's provider, if any.

    ``aws:s3/bucket:Bucket`` → ``stacks.aws.plan_mocks``; a type of a package without a stack
    program (``pulumi:providers:aws``, ``random:...``) has none and its inputs are echoed back.
    """
    name = f"stacks.{typ.split(':', 1)[0]}.plan_mocks"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def details_for(typ: str) -> dict[str, str]:
    """Label -> dotted input path of the inputs worth showing for one resource type."""
    mocks = provider_mocks(typ)
    return mocks.DETAILS.get(typ, {}) if mocks else {}


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
            mocks = provider_mocks(args.typ)
            inputs = dict(args.inputs)
            state = mocks.fake_state(args.typ, args.name, inputs, region) if mocks else inputs
            return f"{args.name}-id", state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
            mocks = provider_mocks(args.token)
            return (mocks.fake_call(args.token, region) if mocks else {}), []

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
        for label, path in details_for(res.type).items():
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
