"""Materializers: round trips, choice by type, the user registry, determinism."""

from __future__ import annotations

import enum
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import ArtifactError
from runner.materializers import (
    Materializer,
    PickleFallbackWarning,
    materializer_by_name,
    materializer_for,
    register_materializer,
    type_name_of,
)


class Color(enum.IntEnum):
    RED = 1


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


def round_trip(value: Any, tmp_path: Path, type_hint: Any = None) -> tuple[str, Any]:
    """Save then load through the chosen materializer; returns its name and the loaded value."""
    mat = materializer_for(value, type_hint)
    path = str(tmp_path / mat.filename)
    mat.save(value, path)
    return mat.name, mat.load(path, type_name_of(type(value)))


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, np.nan, 2.5],
            "s": ["a", None, "c"],
            "cat": pd.Categorical(["x", "y", "x"]),
            "ts": pd.to_datetime(["2024-01-01", None, "2024-03-01"]).tz_localize("UTC"),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
        },
        index=pd.Index([30, 10, 20], name="row"),
    )


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, None, True], "a": {"nested": ["x", {"y": False}]}},
        [1, "two", 3.0],
        "text ünicode",
        42,
        2**80,
        1.25,
        True,
        None,
        (1, 2, 3),
    ],
    ids=repr,
)
def test_json_round_trip(value: Any, tmp_path: Path) -> None:
    name, loaded = round_trip(value, tmp_path)
    assert name == "json"
    assert loaded == value and type(loaded) is type(value)


def test_json_nested_tuple_comes_back_as_list(tmp_path: Path) -> None:
    """Documented: only a top-level tuple is restored."""
    assert round_trip({"t": (1, 2)}, tmp_path)[1] == {"t": [1, 2]}


def test_json_bytes_do_not_depend_on_key_order(tmp_path: Path) -> None:
    mat = materializer_by_name("json")
    mat.save({"a": 1, "b": {"c": 2, "d": 3}}, str(tmp_path / "1.json"))
    mat.save({"b": {"d": 3, "c": 2}, "a": 1}, str(tmp_path / "2.json"))
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_json_round_trip_property(tmp_path_factory: pytest.TempPathFactory, value: Any) -> None:
    name, loaded = round_trip(value, tmp_path_factory.mktemp("json"))
    assert name == "json" and loaded == value


@pytest.mark.parametrize("value", [b"\x00\xffraw", bytearray(b"mutable")], ids=repr)
def test_bytes_round_trip(value: Any, tmp_path: Path) -> None:
    name, loaded = round_trip(value, tmp_path)
    assert name == "bytes" and loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([[1, 2], [3, 4]], dtype=np.int64, order="F"),
        np.array([True, False]),
        np.array(["a", "bc"]),
    ],
    ids=lambda a: str(a.dtype),
)
def test_numpy_round_trip(value: np.ndarray, tmp_path: Path) -> None:
    name, loaded = round_trip(value, tmp_path)
    assert name == "numpy"
    np.testing.assert_array_equal(loaded, value)
    assert loaded.dtype == value.dtype and loaded.shape == value.shape


def test_numpy_scalar_round_trip(tmp_path: Path) -> None:
    name, loaded = round_trip(np.float64(1.5), tmp_path)
    assert name == "numpy" and loaded == np.float64(1.5) and type(loaded) is np.float64


def test_dataframe_round_trip_keeps_index_and_dtypes(tmp_path: Path) -> None:
    value = frame()
    value.attrs = {"source": "unit"}
    name, loaded = round_trip(value, tmp_path)
    assert name == "pandas"
    pd.testing.assert_frame_equal(loaded, value)
    assert list(loaded.index) == [30, 10, 20] and loaded.index.name == "row"
    assert loaded.dtypes.to_dict() == value.dtypes.to_dict()
    assert loaded.attrs == {"source": "unit"}


@pytest.mark.parametrize("series_name", ["price", None, 0])
def test_series_round_trips_as_series(series_name: Any, tmp_path: Path) -> None:
    value = pd.Series([1.5, 2.5, None], index=["a", "b", "c"], name=series_name)
    name, loaded = round_trip(value, tmp_path)
    assert name == "pandas" and isinstance(loaded, pd.Series)
    pd.testing.assert_series_equal(loaded, value)


def test_parquet_is_byte_stable(tmp_path: Path) -> None:
    """Two saves of equal (separately built) frames give identical bytes: caching relies on it."""
    mat = materializer_by_name("pandas")
    mat.save(frame(), str(tmp_path / "1.parquet"))
    mat.save(frame(), str(tmp_path / "2.parquet"))
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_sklearn_round_trip(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5]])
    y = np.array([0, 0, 1, 1])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    name, loaded = round_trip(model, tmp_path)
    assert name == "sklearn"
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_fallback_pickles_with_a_warning_naming_the_type(tmp_path: Path) -> None:
    with pytest.warns(PickleFallbackWarning, match=r"test_materializers\.Point.*register"):
        name, loaded = round_trip(Point(1, 2), tmp_path)
    assert name == "cloudpickle" and loaded == Point(1, 2)


