"""The pulumi engine: AWS and Kubernetes stacks through the Pulumi Automation API.

Inline programs from ``stacks/<provider>/program.py`` run in this process; the Pulumi CLI does
the deployment. State goes to a local file backend under ``$MLSTACK_HOME/pulumi`` unless
``MLSTACK_PULUMI_BACKEND`` names another backend URL; secrets in it are encrypted with a
passphrase from ``PULUMI_CONFIG_PASSPHRASE(_FILE)`` or a generated 0600 file. ``plan`` needs
neither the CLI nor credentials: it runs the same program under Pulumi's mocks.

pulumi itself is imported inside functions only: ``mlstack --help`` never loads it.
"""

from __future__ import annotations

import getpass
import importlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from provisioner.engines.base import DownResult, Engine, PlanResult, ServiceStatus, UpResult
from provisioner.engines.pulumi_events import EventRecorder, translate
from provisioner.state import StackRecord
from provisioner.teardown import TeardownItem
from stacks.common.errors import EngineError, UsageError
from stacks.common.tags import expiry_tag
from stacks.outputs import OUTPUTS_VERSION, StackOutputs
from stacks.spec import StackSpec

COMPONENTS = (
    "artifact_store",
    "container_registry",
    "orchestrator",
    "secrets",
    "tracker",
    "deployer",
    "metadata",
)
PLAN_SUFFIX = "xxxxxx"  # stands in for the random suffix `up` draws for a new stack


@dataclass(frozen=True)
class WorkspaceSettings:
    """Where and how one stack's Pulumi workspace runs; built per call from env and home."""

    backend_url: str
    work_dir: Path
    env_vars: dict[str, str] = field(default_factory=dict)
    passphrase_file: Path | None = None


