"""``mlstack prices refresh``: update the catalog's figures from the AWS Price List API.

Needs AWS credentials (the Price List query API is authenticated); writes
``$MLSTACK_HOME/prices.json``, which :func:`provisioner.cost.catalog.load` lays over the packaged
file. Entries the API does not answer keep the packaged figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provisioner.cost.catalog import cache_path, packaged
from provisioner.state import now

PRICING_REGION = "us-east-1"  # the Price List API's own endpoint


@dataclass(frozen=True)
class Rule:
    """How to find one catalog price in the Price List API."""

    services: tuple[str, ...]  # service codes, tried in order (ALB moved between them)
    usagetype: str  # suffix of the product's usagetype ("USE1-" / "EU-" prefixes vary)
    attributes: dict[str, str] = field(default_factory=dict)
    factor: float = 1.0  # API unit -> catalog unit (per request -> per 10k requests)


RULES: dict[str, Rule] = {
    "aws.public_ipv4": Rule(("AmazonVPC",), "PublicIPv4:InUseAddress"),
    "aws.alb.hour": Rule(
        ("AWSELB", "AmazonEC2"), "LoadBalancerUsage", {"operation": "LoadBalancing:Application"}
    ),
    "aws.alb.lcu_hour": Rule(
        ("AWSELB", "AmazonEC2"), "LCUUsage", {"operation": "LoadBalancing:Application"}
    ),
    "aws.fargate.vcpu_hour": Rule(("AmazonECS",), "Fargate-vCPU-Hours:perCPU"),
    "aws.fargate.gb_hour": Rule(("AmazonECS",), "Fargate-GB-Hours"),
    "aws.rds.storage.gp3": Rule(("AmazonRDS",), "RDS:GP3-Storage"),
    "aws.secretsmanager.secret_month": Rule(("AWSSecretsManager",), "AWSSecretsManager-Secrets"),
    "aws.secretsmanager.api_10k": Rule(
        ("AWSSecretsManager",), "AWSSecretsManager-APIRequest", factor=10_000
    ),
    "aws.logs.ingest_gb": Rule(("AmazonCloudWatch",), "DataProcessing-Bytes"),
    "aws.logs.storage_gb_month": Rule(("AmazonCloudWatch",), "TimedStorage-ByteHrs"),
    "aws.s3.standard_gb_month": Rule(("AmazonS3",), "TimedStorage-ByteHrs"),
    "aws.s3.put_1k": Rule(("AmazonS3",), "Requests-Tier1", factor=1_000),
    "aws.ecr.storage_gb_month": Rule(("AmazonECR",), "TimedStorage-ByteHrs"),
}


def rule_for(key: str) -> Rule | None:
    """The rule of a catalog key; RDS and SageMaker instance keys are built from their name."""
    if key in RULES:
        return RULES[key]
    if key.startswith("aws.rds.postgres."):
        attrs = {
            "instanceType": key.removeprefix("aws.rds.postgres."),
            "databaseEngine": "PostgreSQL",
            "deploymentOption": "Single-AZ",
        }
        return Rule(("AmazonRDS",), "InstanceUsage:" + attrs["instanceType"], attrs)
    if key.startswith("aws.sagemaker."):
        return Rule(("AmazonSageMaker",), "Host:" + key.removeprefix("aws.sagemaker."))
    return None


def _usage_matches(actual: str, suffix: str) -> bool:
    return actual == suffix or actual.endswith("-" + suffix)


def price_from(items: list[str], rule: Rule, region: str) -> float | None:
    """The on-demand USD price of the first matching product in a ``get_products`` page."""
    for raw in items:
        item: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
        attrs = item.get("product", {}).get("attributes", {})
        if attrs.get("regionCode", region) != region:
            continue
        if not _usage_matches(str(attrs.get("usagetype", "")), rule.usagetype):
            continue
        if any(attrs.get(k) != v for k, v in rule.attributes.items()):
            continue
        dims = [
            dim
            for term in item.get("terms", {}).get("OnDemand", {}).values()
            for dim in term.get("priceDimensions", {}).values()
        ]
        dims.sort(key=lambda d: float(d.get("beginRange", "0") or 0))
        for dim in dims:  # the first paid tier (a $0 free allowance does not count)
            usd = float(dim.get("pricePerUnit", {}).get("USD", "0") or 0)
            if usd > 0:
                return usd * rule.factor
    return None


def fetch(client: Any, key: str, region: str) -> float | None:
    """Ask the Price List API for one catalog price in one region."""
    rule = rule_for(key)
    if rule is None:
        return None
    for service in rule.services:
        filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
        filters += [
            {"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in rule.attributes.items()
        ]
        token = ""
        while True:
            args: dict[str, Any] = {
                "ServiceCode": service,
                "Filters": filters,
                "FormatVersion": "aws_v1",
                "MaxResults": 100,
            }
            if token:
                args["NextToken"] = token
            page = client.get_products(**args)
            found = price_from(page.get("PriceList", []), rule, region)
            if found is not None:
                return found
            token = page.get("NextToken") or ""
            if not token:
                break
    return None


def refresh(
    client: Any = None, regions: tuple[str, ...] = ("us-east-1", "eu-west-1")
) -> dict[str, Any]:
    """Fetch every catalog price the API knows for ``regions``; write and return the cache."""
    if client is None:
        import boto3

        client = boto3.client("pricing", region_name=PRICING_REGION)
    date = f"{now():%Y-%m-%d}"
    out: dict[str, Any] = {"fetched": now().isoformat(), "prices": {}}
    for key in packaged()["prices"]:
        regions_found = {r: p for r in regions if (p := fetch(client, key, r)) is not None}
        if regions_found:
            out["prices"][key] = {
                "regions": regions_found,
                "source": "AWS Price List API (pricing:GetProducts)",
                "date": date,
            }
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, sort_keys=True), encoding="utf-8")
    return out
