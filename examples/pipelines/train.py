"""Train, evaluate, register and deploy a ridge regression on scikit-learn's diabetes data.

mlstack run examples/pipelines/train.py:training --stack local [--param alpha=0.1]
"""

from __future__ import annotations

import pandas as pd
from sklearn.linear_model import Ridge

from runner import deploy_model, log_metrics, log_params, pipeline, register_model, step

MODEL_NAME = "diabetes-ridge"


@step
def load() -> pd.DataFrame:
    """The diabetes data set that ships with scikit-learn (no download)."""
    from sklearn.datasets import load_diabetes

    frame: pd.DataFrame = load_diabetes(as_frame=True).frame
    return frame


@step(outputs=("train", "test"))
def split(df: pd.DataFrame, test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    test = df.sample(frac=test_fraction, random_state=0)
    return df.drop(test.index), test


@step
def train(df: pd.DataFrame, alpha: float = 0.5) -> Ridge:
    model = Ridge(alpha=alpha).fit(df.drop(columns="target"), df["target"])
    log_params(alpha=alpha, rows=len(df))
    return model


@step
def evaluate(model: Ridge, df: pd.DataFrame) -> dict:
    from sklearn.metrics import mean_absolute_error, r2_score

    predictions = model.predict(df.drop(columns="target"))
    metrics = {
        "r2": float(r2_score(df["target"], predictions)),
        "mae": float(mean_absolute_error(df["target"], predictions)),
    }
    log_metrics(**metrics)
    return metrics


@step
def deploy(model: Ridge, metrics: dict, min_r2: float = 0.2) -> str:
    """Register the model and serve it; returns the endpoint's URL."""
    if metrics["r2"] < min_r2:
        raise ValueError(f"r2 {metrics['r2']:.3f} is below {min_r2}: not deploying")
    version = register_model(model, MODEL_NAME)
    return deploy_model(version.name, version.version).endpoint_url


# What the step image needs when the stack's orchestrator is docker.
REQUIREMENTS = [
    "pandas>=2.1",
    "pyarrow>=15",
    "scikit-learn>=1.4",
    "mlflow-skinny>=2.16",
    "skops>=0.10",  # MLflow saves scikit-learn models with skops
]


@pipeline(requirements=REQUIREMENTS)
def training(alpha: float = 0.5, min_r2: float = 0.2) -> None:
    df = load()
    train_df, test_df = split(df)
    model = train(train_df, alpha=alpha)
    metrics = evaluate(model, test_df)
    deploy(model, metrics, min_r2=min_r2)
