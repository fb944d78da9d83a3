"""Fit the cluster expansion (CE) of the B lattice to reference energies (issue 3).

Input
-----
Records as the reference database gives them, one mapping per structure::

    {"name": str, "kind": str, "energy_ev": float, "occupations": uint8 array,
     "shape": (L1, L2, L3), "x_cd": float, "n_edge": int, "tags": dict}

``energy_ev`` is the total relaxed energy of the atomistic structure, ``occupations`` are the
segsim species codes (Pb, Cd, V, O) of the periodic B-lattice grid of shape ``shape`` in C
order over ``(ix, iy, iz)``.  Records without occupations (structures that are not on the CE
lattice, e.g. Ruddlesden-Popper faults) are skipped and counted in the summary.

Target property and its consequences
------------------------------------
segsim evaluates a CE as ``E_total = N_grid * ce.predict(grid)`` (``N_grid`` = number of sites
of the periodic grid, padding included; see :mod:`segsim.models.cluster_expansion`).  The fit
target is therefore the energy per *grid site*, ``y = energy_ev / N_grid``, so that
``N_grid * predict`` reproduces the reference total energy.  Consequences:

* The reference energies are absolute totals (e.g. -15 eV per CsPbBr3 formula unit), not
  mixing energies.  The constant and the point terms of the CE carry the per-formula-unit
  energies (in effect the chemical potentials of CsPbBr3 and CsCdBr3 units), and the clusters
  that contain X carry the surface and vacancy energies.
* The padding (``O`` sites, all X) is part of every grid.  Its energy per site, the "vacuum
  reference", is a combination of the constant, the X point term and the X-only clusters.  An
  atomistic reference energy does not depend on how much vacuum surrounds the NC, so by
  default (``vacuum_energy_ev_per_site=0.0``) the fit imposes exactly ``E(all-X grid) = 0``:
  the constant term is eliminated as ``J_0 = -sum_k cv_X[k] J_k`` (``cv_X`` = cluster vector of
  an all-X grid).  Then every cluster entirely in the padding contributes zero and the CE
  energy of a NC does not depend on the padding (as long as it exceeds the cluster reach).
  Without the constraint (``None``), the vacuum energy is whatever the X-only clusters absorb
  from the training set, and it is fixed only by varying grid sizes.
* Errors are judged per B *cation* site of the NC, not per grid site: each row of the linear
  problem is multiplied by ``N_grid / N_B`` (``N_B`` = sites inside the crystal, Pb + Cd + V,
  ``n_edge**3`` for an as-built cube), so the least-squares loss and all RMSEs are in eV per B
  site.  RMSEs per structure (eV per NC) are reported as well.

Model selection
---------------
For every (cutoffs, fit method) candidate, k-fold cross-validation
(:class:`trainstation.CrossValidationEstimator`, ``validation_method='k-fold'``, fixed seed)
gives held-out predictions for every structure; the candidate with the lowest held-out error
of energy differences between structures of the same crystal wins (:func:`relative_rmse`; ties:
the pooled CV RMSE per B site, fewer non-zero parameters, then candidate order), and is refitted
on all data.  :func:`group_scores` compares that error, crystal by crystal, with the baseline
"all arrangements of one crystal have the same energy" (a CE without Cd-arrangement terms).  Every random choice (fold split, learning-curve subsets) uses ``seed``, so the same input
gives the same ECIs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.config import VACANCY_CLUSTER_SPECIES, parse_cluster_term

__all__ = [
    "A_ANGSTROM",
    "DEFAULT_CUTOFF_CANDIDATES",
    "DEFAULT_FIT_METHODS",
    "ENERGY_UNIT",
    "CandidateScore",
    "FitResult",
    "GroupScore",
    "LearningCurvePoint",
    "SegregationChecks",
    "TrainingRecord",
    "build_cluster_space",
    "build_structure_container",
    "fit_cluster_expansion",
    "group_scores",
    "noise_row_scale",
    "records_from_mappings",
    "segregation_checks",
    "site_class_counts",
    "structure_noise_for",
    "training_structure",
]

#: Default lattice constant of the CE's primitive cell, Angstrom.
A_ANGSTROM: float = 5.87

#: Default cutoff candidates (Angstrom; pairs, triplets, quadruplets).  B-B distances are
#: a = 5.87, sqrt(2) a = 8.30, sqrt(3) a = 10.17 and 2 a = 11.74 Angstrom.
DEFAULT_CUTOFF_CANDIDATES: tuple[tuple[float, ...], ...] = (
    (7.0,),
    (7.0, 8.4),
    (8.4,),
    (8.4, 8.4),
    (12.0, 8.4),
    (8.4, 8.4, 8.4),
)

#: Default trainstation fit methods.
DEFAULT_FIT_METHODS: tuple[str, ...] = ("least-squares", "ardr", "lasso")

#: Species whose pair interaction with the vacancy :func:`vacancy_pair_constraints` can hold
#: to zero beyond a distance (``fit.vacancy_pair_partners``).
VACANCY_PAIR_PARTNERS: tuple[str, str, str] = ("Cd", "V", "X")


#: Training-set fractions of the learning curve.
DEFAULT_LEARNING_FRACTIONS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)

CE_SPECIES: tuple[str, str, str] = ("Pb", "Cd", "X")
CE_SPECIES_SEPARATE_V: tuple[str, ...] = species.CE_SYMBOLS_SEPARATE_V
ENERGY_UNIT: str = "eV per B-lattice site (total = N_sites * predict)"
LABEL: str = "fitted"

#: Property key of the target in the icet StructureContainer.
PROPERTY_KEY: str = "energy_per_grid_site_ev"

#: Extra keyword arguments passed to trainstation per fit method (deterministic, serial).
#: LASSO: trainstation calls sklearn's LassoCV (100 alphas down to 1e-3 alpha_max, 10 inner
#: folds, n_jobs=-1) inside every outer fold; on the ill-conditioned NC fit matrices that took
#: ~1 min per cutoff candidate.  A fixed grid of 16 alphas (the problem is standardised, so
#: y has unit spread) and 5 inner folds give the same CV error in a few seconds.
_METHOD_KWARGS: dict[str, dict[str, Any]] = {
    "lasso": {"n_jobs": 1, "max_iter": 10000, "alphas": np.logspace(-5.0, 0.0, 16), "cv": 5},
    "rfe": {"n_jobs": 1},
}

_MEV_PER_EV = 1000.0


# ---------------------------------------------------------------------------------- records
@dataclass(frozen=True, eq=False)
class TrainingRecord:
    """One reference structure on the CE lattice (validated database record).

    Attributes
    ----------
    name
        Unique key.
    kind
        ``"nc"``, ``"bulk"``, ``"nc_vacancy"``, ...
    energy_ev
        Total relaxed reference energy of the atomistic structure (eV).
    occupations
        ``uint8`` species codes (Pb, Cd, V, O) of the grid, C order over ``(ix, iy, iz)``.
    shape
        Grid shape ``(L1, L2, L3)``.
    x_cd
        Cd fraction of the B cations.
    n_edge
        B sites per NC edge (or per bulk cell edge).
    tags
        Free-form description (``tags["arrangement"]``: uniform, surface, core, ...).
    energy_sem_ev
        Standard error of ``energy_ev`` when it is a mean over relaxation starts
        (``calculator.aggregate: mean``), eV; NaN otherwise.
    n_atoms
        Atoms of the reference structure (0: unknown).  Occupations with outside sites inside
        the cube (receded surface sites) can hold different numbers of CsBr units for the
        same species counts; :func:`same_crystal_groups` keeps those apart.
    """

    name: str
    kind: str
    energy_ev: float
    occupations: np.ndarray
    shape: tuple[int, int, int]
    x_cd: float
    n_edge: int
    tags: dict[str, Any] = field(default_factory=dict)
    energy_sem_ev: float = float("nan")
    n_atoms: int = 0

    @property
    def n_grid_sites(self) -> int:
        """Number of sites of the periodic grid (padding included)."""
        return int(self.occupations.size)

    @property
    def n_b_sites(self) -> int:
        """Number of B sites of the crystal (Pb + Cd + V, i.e. the non-outside sites)."""
        return int(np.count_nonzero(self.occupations != species.OUT))

    @property
    def energy_per_grid_site_ev(self) -> float:
        """The fit target, ``energy_ev / n_grid_sites``."""
        return self.energy_ev / self.n_grid_sites

    @property
    def energy_per_b_site_ev(self) -> float:
        """Reference energy per B site of the crystal, ``energy_ev / n_b_sites``."""
        return self.energy_ev / self.n_b_sites

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any]) -> TrainingRecord:
        """Validate a database record (see the module docstring) and return it.

        Raises
        ------
        ValueError
            If the occupations do not match the shape, contain unknown codes, or the
            structure has no B site.
        """
        name = str(record["name"])
        shape = tuple(int(s) for s in record["shape"])
        occ = np.ascontiguousarray(record["occupations"], dtype=species.OCC_DTYPE).reshape(-1)
        if len(shape) != 3 or occ.size != math.prod(shape):
            raise ValueError(f"{name}: {occ.size} occupations do not fit grid shape {shape}")
        if occ.size and int(occ.max()) >= species.N_SPECIES:
            raise ValueError(f"{name}: unknown species code {int(occ.max())}")
        energy = float(record["energy_ev"])
        if not math.isfinite(energy):
            raise ValueError(f"{name}: energy_ev is not finite")
        out = cls(
            name=name,
            kind=str(record.get("kind", "")),
            energy_ev=energy,
            occupations=occ,
            shape=(shape[0], shape[1], shape[2]),
            x_cd=float(record.get("x_cd", float("nan"))),
            n_edge=int(record.get("n_edge", 0)),
            tags=dict(record.get("tags") or {}),
            energy_sem_ev=_optional_float(record.get("energy_sem_ev")),
            n_atoms=int(record.get("n_atoms") or 0),
        )
        if out.n_b_sites == 0:
            raise ValueError(f"{name}: no B site inside the crystal")
        return out


def _optional_float(value: Any) -> float:
    """Return ``float(value)``, or NaN for None."""
    return float("nan") if value is None else float(value)


def records_from_mappings(
    records: Sequence[Mapping[str, Any] | TrainingRecord],
) -> tuple[list[TrainingRecord], list[str]]:
    """Return the records on the CE lattice and the names of those skipped.

    A record is skipped when it has no occupations (not on the CE lattice) or no energy yet
    (``energy_ev`` None, e.g. a reference calculation that has not run or failed).

    Raises
    ------
    ValueError
        If two records share a name.
    """
    kept: list[TrainingRecord] = []
    skipped: list[str] = []
    for rec in records:
        if isinstance(rec, TrainingRecord):
            kept.append(rec)
        elif (
            rec.get("occupations") is None
            or rec.get("shape") is None
            or rec.get("energy_ev") is None
        ):
            skipped.append(str(rec.get("name")))
        else:
            kept.append(TrainingRecord.from_mapping(rec))
    names = Counter(r.name for r in kept)
    dup = sorted(n for n, c in names.items() if c > 1)
    if dup:
        raise ValueError(f"duplicate record names: {dup}")
    return kept, skipped


def grid_atoms(
    occupations: np.ndarray,
    shape: Sequence[int],
    a_angstrom: float,
    code_symbols: Sequence[str] = species.CE_SYMBOLS,
) -> Any:
    """Return the ``ase.Atoms`` of a grid of segsim species codes with CE symbols.

    One site per primitive cell at ``grid coordinates * a_angstrom`` (C order), periodic cell
    ``diag(shape) * a_angstrom``; ``code_symbols`` gives the symbol per code (default: V and
    O both X, the same structure as
    :meth:`segsim.training.structures.ReferenceStructure.ce_structure`;
    :data:`segsim.species.CE_SYMBOLS_SEPARATE_V` for a four-species CE).
    """
    from ase import Atoms

    shape = tuple(int(s) for s in shape)
    coords = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    symbols = np.asarray(code_symbols)[np.asarray(occupations).reshape(-1)]
    return Atoms(
        symbols=list(symbols),
        positions=coords * a_angstrom,
        cell=np.diag(np.asarray(shape, dtype=np.float64) * a_angstrom),
        pbc=True,
    )


def training_structure(
    record: TrainingRecord,
    a_angstrom: float = A_ANGSTROM,
    code_symbols: Sequence[str] = species.CE_SYMBOLS,
) -> Any:
    """Return the icet training structure (``ase.Atoms`` with CE symbols) of a record."""
    return grid_atoms(record.occupations, record.shape, a_angstrom, code_symbols)


def code_symbols_of(cluster_space: Any) -> tuple[str, ...]:
    """Return the symbol per segsim code for an icet cluster space (three or four species)."""
    return species.ce_symbols(cluster_space.chemical_symbols[0])


# ------------------------------------------------------------------------- cluster space
def build_cluster_space(
    cutoffs: Sequence[float], a_angstrom: float = A_ANGSTROM, *, separate_vacancy: bool = False
) -> Any:
    """Return the icet ``ClusterSpace`` of the one-site simple-cubic B lattice.

    Parameters
    ----------
    cutoffs
        icet cutoffs in Angstrom (pairs, triplets, ...).
    a_angstrom
        Lattice constant of the primitive cell.
    separate_vacancy
        False: species Pb, Cd, X (V and O both X); True: Pb, Cd, V, X (the vacancy its own
        species, :data:`segsim.species.CE_SYMBOLS_SEPARATE_V`).
    """
    from ase import Atoms
    from icet import ClusterSpace

    symbols = list(CE_SPECIES_SEPARATE_V if separate_vacancy else CE_SPECIES)
    prim = Atoms("Pb", positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * a_angstrom, pbc=True)
    return ClusterSpace(prim, cutoffs=[float(c) for c in cutoffs], chemical_symbols=[symbols])


def build_structure_container(
    cluster_space: Any, records: Sequence[TrainingRecord], a_angstrom: float = A_ANGSTROM
) -> Any:
    """Return an icet ``StructureContainer`` with one structure per record.

    Properties: :data:`PROPERTY_KEY` (the target, eV per grid site), ``energy_ev``,
    ``n_grid_sites`` and ``n_b_sites``; ``user_tag`` is the record name.
    """
    from icet import StructureContainer

    sc = StructureContainer(cluster_space)
    symbols = code_symbols_of(cluster_space)
    for rec in records:
        sc.add_structure(
            training_structure(rec, a_angstrom, symbols),
            user_tag=rec.name,
            properties={
                PROPERTY_KEY: rec.energy_per_grid_site_ev,
                "energy_ev": rec.energy_ev,
                "n_grid_sites": float(rec.n_grid_sites),
                "n_b_sites": float(rec.n_b_sites),
            },
        )
    return sc


def vacuum_cluster_vector(cluster_space: Any, a_angstrom: float = A_ANGSTROM) -> np.ndarray:
    """Return the cluster vector of an all-X grid (independent of the grid size)."""
    reach = max([float(c) for c in cluster_space.cutoffs], default=a_angstrom)
    size = 2 * math.ceil(reach / a_angstrom) + 1
    shape = (size, size, size)
    occ = np.full(math.prod(shape), species.OUT, dtype=species.OCC_DTYPE)
    atoms = grid_atoms(occ, shape, a_angstrom, code_symbols_of(cluster_space))
    return np.asarray(cluster_space.get_cluster_vector(atoms))


# ------------------------------------------------------------------------------- results
def pair_vectors(max_distance_angstrom: float, a_angstrom: float = A_ANGSTROM) -> list[tuple]:
    """Return one lattice vector per pair distance up to ``max_distance_angstrom``.

    Sorted by distance: ``(1, 0, 0)``, ``(1, 1, 0)``, ``(1, 1, 1)``, ``(2, 0, 0)``, ...
    (lattice units; the simple-cubic B lattice of spacing ``a_angstrom``).
    """
    reach = math.floor(max_distance_angstrom / a_angstrom + 1e-9)
    by_d2: dict[int, tuple] = {}
    for i in range(reach + 1):
        for j in range(i + 1):
            for k in range(j + 1):
                d2 = i * i + j * j + k * k
                if d2 and math.sqrt(d2) * a_angstrom <= max_distance_angstrom + 1e-6:
                    by_d2.setdefault(d2, (i, j, k))
    return [by_d2[d2] for d2 in sorted(by_d2)]


def vacancy_pair_constraints(
    cluster_space: Any,
    beyond_angstrom: float,
    a_angstrom: float = A_ANGSTROM,
    partners: Sequence[str] = VACANCY_PAIR_PARTNERS,
) -> np.ndarray:
    """Return rows ``C`` with ``C @ J == 0`` iff the vacancy has no pair interaction beyond a distance.

    For every pair distance ``d`` of the cluster space with ``beyond_angstrom < d``, and every
    species ``s`` in (Cd, V, X), one row: the interaction energy of a vacancy and ``s`` at
    distance ``d`` in a Pb crystal,

        W(s, V; d) = E(s at 0, V at r) - E(s at 0) - E(V at r) + E(all Pb) = 0,

    i.e. a vacancy at distance ``d`` feels Cd, a second vacancy and the outside exactly as it
    feels Pb (only the species named in ``partners``: ``("Cd", "V")`` leaves the vacancy's
    pairs with the outside X free to the cluster space's cutoff).  The energies are evaluated as icet cluster-vector differences of a periodic
    all-Pb cell (so the rows are in the cluster space's own basis, whatever its point
    functions), each row normalized to unit length.  With triplet cutoffs the rows also
    carry the triplets that contain both sites (in a Pb background).

    Parameters
    ----------
    cluster_space
        A four-species icet cluster space (:func:`build_cluster_space` with
        ``separate_vacancy=True``).
    beyond_angstrom
        Distance (Angstrom) beyond which vacancy pair interactions vanish.
    a_angstrom
        Lattice constant of the cluster space's primitive cell.
    partners
        The species whose pair interaction with the vacancy vanishes beyond
        ``beyond_angstrom``, among :data:`VACANCY_PAIR_PARTNERS` (default: all three).

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_parameters)``, rows ordered by distance, then by partner in the order
        Cd, V, X; no rows if no pair distance exceeds ``beyond_angstrom`` or ``partners`` is
        empty.

    Raises
    ------
    ValueError
        If the vacancy is not a species of its own in ``cluster_space``, or a partner is not
        one of :data:`VACANCY_PAIR_PARTNERS`.
    """
    symbols = code_symbols_of(cluster_space)
    if len(set(symbols)) < 4:
        raise ValueError("vacancy pair constraints need a separate vacancy species (Pb, Cd, V, X)")
    unknown = sorted(set(partners) - set(VACANCY_PAIR_PARTNERS))
    if unknown:
        raise ValueError(f"vacancy pair partners must be among {VACANCY_PAIR_PARTNERS}: {unknown}")
    p = len(cluster_space)
    pair_cut = float(cluster_space.cutoffs[0]) if len(cluster_space.cutoffs) else 0.0
    vectors = [
        r
        for r in pair_vectors(pair_cut, a_angstrom)
        if math.sqrt(sum(c * c for c in r)) * a_angstrom > beyond_angstrom + 1e-6
    ]
    codes = [
        code
        for name, code in zip(
            VACANCY_PAIR_PARTNERS, (species.CD, species.VAC, species.OUT), strict=True
        )
        if name in partners
    ]
    if not vectors or not codes:
        return np.zeros((0, p))
    reach = max(float(c) for c in cluster_space.cutoffs)
    n = 2 * math.ceil(reach / a_angstrom) + 3  # no periodic image within the cluster reach
    shape = (n, n, n)

    def cv(changes: dict[tuple, int]) -> np.ndarray:
        occ = np.full(shape, species.PB, dtype=species.OCC_DTYPE)
        for site, code in changes.items():
            occ[site] = code
        atoms = grid_atoms(occ.reshape(-1), shape, a_angstrom, symbols)
        return np.asarray(cluster_space.get_cluster_vector(atoms), dtype=np.float64)

    base = cv({})
    alone = {code: cv({(0, 0, 0): code}) for code in codes}  # the same for every distance
    rows = []
    for r in vectors:
        with_v = cv({r: species.VAC})
        for code in codes:
            row = cv({(0, 0, 0): code, r: species.VAC}) - alone[code] - with_v + base
            rows.append(row / np.linalg.norm(row))
    return np.array(rows)


def _nn_connected(sites: Sequence[tuple[int, ...]]) -> bool:
    """Return whether lattice sites form one cluster of nearest-neighbour bonds."""
    sites = [tuple(int(c) for c in s) for s in sites]
    if len(sites) <= 1:
        return True
    seen = {0}
    stack = [0]
    while stack:
        i = stack.pop()
        for j, t in enumerate(sites):
            if j not in seen and sum(abs(a - b) for a, b in zip(sites[i], t, strict=True)) == 1:
                seen.add(j)
                stack.append(j)
    return len(seen) == len(sites)


def cluster_orbits(
    cluster_space: Any,
    a_angstrom: float = A_ANGSTROM,
    min_order: int = 3,
    max_order: int | None = None,
) -> list[tuple[int, tuple[tuple[int, int, int], ...]]]:
    """Return ``(orbit index, sites)`` of every orbit of ``min_order`` to ``max_order`` sites.

    ``sites`` are the representative cluster's lattice sites (integer units of
    ``a_angstrom``, shifted to non-negative coordinates).
    """
    out = []
    orbits = {int(row["orbit_index"]): int(row["order"]) for row in cluster_space.as_list}
    for index, order in sorted(orbits.items()):
        if order < min_order or (max_order is not None and order > max_order):
            continue
        pos = np.array(cluster_space.get_coordinates_of_representative_cluster(index))
        lat = np.rint(pos / a_angstrom).astype(np.int64)
        lat -= lat.min(axis=0)
        out.append((index, tuple(tuple(int(c) for c in site) for site in lat)))
    return out


def _kept_assignment(
    sites: Sequence[tuple[int, int, int]],
    assign: Sequence[str],
    kept: set[tuple[str, ...]],
    max_pair_d2: float,
) -> bool:
    """Whether a many-body term of :func:`vacancy_cluster_constraints` survives.

    ``max_pair_d2``: the squared pair cutoff of the cluster space (lattice units); a cluster
    with a sub-pair beyond it cannot carry a term alone (its orthogonal basis functions
    would leave an energy on that pair, which no pair parameter can cancel).
    """
    v_sites = [site for site, a in zip(sites, assign, strict=True) if a == "V"]
    widest = max(
        sum((a - b) ** 2 for a, b in zip(u, v, strict=True))
        for u, v in itertools.combinations(sites, 2)
    )
    return (
        widest <= max_pair_d2
        and _nn_connected(sites)
        and tuple(sorted(assign)) in kept
        and _nn_connected(v_sites)
    )


def _max_pair_d2(cluster_space: Any, a_angstrom: float) -> float:
    """Return the squared pair cutoff of a cluster space, lattice units (0 without pairs)."""
    cut = float(cluster_space.cutoffs[0]) if len(cluster_space.cutoffs) else 0.0
    return (cut / a_angstrom) ** 2 + 1e-9


def _moebius_rows(
    cluster_space: Any, a_angstrom: float, min_order: int, max_order: int | None = None
) -> list[tuple[tuple[tuple[int, int, int], ...], tuple[str, ...], np.ndarray]]:
    """Return ``(sites, species, row)`` of every orbit of ``min_order`` to ``max_order`` sites.

    ``row @ J`` is the inclusion-exclusion energy (eV per site of the cell) of the cluster
    with those species (among :data:`VACANCY_CLUSTER_SPECIES`) in a periodic Pb crystal
    (:func:`vacancy_cluster_constraints`), for every species assignment of every orbit.
    """
    symbols = code_symbols_of(cluster_space)
    p = len(cluster_space)
    reach = max([float(c) for c in cluster_space.cutoffs], default=a_angstrom)
    n = 2 * math.ceil(reach / a_angstrom) + 3  # no periodic image within the cluster reach
    shape = (n, n, n)
    code_of = {"Cd": species.CD, "V": species.VAC, "X": species.OUT}
    cache: dict[tuple, np.ndarray] = {}

    def cv(changes: tuple[tuple[tuple[int, int, int], str], ...]) -> np.ndarray:
        if changes not in cache:
            occ = np.full(shape, species.PB, dtype=species.OCC_DTYPE)
            for site, name in changes:
                occ[site] = code_of[name]
            atoms = grid_atoms(occ.reshape(-1), shape, a_angstrom, symbols)
            cache[changes] = np.asarray(cluster_space.get_cluster_vector(atoms), dtype=np.float64)
        return cache[changes]

    out = []
    for _, sites in cluster_orbits(cluster_space, a_angstrom, min_order, max_order):
        for assign in itertools.product(VACANCY_CLUSTER_SPECIES, repeat=len(sites)):
            row = np.zeros(p)
            for k in range(len(sites) + 1):
                for subset in itertools.combinations(range(len(sites)), k):
                    sign = (-1.0) ** (len(sites) - k)
                    row += sign * cv(tuple((sites[i], assign[i]) for i in subset))
            row *= n**3  # the energy per cluster, not per site of the cell
            scale = np.abs(row).max(initial=0.0)
            row[np.abs(row) < 1e-9 * scale] = 0.0  # round-off of the cancelled sub-clusters
            out.append((sites, assign, row))
        cache.clear()
    return out


def vacancy_cluster_constraints(
    cluster_space: Any, terms: Sequence[str], a_angstrom: float = A_ANGSTROM
) -> np.ndarray:
    """Return rows ``C`` with ``C @ J == 0`` iff the many-body terms are only ``terms``.

    A cluster of ``n >= 3`` sites (an orbit of the cluster space) interacts through its
    inclusion-exclusion energy in a Pb crystal: with species ``s_1 .. s_n`` (among Cd, V,
    X) on its sites,

        W(s_1 .. s_n) = sum over subsets T of the sites of (-1)^(n - |T|) E(s on T, Pb elsewhere),

    the energy that the n-body cluster adds to the sum of its sub-clusters' (the many-body
    generalisation of the pair interaction of :func:`vacancy_pair_constraints`; only clusters
    that contain all n sites contribute to it).  One row per orbit and species assignment
    sets ``W = 0``, except where all three hold:

    * the orbit's sites are connected by nearest-neighbour bonds (the L-shaped triplet and
      the straight one, not the triangle of second neighbours), and each of its pairs is
      within the pair cutoff (the straight triplet needs pairs to 2a = 11.74 Angstrom:
      otherwise its basis functions leave an energy on its end pair that no pair parameter
      can cancel);
    * the species, as a multiset, are one of ``terms`` (:func:`parse_cluster_term`), e.g.
      ``V-V-V`` (three vacancies) or ``V-V-X`` (two vacancies and the outside);
    * the vacancies of the assignment are connected by nearest-neighbour bonds among
      themselves (``V-V-X`` on the L triplet: the X at an end, not at the corner).

    So with ``terms = ["V-V-V"]`` the only many-body energy of the CE is that of three
    vacancies on a connected triplet, wherever it sits (interior or surface), and every
    cluster with Pb, or a species combination not listed, costs no more than its pairs.
    The rows are icet cluster-vector differences of a periodic all-Pb cell (the cluster
    space's own basis), each normalised to unit length.

    Parameters
    ----------
    cluster_space
        A four-species icet cluster space (:func:`build_cluster_space` with
        ``separate_vacancy=True``).
    terms
        The species combinations kept (``fit.vacancy_cluster_terms``).
    a_angstrom
        Lattice constant of the cluster space's primitive cell.

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_parameters)``; no rows if the cluster space has no orbit of three or
        more sites.

    Raises
    ------
    ValueError
        If the vacancy is not a species of its own, or a term is malformed.
    """
    if len(set(code_symbols_of(cluster_space))) < 4:
        raise ValueError("vacancy cluster constraints need a separate vacancy species")
    kept = {parse_cluster_term(t) for t in terms}
    rows = [
        row / np.linalg.norm(row)
        for sites, assign, row in _moebius_rows(cluster_space, a_angstrom, 3)
        if not _kept_assignment(sites, assign, kept, _max_pair_d2(cluster_space, a_angstrom))
    ]
    return np.array(rows) if rows else np.zeros((0, len(cluster_space)))


def vacancy_cluster_directions(
    cluster_space: Any, terms: Sequence[str], a_angstrom: float = A_ANGSTROM
) -> np.ndarray:
    """Return one parameter vector per kept many-body term of :func:`vacancy_cluster_constraints`.

    Column ``i`` is the parameter vector ``J`` of the CE whose only energy is 1 eV for each
    cluster of the ``i``-th kept term (one orbit, one class of symmetry-equivalent species
    assignments): every inclusion-exclusion energy of points, pairs and the other many-body
    terms is zero, and so is the energy of the pure Pb crystal.  In these coordinates a
    structure's design column is the number of such clusters it holds (per site), so a
    term that no fitted structure holds has an exactly zero column (the fit then leaves it
    at zero, :func:`_fit_rows`) instead of a round-off combination of pair columns.

    Returns
    -------
    numpy.ndarray
        ``(n_parameters, n_kept)``; no columns if nothing is kept.
    """
    return _kept_cluster_terms(cluster_space, terms, a_angstrom)[0]


def _kept_cluster_terms(
    cluster_space: Any, terms: Sequence[str], a_angstrom: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the kept terms' directions ``D`` and their energy rows ``G`` (``G @ D = 1``)."""
    kept = {parse_cluster_term(t) for t in terms}
    p = len(cluster_space)
    many = _moebius_rows(cluster_space, a_angstrom, 3)
    d2 = _max_pair_d2(cluster_space, a_angstrom)
    kept_rows = [row for sites, assign, row in many if _kept_assignment(sites, assign, kept, d2)]
    if not kept_rows:
        return np.zeros((p, 0)), np.zeros((0, p))
    zero_rows = [
        row for sites, assign, row in many if not _kept_assignment(sites, assign, kept, d2)
    ]
    zero_rows += [row for _, _, row in _moebius_rows(cluster_space, a_angstrom, 1, 2)]
    pure = np.asarray(
        cluster_space.get_cluster_vector(
            grid_atoms(
                np.full(27, species.PB, dtype=species.OCC_DTYPE),
                (3, 3, 3),
                a_angstrom,
                code_symbols_of(cluster_space),
            )
        ),
        dtype=np.float64,
    )
    from scipy.linalg import null_space

    z = np.array([r / np.linalg.norm(r) for r in zero_rows] + [pure / np.linalg.norm(pure)])
    d = null_space(z)  # the J whose only inclusion-exclusion energies are the kept ones
    g = np.array(kept_rows) @ d  # kept energies of each basis vector
    # one row per class of equal kept rows: greedily the linearly independent ones
    chosen: list[int] = []
    for i in range(g.shape[0]):
        trial = [*chosen, i]
        if np.linalg.matrix_rank(g[trial], tol=1e-8 * np.abs(g).max()) == len(trial):
            chosen.append(i)
    if len(chosen) != d.shape[1]:
        raise ValueError("vacancy cluster terms: could not separate the kept terms")
    return d @ np.linalg.inv(g[chosen]), np.array(kept_rows)[chosen]


