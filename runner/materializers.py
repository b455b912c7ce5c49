"""Materializers: how a step's output value becomes one file in the artifact store, and back.

A materializer is picked by the value's type (or the step's declared type hint) from a small
registry. Built-ins cover numpy arrays, pandas DataFrames/Series, scikit-learn estimators,
JSON-able builtins and bytes; anything else is cloudpickled, with a warning. Register your own
with ``@register_materializer``.

Choosing: every registered materializer that ``handles`` the value (and, given a type hint,
the hint) is a candidate. The most specific one wins, i.e. the one whose declared type is
nearest in the value's (or hint's) MRO; ties go to the higher ``priority`` (built-ins 0, user
registrations 100 by default), then to the latest registration. So a user materializer for
``DataFrame`` replaces the built-in for DataFrames, and one for ``object`` replaces only the
pickle fallback.

The same value gives the same bytes wherever the format allows, so equal outputs share one
content hash and step caching works: JSON is written with sorted keys, parquet and .npy carry
no timestamps. Heavy libraries are imported only inside the methods that need them; a value of
type ``numpy.ndarray`` means numpy is already imported.

Loading pickles (the fallback, and joblib for estimators) runs code from the store: only load
from a store you trust, which is the stack's own.
"""

from __future__ import annotations

import json
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, overload

from runner.errors import ArtifactError

BUILTIN_PRIORITY = 0
USER_PRIORITY = 100
FALLBACK_PRIORITY = -1000


class PickleFallbackWarning(UserWarning):
    """A value had no materializer and was stored with cloudpickle."""


