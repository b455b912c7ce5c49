"""Pre-flight of the metadata image ``up`` builds: a Docker Engine must answer first.

The build itself runs inside the AWS program (:mod:`stacks.aws.image`) through
``python -m runner.metadata.image``; this check runs the same module's ``check`` before any
cloud resource is touched, so a user without Docker gets one line and the exact fallback.
"""

from __future__ import annotations

import os
import subprocess
import sys

from stacks.common.errors import EngineError

CHECK = [sys.executable, "-m", "runner.metadata.image", "check"]


def require_docker() -> None:
    """Raise EngineError (one line + the fallback) when no Docker Engine answers."""
    proc = subprocess.run(CHECK, capture_output=True, text=True, env=dict(os.environ), check=False)
    if proc.returncode == 0:
        return
    reason = (proc.stderr.strip().splitlines() or ["no Docker Engine"])[-1]
    raise EngineError(
        f"up builds and pushes the metadata server's image and needs a Docker Engine: {reason}",
        "start Docker and run up again, or build it elsewhere with `python -m"
        " runner.metadata.image build --platform linux/amd64 --ref <ECR repository>:metadata-"
        "<version>` and set components.metadata.image to that reference",
    )