def constrained_basis(constraints: np.ndarray, n_parameters: int) -> np.ndarray:
    """Return a basis ``B`` (``n_parameters`` x q) of the parameters that satisfy ``constraints``.

    Parameters untouched by any constraint row keep their own column (so that sparse fits
    stay sparse in them); the rows are split into blocks of overlapping support and each
    block's null space spans its parameters.  ``J = B @ z`` satisfies ``constraints @ J = 0``
    for every ``z``.
    """
    from scipy.linalg import null_space

    c = np.asarray(constraints, dtype=np.float64).reshape(-1, n_parameters)
    scale = np.abs(c).max(initial=0.0)
    touched = np.abs(c) > 1e-9 * max(scale, 1e-300)
    # blocks: rows joined when they share a parameter (union-find over rows)
    parent = list(range(c.shape[0]))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for col in range(n_parameters):
        rows = np.flatnonzero(touched[:, col])
        for i in rows[1:]:
            parent[root(int(i))] = root(int(rows[0]))
    columns: list[tuple[int, np.ndarray]] = []  # (first parameter, column) for ordering
    free = ~touched.any(axis=0)
    for col in np.flatnonzero(free):
        e = np.zeros(n_parameters)
        e[col] = 1.0
        columns.append((int(col), e))
    for r in sorted({root(i) for i in range(c.shape[0])}):
        rows = [i for i in range(c.shape[0]) if root(i) == r]
        support = np.flatnonzero(touched[rows].any(axis=0))
        ns = null_space(c[np.ix_(rows, support)])
        for k in range(ns.shape[1]):
            col = np.zeros(n_parameters)
            col[support] = ns[:, k]
            columns.append((int(support[0]), col))
    columns.sort(key=lambda t: t[0])
    if not columns:
        return np.zeros((n_parameters, 0))
    return np.column_stack([col for _, col in columns])


