"""What every Kubernetes component shares: the stack identity, namespace, labels and helpers.

Every object carries the labels ``mlstack.dev/stack-id`` (and stack, component, managed-by);
the owner and expiry are annotations (label values cannot hold them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.spec import KubernetesStackSpec as StackSpec

STACK_ID_LABEL = "mlstack.dev/stack-id"
SKIP_AWAIT = "pulumi.com/skipAwait"


@dataclass(frozen=True)
class K8sContext:
    """The stack identity (from the Pulumi stack and ``mlstack:*`` config) and its provider."""

    spec: StackSpec
    stack_id: str
    owner: str
    expires_at: str
    provider: k8s.Provider
    # The created Namespace's name: objects that use it wait for the namespace to exist.
    ns: pulumi.Input[str] | None = None

    @classmethod
    def from_pulumi(cls, spec: StackSpec) -> K8sContext:
        target = spec.kubernetes
        assert target is not None  # the spec requires kubernetes settings for this provider
        config = pulumi.Config("mlstack")
        provider = k8s.Provider(
            "kubernetes",
            kubeconfig=str(Path(target.kubeconfig).expanduser()),
            context=target.context,
        )
        return cls(
            spec=spec,
            stack_id=pulumi.get_stack(),
            owner=config.get("owner") or spec.owner or "unknown",
            expires_at=config.get("expiresAt") or "never",
            provider=provider,
        )

    @property
    def namespace(self) -> str:
        return f"mlstack-{self.stack_id}"[:63].rstrip("-")

    def host(self, service: str) -> str:
        """The in-cluster DNS name of one of the stack's Services."""
        return f"{service}.{self.namespace}.svc.cluster.local"

    def labels(self, component: str, app: str | None = None) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/managed-by": "mlstack",
            "mlstack.dev/stack": self.spec.name,
            STACK_ID_LABEL: self.stack_id,
            "mlstack.dev/component": component,
        }
        if app:
            labels["app.kubernetes.io/name"] = app
        return labels

    def annotations(self) -> dict[str, str]:
        owner = re.sub(r"[^A-Za-z0-9_.@-]", "-", self.owner)
        notes = {f"mlstack.dev/tag.{k}": v for k, v in self.spec.tags.items() if _key_ok(k)}
        return {**notes, "mlstack.dev/owner": owner, "mlstack.dev/expires-at": self.expires_at}

    def meta(
        self,
        name: str,
        component: str,
        app: str | None = None,
        namespaced: bool = True,
        annotations: dict[str, str] | None = None,
    ) -> k8s.meta.v1.ObjectMetaArgs:
        namespace = (self.ns if self.ns is not None else self.namespace) if namespaced else None
        return k8s.meta.v1.ObjectMetaArgs(
            name=name,
            namespace=namespace,
            labels=self.labels(component, app),
            annotations={**self.annotations(), **(annotations or {})},
        )

    def opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(providers=[self.provider])


def _key_ok(key: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,40}[A-Za-z0-9])?$", key))


