"""Local container registry: the CNCF distribution registry (Debian's ``docker-registry``).

Bound to 127.0.0.1 (Docker treats loopback registries as trusted without TLS), storage under
the stack's folder, so ``down`` removes every pushed image with it.
"""

from __future__ import annotations

import shutil

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import LocalRegistryOutputs, NoRegistryOutputs, RegistryOutputs
from stacks.spec.local import LocalRegistry

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def _enabled(ctx: LocalContext) -> bool:
    flavor = ctx.spec.components.container_registry.flavor
    return flavor is not None and flavor.value == "local"


def binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


def service(ctx: LocalContext) -> ServiceDef | None:
    if not _enabled(ctx):
        return None
    spec = ctx.spec.components.container_registry
    assert isinstance(spec, LocalRegistry)
    data = ctx.path("registry")

    def argv(port: int) -> list[str]:
        found = binary()
        if found is None:
            raise FileNotFoundError(
                "the local container registry needs Debian's docker-registry package"
                " (apt-get install docker-registry)"
            )
        config = data / "config.yml"
        config.write_text(CONFIG.format(root=data / "storage", port=port))
        return [found, "serve", str(config)]

    return ServiceDef(
        name="registry",
        component="container_registry",
        config={"flavor": "local", "storage": str(data / "storage")},
        argv=argv,
        health_path="/v2/",
        fixed_port=spec.port,
        start_timeout=30.0,
        prepare=lambda: (data / "storage").mkdir(parents=True, exist_ok=True),
    )


def outputs(ctx: LocalContext, port: int | None) -> RegistryOutputs:
    if not _enabled(ctx) or port is None:
        return NoRegistryOutputs()
    return LocalRegistryOutputs(url=f"127.0.0.1:{port}")
