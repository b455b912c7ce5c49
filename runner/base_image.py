"""Docker plumbing of packaging: the engine, the stack's registry, and base images.

Connects to the engine at DOCKER_HOST, asks the registry (HTTP API v2) for a tag, follows a
push stream, checks that a base image exists and has python3, and builds one: where no
public image hub is reachable, ``build_base_image`` makes a base image from Debian's
own packages: ``debootstrap`` a minbase root with python3, python3-venv, ca-certificates and
git, then ``docker import`` it. Docker and registry errors are translated here into one line
saying what to do (:class:`DockerUnavailable`, :class:`RegistryUnavailable`, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from stacks.common.docker_engine import unreachable
from stacks.common.home import mlstack_home
from stacks.common.progress import NullProgress, Progress

if TYPE_CHECKING:
    from docker import DockerClient

    from runner.registry_auth import RegistryAuth
    from stacks.outputs import StackOutputs

DEFAULT_TAG = "mlstack/base:bookworm"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "git")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Left out of the imported root: package caches and what Docker mounts itself.
_TAR_EXCLUDES = (
    "./var/cache/apt/archives/*.deb",
    "./var/lib/apt/lists/*",
    "./dev/*",
    "./proc/*",
    "./sys/*",
    "./tmp/*",
    "./debootstrap",
)
_MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_PROBE = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"


class ImageError(RunnerError):
    """Packaging could not build, find or push an image."""


class BaseImageError(ImageError):
    """The base image is missing, cannot be pulled, or has no python3."""


class RegistryUnavailable(ImageError):
    """The stack's container registry does not answer."""


class RegistryAuthRefused(ImageError):
    """The registry refused the credentials (missing, wrong or expired)."""


def cache_dir(*parts: str) -> Path:
    """A folder under ``$MLSTACK_CACHE_DIR`` (default ``$MLSTACK_HOME/cache``), created when
    missing. Wheels and debootstrap roots kept there are shared by every stack."""
    root = os.environ.get("MLSTACK_CACHE_DIR")
    path = (Path(root).expanduser() if root else mlstack_home() / "cache").joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def docker_errors() -> Iterator[None]:
    """Translate Docker SDK errors: a lost engine into DockerUnavailable, the rest ImageError.

    Handlers inside the block (ImageNotFound, ...) see their errors first.
    """
    import requests
    from docker.errors import APIError, DockerException

    try:
        yield
    except requests.exceptions.ConnectionError as err:
        raise unreachable(err) from err
    except APIError as err:  # the engine answered, with a refusal
        reason = str(err.explanation or err).strip().splitlines() or ["no reason given"]
        raise ImageError(f"Docker Engine refused the request: {reason[0][:300]}") from err
    except DockerException as err:
        text = str(err)
        if "Error while fetching server API version" in text or "Connection" in text:
            raise unreachable(err) from err
        raise ImageError(f"Docker SDK error: {text.splitlines()[0][:300]}") from err


def docker_client() -> DockerClient:
    """A client for image work (long timeout for builds and pushes)."""
    from stacks.common.docker_engine import docker_client as engine_client

    return engine_client(timeout=600)


# --- the registry ---------------------------------------------------------------------------


def registry_url(outputs: StackOutputs) -> str:
    """``host:port`` of the stack's registry, or a clear error when the stack has none."""
    url = getattr(outputs.container_registry, "url", None)
    if not url:
        raise ImageError(
            f"stack {outputs.stack!r} has no container registry to push images to",
            "set components.container_registry: local in its spec and run `mlstack up`",
        )
    return url.split("://", 1)[-1].rstrip("/")


def _registryunreachable(url: str, why: str) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"container registry at {url} is not reachable ({why})",
        "is the stack up? `mlstack up SPEC_FILE` starts its registry",
    )


def registry_has_tag(
    url: str, repository: str, tag: str, timeout: float = 5.0, auth: RegistryAuth | None = None
) -> bool:
    """Whether the registry holds ``repository:tag`` (Registry HTTP API v2, a HEAD request).

    With ``auth``, its header goes along; a refusal (401, 403) renews them and asks once more.
    """
    try:
        return _has_tag(url, repository, tag, timeout, auth)
    except RegistryAuthRefused:
        if auth is None or not auth.renew():
            raise
        return _has_tag(url, repository, tag, timeout, auth)