def volume_claim(
    ctx: K8sContext, name: str, component: str, size_gib: int, parent: pulumi.Resource
) -> k8s.core.v1.PersistentVolumeClaim:
    target = ctx.spec.kubernetes
    spec: k8s.core.v1.PersistentVolumeClaimSpecArgsDict = {
        "access_modes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{size_gib}Gi"}},
    }
    if target is not None and target.storage_class:
        spec["storage_class_name"] = target.storage_class
    return k8s.core.v1.PersistentVolumeClaim(
        name,
        metadata=ctx.meta(name, component),
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def deployment(
    ctx: K8sContext,
    app: str,
    component: str,
    container: k8s.core.v1.ContainerArgsDict,
    port: int,
    parent: pulumi.Resource,
    *,
    claim: str | None = None,
    wait: bool = True,
    exposed: bool = False,
) -> tuple[k8s.apps.v1.Deployment, k8s.core.v1.Service]:
    """One-replica Deployment of ``container`` (mounting ``claim`` at /data) plus its Service."""
    selector = {STACK_ID_LABEL: ctx.stack_id, "app.kubernetes.io/name": app}
    container["ports"] = [{"container_port": port}]
    pod: k8s.core.v1.PodSpecArgsDict = {"containers": [container]}
    if claim:
        container["volume_mounts"] = [{"name": "data", "mount_path": "/data"}]
        pod["volumes"] = [{"name": "data", "persistent_volume_claim": {"claim_name": claim}}]
    # An image the cluster may not pull (the in-cluster registry's): neither the Deployment's
    # rollout nor the Service's endpoints are awaited, so `up` cannot hang on it.
    skip = None if wait else {SKIP_AWAIT: "true"}
    child = pulumi.ResourceOptions(parent=parent)
    result = k8s.apps.v1.Deployment(
        f"{app}-deployment",
        metadata=ctx.meta(app, component, app, annotations=skip),
        spec={
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # a ReadWriteOnce volume has one writer
            "selector": {"match_labels": selector},
            "template": {"metadata": {"labels": ctx.labels(component, app)}, "spec": pod},
        },
        opts=child,
    )
    return result, service(ctx, app, component, selector, port, parent, wait=wait, exposed=exposed)


def service(
    ctx: K8sContext,
    app: str,
    component: str,
    selector: dict[str, str],
    port: int,
    parent: pulumi.Resource,
    *,
    wait: bool = True,
    exposed: bool = False,
) -> k8s.core.v1.Service:
    """The Service of ``app``; type LoadBalancer when exposed and the spec asks for it."""
    kind = ctx.spec.kubernetes.service_type if exposed and ctx.spec.kubernetes else "ClusterIP"
    spec: k8s.core.v1.ServiceSpecArgsDict = {
        "type": kind,
        "selector": selector,
        "ports": [{"name": "http", "port": port, "target_port": port}],
    }
    return k8s.core.v1.Service(
        f"{app}-service",
        metadata=ctx.meta(app, component, app, annotations=None if wait else {SKIP_AWAIT: "true"}),
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def service_url(
    ctx: K8sContext, svc: k8s.core.v1.Service, name: str, port: int
) -> pulumi.Output[str]:
    """``http://HOST:PORT``: the load balancer's address when there is one, else in-cluster."""

    def pick(status: Any) -> str:
        ingress = _field(_field(status, "load_balancer", "loadBalancer"), "ingress") or []
        first = ingress[0] if ingress else None
        host = _field(first, "hostname") or _field(first, "ip") or ctx.host(name)
        return f"http://{host}:{port}"

    if ctx.spec.kubernetes is None or ctx.spec.kubernetes.service_type == "ClusterIP":
        return pulumi.Output.from_input(f"http://{ctx.host(name)}:{port}")
    return svc.status.apply(pick)


def _field(value: Any, *names: str) -> Any:
    """A field of a Pulumi output type or plain dict, by any of ``names``; None if absent."""
    for name in names:
        found = getattr(value, name, None) if not isinstance(value, dict) else None
        if found is None and isinstance(value, dict):
            found = value.get(name)
        if found is not None:
            return found
    return None


def env_from_secret(name: str, secret: str, key: str) -> k8s.core.v1.EnvVarArgsDict:
    return {"name": name, "value_from": {"secret_key_ref": {"name": secret, "key": key}}}


def role(
    ctx: K8sContext,
    name: str,
    component: str,
    rules: list[k8s.rbac.v1.PolicyRuleArgsDict],
    subjects: list[str],
    parent: pulumi.Resource,
) -> k8s.rbac.v1.Role:
    """A namespaced Role and its RoleBinding to the stack's service accounts ``subjects``."""
    child = pulumi.ResourceOptions(parent=parent)
    result = k8s.rbac.v1.Role(name, metadata=ctx.meta(name, component), rules=rules, opts=child)
    namespace = ctx.ns if ctx.ns is not None else ctx.namespace
    k8s.rbac.v1.RoleBinding(
        f"{name}-binding",
        metadata=ctx.meta(name, component),
        role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        subjects=[{"kind": "ServiceAccount", "name": s, "namespace": namespace} for s in subjects],
        opts=child,
    )
    return result
