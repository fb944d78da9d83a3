"""Cd arrangements on a cubic NC lattice: uniform, surface-segregated, core-segregated, profiles.

These are the three configurations of the published DFT study (uniform, surface-segregated and
core-segregated Cd in ~3 nm CsCd0.25Pb0.75Br3 NCs, see ``docs/model.md``) plus
arbitrary depth profiles, built on a :class:`segsim.lattice.Lattice`.  The physics checks of the
provisional CE and the reference-energy pipeline (training set) both use them.

Every builder returns a ``uint8`` occupation array of the whole padded grid (``O`` outside the
NC, Pb or Cd inside) with exactly ``round(x_cd * n**3)`` Cd.  Depth layers are those of the
as-built cube, :attr:`segsim.lattice.Lattice.depth` (0 = surface shell).

Tie-breaking
------------
When a layer is only partly filled, which of its sites get Cd is decided by a random
permutation from ``rng``; with ``rng=None`` a generator seeded with :data:`DEFAULT_TIE_SEED` is
used, so the result is deterministic.  Inside a partly filled layer Cd is thus spread as in a
random alloy, and "surface-segregated" differs from "uniform" only in its depth profile, not in
its lateral order.  The core-segregated builder first prefers the sites closest (Euclidean) to
the NC centre, so that its Cd forms one compact cluster.
"""

from __future__ import annotations

import numpy as np

from segsim import observers, species
from segsim.lattice import Lattice, n_cd_for, random_occupations

__all__ = [
    "cd_fraction_by_depth",
    "core_segregated_occupations",
    "layer_counts",
    "layer_profile_occupations",
    "layer_sizes",
    "n_cd_for",
    "surface_segregated_occupations",
    "uniform_occupations",
]

#: Seed of the generator used for tie-breaking when no ``rng`` is given.
DEFAULT_TIE_SEED: int = 0


def layer_sizes(lattice: Lattice) -> np.ndarray:
    """Return the number of NC sites in each depth layer (index 0 = surface shell)."""
    return np.bincount(lattice.depth[lattice.in_nc], minlength=lattice.n_layers).astype(np.int64)


def cd_fraction_by_depth(lattice: Lattice, occupations: np.ndarray) -> np.ndarray:
    """Return Cd / (Pb + Cd) in each as-built depth layer (NaN for a layer without cations).

    Parameters
    ----------
    lattice
        The NC lattice.
    occupations
        Species codes of the grid (``uint8``, shape ``(n_sites,)``).
    """
    occ = _check_occupations(lattice, occupations)
    return observers.cd_fraction_by_depth(occ, lattice.depth, lattice.n_layers)


def uniform_occupations(lattice: Lattice, x_cd: float, rng: np.random.Generator) -> np.ndarray:
    """Return a random alloy: ``round(x_cd * n**3)`` Cd on uniformly random NC sites.

    The same as :func:`segsim.lattice.random_occupations` (the start of every simulation);
    named here next to the other arrangements of the training set.

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    rng
        Source of randomness (average over several generators for a "uniform" energy).
    """
    return random_occupations(lattice, x_cd, rng)