@pytest.mark.parametrize(
    "value",
    [
        {1: "int keys would come back as strings"},
        OrderedDict(a=1),
        Color.RED,
        {"inner": np.arange(3)},
        np.array([{"a": 1}], dtype=object),
        np.ma.masked_array([1, 2], mask=[False, True]),
    ],
    ids=["int-keys", "ordered-dict", "int-enum", "array-in-dict", "object-array", "masked"],
)
def test_values_that_would_not_round_trip_fall_back_to_pickle(value: Any) -> None:
    assert materializer_for(value).name == "cloudpickle"


def test_a_class_as_value_is_pickled_not_mistaken_for_a_type(tmp_path: Path) -> None:
    assert materializer_for(dict).name == "cloudpickle"
    with pytest.warns(PickleFallbackWarning):
        assert round_trip(Point, tmp_path) == ("cloudpickle", Point)


def test_cyclic_list_falls_back_to_pickle() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert materializer_for(cyclic).name == "cloudpickle"


def test_user_materializer_takes_precedence_for_its_type(registry: None, tmp_path: Path) -> None:
    @register_materializer
    class CsvFrames(Materializer):
        name = "csv-frames"
        filename = "data.csv"
        types = (pd.DataFrame,)

        def save(self, value: Any, path: str) -> None:
            value.to_csv(path)

        def load(self, path: str, type_name: str) -> Any:
            return pd.read_csv(path, index_col=0)

    assert materializer_for(pd.DataFrame({"a": [1]})).name == "csv-frames"
    assert materializer_for(pd.Series([1])).name == "pandas"  # not its type
    assert materializer_by_name("csv-frames").filename == "data.csv"


def test_user_catch_all_replaces_only_the_fallback(registry: None) -> None:
    @register_materializer
    class Everything(Materializer):
        name = "everything"
        types = (object,)

    assert materializer_for(Point(0, 0)).name == "everything"
    assert materializer_for({"a": 1}).name == "json"
    assert materializer_for(np.zeros(2)).name == "numpy"


def test_priority_breaks_ties_and_custom_handles_counts(registry: None) -> None:
    class Low(Materializer):
        name = "low"
        types = (Point,)

    class High(Materializer):
        name = "high"
        types = (Point,)

    register_materializer(High, priority=200)
    register_materializer(Low)  # later, but lower priority
    assert materializer_for(Point(0, 0)).name == "high"

    @register_materializer(priority=300)
    class Ducks(Materializer):
        name = "ducks"

        def handles(self, type_or_value: Any) -> bool:
            return hasattr(type_or_value, "x")

    assert materializer_for(Point(0, 0)).name == "ducks"


def test_type_hint_narrows_the_choice(registry: None) -> None:
    class Base:
        pass

    class Sub(Base):
        pass

    class ForBase(Materializer):
        name = "for-base"
        types = (Base,)

    class ForSub(Materializer):
        name = "for-sub"
        types = (Sub,)

    register_materializer(ForBase)
    register_materializer(ForSub)
    assert materializer_for(Sub()).name == "for-sub"
    assert materializer_for(Sub(), type_hint=Base).name == "for-base"
    assert materializer_for(None, type_hint=pd.DataFrame | None).name == "json"
    assert materializer_for({"a": 1}, type_hint=dict[str, int]).name == "json"
    assert materializer_for(np.float64(1), type_hint=float).name == "numpy"


def test_unknown_materializer_name_lists_the_valid_ones() -> None:
    with pytest.raises(ArtifactError, match="unknown materializer 'nope'") as info:
        materializer_by_name("nope")
    assert info.value.hint is not None
    for name in ("json", "bytes", "numpy", "pandas", "sklearn", "cloudpickle"):
        assert name in info.value.hint


def test_a_taken_name_cannot_be_registered_by_another_class(registry: None) -> None:
    class Impostor(Materializer):
        name = "json"

    with pytest.raises(ArtifactError, match="already taken"):
        register_materializer(Impostor)
    with pytest.raises(ArtifactError, match="invalid name"):
        register_materializer(type("Nameless", (Materializer,), {}))
    with pytest.raises(ArtifactError, match="cannot register"):
        register_materializer(object())  # type: ignore[call-overload]


def test_importing_the_store_loads_no_heavy_library() -> None:
    code = (
        "import sys, runner.artifacts, runner.materializers; print(','.join(m for m in "
        "('numpy', 'pandas', 'pyarrow', 'sklearn', 'joblib', 'cloudpickle', 'fsspec') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
