"""The stack's own small VPC: two public subnets, no NAT gateway (nothing bills while idle).

Tasks get public IPs for egress (image pulls, package installs) and accept inbound traffic only
from the stack's load balancer, which accepts HTTPS only, from ``network.allowed_cidrs``; the
database accepts connections only from the service tasks.
The network belongs to the orchestrator component (Batch jobs run in it); the tracker and the
metadata server reuse it.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext
from stacks.spec import AwsStackSpec as StackSpec

CIDR = "10.42.0.0/16"
SUBNETS = ("10.42.0.0/20", "10.42.16.0/20")
SERVICE_PORTS = (5000, 8080)  # MLflow, metadata server
LISTENER_PORTS = (443, 8080)  # HTTPS only: MLflow, metadata server
EVERYWHERE = "0.0.0.0/0"


def plan_warnings(spec: StackSpec) -> list[str]:
    """What ``plan`` should warn about in the network settings."""
    if EVERYWHERE in spec.network.allowed_cidrs:
        return [
            "warning: the load balancer accepts HTTPS from anywhere (0.0.0.0/0); set"
            " network.allowed_cidrs to your networks (for example [203.0.113.0/24])"
        ]
    return []


def _egress_all() -> list[aws.ec2.SecurityGroupEgressArgsDict]:
    return [{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": [EVERYWHERE]}]


def _nth(index: int) -> Callable[[list[str]], str]:
    """Pick zone ``index`` (wrapping around in regions with fewer zones)."""
    return lambda names: names[index % len(names)]


class Network(pulumi.ComponentResource):
    """VPC, internet gateway, two public subnets in two zones, and four security groups."""

    TYPE = "mlstack:aws:Network"

    def __init__(self, ctx: AwsContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, "network", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        ).names
        self.vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": ctx.name()},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway("internet-gateway", vpc_id=self.vpc.id, opts=child)
        routes = aws.ec2.RouteTable(
            "public-routes",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": EVERYWHERE, "gateway_id": gateway.id}],
            opts=child,
        )
        self.subnets: list[aws.ec2.Subnet] = []
        for index, cidr in enumerate(SUBNETS):
            subnet = aws.ec2.Subnet(
                f"public-{index}",
                vpc_id=self.vpc.id,
                cidr_block=cidr,
                availability_zone=zones.apply(_nth(index)),
                map_public_ip_on_launch=True,
                tags={"Name": ctx.name(f"public-{index}")},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"public-{index}-routes", subnet_id=subnet.id, route_table_id=routes.id, opts=child
            )
            self.subnets.append(subnet)
        self.subnet_ids = [s.id for s in self.subnets]

        self.jobs_sg = aws.ec2.SecurityGroup(
            "jobs-sg",
            name=ctx.name("jobs"),
            description="mlstack Batch jobs: outbound only",
            vpc_id=self.vpc.id,
            egress=_egress_all(),
            opts=child,
        )
        self.alb_sg = aws.ec2.SecurityGroup(
            "alb-sg",
            name=ctx.name("alb"),
            description="mlstack load balancer: HTTPS listeners of the tracker and metadata",
            vpc_id=self.vpc.id,
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": port,
                    "to_port": port,
                    "cidr_blocks": list(ctx.ident.spec.network.allowed_cidrs),
                }
                for port in LISTENER_PORTS
            ],
            egress=[{"protocol": "tcp", "from_port": 0, "to_port": 65535, "cidr_blocks": [CIDR]}],
            opts=child,
        )
        self.services_sg = aws.ec2.SecurityGroup(
            "services-sg",
            name=ctx.name("services"),
            description="mlstack service tasks: inbound from the load balancer only",
            vpc_id=self.vpc.id,
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": port,
                    "to_port": port,
                    "security_groups": [self.alb_sg.id],
                }
                for port in SERVICE_PORTS
            ],
            egress=_egress_all(),
            opts=child,
        )
        self.db_sg = aws.ec2.SecurityGroup(
            "db-sg",
            name=ctx.name("db"),
            description="mlstack database: PostgreSQL from the service tasks only",
            vpc_id=self.vpc.id,
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 5432,
                    "to_port": 5432,
                    "security_groups": [self.services_sg.id],
                }
            ],
            opts=child,
        )
        self.register_outputs({"vpc_id": self.vpc.id})
