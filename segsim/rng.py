"""The one random-number convention: a seeded ``numpy.random.Generator`` and its checkpoint form.

Every run draws from one PCG64 generator made by :func:`make_rng` from the input's seed;
the generator is passed into the compiled kernels (which advance it) and its state is stored
in every checkpoint as JSON (:func:`state_to_json`), so that a resumed run continues the same
stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["make_rng", "state_from_json", "state_to_json"]


def make_rng(seed: int | np.random.SeedSequence) -> np.random.Generator:
    """Return the PCG64 generator of a run seeded by ``seed`` (an int or a SeedSequence)."""
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.Generator(np.random.PCG64(seq))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    raise TypeError(type(o))


def state_to_json(state: Mapping[str, Any]) -> str:
    """Serialise ``Generator.bit_generator.state`` (PCG64 ints are arbitrary precision)."""
    return json.dumps(state, default=_json_default)


def state_from_json(text: str) -> dict[str, Any]:
    """Inverse of :func:`state_to_json`."""
    return dict(json.loads(text))
