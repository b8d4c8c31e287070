"""The resource model (Alg. 3's "Calculate R_tot^req"): capacity, simulated and real datasets,
one decision tree per pool, its artifacts and its explanations.

Light names are imported eagerly; the ones that need scikit-learn (``load_model``,
``ModelHandle``, ``train_from_points``, ``explain``) load on first use, so the pure policy can
import ``RequiredCounts`` without paying for scikit-learn.
"""

from __future__ import annotations

from typing import Any

from .capacity import Capacity, CapacityError, PoolCapacity, RequiredCounts, load_capacity

_LAZY = {
    "ModelError": "train",
    "ModelHandle": "train",
    "ResourceModel": "train",
    "load_model": "train",
    "train_from_points": "train",
    "train_synthetic": "train",
    "explain": "explain",
    "Explanation": "explain",
}

__all__ = ["Capacity", "CapacityError", "PoolCapacity", "RequiredCounts", "load_capacity",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
