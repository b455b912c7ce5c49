"""Valid stack specs: per-provider defaults, shorthand, hashing, TTLs, URL redaction, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stacks.common.errors import SpecError
from stacks.spec import (
    DEFAULT_TTL,
    SUPPORTED,
    Provider,
    StackSpec,
    load_spec,
    parse_ttl,
    redact_url,
)
from stacks.spec.local import LocalComponents
from stacks.spec.parse import parse_spec_data

MLSTACK = str(Path(sys.executable).parent / "mlstack")
COMPONENTS = list(LocalComponents.model_fields)
K8S_TARGET = {"kubeconfig": "~/.kube/config", "context": "kind-dev"}


def minimal(provider: str) -> dict[str, Any]:
    """The smallest valid spec for each provider."""
    data: dict[str, Any] = {"name": "demo", "provider": provider}
    if provider == "aws":
        data["region"] = "eu-west-1"
    if provider == "kubernetes":
        data["kubernetes"] = dict(K8S_TARGET)
    return data


def flavors(spec: StackSpec) -> dict[str, str]:
    return {name: getattr(spec.components, name).flavor.value for name in COMPONENTS}


def run_mlstack(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MLSTACK_HOME=str(home))
    return subprocess.run(
        [MLSTACK, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


# --- defaults -----------------------------------------------------------------------------


def test_two_line_local_spec_gets_every_default(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("name: demo\nprovider: local\n", encoding="utf-8")

    spec = load_spec(path)

    assert spec.name == "demo"
    assert spec.provider is Provider.local
    assert flavors(spec) == {
        "orchestrator": "local",
        "artifact_store": "local",
        "container_registry": "none",
        "secrets": "local",
        "tracker": "mlflow",
        "deployer": "local",
        "metadata": "mlstack",
    }
    assert not hasattr(spec, "region")  # only aws stacks have one
    assert spec.ttl is None
    assert spec.ttl_delta is None
    assert spec.budget is None
    assert spec.owner is None
    assert spec.tags == {}
    assert not hasattr(spec, "kubernetes")
    orchestrator = spec.components.orchestrator
    assert orchestrator.max_parallel == 4
    assert spec.components.artifact_store.path is None
    assert spec.components.tracker.port is None


def test_provider_defaults_to_local() -> None:
    assert parse_spec_data({"name": "demo"}) == parse_spec_data(minimal("local"))


@pytest.mark.parametrize("provider", [p.value for p in Provider])
def test_every_component_defaults_to_the_first_supported_flavor(provider: str) -> None:
    spec = parse_spec_data(minimal(provider))

    expected = {name: options[0].value for name, options in SUPPORTED[Provider(provider)].items()}
    assert flavors(spec) == expected
    assert spec.ttl == DEFAULT_TTL[Provider(provider)]


def test_aws_needs_a_region_and_gets_an_8h_ttl() -> None:
    with pytest.raises(SpecError, match="region"):
        parse_spec_data({"name": "demo", "provider": "aws"}, source="aws.yaml")

    spec = parse_spec_data(minimal("aws"))

    assert spec.region == "eu-west-1"
    assert spec.ttl == "8h"
    assert spec.ttl_delta == timedelta(hours=8)
    assert flavors(spec) == {
        "orchestrator": "aws_batch",
        "artifact_store": "s3",
        "container_registry": "ecr",
        "secrets": "aws_secrets_manager",
        "tracker": "mlflow",
        "deployer": "sagemaker",
        "metadata": "mlstack",
    }


def test_an_explicit_ttl_beats_the_provider_default() -> None:
    spec = parse_spec_data(minimal("aws") | {"ttl": "1h30m"})

    assert spec.ttl == "1h30m"
    assert spec.ttl_delta == timedelta(hours=1, minutes=30)


def test_kubernetes_needs_a_target_and_gets_its_flavors() -> None:
    with pytest.raises(SpecError, match="kubeconfig"):
        parse_spec_data({"name": "demo", "provider": "kubernetes"})

    spec = parse_spec_data(minimal("kubernetes"))

    assert spec.kubernetes is not None
    assert spec.kubernetes.kubeconfig == "~/.kube/config"
    assert spec.kubernetes.context == "kind-dev"
    assert spec.kubernetes.storage_class is None
    assert spec.ttl == "8h"
    assert flavors(spec) == {
        "orchestrator": "kubernetes",
        "artifact_store": "minio",
        "container_registry": "kubernetes",
        "secrets": "kubernetes",
        "tracker": "mlflow",
        "deployer": "kubernetes",
        "metadata": "mlstack",
    }


@pytest.mark.parametrize("name", ["a", "demo", "team-a-dev", "x1", "a" * 40, "a" + "-" * 38 + "b"])
def test_dns_safe_names_are_accepted(name: str) -> None:
    assert parse_spec_data({"name": name}).name == name


def test_a_full_local_spec_keeps_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(
        "name: team-a-dev\n"
        "provider: local\n"
        "ttl: 2d\n"
        "budget: 25.5\n"
        "owner: ana@example.com\n"
        "tags: {team: a, cost-center: '42'}\n"
        "components:\n"
        "  orchestrator: {flavor: docker, max_parallel: 8}\n"
        "  container_registry: {flavor: local, port: 5001}\n"
        "  tracker: {port: 5050}\n"
        "  deployer: none\n"
        "  metadata: {port: 8088, database_url: 'postgresql://u:pw@db:5432/meta'}\n",
        encoding="utf-8",
    )

    spec = load_spec(path)

    assert spec.ttl_delta == timedelta(days=2)
    assert spec.budget == 25.5
    assert spec.tags == {"team": "a", "cost-center": "42"}
    assert spec.components.orchestrator.flavor == "docker"
    assert spec.components.orchestrator.max_parallel == 8
    assert spec.components.container_registry.port == 5001
    assert spec.components.tracker.flavor == "mlflow"
    assert spec.components.tracker.port == 5050
    assert spec.components.deployer.flavor == "none"


# --- component shorthand ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "flavor"),
    [
        ("tracker", "none"),
        ("tracker", "mlflow"),
        ("deployer", "none"),
        ("container_registry", "local"),
        ("orchestrator", "local"),
        ("metadata", "mlstack"),
    ],
)
def test_component_shorthand_equals_the_mapping_form(component: str, flavor: str) -> None:
    short = parse_spec_data({"name": "demo", "components": {component: flavor}})
    long = parse_spec_data({"name": "demo", "components": {component: {"flavor": flavor}}})

    assert short == long
    assert getattr(short.components, component).flavor.value == flavor
    assert short.spec_hash() == long.spec_hash()


def test_shorthand_docker_orchestrator_with_local_registry() -> None:
    spec = parse_spec_data(
        {"name": "demo", "components": {"orchestrator": "docker", "container_registry": "local"}}
    )

    assert spec.components.orchestrator.flavor == "docker"
    assert spec.components.container_registry.flavor == "local"


# --- spec_hash ----------------------------------------------------------------------------


def _reversed(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _reversed(v) for k, v in reversed(list(data.items()))}
    return data


RICH: dict[str, Any] = {
    "name": "demo",
    "provider": "local",
    "ttl": "2h",
    "tags": {"team": "a", "env": "dev"},
    "components": {
        "orchestrator": {"flavor": "docker", "max_parallel": 2},
        "container_registry": {"flavor": "local", "port": 5001},
        "tracker": {"port": 5050},
    },
}


def test_spec_hash_is_stable_across_key_order() -> None:
    first = parse_spec_data(RICH)
    second = parse_spec_data(_reversed(RICH))

    assert list(_reversed(RICH)) != list(RICH)
    assert first.spec_hash() == second.spec_hash()
    assert first.spec_hash() == parse_spec_data(RICH).spec_hash()
    assert len(first.spec_hash()) == 16
    int(first.spec_hash(), 16)


def test_spec_hash_is_stable_across_key_order_in_yaml_files(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("name: demo\nprovider: local\ncomponents: {tracker: none, deployer: none}\n")
    b.write_text("components:\n  deployer: {flavor: none}\n  tracker: none\nname: demo\n")

    assert load_spec(a).spec_hash() == load_spec(b).spec_hash()


def test_spec_hash_ignores_spelling_out_a_default() -> None:
    implicit = parse_spec_data({"name": "demo"})
    explicit = parse_spec_data(
        {"name": "demo", "provider": "local", "components": {"tracker": {"flavor": "mlflow"}}}
    )

    assert implicit.spec_hash() == explicit.spec_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"name": "demo2"},
        {"ttl": "3h"},
        {"budget": 10},
        {"owner": "ana"},
        {"tags": {"team": "b", "env": "dev"}},
        {"components": {**RICH["components"], "tracker": {"port": 5051}}},
        {"components": {**RICH["components"], "tracker": "none"}},
        {"components": {**RICH["components"], "orchestrator": {"flavor": "docker"}}},
    ],
    ids=["name", "ttl", "budget", "owner", "tag", "port", "flavor", "max_parallel"],
)
def test_spec_hash_changes_when_a_setting_changes(change: dict[str, Any]) -> None:
    base = parse_spec_data(RICH)
    changed = parse_spec_data(RICH | change)

    assert base.spec_hash() != changed.spec_hash()


# --- redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:secret@db:5432/meta", "postgresql://user:***@db:5432/meta"),
        ("postgresql+psycopg://u:p4ss@localhost/db", "postgresql+psycopg://u:***@localhost/db"),
        ("mysql://admin:a:b:c@host/db", "mysql://admin:***@host/db"),
        ("postgresql://db:5432/meta", "postgresql://db:5432/meta"),
        ("postgresql://user@db/meta", "postgresql://user@db/meta"),
        ("sqlite:////tmp/meta.db", "sqlite:////tmp/meta.db"),
    ],
)
def test_redact_url_masks_only_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_masks_a_password_containing_at_sign() -> None:
    redacted = redact_url("postgresql://user:p@ss@db:5432/meta")

    assert "ss" not in redacted.split("@", 1)[1].split("db")[0]
    assert redacted == "postgresql://user:***@db:5432/meta"


def test_redacted_spec_masks_the_database_password_and_keeps_the_rest() -> None:
    url = "postgresql://meta:hunter2@db:5432/meta"
    spec = parse_spec_data({"name": "demo", "components": {"metadata": {"database_url": url}}})

    data = spec.redacted()

    assert data["components"]["metadata"]["database_url"] == "postgresql://meta:***@db:5432/meta"
    assert "hunter2" not in json.dumps(data)
    assert spec.components.metadata.database_url == url  # the model itself is untouched
    assert data["name"] == "demo"


# --- parse_ttl ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("8h", timedelta(hours=8)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w", timedelta(weeks=1)),
        ("1m", timedelta(minutes=1)),
        ("90d", timedelta(days=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90s", timedelta(seconds=90)),
    ],
)
def test_parse_ttl_accepts_durations(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "8", "h", "8H", "8 hours", "-1h", "1.5h", "m30", "30m1h", "1y", "59s", "0m", "91d", "13w"],
)
def test_parse_ttl_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)


# --- CLI ----------------------------------------------------------------------------------


def test_mlstack_schema_prints_a_json_schema_with_every_component(tmp_path: Path) -> None:
    proc = run_mlstack("schema", home=tmp_path / "home")

    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    for provider in ("Local", "Aws", "Kubernetes"):
        components = schema["$defs"][f"{provider}Components"]["properties"]
        assert set(components) == set(COMPONENTS)
        spec = schema["$defs"][f"{provider}StackSpec"]
        assert {"name", "provider", "components", "ttl", "tags"} <= set(spec["properties"])
    assert schema["$defs"]["LocalStackSpec"]["required"] == ["name"]
    for flavor in ("mlflow", "aws_batch", "minio", "sagemaker", "aws_secrets_manager"):
        assert flavor in proc.stdout

    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator
    validator.check_schema(schema)
    for provider in ("local", "aws", "kubernetes"):
        validator(schema).validate(minimal(provider))
    assert not validator(schema).is_valid({"name": "demo", "colour": "red"})


def test_mlstack_validate_prints_one_line_for_a_valid_spec(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("name: demo\nprovider: local\n", encoding="utf-8")

    proc = run_mlstack("validate", str(path), home=tmp_path / "home")

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert "valid" in lines[0]
    assert "tracker=mlflow" in lines[0]
    assert "container_registry=none" in lines[0]


def test_mlstack_validate_json_is_the_whole_spec_with_defaults_and_no_password(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(
        "name: demo\nprovider: local\ncomponents:\n  metadata:\n"
        "    database_url: postgresql://ml:hunter2@db.example/meta\n",
        encoding="utf-8",
    )

    proc = run_mlstack("validate", str(path), "--json", home=tmp_path / "home")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["file"] == str(path) and data["valid"] is True
    assert data["spec"] == json.loads(json.dumps(load_spec(path).redacted()))
    components = data["spec"]["components"]
    assert components["tracker"]["flavor"] == "mlflow"  # a default, filled in
    assert components["orchestrator"]["flavor"] == "local"
    assert components["metadata"]["database_url"] == "postgresql://ml:***@db.example/meta"
    assert "hunter2" not in proc.stdout


def test_mlstack_validate_json_of_a_bad_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("name: demo\nprovider: local\ncolour: red\n", encoding="utf-8")

    proc = run_mlstack("validate", str(path), "--json", home=tmp_path / "home")

    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "colour" in proc.stderr