def type_name_of(cls: type) -> str:
    """``module.QualName`` of a class, the form materializers declare and artifacts record."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Materializer:
    """Writes one value to one file and reads it back.

    Subclasses set ``name`` (unique, recorded with each artifact), ``filename`` (the stored
    object's file name) and ``types`` (classes, or ``"module.QualName"`` strings so the library
    need not be imported), and implement ``save``/``load``. Override ``handles`` to also look
    at the value itself (e.g. refuse an object-dtype array).
    """

    name: ClassVar[str] = ""
    filename: ClassVar[str] = "data"
    types: ClassVar[tuple[type | str, ...]] = ()

    def distance(self, cls: type) -> int | None:
        """How far up ``cls``'s MRO the nearest declared type is (0 = exact), or None."""
        declared = {t if isinstance(t, str) else type_name_of(t) for t in self.types}
        for depth, klass in enumerate(cls.__mro__):
            if type_name_of(klass) in declared:
                return depth
        return None

    def handles(self, type_or_value: Any) -> bool:
        """Whether this materializer can store the given type, or the given value."""
        cls = type_or_value if isinstance(type_or_value, type) else type(type_or_value)
        return self.distance(cls) is not None

    def save(self, value: Any, path: str) -> None:
        """Write ``value`` to the file ``path`` (exactly that one file)."""
        raise NotImplementedError

    def load(self, path: str, type_name: str) -> Any:
        """Read back the value saved at ``path``; ``type_name`` is what ``save`` was given."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@dataclass(frozen=True, slots=True)
class _Entry:
    materializer: Materializer
    priority: int
    seq: int


_registry: dict[str, _Entry] = {}
_seq = 0
M = TypeVar("M", bound="type[Materializer] | Materializer")


@overload
def register_materializer(obj: M, *, priority: int = USER_PRIORITY) -> M: ...
@overload
def register_materializer(
    obj: None = None, *, priority: int = USER_PRIORITY
) -> Callable[[M], M]: ...
def register_materializer(obj: Any = None, *, priority: int = USER_PRIORITY) -> Any:
    """Register a materializer class (instantiated without arguments) or instance.

    Usable as ``@register_materializer`` or ``@register_materializer(priority=...)``; returns
    its argument. Re-registering the same class replaces it; another class under a taken name
    is an error.
    """
    if obj is None:
        return lambda o: register_materializer(o, priority=priority)
    global _seq
    instance = obj() if isinstance(obj, type) else obj
    if not isinstance(instance, Materializer):
        raise ArtifactError(
            f"cannot register {obj!r} as a materializer",
            "subclass runner.materializers.Materializer",
        )
    name = instance.name
    if not name or len(name) > 255 or any(c.isspace() or c == "/" for c in name):
        raise ArtifactError(
            f"materializer {type(instance).__name__} has an invalid name {name!r}",
            "set a short class attribute `name`, without spaces or '/'",
        )
    old = _registry.get(name)
    if old is not None and type_name_of(type(old.materializer)) != type_name_of(type(instance)):
        raise ArtifactError(
            f"materializer name {name!r} is already taken by {type(old.materializer).__name__}",
            "choose another `name`",
        )
    _seq += 1
    _registry[name] = _Entry(instance, priority, _seq)
    return obj


def unregister_materializer(name: str) -> None:
    """Remove a registered materializer (mostly for tests); unknown names are ignored."""
    _registry.pop(name, None)


def registered_materializers() -> list[Materializer]:
    """All registered materializers, most recently registered first."""
    return [e.materializer for e in sorted(_registry.values(), key=lambda e: -e.seq)]


def materializer_by_name(name: str) -> Materializer:
    """The registered materializer called ``name``; ArtifactError lists valid names if none."""
    entry = _registry.get(name)
    if entry is None:
        raise ArtifactError(
            f"unknown materializer {name!r}",
            f"valid names: {', '.join(sorted(_registry))}; "
            "a custom one must be registered (imported) in the process that loads it",
        )
    return entry.materializer


def materializer_for(value: Any, type_hint: Any = None) -> Materializer:
    """The most specific registered materializer for ``value`` (see the module docstring).

    A ``type_hint`` (a class, ``X | None``, ``list[int]``, ...) narrows the choice to
    materializers that handle the hint; it is ignored when none of those but the pickle
    fallback handles the value.
    """
    hint = _hint_classes(type_hint)
    if hint:
        best = _best(value, hint)
        if best is not None and best.name != CloudpickleMaterializer.name:
            return best
    best = _best(value, (type(value),))
    if best is None:  # only when the fallback was unregistered
        raise ArtifactError(
            f"no materializer for {type_name_of(type(value))}",
            "register one with runner.materializers.register_materializer",
        )
    return best


def _best(value: Any, classes: tuple[type, ...]) -> Materializer | None:
    best: tuple[int, int, int] | None = None
    chosen: Materializer | None = None
    for entry in _registry.values():
        m = entry.materializer
        # `handles` reads a class as "can you store instances of it": a class *value* is
        # matched on its own type (`type`) instead.
        if isinstance(value, type):
            if m.distance(type(value)) is None:
                continue
        elif not m.handles(value):
            continue
        depths = [d for d in (_depth(m, c, value) for c in classes) if d is not None]
        if not depths:
            continue
        key = (-min(depths), entry.priority, entry.seq)
        if best is None or key > best:
            best, chosen = key, m
    return chosen


def _depth(m: Materializer, cls: type, value: Any) -> int | None:
    # A materializer that overrides `handles` without declaring types counts as exact.
    if not m.types:
        return 0 if cls is type(value) or m.handles(cls) else None
    return m.distance(cls)


def _hint_classes(hint: Any) -> tuple[type, ...]:
    """The classes a type hint allows; () when it says nothing useful (Any, object, ...)."""
    if hint is None or hint is typing.Any or hint is object:
        return ()
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _hint_classes(typing.get_args(hint)[0])
    if origin is typing.Union or origin is types.UnionType:
        found: list[type] = []
        for arg in typing.get_args(hint):
            found += [type(None)] if arg is type(None) else _hint_classes(arg)
        return tuple(found)
    if isinstance(origin, type):
        return (origin,)
    return (hint,) if isinstance(hint, type) else ()


# --- built-ins ------------------------------------------------------------------------------

_JSON_SCALARS = (str, int, float, bool, type(None))


def _is_json(value: Any) -> bool:
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if kind is list or kind is tuple:
        return all(_is_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False


class JsonMaterializer(Materializer):
    """dict/list/tuple/str/int/float/bool/None, nested, as sorted-key JSON.

    Only exact builtin types (not subclasses such as enums or OrderedDict) and only string dict
    keys, so what loads equals what was saved; one exception: a tuple comes back as a tuple at
    the top level but as a list when nested. NaN and infinities are written as JSON's common
    extension (``NaN``, ``Infinity``), which Python reads back.
    """

    name = "json"
    filename = "data.json"
    types = (dict, list, tuple, str, int, float, bool, type(None))

    def handles(self, type_or_value: Any) -> bool:
        if isinstance(type_or_value, type):
            return type_or_value in self.types
        try:
            return _is_json(type_or_value)
        except RecursionError:  # cyclic or absurdly deep: leave it to the pickle fallback
            return False

    def save(self, value: Any, path: str) -> None:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def load(self, path: str, type_name: str) -> Any:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return tuple(value) if type_name == "builtins.tuple" else value


class BytesMaterializer(Materializer):
    """bytes and bytearray, stored raw."""

    name = "bytes"
    filename = "data.bin"
    types = (bytes, bytearray)

    def save(self, value: Any, path: str) -> None:
        with open(path, "wb") as f:
            f.write(value)

    def load(self, path: str, type_name: str) -> Any:
        with open(path, "rb") as f:
            data = f.read()
        return bytearray(data) if type_name == "builtins.bytearray" else data


class NumpyMaterializer(Materializer):
    """numpy arrays (exact ``ndarray``, no object dtype) and numpy scalars, as ``.npy``."""

    name = "numpy"
    filename = "data.npy"
    types = ("numpy.ndarray", "numpy.generic")

    def handles(self, type_or_value: Any) -> bool:
        if isinstance(type_or_value, type):
            return self.distance(type_or_value) is not None
        mro = [type_name_of(k) for k in type(type_or_value).__mro__]
        if "numpy.ndarray" in mro[1:]:
            return False  # masked arrays, np.matrix, ... would load as plain arrays
        if mro[0] != "numpy.ndarray" and "numpy.generic" not in mro:
            return False
        return not type_or_value.dtype.hasobject  # object dtype needs pickle

    def save(self, value: Any, path: str) -> None:
        import numpy as np

        with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, np.asarray(value), allow_pickle=False)

    def load(self, path: str, type_name: str) -> Any:
        import numpy as np

        array = np.load(path, allow_pickle=False)
        return array if type_name == "numpy.ndarray" else array[()]


_UNNAMED_SERIES = "__mlstack_unnamed_series__"
_SERIES = ("pandas.Series", "pandas.core.series.Series")


class PandasMaterializer(Materializer):
    """pandas DataFrame and Series as parquet (pyarrow); index, dtypes and attrs survive.

    A Series is stored as a one-column frame and comes back as a Series with its name.
    """

    name = "pandas"
    filename = "data.parquet"
    # pandas >= 3 reports its public classes as `pandas.X`, older versions as `pandas.core...`
    types = (*_SERIES, "pandas.DataFrame", "pandas.core.frame.DataFrame")

    def save(self, value: Any, path: str) -> None:
        import pandas as pd

        if isinstance(value, pd.Series):
            frame = value.to_frame(name=_UNNAMED_SERIES if value.name is None else value.name)
            frame.attrs = dict(value.attrs)
            value = frame
        value.to_parquet(path, engine="pyarrow")

    def load(self, path: str, type_name: str) -> Any:
        import pandas as pd

        frame = pd.read_parquet(path, engine="pyarrow")
        if type_name not in _SERIES:
            return frame
        series = frame.iloc[:, 0]
        series.attrs = dict(frame.attrs)
        if series.name == _UNNAMED_SERIES:
            series.name = None
        return series


class SklearnMaterializer(Materializer):
    """scikit-learn estimators (anything deriving from ``BaseEstimator``), with joblib."""

    name = "sklearn"
    filename = "model.joblib"
    types = ("sklearn.base.BaseEstimator",)

    def save(self, value: Any, path: str) -> None:
        import joblib

        joblib.dump(value, path)

    def load(self, path: str, type_name: str) -> Any:
        import joblib

        return joblib.load(path)


class CloudpickleMaterializer(Materializer):
    """The fallback for any other value; warns, since pickles break across library versions."""

    name = "cloudpickle"
    filename = "data.pkl"
    types = (object,)

    def save(self, value: Any, path: str) -> None:
        import cloudpickle

        kind = type_name_of(type(value))
        warnings.warn(
            f"no materializer for {kind}: storing it with cloudpickle, which may not load "
            "under other library versions; register one with "
            "runner.materializers.register_materializer",
            PickleFallbackWarning,
            stacklevel=3,
        )
        with open(path, "wb") as f:
            cloudpickle.dump(value, f)

    def load(self, path: str, type_name: str) -> Any:
        import cloudpickle

        with open(path, "rb") as f:
            return cloudpickle.load(f)


for _cls in (
    JsonMaterializer,
    BytesMaterializer,
    NumpyMaterializer,
    PandasMaterializer,
    SklearnMaterializer,
):
    register_materializer(_cls, priority=BUILTIN_PRIORITY)
register_materializer(CloudpickleMaterializer, priority=FALLBACK_PRIORITY)
