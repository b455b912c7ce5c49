"""What a step's code can see, as hashes: the code half of its cache key.

Starting from the step function, :class:`Fingerprinter` follows the names its code objects
use (``co_names``, nested code included) through the function's globals and closure:

- a function or class defined in a user module -> its source, followed transitively;
- a user module (``import helpers``) -> the hash of its file, and what that file uses;
- a module-level constant -> a hash of its stable serialization (JSON, else ``repr`` when it
  carries no memory address); anything else is named in a warning, never silently skipped.

A *user module* is one with a source file outside the standard library, site-packages and
mlstack itself. Fingerprints are memoised per instance: one per run keeps the cost per step
to dictionary look-ups after the first step of a module.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
import sysconfig
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_OWN_PACKAGES = ("runner", "stacks", "provisioner")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _sha(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def _system_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(sorted(str(Path(r).resolve()) for r in roots if r))


@dataclass
class CodeFingerprint:
    """The hashed components a step's code contributes to its key, plus what was not hashed."""

    components: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Fingerprinter:
    """Hashes step functions and everything in user code they reach (memoised)."""

    def __init__(self) -> None:
        self._roots = _system_roots()
        self._user: dict[str, bool] = {}
        self._memo: dict[int, CodeFingerprint] = {}

    # -- classification -----------------------------------------------------------------

    def is_user_module(self, name: str | None) -> bool:
        if not name:
            return False
        if name in self._user:
            return self._user[name]
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None)
        user = bool(path) and name.split(".")[0] not in _OWN_PACKAGES
        if user and path:
            resolved = str(Path(path).resolve())
            user = not any(resolved.startswith(r + "/") for r in self._roots) and (
                "site-packages" not in resolved and "dist-packages" not in resolved
            )
        self._user[name] = user
        return user

    # -- entry point --------------------------------------------------------------------

    def step(self, func: Any) -> CodeFingerprint:
        """The components for the step function ``func`` (memoised per function)."""
        found = self._memo.get(id(func))
        if found is None:
            found = CodeFingerprint()
            self._walk_function(func, found, set(), own=True)
            self._memo[id(func)] = found
        return found

    # -- walking ------------------------------------------------------------------------

    def _walk_function(
        self, func: Any, fp: CodeFingerprint, seen: set[int], own: bool = False
    ) -> None:
        func = inspect.unwrap(getattr(func, "func", func))
        if id(func) in seen or not isinstance(func, types.FunctionType):
            return
        seen.add(id(func))
        label = "source" if own else f"code:{func.__module__}.{func.__qualname__}"
        fp.components[label] = _sha(_source_of(func))
        scope = func.__globals__
        for name in sorted(_names_used(func.__code__)):
            if name in scope:
                self._walk_value(f"{func.__module__}.{name}", scope[name], fp, seen)
        for cell_name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell: not bound yet
                continue
            self._walk_value(f"{func.__qualname__}.<closure {cell_name}>", value, fp, seen)

    def _walk_value(self, label: str, value: Any, fp: CodeFingerprint, seen: set[int]) -> None:
        if isinstance(value, types.ModuleType):
            if self.is_user_module(value.__name__):
                self._walk_module(value, fp, seen)
            return
        if isinstance(value, types.FunctionType) or hasattr(value, "func"):
            target = getattr(value, "func", value)
            if isinstance(target, types.FunctionType) and self.is_user_module(target.__module__):
                self._walk_function(target, fp, seen)
            return
        if isinstance(value, type):
            if self.is_user_module(value.__module__) and id(value) not in seen:
                self._walk_class(value, fp, seen)
            return
        if callable(value) and not _is_plain_data(value):
            return  # builtins, bound methods of library objects: covered by packages
        digest = _stable_hash(value)
        if digest is None:
            fp.warnings.append(
                f"{label} ({type(value).__name__}) cannot be hashed: changing it does not"
                " invalidate the cache (add it to cache_deps or pass it as a parameter)"
            )
        else:
            fp.components[f"const:{label}"] = digest

    def _walk_class(self, cls: type, fp: CodeFingerprint, seen: set[int]) -> None:
        seen.add(id(cls))
        fp.components[f"code:{cls.__module__}.{cls.__qualname__}"] = _sha(_source_of(cls))
        for attr in vars(cls).values():
            inner = attr.__func__ if isinstance(attr, classmethod | staticmethod) else attr
            if isinstance(inner, types.FunctionType):
                self._walk_function(inner, fp, seen)

    def _walk_module(self, mod: types.ModuleType, fp: CodeFingerprint, seen: set[int]) -> None:
        if id(mod) in seen:
            return
        seen.add(id(mod))
        path = getattr(mod, "__file__", None)
        try:
            fp.components[f"module:{mod.__name__}"] = _sha(Path(path or "").read_bytes())
        except OSError:
            fp.warnings.append(f"module {mod.__name__} has no readable source file ({path})")
            return
        # What the module file itself uses from other user modules is part of it too.
        for value in list(vars(mod).values()):
            if isinstance(value, types.ModuleType):
                if self.is_user_module(value.__name__):
                    self._walk_module(value, fp, seen)
            elif isinstance(value, types.FunctionType | type):
                owner = getattr(value, "__module__", None)
                if owner != mod.__name__ and owner in sys.modules and self.is_user_module(owner):
                    self._walk_module(sys.modules[owner], fp, seen)


def _names_used(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is None:
            return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}"
        return f"{code.co_filename}:{code.co_firstlineno}:{code.co_code.hex()}"


def _is_plain_data(value: Any) -> bool:
    return isinstance(value, str | bytes | int | float | bool | tuple | list | dict | frozenset)


def _stable_hash(value: Any) -> str | None:
    """A hash of ``value`` that is the same in every process, or None when there is none."""
    try:
        return _sha(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        pass
    if isinstance(value, set | frozenset):
        try:
            return _sha(repr(sorted(value)))
        except TypeError:
            return None
    try:
        text = repr(value)
    except Exception:
        return None
    if _ADDRESS.search(text) or text.startswith("<"):
        return None  # the default repr names an address: different every process
    return _sha(f"{type(value).__module__}.{type(value).__qualname__}:{text}")
