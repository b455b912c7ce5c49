"""What every Kubernetes component shares: the stack identity, namespace, labels and helpers.

Every object carries the labels ``mlstack.dev/stack-id`` (and stack, component, managed-by);
the owner and expiry are annotations (label values cannot hold them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from stacks.spec import KubernetesStackSpec as StackSpec

STACK_ID_LABEL = "mlstack.dev/stack-id"


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
) -> k8s.apps.v1.Deployment:
    """One-replica Deployment of ``container`` (mounting ``claim`` at /data) plus its Service."""
    selector = {STACK_ID_LABEL: ctx.stack_id, "app.kubernetes.io/name": app}
    container["ports"] = [{"container_port": port}]
    pod: k8s.core.v1.PodSpecArgsDict = {"containers": [container]}
    if claim:
        container["volume_mounts"] = [{"name": "data", "mount_path": "/data"}]
        pod["volumes"] = [{"name": "data", "persistent_volume_claim": {"claim_name": claim}}]
    # e.g. an image the user pushes after `up`: do not block `up` on its rollout
    skip = None if wait else {"pulumi.com/skipAwait": "true"}
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
    k8s.core.v1.Service(
        f"{app}-service",
        metadata=ctx.meta(app, component, app),
        spec={"selector": selector, "ports": [{"name": "http", "port": port, "target_port": port}]},
        opts=child,
    )
    return result


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