def workspace_settings(
    home: Path, name: str, env: Mapping[str, str] | None = None
) -> WorkspaceSettings:
    """Backend URL, work dir and passphrase for stack ``name``; creates the local files."""
    env = os.environ if env is None else env
    backend = env.get("MLSTACK_PULUMI_BACKEND") or (home / "pulumi").resolve().as_uri()
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://").split("?")[0]).mkdir(parents=True, exist_ok=True)
    env_vars = {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_BACKEND_URL": backend}
    passphrase_file = None
    if not (env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        passphrase_file = ensure_passphrase_file(home / "pulumi-passphrase")
        env_vars["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase_file)
    work_dir = home / "stacks" / name / "pulumi"
    work_dir.mkdir(parents=True, exist_ok=True)
    return WorkspaceSettings(backend, work_dir, env_vars, passphrase_file)


def ensure_passphrase_file(path: Path) -> Path:
    """A random passphrase in a 0600 file, created once; refuses a file others can read."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise EngineError(
            f"the Pulumi passphrase file {path} is readable by others (mode {mode:o})",
            f"run `chmod 600 {path}`",
        )
    return path


def workspace_options(settings: WorkspaceSettings, project: str, pulumi_command: Any = None) -> Any:
    """LocalWorkspaceOptions for an inline program: project, backend, passphrase secrets."""
    from pulumi.automation import LocalWorkspaceOptions, ProjectBackend, ProjectSettings

    return LocalWorkspaceOptions(
        work_dir=str(settings.work_dir),
        env_vars=settings.env_vars,
        secrets_provider="passphrase",
        project_settings=ProjectSettings(
            name=project,
            runtime="python",
            backend=ProjectBackend(url=settings.backend_url),
            description="mlstack stack (inline program; managed by mlstack)",
        ),
        pulumi_command=pulumi_command,
    )


def pulumi_command(home: Path, env: Mapping[str, str] | None = None) -> Any:
    """The Pulumi CLI from PATH, from an earlier opt-in install, or installed now on opt-in."""
    env = os.environ if env is None else env
    sdk = importlib_metadata.version("pulumi")
    root = home / "pulumi-cli" / sdk
    installed = shutil.which("pulumi") is not None or (root / "bin" / "pulumi").exists()
    if not installed and env.get("MLSTACK_INSTALL_PULUMI") != "1":
        raise EngineError(
            "the Pulumi CLI is not installed: up, down, refresh and recover of cloud"
            " stacks need it (plan does not)",
            f"install Pulumi {sdk} (https://www.pulumi.com/docs/install/), or set"
            f" MLSTACK_INSTALL_PULUMI=1 to let mlstack install it under {root}",
        )
    from pulumi.automation import PulumiCommand
    from semver import VersionInfo

    if shutil.which("pulumi") is not None:
        return PulumiCommand()
    if (root / "bin" / "pulumi").exists():
        return PulumiCommand(root=str(root))
    return PulumiCommand.install(root=str(root), version=VersionInfo.parse(sdk))


def stack_outputs(values: Mapping[str, Any]) -> StackOutputs:
    """Validate a stack's exported outputs against the StackOutputs contract."""
    data = {k: getattr(v, "value", v) for k, v in values.items() if k in StackOutputs.model_fields}
    try:
        return StackOutputs.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EngineError(
            f"the stack program's outputs break the StackOutputs v{OUTPUTS_VERSION} contract"
            f" at {where}: {first['msg']}",
            "this is a bug in mlstack's stack program; please report it",
        ) from None


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


class DriftReport(BaseModel):
    """What ``refresh`` (and ``recover``) found: resources whose live state differs."""

    stack: str
    drifted: list[str] = Field(default_factory=list)
    changes: dict[str, int] = Field(default_factory=dict)
    lock_cleared: bool = False
    pending_cleared: list[str] = Field(default_factory=list)


class PulumiEngine(Engine):
    """Shared by the AWS and Kubernetes engines; they differ in program and plugin."""

    program_module = ""
    plugins: dict[str, str] = {}  # plugin name -> Python package whose version pins it

    # -- the public template methods fail fast, before any state changes, without a CLI ----

    def up(self, spec: StackSpec, spec_path: str | None = None) -> UpResult:
        self._command()
        return super().up(spec, spec_path)

    def down(self, name: str) -> DownResult:
        self._command()
        return super().down(name)

    # -- plumbing ------------------------------------------------------------------------

    def _program(self) -> ModuleType:
        return importlib.import_module(self.program_module)

    def _command(self) -> Any:
        cached = getattr(self, "_cli", None)
        if cached is None:
            cached = self._cli = pulumi_command(self.registry.home)
        return cached

    def _log(self, name: str) -> Path:
        return self.registry.home / "stacks" / name / "pulumi.log"

    def _stack(self, record: StackRecord, program: Callable[[], None] | None = None) -> Any:
        """Create or select the Pulumi stack of ``record`` (named after its stack id)."""
        from pulumi import automation as auto

        mod = self._program()
        settings = workspace_settings(self.registry.home, record.name)
        opts = workspace_options(settings, mod.PROJECT, self._command())
        if program is None:
            return auto.select_stack(record.stack_id, mod.PROJECT, lambda: None, opts=opts)
        return auto.create_or_select_stack(record.stack_id, mod.PROJECT, program, opts=opts)

    def _configure(self, stack: Any, spec: StackSpec, record: StackRecord) -> None:
        """Owner and expiry every up; generated secrets once (encrypted in the stack config)."""
        from pulumi.automation import ConfigValue

        existing = stack.get_all_config()
        config = {
            "mlstack:owner": ConfigValue(spec.owner or _login()),
            "mlstack:expiresAt": ConfigValue(expiry_tag(record.expires_at)),
        }
        for key in self._program().SECRET_CONFIG:
            if f"mlstack:{key}" not in existing:
                config[f"mlstack:{key}"] = ConfigValue(secrets.token_hex(24), secret=True)
        generate = getattr(self._program(), "generated_config", None)  # e.g. TLS material
        for key, (value, secret) in (generate(spec) if generate else {}).items():
            if f"mlstack:{key}" not in existing:
                config[f"mlstack:{key}"] = ConfigValue(value, secret=secret)
        stack.set_all_config(config)
        for plugin, package in self.plugins.items():
            version = importlib_metadata.version(package)
            self.progress.update(f"plugin {plugin}", "starting", f"v{version}")
            stack.workspace.install_plugin(plugin, f"v{version}")
            self.progress.update(f"plugin {plugin}", "ready", f"v{version}")

    def _run(self, record: StackRecord, verb: str, action: Callable[[Any, Any], Any]) -> Any:
        """Run one Automation API call; translate any failure with the recorded events."""
        recorder = EventRecorder(self.progress)
        log = self._log(record.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            try:
                return action(recorder, out.write), recorder
            except Exception as exc:
                raise translate(exc, recorder, record.name, verb, str(log)) from exc

    # -- Engine --------------------------------------------------------------------------

    def _plan(self, spec: StackSpec, record: StackRecord | None) -> PlanResult:
        from provisioner.engines.pulumi_plan import mock_plan
        from provisioner.engines.pulumi_preview import cli_available, preview

        live = record is not None and record.status != "destroyed"
        warnings: list[str] = getattr(self._program(), "plan_warnings", lambda _: [])(spec)
        if live and record is not None and cli_available(self.registry.home):
            return preview(self, spec, record, warnings)
        stack_id = record.stack_id if record and live else f"{spec.name}-{PLAN_SUFFIX}"
        reason = "desired state; up applies only the differences" if live else "new stack"
        result = mock_plan(spec, self.program_module, stack_id, reason)
        if live:
            warnings = [
                "this stack is up, and without the Pulumi CLI this plan lists the desired"
                " resources (an offline mock run), not a diff; `up` applies only the"
                " differences; with the Pulumi CLI installed, plan shows the real preview",
                *warnings,
            ]
        return result.model_copy(update={"notes": warnings})

    def _up(
        self, spec: StackSpec, record: StackRecord
    ) -> tuple[list[str], list[str], StackOutputs]:
        mod = self._program()
        try:
            stack = self._stack(record, lambda: mod.program(spec))
            self._configure(stack, spec, record)
        except Exception as exc:
            raise translate(exc, None, record.name, "up") from exc
        result, recorder = self._run(
            record,
            "up",
            lambda rec, write: stack.up(on_event=rec, on_output=write, color="never"),
        )
        return recorder.changed, recorder.unchanged, stack_outputs(result.outputs)

    def _down(self, record: StackRecord) -> tuple[list[str], list[str]]:
        from pulumi.automation.errors import StackNotFoundError

        try:
            stack = self._stack(record)
        except StackNotFoundError:
            return [], [f"no Pulumi stack {record.stack_id} in the backend: nothing to destroy"]
        except Exception as exc:
            raise translate(exc, None, record.name, "down") from exc
        _, recorder = self._run(
            record,
            "down",
            lambda rec, write: stack.destroy(on_event=rec, on_output=write, color="never"),
        )
        # Only an empty stack can be removed without --force; never force it.
        self._run(record, "down", lambda rec, write: stack.workspace.remove_stack(stack.name))
        return recorder.deleted, []

    def _status(self, record: StackRecord) -> list[ServiceStatus]:
        """Each component as recorded at the last up (``mlstack refresh`` checks the cloud)."""
        found: list[ServiceStatus] = []
        for component in COMPONENTS:
            data = (record.outputs.public() if record.outputs else {}).get(component) or {}
            kind = data.get("kind", "mlstack" if component == "metadata" else "")
            if not data or kind == "none":
                continue
            url = data.get("uri") or data.get("url") or data.get("job_queue")
            state = "ready" if record.status == "up" else "missing"
            found.append(
                ServiceStatus(
                    name=component, component=component, state=state, url=url, detail=kind
                )
            )
        return found

    # -- refresh and recover -------------------------------------------------------------

    def _live(self, name: str) -> StackRecord:
        record = self.registry.get(name)
        if record is None or record.status == "destroyed":
            raise UsageError(f"stack {name!r} is not up", "see `mlstack status`")
        if record.provider != self.provider:
            raise UsageError(f"stack {name!r} is a {record.provider} stack, not {self.provider}")
        return record

    def refresh(self, name: str) -> DriftReport:
        """Compare the recorded state with the cloud and record what drifted."""
        self._command()
        with self.registry.stack_lock(name):
            record = self._live(name)
            report = self._refresh(record, DriftReport(stack=name))
            record.log("refresh", f"refresh: drifted {report.drifted or 'nothing'}")
            self.registry.save(record)
        return report

    def recover(self, name: str) -> DriftReport:
        """After a crash: clear a stale lock and pending operations, then refresh."""
        from pulumi.automation.errors import CommandError

        self._command()
        with self.registry.stack_lock(name):
            record = self._live(name)
            report = DriftReport(stack=name)
            try:
                stack = self._stack(record)
            except Exception as exc:
                raise translate(exc, None, name, "recover") from exc
            try:
                stack.cancel()  # file backends: deletes the lock a crashed update left
                report.lock_cleared = True
            except CommandError:
                report.lock_cleared = False  # nothing was running or locked
            state = stack.export_stack()
            pending = state.deployment.get("pending_operations") or []
            report.pending_cleared = [
                f"{p.get('type', '?')} {p.get('resource', {}).get('urn', '').rsplit('::', 1)[-1]}"
                for p in pending
            ]
            report = self._refresh(record, report, stack, clear_pending=True)
            if record.status in ("creating", "destroying"):
                record.status = "failed"
            record.log(
                "recover",
                f"recovered: lock cleared {report.lock_cleared}, pending operations"
                f" {report.pending_cleared or 'none'}; run `mlstack up` or `mlstack down`",
            )
            self.registry.save(record)
        return report

    def _refresh(
        self,
        record: StackRecord,
        report: DriftReport,
        stack: Any = None,
        clear_pending: bool = False,
    ) -> DriftReport:
        if stack is None:
            try:
                stack = self._stack(record)
            except Exception as exc:
                raise translate(exc, None, record.name, "refresh") from exc
        kwargs: dict[str, Any] = {"clear_pending_creates": True} if clear_pending else {}
        result, recorder = self._run(
            record,
            "refresh",
            lambda rec, write: stack.refresh(
                on_event=rec, on_output=write, color="never", **kwargs
            ),
        )
        changes = result.summary.resource_changes or {}
        report.changes = {str(getattr(k, "value", k)): int(v) for k, v in changes.items()}
        report.drifted = recorder.drifted
        return report


class AwsEngine(PulumiEngine):
    """AWS stacks: ``stacks/aws/program.py`` with the aws provider plugin."""

    provider = "aws"
    program_module = "stacks.aws.program"
    plugins = {"aws": "pulumi_aws"}

    def _drain(self, record: StackRecord) -> list[TeardownItem]:
        """Runtime resources and expiry schedules go first; destroy waits until none remain.

        The pipeline images built on this machine for the stack (pushed to its ECR
        repository, labelled ``mlstack.stack=<name>``) leave the local Docker Engine too.
        """
        from provisioner.sweep.aws_drain import drain_before_destroy
        from stacks.common.docker_engine import remove_docker_objects

        region = str(getattr(record.spec, "region", None) or "")
        drained = drain_before_destroy(record.name, record.stack_id, region, self.progress)
        for removed in remove_docker_objects(record.name):
            kind, _, name = removed.partition(" ")
            drained.append(TeardownItem(kind=kind, name=name, detail="local Docker Engine"))
            self.progress.update(removed, "stopped", "removed from the local Docker Engine")
        return drained

    def _configure(self, stack: Any, spec: StackSpec, record: StackRecord) -> None:
        """Also: build and push the metadata image during up, when the spec names none."""
        from pulumi.automation import ConfigValue

        from provisioner.engines.pulumi_image import require_docker

        super()._configure(stack, spec, record)
        publish = spec.components.metadata.image is None
        if publish:
            require_docker()
        stack.set_config("mlstack:publishImage", ConfigValue("true" if publish else "false"))


class KubernetesEngine(PulumiEngine):
    """Kubernetes stacks: ``stacks/kubernetes/program.py`` into an existing cluster."""

    provider = "kubernetes"
    program_module = "stacks.kubernetes.program"
    plugins = {"kubernetes": "pulumi_kubernetes"}
