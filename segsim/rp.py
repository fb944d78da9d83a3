"""Ruddlesden-Popper (RP) domains: phase field, energy, seeding and observables.

Model (MODEL.md sections 2-3), with the choices segsim makes where MODEL.md is silent:

* **Phase field.** One ``uint8`` code per grid site (:data:`PH_PV`, :data:`PH_RP`,
  :data:`PH_ZONE`).  The phase belongs to the site (the lattice region), not to the cation: a
  cation that hops takes the phase of the site it lands on, a vacancy keeps the phase of its
  site.
* **Energy.** ``E_RP = sum over cation sites in RP of (eps_RP - eta [Cd]) + J_RP * (number of
  RP/perovskite nearest-neighbour pairs of cation sites)``.  Only sites holding Pb or Cd count,
  so V -> O (surface recession) leaves ``E_RP`` unchanged, as MODEL.md requires.
* **Zones.** An RP fault is an extra CsBr rock-salt layer with the perovskite blocks shifted by
  (a/2, a/2, 0).  The lattice model cannot create that layer, so RP exists only inside the
  zone where a fault was seeded at synthesis: a slab of ``thickness_layers`` B layers under one
  face, covering a centred square of ``width_fraction`` of the face's edge.  Inside the zone a
  site switches RP <-> perovskite (:data:`PH_ZONE`: relaxed perovskite in a zone); outside it
  is always perovskite.  A switch is allowed for a cation site on the surface or with a crystal
  neighbour that is not RP (MODEL.md: relaxation proceeds from the surface and from RP/
  perovskite boundaries), in both directions, so detailed balance holds.
* **Seeding at synthesis** (issue 5): with probability ``probability`` an NC gets one zone
  (all RP), on a face drawn at random; the Cd arrangement is then equilibrated by canonical
  MC at the synthesis temperature with the RP term present (``-eta`` per Cd on an RP site:
  Cd enrichment of the RP domain), then quenched.

Parameters and their provenance live in ``potentials/rp.yaml``, read by
:mod:`segsim.params.rp` (re-exported here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segsim import species
from segsim.kernels.rp import PH_PV, PH_RP, PH_ZONE
from segsim.params.rp import RPEnergetics, RPSeeding, load_rp_defaults

__all__ = [
    "PH_PV",
    "PH_RP",
    "PH_ZONE",
    "RPEnergetics",
    "RPSeeding",
    "cluster_sizes",
    "load_rp_defaults",
    "rp_energy_ev",
    "rp_observables",
    "seed_zone",
]


def empty_phase(n_sites: int) -> np.ndarray:
    """Return an all-perovskite phase field."""
    return np.zeros(n_sites, dtype=np.uint8)


def seed_zone(
    lattice: Any,
    seeding: RPSeeding,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return a phase field with (with probability ``seeding.probability``) one RP zone.

    Two draws from ``rng`` always happen (whether there is a zone, and its face), so the
    stream consumed does not depend on the outcome.  The zone is a slab of
    ``thickness_layers`` B layers under the chosen face of the as-built cube, over a centred
    square of side ``round(width_fraction * n)`` sites; all of it starts as RP.
    """
    phase = empty_phase(lattice.n_sites)
    has = rng.random() < seeding.probability
    face = int(rng.integers(6))
    if not has:
        return phase
    n = lattice.n_edge
    lo, hi = lattice.pad, lattice.pad + n - 1
    w = max(1, min(n, round(seeding.width_fraction * n)))
    t = max(1, min(n, seeding.thickness_layers))
    start = lattice.pad + (n - w) // 2
    axis, side = divmod(face, 2)
    c = lattice.coords
    mask = lattice.in_nc.copy()
    for ax in range(3):
        if ax == axis:
            mask &= (c[:, ax] <= lo + t - 1) if side == 0 else (c[:, ax] >= hi - t + 1)
        else:
            mask &= (c[:, ax] >= start) & (c[:, ax] < start + w)
    phase[mask] = PH_RP
    return phase


def rp_energy_ev(
    occupations: np.ndarray, phase: np.ndarray, nn: np.ndarray, energetics: RPEnergetics
) -> float:
    """Return ``E_RP`` in eV (full sum; the compiled kernels use local changes of it)."""
    cat = occupations <= species.CD
    rp = (phase == PH_RP) & cat
    e = (
        energetics.eps_rp_ev * rp.sum()
        - energetics.eta_ev * (rp & (occupations == species.CD)).sum()
    )
    # Each RP/perovskite pair of cation sites once: count from the RP end only.
    nbr_cat = cat[nn]
    nbr_rp = phase[nn] == PH_RP
    pairs = (rp[:, None] & nbr_cat & ~nbr_rp).sum()
    return float(e + energetics.j_rp_ev * pairs)


