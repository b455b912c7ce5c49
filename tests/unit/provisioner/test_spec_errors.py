"""Bad stack specs: every failure is one SpecError line naming file, field, value and options."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stacks.common.errors import SpecError
from stacks.spec import (
    SUPPORTED,
    DeployerFlavor,
    KubernetesTarget,
    OrchestratorFlavor,
    Provider,
    StackSpec,
)
from stacks.spec.aws import AwsMlflowTracker, AwsStackSpec
from stacks.spec.kubernetes import KubernetesStackSpec
from stacks.spec.local import LocalComponents as Components
from stacks.spec.local import LocalMlflowTracker, LocalStackSpec
from stacks.spec.parse import parse_spec_data, parse_spec_file

MLSTACK = str(Path(sys.executable).parent / "mlstack")
LINE_BREAKS = ("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
DNS = "lowercase letters, digits and '-'"
TOP_FIELDS = "name, provider, ttl, budget, owner, tags, components"  # of a local stack
COMPONENT_NAMES = (
    "orchestrator, artifact_store, container_registry, secrets, tracker, deployer, metadata"
)
ORCHESTRATORS = "local, docker, aws_batch, kubernetes"
K8S = "kubernetes: {kubeconfig: ~/.kube/config, context: kind-dev}\n"


def assert_one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert not any(ch in message for ch in LINE_BREAKS), f"not one line: {message!r}"


def parse_text(tmp_path: Path, content: str | bytes, name: str = "stack.yaml") -> SpecError:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        parse_spec_file(path)
    return info.value


# Each case: (YAML text, the field path it must name, further fragments the line must contain).
BAD_SPECS = [
    # name
    pytest.param("name: 5\n", "name", ["valid string", "got 5"], id="name-int"),
    pytest.param("name:\n", "name", ["valid string", "got None"], id="name-null"),
    pytest.param("name: [demo]\n", "name", ["valid string", "['demo']"], id="name-list"),
    pytest.param("provider: local\n", "name", ["required field is missing"], id="name-missing"),
    pytest.param("name: Demo\n", "name", [DNS, "got 'Demo'"], id="name-uppercase"),
    pytest.param("name: " + "a" * 41 + "\n", "name", [DNS, "at most 40"], id="name-too-long"),
    pytest.param("name: 1demo\n", "name", [DNS, "got '1demo'"], id="name-leading-digit"),
    pytest.param("name: my_stack\n", "name", [DNS, "got 'my_stack'"], id="name-underscore"),
    pytest.param("name: demo-\n", "name", [DNS, "got 'demo-'"], id="name-trailing-dash"),
    pytest.param("name: ''\n", "name", [DNS, "got ''"], id="name-empty"),
    pytest.param("name: démo\n", "name", [DNS, "got 'démo'"], id="name-non-ascii"),
    # provider and flavors
    pytest.param(
        "name: demo\nprovider: gcp\n",
        "provider",
        ["'gcp' is not valid", "allowed: local, aws, kubernetes"],
        id="provider-unknown",
    ),
    pytest.param(
        "name: demo\nprovider: [local]\n",
        "provider",
        ["['local']", "allowed: local, aws, kubernetes"],
        id="provider-list",
    ),
    pytest.param(
        "name: demo\ncomponents: {orchestrator: airflow}\n",
        "components.orchestrator.flavor",
        ["'airflow' is not valid", f"allowed: {ORCHESTRATORS}"],
        id="flavor-unknown-shorthand",
    ),
    pytest.param(
        "name: demo\ncomponents:\n  tracker: {flavor: wandb}\n",
        "components.tracker.flavor",
        ["'wandb' is not valid", "allowed: mlflow, none"],
        id="flavor-unknown-mapping",
    ),
    pytest.param(
        "name: demo\ncomponents:\n  metadata: {flavor: 7}\n",
        "components.metadata.flavor",
        ["7 is not valid", "allowed: mlstack"],
        id="flavor-int",
    ),
    pytest.param(
        "name: demo\ncomponents: {orchestrator: aws_batch}\n",
        "components.orchestrator.flavor",
        ["'aws_batch'", "not available on provider local", "allowed: local, docker"],
        id="flavor-not-on-local",
    ),
    pytest.param(
        "name: demo\nprovider: aws\nregion: eu-west-1\ncomponents: {artifact_store: local}\n",
        "components.artifact_store.flavor",
        ["'local'", "not available on provider aws", "allowed: s3"],
        id="flavor-not-on-aws",
    ),
    pytest.param(
        "name: demo\nprovider: kubernetes\n" + K8S + "components: {container_registry: ecr}\n",
        "components.container_registry.flavor",
        ["'ecr'", "not available on provider kubernetes", "allowed: kubernetes"],
        id="flavor-not-on-kubernetes",
    ),
    pytest.param(
        "name: demo\ncomponents: {deployer: sagemaker}\n",
        "components.deployer.flavor",
        ["'sagemaker'", "provider local", "allowed: local, none"],
        id="deployer-sagemaker-on-local",
    ),
    # ttl
    pytest.param(
        "name: demo\nttl: 8 hours\n",
        "ttl",
        ["30m, 8h, 2d or 1h30m", "got '8 hours'"],
        id="ttl-words",
    ),
    pytest.param("name: demo\nttl: 91d\n", "ttl", ["at most 90d", "got '91d'"], id="ttl-too-long"),
    pytest.param("name: demo\nttl: 30s\n", "ttl", ["at least 1m", "got '30s'"], id="ttl-too-short"),
    pytest.param("name: demo\nttl: 8\n", "ttl", ["valid string", "got 8"], id="ttl-number"),
    pytest.param("name: demo\nttl: 1.5h\n", "ttl", ["30m, 8h", "got '1.5h'"], id="ttl-fraction"),
    # unknown fields
    pytest.param(
        "name: demo\ncolour: red\n",
        "colour",
        ["unknown field", f"allowed fields here: {TOP_FIELDS}"],
        id="unknown-top-level-field",
    ),
    pytest.param(
        "name: demo\ncomponents: {feature_store: feast}\n",
        "components.feature_store",
        ["unknown field", f"allowed fields here: {COMPONENT_NAMES}"],
        id="unknown-component",
    ),
    pytest.param(
        "name: demo\ncomponents:\n  tracker: {flavor: mlflow, colour: red}\n",
        "components.tracker.colour",
        ["not a setting of the mlflow tracker on a local stack", "(settings: port)"],
        id="unknown-component-field",
    ),
    pytest.param(
        "name: demo\nprovider: kubernetes\n"
        "kubernetes: {kubeconfig: k, context: c, namespace: ml}\n",
        "kubernetes.namespace",
        ["unknown field", "allowed fields here: kubeconfig, context, storage_class"],
        id="unknown-kubernetes-field",
    ),
    pytest.param(
        "name: demo\n1: 2\n", "1", ["Keys should be strings", "got 1"], id="top-level-int-key"
    ),
    # numbers and ranges
    pytest.param(
        "name: demo\ncomponents:\n  tracker: {port: 80}\n",
        "components.tracker.port",
        ["greater than or equal to 1024", "got 80"],
        id="port-too-low",
    ),
    pytest.param(
        "name: demo\ncomponents:\n  metadata: {port: 70000}\n",
        "components.metadata.port",
        ["less than or equal to 65535", "got 70000"],
        id="port-too-high",
    ),
    pytest.param(
        "name: demo\ncomponents:\n  container_registry: {flavor: local, port: http}\n",
        "components.container_registry.port",
        ["valid integer", "got 'http'"],
        id="port-not-a-number",
    ),
    pytest.param(
        "name: demo\ncomponents:\n  tracker: {port: 5000.5}\n",
        "components.tracker.port",
        ["valid integer", "got 5000.5"],
        id="port-fraction",
    ),
    pytest.param(
        "name: demo\nbudget: -5\n", "budget", ["greater than 0", "got -5"], id="budget-negative"
    ),
    pytest.param(
        "name: demo\nbudget: 0\n", "budget", ["greater than 0", "got 0"], id="budget-zero"
    ),
    pytest.param(
        "name: demo\nbudget: lots\n", "budget", ["valid number", "got 'lots'"], id="budget-string"
    ),
    pytest.param(
        "name: demo\nbudget: [5]\n", "budget", ["valid number", "got [5]"], id="budget-list"
    ),
    pytest.param(
        "name: demo\nbudget: 2000000\n",
        "budget",
        ["less than or equal to 1000000", "got 2000000"],
        id="budget-too-large",
    ),
    pytest.param("name: demo\nbudget: .nan\n", "budget", ["got nan"], id="budget-nan"),
    pytest.param(
        "name: demo\ncomponents:\n  orchestrator: {max_parallel: 0}\n",
        "components.orchestrator.max_parallel",
        ["greater than or equal to 1", "got 0"],
        id="max-parallel-zero",
    ),
    pytest.param(
        "name: demo\nprovider: aws\nregion: eu-west-1\ncomponents:\n  tracker: {cpu: 0}\n",
        "components.tracker.cpu",
        ["greater than 0", "got 0"],
        id="tracker-cpu-zero",
    ),
    pytest.param(
        "name: demo\nprovider: aws\nregion: eu-west-1\n"
        "components:\n  artifact_store: {versioning: maybe}\n",
        "components.artifact_store.versioning",
        ["valid boolean", "got 'maybe'"],
        id="versioning-not-bool",
    ),
    # tags and owner
    pytest.param(
        "name: demo\ntags: {'bad key!': x}\n",
        "tags",
        ["'bad key!'", "A-Z a-z 0-9 _.:/=+@-"],
        id="tag-key-with-space",
    ),
    pytest.param(
        "name: demo\ntags: {'': x}\n", "tags", ["tag key ''", "1-128"], id="tag-key-empty"
    ),
    pytest.param(
        "name: demo\ntags: {team: " + "x" * 300 + "}\n",
        "tags",
        ["'team'", "longer than 256"],
        id="tag-value-too-long",
    ),
    pytest.param(
        "name: demo\ntags: {team: [a, b]}\n",
        "tags.team",
        ["valid string", "got ['a', 'b']"],
        id="tag-value-list",
    ),
    pytest.param("name: demo\ntags: [a, b]\n", "tags", ["valid dictionary"], id="tags-as-list"),
    pytest.param("name: demo\nowner: [ana]\n", "owner", ["valid string"], id="owner-list"),
    # provider rules
    pytest.param(
        "name: demo\nprovider: aws\n",
        "region",
        ["aws stack needs a region", "eu-west-1"],
        id="aws-without-region",
    ),
    pytest.param(
        "name: demo\nprovider: aws\nregion: Europe\n",
        "region",
        ["expected an AWS region", "got 'Europe'"],
        id="aws-bad-region",
    ),
    pytest.param(
        "name: demo\nregion: eu-west-1\n",
        "region",
        ["only aws stacks take a region", "local"],
        id="region-on-local",
    ),
    pytest.param(
        "name: demo\nprovider: kubernetes\n" + K8S + "region: eu-west-1\n",
        "region",
        ["only aws stacks take a region", "kubernetes"],
        id="region-on-kubernetes",
    ),
    pytest.param(
        "name: demo\nprovider: aws\nregion: {name: eu-west-1}\n",
        "region",
        ["valid string", "got {'name': 'eu-west-1'}"],
        id="region-mapping",
    ),
    pytest.param(
        "name: demo\nprovider: kubernetes\n",
        "kubernetes",
        ["kubernetes.kubeconfig", "kubernetes.context"],
        id="kubernetes-without-target",
    ),
    pytest.param(
        "name: demo\nprovider: kubernetes\nkubernetes: {kubeconfig: ~/.kube/config}\n",
        "kubernetes.context",
        ["required field is missing"],
        id="kubernetes-target-without-context",
    ),
    pytest.param(
        "name: demo\nprovider: kubernetes\nkubernetes: kind-dev\n",
        "kubernetes",
        ["expected a mapping", "got 'kind-dev'"],
        id="kubernetes-target-scalar",
    ),
    pytest.param(
        "name: demo\ncomponents: {orchestrator: docker}\n",
        "components.container_registry",
        ["orchestrator docker needs a registry", "container_registry: local"],
        id="docker-without-registry",
    ),
    # components shape
    pytest.param(
        "name: demo\ncomponents: [tracker, deployer]\n",
        "components",
        ["expected a mapping", "got ['tracker', 'deployer']"],
        id="components-as-list",
    ),
    pytest.param(
        "name: demo\ncomponents: mlflow\n",
        "components",
        ["expected a mapping", "got 'mlflow'"],
        id="components-as-string",
    ),
    pytest.param(
        "name: demo\ncomponents:\n",
        "components",
        ["expected a mapping", "got None"],
        id="components-null",
    ),
    pytest.param(
        "name: demo\ncomponents: {tracker: 5}\n",
        "components.tracker",
        ["expected a mapping of settings (or a flavor name)", "got 5"],
        id="component-as-number",
    ),
    pytest.param(
        "name: demo\ncomponents: {tracker: [mlflow]}\n",
        "components.tracker",
        ["expected a mapping", "got ['mlflow']"],
        id="component-as-list",
    ),
]


@pytest.mark.parametrize(("text", "field", "parts"), BAD_SPECS)
def test_bad_spec_is_one_line_naming_file_field_value_and_options(
    tmp_path: Path, text: str, field: str, parts: list[str]
) -> None:
    err = parse_text(tmp_path, text)
    message = str(err)

    path = tmp_path / "stack.yaml"
    assert message.startswith(f"{path}: {field}: "), message
    for part in parts:
        assert part in message
    assert err.exit_code == 2
    assert_one_line(message)


def test_more_than_one_problem_reports_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    message = str(parse_text(tmp_path, "name: Demo\nttl: soon\ncolour: red\n"))

    assert message.startswith(f"{tmp_path / 'stack.yaml'}: name: ")
    assert message.endswith("(and 2 more)")
    assert_one_line(message)


def test_parse_spec_data_names_the_given_source() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_data({"name": "demo", "provider": "gcp"}, source="inline spec")

    assert str(info.value).startswith("inline spec: provider: 'gcp' is not valid")


# Files that are not a spec at all: (bytes on disk, fragments the line must contain).
BAD_FILES = [
    pytest.param(
        b"name: demo\nprovider: [local\n",
        ["YAML syntax error at line 3, column 1", "expected ',' or ']'"],
        id="yaml-unclosed-flow",
    ),
    pytest.param(
        b"name: demo\n\tprovider: local\n",
        ["YAML syntax error at line 2", "'\\t'"],
        id="yaml-tab-indent",
    ),
    pytest.param(
        b"name: 'demo\nprovider: local\n",
        ["YAML syntax error"],
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        b"name: demo\n  provider: local\n",
        ["YAML syntax error at line 2"],
        id="yaml-bad-indent",
    ),
    pytest.param(
        b"name: !!python/object:os.system demo\n",
        ["YAML syntax error", "python/object"],
        id="yaml-python-tag",
    ),
    pytest.param(b"name: *nope\n", ["YAML syntax error", "nope"], id="yaml-unknown-alias"),
    pytest.param(
        b"name: demo\nname: other\n",
        ["line 2: duplicate key 'name'", "remove one of them"],
        id="duplicate-top-level-key",
    ),
    pytest.param(
        b"name: demo\ncomponents:\n  tracker: none\n  tracker: mlflow\n",
        ["line 4: duplicate key 'tracker'"],
        id="duplicate-nested-key",
    ),
    pytest.param(
        b"{name: demo, name: other}\n",
        ["duplicate key 'name'"],
        id="duplicate-key-flow-style",
    ),
    pytest.param(b"", ["the file is empty", "name: demo"], id="empty-file"),
    pytest.param(b"\n\n   \n", ["the file is empty"], id="blank-lines"),
    pytest.param(b"# just a comment\n", ["the file is empty"], id="comments-only"),
    pytest.param(b"---\n", ["the file is empty"], id="empty-document"),
    pytest.param(
        b"- name: demo\n  provider: local\n",
        ["expected a mapping of fields at the top level, got list"],
        id="top-level-list",
    ),
    pytest.param(b"demo\n", ["top level, got str"], id="top-level-string"),
    pytest.param(b"42\n", ["top level, got int"], id="top-level-int"),
    pytest.param(b"true\n", ["top level, got bool"], id="top-level-bool"),
    pytest.param(b"name: d\xe9mo\n", ["not UTF-8 text"], id="latin-1-bytes"),
    pytest.param(b"\xff\xfe\x00\x00garbage", ["not UTF-8 text"], id="binary-garbage"),
]


@pytest.mark.parametrize(("content", "parts"), BAD_FILES)
def test_bad_file_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, parts: list[str]
) -> None:
    err = parse_text(tmp_path, content)
    message = str(err)

    assert message.startswith(f"{tmp_path / 'stack.yaml'}: "), message
    for part in parts:
        assert part in message
    assert err.exit_code == 2
    assert_one_line(message)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        parse_spec_file(path)

    assert str(info.value) == f"{path}: no such file (check the path to the stack spec)"


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_file(tmp_path)

    assert str(info.value).startswith(f"{tmp_path}: is a directory")
    assert_one_line(str(info.value))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a chmod-000 file"
)
def test_unreadable_file_by_permissions(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("name: demo\n")
    path.chmod(0)
    try:
        with pytest.raises(SpecError) as info:
            parse_spec_file(path)
    finally:
        path.chmod(0o644)

    assert str(info.value).startswith(f"{path}: permission denied")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.EIO, "Input/output error"), "cannot read (Input/output error)"),
    ],
    ids=["permission-denied", "io-error"],
)
def test_unreadable_file_by_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, expected: str
) -> None:
    # Tests run as root, where chmod 000 does not stop reads; fail the read itself instead.
    path = tmp_path / "stack.yaml"
    path.write_text("name: demo\n")

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        raise error

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(SpecError) as info:
        parse_spec_file(path)

    assert str(info.value).startswith(f"{path}: {expected}")
    assert_one_line(str(info.value))


# --- known bugs: each of these should raise one clean SpecError line ----------------------


@pytest.mark.parametrize(
    "text",
    ["? [a, b]\n: 1\nname: demo\n", "? {a: 1}\n: 1\nname: demo\n"],
    ids=["list-key", "mapping-key"],
)
def test_bug_unhashable_yaml_key(tmp_path: Path, text: str) -> None:
    parse_text(tmp_path, text)


def test_bug_huge_ttl(tmp_path: Path) -> None:
    parse_text(tmp_path, "name: demo\nttl: 99999999999999999999h\n")


def test_bug_key_with_newline_makes_two_lines(tmp_path: Path) -> None:
    assert_one_line(str(parse_text(tmp_path, 'name: demo\n"a\\nb": 1\n')))


@pytest.mark.parametrize(
    "text",
    [
        "name: |\n  demo\n",
        'name: "demo\\n"\n',
        'name: demo\nprovider: aws\nregion: "eu-west-1\\n"\n',
        'name: demo\ntags: {"team\\n": a}\n',
    ],
    ids=["name-block-scalar", "name-escaped", "region", "tag-key"],
)
def test_bug_trailing_newline_is_accepted(tmp_path: Path, text: str) -> None:
    parse_text(tmp_path, text)


def test_bug_non_ascii_digit_ttl_is_accepted(tmp_path: Path) -> None:
    parse_text(tmp_path, "name: demo\nttl: ٨h\n")


def test_bug_boolean_budget_is_accepted(tmp_path: Path) -> None:
    parse_text(tmp_path, "name: demo\nbudget: yes\n")


def test_bug_tag_named_str_loses_its_path(tmp_path: Path) -> None:
    message = str(parse_text(tmp_path, "name: demo\ntags: {str: [1]}\n"))

    assert f"{tmp_path / 'stack.yaml'}: tags.str: " in message


# --- the real CLI -------------------------------------------------------------------------


CLI_CASES = [
    pytest.param(b"name: Demo\n", "name: ", id="name-uppercase"),
    pytest.param(b"name: demo\nprovider: gcp\n", "provider: 'gcp'", id="provider-unknown"),
    pytest.param(
        b"name: demo\ncomponents: {orchestrator: aws_batch}\n",
        "components.orchestrator.flavor: 'aws_batch'",
        id="flavor-not-on-provider",
    ),
    pytest.param(b"name: demo\ncolour: red\n", "colour: unknown field", id="unknown-field"),
    pytest.param(b"name: demo\nprovider: aws\n", "region: ", id="aws-without-region"),
    pytest.param(
        b"name: demo\ncomponents: {orchestrator: docker}\n",
        "components.container_registry: ",
        id="docker-without-registry",
    ),
    pytest.param(b"name: demo\nprovider: [local\n", "YAML syntax error", id="yaml-syntax"),
    pytest.param(b"name: demo\nname: x\n", "duplicate key 'name'", id="duplicate-key"),
    pytest.param(b"", "the file is empty", id="empty-file"),
    pytest.param(b"- a\n- b\n", "got list", id="top-level-list"),
    pytest.param(b"name: d\xe9mo\n", "not UTF-8 text", id="non-utf8"),
    pytest.param(None, "no such file", id="missing-file"),
    pytest.param("dir", "is a directory", id="directory"),
]


def run_validate(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MLSTACK_HOME=str(home))
    return subprocess.run(
        [MLSTACK, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def assert_clean_cli_error(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert str(path) in lines[0]
    assert proc.returncode == 2, proc.stderr


@pytest.mark.parametrize(("content", "fragment"), CLI_CASES)
def test_cli_validate_prints_one_error_line_and_exits_2(
    tmp_path: Path, content: bytes | str | None, fragment: str
) -> None:
    path = tmp_path / "stack.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "dir":
        path.mkdir()

    proc = run_validate(path, tmp_path / "home")

    assert_clean_cli_error(proc, path)
    assert fragment in proc.stderr


@pytest.mark.parametrize(
    "content",
    [b"name: demo\nttl: 99999999999999999999h\n", b"? [a, b]\n: 1\nname: demo\n"],
    ids=["huge-ttl", "unhashable-key"],
)
def test_bug_cli_exits_1_for_foreign_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "stack.yaml"
    path.write_bytes(content)

    assert_clean_cli_error(run_validate(path, tmp_path / "home"), path)


# --- property: any YAML-able data gives a StackSpec or one SpecError line -----------------

FIELD_KEYS = sorted(
    {
        *StackSpec.model_fields,
        *Components.model_fields,
        *KubernetesTarget.model_fields,
        *LocalMlflowTracker.model_fields,
        *AwsMlflowTracker.model_fields,
        *AwsStackSpec.model_fields,
        *KubernetesStackSpec.model_fields,
        "flavor",
        "max_parallel",
        "versioning",
        "database_url",
    }
)
WORDS = sorted(
    {
        *(p.value for p in Provider),
        *(f.value for f in OrchestratorFlavor),
        *(f.value for f in DeployerFlavor),
        "demo",
        "eu-west-1",
        "8h",
        "1h30m",
        "91d",
        "mlflow",
    }
)
# Keys with line breaks are left out: they are a known bug (test_bug_key_with_newline_...).
# Put them back (plain st.text()) once format_error escapes keys.
SAFE_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)
KEYS = st.one_of(
    st.sampled_from(FIELD_KEYS), SAFE_TEXT, st.integers(-5, 5), st.booleans(), st.none()
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(WORDS),
)
YAML_DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=20,
)
COMPONENT = st.one_of(
    st.sampled_from(WORDS), st.dictionaries(st.sampled_from(FIELD_KEYS), YAML_DATA, max_size=4)
)
SPEC_LIKE = st.fixed_dictionaries(
    {"name": st.one_of(st.just("demo"), YAML_DATA)},
    optional={
        "provider": st.one_of(st.sampled_from(WORDS), YAML_DATA),
        "region": st.one_of(st.just("eu-west-1"), YAML_DATA),
        "ttl": st.one_of(st.sampled_from(WORDS), YAML_DATA),
        "budget": YAML_DATA,
        "tags": st.one_of(st.dictionaries(SAFE_TEXT, st.text(max_size=5)), YAML_DATA),
        "kubernetes": st.one_of(
            st.just({"kubeconfig": "k", "context": "c"}),
            st.dictionaries(st.sampled_from(FIELD_KEYS), YAML_DATA, max_size=3),
        ),
        "components": st.one_of(
            st.dictionaries(st.sampled_from(list(Components.model_fields)), COMPONENT),
            YAML_DATA,
        ),
    },
)
VALID_BASES: list[dict[str, Any]] = [
    {"name": "demo"},
    {"name": "demo", "provider": "aws", "region": "eu-west-1"},
    {"name": "demo", "provider": "kubernetes", "kubernetes": {"kubeconfig": "k", "context": "c"}},
]


def _one_change(base: dict[str, Any], where: str, key: Any, value: Any) -> dict[str, Any]:
    """A valid spec with exactly one field (top level or in one component) replaced."""
    if where == "top":
        return {**base, key: value}
    return {**base, "components": {where: {key: value}}}


def _settings(annotation: Any) -> set[str]:
    """Every setting of every flavor a component annotation (a model or a union) allows."""
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return set(annotation.model_fields)
    return set().union(*(_settings(arg) for arg in get_args(annotation)))


FIELDS_AT = {"top": {*LocalStackSpec.model_fields, *AwsStackSpec.model_fields}} | {
    name: _settings(field.annotation) for name, field in Components.model_fields.items()
}
VALUES = st.one_of(
    st.sampled_from(WORDS), st.integers(0, 70_000), st.floats(0, 100), st.booleans(), YAML_DATA
)
NEARLY_VALID = st.one_of(
    [
        st.builds(
            _one_change,
            st.sampled_from(VALID_BASES),
            st.just(where),
            st.one_of(st.sampled_from(sorted(fields)), st.sampled_from(sorted(fields)), KEYS),
            VALUES,
        )
        for where, fields in FIELDS_AT.items()
    ]
)
SUPPORTED_COMBOS = st.sampled_from(VALID_BASES).flatmap(
    lambda base: st.fixed_dictionaries(
        {},
        optional={
            name: st.sampled_from([f.value for f in flavors])
            for name, flavors in SUPPORTED[Provider(base.get("provider", "local"))].items()
        },
    ).map(lambda components: {**base, "components": components})
)
TOP_LEVEL = st.one_of(
    SUPPORTED_COMBOS, NEARLY_VALID, SPEC_LIKE, st.dictionaries(KEYS, YAML_DATA, max_size=6)
)


@settings(max_examples=200, deadline=None, database=None)
@given(TOP_LEVEL)
def test_any_data_gives_a_spec_or_one_spec_error_line(data: dict[Any, Any]) -> None:
    try:
        spec = parse_spec_data(data, source="fuzz.yaml")
    except SpecError as err:
        message = str(err)
        assert message.startswith("fuzz.yaml: ")
        assert_one_line(message)
        assert err.exit_code == 2
    else:
        assert isinstance(spec, StackSpec)
        assert spec.components.orchestrator.flavor is not None


@settings(
    max_examples=75, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(TOP_LEVEL)
def test_any_yaml_file_gives_a_spec_or_one_spec_error_line(data: dict[Any, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        try:
            parse_spec_file(path)
        except SpecError as err:
            assert str(err).startswith(f"{path}: ")
            assert_one_line(str(err))
