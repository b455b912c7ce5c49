"""The main job on the local stack, as a user would type it.

Run by `make demo`: validate and plan the stack, bring it up, train / evaluate / register /
deploy a model with the example pipeline, ask the deployed endpoint for a prediction, show the
run, and tear everything down (always, even on failure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLSTACK = str(Path(sys.executable).parent / "mlstack")
SPEC = str(HERE / "stacks" / "local.yaml")
PIPELINE = f"{HERE / 'pipelines' / 'train.py'}:training"


def mlstack(*args: str, capture: bool = False) -> str:
    print(f"\n$ mlstack {' '.join(args)}", flush=True)
    proc = subprocess.run([MLSTACK, *args], check=True, text=True, capture_output=capture)
    return proc.stdout if capture else ""


def main() -> int:
    # A demo home of its own, so the demo never touches the user's stacks.
    own_home = "MLSTACK_HOME" not in os.environ
    if own_home:
        os.environ["MLSTACK_HOME"] = tempfile.mkdtemp(prefix="mlstack-demo-")
    mlstack("validate", SPEC)
    mlstack("plan", SPEC)
    try:
        mlstack("up", SPEC)
        mlstack("status", "local")
        mlstack("run", PIPELINE, "--stack", "local", "--param", "alpha=0.1")
        run = json.loads(mlstack("runs", "--stack", "local", "--json", capture=True))[0]
        mlstack("run-show", run["run_id"], "--stack", "local")
        deployments = json.loads(mlstack("deployments", "--stack", "local", "--json", capture=True))
        endpoint = deployments[0]["endpoint_url"]
        row = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]
        columns = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
        body = json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}).encode()
        print(f"\n$ curl -X POST {endpoint}/invocations  # one patient's features", flush=True)
        req = urllib.request.Request(
            f"{endpoint}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            prediction = json.loads(resp.read())["predictions"][0]
        print(f"predicted disease progression: {prediction:.1f}")
        mlstack("run", PIPELINE, "--stack", "local", "--param", "alpha=0.1")  # all cached
    finally:
        mlstack("down", "local", "--yes")
        if own_home:
            shutil.rmtree(os.environ["MLSTACK_HOME"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
