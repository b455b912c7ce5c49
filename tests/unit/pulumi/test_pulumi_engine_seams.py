"""The pulumi engine at the seams that run without a CLI: workspace, events, errors, outputs."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import errors as auto_errors
from pulumi.automation import events
from pulumi.automation._cmd import CommandResult

from provisioner.engines import get_engine
from provisioner.engines.pulumi import (
    AwsEngine,
    KubernetesEngine,
    pulumi_command,
    stack_outputs,
    workspace_options,
    workspace_settings,
)
from provisioner.engines.pulumi_events import EventRecorder, clean_diagnostic, translate
from provisioner.state import StackRecord, StateRegistry
from stacks.common.errors import EngineError
from stacks.spec import StackSpec
from tests.conftest import aws_outputs_data

# pulumi_aws warns about its own deprecated resource classes at import time.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

BUCKET_URN = (
    "urn:pulumi:demo-a1::mlstack-aws::mlstack:aws:ArtifactStore$aws:s3/bucket:Bucket::bucket"
)
DB_URN = "urn:pulumi:demo-a1::mlstack-aws::mlstack:aws:MetadataServer$aws:rds/instance:Instance::db"


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def update(self, item: str, state: str, detail: str = "") -> None:
        self.calls.append((item, state, detail))


# -- workspace ---------------------------------------------------------------------------


def test_default_workspace_is_a_file_backend_with_a_generated_passphrase(tmp_path: Path) -> None:
    settings = workspace_settings(tmp_path, "demo", env={})
    assert settings.backend_url == (tmp_path / "pulumi").resolve().as_uri()
    assert (tmp_path / "pulumi").is_dir()
    assert settings.work_dir == tmp_path / "stacks" / "demo" / "pulumi"
    assert settings.passphrase_file == tmp_path / "pulumi-passphrase"
    mode = stat.S_IMODE(os.stat(settings.passphrase_file).st_mode)
    assert mode == 0o600
    passphrase = settings.passphrase_file.read_text()
    assert len(passphrase.strip()) >= 32
    assert settings.env_vars["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(settings.passphrase_file)
    assert passphrase.strip() not in str(settings.env_vars)
    again = workspace_settings(tmp_path, "demo", env={})
    assert again.passphrase_file and again.passphrase_file.read_text() == passphrase  # kept


def test_backend_url_and_passphrase_from_the_environment(tmp_path: Path) -> None:
    env = {"MLSTACK_PULUMI_BACKEND": "s3://team-state/mlstack", "PULUMI_CONFIG_PASSPHRASE": "x"}
    settings = workspace_settings(tmp_path, "demo", env=env)
    assert settings.backend_url == "s3://team-state/mlstack"
    assert settings.passphrase_file is None
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in settings.env_vars
    assert not (tmp_path / "pulumi-passphrase").exists()


def test_a_passphrase_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pulumi-passphrase"
    path.write_text("secret\n")
    path.chmod(0o644)
    with pytest.raises(EngineError, match="chmod 600"):
        workspace_settings(tmp_path, "demo", env={})


def test_workspace_options_carry_project_backend_and_secrets_provider(tmp_path: Path) -> None:
    settings = workspace_settings(tmp_path, "demo", env={})
    opts = workspace_options(settings, "mlstack-aws")
    assert opts.secrets_provider == "passphrase"
    assert opts.work_dir == str(settings.work_dir)
    assert opts.project_settings.name == "mlstack-aws"
    assert opts.project_settings.runtime == "python"
    assert opts.project_settings.backend.url == settings.backend_url
    assert opts.env_vars["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert opts.pulumi_command is None  # nothing was run to build them


def test_missing_cli_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EngineError) as err:
        pulumi_command(tmp_path, env={})
    assert "the Pulumi CLI is not installed" in err.value.headline
    assert "MLSTACK_INSTALL_PULUMI=1" in str(err.value.hint)


def test_engines_are_registered_and_lazy(tmp_path: Path) -> None:
    registry = StateRegistry(tmp_path)
    assert isinstance(get_engine("aws", registry), AwsEngine)
    assert isinstance(get_engine("kubernetes", registry), KubernetesEngine)


# -- events -> progress ------------------------------------------------------------------


def _step(
    op: str, urn: str, type_: str, diffs: list[str] | None = None
) -> events.StepEventMetadata:
    return events.StepEventMetadata(
        op=events.OpType(op), urn=urn, type=type_, provider="", diffs=diffs
    )


def _event(seq: int, at: int, **kind: Any) -> events.EngineEvent:
    return events.EngineEvent(sequence=seq, timestamp=at, **kind)


def recorded_up() -> list[events.EngineEvent]:
    bucket, db = (
        _step("create", BUCKET_URN, "aws:s3/bucket:Bucket"),
        _step("create", DB_URN, "aws:rds/instance:Instance"),
    )
    stack = _step("create", "urn:pulumi:s::p::pulumi:pulumi:Stack::p-s", "pulumi:pulumi:Stack")
    same = _step("same", BUCKET_URN.replace("::bucket", "::other"), "aws:s3/bucket:Bucket")
    return [
        _event(1, 100, resource_pre_event=events.ResourcePreEvent(stack)),
        _event(2, 100, resource_pre_event=events.ResourcePreEvent(bucket)),
        _event(3, 101, resource_pre_event=events.ResourcePreEvent(db)),
        _event(4, 101, resource_pre_event=events.ResourcePreEvent(same)),
        _event(5, 104, res_outputs_event=events.ResOutputsEvent(bucket)),
        _event(
            6,
            160,
            diagnostic_event=events.DiagnosticEvent(
                message="  sdk-v2/provider2.go:520: sdk.helper_schema: creating RDS DB Instance"
                " (mlstack-demo-a1-db): InvalidParameterCombination: RDS does not support"
                " creating a DB instance with the following combination\n",
                color="never",
                severity="error",
                urn=DB_URN,
            ),
        ),
        _event(7, 160, res_op_failed_event=events.ResOpFailedEvent(db, status=1, steps=1)),
        _event(
            8,
            161,
            diagnostic_event=events.DiagnosticEvent(
                message="update failed", color="never", severity="error", urn=""
            ),
        ),
    ]


def test_progress_from_recorded_engine_events() -> None:
    progress = Recorded()
    recorder = EventRecorder(progress)
    for event in recorded_up():
        recorder(event)
    assert ("bucket", "starting", "create Bucket") in progress.calls
    assert ("bucket", "ready", "created Bucket in 4s") in progress.calls
    assert ("other", "unchanged", "Bucket") in progress.calls
    assert progress.calls[-1][:2] == ("db", "failed")
    assert "InvalidParameterCombination" in progress.calls[-1][2]
    assert not [c for c in progress.calls if "Stack" in c[0] or c[0] == "p-s"]
    assert recorder.changed == ["bucket"]
    assert recorder.unchanged == ["other"]
    name, message = recorder.first_error() or ("", "")
    assert name == "db" and message.startswith("creating RDS DB Instance")


def test_delete_and_refresh_events() -> None:
    progress = Recorded()
    recorder = EventRecorder(progress)
    gone = _step("delete", BUCKET_URN, "aws:s3/bucket:Bucket")
    recorder(_event(1, 10, resource_pre_event=events.ResourcePreEvent(gone)))
    recorder(_event(2, 12, res_outputs_event=events.ResOutputsEvent(gone)))
    drift = _step("refresh", DB_URN, "aws:rds/instance:Instance", diffs=["instanceClass"])
    recorder(_event(3, 13, res_outputs_event=events.ResOutputsEvent(drift)))
    assert ("bucket", "stopping", "delete Bucket") in progress.calls
    assert ("bucket", "stopped", "deleted Bucket in 2s") in progress.calls
    assert recorder.deleted == ["bucket"]
    assert recorder.drifted == ["db"]


def test_planning_events_and_broken_events_are_ignored() -> None:
    progress = Recorded()
    recorder = EventRecorder(progress)
    step = _step("create", BUCKET_URN, "aws:s3/bucket:Bucket")
    recorder(_event(1, 1, resource_pre_event=events.ResourcePreEvent(step, planning=True)))
    recorder(object())  # never raises into the update
    assert progress.calls == []


def test_clean_diagnostic_keeps_the_provider_message() -> None:
    text = clean_diagnostic("error: sdk-v2/provider2.go:520: creating S3 Bucket (x): Conflict\n\n")
    assert text == "creating S3 Bucket (x): Conflict"


# -- errors ------------------------------------------------------------------------------


def _result(stderr: str) -> CommandResult:
    return CommandResult(stdout="", stderr=stderr, code=255)


def test_concurrent_update_points_at_recover() -> None:
    exc = auto_errors.ConcurrentUpdateError(_result("error: the stack is currently locked by 1"))
    err = translate(exc, None, "demo", "up")
    assert isinstance(err, EngineError)
    assert "locked" in err.headline and "mlstack recover demo" in str(err.hint)


def test_failed_update_carries_the_failing_resource_diagnostic() -> None:
    recorder = EventRecorder()
    for event in recorded_up():
        recorder(event)
    exc = auto_errors.CommandError(_result("error: update failed\n"))
    err = translate(exc, recorder, "demo", "up", "/tmp/log")
    assert err.headline.startswith("up of stack 'demo' failed at db: creating RDS DB Instance")
    assert "InvalidParameterCombination" in err.headline
    assert "/tmp/log" in str(err.hint)
    assert "\n" not in str(err)


def test_failure_without_events_uses_the_cli_error_line() -> None:
    exc = auto_errors.CommandError(_result("warning: x\nerror: no credentials found\n"))
    err = translate(exc, EventRecorder(), "demo", "down")
    assert err.headline == "down of stack 'demo' failed: no credentials found"


def test_stack_not_found_and_already_exists() -> None:
    missing = translate(
        auto_errors.StackNotFoundError(_result("no stack named x")), None, "d", "up"
    )
    assert "not in the state backend" in missing.headline
    assert "MLSTACK_PULUMI_BACKEND" in str(missing.hint)
    exists = translate(auto_errors.StackAlreadyExistsError(_result("")), None, "d", "up")
    assert "already exists" in exists.headline


def test_foreign_errors_become_engine_errors() -> None:
    err = translate(RuntimeError("boom"), None, "demo", "up")
    assert err.headline == "up of stack 'demo' failed: RuntimeError: boom"


def test_outputs_that_break_the_contract_are_an_engine_error() -> None:
    with pytest.raises(EngineError, match="StackOutputs v2 contract at artifact_store"):
        stack_outputs({"stack": "x", "stack_id": "x-1", "provider": "aws"})


# -- plan and status ---------------------------------------------------------------------


def test_plan_twice_in_one_process_and_runtime_state_stays_clean(tmp_path: Path) -> None:
    from pulumi.runtime import settings

    engine = get_engine("aws", StateRegistry(tmp_path))
    spec = StackSpec.model_validate({"name": "twice", "provider": "aws", "region": "us-east-1"})
    first, second = engine.plan(spec), engine.plan(spec)
    assert [c.resource for c in first.changes] == [c.resource for c in second.changes]
    assert all(c.details.get("region") == "us-east-1" for c in first.changes)
    assert settings.get_root_resource() is None  # nothing leaked into this context
    k8s = StackSpec.model_validate(
        {"name": "k", "provider": "kubernetes", "kubernetes": {"kubeconfig": "/k", "context": "c"}}
    )
    assert get_engine("kubernetes", StateRegistry(tmp_path)).plan(k8s).changes


def test_status_reports_components_from_recorded_outputs(tmp_path: Path) -> None:
    record = StackRecord(
        name="s",
        stack_id="s-1",
        provider="aws",
        status="up",
        spec={"name": "s", "provider": "aws", "region": "eu-west-1"},
        spec_hash="x",
        outputs=aws_outputs_data("s"),
    )
    found = {s.name: s for s in AwsEngine(StateRegistry(tmp_path)).status(record)}
    assert "deployer" not in found  # kind none: nothing to show
    assert {"tracker", "metadata", "orchestrator", "artifact_store"} <= set(found)
    assert found["tracker"].url == "http://lb" and found["tracker"].state == "ready"


def test_the_first_ecs_use_in_an_account_is_explained() -> None:
    exc = auto_errors.CommandError(
        _result(
            "error: creating ECS Service (mlstack-x-metadata): InvalidParameterException:"
            " Unable to assume the service linked role. Please verify that the ECS service"
            " linked role exists.\n"
        )
    )
    err = translate(exc, EventRecorder(), "demo", "up", "/tmp/log")
    assert "service linked role" in err.headline
    assert "run `mlstack up` again" in str(err.hint)
    assert "create-service-linked-role --aws-service-name ecs.amazonaws.com" in str(err.hint)
