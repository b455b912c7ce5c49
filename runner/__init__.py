"""mlstack's data plane: define pipelines with ``@step``/``@pipeline`` and run them on a stack.

Inside a step: ``get_secret``, ``log_params``, ``log_metrics``, ``register_model`` and
``deploy_model`` reach the stack's secrets backend, tracker, model registry and deployer.
"""

from __future__ import annotations

from typing import Any

from runner.sdk import Pipeline, Step, pipeline, step

__all__ = [
    "Pipeline",
    "RunResult",
    "Step",
    "deploy_model",
    "get_secret",
    "load",
    "log_metrics",
    "log_params",
    "pipeline",
    "register_model",
    "run",
    "step",
]

_LAZY = {
    "get_secret": "runner.context",
    "log_params": "runner.context",
    "log_metrics": "runner.context",
    "register_model": "runner.context",
    "deploy_model": "runner.context",
    "run": "runner.api",
    "load": "runner.api",
    "RunResult": "runner.api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
