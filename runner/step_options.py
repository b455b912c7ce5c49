"""Per-step run settings: ``@step(resources={...}, retries=N, timeout="30m")``.

Parsed once when the step is declared, so a bad value is a definition error (exit 2) before
anything runs. Every orchestrator reads the same attributes: ``step.resources``
(:class:`StepResources`), ``step.retries`` (extra attempts after a failure) and
``step.timeout`` (seconds per attempt, or None). None of them is part of the cache key: they
change where and how long a step may run, not what it computes.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import PipelineDefinitionError

RESOURCE_KEYS = ("cpu", "memory_gib", "gpus")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DURATION_HINT = 'use seconds (5, 2.5) or a string like "90s", "30m", "2h", "1h30m"'


@dataclass(frozen=True)
class StepResources:
    """What one attempt of a step needs: CPUs, memory in GiB, GPUs (None: no request)."""

    cpu: float | None = None
    memory_gib: float | None = None
    gpus: int = 0

    @property
    def requested(self) -> bool:
        return self.cpu is not None or self.memory_gib is not None or self.gpus > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fail(step: str, option: str, message: str, hint: str | None = None) -> PipelineDefinitionError:
    return PipelineDefinitionError(f"step {step!r}: {option} {message}", hint)


def _positive_number(step: str, option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(step, option, f"must be a number, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _fail(step, option, f"must be greater than 0, not {value!r}")
    return float(value)


def parse_resources(step: str, value: Any) -> StepResources:
    """``{"cpu": 2, "memory_gib": 4, "gpus": 1}`` (any subset) -> :class:`StepResources`."""
    if value is None:
        return StepResources()
    if isinstance(value, StepResources):
        return value
    if not isinstance(value, dict):
        raise _fail(
            step, "resources", f"must be a dict, not {type(value).__name__}",
            'for example resources={"cpu": 2, "memory_gib": 4, "gpus": 1}',
        )  # fmt: skip
    unknown = sorted(str(k) for k in value if k not in RESOURCE_KEYS)
    if unknown:
        raise _fail(
            step, "resources", f"has an unknown key {unknown[0]!r}",
            f"keys: {', '.join(RESOURCE_KEYS)}",
        )  # fmt: skip
    cpu = value.get("cpu")
    memory = value.get("memory_gib")
    gpus = value.get("gpus", 0)
    if gpus is None:
        gpus = 0
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise _fail(step, 'resources["gpus"]', f"must be a whole number >= 0, not {gpus!r}")
    return StepResources(
        cpu=None if cpu is None else _positive_number(step, 'resources["cpu"]', cpu),
        memory_gib=(
            None if memory is None else _positive_number(step, 'resources["memory_gib"]', memory)
        ),
        gpus=gpus,
    )


def parse_retries(step: str, value: Any) -> int:
    """Extra attempts after a failed one: a whole number >= 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(step, "retries", f"must be a whole number >= 0, not {value!r}")
    return value


def parse_duration(step: str, option: str, value: Any) -> float | None:
    """Seconds from ``5``, ``2.5``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` (None: none)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _fail(step, option, f"must be a duration, not {value!r}", _DURATION_HINT)
    if isinstance(value, int | float):
        return _positive_number(step, option, value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return _positive_number(step, option, float(text))
        if text and _PART.sub("", text) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
            if seconds > 0:
                return seconds
            raise _fail(step, option, f"must be longer than 0, not {value!r}", _DURATION_HINT)
    raise _fail(step, option, f"{value!r} is not a duration", _DURATION_HINT)


def format_duration(seconds: float) -> str:
    """The shortest of ``"2h"``, ``"30m"``, ``"90s"`` that is exact; otherwise seconds."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
