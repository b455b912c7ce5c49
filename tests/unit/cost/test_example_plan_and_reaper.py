"""The example AWS stack's plan figures, and the reaper's decisions on a priced stack's record
with a test clock (``MLSTACK_NOW``): budget, TTL, no TTL, a stack mid-up, a second reaper."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("pulumi_aws")

from provisioner.cost.catalog import load
from provisioner.cost.estimate import estimate_plan
from provisioner.cost.reaper import decide, reap
from provisioner.engines.pulumi_plan import mock_plan
from provisioner.state import StackRecord, StateRegistry
from stacks.spec import load_spec
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[3]
AWS = ROOT / "examples" / "stacks" / "aws.yaml"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
BILLED = {
    "load-balancer",
    "metadata-service",
    "mlflow-service",
    "db",
    "mlstack-metadata-token",
    "metadata-database-url",
    "tracker-database-url",
    "tracker-auth-database-url",
    "mlstack-tracker-password",
    "tracker-flask-secret-key",
}


def test_example_aws_plan_figures_follow_the_catalogs_arithmetic() -> None:
    spec = load_spec(AWS)
    plan = mock_plan(spec, "stacks.aws.program", "aws-demo-abc123", "new stack")
    est = estimate_plan(plan, spec)
    cat, region, hours = load(), "eu-west-1", 730

    def p(key: str) -> float:
        price = cat.price(key, region)
        assert price is not None, key
        return price

    tasks = {
        c.details["family"]: c.details
        for c in plan.changes
        if c.type == "aws:ecs/taskDefinition:TaskDefinition"
    }
    assert len(tasks) == 2
    services = sum(
        int(t["cpu_units"]) / 1024 * p("aws.fargate.vcpu_hour")
        + int(t["memory_mib"]) / 1024 * p("aws.fargate.gb_hour")
        + p("aws.public_ipv4")  # one public IPv4 per task (assign_public_ip)
        for t in tasks.values()
    )
    alb = p("aws.alb.hour") + p("aws.alb.lcu_hour") + 2 * p("aws.public_ipv4")
    rds = p("aws.rds.postgres.db.t4g.micro") + 20 * p("aws.rds.storage.gp3") / hours
    n_secrets = sum(c.type == "aws:secretsmanager/secret:Secret" for c in plan.changes)
    assert n_secrets == 6  # token, two database URLs, MLflow's password, auth DB, Flask key
    secrets = n_secrets * p("aws.secretsmanager.secret_month") / hours
    expected = alb + services + rds + secrets
    assert est.per_hour == pytest.approx(expected)
    assert est.per_month == pytest.approx(expected * hours)
    assert 75 < est.per_month < 90  # the "roughly $75-80 a month idle", plus min LCU

    # Every resource is priced (possibly $0) or named unpriced; only the billed ones cost.
    assert all(r.priced for r in est.resources)
    assert {r.resource for r in est.resources if r.per_hour > 0} == BILLED
    assert len(est.resources) == len(plan.changes)
    assert est.unpriced == [
        "deployer/sagemaker_endpoint: no eu-west-1 price for aws.sagemaker.ml.t3.medium"
    ]
    per_use = {(u.resource, u.price_key) for u in est.per_use}
    assert ("compute", "aws.fargate.vcpu_hour") in per_use  # Batch jobs bill per vCPU-hour
    assert ("compute", "aws.public_ipv4") in per_use  # ... and one public IPv4 each
    assert ("job-logs", "aws.logs.ingest_gb") in per_use
    assert ("sagemaker_endpoint", "aws.sagemaker.ml.t3.medium") in per_use
    assert sum(s.per_month for s in est.components.values()) == pytest.approx(est.per_month)


def test_plan_json_carries_the_cost(home: Path) -> None:
    proc = run_cli("plan", str(AWS), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    cost = data["cost"]
    assert cost["region"] == "eu-west-1" and 75 < cost["per_month"] < 90
    lb = next(r for r in cost["resources"] if r["resource"] == "load-balancer")
    assert lb["priced"] and lb["per_hour"] == pytest.approx(0.0252 + 0.008 + 0.01)
    text = run_cli("plan", str(AWS), timeout=300)
    assert "unpriced: deployer/sagemaker_endpoint" in text.stdout
    assert "$/month" in text.stdout and "per-use prices" in text.stdout


def _priced_record(tmp: Path, budget: float | None, expires: datetime | None) -> StackRecord:
    text = AWS.read_text() + (f"budget: {budget}\n" if budget else "")
    (tmp / "priced.yaml").write_text(text.replace("name: aws-demo", "name: priced"))
    spec = load_spec(tmp / "priced.yaml")
    return StackRecord(
        name="priced",
        stack_id="priced-abc123",
        provider="aws",
        status="up",
        spec=spec.redacted(),
        spec_hash=spec.spec_hash(),
        created_at=T0,
        expires_at=expires,
        ttl=spec.ttl,
    )


def test_budget_decision_on_a_priced_stack_with_a_test_clock(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = StateRegistry()
    registry.save(_priced_record(tmp_path, budget=5, expires=None))
    record = registry.get("priced")
    assert record is not None
    keep = decide(record, registry, T0 + timedelta(hours=10))
    assert keep.action == "keep" and keep.spend == pytest.approx(10 * 0.11499, rel=0.01)
    over = decide(record, registry, T0 + timedelta(hours=48))
    assert over.action == "destroy" and "reached its budget $5.00" in over.reason

    monkeypatch.setenv("MLSTACK_NOW", "2030-01-03T00:00:00Z")
    result = reap(registry, dry_run=True)
    assert [(d.stack, d.action) for d in result.decisions] == [("priced", "destroy")]
    assert result.destroyed == [] and registry.get("priced").status == "up"  # type: ignore[union-attr]
    log = (home / "logs" / "reaper.log").read_text()
    assert "priced: would destroy: estimated spend $5.52 reached its budget $5.00" in log


def test_ttl_no_ttl_mid_up_and_a_second_reaper(home: Path, tmp_path: Path) -> None:
    registry = StateRegistry()
    rec = _priced_record(tmp_path, budget=None, expires=T0 + timedelta(hours=8))
    registry.save(rec)
    assert decide(rec, registry, T0 + timedelta(hours=7)).action == "keep"
    assert decide(rec, registry, T0 + timedelta(hours=8)).action == "destroy"
    free = rec.model_copy(update={"expires_at": None, "name": "free"})
    assert decide(free, registry, T0 + timedelta(days=90)).reason == "no TTL and no budget"

    # Another process holds the stack's lock (an `up` in progress): never touched.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from provisioner.state import StateRegistry;"
            " cm = StateRegistry().stack_lock('priced'); cm.__enter__();"
            " print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    reaper = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = decide(rec, registry, T0 + timedelta(hours=9))
        assert (busy.action, busy.reason) == ("skip", "an up or down is in progress")

        # A second reaper while one holds the machine-wide lock does nothing.
        reaper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time; from filelock import FileLock; from provisioner.state import"
                " mlstack_home; l = FileLock(str(mlstack_home()/'locks'/'reaper.lock'));"
                " l.acquire(); print('held', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reaper.stdout is not None and reaper.stdout.readline().strip() == "held"
        started = time.monotonic()
        second = reap(registry)
        assert second.locked and second.decisions == [] and second.destroyed == []
        assert time.monotonic() - started < 5
    finally:
        for proc in (holder, reaper):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert registry.get("priced").status == "up"  # type: ignore[union-attr]
