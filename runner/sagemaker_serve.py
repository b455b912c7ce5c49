"""The SageMaker serving container's entrypoint: ``serve`` starts MLflow's pyfunc scoring server.

SageMaker runs the image as ``docker run IMAGE serve`` with the model extracted under
``/opt/ml/model`` and expects GET /ping and POST /invocations on port 8080. This execs the
server MLflow's own SageMaker container runs (``mlflow.pyfunc.scoring_server.app`` under
uvicorn), with the model dependencies already installed in the image (env manager "local").
"""

from __future__ import annotations

import os
import shlex
import sys

MODEL_PATH = "/opt/ml/model"
PORT = 8080


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["serve"]:
        print(f"usage: serve (SageMaker's convention); got {' '.join(args) or 'nothing'}",
              file=sys.stderr)  # fmt: skip
        return 2
    model = os.environ.get("MLSTACK_MODEL_PATH", MODEL_PATH)
    if not os.path.isfile(os.path.join(model, "MLmodel")):
        print(f"no MLflow model under {model}: SageMaker extracts model.tar.gz there",
              file=sys.stderr)  # fmt: skip
        return 2
    from mlflow.pyfunc import scoring_server

    workers = int(os.environ.get("MLFLOW_MODELS_WORKERS") or os.cpu_count() or 1)
    cmd, env = scoring_server.get_cmd(
        model_uri=model, port=PORT, host="0.0.0.0",  # type: ignore[arg-type]  # str in fact
        nworkers=workers,
    )  # fmt: skip
    argv_ = shlex.split(cmd)
    os.execvpe(argv_[0], argv_, env)  # never returns


if __name__ == "__main__":
    sys.exit(main())
