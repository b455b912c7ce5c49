"""The price catalog: on-demand list prices per region, with source and date per entry.

The packaged ``catalog.json`` is the fallback; ``mlstack prices refresh`` writes figures from
the AWS Price List API to ``$MLSTACK_HOME/prices.json``, which overrides the file entry by
entry. A price that is missing for a region is *unpriced*, never $0.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from provisioner.state import mlstack_home

CACHE_NAME = "prices.json"


class Price(BaseModel):
    """One price dimension: USD per ``unit`` in each region (``*`` = every region)."""

    unit: str
    regions: dict[str, float]
    source: str
    cited: str = ""
    date: str

    def in_region(self, region: str) -> float | None:
        return self.regions.get(region, self.regions.get("*"))


class Component(BaseModel):
    """How one resource kind maps to a price: the key and what to multiply it by.

    ``price`` may name detail fields in braces (``aws.rds.{engine}.{instance_class}``);
    ``qty`` multiplies numbers and detail fields; ``monthly`` prices are per month (converted
    with ``hours_per_month``); ``use`` prices are per-use, shown apart from standing cost.
    """

    price: str
    qty: list[str | float] = Field(default_factory=list)
    monthly: bool = False
    use: bool = False
    note: str = ""


class Catalog(BaseModel):
    version: int
    currency: str = "USD"
    hours_per_month: float = 730
    prices: dict[str, Price]
    resources: dict[str, list[Component]]
    runtime: dict[str, list[Component]]
    refreshed: dict[str, str] = Field(default_factory=dict)  # price key -> when, from the cache

    def price(self, key: str, region: str) -> float | None:
        found = self.prices.get(key)
        return found.in_region(region) if found else None


def packaged() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("provisioner.cost").joinpath("catalog.json").read_text(encoding="utf-8")
    )
    return data


def cache_path(home: Path | None = None) -> Path:
    return (home or mlstack_home()) / CACHE_NAME


def load(home: Path | None = None) -> Catalog:
    """The packaged catalog with the refreshed figures of ``$MLSTACK_HOME/prices.json`` on top."""
    return _load(str(cache_path(home)), _mtime(cache_path(home)))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@cache
def _load(path: str, _mtime: float) -> Catalog:
    data = packaged()
    refreshed: dict[str, str] = {}
    if _mtime:
        try:
            overlay = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            overlay = {}  # a broken cache never breaks an estimate: the file stays the fallback
        for key, entry in (overlay.get("prices") or {}).items():
            base = data["prices"].get(key)
            if base is None or not isinstance(entry, dict):
                continue
            regions = {r: float(v) for r, v in (entry.get("regions") or {}).items() if _number(v)}
            base["regions"] = {**base["regions"], **regions}
            base["source"] = entry.get("source", base["source"])
            base["date"] = entry.get("date", base["date"])
            refreshed[key] = base["date"]
    return Catalog.model_validate(data | {"refreshed": refreshed})


def _number(value: Any) -> bool:
    try:
        return float(value) >= 0
    except (TypeError, ValueError):
        return False
