"""How a nanocrystal is made before the kinetics start (the issue 5 synthesis protocol).

Random Cd (and optional internal vacancies) on the cube; with a ``synthesis`` section, one
Ruddlesden-Popper zone under a random face with probability ``rp_probability``
(:func:`segsim.rp.seed_zone`), then canonical MC of the Pb/Cd arrangement at the synthesis
temperature with the RP term present, then a quench.  Every draw comes from the run's
generator, so a synthesis is reproducible from the seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segsim import lattice as lat
from segsim import species
from segsim.config import SimulationConfig
from segsim.engine import MCEngine, MCState

__all__ = ["initial_kmc_occupations", "synthesise"]


def initial_kmc_occupations(
    lattice: lat.Lattice, x_cd: float, vacancy_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Return random NC occupations with ``round(vacancy_fraction * n**3)`` vacancies.

    Cd is placed first (``round(x_cd * n**3)`` sites, uniformly at random), then vacancies
    replace randomly chosen Pb sites, so ``x`` of the cations is slightly above ``x_cd`` when
    vacancies are present.
    """
    occ = lat.random_occupations(lattice, x_cd, rng)
    n_vac = round(vacancy_fraction * lattice.n_nc_sites)
    if n_vac:
        pb = np.flatnonzero(occ == species.PB)
        if n_vac > pb.size:
            raise ValueError("vacancy_fraction leaves no room for the Pb sites")
        occ[rng.choice(pb, size=n_vac, replace=False)] = species.VAC
    return occ


def synthesise(
    cfg: SimulationConfig, lattice: lat.Lattice, tables: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return the occupations and RP phase field of a freshly made NC.

    Random Cd (and ``system.vacancy_fraction`` vacancies); without a ``synthesis`` section
    that is all (no RP).  With it: one RP zone with probability ``rp_probability``
    (:func:`segsim.rp.seed_zone`), then canonical MC of the Pb/Cd arrangement at the
    synthesis temperature with the RP term (``mc_sweeps`` trial swaps per cation site), then
    the quench (the arrangement is kept as is).  Every draw comes from ``rng``.
    """
    from segsim import rp as _rp

    occ = initial_kmc_occupations(lattice, cfg.system.x_cd, cfg.system.vacancy_fraction, rng)
    syn = cfg.synthesis
    if syn is None:
        return occ, _rp.empty_phase(lattice.n_sites)
    seeding = _rp.RPSeeding(syn.rp_probability, syn.rp_thickness_layers, syn.rp_width_fraction)
    phase = _rp.seed_zone(lattice, seeding, rng)
    n_cat = int(np.count_nonzero(occ <= species.CD))
    if syn.mc_sweeps and n_cat:
        state = MCState.initial(occ, tables, phase)
        mc = MCEngine(
            tables, state, rng, temperature_k=syn.temperature_k, rp=cfg.rp, lattice=lattice
        )
        mc.advance(syn.mc_sweeps * n_cat)
        occ = state.occupations
    return occ, phase
