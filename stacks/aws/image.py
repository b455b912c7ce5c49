"""The metadata server's image: built and pushed by ``up`` once the repository exists.

The image reference is an Output of the repository URL: the build runs (in the engine's
process, through ``python -m runner.metadata.image``) after the repository is created and
before the task definition and service that use it. It runs only when the engine asks for it
(config ``mlstack:publishImage``, set by a real ``up``), never under mocks or in a preview;
``components.metadata.image`` skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata as importlib_metadata

import pulumi

from stacks.aws.service import PLATFORM

PUBLISH_CONFIG = "publishImage"
DEFAULT_BASE = "python:3.11-slim"
FALLBACK = (
    "on a machine with Docker run `python -m runner.metadata.image build --platform"
    " linux/amd64 --ref <ECR repository>:metadata-<version>` and set"
    " components.metadata.image to it"
)


class ImageBuildError(Exception):
    """The image could not be built or pushed (one line, with the fallback)."""


def version() -> str:
    try:
        return importlib_metadata.version("mlstack")
    except importlib_metadata.PackageNotFoundError:
        return "dev"


def default_ref(repository_url: str) -> str:
    return f"{repository_url}:metadata-{version()}"


def build_command(ref: str, base: str) -> list[str]:
    return [
        sys.executable, "-m", "runner.metadata.image", "build",
        "--ref", ref, "--base", base, "--platform", PLATFORM,
    ]  # fmt: skip


def publish(ref: str, base: str) -> str:
    """Build and push ``ref``; return ``repo@digest`` (the task definition pins the digest)."""
    proc = subprocess.run(
        build_command(ref, base), capture_output=True, text=True, env=dict(os.environ), check=False
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ImageBuildError(f"building the metadata server's image failed: {reason}; {FALLBACK}")
    return str(json.loads(proc.stdout.strip().splitlines()[-1])["image"])


def metadata_image(repository_url: pulumi.Output[str], base: str | None) -> pulumi.Output[str]:
    """The default image's reference; built and pushed first when the engine asks for it."""
    wanted = pulumi.Config("mlstack").get(PUBLISH_CONFIG) == "true"

    def resolve(url: str) -> str:
        ref = default_ref(url)
        if wanted and not pulumi.runtime.is_dry_run():
            return publish(ref, base or DEFAULT_BASE)
        return ref

    return repository_url.apply(resolve)
