"""Shared fixtures: a seeded generator, random icet cluster expansions, tiny lattices.

The cluster expansions live on the simple-cubic B lattice of CsPbBr3 (one site per primitive
cell, ``a = 5.87`` Angstrom) with the species ``Pb``, ``Cd`` and ``X``.  Useful cutoffs (the
B-B distances are ``a``, ``sqrt(2) a = 8.30``, ``sqrt(3) a = 10.17`` and ``2 a = 11.74``):

* pairs ``[12.0]``: four pair orbits, reach 2 sites;
* ``[12.0, 8.4]``: plus the two triplet orbits with sides ``a``/``sqrt(2) a``;
* ``[12.0, 8.4, 8.4]``: plus three quadruplet orbits (triplets and quadruplets need a cutoff
  of at least ``sqrt(2) a``, about 8.31 Angstrom).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from ase import Atoms
from icet import ClusterExpansion, ClusterSpace

from segsim import species
from segsim.lattice import Lattice, build_cube

#: Pseudo-cubic lattice constant (B-B distance) of the test cluster expansions, Angstrom.
A_ANGSTROM = 5.87

#: Chemical symbols of the B sublattice in the cluster expansion (three species; with
#: ``separate_vacancy`` the four of :data:`segsim.species.CE_SYMBOLS_SEPARATE_V`).
CE_SPECIES = ("Pb", "Cd", "X")


@functools.cache
def _cluster_space(cutoffs: tuple[float, ...], separate_vacancy: bool = False) -> ClusterSpace:
    prim = Atoms("Pb", positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * A_ANGSTROM, pbc=True)
    symbols = list(species.CE_SYMBOLS_SEPARATE_V) if separate_vacancy else list(CE_SPECIES)
    return ClusterSpace(prim, list(cutoffs), [symbols])


def random_cluster_expansion(
    cutoffs: Sequence[float],
    rng: np.random.Generator,
    *,
    scale: float = 0.05,
    zerolet: float | None = None,
    separate_vacancy: bool = False,
) -> ClusterExpansion:
    """Return an icet CE with parameters drawn from ``N(0, scale**2)`` eV (per site).

    ``zerolet`` overrides the constant term when given; ``separate_vacancy`` gives a
    four-species CE (Pb, Cd, V, X).
    """
    cs = _cluster_space(tuple(float(c) for c in cutoffs), separate_vacancy)
    params = rng.normal(0.0, scale, size=len(cs))
    if zerolet is not None:
        params[0] = zerolet
    return ClusterExpansion(cs, params)


def cluster_expansion_with(cutoffs: Sequence[float], params: np.ndarray) -> ClusterExpansion:
    """Return an icet CE with the given parameter vector."""
    cs = _cluster_space(tuple(float(c) for c in cutoffs))
    params = np.asarray(params, dtype=np.float64)
    if params.shape != (len(cs),):
        raise ValueError(f"need {len(cs)} parameters, got {params.shape}")
    return ClusterExpansion(cs, params)


def n_parameters(cutoffs: Sequence[float]) -> int:
    """Return the number of CE parameters for ``cutoffs``."""
    return len(_cluster_space(tuple(float(c) for c in cutoffs)))


@functools.cache
def cube(n_edge: int, pad: int) -> Lattice:
    """Return the (cached, immutable) lattice of an ``n_edge`` cube with ``pad`` outside layers."""
    return build_cube(n_edge, A_ANGSTROM, pad)


def random_nc_occupations(
    lattice: Lattice,
    rng: np.random.Generator,
    *,
    p_cd: float = 0.35,
    p_vac: float = 0.15,
) -> np.ndarray:
    """Return occupations with Pb/Cd/V drawn independently on NC sites and O outside."""
    occ = np.full(lattice.n_sites, species.OUT, dtype=species.OCC_DTYPE)
    nc = np.flatnonzero(lattice.in_nc)
    occ[nc] = rng.choice(
        np.array([species.PB, species.CD, species.VAC], dtype=species.OCC_DTYPE),
        size=nc.size,
        p=[1.0 - p_cd - p_vac, p_cd, p_vac],
    )
    return occ


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator for each test."""
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def make_ce() -> Callable[..., ClusterExpansion]:
    """Factory ``make_ce(cutoffs, rng, *, scale=0.05, zerolet=None)`` of random CEs."""
    return random_cluster_expansion


@pytest.fixture(scope="session")
def make_ce_with() -> Callable[..., ClusterExpansion]:
    """Factory ``make_ce_with(cutoffs, params)`` of CEs with given parameters."""
    return cluster_expansion_with


@pytest.fixture(scope="session")
def n_params() -> Callable[[Sequence[float]], int]:
    """``n_params(cutoffs)``: the number of CE parameters."""
    return n_parameters


@pytest.fixture(scope="session")
def make_cube() -> Callable[[int, int], Lattice]:
    """Factory ``make_cube(n_edge, pad)`` of cached NC lattices (``a = 5.87`` Angstrom)."""
    return cube


@pytest.fixture(scope="session")
def nc_occupations() -> Callable[..., np.ndarray]:
    """Factory ``nc_occupations(lattice, rng, *, p_cd=0.35, p_vac=0.15)``."""
    return random_nc_occupations


@pytest.fixture(scope="session")
def tiny_cube() -> Lattice:
    """A 3 x 3 x 3 NC with two outside layers (7**3 grid sites)."""
    return cube(3, 2)
