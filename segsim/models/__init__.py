"""Energy models: an explicit registry from the YAML ``model.kind`` to a loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: YAML ``model.kind`` -> "module:function" loading a model from a file path (lazy imports).
MODEL_KINDS: dict[str, str] = {
    "cluster_expansion": "segsim.models.cluster_expansion:load_cluster_expansion",
}


def load_model(kind: str, path: str | Path) -> Any:
    """Load the energy model of ``kind`` from ``path``."""
    import importlib

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {sorted(MODEL_KINDS)}")
    module, func = MODEL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), func)(path)