#: Fewest connected RP cation sites that count as an RP *domain* (:func:`rp_observables`).
MIN_DOMAIN_SITES: int = 8


def cluster_sizes(mask: np.ndarray, nn: np.ndarray) -> np.ndarray:
    """Return, for every site of ``mask``, the size of its connected cluster (0 elsewhere).

    Clusters are connected through the neighbour table ``nn`` (``(n_sites, n_nbr)``, e.g.
    the six nearest neighbours of the B-site grid).  Label propagation: each marked site
    takes the smallest label among itself and its marked neighbours until nothing changes.
    """
    idx = np.flatnonzero(mask)
    out = np.zeros(mask.shape[0], dtype=np.int64)
    if idx.size == 0:
        return out
    local = np.full(mask.shape[0], -1, dtype=np.int64)
    local[idx] = np.arange(idx.size)
    nbr = local[nn[idx]]  # (n_marked, n_nbr), -1 where the neighbour is not marked
    label = np.arange(idx.size)
    while True:
        cand = np.where(nbr >= 0, label[np.maximum(nbr, 0)], idx.size)
        new = np.minimum(label, cand.min(axis=1))
        new = new[new]  # pointer jumping: follow labels to their own labels
        if np.array_equal(new, label):
            break
        label = new
    out[idx] = np.bincount(label, minlength=idx.size)[label]
    return out


def rp_observables(
    occupations: np.ndarray,
    phase: np.ndarray,
    a_of_x: Any,
    nn: np.ndarray | None = None,
    min_domain_sites: int = MIN_DOMAIN_SITES,
) -> dict[str, float]:
    """Return the RP observables of one state.

    Keys: ``rp_fraction`` (RP share of cation sites, every RP site), ``has_rp`` (1.0 if the
    NC has an RP *domain*: a cluster of at least ``min_domain_sites`` RP cation sites
    connected through ``nn``; with ``nn`` None, any RP cation site), ``x_rp`` / ``x_pv``
    (Cd fraction inside the RP domains / outside them, NaN if empty), ``a_rp_angstrom`` /
    ``a_pv_angstrom`` (Vegard lattice parameter of each region, NaN if empty).

    Why a domain needs :data:`MIN_DOMAIN_SITES` (8) sites: the RP switch is reversible
    (detailed balance), so inside a relaxed zone single sites flicker back to RP at any time,
    with probability ~exp(-dE/kT): with the shipped rp.yaml a lone Cd site costs
    eps_RP - eta + 6 J_RP = 0.10 eV (2 % of the zone's Cd sites at 298 K), a pair 0.18 eV, a
    cluster of n sites ~0.04 n + J_RP x (its surface), so clusters of 1-3 sites come and go
    in every relaxed zone while 8 (0.5 eV) practically never form.  A seeded domain has
    100-300 sites.  Eight sites, a 2 x 2 x 2 block of ~1.2 nm, is also about the least a
    lattice image or a diffraction peak would resolve as RP stacking.  (Before 2026-12-04 a
    domain was two neighbouring sites, which counted thermal pairs in relaxed zones as
    domains; the reproduce tables and calibrations before then used that.)
    """
    cat = occupations <= species.CD
    cd = occupations == species.CD
    rp_all = (phase == PH_RP) & cat
    rp = rp_all if nn is None else cluster_sizes(rp_all, nn) >= min_domain_sites
    pv = cat & ~rp
    n_cat = int(cat.sum())
    n_rp = int(rp.sum())
    n_pv = int(pv.sum())
    has = n_rp > 0
    x_rp = float((cd & rp).sum() / n_rp) if n_rp else float("nan")
    x_pv = float((cd & pv).sum() / n_pv) if n_pv else float("nan")
    return {
        "rp_fraction": int(rp_all.sum()) / n_cat if n_cat else 0.0,
        "has_rp": 1.0 if has else 0.0,
        "x_rp": x_rp,
        "x_pv": x_pv,
        "a_rp_angstrom": float(a_of_x(x_rp)) if n_rp else float("nan"),
        "a_pv_angstrom": float(a_of_x(x_pv)) if n_pv else float("nan"),
    }


def zone_mask(phase: np.ndarray) -> np.ndarray:
    """Return the sites of any RP zone (RP or relaxed)."""
    return (phase == PH_RP) | (phase == PH_ZONE)
