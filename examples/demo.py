"""The main job on the local stack, as a user would type it: validate, plan, up, use, down.

Run by `make demo`. The stack is always torn down at the end, even on failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLSTACK = str(Path(sys.executable).parent / "mlstack")
SPEC = str(HERE / "stacks" / "local.yaml")


def mlstack(*args: str, input: str | None = None) -> None:
    print(f"\n$ mlstack {' '.join(args)}", flush=True)
    subprocess.run([MLSTACK, *args], check=True, input=input, text=True)


def main() -> int:
    mlstack("validate", SPEC)
    mlstack("plan", SPEC)
    try:
        mlstack("up", SPEC)
        mlstack("status", "local")
        mlstack("secret", "set", "local", "demo-password", input="not-a-real-password\n")
        mlstack("secret", "list", "local")
        mlstack("up", SPEC)  # idempotent: nothing changes
    finally:
        mlstack("down", "local", "--yes")
    mlstack("status", "local")
    return 0


if __name__ == "__main__":
    sys.exit(main())
