"""Formulas: vacancy formation free energy, recession free energy, equilibrium fraction.

All energies in eV, temperatures in K.  See :mod:`segsim.defects` for the defect chemistry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from segsim.defects.chemistry import ChemicalPotentials

#: Boltzmann constant, eV/K (CODATA 2018, exact in SI).
BOLTZMANN_EV_PER_K: float = 8.617333262e-5

#: Orientations of the trans Br pair that an isolated interior V loses (x, y, z): the
#: atomistic degeneracy of one lattice-model V, if the three are equal in energy.
TRANS_PAIR_ORIENTATIONS: int = 3


def vacancy_formation_energy_ev(
    e_defect_ev: float,
    e_host_ev: float,
    units: Mapping[str, int],
    mu: ChemicalPotentials,
) -> float:
    """Return ``G_f = E(defect) - E(host) + sum_u n_u mu_u`` (eV).

    Parameters
    ----------
    e_defect_ev, e_host_ev
        Energies of the structure with the defect and of the host (same cell or NC), eV.
    units
        Units the defect structure lacks (:func:`segsim.defects.chemistry.exchanged_units`):
        one PbBr2 for the model's vacancy.
    mu
        Chemical potentials of the reservoirs.
    """
    return float(e_defect_ev - e_host_ev + mu.reservoir_energy_ev(units))


def recession_energy_ev(
    e_receded_ev: float, e_vacancy_ev: float, n_csbr_gained: int, mu_csbr_ev: float
) -> float:
    """Return ``dOmega_rec = E(O state) - E(V state) - n mu_CsBr`` (eV).

    Parameters
    ----------
    e_receded_ev
        Energy of the structure with the site outside (O), eV.
    e_vacancy_ev
        Energy of the structure with the site a vacancy (V), eV.
    n_csbr_gained
        CsBr units the O structure has more than the V structure (negative if fewer):
        ``-exchanged_units(V, O)["CsBr"]``.
    mu_csbr_ev
        Chemical potential of CsBr, eV.
    """
    return float(e_receded_ev - e_vacancy_ev - n_csbr_gained * mu_csbr_ev)


def equilibrium_fraction(
    g_f_ev: float | np.ndarray, temperature_k: float, degeneracy: int = 1
) -> float | np.ndarray:
    """Return ``c_eq = g exp(-G_f / (k_B T))``, vacancies per B site (dilute limit).

    Parameters
    ----------
    g_f_ev
        Formation free energy, eV.
    temperature_k
        Temperature, K (> 0).
    degeneracy
        ``g``: atomistic states of one vacancy (1: the lattice model; 3: the trans Br pair
        orientations, :data:`TRANS_PAIR_ORIENTATIONS`).

    Notes
    -----
    For ``G_f < 0`` the dilute formula exceeds 1 and no longer applies: the crystal is unstable
    against losing PbBr2 under those chemical potentials.  The value is returned as is.
    """
    if not temperature_k > 0:
        raise ValueError(f"temperature_k must be positive, got {temperature_k}")
    if degeneracy < 1:
        raise ValueError(f"degeneracy must be >= 1, got {degeneracy}")
    return degeneracy * np.exp(-np.asarray(g_f_ev) / (BOLTZMANN_EV_PER_K * temperature_k))


def fraction_interval(
    g_f_ev: float, sigma_ev: float, temperature_k: float, degeneracy: int = 1
) -> tuple[float, float, float]:
    """Return ``(c(G_f), c(G_f + sigma), c(G_f - sigma))``: the fraction and its 1-sigma range.

    The fraction is log-normal in ``G_f``, so the interval is asymmetric; ``sigma_ev`` is the
    standard error of ``G_f`` (eV), e.g. :func:`combine` of the start SEMs and the
    calculator spread.
    """
    c = float(equilibrium_fraction(g_f_ev, temperature_k, degeneracy))
    lo = float(equilibrium_fraction(g_f_ev + abs(sigma_ev), temperature_k, degeneracy))
    hi = float(equilibrium_fraction(g_f_ev - abs(sigma_ev), temperature_k, degeneracy))
    return c, lo, hi


def mean_sem(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and its standard error ``std(ddof=1) / sqrt(n)`` (nan for n < 2)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values")
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), sem


def combine(*sigmas: float) -> float:
    """Return ``sqrt(sum sigma^2)`` of independent errors (nan terms propagate)."""
    return float(math.sqrt(sum(s * s for s in sigmas)))
