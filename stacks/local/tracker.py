"""Local experiment tracker and model registry: an MLflow tracking server on SQLite."""

from __future__ import annotations

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import MlflowTrackerOutputs, NoTrackerOutputs, TrackerOutputs
from stacks.spec.local import LocalMlflowTracker


def service(ctx: LocalContext) -> ServiceDef | None:
    spec = ctx.spec.components.tracker
    if not isinstance(spec, LocalMlflowTracker):
        return None
    data = ctx.path("mlflow")

    def argv(port: int) -> list[str]:
        return [
            ctx.python, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
            "--artifacts-destination", (data / "artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip

    return ServiceDef(
        name="tracker",
        component="tracker",
        config={"flavor": "mlflow", "data": str(data)},
        argv=argv,
        # Job execution would start a second supervisor process and a huey worker.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        fixed_port=spec.port,
        prepare=lambda: (data / "artifacts").mkdir(parents=True, exist_ok=True),
    )


def outputs(ctx: LocalContext, port: int | None) -> TrackerOutputs:
    if port is None:
        return NoTrackerOutputs()
    return MlflowTrackerOutputs(uri=f"http://127.0.0.1:{port}")
