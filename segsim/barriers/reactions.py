"""Reaction energies of the surface events that have no transition state in vacuum.

Expulsion of a surface B cation M into the solution removes a neutral MBr2 unit
(:mod:`segsim.defects`); recession exchanges CsBr with the solution.  In both the products
are solvated, ligand-bound species: a transition state between the NC and the solution cannot
be defined with a universal potential in vacuum (no solvent, no ligands), so only the
reaction energy is computed, and the barrier of the KMC stays a calibrated number that must
be at least that reaction energy minus the solvation gain (``docs/barriers.md``).

Removal reaction energy of M from site s of a NC (eV)::

    dE_rm(M, s) = E(NC with V on s) + mu_MBr2 - E(NC with M on s)

with ``mu_PbBr2`` in the CsBr-rich limit (``E_bulk(CsPbBr3) - E(rock-salt CsBr)`` per formula
unit, the limit the KMC's ``delta_mu_csbr_ev = 0`` stands for) and ``mu_CdBr2`` the energy of
bulk CdBr2 (CdCl2 type; the saturated solution: a real, undersaturated solution lowers
``mu`` by ``k T ln(c / c_sat)``, which makes the removal easier).  All structures are
relaxed at fixed cell from their ideal positions (no rattle), like the NEB end points.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from ase import Atoms

from segsim import species
from segsim.atomistic import to_atoms
from segsim.barriers.neb import (
    NEBSettings,
    cubic_lattice_constant,
    cubic_perovskite,
    relax_positions,
)
from segsim.barriers.paths import surface_site
from segsim.lattice import build_cube

__all__ = ["SITES", "cdbr2_cdcl2", "csbr_rocksalt", "removal_energies"]

#: Surface sites of the removal: name -> grid offset rule on an n^3 NC (pad 1).
SITES: tuple[str, ...] = ("face", "edge", "corner")


def cdbr2_cdcl2() -> Atoms:
    """CdBr2, CdCl2 type (R-3m, hexagonal setting; a 3.95, c 18.67 Angstrom start)."""
    from ase.spacegroup import crystal

    return crystal(
        ["Cd", "Br"],
        basis=[(0, 0, 0), (0, 0, 0.25)],
        spacegroup=166,
        cellpar=[3.95, 3.95, 18.67, 90, 90, 120],
    )


def csbr_rocksalt() -> Atoms:
    """CsBr in the rock-salt structure (the CE's CsBr reference; conventional cell)."""
    from ase.build import bulk

    return bulk("CsBr", "rocksalt", a=7.2, cubic=True)


def _relax_cell(atoms: Atoms, calc: Any) -> float:
    """Relax positions and cell (Frechet filter); return the energy per formula unit (eV)."""
    from ase import optimize
    from ase.filters import FrechetCellFilter

    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimize.BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.01, steps=300)
    counts = {
        el: atoms.get_chemical_symbols().count(el) for el in set(atoms.get_chemical_symbols())
    }
    n_fu = min(counts.values()) if "Cs" in counts else counts.get("Cd", counts.get("Pb", 1))
    return float(atoms.get_potential_energy()) / n_fu


def removal_energies(
    calc: Any,
    *,
    n_edge: int = 4,
    vacuum_angstrom: float = 8.0,
    settings: NEBSettings | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Compute ``dE_rm`` of Pb and Cd from the face, edge and corner of an ``n_edge^3`` NC.

    Returns
    -------
    dict
        ``{"mu_ev": {...}, "a_angstrom": ..., "sites": {site: {"pb": dE, "cd": dE}},
        "relaxations": {...}}`` (eV).
    """
    say = log or (lambda _m: None)
    s = settings or NEBSettings()
    t0 = time.perf_counter()
    a = cubic_lattice_constant(calc)
    cell = cubic_perovskite(a)
    cell.calc = calc
    e_bulk = float(cell.get_potential_energy())
    e_csbr = _relax_cell(csbr_rocksalt(), calc)
    e_cdbr2 = _relax_cell(cdbr2_cdcl2(), calc)
    mu = {"pbbr2_csbr_rich": e_bulk - e_csbr, "cdbr2_bulk": e_cdbr2}
    say(f"a {a:.4f} A, mu_PbBr2 {mu['pbbr2_csbr_rich']:.4f}, mu_CdBr2 {e_cdbr2:.4f} eV")
    lat = build_cube(n_edge, 1.0, pad=1)
    base = np.where(lat.in_nc, species.PB, species.OUT).astype(species.OCC_DTYPE)
    cache: dict[str, dict[str, Any]] = {}

    def energy(label: str, occ: np.ndarray) -> float:
        if label not in cache:
            atoms = to_atoms(lat, occ, a_angstrom=a, vacuum_angstrom=vacuum_angstrom)
            cache[label] = relax_positions(atoms, calc, s)
            say(f"{label}: {cache[label]['energy_ev']:.4f} eV ({cache[label]['n_steps']} steps)")
        return float(cache[label]["energy_ev"])

    e_nc = energy("nc", base)
    sites: dict[str, dict[str, float]] = {}
    for where in SITES:
        i = int(lat.site_index(*(np.array([c]) for c in surface_site(n_edge, where)))[0])
        occ_v = base.copy()
        occ_v[i] = species.VAC
        e_v = energy(f"v_{where}", occ_v)
        occ_cd = base.copy()
        occ_cd[i] = species.CD
        e_cd = energy(f"cd_{where}", occ_cd)
        sites[where] = {
            "pb": round(e_v + mu["pbbr2_csbr_rich"] - e_nc, 4),
            "cd": round(e_v + mu["cdbr2_bulk"] - e_cd, 4),
        }
    return {
        "a_angstrom": a,
        "n_edge": n_edge,
        "mu_ev": mu,
        "sites": sites,
        "relaxations": cache,
        "seconds": time.perf_counter() - t0,
    }
