"""The provisional, hand-made cluster expansion (``potentials/provisional.ce``).

PROVISIONAL: these numbers are chosen by hand, not fitted to any reference data.  They let the
quickstart and the engines run before the fitted CE of issue 3 exists, and they reproduce the
qualitative facts of the published DFT study (``docs/model.md``): Cd clustered in the
core is very unfavourable, uniform and surface-segregated Cd are close in energy, and the
surface costs energy.

The model is a nearest-neighbour pair model on the simple-cubic B lattice with species Pb, Cd
and X (X = no B cation, i.e. vacancy ``V`` or outside ``O``):

    E = sum_i MU[s_i] + sum_<ij> V[s_i, s_j]        (eV, <ij> = nearest-neighbour bonds)

Only two numbers are non-zero (see :data:`PAIR_ENERGIES_EV`), so the energy of any
configuration is

    E = W_CDCD_EV * N(Cd-Cd bonds) + (GAMMA_BOND_EV / 2) * N(cation-X bonds),

measured from bulk CsPbBr3 (Pb-Pb bonds cost 0) and the empty grid (X-X bonds cost 0).  A pair
model with nearest-neighbour bonds is exactly a CE with point clusters and nearest-neighbour
pair clusters; :func:`build_provisional_ce` finds the icet parameters by least squares on
random structures and checks that the residual is at round-off.

The CE predicts eV per B-lattice site of the periodic grid (``total = N_sites * predict``), as
every segsim CE does.

Regenerate the shipped file with ``python -m segsim.training.provisional potentials/provisional.ce``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segsim import species
from segsim.lattice import Lattice

if TYPE_CHECKING:
    from segsim.models.base import ModelTables

#: Pseudo-cubic lattice constant of the CE's primitive cell, Angstrom (seed_targets.yaml).
A_ANGSTROM: float = 5.87

#: Pair cutoff in Angstrom: between the first (5.87 A) and second (8.30 A) neighbour distance,
#: so the CE has nearest-neighbour pairs only (cluster reach 1 site).
CUTOFF_ANGSTROM: float = 7.0

#: CE species on the single B sublattice.
CE_SPECIES: tuple[str, str, str] = ("Pb", "Cd", "X")

#: Effective Cd-Cd nearest-neighbour repulsion (eV per Cd-Cd bond), relative to Pb-Pb and Pb-Cd
#: bonds: w = V(Cd,Cd) + V(Pb,Pb) - 2 V(Pb,Cd).  Two CdBr6 octahedra sharing a corner Br are
#: penalised, so Cd avoids Cd: the compact core cluster of a 3 nm NC at x = 0.25 (31 Cd with 58
#: Cd-Cd bonds instead of ~16 in a random alloy) costs 1.26 eV per NC, 41 meV per Cd, the
#: published "very unfavourable".  Rationale (phenomenological, not derived): Cd2+
#: (0.95 A) is much smaller than Pb2+ (1.19 A) and does not form a stable corner-sharing
#: perovskite (CsCdBr3 is hexagonal, and x stays <= ~0.25 in the NCs); an isolated CdBr6 can
#: relax inside the softer PbBr6 framework, neighbouring ones compete for the shared Br.  It is
#: kept near k_B T at 343 K (29.6 meV) so that Cd merely avoids Cd (short-range order) and does
#: not order on a sublattice at the synthesis or aging temperatures.
W_CDCD_EV: float = 0.030

#: Energy of one broken B-B bond (eV): turning a cation-cation bond into two cation-X bonds
#: costs GAMMA = 2 V(M,X) - V(M,M) - V(X,X).  X stands for both vacancies and the outside, so
#: in this model GAMMA alone sets every vacancy and shape energy: a surface energy of
#: GAMMA / (2 a^2) (1.0 meV/A^2 = 0.016 J/m^2), moving a vacancy from a face into the crystal
#: (vacancy injection) or splitting a divacancy costs GAMMA, an interior B-site (PbBr2-type,
#: partial Schottky) vacancy lies 3 GAMMA above a kink site, and a corner cation is 2 GAMMA
#: easier to remove than a face cation.  At fixed shape and no vacancies (canonical MC) it is a
#: constant, so the segregation checks do not depend on it; it matters only to the KMC.
#:
#: Value 0.07 eV (was 0.20 eV, a hand-chosen "passivated-surface scale" with no reference
#: behind it), set from the vacancy energetics, which are what it controls:
#:
#: * 3 GAMMA = 0.21 eV, the size of the partial-Schottky formation energies that DFT finds in
#:   lead-halide perovskites (Walsh et al., Angew. Chem. Int. Ed. 54, 1791 (2015), MAPbI3:
#:   Schottky disorder of order 0.1-0.2 eV per defect, > 0.4 % vacancies at room
#:   temperature); 0.20 eV gave 0.6 eV;
#: * CHGNet (studies/vacancy_energetics/vacancy_energetics.md, 4^3 pure CsPbBr3 NC): vacancy injection costs
#:   +0.03 +/- 0.06 eV averaged over tilted relaxations and +0.086 eV without tilts (5^3 NC:
#:   +0.05 +/- 0.13 eV to depth 1, -0.01 +/- 0.09 eV to the centre), well below 0.20.  Divacancies bind more strongly than that: two face vacancies side by side
#:   +0.14 +/- 0.05 eV (tilted average; +0.02 eV without tilts), a vacancy right below a
#:   surface vacancy +0.16-0.17 eV.  This one-parameter model gives 0.07 eV for all of them;
#:   it cannot make binding stronger than injection, a fitted CE with separate terms can, and
#:   stronger binding favours surface pits (open question, issue 4 note);
#: * the lattice KMC with 0.20 eV keeps every vacancy in surface pits, so only the outer
#:   shell of an NC can lose Cd whatever the barriers (issue 4 note); with 0.07 eV surface
#:   vacancies enter the crystal and core Cd reaches the surface in days, as observed.
#:
#: The price: 0.016 J/m^2 is a low surface energy for a bare surface (an effective value for a
#: ligand-capped NC in solution); one nearest-neighbour parameter cannot set surface and
#: vacancy energies separately, and the vacancy energies are what the dynamics depend on.
#: The same V(M,X) for M = Pb and Cd (next constant).
GAMMA_BOND_EV: float = 0.07

#: Surface segregation energy of Cd per X neighbour (eV):
#: E_seg = [V(Cd,X) - V(Pb,X)] - [V(Cd,Pb) - V(Pb,Pb)].  Zero: a Cd next to the surface costs
#: the same as a Pb there, so apart from the Cd-Cd repulsion a Cd is as happy at the surface as
#: in the bulk and uniform ~ surface-segregated (the DFT study did not publish the sign).
E_SEG_EV: float = 0.0

#: Nearest-neighbour pair energies V(s, t) in eV per bond (symmetric; key "s-t").
#: Pb-Pb = 0 and X-X = 0 fix the zero (bulk CsPbBr3 and the empty grid); Pb-Cd = 0 puts all of
#: the Pb/Cd mixing energy into the Cd-Cd bond; Pb-X = Cd-X = GAMMA/2 is half a broken bond on
#: each side of the surface (Cd-X = Pb-X + E_seg + V(Cd,Pb) - V(Pb,Pb)).
PAIR_ENERGIES_EV: dict[str, float] = {
    "Pb-Pb": 0.0,
    "Pb-Cd": 0.0,
    "Cd-Cd": W_CDCD_EV,
    "Pb-X": GAMMA_BOND_EV / 2,
    "Cd-X": GAMMA_BOND_EV / 2 + E_SEG_EV,
    "X-X": 0.0,
}

#: Point (on-site) energies in eV per site.  All zero: at fixed composition they only add a
#: constant, and expulsion barriers use removal energies relative to a reference site of the
#: same cation (MODEL.md section 3), so they never matter to segsim's dynamics.
POINT_ENERGIES_EV: dict[str, float] = {"Pb": 0.0, "Cd": 0.0, "X": 0.0}

#: Residual (eV per site) above which the pair-model -> CE mapping is rejected.
MAPPING_TOLERANCE_EV: float = 1e-10

#: Number of random structures used to map the pair model on the CE parameters.
_N_FIT_STRUCTURES: int = 40
_FIT_SEED: int = 20240601

LABEL: str = "provisional"
DESCRIPTION: str = (
    "PROVISIONAL hand-made placeholder, not fitted to any reference data: a nearest-neighbour "
    "pair model (Cd-Cd repulsion, equal Pb-X and Cd-X surface bonds) written exactly as an icet "
    "CE so that segsim runs before the fitted CE exists. Replace it with the CE fitted to "
    "reference energies (issue 3)."
)
ENERGY_UNIT: str = "eV per B-lattice site (total = N_sites * predict)"


def pair_matrix_ev() -> np.ndarray:
    """Return the symmetric 3 x 3 matrix ``V[s, t]`` in eV, indexed in :data:`CE_SPECIES` order."""
    v = np.zeros((3, 3))
    for key, value in PAIR_ENERGIES_EV.items():
        s, t = (CE_SPECIES.index(name) for name in key.split("-"))
        v[s, t] = v[t, s] = value
    return v


def point_vector_ev() -> np.ndarray:
    """Return the point energies ``MU[s]`` in eV, indexed in :data:`CE_SPECIES` order."""
    return np.array([POINT_ENERGIES_EV[name] for name in CE_SPECIES])


def pair_model_energy_grid_ev(ce_codes: np.ndarray) -> float:
    """Return the pair-model energy (eV) of a periodic 3D grid of CE species indices.

    Parameters
    ----------
    ce_codes
        Integer array of shape ``(L1, L2, L3)`` (each ``L >= 3``), values 0, 1, 2 for Pb, Cd, X.
    """
    g = np.asarray(ce_codes, dtype=np.int64)
    if g.ndim != 3 or min(g.shape) < 3:
        raise ValueError(f"need a 3D grid with every side >= 3, got shape {g.shape}")
    v = pair_matrix_ev()
    energy = point_vector_ev()[g].sum()
    for axis in range(3):
        energy += v[g, np.roll(g, -1, axis=axis)].sum()
    return float(energy)


def pair_model_energy_ev(lattice: Lattice, occupations: np.ndarray) -> float:
    """Return the pair-model energy (eV) of a segsim grid (same as the CE's total energy).

    Parameters
    ----------
    lattice
        The lattice whose periodic grid ``occupations`` describes.
    occupations
        Species codes (Pb, Cd, V, O) per site; V and O are both X.
    """
    occ = np.asarray(occupations)
    if occ.shape != (lattice.n_sites,):
        raise ValueError(f"occupations must have shape ({lattice.n_sites},), got {occ.shape}")
    code_to_ce = np.array([CE_SPECIES.index(sym) for sym in species.CE_SYMBOLS])
    return pair_model_energy_grid_ev(code_to_ce[occ].reshape(lattice.shape))


def _grid_atoms(ce_codes: np.ndarray) -> Any:
    """Return the ``ase.Atoms`` of a grid of CE species indices (C-order sites)."""
    from ase import Atoms

    shape = ce_codes.shape
    coords = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    return Atoms(
        symbols=[CE_SPECIES[c] for c in ce_codes.reshape(-1)],
        positions=coords * A_ANGSTROM,
        cell=np.diag(np.asarray(shape, dtype=np.float64) * A_ANGSTROM),
        pbc=True,
    )


def _random_grids(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Return ``n`` random grids (sides 3-5, random composition) of CE species indices."""
    grids = []
    for _ in range(n):
        shape = tuple(int(s) for s in rng.integers(3, 6, size=3))
        conc = rng.dirichlet(np.ones(3))
        grids.append(rng.choice(3, size=shape, p=conc))
    return grids


def build_provisional_ce() -> Any:
    """Return the provisional ``icet.ClusterExpansion`` (hand-made pair model, exactly mapped).

    The parameters are the least-squares solution of ``cv @ p = E_pair / N`` over random
    structures; the pair model lies in the CE's function space, so the residual must be at
    round-off (checked against :data:`MAPPING_TOLERANCE_EV`, and on fresh structures).

    Raises
    ------
    RuntimeError
        If the mapping is not exact (a bug, not a tolerance issue).
    """
    from ase import Atoms
    from icet import ClusterExpansion, ClusterSpace

    prim = Atoms("Pb", positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * A_ANGSTROM, pbc=True)
    cs = ClusterSpace(prim, cutoffs=[CUTOFF_ANGSTROM], chemical_symbols=[list(CE_SPECIES)])
    rng = np.random.default_rng(_FIT_SEED)
    grids = _random_grids(_N_FIT_STRUCTURES, rng)
    cvs = np.array([cs.get_cluster_vector(_grid_atoms(g)) for g in grids])
    targets = np.array([pair_model_energy_grid_ev(g) / g.size for g in grids])
    if np.linalg.matrix_rank(cvs) != len(cs):
        raise RuntimeError("random structures do not span the cluster space")
    params, *_ = np.linalg.lstsq(cvs, targets, rcond=None)
    residual = float(np.abs(cvs @ params - targets).max())
    check = _random_grids(10, rng)
    check_cvs = np.array([cs.get_cluster_vector(_grid_atoms(g)) for g in check])
    check_targets = np.array([pair_model_energy_grid_ev(g) / g.size for g in check])
    check_residual = float(np.abs(check_cvs @ params - check_targets).max())
    if max(residual, check_residual) > MAPPING_TOLERANCE_EV:
        raise RuntimeError(
            f"pair model not represented exactly: residual {residual:.3e} eV/site "
            f"(fit), {check_residual:.3e} eV/site (check)"
        )
    metadata = {
        "segsim_label": LABEL,
        "segsim_description": DESCRIPTION,
        "energy_unit": ENERGY_UNIT,
        "segsim_model": "nearest-neighbour pair model E = sum_i MU[s_i] + sum_<ij> V[s_i,s_j]",
        "segsim_pair_energies_ev": dict(PAIR_ENERGIES_EV),
        "segsim_point_energies_ev": dict(POINT_ENERGIES_EV),
        "segsim_w_cdcd_ev": W_CDCD_EV,
        "segsim_gamma_bond_ev": GAMMA_BOND_EV,
        "segsim_e_seg_ev": E_SEG_EV,
        "segsim_mapping_residual_ev_per_site": max(residual, check_residual),
        "segsim_built_by": "segsim.training.provisional.build_provisional_ce",
    }
    ce = ClusterExpansion(cs, params, metadata=metadata)
    # icet stamps user and host names; keep them out of a file shipped with the code.
    ce.metadata["username"] = "segsim"
    ce.metadata["hostname"] = "n/a"
    return ce


def write_provisional(path: str | Path) -> Path:
    """Build the provisional CE and write it to ``path`` (an icet ``.ce`` file).

    Parameters
    ----------
    path
        Output file, conventionally ``potentials/provisional.ce``.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_provisional_ce().write(str(path))
    return path


def segregation_energies_ev(
    tables: ModelTables,
    lattice: Lattice,
    x_cd: float = 0.25,
    uniform_seeds: Iterable[int] = range(8),
) -> dict[str, float]:
    """Return total energies (eV per NC grid) of the three published Cd arrangements.

    Uses :mod:`segsim.training.configurations`: uniform (random alloy, averaged over
    ``uniform_seeds``), surface-segregated and core-segregated (both with the default,
    deterministic tie-breaking).

    Parameters
    ----------
    tables
        The energy model compiled for ``lattice``.
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites.
    uniform_seeds
        Seeds of the random alloys averaged for the uniform energy.

    Returns
    -------
    dict
        ``uniform`` (mean), ``uniform_std`` (standard deviation over seeds), ``surface``,
        ``core``, ``surface_minus_uniform`` and ``core_minus_uniform``, all in eV.
    """
    from segsim.training import configurations as conf

    e_uni = np.array(
        [
            tables.total_energy(conf.uniform_occupations(lattice, x_cd, np.random.default_rng(s)))
            for s in uniform_seeds
        ]
    )
    if e_uni.size == 0:
        raise ValueError("uniform_seeds must not be empty")
    e_surf = tables.total_energy(conf.surface_segregated_occupations(lattice, x_cd))
    e_core = tables.total_energy(conf.core_segregated_occupations(lattice, x_cd))
    e_mean = float(e_uni.mean())
    return {
        "uniform": e_mean,
        "uniform_std": float(e_uni.std()),
        "surface": e_surf,
        "core": e_core,
        "surface_minus_uniform": e_surf - e_mean,
        "core_minus_uniform": e_core - e_mean,
    }


if __name__ == "__main__":  # pragma: no cover
    out = write_provisional(sys.argv[1] if len(sys.argv) > 1 else "potentials/provisional.ce")
    print(f"wrote {out}")
