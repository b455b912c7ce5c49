"""@step(resources=..., retries=..., timeout=...): parsed at declaration, bad values name the
step and the option (a definition error, exit 2), and none of them changes the cache key."""

from __future__ import annotations

from typing import Any

import pytest

from runner import step
from runner.cache import cache_key
from runner.errors import PipelineDefinitionError
from runner.sdk import Invocation
from runner.step_options import StepResources, format_duration, parse_duration


def _declare(**options: Any) -> Any:
    @step(**options)
    def train() -> int:
        return 1

    return train


def test_defaults_request_nothing() -> None:
    s = _declare()
    assert s.resources == StepResources(cpu=None, memory_gib=None, gpus=0)
    assert not s.resources.requested
    assert s.retries == 0
    assert s.timeout is None


def test_the_issue_example_parses_to_typed_settings() -> None:
    s = _declare(resources={"cpu": 2, "memory_gib": 4, "gpus": 1}, retries=2, timeout="30m")
    assert s.resources == StepResources(cpu=2.0, memory_gib=4.0, gpus=1)
    assert isinstance(s.resources.cpu, float)
    assert s.retries == 2
    assert s.timeout == 1800.0
    with pytest.raises(AttributeError):
        s.resources.cpu = 4  # type: ignore[misc]  # frozen: shared by every invocation


def test_partial_resources_and_fractional_cpu() -> None:
    s = _declare(resources={"cpu": 0.5})
    assert s.resources == StepResources(cpu=0.5)
    assert s.resources.requested
    assert _declare(resources={"gpus": 2}).resources.gpus == 2


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("45", 45.0),
        (" 10 m ", 600.0),
        ("1d", 86400.0),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    assert _declare(timeout=value).timeout == seconds


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": "soon"}, "step 'train': timeout 'soon' is not a duration"),
        ({"timeout": "30x"}, "step 'train': timeout '30x' is not a duration"),
        ({"timeout": ""}, "step 'train': timeout '' is not a duration"),
        ({"timeout": 0}, "step 'train': timeout must be greater than 0, not 0"),
        ({"timeout": -5}, "step 'train': timeout must be greater than 0, not -5"),
        ({"timeout": "0m"}, "step 'train': timeout must be longer than 0, not '0m'"),
        ({"timeout": True}, "step 'train': timeout must be a duration, not True"),
        ({"timeout": float("inf")}, "step 'train': timeout must be greater than 0, not inf"),
        ({"retries": -1}, "step 'train': retries must be a whole number >= 0, not -1"),
        ({"retries": 1.5}, "step 'train': retries must be a whole number >= 0, not 1.5"),
        ({"retries": True}, "step 'train': retries must be a whole number >= 0, not True"),
        ({"resources": {"cpu": 0}}, "step 'train': resources[\"cpu\"] must be greater than 0"),
        ({"resources": {"cpu": -1}}, "step 'train': resources[\"cpu\"] must be greater than 0"),
        ({"resources": {"cpu": "2"}}, "step 'train': resources[\"cpu\"] must be a number"),
        (
            {"resources": {"memory_gib": 0}},
            "step 'train': resources[\"memory_gib\"] must be greater than 0",
        ),
        ({"resources": {"gpus": -1}}, "step 'train': resources[\"gpus\"] must be a whole number"),
        ({"resources": {"gpus": 0.5}}, "step 'train': resources[\"gpus\"] must be a whole number"),
        ({"resources": {"gpu": 1}}, "step 'train': resources has an unknown key 'gpu'"),
        ({"resources": [2, 4]}, "step 'train': resources must be a dict, not list"),
    ],
)
def test_invalid_values_are_one_line_definition_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(PipelineDefinitionError) as info:
        _declare(**options)
    assert str(info.value).startswith(message)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_unknown_resource_key_lists_the_valid_ones() -> None:
    with pytest.raises(PipelineDefinitionError) as info:
        _declare(resources={"memory": 4})
    assert "keys: cpu, memory_gib, gpus" in str(info.value)


def test_bad_duration_hint_shows_the_accepted_forms() -> None:
    with pytest.raises(PipelineDefinitionError) as info:
        _declare(timeout="half an hour")
    assert '"30m"' in str(info.value)


def test_format_duration_round_trips_the_common_forms() -> None:
    assert format_duration(1800) == "30m"
    assert format_duration(7200) == "2h"
    assert format_duration(90) == "90s"
    assert format_duration(5) == "5s"
    assert format_duration(2.5) == "2.5s"
    assert format_duration(parse_duration("s", "timeout", "1h30m") or 0) == "90m"


def test_settings_do_not_change_the_cache_key() -> None:
    def body() -> int:
        return 1

    plain = step(name="same")(body)
    tuned = step(
        name="same", resources={"cpu": 2, "memory_gib": 4, "gpus": 1}, retries=3, timeout="1h"
    )(body)
    key = cache_key(Invocation("same", plain, {}, {}), {}).key
    assert cache_key(Invocation("same", tuned, {}, {}), {}).key == key
