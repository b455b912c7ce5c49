"""Packaging: build (or reuse) the image a pipeline's steps run in, and push it to the stack.

The image holds the pipeline's requirements and mlstack's step runtime, never its code (that
travels separately, see :mod:`runner.code`) and never a secret. Its tag is a content hash of
the base image id, the requirements and the runtime version, so before building anything the
registry is asked for that tag: same inputs, no build. Wheels are resolved once on the host
(where the CA bundle of a TLS-inspecting proxy is trusted) into a cache folder per set of
requirements, and installed offline in the image, so a rebuild hits Docker's layer cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.base_image import (
    BaseImageError,
    ImageError,
    NullProgress,
    Progress,
    RegistryUnavailable,
    docker_client,
    docker_errors,
    image_id,
    inspect_base,
    push_image,
    registry_has_tag,
    registry_url,
)
from runner.registry_auth import registry_auth
from runner.requirements import (
    Requirements,
    RuntimeNeed,
    _check_compatible,
    discover_requirements,
    resolve_wheels,
    runtime_needs,
)
from runner.runtime_resources import record_pushed_image
from stacks.common.docker_engine import DockerUnavailable
from stacks.outputs import StackOutputs

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from runner.sdk import Pipeline, Step

__all__ = [
    "BaseImageError",
    "BuildFailed",
    "DockerUnavailable",
    "ImageBuild",
    "ImageError",
    "ImagePlan",
    "RegistryUnavailable",
    "Requirements",
    "discover_requirements",
    "ensure_image",
    "plan_image",
]

DEFAULT_BASE = "python:3.11-slim"
RUNTIME_PACKAGES = ("pydantic", "fsspec", "cloudpickle", "cryptography", "filelock", "psutil")
RUNTIME_DIR = "/opt/mlstack"
BUILD_FORMAT = "1"  # bump when the Dockerfile template changes: every tag changes with it


class BuildFailed(ImageError):
    """``docker build`` failed: names the failing instruction and keeps the log's end."""

    def __init__(self, step: str | None, tail: list[str]) -> None:
        super().__init__(
            f"image build failed at {step or 'the start of the build'}",
            "fix the pipeline's requirements or the base image; the build log ends with the"
            " lines below",
        )
        self.step = step
        self.log_tail = tail

    def __str__(self) -> str:
        return "\n".join([super().__str__(), *self.log_tail])


@dataclass(frozen=True)
class ImageBuild:
    """The outcome of :func:`ensure_image`."""

    image: str  # full reference: registry/repository:tag
    tag: str
    built: bool
    reason: str
    seconds: float
    runtime_modules: tuple[str, ...] = ()  # what the runtime imports for this pipeline


# --- the runtime and the tag ------------------------------------------------------------------


def runtime_pins(
    outputs: StackOutputs | None = None, needs: Iterable[RuntimeNeed] = ()
) -> list[str]:
    """The step runtime's own requirements, pinned to the versions installed on this host:
    always :data:`RUNTIME_PACKAGES`, plus what the stack's artifact store and the pipeline's
    materializers and tracker calls need (``needs``, see :func:`runtime_needs`)."""
    names = list(RUNTIME_PACKAGES)
    if outputs is not None and outputs.artifact_store.kind in ("s3", "minio"):
        names.append("s3fs")
    if outputs is not None:  # what the step image needs to reach the stack's backends
        from runner.deployers import DEPLOYERS
        from runner.secrets import SECRETS_BACKENDS

        names += SECRETS_BACKENDS.get(outputs.secrets.kind).runtime_packages
        names += DEPLOYERS.get(outputs.deployer.kind).runtime_packages
    names += [need.dist for need in needs]
    return [host_pin(name) for name in dict.fromkeys(names)]


def host_pin(name: str) -> str:
    """``name==VERSION`` of the distribution installed on this host; ``name`` if none is.

    mlflow-skinny follows the host's mlflow when only that is installed: the same client."""
    from importlib.metadata import PackageNotFoundError, version

    for source in (name, "mlflow") if name == "mlflow-skinny" else (name,):
        try:
            return f"{name}=={version(source)}"
        except PackageNotFoundError:
            continue
    return name