@dataclass(frozen=True)
class CandidateScore:
    """Cross-validation score of one (cutoffs, fit method) candidate.

    RMSEs are pooled over the held-out predictions of all folds (each structure is predicted
    once); ``cv_rmse_fold_mean_mev_per_site`` is trainstation's mean of the fold RMSEs.
    """

    cutoffs: tuple[float, ...]
    fit_method: str
    n_parameters: int
    n_nonzero_parameters: int
    rank: int
    cv_rmse_mev_per_site: float
    cv_rmse_mev_per_nc: float
    cv_rmse_fold_mean_mev_per_site: float
    train_rmse_mev_per_site: float
    train_rmse_mev_per_nc: float
    error: str | None = None
    #: CV RMSE of energy differences between structures of the same crystal (same grid, same
    #: numbers of Pb, Cd, V and outside sites), meV per structure; NaN without such groups.
    cv_relative_rmse_mev_per_nc: float = float("nan")
    #: pair interactions of the vacancy are constrained to zero beyond this distance
    #: (Angstrom, :func:`vacancy_pair_constraints`); None: unconstrained
    vacancy_pair_cutoff_angstrom: float | None = None


@dataclass(frozen=True)
class LearningCurvePoint:
    """CV RMSE of the selected candidate on a nested random subset of the training set."""

    n_train: int
    n_splits: int
    cv_rmse_mev_per_site: float
    cv_rmse_mev_per_nc: float
    train_rmse_mev_per_site: float


