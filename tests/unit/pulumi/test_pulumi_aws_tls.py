"""AWS stack under mocks: HTTPS only, ingress from allowed_cidrs, TLS material, auth, ordering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.engines.pulumi_plan import MockRun, run_stack_program
from stacks.aws import tls
from stacks.outputs import StackOutputs
from stacks.spec import StackSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

STACK_ID = "demo-a1b2c3"
SECRETS = {
    "mlstack:metadataToken": "token-value-for-tests",
    "mlstack:dbPassword": "password-for-tests",
    "mlstack:trackerPassword": "tracker-password-for-tests",
    "mlstack:trackerFlaskKey": "flask-key-for-tests",
}
ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0e0d0c-aaaa-bbbb-cccc-0123456789ab"


def make_spec(network: dict[str, Any] | None = None, **components: Any) -> StackSpec:
    data: dict[str, Any] = {
        "name": "demo", "provider": "aws", "region": "eu-west-1", "owner": "alice",
        "components": components,
    }  # fmt: skip
    if network is not None:
        data["network"] = network
    return StackSpec.model_validate(data)


def run(spec: StackSpec) -> MockRun:
    """Like the engine: generated secrets + the TLS material generated once for the spec."""
    config = {"mlstack:owner": "alice", "mlstack:expiresAt": "never", **SECRETS}
    config.update({f"mlstack:{k}": v for k, (v, _) in tls.generated_config(spec).items()})
    return run_stack_program(spec, "stacks.aws.program", STACK_ID, config)


def outputs(result: MockRun) -> StackOutputs:
    return StackOutputs.model_validate(
        {k: v for k, v in result.outputs.items() if k in StackOutputs.model_fields}
    )


@pytest.fixture(scope="module")
def generated() -> MockRun:
    return run(make_spec())


@pytest.fixture(scope="module")
def own_domain() -> MockRun:
    return run(
        make_spec(
            {
                "domain": "ml.example.com",
                "certificate_arn": ARN,
                "allowed_cidrs": ["203.0.113.0/24"],
            }
        )
    )


def test_only_https_listeners_with_the_certificate(generated: MockRun) -> None:
    listeners = generated.of_type("aws:lb/listener:Listener")
    assert sorted(int(lst.inputs["port"]) for lst in listeners) == [443, 8080]
    cert = generated.named("tls-certificate")
    assert cert.type == "aws:acm/certificate:Certificate"
    for listener in listeners:
        assert listener.inputs["protocol"] == "HTTPS"
        assert listener.inputs["certificateArn"].startswith("arn:aws:acm:")
        assert listener.inputs["sslPolicy"] == tls.SSL_POLICY
    assert not [r for r in generated.resources if r.inputs.get("protocol") == "HTTP"
                and r.type == "aws:lb/listener:Listener"]  # fmt: skip


def test_generated_certificate_is_imported_with_key_and_chain(generated: MockRun) -> None:
    cert = generated.named("tls-certificate").inputs
    key = cert["privateKey"]  # a Pulumi secret: encrypted in the state
    assert isinstance(key, dict) and "BEGIN PRIVATE KEY" in key["value"]
    assert "BEGIN CERTIFICATE" in cert["certificateBody"]
    assert cert["certificateChain"] == outputs(generated).metadata.ca_pem


def test_the_ca_lands_in_the_outputs_and_urls_are_https(generated: MockRun) -> None:
    out = outputs(generated)
    assert out.metadata.ca_pem and "BEGIN CERTIFICATE" in out.metadata.ca_pem
    assert out.tracker.ca_pem == out.metadata.ca_pem
    assert out.metadata.url.startswith("https://") and out.metadata.url.endswith(":8080")
    assert out.tracker.uri and out.tracker.uri.startswith("https://")
    assert out.tracker.uri.endswith(".elb.amazonaws.com")  # 443: no port
    assert "BEGIN PRIVATE KEY" not in json.dumps(out.public())


def test_own_domain_uses_the_spec_certificate_and_no_ca(own_domain: MockRun) -> None:
    assert not own_domain.of_type("aws:acm/certificate:Certificate")
    for listener in own_domain.of_type("aws:lb/listener:Listener"):
        assert listener.inputs["certificateArn"] == ARN
    out = outputs(own_domain)
    assert out.metadata.url == "https://ml.example.com:8080"
    assert out.tracker.uri == "https://ml.example.com"
    assert out.metadata.ca_pem is None and out.tracker.ca_pem is None
    assert own_domain.outputs["load_balancer_dns"].endswith(".elb.amazonaws.com")


def _alb_ingress(result: MockRun) -> list[dict[str, Any]]:
    return list(result.named("alb-sg").inputs["ingress"])


def test_ingress_equals_allowed_cidrs(generated: MockRun, own_domain: MockRun) -> None:
    rules = _alb_ingress(own_domain)
    assert sorted(int(r["fromPort"]) for r in rules) == [443, 8080]
    for rule in rules:
        assert rule["cidrBlocks"] == ["203.0.113.0/24"]
        assert rule["fromPort"] == rule["toPort"]
    for rule in _alb_ingress(generated):
        assert rule["cidrBlocks"] == ["0.0.0.0/0"]  # the default, warned about in plan


def test_services_depend_on_every_secret_version_they_read(generated: MockRun) -> None:
    by_urn = {r.urn: r for r in generated.resources}
    secrets = {s.inputs["name"]: s for s in generated.of_type("aws:secretsmanager/secret:Secret")}
    versions = {
        v.name: v for v in generated.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    for service in generated.of_type("aws:ecs/service:Service"):
        name = service.inputs["name"].rsplit("-", 1)[-1]  # metadata | mlflow
        task = generated.named(f"{name}-task")
        container = json.loads(task.inputs["containerDefinitions"])[0]
        deps = {by_urn[u].name for u in service.dependencies if u in by_urn}
        assert f"{name}-listener" in deps
        read = [s["valueFrom"] for s in container["secrets"]]
        assert read, name
        for arn in read:
            secret = next(
                s
                for n, s in secrets.items()
                if arn.startswith(f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:{n}-")
            )
            assert f"{secret.name}-value" in versions
            assert f"{secret.name}-value" in deps, (name, secret.name, deps)


def test_task_definitions_declare_their_platform(generated: MockRun) -> None:
    tasks = generated.of_type("aws:ecs/taskDefinition:TaskDefinition")
    assert len(tasks) == 2
    for task in tasks:
        assert task.inputs["runtimePlatform"] == {
            "operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64",
        }  # fmt: skip


def test_mlflow_runs_the_basic_auth_app_with_generated_credentials(generated: MockRun) -> None:
    container = json.loads(generated.named("mlflow-task").inputs["containerDefinitions"])[0]
    start = container["command"][0]
    assert "--app-name basic-auth" in start
    assert "tracker-password-for-tests" not in json.dumps(container)
    secret_env = {s["name"] for s in container["secrets"]}
    assert {"MLSTACK_TRACKER_PASSWORD", "MLFLOW_AUTH_DATABASE_URI",
            "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= secret_env  # fmt: skip
    out = outputs(generated)
    assert out.tracker.username == "mlstack"
    assert out.tracker.password is None  # resolved from the secrets backend, never exported
    assert out.tracker.password_secret == "mlstack-tracker-password"
    names = {s.inputs["name"] for s in generated.of_type("aws:secretsmanager/secret:Secret")}
    assert f"mlstack/{STACK_ID}/mlstack-tracker-password" in names


def test_network_settings_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="go together"):
        make_spec({"domain": "ml.example.com"})
    with pytest.raises(ValidationError, match="CIDR"):
        make_spec({"allowed_cidrs": ["10.0.0.1/8"]})
    with pytest.raises(ValidationError, match="ACM certificate ARN"):
        make_spec({"domain": "ml.example.com", "certificate_arn": "nope"})