def _has_tag(
    url: str, repository: str, tag: str, timeout: float, auth: RegistryAuth | None
) -> bool:
    import urllib.error
    import urllib.request

    scheme, _, rest = url.rpartition("://")
    host, _, prefix = rest.partition("/")  # an ECR repository URL: host/repository
    local = host.split(":")[0] in ("127.0.0.1", "localhost", "::1", "[::1]")
    base = f"{scheme or ('http' if local else 'https')}://{host}"
    if prefix.strip("/"):
        repository = f"{prefix.strip('/')}/{repository}"
    headers = {"Accept": _MANIFESTS}
    authorization = auth.header() if auth is not None else None
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(
        f"{base}/v2/{repository}/manifests/{tag}", method="HEAD", headers=headers
    )
    # A proxy from the environment must not intercept the stack's own local registry.
    handlers = [urllib.request.ProxyHandler({})] if local else []
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as answer:
            return bool(200 <= answer.status < 300)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return False
        if err.code in (401, 403) and authorization:  # ECR: 403 for an expired token
            raise RegistryAuthRefused(
                f"container registry at {url} refused mlstack's credentials",
                "check that the stack's identity may push to it (for ECR:"
                " ecr:GetAuthorizationToken and the repository's push actions)",
            ) from None
        if err.code == 401:
            raise ImageError(
                f"container registry at {url} asks for credentials",
                "only registries without authentication are supported for now",
            ) from None
        raise ImageError(f"container registry at {url} answered {err.code}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _registryunreachable(url, str(reason)) from None


_REFUSED = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "authorization token has expired",
    "denied:",
)


def push_image(
    docker: Any, repository: str, tag: str, auth: RegistryAuth | None = None
) -> str | None:
    """``docker push repository:tag`` with ``auth``'s credentials; the pushed digest.

    A refusal renews the credentials (an expired ECR token) and pushes once more.
    """
    registry = repository.split("/", 1)[0]
    ref = f"{repository}:{tag}"
    for attempt in (1, 2):
        config = auth.auth_config() if auth is not None else None
        try:
            with docker_errors():
                stream = docker.api.push(
                    repository, tag=tag, stream=True, decode=True, auth_config=config
                )
                return follow_push(stream, registry, ref)
        except RegistryAuthRefused:
            if attempt == 2 or auth is None or not auth.renew():
                raise
    return None  # not reached: the second attempt returns or raises


def follow_push(chunks: Iterable[dict[str, Any]], registry: str, ref: str) -> str | None:
    """Consume a decoded push stream; raise on any error in it; return the pushed digest."""
    digest = None
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = " ".join(str(detail.get("message") or chunk.get("error")).split())
            if any(s in message for s in ("connection refused", "dial tcp", "no such host")):
                raise _registryunreachable(registry, message[:200])
            if any(s in message.lower() for s in _REFUSED):
                raise RegistryAuthRefused(
                    f"pushing {ref} failed: the registry refused the credentials ({message[:200]})",
                    "check that the stack's identity may push to it",
                )
            raise ImageError(f"pushing {ref} failed: {message[:300]}")
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
    return digest


# --- base images of the pipelines' images ---------------------------------------------------


@dataclass(frozen=True)
class BaseImage:
    """A base image present on the engine: its reference, content id and Python."""

    ref: str
    id: str
    python: str  # "3.11"
    machine: str  # "x86_64"


def _missing_base(ref: str, why: str) -> BaseImageError:
    hint = (
        "build a local one with `mlstack base-image build`, or set"
        " components.orchestrator.base_image in the stack spec to an image this engine has"
    )
    return BaseImageError(f"base image {ref!r} is not on this Docker Engine ({why})", hint)


def image_id(client: DockerClient, ref: str, *, pull: bool = True) -> str:
    """The id of ``ref`` on the engine, pulling it once when it is missing."""
    from docker.errors import APIError, ImageNotFound

    with docker_errors():
        try:
            return str(client.images.get(ref).id)
        except ImageNotFound:
            if not pull:
                raise _missing_base(ref, "and pulling was not asked for") from None
        try:
            client.images.pull(ref)
        except (APIError, ImageNotFound) as err:
            reason = getattr(err, "explanation", None) or str(err)
            first = (str(reason).strip().splitlines() or ["unknown error"])[0]
            raise _missing_base(ref, f"pulling it failed: {first[:160]}") from None
        return str(client.images.get(ref).id)


def inspect_base(client: DockerClient, ref: str) -> BaseImage:
    """Find ``ref`` (pulling when missing) and check it has python3; cached per image id."""
    ident = image_id(client, ref)
    cache_file = cache_dir() / "base-images.json"
    try:
        known: dict[str, Any] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        known = {}
    if ident in known:
        entry = known[ident]
        return BaseImage(ref, ident, entry["python"], entry["machine"])
    python, machine = _probe_python(client, ref, ident)
    known[ident] = {"python": python, "machine": machine, "ref": ref}
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    os.replace(tmp, cache_file)
    return BaseImage(ref, ident, python, machine)


