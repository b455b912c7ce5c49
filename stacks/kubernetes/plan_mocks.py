"""What the Kubernetes program's resources look like under Pulumi's mocks (plan and tests).

Kept beside the program it describes; ``provisioner/engines/pulumi_plan.py`` finds it by the
resource type's package (``kubernetes:...`` → ``stacks.kubernetes.plan_mocks``).
"""

from __future__ import annotations

from typing import Any

# Key inputs worth showing (and pricing) per resource type: label -> dotted input path.
DETAILS: dict[str, dict[str, str]] = {
    "kubernetes:core/v1:Namespace": {"name": "metadata.name"},
    "kubernetes:apps/v1:Deployment": {
        "count": "spec.replicas",
        "image": "spec.template.spec.containers.0.image",
        "cpu": "spec.template.spec.containers.0.resources.requests.cpu",
        "memory": "spec.template.spec.containers.0.resources.requests.memory",
    },
    "kubernetes:core/v1:PersistentVolumeClaim": {
        "size": "spec.resources.requests.storage",
        "storage_class": "spec.storageClassName",
    },
    "kubernetes:core/v1:Service": {"port": "spec.ports.0.port"},
    "kubernetes:batch/v1:Job": {"image": "spec.template.spec.containers.0.image"},
}


def fake_state(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Inputs echoed back, plus the address a cloud load balancer controller would report."""
    state = dict(inputs)
    if typ == "kubernetes:core/v1:Service" and (inputs.get("spec") or {}).get("type") == (
        "LoadBalancer"
    ):
        state["status"] = {"loadBalancer": {"ingress": [{"hostname": f"{name}.plan.example"}]}}
    return state


def fake_call(token: str, region: str) -> dict[str, Any]:
    """The program makes no data-source invokes."""
    return {}