def runtime_sources() -> Iterator[tuple[str, Path]]:
    """(path in the image below /opt/mlstack, file) of the ``runner`` and ``stacks`` packages."""
    import runner
    import stacks.outputs  # runner may import only stacks.outputs; its folder is the package

    for module in (runner, stacks.outputs):
        top = Path(module.__file__ or "").resolve().parent
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(top.parent)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                yield rel.as_posix(), path


def runtime_version(pins: Iterable[str]) -> str:
    """A hash of the runtime's sources and pins: it changes whenever mlstack's code does."""
    digest = hashlib.sha256()
    for name, path in runtime_sources():
        digest.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    digest.update("\n".join(sorted(pins)).encode())
    return digest.hexdigest()[:16]


def image_tag(base_image_id: str, requirements: Iterable[str], runtime: str) -> str:
    """The content hash naming an image: same base, requirements and runtime -> same tag."""
    data = {
        "format": BUILD_FORMAT,
        "base": base_image_id,
        "requirements": sorted(set(requirements), key=str.lower),
        "runtime": runtime,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def pipeline_slug(pipeline: str) -> str:
    """The pipeline's name lowercased and reduced to what repositories and tags accept."""
    return (re.sub(r"[^a-z0-9]+", "-", pipeline.lower()).strip("-") or "pipeline")[:100]


def repository_name(pipeline: str) -> str:
    """``mlstack/<pipeline>``: a pipeline's repository where the registry holds many."""
    return f"mlstack/{pipeline_slug(pipeline)}"


def image_location(outputs: StackOutputs, pipeline: str, content_tag: str) -> tuple[str, str, str]:
    """``(registry, repository, tag)`` of ``pipeline``'s image on this stack.

    The registry kind decides (:meth:`runner.registry_auth.RegistryAuth.image_location`):
    ``mlstack/<pipeline>:<hash>`` where a registry holds many repositories, the stack's one
    repository with ``<pipeline>-<hash>`` on ECR. Lookup, push and reuse all use this.
    """
    return registry_auth(outputs).image_location(
        registry_url(outputs), pipeline_slug(pipeline), content_tag
    )


def render_dockerfile(base: str, *, stack: str, pipeline: str, runtime: str) -> str:
    """Dependencies first (cached while requirements stay), then the runtime, then labels."""
    labels = " ".join(
        f"{key}={json.dumps(value)}"
        for key, value in (
            ("mlstack.stack", stack),
            ("mlstack.pipeline", pipeline),
            ("mlstack.runtime", runtime),
        )
    )
    venv = f"{RUNTIME_DIR}/venv"
    return f"""\
# Generated by mlstack. Wheels were resolved on the host; nothing is downloaded here.
FROM {base} AS deps
COPY wheels /tmp/wheels
COPY requirements.txt {RUNTIME_DIR}/requirements.txt
RUN python3 -m venv {venv} && {venv}/bin/pip install --no-index --no-cache-dir \
--disable-pip-version-check --find-links /tmp/wheels -r {RUNTIME_DIR}/requirements.txt

FROM {base}
COPY --from=deps {RUNTIME_DIR} {RUNTIME_DIR}
ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
PYTHONPATH={RUNTIME_DIR} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY runtime/ {RUNTIME_DIR}/
LABEL {labels}
CMD ["python", "-m", "runner.entrypoint", "--help"]
"""


# --- the build context, build and push ------------------------------------------------------


def tar_add(tar: tarfile.TarFile, name: str, data: bytes | Path) -> None:
    """Add ``data`` (bytes, or a file streamed: wheels can be hundreds of MB) as ``name``,
    0644 with no time or owner, so the same inputs give the same build context."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0o644, 0
    if isinstance(data, Path):
        info.size = data.stat().st_size
        with open(data, "rb") as f:
            tar.addfile(info, f)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_context(out: Any, dockerfile: str, requirements: list[str], wheels: Path) -> None:
    """A deterministic tar (sorted, no times or owners) of everything the build copies."""
    add = tar_add

    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "Dockerfile", dockerfile.encode())
        add(tar, "requirements.txt", ("\n".join(requirements) + "\n").encode())
        for path in sorted(wheels.glob("*.whl")):
            add(tar, f"wheels/{path.name}", path)
        for name, path in runtime_sources():
            add(tar, f"runtime/{name}", path)


def follow_build(chunks: Iterable[dict[str, Any]], progress: Progress) -> str | None:
    """Consume a decoded build stream; raise BuildFailed on error; return the image id."""
    tail: deque[str] = deque(maxlen=15)
    step: str | None = None
    built: str | None = None
    for chunk in chunks:
        for line in str(chunk.get("stream", "")).splitlines():
            if not line.strip():
                continue
            if not line.startswith((" ---> ", "Removing intermediate container")):
                tail.append(line.rstrip())  # the builder's bookkeeping says nothing useful
            if line.startswith("Step "):
                step = line.strip()
                progress.update("image", "building", step[:100])
            elif line.startswith("Successfully built "):
                built = line.split()[-1]
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            built = str(chunk["aux"]["ID"])
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = str(detail.get("message") or chunk.get("error") or "unknown error")
            tail.extend(ln for ln in message.strip().splitlines() if ln.strip())
            raise BuildFailed(step, list(tail))
    return built


# --- the one entry point --------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePlan:
    """Everything that names an image, computed before any build: ``ref`` is its address."""

    stack: str
    pipeline: str
    registry: str
    repository: str
    tag: str
    base_ref: str
    base_id: str
    requirements: Requirements
    pins: tuple[str, ...]
    runtime: str
    needs: tuple[RuntimeNeed, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(need.module for need in self.needs)

    def details(self) -> dict[str, Any]:
        return {
            "base_image": self.base_ref,
            "base_image_id": self.base_id,
            "runtime": self.runtime,
            "requirements": list(self.requirements.specs),
            "requirements_from": self.requirements.origin,
        }


def plan_image(
    pipeline: Pipeline, outputs: StackOutputs, docker: Any, steps: Iterable[Step] | None = None
) -> ImagePlan:
    """Compute the tag of ``pipeline``'s image on this stack (needs the base image's id).

    ``steps`` (default: the steps defined in the pipeline's module) decide what mlstack's
    runtime needs in the image besides the pipeline's requirements.
    """
    from runner.sdk import source_of, steps_of_module

    base_ref = getattr(outputs.orchestrator, "base_image", None) or DEFAULT_BASE
    reqs = discover_requirements(pipeline.requirements, source_of(pipeline.func).root)
    used = list(steps) if steps is not None else steps_of_module(pipeline.func.__module__)
    needs = tuple(runtime_needs(reqs.specs, used))
    pins = tuple(runtime_pins(outputs, needs))
    runtime = runtime_version(pins)
    base_id = image_id(docker, base_ref)
    host, repository, tag = image_location(
        outputs, pipeline.name, image_tag(base_id, reqs.specs, runtime)
    )
    return ImagePlan(
        stack=outputs.stack,
        pipeline=pipeline.name,
        registry=host,
        repository=repository,
        tag=tag,
        base_ref=base_ref,
        base_id=base_id,
        requirements=reqs,
        pins=pins,
        runtime=runtime,
        needs=needs,
    )


def ensure_image(
    pipeline: Pipeline,
    outputs: StackOutputs,
    *,
    progress: Progress | None = None,
    ca_bundle: str | None = None,
    client: MetadataClient | None = None,
    steps: Iterable[Step] | None = None,
) -> ImageBuild:
    """The image ``pipeline``'s steps run in on this stack: reused from the registry, or built.

    ``ca_bundle`` (else $MLSTACK_CA_BUNDLE) is the CA file pip on the host trusts; it never
    enters the image. Every outcome (built, reused, failed) is recorded on the metadata server
    when the outputs carry its token (or ``client`` is given), for ``mlstack images``.
    """
    progress = progress or NullProgress()
    started = time.monotonic()
    docker = docker_client()
    plan = plan_image(pipeline, outputs, docker, steps)
    name = f"{plan.repository}:{plan.tag}"
    recorder = _Recorder(outputs, plan, client)
    auth = registry_auth(outputs)
    progress.update("image", "starting", f"looking for {name} in {plan.registry}")
    try:
        if registry_has_tag(plan.registry, plan.repository, plan.tag, auth=auth):
            reason = (
                f"tag {plan.tag} already in registry: same base image, requirements and runtime"
            )
            progress.update("image", "unchanged", f"reused {name}")
            result = ImageBuild(
                plan.ref, plan.tag, False, reason, time.monotonic() - started, plan.modules
            )
            return recorder.done(result, "reused")
        why = recorder.why_build()
        built = _build_if_missing(docker, plan, ca_bundle or _ca_bundle_env(), progress)
        progress.update("image", "pushing", f"{name} to {plan.registry}")
        digest = push_image(docker, f"{plan.registry}/{plan.repository}", plan.tag, auth)
        record_pushed_image(recorder.client, outputs, f"{plan.registry}/{plan.repository}",
                            plan.tag, digest)  # fmt: skip
    except ImageError as err:
        progress.update("image", "failed", str(err).splitlines()[0][:120])
        recorder.failed(str(err).splitlines()[0], time.monotonic() - started)
        raise
    reason = why if built else f"{why}; it was built on this host before, so only pushed"
    progress.update("image", "ready", f"{'built' if built else 'pushed'} {name}")
    result = ImageBuild(plan.ref, plan.tag, built, reason, time.monotonic() - started, plan.modules)
    return recorder.done(result, "built" if built else "reused")


def _build_if_missing(
    docker: Any, plan: ImagePlan, ca_bundle: str | None, progress: Progress
) -> bool:
    """Build ``plan.ref`` unless the engine has it already; True when a build ran."""
    from docker.errors import ImageNotFound

    with docker_errors():
        try:
            docker.images.get(plan.ref)
            return False
        except ImageNotFound:
            pass
    base = inspect_base(docker, plan.base_ref)
    _check_compatible(plan.base_ref, base.python, base.machine)
    lines = sorted({*plan.requirements.specs, *plan.pins}, key=str.lower)
    wheels = resolve_wheels(lines, list(plan.requirements.options), ca_bundle, progress)
    dockerfile = render_dockerfile(
        plan.base_ref, stack=plan.stack, pipeline=plan.pipeline, runtime=plan.runtime
    )
    with tempfile.TemporaryFile(prefix="mlstack-context-") as context:
        write_context(context, dockerfile, lines, wheels)
        context.seek(0)
        with docker_errors():
            # Wheels are in the context: the build needs no network at all.
            stream = docker.api.build(
                fileobj=context,
                custom_context=True,
                tag=plan.ref,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                network_mode="none",
            )
            follow_build(stream, progress)
    return True


def _ca_bundle_env() -> str | None:
    return os.environ.get("MLSTACK_CA_BUNDLE") or None


class _Recorder:
    """Records outcomes on the metadata server, and says why an image had to be built."""

    def __init__(
        self, outputs: StackOutputs, plan: ImagePlan, client: MetadataClient | None
    ) -> None:
        self.plan, self.client, self.owned = plan, client, False
        token = outputs.metadata.token
        if client is None and token is not None:
            from runner.metadata.client import MetadataClient

            self.client = MetadataClient(
                outputs.metadata.url, token.get_secret_value(), ca_pem=outputs.metadata.ca_pem
            )
            self.owned = True

    def why_build(self) -> str:
        plan = self.plan
        missing = f"no tag {plan.tag} in the registry"
        if self.client is None:
            return missing
        found = self.client.list_images(plan.stack, plan.pipeline, limit=20)
        earlier = [i for i in found if i.action.value != "failed"]
        if not earlier:
            return f"{missing}: first image of pipeline {plan.pipeline!r} on this stack"
        before, changes = earlier[0].details, []
        if before.get("base_image_id") != plan.base_id:
            changes.append(f"base image {plan.base_ref} changed")
        old, new = set(before.get("requirements", [])), set(plan.requirements.specs)
        if old != new:
            diff = [f"+{r}" for r in sorted(new - old)] + [f"-{r}" for r in sorted(old - new)]
            changes.append(f"requirements changed ({', '.join(diff)})")
        if before.get("runtime") != plan.runtime:
            changes.append("the mlstack runtime changed")
        return f"{missing}: {'; '.join(changes) or 'the previous image is gone'}"

    def done(self, result: ImageBuild, action: str) -> ImageBuild:
        self._record(action, result.reason, result.seconds)
        return result

    def failed(self, reason: str, seconds: float) -> None:
        with suppress(Exception):  # the build's own error is the one to show
            self._record("failed", reason, seconds)

    def _record(self, action: str, reason: str, seconds: float) -> None:
        if self.client is None:
            return
        p = self.plan
        try:
            self.client.record_image(
                p.stack, p.pipeline, p.ref, p.tag, action, reason, seconds, p.details()
            )
        finally:
            if self.owned:
                self.client.close()