@dataclass(eq=False)
class FitResult:
    """The fitted CE and everything the fit report needs.

    Attributes
    ----------
    ce
        The ``icet.ClusterExpansion`` (parameters predict eV per grid site).
    cutoffs, fit_method
        The selected candidate.
    candidates
        CV scores of all candidates, in the order they were tried.
    cv_rmse_mev_per_site, cv_rmse_mev_per_nc
        CV RMSE of the selected candidate, per B site and per structure.
    train_rmse_mev_per_site, train_rmse_mev_per_nc
        RMSE of the final fit on all data.
    learning_curve
        CV RMSE vs training-set size for the selected candidate.
    names, kinds, n_b_sites, n_grid_sites
        Per training structure.
    reference_ev_per_site, predicted_ev_per_site, cv_predicted_ev_per_site
        Energies per B site (eV): reference, final fit, held-out CV prediction.
    skipped
        Names of records not on the CE lattice.
    structure_container
        icet ``StructureContainer`` of the selected cluster space (can be written to disk).
    settings
        The arguments of the fit (seed, n_splits, a_angstrom, constraint).
    """

    ce: Any
    cutoffs: tuple[float, ...]
    fit_method: str
    candidates: list[CandidateScore]
    cv_rmse_mev_per_site: float
    cv_rmse_mev_per_nc: float
    train_rmse_mev_per_site: float
    train_rmse_mev_per_nc: float
    learning_curve: list[LearningCurvePoint]
    names: list[str]
    kinds: list[str]
    n_b_sites: np.ndarray
    n_grid_sites: np.ndarray
    reference_ev_per_site: np.ndarray
    predicted_ev_per_site: np.ndarray
    cv_predicted_ev_per_site: np.ndarray
    skipped: list[str]
    structure_container: Any
    settings: dict[str, Any]
    #: :func:`same_crystal_groups` id per training structure (-1: alone in its crystal)
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: standard error of each reference energy over its relaxation starts, eV (NaN: one start)
    energy_sem_ev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: :func:`site_class_counts` per training structure (rows), for :func:`group_scores`
    site_class_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def n_structures(self) -> int:
        """Number of training structures."""
        return len(self.names)

    @property
    def parameters(self) -> np.ndarray:
        """CE parameter vector (eV per grid site; icet convention)."""
        return np.asarray(self.ce.parameters, dtype=np.float64).copy()

    @property
    def n_parameters(self) -> int:
        """Number of CE parameters."""
        return len(self.ce.parameters)

    @property
    def n_nonzero_parameters(self) -> int:
        """Number of non-zero CE parameters."""
        return int(np.count_nonzero(self.ce.parameters))

    def kind_summary(self) -> dict[str, int]:
        """Return the number of training structures per kind (sorted by kind)."""
        return dict(sorted(Counter(self.kinds).items()))

    def eci_table(self) -> list[dict[str, Any]]:
        """Return one row per CE parameter: index, order, radius, multiplicity, parameter, ECI.

        ``parameter`` is icet's (eV per grid site, multiplying the cluster-vector element);
        ``eci_ev = parameter / multiplicity``.
        """
        rows = self.ce.get_cluster_space_copy().as_list
        out = []
        for row, param in zip(rows, self.ce.parameters, strict=True):
            out.append(
                {
                    "index": int(row["index"]),
                    "order": int(row["order"]),
                    "radius_angstrom": float(row["radius"]),
                    "multiplicity": int(row["multiplicity"]),
                    "multicomponent_vector": str(row["multicomponent_vector"]),
                    "parameter_ev": float(param),
                    "eci_ev": float(param) / float(row["multiplicity"]),
                }
            )
        return out

    def write_ce(self, path: str | Path) -> Path:
        """Write the CE to an icet ``.ce`` file (readable by segsim) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ce.write(str(path))
        return path


# ----------------------------------------------------------------------------- the fit
@contextlib.contextmanager
def _quiet_fit() -> Iterator[None]:
    """Silence the known, expected messages of trainstation/sklearn during a fit.

    - trainstation's ``UserWarning`` "Condition number is large" (NC training sets are
      rank-deficient by construction: clusters that only see the shape of the cube);
    - its logged "linear problem is underdetermined" (small learning-curve subsets);
    - sklearn's ``ConvergenceWarning`` of LASSO / ARD on such problems, and its
      ``UndefinedMetricWarning`` (R^2 of a one-structure fold, not used here).
    """
    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

    log = logging.getLogger("trainstation")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Condition number is large.*")
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
            yield
    finally:
        log.setLevel(level)


def same_crystal_groups(records: Sequence[TrainingRecord]) -> np.ndarray:
    """Return a group id per record: equal ids share grid, Pb, Cd, V and outside counts.

    Structures of one group differ only in where the species sit, which is exactly what
    Monte Carlo swaps and KMC hops change; records alone in their group get id -1.  Records
    that know their atom count (:attr:`TrainingRecord.n_atoms`) must share it too: a pit on
    a face and one on a corner have the same species counts but not the same atoms.
    """
    keys = []
    for r in records:
        counts = np.bincount(np.asarray(r.occupations, dtype=np.int64), minlength=4)[:4]
        keys.append((tuple(r.shape), *(int(c) for c in counts), int(r.n_atoms)))
    ids = np.full(len(keys), -1, dtype=np.int64)
    seen: dict[tuple, int] = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    index: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        if seen[k] >= 2:
            ids[i] = index.setdefault(k, len(index))
    return ids


def relative_rmse(residual_per_structure: np.ndarray, groups: np.ndarray) -> float:
    """RMS of residuals about their group mean (the error of within-group energy differences).

    ``groups`` from :func:`same_crystal_groups`; ungrouped structures (-1) are ignored.
    Returns NaN if no group exists.
    """
    res = np.asarray(residual_per_structure, dtype=np.float64)
    dev = []
    for g in np.unique(groups[groups >= 0]):
        r = res[groups == g]
        dev.append(r - r.mean())
    if not dev:
        return float("nan")
    d = np.concatenate(dev)
    return float(np.sqrt(np.mean(d**2)))


@dataclass(frozen=True)
class GroupScore:
    """How well a fit orders the structures of one crystal (energies in meV per NC)."""

    label: str  #: the common prefix of the members' names
    n_members: int
    n_b_sites: int
    #: RMS of the reference energies about their group mean: the error of "all equal"
    baseline_mev_per_nc: float
    #: the same for the held-out CV residuals (what :func:`relative_rmse` pools)
    cv_mev_per_nc: float
    #: the same for the residuals of the final fit
    train_mev_per_nc: float
    #: RMS of the members' start standard errors (NaN without start-averaged energies): the
    #: part of the baseline that is relaxation noise, not arrangement energy
    start_sem_mev_per_nc: float = float("nan")
    #: leave-one-out error of a model fitted to this group alone, linear in its
    #: :func:`site_class_counts` (NaN if the group has too few members): what a
    #: nearest-neighbour CE could at best do on this crystal
    local_loo_mev_per_nc: float = float("nan")


#: Columns of :func:`site_class_counts`.
SITE_CLASS_COLUMNS: tuple[str, ...] = (
    "Cd, 0 X neighbours",
    "Cd, 1 X neighbour",
    "Cd, 2 X neighbours",
    "Cd, 3+ X neighbours",
    "V, 0 X neighbours",
    "V, 1 X neighbour",
    "V, 2 X neighbours",
    "V, 3+ X neighbours",
    "Cd-Cd pairs",
    "Cd-V pairs",
    "V-V pairs",
)


def site_class_counts(record: TrainingRecord) -> np.ndarray:
    """Return the short-range descriptors of a structure (counts, :data:`SITE_CLASS_COLUMNS`).

    Cd and V sites counted by their number of outside (X) nearest neighbours (0: interior, 1:
    face, 2: edge, 3 or more: corner), and the Cd-Cd, Cd-V and V-V nearest-neighbour pairs.
    The grid is periodic (bulk cells) or padded with X (NCs), so neighbours are taken with
    periodic wrap.  Within a crystal of fixed species counts, a nearest-neighbour pair CE is
    linear in these counts (its Cd-X and V-X pair counts are the class counts weighted by the
    number of X neighbours).
    """
    occ = np.asarray(record.occupations).reshape(record.shape)
    cd = occ == species.CD
    vac = occ == species.VAC
    n_out = np.zeros(occ.shape, dtype=np.int64)
    for axis in range(3):
        for step in (1, -1):
            n_out += np.roll(occ == species.OUT, step, axis)
    n_out = np.minimum(n_out, 3)
    counts = [np.count_nonzero(m & (n_out == k)) for m in (cd, vac) for k in range(4)]
    for a, b in ((cd, cd), (cd, vac), (vac, vac)):
        n = sum(int(np.count_nonzero(a & np.roll(b, 1, axis))) for axis in range(3))
        if a is not b:  # unordered pairs of two species: count both directions
            n += sum(int(np.count_nonzero(b & np.roll(a, 1, axis))) for axis in range(3))
        counts.append(n)
    return np.asarray(counts, dtype=np.float64)


def structure_noise_for(periodic: bool, structure_noise_ev: tuple[float, float]) -> float:
    """Return the noise ``tau`` (eV) of one structure: ``tau_bulk`` if periodic, else ``tau_nc``.

    ``structure_noise_ev`` is ``(tau_nc, tau_bulk)``, the fit's ``noise_nc_ev`` and
    ``noise_bulk_ev``; a periodic cell is a grid without outside sites.
    """
    return float(structure_noise_ev[1] if periodic else structure_noise_ev[0])


def noise_row_scale(
    records: Sequence[TrainingRecord], structure_noise_ev: tuple[float, float]
) -> np.ndarray:
    """Return the generalized-least-squares scale of each structure row (mean 1).

    A row (energy per B site) times ``N_B / sigma`` is the structure's energy in units of its
    noise ``sigma = sqrt(sem**2 + tau**2)``: ``tau = tau_nc`` for NCs (grids with outside
    sites) and ``tau_bulk`` for periodic cells (no outside site), ``sem`` the start standard
    error of the stored energy (0 where it has none).  The scale is normalized to mean 1.

    Raises
    ------
    ValueError
        If a ``tau`` is not positive.
    """
    tau_nc, tau_bulk = (float(t) for t in structure_noise_ev)
    if not (tau_nc > 0.0 and tau_bulk > 0.0):
        raise ValueError(f"structure noise must be > 0 eV, got {structure_noise_ev}")
    n_b = np.array([r.n_b_sites for r in records], dtype=np.float64)
    periodic = np.array([r.n_b_sites == r.n_grid_sites for r in records])
    sem = np.array([r.energy_sem_ev for r in records], dtype=np.float64)
    sem = np.where(np.isfinite(sem), sem, 0.0)
    tau = np.array([structure_noise_for(bool(p), (tau_nc, tau_bulk)) for p in periodic])
    scale = n_b / np.sqrt(sem**2 + tau**2)
    return scale / scale.mean()


def structure_weight_factors(
    names: Sequence[str], structure_weights: Mapping[str, float] | None
) -> np.ndarray:
    """Return the fit weight factor of each structure from ``fit.structure_weights``.

    ``structure_weights`` maps shell-style patterns of structure names (:mod:`fnmatch`,
    e.g. ``"nc4_x0_v4-*"``) to factors >= 0 that multiply the structure's row in every fit;
    the first pattern (in the mapping's order) that matches a name decides, and names that no
    pattern matches keep 1.  A factor 0 takes the structure out of the fits, but it is still
    predicted by cross-validation and reported (train and CV errors, groups).

    Raises
    ------
    ValueError
        If a factor is negative or not finite.
    """
    from fnmatch import fnmatchcase

    weights = dict(structure_weights or {})
    bad = {p: w for p, w in weights.items() if not (math.isfinite(float(w)) and float(w) >= 0.0)}
    if bad:
        raise ValueError(f"structure weights must be finite and >= 0: {bad}")
    out = np.ones(len(names))
    for i, name in enumerate(names):
        for pattern, w in weights.items():
            if fnmatchcase(name, pattern):
                out[i] = float(w)
                break
    return out


def _local_loo_rmse(energies_ev: np.ndarray, counts: np.ndarray) -> float:
    """Leave-one-out RMS error (about its mean) of ``energies ~ 1 + counts``, eV; NaN if short.

    Columns that do not vary within the group are dropped; the model needs three more members
    than columns (so that every held-out fit is overdetermined).
    """
    x = counts[:, np.ptp(counts, axis=0) > 0]
    n = energies_ev.size
    if n < x.shape[1] + 4:
        return float("nan")
    a = np.column_stack([np.ones(n), x])
    res = np.empty(n)
    for k in range(n):
        keep = np.arange(n) != k
        coef, *_ = np.linalg.lstsq(a[keep], energies_ev[keep], rcond=None)
        res[k] = energies_ev[k] - a[k] @ coef
    return float(np.sqrt(np.mean((res - res.mean()) ** 2)))


def _common_prefix(names: Sequence[str]) -> str:
    """Return the longest string that every name starts with."""
    first, last = min(names), max(names)  # the sorted extremes differ first
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def group_scores(result: FitResult) -> list[GroupScore]:
    """Return, per same-crystal group of the fit, the baseline, CV and train errors.

    The baseline is the RMS deviation of the reference energies from their group mean: what a
    CE gets that gives every arrangement of the crystal the same energy (no Cd-arrangement
    terms).  A CE only orders arrangements if its CV error is below that.  The last entry,
    labelled ``all``, pools every group (its ``cv_mev_per_nc`` is the selection score).
    """
    groups = np.asarray(result.groups)
    if groups.size != len(result.names):
        return []
    n_b = np.asarray(result.n_b_sites, dtype=np.float64)
    ref = np.asarray(result.reference_ev_per_site) * n_b
    cv = (np.asarray(result.cv_predicted_ev_per_site) - result.reference_ev_per_site) * n_b
    tr = (np.asarray(result.predicted_ev_per_site) - result.reference_ev_per_site) * n_b

    sem = np.asarray(result.energy_sem_ev, dtype=np.float64)
    counts = np.asarray(result.site_class_counts, dtype=np.float64)

    def score(label: str, mask: np.ndarray, n_b_sites: int) -> GroupScore:
        g = groups[mask]
        s = sem[mask] if sem.size == groups.size else np.zeros(0)
        s = s[np.isfinite(s)]
        local = float("nan")
        if label != "all" and counts.shape[0] == groups.size:
            local = _MEV_PER_EV * _local_loo_rmse(ref[mask], counts[mask])
        return GroupScore(
            label=label,
            n_members=int(mask.sum()),
            n_b_sites=n_b_sites,
            baseline_mev_per_nc=_MEV_PER_EV * relative_rmse(ref[mask], g),
            cv_mev_per_nc=_MEV_PER_EV * relative_rmse(cv[mask], g),
            train_mev_per_nc=_MEV_PER_EV * relative_rmse(tr[mask], g),
            start_sem_mev_per_nc=(
                _MEV_PER_EV * float(np.sqrt(np.mean(s**2))) if s.size else float("nan")
            ),
            local_loo_mev_per_nc=local,
        )

    out = []
    for gid in np.unique(groups[groups >= 0]):
        mask = groups == gid
        names = [result.names[i] for i in np.flatnonzero(mask)]
        label = _common_prefix(names).rstrip("_-") or names[0]
        out.append(score(label, mask, int(n_b[mask][0])))
    if out:
        out.append(score("all", groups >= 0, 0))
    return out


@dataclass
class _Problem:
    """The weighted (and constrained) linear problem of one cluster space."""

    a_full: np.ndarray  # cluster vectors (n, p)
    weights: np.ndarray  # N_grid / N_B per structure
    n_b: np.ndarray
    y_site: np.ndarray  # reference energy per B site (eV)
    vac: np.ndarray | None  # cluster vector of the vacuum if the constraint is on
    vacuum_ev_per_site: float
    groups: np.ndarray  # same_crystal_groups of the records
    row_scale: np.ndarray | None = None  # noise weights of the structure rows (None: per site)
    #: parameters = basis @ fitted ones (linear constraints, :func:`constrained_basis`), in
    #: the coordinates of the design without the basis (constant column already eliminated
    #: if the vacuum is constrained); None: no constraint
    basis: np.ndarray | None = None
    #: the vacancy pair constraint has rows (a pair beyond its distance) in this space
    pair_constrained: bool = False

    @property
    def design(self) -> np.ndarray:
        """Rows scaled to eV per B site; constant column eliminated if constrained."""
        a = self.a_full
        if self.vac is not None:
            a = a[:, 1:] - np.outer(a[:, 0], self.vac[1:])
        if self.basis is not None:
            a = a @ self.basis
        return a * self.weights[:, None]

    @property
    def target(self) -> np.ndarray:
        """Target per B site (minus the fixed vacuum energy when constrained)."""
        if self.vac is None:
            return self.y_site.copy()
        return self.y_site - self.weights * self.vacuum_ev_per_site

    def full_parameters(self, reduced: np.ndarray) -> np.ndarray:
        """Return the icet parameter vector from the fitted (reduced) one."""
        reduced = np.asarray(reduced, dtype=np.float64)
        if self.basis is not None:
            reduced = self.basis @ reduced
        if self.vac is None:
            return reduced.copy()
        j0 = self.vacuum_ev_per_site - float(self.vac[1:] @ reduced)
        return np.concatenate([[j0], reduced])


def _make_problem(
    cs: Any,
    sc: Any,
    records: Sequence[TrainingRecord],
    a_angstrom: float,
    vacuum_energy_ev_per_site: float | None,
    vacancy_pair_cutoff_angstrom: float | None = None,
    vacancy_pair_partners: Sequence[str] = VACANCY_PAIR_PARTNERS,
    vacancy_cluster_terms: Sequence[str] | None = None,
) -> _Problem:
    a_full, y_grid = sc.get_fit_data(key=PROPERTY_KEY)
    basis = None
    blocks = []
    if vacancy_pair_cutoff_angstrom is not None:
        blocks.append(
            vacancy_pair_constraints(
                cs, vacancy_pair_cutoff_angstrom, a_angstrom, vacancy_pair_partners
            )
        )
    pair_constrained = bool(blocks and blocks[0].shape[0])
    kept = np.zeros((a_full.shape[1], 0))
    if vacancy_cluster_terms is not None:
        blocks.append(vacancy_cluster_constraints(cs, vacancy_cluster_terms, a_angstrom))
        kept, energies = _kept_cluster_terms(cs, vacancy_cluster_terms, a_angstrom)
        if kept.shape[1]:  # the kept terms get their own columns (cluster counts)
            blocks.append(energies / np.linalg.norm(energies, axis=1)[:, None])
    rows = np.vstack(blocks) if blocks else np.zeros((0, a_full.shape[1]))
    if rows.shape[0]:
        if vacuum_energy_ev_per_site is not None:  # the constant is eliminated
            if np.any(np.abs(rows[:, 0]) > 1e-9):
                raise ValueError("a vacancy constraint involves the constant term")
            rows, kept = rows[:, 1:], kept[1:]
        basis = np.hstack([constrained_basis(rows, rows.shape[1]), kept])
    n_grid = np.array([r.n_grid_sites for r in records], dtype=np.float64)
    n_b = np.array([r.n_b_sites for r in records], dtype=np.float64)
    weights = n_grid / n_b
    vac = None if vacuum_energy_ev_per_site is None else vacuum_cluster_vector(cs, a_angstrom)
    return _Problem(
        a_full=np.asarray(a_full, dtype=np.float64),
        weights=weights,
        n_b=n_b,
        y_site=np.asarray(y_grid, dtype=np.float64) * weights,
        vac=vac,
        vacuum_ev_per_site=float(vacuum_energy_ev_per_site or 0.0),
        groups=same_crystal_groups(records),
        basis=basis,
        pair_constrained=pair_constrained,
    )


@dataclass
class _CVOutcome:
    cv_pred: np.ndarray  # held-out predictions per B site (eV), design units
    fold_mean_rmse: float
    final_reduced: np.ndarray


def difference_rows(
    design: np.ndarray, target: np.ndarray, groups: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the same-crystal difference rows of the structures ``members``.

    For every group (:func:`same_crystal_groups`) with two or more of ``members``, each
    member contributes ``row - mean(rows of the group's members)`` and the same for the
    target.  The rows are per B site like the structure rows (all members of a group have the
    same number of B sites), so they enter the fit with weight 1: an error of 1 meV per B site
    in an energy *difference* counts as much as one in an energy.
    """
    rows: list[np.ndarray] = []
    ys: list[float] = []
    members = np.asarray(members)
    g = groups[members]
    for gid in np.unique(g[g >= 0]):
        idx = members[g == gid]
        if idx.size < 2:
            continue
        d_mean = design[idx].mean(axis=0)
        y_mean = target[idx].mean()
        for i in idx:
            rows.append(design[i] - d_mean)
            ys.append(float(target[i] - y_mean))
    if not rows:
        return np.zeros((0, design.shape[1])), np.zeros(0)
    return np.array(rows), np.array(ys)


def _fit_rows(
    design: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    members: np.ndarray,
    method: str,
    difference_weight: float,
    row_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Fit (trainstation) to the structure rows of ``members`` plus weighted difference rows.

    ``row_scale`` (per structure) multiplies the structure rows: the noise weights of
    :func:`noise_row_scale`; None leaves the rows per B site.
    """
    from trainstation import fit as ts_fit

    a, b = design[members], target[members]
    if row_scale is not None:
        a = a * row_scale[members, None]
        b = b * row_scale[members]
    if difference_weight > 0.0:
        da, db = difference_rows(design, target, groups, members)
        a = np.vstack([a, difference_weight * da])
        b = np.concatenate([b, difference_weight * db])
    # A column that no fitted row probes (a many-body vacancy term whose only structures
    # are held out, or weighted 0) holds round-off only: it gets parameter 0 instead of
    # the round-off's huge inverse.
    norms = np.linalg.norm(a, axis=0)
    probed = norms > 1e-9 * max(float(norms.max(initial=0.0)), 1e-300)
    if not probed.all():
        a = a[:, probed]
    with _quiet_fit():
        out = ts_fit(a, b, fit_method=method, **dict(_METHOD_KWARGS.get(method, {})))
    params = np.zeros(probed.size)
    params[probed] = np.asarray(out["parameters"], dtype=np.float64)
    return params


def _cross_validate(
    design: np.ndarray,
    target: np.ndarray,
    method: str,
    n_splits: int,
    seed: int,
    groups: np.ndarray | None = None,
    difference_weight: float = 0.0,
    row_scale: np.ndarray | None = None,
) -> _CVOutcome:
    """k-fold CV over structures and the final fit; return held-out predictions too.

    Folds are ``KFold(n_splits, shuffle=True, random_state=seed)`` over the structures (as in
    trainstation).  With ``difference_weight`` every fit also gets the same-crystal difference
    rows (:func:`difference_rows`, times ``difference_weight``) of its training structures
    only, so nothing of a held-out structure leaks into its prediction.
    """
    from sklearn.model_selection import KFold

    n = target.size
    groups = np.full(n, -1) if groups is None else groups
    splitter = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    cv_pred = np.full(n, np.nan)
    fold_rmse = []
    for train, test in splitter.split(design):
        params = _fit_rows(design, target, groups, train, method, difference_weight, row_scale)
        cv_pred[test] = design[test] @ params
        fold_rmse.append(float(np.sqrt(np.mean((cv_pred[test] - target[test]) ** 2))))
    final = _fit_rows(design, target, groups, np.arange(n), method, difference_weight, row_scale)
    return _CVOutcome(
        cv_pred=cv_pred, fold_mean_rmse=float(np.mean(fold_rmse)), final_reduced=final
    )


def _rmse(residual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(residual) ** 2)))


def _score_candidate(
    problem: _Problem,
    cutoffs: tuple[float, ...],
    method: str,
    n_splits: int,
    seed: int,
    difference_weight: float = 0.0,
    vacancy_pair_cutoff_angstrom: float | None = None,
) -> tuple[CandidateScore, _CVOutcome | None]:
    design, target = problem.design, problem.target
    n_params = problem.a_full.shape[1]
    rank = int(np.linalg.matrix_rank(design))
    try:
        out = _cross_validate(
            design,
            target,
            method,
            n_splits,
            seed,
            problem.groups,
            difference_weight,
            problem.row_scale,
        )
    except (ValueError, np.linalg.LinAlgError) as exc:  # a method failing is a result
        nan = float("nan")
        score = CandidateScore(
            cutoffs,
            method,
            n_params,
            0,
            rank,
            nan,
            nan,
            nan,
            nan,
            nan,
            error=str(exc),
            vacancy_pair_cutoff_angstrom=vacancy_pair_cutoff_angstrom,
        )
        return score, None
    cv_res = out.cv_pred - target
    tr_res = design @ out.final_reduced - target
    full = problem.full_parameters(out.final_reduced)
    score = CandidateScore(
        cutoffs=cutoffs,
        fit_method=method,
        n_parameters=n_params,
        n_nonzero_parameters=int(np.count_nonzero(full)),
        rank=rank,
        cv_rmse_mev_per_site=_MEV_PER_EV * _rmse(cv_res),
        cv_rmse_mev_per_nc=_MEV_PER_EV * _rmse(cv_res * problem.n_b),
        cv_rmse_fold_mean_mev_per_site=_MEV_PER_EV * out.fold_mean_rmse,
        train_rmse_mev_per_site=_MEV_PER_EV * _rmse(tr_res),
        train_rmse_mev_per_nc=_MEV_PER_EV * _rmse(tr_res * problem.n_b),
        cv_relative_rmse_mev_per_nc=_MEV_PER_EV
        * relative_rmse(cv_res * problem.n_b, problem.groups),
        vacancy_pair_cutoff_angstrom=vacancy_pair_cutoff_angstrom,
    )
    return score, out


def _learning_curve(
    problem: _Problem,
    method: str,
    n_splits: int,
    seed: int,
    fractions: Sequence[float],
    difference_weight: float = 0.0,
) -> list[LearningCurvePoint]:
    """CV RMSE on nested random subsets (one fixed permutation) of the training set."""
    design, target = problem.design, problem.target
    n = target.size
    order = np.random.default_rng(seed).permutation(n)
    points: list[LearningCurvePoint] = []
    sizes = sorted({min(n, max(4, round(f * n))) for f in fractions})
    for size in sizes:
        rows = np.sort(order[:size])
        k = min(n_splits, size // 2)  # at least two structures per held-out fold
        try:
            out = _cross_validate(
                design[rows],
                target[rows],
                method,
                k,
                seed,
                problem.groups[rows],
                difference_weight,
                None if problem.row_scale is None else problem.row_scale[rows],
            )
        except (ValueError, np.linalg.LinAlgError):
            continue
        res = out.cv_pred - target[rows]
        tr = design[rows] @ out.final_reduced - target[rows]
        points.append(
            LearningCurvePoint(
                n_train=int(size),
                n_splits=int(k),
                cv_rmse_mev_per_site=_MEV_PER_EV * _rmse(res),
                cv_rmse_mev_per_nc=_MEV_PER_EV * _rmse(res * problem.n_b[rows]),
                train_rmse_mev_per_site=_MEV_PER_EV * _rmse(tr),
            )
        )
    return points


def _selection_key(score: CandidateScore, order: int) -> tuple[float, float, int, int]:
    """Model selection: lowest CV error of same-crystal energy differences, then CV RMSE.

    Monte Carlo and KMC only ever use energy differences between configurations of the same
    crystal (swaps, hops) or between neighbouring ones, so the held-out error of those
    differences decides; the total CV RMSE (dominated by composition, vacancy and size
    variations) breaks ties.  Without same-crystal groups the total CV RMSE decides.
    """
    rel = score.cv_relative_rmse_mev_per_nc
    primary = rel if math.isfinite(rel) else score.cv_rmse_mev_per_nc
    return (primary, score.cv_rmse_mev_per_site, score.n_nonzero_parameters, order)


def fit_cluster_expansion(
    records: Sequence[Mapping[str, Any] | TrainingRecord],
    *,
    cutoff_candidates: Sequence[Sequence[float]] = DEFAULT_CUTOFF_CANDIDATES,
    fit_methods: Sequence[str] = DEFAULT_FIT_METHODS,
    n_splits: int = 10,
    seed: int = 2021,
    a_angstrom: float = A_ANGSTROM,
    vacuum_energy_ev_per_site: float | None = 0.0,
    learning_fractions: Sequence[float] = DEFAULT_LEARNING_FRACTIONS,
    description: str | None = None,
    difference_weight: float = 0.0,
    separate_vacancy: bool = False,
    structure_noise_ev: tuple[float, float] | None = None,
    vacancy_pair_cutoff_angstrom: float | None = None,
    vacancy_pair_partners: Sequence[str] = VACANCY_PAIR_PARTNERS,
    structure_weights: Mapping[str, float] | None = None,
    vacancy_cluster_terms: Sequence[str] | None = None,
) -> FitResult:
    """Select, fit and cross-validate a CE for the reference records.

    Parameters
    ----------
    records
        Database records (mappings, see the module docstring) or :class:`TrainingRecord`.
        Records without occupations are skipped.
    cutoff_candidates
        icet cutoff lists to try, Angstrom.
    fit_methods
        trainstation fit methods to try with every cutoff list.
    n_splits
        Folds of the k-fold cross-validation (at most half the number of structures, so that
        every held-out fold has two or more).
    seed
        Seed of the fold split and of the learning-curve subsets.
    a_angstrom
        Lattice constant of the CE's primitive cell (training structures use it too).
    vacuum_energy_ev_per_site
        Energy per site of an all-X grid imposed exactly (default 0: the padding costs
        nothing, so CE energies do not depend on it); None fits it freely.
    learning_fractions
        Fractions of the training set for the learning curve (nested subsets).
    description
        Text for the CE metadata (a default one is written otherwise).
    difference_weight
        Weight of the same-crystal difference rows (:func:`difference_rows`, per B site)
        added to every fit; 0 (default) switches them off.  Experimental: the
        structure rows alone are dominated by composition, vacancy and size variations (eV
        per NC) and leave the Cd-arrangement terms, which decide segregation, nearly
        undetermined; the difference rows make the fit see the energy differences that Monte
        Carlo swaps and KMC hops use.
    separate_vacancy
        Fit a four-species CE (Pb, Cd, V, X), in which an internal vacancy is a species of
        its own instead of X (:func:`build_cluster_space`).
    structure_noise_ev
        ``(tau_nc, tau_bulk)``: the energy noise of one reference structure (eV per
        structure) that no CE can fit, for NCs and for periodic cells.  Each structure row is
        then weighted by ``N_B / sqrt(sem**2 + tau**2)`` (:func:`noise_row_scale`; ``sem``: the
        start standard error of its energy), i.e. generalized least squares on energies per
        structure, instead of per B site.  None (default): rows per B site, unweighted.
    vacancy_pair_cutoff_angstrom
        With ``separate_vacancy``: the pair interactions of the vacancy (with Cd, V and X,
        relative to Pb) are constrained to zero beyond this distance, Angstrom
        (:func:`vacancy_pair_constraints`), in every candidate; the other pair terms keep the
        candidate's cutoff.  None (default): no constraint.
    vacancy_pair_partners
        The species (among ``"Cd"``, ``"V"``, ``"X"``) whose pair interaction with the
        vacancy the constraint removes beyond ``vacancy_pair_cutoff_angstrom``; default all
        three.  ``("Cd", "V")`` keeps the vacancy's pairs with the outside X to the
        candidate's cutoff, so that a vacancy's energy need not be linear in its number of
        outside neighbours.
    structure_weights
        Name pattern -> factor (>= 0) multiplying that structure's row in every fit
        (:func:`structure_weight_factors`; on top of the noise weights); None: all 1.
    vacancy_cluster_terms
        With ``separate_vacancy``: the many-body vacancy terms that the clusters of three or
        more sites may carry, e.g. ``["V-V-V"]`` (:func:`vacancy_cluster_constraints`: only
        nearest-neighbour connected clusters, every other many-body interaction held to
        zero), in every candidate with a triplet (or larger) cutoff; None (default): the
        many-body terms are unconstrained.

    Returns
    -------
    FitResult
        The refitted CE of the best candidate and all scores.

    Raises
    ------
    ValueError
        With fewer than 4 structures, no candidate, or if every candidate failed.
    """
    kept, skipped = records_from_mappings(records)
    # Folds and subsets depend on the row order: fix it (by name) so that the result does not
    # depend on where the records came from (the database or a fresh computation).
    kept = sorted(kept, key=lambda r: r.name)
    if len(kept) < 4:
        raise ValueError(f"need at least 4 structures on the CE lattice, got {len(kept)}")
    candidates = [tuple(float(c) for c in cut) for cut in cutoff_candidates]
    methods = [str(m) for m in fit_methods]
    if not candidates or not methods:
        raise ValueError("need at least one cutoff candidate and one fit method")
    partners = tuple(str(p) for p in vacancy_pair_partners)
    cluster_terms = (
        None
        if vacancy_cluster_terms is None
        else ["-".join(parse_cluster_term(t)) for t in vacancy_cluster_terms]
    )
    factors = structure_weight_factors([r.name for r in kept], structure_weights)
    k = min(int(n_splits), len(kept) // 2)  # at least two structures per held-out fold
    if k < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")

    scores: list[CandidateScore] = []
    best: tuple[tuple[float, int, int], CandidateScore, _CVOutcome, _Problem, Any] | None = None
    for cutoffs in candidates:
        cs = build_cluster_space(cutoffs, a_angstrom, separate_vacancy=separate_vacancy)
        sc = build_structure_container(cs, kept, a_angstrom)
        problem = _make_problem(
            cs,
            sc,
            kept,
            a_angstrom,
            vacuum_energy_ev_per_site,
            vacancy_pair_cutoff_angstrom,
            partners,
            cluster_terms,
        )
        if structure_noise_ev is not None:
            problem.row_scale = noise_row_scale(kept, structure_noise_ev)
        if structure_weights:
            base = np.ones(len(kept)) if problem.row_scale is None else problem.row_scale
            problem.row_scale = base * factors
        for method in methods:
            score, out = _score_candidate(
                problem,
                cutoffs,
                method,
                k,
                seed,
                difference_weight,
                vacancy_pair_cutoff_angstrom if problem.pair_constrained else None,
            )
            scores.append(score)
            if out is None or not math.isfinite(score.cv_rmse_mev_per_site):
                continue
            key = _selection_key(score, len(scores))
            if best is None or key < best[0]:
                best = (key, score, out, problem, sc)
    if best is None:
        raise ValueError("every candidate failed: " + "; ".join(str(s.error) for s in scores))
    _, score, out, problem, sc = best

    params = problem.full_parameters(out.final_reduced)
    curve = _learning_curve(
        problem, score.fit_method, k, seed, learning_fractions, difference_weight
    )
    settings = {
        "seed": int(seed),
        "n_splits": int(k),
        "a_angstrom": float(a_angstrom),
        "vacuum_energy_ev_per_site": vacuum_energy_ev_per_site,
        "cutoff_candidates": [list(c) for c in candidates],
        "fit_methods": methods,
        "difference_weight": float(difference_weight),
        "separate_vacancy": bool(separate_vacancy),
        "structure_noise_ev": (
            None if structure_noise_ev is None else [float(t) for t in structure_noise_ev]
        ),
        "vacancy_pair_cutoff_angstrom": (
            None if vacancy_pair_cutoff_angstrom is None else float(vacancy_pair_cutoff_angstrom)
        ),
    }
    # recorded only when they differ from the defaults, so that the shipped CE's settings
    # (and the test that refits it from them) stay as they were
    if partners != VACANCY_PAIR_PARTNERS:
        settings["vacancy_pair_partners"] = list(partners)
    if structure_weights:
        settings["structure_weights"] = {str(p): float(w) for p, w in structure_weights.items()}
    if cluster_terms is not None:
        settings["vacancy_cluster_terms"] = list(cluster_terms)
    metadata = _metadata(score, len(kept), settings, description)
    from icet import ClusterExpansion

    ce = ClusterExpansion(sc.cluster_space, params, metadata=metadata)
    # icet stamps user, host and date; keep the file a function of the input only.
    ce.metadata["username"] = "segsim"
    ce.metadata["hostname"] = "n/a"
    ce.metadata["date_created"] = "n/a"

    return FitResult(
        ce=ce,
        cutoffs=score.cutoffs,
        fit_method=score.fit_method,
        candidates=scores,
        cv_rmse_mev_per_site=score.cv_rmse_mev_per_site,
        cv_rmse_mev_per_nc=score.cv_rmse_mev_per_nc,
        train_rmse_mev_per_site=score.train_rmse_mev_per_site,
        train_rmse_mev_per_nc=score.train_rmse_mev_per_nc,
        learning_curve=curve,
        names=[r.name for r in kept],
        kinds=[r.kind for r in kept],
        n_b_sites=problem.n_b.astype(np.int64),
        n_grid_sites=np.array([r.n_grid_sites for r in kept], dtype=np.int64),
        reference_ev_per_site=problem.y_site.copy(),
        predicted_ev_per_site=problem.weights * (problem.a_full @ params),
        cv_predicted_ev_per_site=out.cv_pred
        + (problem.y_site - problem.target),  # undo the vacuum shift
        skipped=skipped,
        structure_container=sc,
        settings=settings,
        groups=problem.groups.copy(),
        energy_sem_ev=np.array([r.energy_sem_ev for r in kept], dtype=np.float64),
        site_class_counts=np.array([site_class_counts(r) for r in kept], dtype=np.float64),
    )


def _metadata(
    score: CandidateScore, n_train: int, settings: dict[str, Any], description: str | None
) -> dict[str, Any]:
    text = description or (
        f"Cluster expansion fitted to {n_train} reference energies (total energy / grid sites) "
        f"with icet/trainstation: cutoffs {list(score.cutoffs)} Angstrom, "
        f"{score.fit_method}, selected by {settings['n_splits']}-fold CV "
        f"(seed {settings['seed']}); CV RMSE {score.cv_rmse_mev_per_site:.2f} meV per B site."
    )
    return {
        "segsim_label": LABEL,
        "segsim_description": text,
        "energy_unit": ENERGY_UNIT,
        "segsim_cutoffs_angstrom": [float(c) for c in score.cutoffs],
        "segsim_fit_method": score.fit_method,
        "segsim_cv_rmse_mev_per_b_site": float(score.cv_rmse_mev_per_site),
        "segsim_cv_rmse_mev_per_nc": float(score.cv_rmse_mev_per_nc),
        "segsim_cv_relative_rmse_mev_per_nc": float(score.cv_relative_rmse_mev_per_nc),
        "segsim_train_rmse_mev_per_b_site": float(score.train_rmse_mev_per_site),
        "segsim_n_training_structures": int(n_train),
        "segsim_fit_settings": dict(settings),
        "segsim_built_by": "segsim.training.fit.fit_cluster_expansion",
    }


# ----------------------------------------------------------------------- physics checks
#: The published arrangements, in the order they are reported.
ARRANGEMENTS: tuple[str, str, str] = ("uniform", "surface", "core")


@dataclass(frozen=True)
class ArrangementEnergy:
    """Energies of one Cd arrangement (eV per NC grid; mean over its structures).

    ``reference_ev`` is None when no reference record exists (the CE energy is then that of the
    configuration built by :mod:`segsim.training.configurations`).
    """

    arrangement: str
    n_structures: int
    reference_ev: float | None
    reference_std_ev: float | None
    ce_ev: float
    ce_std_ev: float
    names: tuple[str, ...]


@dataclass(frozen=True)
class SegregationChecks:
    """E(core) - E(uniform) and E(surface) - E(uniform): reference vs CE, no tuning.

    Differences are in eV per NC (the same grid for all arrangements); ``*_mev_per_site`` divide
    by the ``n_edge**3`` B sites.
    """

    n_edge: int
    x_cd: float
    n_b_sites: int
    energies: dict[str, ArrangementEnergy]
    surface_minus_uniform_reference_ev: float | None
    core_minus_uniform_reference_ev: float | None
    surface_minus_uniform_ce_ev: float
    core_minus_uniform_ce_ev: float
    ordering_reference: str | None
    ordering_ce: str

    @property
    def ordering_agrees(self) -> bool | None:
        """Whether the CE orders the three arrangements as the reference does (None: no ref)."""
        if self.ordering_reference is None:
            return None
        return self.ordering_reference == self.ordering_ce

    def summary(self) -> str:
        """One plain sentence per source with the ordering and the differences."""
        lines = []
        if self.ordering_reference is not None:
            lines.append(
                f"reference: {self.ordering_reference} "
                f"(core-uniform {self.core_minus_uniform_reference_ev:+.3f} eV, "
                f"surface-uniform {self.surface_minus_uniform_reference_ev:+.3f} eV)"
            )
        lines.append(
            f"CE: {self.ordering_ce} (core-uniform {self.core_minus_uniform_ce_ev:+.3f} eV, "
            f"surface-uniform {self.surface_minus_uniform_ce_ev:+.3f} eV)"
        )
        return "\n".join(lines)


def _ordering(values: Mapping[str, float]) -> str:
    """Return e.g. ``"core > uniform > surface"`` (highest energy first, stable for ties)."""
    names = sorted(values, key=lambda k: (-values[k], ARRANGEMENTS.index(k)))
    return " > ".join(names)


def _as_icet_ce(ce: Any) -> Any:
    """Accept an icet ClusterExpansion, a ClusterExpansionModel or a path to a ``.ce``."""
    if isinstance(ce, str | Path):
        from icet import ClusterExpansion

        return ClusterExpansion.read(str(ce))
    return getattr(ce, "icet_ce", ce)


def segregation_checks(
    ce: Any,
    records: Sequence[Mapping[str, Any] | TrainingRecord] | None = None,
    *,
    n_edge: int = 5,
    x_cd: float = 0.25,
    pad: int | None = None,
    uniform_seeds: Sequence[int] = tuple(range(8)),
) -> SegregationChecks:
    """Compare uniform, surface- and core-segregated Cd: reference records vs the CE.

    Records are matched by ``n_edge``, ``x_cd`` (to 1e-6), no vacancy, and
    ``tags["arrangement"]`` in ``{"uniform", "surface", "core"}``; several uniform (random)
    ones are averaged.  The CE is evaluated (``N_grid * predict``) on the same occupations.  An
    arrangement without a record is built with :mod:`segsim.training.configurations` on
    ``build_cube(n_edge, a, pad)`` (uniform: averaged over ``uniform_seeds``) and has no
    reference energy.

    Parameters
    ----------
    ce
        ``icet.ClusterExpansion``, :class:`~segsim.models.cluster_expansion.ClusterExpansionModel`
        or path to a ``.ce`` file.
    records
        Reference records (mappings or :class:`TrainingRecord`), or None for CE only.
    n_edge, x_cd
        The NC: the published 3 nm CsCd0.25Pb0.75Br3 is ``n_edge=5``, ``x_cd=0.25``.
    pad
        Padding of generated lattices (default: cluster reach + 2, at least 3).
    uniform_seeds
        Seeds of generated uniform configurations.

    Returns
    -------
    SegregationChecks
        Energies, differences and the ordering (highest energy first) of each source.
    """
    from segsim.lattice import build_cube
    from segsim.training import configurations as conf

    ice = _as_icet_ce(ce)
    a = float(np.asarray(ice.primitive_structure.cell)[0, 0])
    symbols = code_symbols_of(ice.get_cluster_space_copy())
    kept = records_from_mappings(records)[0] if records is not None else []
    matched: dict[str, list[TrainingRecord]] = {k: [] for k in ARRANGEMENTS}
    for rec in kept:
        arr = rec.tags.get("arrangement")
        if (
            arr in matched
            and rec.n_edge == n_edge
            and abs(rec.x_cd - x_cd) < 1e-6
            and not np.any(rec.occupations == species.VAC)
        ):
            matched[arr].append(rec)

    def ce_total(occ: np.ndarray, shape: Sequence[int]) -> float:
        atoms = grid_atoms(occ, shape, a, symbols)
        return float(ice.predict(atoms)) * len(atoms)

    lattice = None
    energies: dict[str, ArrangementEnergy] = {}
    for arr in ARRANGEMENTS:
        recs = sorted(matched[arr], key=lambda r: r.name)
        if recs:
            ce_e = np.array([ce_total(r.occupations, r.shape) for r in recs])
            ref = np.array([r.energy_ev for r in recs])
            energies[arr] = ArrangementEnergy(
                arr,
                len(recs),
                float(ref.mean()),
                float(ref.std()),
                float(ce_e.mean()),
                float(ce_e.std()),
                tuple(r.name for r in recs),
            )
            continue
        if lattice is None:
            reach = max([float(c) for c in ice.cutoffs], default=a) / a
            lattice = build_cube(n_edge, a, pad if pad is not None else max(3, int(reach) + 2))
        if arr == "uniform":
            occs = [
                conf.uniform_occupations(lattice, x_cd, np.random.default_rng(s))
                for s in uniform_seeds
            ]
        elif arr == "surface":
            occs = [conf.surface_segregated_occupations(lattice, x_cd)]
        else:
            occs = [conf.core_segregated_occupations(lattice, x_cd)]
        ce_e = np.array([ce_total(o, lattice.shape) for o in occs])
        energies[arr] = ArrangementEnergy(
            arr, len(occs), None, None, float(ce_e.mean()), float(ce_e.std()), ()
        )

    has_ref = all(e.reference_ev is not None for e in energies.values())
    ref = {k: e.reference_ev for k, e in energies.items()}
    cee = {k: e.ce_ev for k, e in energies.items()}

    def diff(d: Mapping[str, float | None], k: str) -> float | None:
        if d[k] is None or d["uniform"] is None:
            return None
        return float(d[k] - d["uniform"])  # type: ignore[operator]

    return SegregationChecks(
        n_edge=int(n_edge),
        x_cd=float(x_cd),
        n_b_sites=int(n_edge) ** 3,
        energies=energies,
        surface_minus_uniform_reference_ev=diff(ref, "surface"),
        core_minus_uniform_reference_ev=diff(ref, "core"),
        surface_minus_uniform_ce_ev=float(cee["surface"] - cee["uniform"]),
        core_minus_uniform_ce_ev=float(cee["core"] - cee["uniform"]),
        ordering_reference=_ordering(ref) if has_ref else None,  # type: ignore[arg-type]
        ordering_ce=_ordering(cee),
    )
