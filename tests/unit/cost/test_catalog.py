"""The price catalog against the published prices it cites; unpriced is never $0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.cost.catalog import cache_path, load, packaged
from provisioner.cost.estimate import estimate_plan, money, price_resource
from provisioner.engines.base import PlannedChange, PlanResult

# (key, region, figure quoted by the cited page) — see each entry's "cited" field.
PUBLISHED = [
    ("aws.public_ipv4", "us-east-1", 0.005),
    ("aws.public_ipv4", "eu-west-1", 0.005),
    ("aws.alb.hour", "us-east-1", 0.0225),
    ("aws.alb.hour", "eu-west-1", 0.0252),
    ("aws.alb.lcu_hour", "us-east-1", 0.008),
    ("aws.fargate.vcpu_hour", "us-east-1", 0.04048),
    ("aws.fargate.gb_hour", "us-east-1", 0.004445),
    ("aws.rds.postgres.db.t4g.micro", "us-east-1", 0.016),
    ("aws.rds.postgres.db.t4g.small", "us-east-1", 0.032),
    ("aws.rds.storage.gp3", "us-east-1", 0.115),
    ("aws.secretsmanager.secret_month", "us-east-1", 0.40),
    ("aws.secretsmanager.api_10k", "us-east-1", 0.05),
    ("aws.logs.ingest_gb", "us-east-1", 0.50),
    ("aws.logs.storage_gb_month", "us-east-1", 0.03),
    ("aws.sagemaker.ml.t3.medium", "us-east-1", 0.05),
]


@pytest.fixture(autouse=True)
def _home(home: Path) -> Path:
    return home


@pytest.mark.parametrize(("key", "region", "figure"), PUBLISHED)
def test_catalog_matches_the_cited_published_price(key: str, region: str, figure: float) -> None:
    entry = load().prices[key]
    assert entry.in_region(region) == pytest.approx(figure)
    assert f"${figure:g}" in entry.cited.replace("$0.40", "$0.4").replace("$0.50", "$0.5")


def test_every_entry_has_a_unit_source_and_date_and_both_regions_where_listed() -> None:
    data = packaged()
    for key, entry in data["prices"].items():
        assert entry["unit"] and entry["date"] == "2026-12-01", key
        if key.startswith("aws."):
            assert entry["source"].startswith("https://aws.amazon.com/"), key
            assert "us-east-1" in entry["regions"], key
    both = [k for k, e in data["prices"].items() if {"us-east-1", "eu-west-1"} <= set(e["regions"])]
    assert len(both) >= 14  # SageMaker and the larger RDS classes: us-east-1 only


def test_every_resource_mapping_names_a_catalog_price() -> None:
    catalog = load()
    for type_, comps in {**catalog.resources, **catalog.runtime}.items():
        for comp in comps:
            if "{" in comp.price:  # templated on details: checked through the example plan
                continue
            assert comp.price in catalog.prices, (type_, comp.price)


def test_unknown_type_and_missing_region_are_unpriced_never_zero() -> None:
    catalog = load()
    unknown = PlannedChange(component="x", resource="r", action="create", type="aws:foo/bar:Baz")
    res = price_resource(unknown, {}, catalog, "us-east-1")
    assert res.unpriced and "not in the price catalog" in res.unpriced
    lb = PlannedChange(
        component="m", resource="lb", action="create", type="aws:lb/loadBalancer:LoadBalancer"
    )
    far = price_resource(lb, {"lb_type": "application", "public_ips": 2}, catalog, "ap-south-2")
    assert far.unpriced == "no ap-south-2 price for aws.alb.hour"
    assert all(i.per_hour is None for i in far.items)
    assert money(None) == "unpriced"
    nlb = price_resource(lb, {"lb_type": "network"}, catalog, "us-east-1")
    assert nlb.unpriced


def test_alb_is_hours_plus_min_lcu_plus_two_public_ipv4() -> None:
    lb = PlannedChange(
        component="m", resource="lb", action="create", type="aws:lb/loadBalancer:LoadBalancer"
    )
    res = price_resource(lb, {"lb_type": "application", "public_ips": 2}, load(), "us-east-1")
    assert not res.unpriced
    assert res.per_hour == pytest.approx(0.0225 + 0.008 + 2 * 0.005)
    assert res.per_month == pytest.approx((0.0225 + 0.008 + 0.01) * 730)


def test_local_plan_costs_zero_through_the_same_path() -> None:
    plan = PlanResult(
        stack="demo",
        provider="local",
        changes=[
            PlannedChange(
                component="metadata", resource="metadata", action="create", type="process"
            ),
            PlannedChange(component="artifact_store", resource="a", action="create", type="folder"),
        ],
    )
    est = estimate_plan(plan)
    assert est.region == "local" and est.per_hour == 0 and est.per_month == 0
    assert est.unpriced == [] and all(r.priced for r in est.resources)
    assert all(i.unit_price == 0 for r in est.resources for i in r.items)


def test_refreshed_cache_overrides_entries_and_a_broken_cache_is_ignored(home: Path) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"prices": {"aws.alb.hour": {"regions": {"us-east-1": 0.03}, "date": "2027-01-01"}}}
        )
    )
    catalog = load()
    assert catalog.price("aws.alb.hour", "us-east-1") == 0.03
    assert catalog.price("aws.alb.hour", "eu-west-1") == 0.0252  # the file's figure stays
    assert catalog.refreshed == {"aws.alb.hour": "2027-01-01"}
    path.write_text("{not json")
    assert load().price("aws.alb.hour", "us-east-1") == 0.0225
