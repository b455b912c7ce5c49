"""Experiment tracker and model registry clients.

One MLflow run per pipeline run: the driver creates it over MLflow's REST API (no ``mlflow``
import on the run's start path), steps log params and metrics to it tagged with their name,
and ``register_model`` (which does import mlflow, in that step only) logs the model and
registers a version tagged with the pipeline run it came from.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.roles import Role
from stacks.outputs import MlflowTrackerOutputs

if TYPE_CHECKING:
    from runner.context import StepContext
    from stacks.outputs import StackOutputs


class TrackerError(RunnerError):
    """The experiment tracker refused a request or could not be reached."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class TrackerClient:
    """No tracker: logging is a no-op; registering a model is an error."""

    uri: str | None = None

    @staticmethod
    def for_outputs(outputs: StackOutputs) -> TrackerClient:
        """The client of the stack's tracker kind (looked up in ``TRACKERS``)."""
        return TRACKERS.get(outputs.tracker.kind).from_outputs(outputs)

    @classmethod
    def from_outputs(cls, outputs: StackOutputs) -> TrackerClient:
        return cls()

    def start_run(self, pipeline: str, run_id: str, params: dict[str, Any]) -> str | None:
        return None

    def end_run(self, tracker_run_id: str | None, status: str) -> None:
        return None

    def log(
        self,
        tracker_run_id: str | None,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        step: str = "",
    ) -> None:
        return None

    def copy_step_metrics(
        self, source_tracker_run: str, tracker_run_id: str, step: str, source_run: str
    ) -> None:
        """A cached step: copy what ``step`` logged in the source run, tagged with its run."""
        return None

    def register_sklearn_model(self, model: Any, name: str, ctx: StepContext) -> ModelVersion:
        raise TrackerError(
            "this stack has no experiment tracker, so models cannot be registered",
            "set components.tracker: mlflow in the stack spec",
        )

    def download_model(self, name: str, version: str, dest: str) -> str:
        """Copy a registered model version's files (MLmodel, ...) into ``dest``; the folder."""
        raise TrackerError(
            "this stack has no model registry to deploy a model from",
            "set components.tracker: mlflow in the stack spec",
        )


