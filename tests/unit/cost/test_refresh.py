"""`prices refresh` parsing, on responses in the real Price List API's shape.

moto has no Pricing API and these machines have no AWS credentials, so ``get_products`` is
answered by botocore's Stubber on a real boto3 ``pricing`` client (the request is validated
against the service model). The items follow the API's recorded ``aws_v1`` format: a JSON
string per product with ``product.attributes`` and ``terms.OnDemand.*.priceDimensions``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.stub import Stubber  # noqa: E402

from provisioner.cost import refresh as refresh_mod  # noqa: E402
from provisioner.cost.catalog import load  # noqa: E402


def item(usagetype: str, usd: str, region: str, **attrs: str) -> str:
    """One PriceList entry as the API returns it (a JSON string)."""
    sku = "SKU" + usagetype.replace(":", "").replace("-", "")[:10].upper()
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute",
                "attributes": {"regionCode": region, "usagetype": usagetype, **attrs},
                "sku": sku,
            },
            "serviceCode": "AmazonECS",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "hours",
                                "endRange": "Inf",
                                "description": f"{usagetype} per hour",
                                "appliesTo": [],
                                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def expect(
    stub: Stubber, service: str, region: str, items: list[str], token: str = "", **attrs: str
) -> None:
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    filters += [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in attrs.items()]
    params: dict[str, Any] = {
        "ServiceCode": service,
        "Filters": filters,
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        params["NextToken"] = token
    stub.add_response(
        "get_products",
        {"PriceList": items, "FormatVersion": "aws_v1", "NextToken": ""},
        expected_params=params,
    )


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


def test_fargate_vcpu_from_a_regional_usagetype(client: Any) -> None:
    stub = Stubber(client)
    expect(
        stub,
        "AmazonECS",
        "eu-west-1",
        [
            item("EU-Fargate-ARM-vCPU-Hours:perCPU", "0.0323800000", "eu-west-1"),
            item("EU-Fargate-vCPU-Hours:perCPU", "0.0404800000", "eu-west-1"),
        ],
    )
    with stub:
        assert refresh_mod.fetch(client, "aws.fargate.vcpu_hour", "eu-west-1") == 0.04048


def test_alb_falls_back_from_awselb_to_amazonec2_and_per_request_prices_scale(client: Any) -> None:
    stub = Stubber(client)
    alb = {"operation": "LoadBalancing:Application"}
    expect(stub, "AWSELB", "us-east-1", [], **alb)
    expect(
        stub,
        "AmazonEC2",
        "us-east-1",
        [item("LoadBalancerUsage", "0.0225000000", "us-east-1", **alb)],
        **alb,
    )
    expect(
        stub,
        "AWSSecretsManager",
        "us-east-1",
        [item("USE1-AWSSecretsManager-APIRequest", "0.0000050000", "us-east-1")],
    )
    with stub:
        assert refresh_mod.fetch(client, "aws.alb.hour", "us-east-1") == 0.0225
        assert refresh_mod.fetch(
            client, "aws.secretsmanager.api_10k", "us-east-1"
        ) == pytest.approx(0.05)


def test_rds_instance_filters_and_a_free_first_tier_is_skipped(client: Any) -> None:
    stub = Stubber(client)
    attrs = {
        "instanceType": "db.t4g.micro",
        "databaseEngine": "PostgreSQL",
        "deploymentOption": "Single-AZ",
    }
    expect(
        stub,
        "AmazonRDS",
        "us-east-1",
        [item("InstanceUsage:db.t4g.micro", "0.0160000000", "us-east-1", **attrs)],
        **attrs,
    )
    with stub:
        assert refresh_mod.fetch(client, "aws.rds.postgres.db.t4g.micro", "us-east-1") == 0.016
    tiered = json.loads(item("TimedStorage-ByteHrs", "0.0000000000", "us-east-1"))
    dims = next(iter(tiered["terms"]["OnDemand"].values()))["priceDimensions"]
    dims["paid"] = {"beginRange": "5", "pricePerUnit": {"USD": "0.0300000000"}}
    rule = refresh_mod.rule_for("aws.logs.storage_gb_month")
    assert rule is not None
    assert refresh_mod.price_from([json.dumps(tiered)], rule, "us-east-1") == 0.03


def test_refresh_writes_the_cache_that_load_lays_over_the_file(
    client: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refresh_mod, "packaged", lambda: {"prices": {"aws.fargate.gb_hour": {}}})
    stub = Stubber(client)
    expect(
        stub, "AmazonECS", "us-east-1", [item("USE1-Fargate-GB-Hours", "0.0050000000", "us-east-1")]
    )
    expect(stub, "AmazonECS", "eu-west-1", [])
    with stub:
        out = refresh_mod.refresh(client)
    assert out["prices"]["aws.fargate.gb_hour"]["regions"] == {"us-east-1": 0.005}
    catalog = load()
    assert catalog.price("aws.fargate.gb_hour", "us-east-1") == 0.005
    assert catalog.price("aws.fargate.gb_hour", "eu-west-1") == 0.004445
    assert "aws.fargate.gb_hour" in catalog.refreshed