def surface_segregated_occupations(
    lattice: Lattice, x_cd: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return Cd filling the outermost depth layers first (surface shell, then the next, ...).

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    rng
        Tie-breaking inside the partly filled layer (random sites of that layer); ``None``
        uses a generator seeded with :data:`DEFAULT_TIE_SEED` (deterministic).
    """
    n_cd = n_cd_for(lattice, x_cd)
    sites = np.flatnonzero(lattice.in_nc)
    tie = _tie_keys(sites.size, rng)
    order = np.lexsort((tie, lattice.depth[sites]))  # depth ascending, then random
    return _place(lattice, sites[order[:n_cd]])


def core_segregated_occupations(
    lattice: Lattice, x_cd: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return Cd filling the innermost depth layers first: one compact Cd cluster in the core.

    Sites are taken by depth descending; inside the partly filled layer, those closest to the
    NC centre (Euclidean) first, remaining ties broken by a random permutation.

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    rng
        Tie-breaking among equidistant sites of the partly filled layer; ``None`` uses a
        generator seeded with :data:`DEFAULT_TIE_SEED` (deterministic).
    """
    n_cd = n_cd_for(lattice, x_cd)
    sites = np.flatnonzero(lattice.in_nc)
    # Twice the coordinates relative to the NC centre (pad + (n - 1) / 2) are integers, so the
    # squared distances are exact.
    rel2 = 2 * lattice.coords[sites].astype(np.int64) - (2 * lattice.pad + lattice.n_edge - 1)
    dist2 = (rel2**2).sum(axis=1)
    tie = _tie_keys(sites.size, rng)
    order = np.lexsort((tie, dist2, -lattice.depth[sites]))
    return _place(lattice, sites[order[:n_cd]])


def layer_counts(lattice: Lattice, x_cd: float, weights: np.ndarray) -> np.ndarray:
    """Return the number of Cd per depth layer for a relative depth profile ``weights``.

    The Cd fraction of layer ``l`` is proportional to ``weights[l]`` (capped at 1; the excess
    goes to the other layers in proportion to their weights), and the counts are rounded so
    that they sum to exactly ``round(x_cd * n**3)`` (largest remainders, ties to the outer
    layer).

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    weights
        Non-negative relative Cd fraction per depth layer, length ``lattice.n_layers``
        (index 0 = surface shell).
    """
    n_cd = n_cd_for(lattice, x_cd)
    size = layer_sizes(lattice)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != size.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(
            f"weights must be {size.size} finite non-negative numbers, got {np.asarray(weights)}"
        )
    if n_cd > int(size[w > 0].sum()):
        raise ValueError(f"{n_cd} Cd do not fit in the layers with positive weight")
    target = np.zeros(size.size)
    full = np.zeros(size.size, dtype=bool)
    while True:  # water-filling: fill layers that would overflow, rescale the rest
        free = (w > 0) & ~full
        remaining = n_cd - size[full].sum()
        denom = (w[free] * size[free]).sum()
        if remaining <= 0 or denom == 0:
            break
        trial = remaining * w * size / denom
        over = free & (trial >= size)
        if not over.any():
            target[free] = trial[free]
            break
        full |= over
        target[over] = size[over]
    counts = np.minimum(np.floor(target + 1e-9).astype(np.int64), size)
    short = n_cd - int(counts.sum())
    frac = np.where((counts < size) & (w > 0), target - counts, -np.inf)
    for layer in np.lexsort((np.arange(size.size), -frac))[:short]:
        counts[layer] += 1
    if int(counts.sum()) != n_cd or np.any(counts > size):
        raise RuntimeError("layer_counts: rounding failed")  # pragma: no cover
    return counts


def layer_profile_occupations(
    lattice: Lattice,
    x_cd: float,
    weights: np.ndarray,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Return Cd distributed over depth layers with relative fractions ``weights``.

    ``weights = ones`` gives a layer-resolved uniform alloy; weights decreasing with depth give
    intermediate surface enrichment (see :func:`layer_counts` for the counts).  Inside each
    layer the Cd sites are random.

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    weights
        Non-negative relative Cd fraction per depth layer (index 0 = surface shell).
    rng
        Picks the sites inside each layer; ``None`` uses a generator seeded with
        :data:`DEFAULT_TIE_SEED` (deterministic).
    """
    counts = layer_counts(lattice, x_cd, weights)
    sites = np.flatnonzero(lattice.in_nc)
    tie = _tie_keys(sites.size, rng)
    depth = lattice.depth[sites]
    order = np.lexsort((tie, depth))
    start = np.concatenate([[0], np.cumsum(layer_sizes(lattice))[:-1]])
    chosen = [sites[order[s : s + c]] for s, c in zip(start, counts, strict=True)]
    return _place(lattice, np.concatenate(chosen))


def _tie_keys(n: int, rng: np.random.Generator | None) -> np.ndarray:
    """Return a random permutation of ``range(n)`` used as the last sort key."""
    gen = np.random.default_rng(DEFAULT_TIE_SEED) if rng is None else rng
    return gen.permutation(n)


def _place(lattice: Lattice, cd_sites: np.ndarray) -> np.ndarray:
    """Return the as-built NC (all Pb) with Cd on ``cd_sites``."""
    occ = lattice.empty_occupations()
    occ[cd_sites] = species.CD
    return occ


def _check_occupations(lattice: Lattice, occupations: np.ndarray) -> np.ndarray:
    occ = np.asarray(occupations)
    if occ.dtype != species.OCC_DTYPE or occ.shape != (lattice.n_sites,):
        raise ValueError(
            f"occupations must be uint8 of shape ({lattice.n_sites},), got {occ.dtype} {occ.shape}"
        )
    return occ