def _probe_python(client: DockerClient, ref: str, ident: str) -> tuple[str, str]:
    """Run ``python3`` in the image once: its version and machine, or BaseImageError."""
    from docker.errors import APIError

    no_python = BaseImageError(
        f"base image {ref!r} has no python3 on its PATH",
        "use an image with python3 (python:3.11-slim, or `mlstack base-image build`)",
    )
    with docker_errors():
        container = client.containers.create(
            ident, entrypoint=["python3", "-c", _PROBE], network_mode="none"
        )
        try:
            try:
                container.start()
            except APIError as err:  # the runtime could not exec python3
                if "executable file not found" in str(err) or "no such file" in str(err).lower():
                    raise no_python from err
                raise
            code = container.wait(timeout=120).get("StatusCode", 1)
            out = container.logs(stdout=True, stderr=False)
        finally:
            container.remove(force=True)  # also when it never started
    words = out.decode(errors="replace").split()
    if code != 0 or len(words) != 2:
        raise no_python
    return words[0], words[1]


# --- building a base image ------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImageResult:
    """What ``build_base_image`` did."""

    tag: str
    image_id: str
    built: bool
    reason: str
    seconds: float


def build_base_image(
    tag: str = DEFAULT_TAG,
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> BaseImageResult:
    """Make ``tag`` from a debootstrapped Debian ``suite``; a no-op when it exists already.

    One build per tag at a time on this machine: a second ``build`` of the same tag waits
    for the first (a file lock in the cache folder) and then finds the image made.
    """
    from filelock import FileLock, Timeout

    progress = progress or NullProgress()
    lock = FileLock(str(cache_dir("locks") / f"base-{_slug(tag)}.lock"))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        progress.update("base image", "waiting", f"another build of {tag} is running")
        lock.acquire()
    try:
        return _build_base_image(tag, suite, mirror, rebuild, progress)
    finally:
        lock.release()


def _slug(tag: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in tag)


def _build_base_image(
    tag: str, suite: str, mirror: str, rebuild: bool, progress: Progress
) -> BaseImageResult:
    from docker.errors import ImageNotFound

    started = time.monotonic()
    client = docker_client()
    with docker_errors():
        try:
            existing = client.images.get(tag)
        except ImageNotFound:
            existing = None
    if existing is not None and not rebuild:
        return BaseImageResult(
            tag, str(existing.id), False, f"{tag} already exists; --rebuild builds it again", 0.0
        )
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is not installed", "apt-get install debootstrap (Debian/Ubuntu)"
        )
    if os.geteuid() != 0:
        raise ImageError(
            "building a base image needs root: debootstrap creates device nodes and chroots",
            "run `sudo mlstack base-image build`",
        )
    root = Path(tempfile.mkdtemp(prefix="base-rootfs-", dir=cache_dir()))
    log_path = cache_dir() / "base-image.log"
    try:
        progress.update("base image", "starting", f"debootstrap {suite} from {mirror}")
        _debootstrap(root, suite, mirror, log_path, progress)
        progress.update("base image", "importing", f"docker import as {tag}")
        ident = _import(client, root, tag, suite)
    finally:
        _remove_root(root)
    python, _machine = _probe_python(client, tag, ident)
    seconds = time.monotonic() - started
    progress.update("base image", "ready", f"{tag} with Python {python}")
    return BaseImageResult(tag, ident, True, f"debootstrapped Debian {suite} ({mirror})", seconds)


def _debootstrap(root: Path, suite: str, mirror: str, log_path: Path, progress: Progress) -> None:
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        suite,
        str(root),
        mirror,
    ]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    phase = ""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            words = line.split()
            # One update per phase ("I: Retrieving", "I: Validating", ...), not per package.
            if words[:1] == ["I:"] and " ".join(words[:2]) != phase:
                phase = " ".join(words[:2])
                progress.update("base image", "building", line.strip()[:100])
        code = proc.wait()
    if code != 0:
        lines = log_path.read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if ln.startswith("E:")] or lines[-1:] or ["no output"]
        raise ImageError(
            f"debootstrap {suite} failed (exit {code}): {errors[-1][:200]}",
            f"full log: {log_path}; check the mirror with --mirror URL",
        )


def _import(client: DockerClient, root: Path, tag: str, suite: str) -> str:
    excludes = [f"--exclude={pattern}" for pattern in _TAR_EXCLUDES]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), *excludes, "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "")
    changes = [
        f"ENV PATH={_PATH}",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        f"LABEL mlstack.base=debian-{suite}",
    ]
    try:
        with docker_errors():
            answer = client.api.import_image(
                src=tar.stdout,
                repository=repository,
                tag=version or "latest",
                changes=changes,
                stream_src=True,
            )
    finally:
        _, err = tar.communicate()
    if tar.returncode != 0:
        raise ImageError(f"archiving the debootstrapped root failed: {err.decode().strip()}")
    text = answer if isinstance(answer, str) else json.dumps(answer)
    for line in text.splitlines():
        with suppress(ValueError):
            status = json.loads(line).get("status", "")
            if status.startswith("sha256:"):
                return str(status)
    return str(client.images.get(tag).id)


def _remove_root(root: Path) -> None:
    """Remove a debootstrap root, unmounting first whatever a failed run left mounted."""
    with suppress(OSError):
        mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        print(f"mlstack: could not remove {root}", file=sys.stderr)