class MlflowTracker(TrackerClient):
    """MLflow over its REST API (stdlib http.client: cheap to build, fork-safe).

    With ``username``/``password`` every request carries HTTP basic auth (MLflow's basic-auth
    app); an ``https://`` URI is verified against ``ca_pem`` when given, else the system store.
    """

    uri: str

    def __init__(
        self,
        uri: str,
        timeout: float = 30.0,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_pem: str | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self._username = username
        self._password = password
        self._ca_pem = ca_pem
        self._auth = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username and password
            else None
        )
        parsed = urllib.parse.urlsplit(self.uri)
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._https = parsed.scheme == "https"
        self._timeout = timeout

    @classmethod
    def from_outputs(cls, outputs: StackOutputs) -> TrackerClient:
        tracker = outputs.tracker
        assert isinstance(tracker, MlflowTrackerOutputs)
        password = tracker.password.get_secret_value() if tracker.password else None
        if tracker.username and not password:
            raise TrackerError(
                f"the tracker of stack {outputs.stack!r} needs a password that was not"
                f" resolved (secret {tracker.password_secret!r})",
                "resolve the outputs' secrets first (runner.secrets.resolve_token), as"
                " `mlstack run` does",
            )
        return cls(tracker.uri, username=tracker.username, password=password, ca_pem=tracker.ca_pem)

    def __repr__(self) -> str:
        return f"MlflowTracker(uri={self.uri!r}, username={self._username!r})"

    def _connection(self) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        from runner.tls import client_context

        return http.client.HTTPSConnection(
            self._host, self._port, timeout=self._timeout, context=client_context(self._ca_pem)
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        conn = self._connection()
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload else {}
            if self._auth:
                headers["Authorization"] = self._auth
            conn.request(method, f"/api/2.0/mlflow/{path}", body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            raise TrackerError(
                f"experiment tracker at {self.uri} is not reachable ({exc})",
                "check the stack with `mlstack status`",
            ) from None
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise TrackerError(
                f"experiment tracker at {self.uri} refused the credentials ({resp.status})",
                "resolve the stack's outputs with its secrets (the tracker password)"
                if not self._auth
                else "the tracker password in the secrets backend does not match the server's",
            )
        try:
            parsed = json.loads(data or b"{}")
        except ValueError:
            parsed = {}
        if resp.status >= 400:
            raise TrackerError(
                f"experiment tracker answered {resp.status} to {path}: "
                f"{parsed.get('message', data[:200])}"
            )
        return parsed

    def _experiment_id(self, name: str) -> str:
        query = urllib.parse.urlencode({"experiment_name": name})
        try:
            found = self._call("GET", f"experiments/get-by-name?{query}")
            return str(found["experiment"]["experiment_id"])
        except TrackerError as exc:
            if "404" not in exc.headline:
                raise
        try:
            return str(self._call("POST", "experiments/create", {"name": name})["experiment_id"])
        except TrackerError:  # created concurrently by another run
            return str(self._call("GET", f"experiments/get-by-name?{query}")["experiment"][
                "experiment_id"
            ])  # fmt: skip

    def start_run(self, pipeline: str, run_id: str, params: dict[str, Any]) -> str | None:
        experiment = self._experiment_id(pipeline)
        tags = [
            {"key": "mlstack.run_id", "value": run_id},
            {"key": "mlstack.pipeline", "value": pipeline},
            {"key": "mlflow.runName", "value": f"{pipeline}-{run_id[:8]}"},
        ]
        created = self._call(
            "POST",
            "runs/create",
            {
                "experiment_id": experiment,
                "run_name": f"{pipeline}-{run_id[:8]}",
                "start_time": int(time.time() * 1000),
                "tags": tags,
            },
        )
        tracker_run_id = str(created["run"]["info"]["run_id"])
        if params:
            self.log(tracker_run_id, params={f"pipeline.{k}": v for k, v in params.items()})
        return tracker_run_id

    def end_run(self, tracker_run_id: str | None, status: str) -> None:
        if not tracker_run_id:
            return
        mlflow_status = {"completed": "FINISHED", "cancelled": "KILLED"}.get(status, "FAILED")
        self._call(
            "POST",
            "runs/update",
            {
                "run_id": tracker_run_id,
                "status": mlflow_status,
                "end_time": int(time.time() * 1000),
            },
        )

    def log(
        self,
        tracker_run_id: str | None,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        step: str = "",
    ) -> None:
        if not tracker_run_id:
            raise TrackerError("this run has no tracker run to log to")
        now = int(time.time() * 1000)
        body: dict[str, Any] = {
            "run_id": tracker_run_id,
            "params": [{"key": k, "value": str(v)} for k, v in (params or {}).items()],
            "metrics": [
                {"key": k, "value": float(v), "timestamp": now, "step": 0}
                for k, v in (metrics or {}).items()
            ],
            "tags": [{"key": f"mlstack.step.{step}", "value": "logged"}] if step else [],
        }
        if step and metrics:
            # Which metric keys this step logged, so a cached rerun can copy exactly those.
            known = self._step_metric_keys(tracker_run_id, step)
            keys = ",".join(sorted(known | set(metrics)))
            body["tags"].append({"key": f"mlstack.step.{step}.metrics", "value": keys[:5000]})
        self._call("POST", "runs/log-batch", body)

    def _step_metric_keys(self, tracker_run_id: str, step: str) -> set[str]:
        tags = {t["key"]: t["value"] for t in self.get_run(tracker_run_id)["data"].get("tags", [])}
        value = tags.get(f"mlstack.step.{step}.metrics", "")
        return {k for k in value.split(",") if k}

    def copy_step_metrics(
        self, source_tracker_run: str, tracker_run_id: str, step: str, source_run: str
    ) -> None:
        # One read per source run (a cached rerun's steps mostly share one), one write per
        # step that logged metrics: steps without metrics cost no tracker call.
        memo: dict[str, dict[str, Any]] = self.__dict__.setdefault("_sources", {})
        if source_tracker_run not in memo:
            memo[source_tracker_run] = self.get_run(source_tracker_run)["data"]
        source = memo[source_tracker_run]
        tags = {t["key"]: t["value"] for t in source.get("tags", [])}
        keys = {k for k in tags.get(f"mlstack.step.{step}.metrics", "").split(",") if k}
        metrics = {m["key"]: m["value"] for m in source.get("metrics", []) if m["key"] in keys}
        if not metrics:
            return
        now = int(time.time() * 1000)
        body: dict[str, Any] = {
            "run_id": tracker_run_id,
            "metrics": [
                {"key": k, "value": float(v), "timestamp": now, "step": 0}
                for k, v in metrics.items()
            ],
            "tags": [
                {"key": f"mlstack.step.{step}", "value": "cached"},
                {"key": f"mlstack.step.{step}.cached_from", "value": source_run},
            ],
        }
        body["tags"].append(
            {"key": f"mlstack.step.{step}.metrics", "value": ",".join(sorted(metrics))}
        )
        self._call("POST", "runs/log-batch", body)

    def get_run(self, tracker_run_id: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"run_id": tracker_run_id})
        run: dict[str, Any] = self._call("GET", f"runs/get?{query}")["run"]
        return run

    def register_sklearn_model(self, model: Any, name: str, ctx: StepContext) -> ModelVersion:
        import mlflow
        import mlflow.sklearn
        from mlflow.tracking import MlflowClient

        self._mlflow_env()
        mlflow.set_tracking_uri(self.uri)
        if not ctx.tracker_run_id:
            raise TrackerError("this run has no tracker run to log the model to")
        with mlflow.start_run(run_id=ctx.tracker_run_id):
            info = mlflow.sklearn.log_model(model, name=name, registered_model_name=name)
        version = str(info.registered_model_version)
        client = MlflowClient(self.uri)
        for key, value in {
            "mlstack.run_id": ctx.run_id,
            "mlstack.pipeline": ctx.pipeline,
            "mlstack.step": ctx.step_name,
            "mlstack.stack": ctx.outputs.stack,
        }.items():
            client.set_model_version_tag(name, version, key, value)
        return ModelVersion(name=name, version=version)

    def download_model(self, name: str, version: str, dest: str) -> str:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        self._mlflow_env()
        try:
            return str(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}", dst_path=dest, tracking_uri=self.uri
                )
            )
        except MlflowException as exc:
            raise TrackerError(
                f"model {name} version {version} cannot be read from the registry at {self.uri}:"
                f" {str(exc.message).splitlines()[0][:200]}",
                "check the name and version with the MLflow UI or `mlflow models`",
            ) from None

    def _mlflow_env(self) -> None:
        # MLflow's own client reads credentials and the CA from the environment (this step only).
        if self._username and self._password:
            os.environ["MLFLOW_TRACKING_USERNAME"] = self._username
            os.environ["MLFLOW_TRACKING_PASSWORD"] = self._password
        if self._ca_pem:
            from runner.tls import ca_file

            os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = ca_file(self._ca_pem)


TRACKERS: Role[TrackerClient] = Role(
    "tracker",
    {
        "mlflow": "runner.tracking:MlflowTracker",
        "none": "runner.tracking:TrackerClient",
    },
)
