"""Read-only observables of a state: they return named arrays and never mutate or write."""

from __future__ import annotations

import numpy as np

from segsim import species


def cd_fraction_by_depth(occupations: np.ndarray, depth: np.ndarray, n_layers: int) -> np.ndarray:
    """Return the Cd fraction x = N_Cd / (N_Cd + N_Pb) in each depth layer (the profile).

    Parameters
    ----------
    occupations
        Species codes per site.
    depth
        Layer index per site (0 = surface shell; -1 = outside), e.g. ``Lattice.depth``.
    n_layers
        Number of layers to report; layers without cations give NaN.
    """
    inside = depth >= 0
    d = depth[inside]
    occ = occupations[inside]
    n_cd = np.bincount(d, weights=(occ == species.CD), minlength=n_layers)[:n_layers]
    n_cat = np.bincount(d, weights=(occ <= species.CD), minlength=n_layers)[:n_layers]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_cat > 0, n_cd / np.maximum(n_cat, 1), np.nan)


def composition(occupations: np.ndarray) -> dict[str, float]:
    """Return species counts and x = N_Cd / (N_Cd + N_Pb) of the whole crystal."""
    counts = np.bincount(occupations, minlength=species.N_SPECIES)
    n_pb, n_cd = int(counts[species.PB]), int(counts[species.CD])
    return {
        "n_pb": n_pb,
        "n_cd": n_cd,
        "n_vac": int(counts[species.VAC]),
        "x_cd": n_cd / (n_pb + n_cd) if n_pb + n_cd else float("nan"),
    }
