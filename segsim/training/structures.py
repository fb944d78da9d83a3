"""Reference structures for fitting the cluster expansion (issue 3).

The contract shared by the training pipeline: structure generation produces
:class:`ReferenceStructure` objects, the reference pipeline computes their (relaxed) energies and
stores them in an ASE database keyed by :attr:`ReferenceStructure.name`, and the fit turns those
on the CE lattice (``lattice`` and ``occupations`` not None) into icet training data.

:func:`build_training_set` generates the set (NCs with the published and other Cd
arrangements, vacancy NCs, periodic bulk cells, NCs with a Ruddlesden-Popper fault and their
unfaulted twins, CsBr references), deterministically for a given seed;
:func:`build_rp_fault` documents the RP construction; :func:`minimum_distance_angstrom` is the
sanity check of every generated geometry.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segsim import atomistic, species
from segsim.atomistic import RP_GAP_ANGSTROM
from segsim.lattice import FACE, Lattice, build_cube, build_periodic
from segsim.training import configurations


@dataclass(eq=False)
class ReferenceStructure:
    """One structure of the training (or validation) set.

    Attributes
    ----------
    name
        Unique, stable key (e.g. ``nc5_x0.25_core``); the database row is found by it.
    kind
        ``"nc"`` (nanocrystal), ``"bulk"`` (periodic cell), ``"nc_vacancy"``, ``"nc_rp"``
        (NC with a Ruddlesden-Popper fault), ...
    atoms
        The atomistic structure (unrelaxed), charge-balanced (see :mod:`segsim.atomistic`).
    lattice
        The B-lattice grid the CE sees, or None for structures that are not on the CE lattice
        (RP faults: they feed eps_RP and eta, not the CE).
    occupations
        B-lattice species codes on ``lattice`` (Pb, Cd, V, O), or None.
    x_cd
        Cd fraction of the B cations.
    n_edge
        B sites per edge (NC) or per periodic cell edge (bulk).
    tags
        Free-form, JSON-serialisable description (arrangement, seed, RP region, ...).
    """

    name: str
    kind: str
    atoms: Any
    lattice: Lattice | None
    occupations: np.ndarray | None
    x_cd: float
    n_edge: int
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def on_ce_lattice(self) -> bool:
        """Whether this structure can be a CE training structure."""
        return self.lattice is not None and self.occupations is not None

    def ce_structure(self, a_angstrom: float) -> Any:
        """Return the ``ase.Atoms`` of the B-lattice grid with CE symbols (Pb, Cd, X).

        Parameters
        ----------
        a_angstrom
            Lattice constant of the CE's primitive cell (positions must map onto it).
        """
        from ase import Atoms

        if self.lattice is None or self.occupations is None:
            raise ValueError(f"{self.name}: not on the CE lattice")
        symbols = np.asarray(species.CE_SYMBOLS)[self.occupations]
        return Atoms(
            symbols=list(symbols),
            positions=self.lattice.coords.astype(np.float64) * a_angstrom,
            cell=np.diag(np.asarray(self.lattice.shape, dtype=np.float64) * a_angstrom),
            pbc=True,
        )


# ---------------------------------------------------------------------------------------------
# Training-set generation
# ---------------------------------------------------------------------------------------------

#: Cd fraction of the three published DFT configurations (uniform, surface, core).
PUBLISHED_X_CD: float = 0.25

#: Conventional cubic cell of hypothetical rock-salt CsBr (the RP fault layer's structure).
CSBR_ROCKSALT_A_ANGSTROM: float = 7.2

#: Cubic cell of CsBr in its ground-state CsCl-type structure (experiment, room temperature).
CSBR_CSCL_A_ANGSTROM: float = 4.29

#: Where the RP fault goes in an NC of ``n`` B planes: the index ``k`` of the first B plane of
#: the upper block (planes ``0 .. k-1`` below the fault, ``k .. n-1`` above it).
#: ``"middle"``: ``n // 2``; ``"surface"``: 1 (the lower block is a single octahedral layer
#: lining the bottom face, an RP slab at the surface).
RP_POSITIONS: dict[str, Callable[[int], int]] = {
    "middle": lambda n: n // 2,
    "surface": lambda n: 1,
}

#: Rule by which :mod:`segsim.atomistic` keeps a structure with vacancies neutral.
VACANCY_RULE = (
    "each V site loses its B atom and two Br of its octahedron (trans pair along z, else y, "
    "else x; segsim.atomistic.terminate step 3), so V is neutral"
)


def minimum_distance_angstrom(atoms: Any, cutoff_angstrom: float = 5.0) -> float:
    """Return the shortest interatomic distance of a structure, in Angstrom.

    Periodic images count where ``atoms.pbc`` is set (including an atom and its own image).

    Parameters
    ----------
    atoms
        The ``ase.Atoms``.
    cutoff_angstrom
        Search radius; ``inf`` is returned when no two atoms are closer than this.
    """
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2 and not np.any(atoms.pbc):
        return float("inf")
    dist = neighbor_list("d", atoms, float(cutoff_angstrom))
    return float(dist.min()) if dist.size else float("inf")


def format_x(x_cd: float) -> str:
    """Return the composition as it appears in structure names (``0.25``, ``0.1``, ``0``, ``1``)."""
    return f"{float(x_cd):g}"


def _rng(seed: int, key: str) -> np.random.Generator:
    """Return the generator of one structure (or group): ``SeedSequence(seed, crc32(key))``.

    Each structure draws from its own stream keyed by its name, so adding, removing or
    reordering other structures never changes it.
    """
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(zlib.crc32(key.encode()),))
    )


def _x_of(occupations: np.ndarray) -> float:
    """Return N_Cd / (N_Cd + N_Pb) (0 for a structure without B cations)."""
    counts = np.bincount(np.asarray(occupations), minlength=species.N_SPECIES)
    n_cat = int(counts[species.PB] + counts[species.CD])
    return float(counts[species.CD]) / n_cat if n_cat else 0.0


def _nc_structure(
    name: str,
    lattice: Lattice,
    occupations: np.ndarray,
    vacuum_angstrom: float | None,
    *,
    kind: str = "nc",
    **tags: Any,
) -> ReferenceStructure:
    """Wrap a lattice state as a :class:`ReferenceStructure` (charge-balanced).

    An NC gets ``vacuum_angstrom`` around it; a periodic cell takes ``vacuum_angstrom=None``.
    """
    occ = np.asarray(occupations, dtype=species.OCC_DTYPE)
    occ.setflags(write=False)
    atoms = atomistic.to_atoms(lattice, occ, vacuum_angstrom=vacuum_angstrom)
    return ReferenceStructure(
        name=name,
        kind=kind,
        atoms=atoms,
        lattice=lattice,
        occupations=occ,
        x_cd=_x_of(occ),
        n_edge=lattice.n_edge,
        tags={"n_cd": int((occ == species.CD).sum()), **tags},
    )


def _nc_set(
    lattice: Lattice,
    *,
    compositions: Sequence[float],
    end_members: Sequence[float],
    n_random: int,
    n_random_other: int,
    n_profiles: int,
    seed: int,
    vacuum_angstrom: float,
) -> list[ReferenceStructure]:
    """NCs on the CE lattice: published configurations, profiles, other x, end members."""
    n = lattice.n_edge
    out: list[ReferenceStructure] = []
    x0 = PUBLISHED_X_CD
    base = f"nc{n}_x{format_x(x0)}"
    common = {"x_nominal": x0, "published": True}
    for i in range(n_random):
        name = f"{base}_uniform_{i}"
        occ = configurations.uniform_occupations(lattice, x0, _rng(seed, name))
        out.append(
            _nc_structure(name, lattice, occ, vacuum_angstrom, arrangement="uniform", **common)
        )
    seg: dict[str, np.ndarray] = {}
    for arrangement, builder in (
        ("surface", configurations.surface_segregated_occupations),
        ("core", configurations.core_segregated_occupations),
    ):
        name = f"{base}_{arrangement}"
        seg[arrangement] = builder(lattice, x0, _rng(seed, name))
        out.append(
            _nc_structure(
                name, lattice, seg[arrangement], vacuum_angstrom, arrangement=arrangement, **common
            )
        )
    # Layer profiles between surface (t = -1), layer-uniform (t = 0) and core (t = +1).
    x_act = configurations.n_cd_for(lattice, x0) / lattice.n_nc_sites
    for j in range(n_profiles):
        t = -1.0 + 2.0 * (j + 1) / (n_profiles + 1)
        f_seg = configurations.cd_fraction_by_depth(lattice, seg["surface" if t < 0 else "core"])
        weights = (1.0 - abs(t)) * x_act + abs(t) * np.nan_to_num(f_seg)
        name = f"{base}_profile_t{t:+.2f}"
        occ = configurations.layer_profile_occupations(lattice, x0, weights, _rng(seed, name))
        out.append(
            _nc_structure(
                name,
                lattice,
                occ,
                vacuum_angstrom,
                arrangement="profile",
                profile_t=round(t, 12),
                profile_weights=[float(w) for w in weights],
                x_nominal=x0,
                published=False,
            )
        )
    for x in compositions:
        if x == x0:
            continue
        for i in range(n_random_other):
            name = f"nc{n}_x{format_x(x)}_uniform_{i}"
            occ = configurations.uniform_occupations(lattice, x, _rng(seed, name))
            out.append(
                _nc_structure(
                    name, lattice, occ, vacuum_angstrom, arrangement="uniform", x_nominal=float(x)
                )
            )
    for x in end_members:
        name = f"nc{n}_x{format_x(x)}_pure"
        occ = configurations.uniform_occupations(lattice, x, _rng(seed, name))
        out.append(
            _nc_structure(
                name, lattice, occ, vacuum_angstrom, arrangement="pure", x_nominal=float(x)
            )
        )
    return out


def _vacancy_set(
    lattice: Lattice,
    *,
    n_structures: int,
    n_surface: int,
    x_cd: float,
    seed: int,
    vacuum_angstrom: float,
) -> list[ReferenceStructure]:
    """NCs with one or two B vacancies (interior sites, or face sites of the surface shell).

    Plus a depth series per edge: one vacancy in a pure CsPbBr3 NC at depth 0 (face centre),
    1, ... up to the centre (``nc{n}_x0_vac1-depth{d}``, tag ``vacancy_series: depth``).

    Structure ``i`` has ``1 + i % 2`` V sites (capped by the number of candidate sites); the
    last ``n_surface`` of them put the V on face sites (where expulsion leaves them), the
    others on interior sites (depth >= 1).  The ``round(x_cd n^3)`` Cd go on random sites
    among the remaining ones.
    """
    n = lattice.n_edge
    out: list[ReferenceStructure] = []
    in_nc = np.flatnonzero(lattice.in_nc)
    interior = in_nc[lattice.depth[in_nc] >= 1]
    face = in_nc[lattice.n_outside_nn[in_nc] == FACE]
    n_cd = configurations.n_cd_for(lattice, x_cd)
    for i in range(n_structures):
        where = "surface" if i >= n_structures - n_surface else "interior"
        cand = face if where == "surface" else interior
        n_v = min(1 + i % 2, cand.size)
        if n_v == 0:
            continue
        name = f"nc{n}_x{format_x(x_cd)}_vac{n_v}-{where}_{i}"
        rng = _rng(seed, name)
        v_sites = np.sort(rng.choice(cand, size=n_v, replace=False))
        occ = lattice.empty_occupations()
        occ[v_sites] = species.VAC
        rest = in_nc[occ[in_nc] == species.PB]
        occ[rng.choice(rest, size=n_cd, replace=False)] = species.CD
        out.append(
            _nc_structure(
                name,
                lattice,
                occ,
                vacuum_angstrom,
                kind="nc_vacancy",
                arrangement="uniform",
                x_nominal=float(x_cd),
                vacancy_location=where,
                vacancy_sites=[int(s) for s in v_sites],
                vacancy_depths=[int(lattice.depth[s]) for s in v_sites],
                charge_rule=VACANCY_RULE,
            )
        )
    # Depth series: one V on the central axis of a pure CsPbBr3 NC, from the face centre
    # (depth 0) to the centre.  Same species counts, so the fit sees the energy of moving a
    # vacancy into the crystal (vacancy injection, which the KMC depends on) directly.
    c = lattice.pad + n // 2
    for depth in range((n + 1) // 2):
        site = int(
            lattice.site_index(np.array([c]), np.array([c]), np.array([lattice.pad + depth]))[0]
        )
        occ = lattice.empty_occupations()
        occ[site] = species.VAC
        out.append(
            _nc_structure(
                f"nc{n}_x0_vac1-depth{depth}",
                lattice,
                occ,
                vacuum_angstrom,
                kind="nc_vacancy",
                arrangement="pure",
                x_nominal=0.0,
                vacancy_location="surface" if depth == 0 else "interior",
                vacancy_sites=[site],
                vacancy_depths=[int(lattice.depth[site])],
                vacancy_series="depth",
                charge_rule=VACANCY_RULE,
            )
        )
    return out


#: The :func:`_surface_pit_set` structures: name suffix -> (receded sites, vacancy sites, Cd
#: sites), each a list of (dx, dy, depth) offsets from the centre of the -z face: dx, dy in
#: the face, depth 0 the surface shell; ``"edge"`` and ``"corner"`` name those sites, ``"far"``
#: the centre of the opposite (+z) face.
SURFACE_PITS: dict[str, tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = {
    "pit1-face": (((0, 0, 0),), (), ()),
    "pit1-edge": (("edge",), (), ()),
    "pit1-corner": (("corner",), (), ()),
    "pit2-face": (((0, 0, 0), (1, 0, 0)), (), ()),
    "pit1-face_v-beside": (((0, 0, 0),), ((1, 0, 0),), ()),
    "pit1-face_v-below": (((0, 0, 0),), ((0, 0, 1),), ()),
    "pit1-face_cd-beside": (((0, 0, 0),), (), ((1, 0, 0),)),
    "pit1-face_cd-below": (((0, 0, 0),), (), ((0, 0, 1),)),
    "pit1-face_cd-far": (((0, 0, 0),), (), ("far",)),
}

#: Vacancy clusters at and under a face, built like :data:`SURFACE_PITS` (same offsets; on a
#: 4^3 NC the depth-1 sites have dx, dy in {-1, 0}).  They pin the V-V and V-O interactions
#: beyond nearest neighbours that the expulsion kinetics visit and that the first training
#: set left to the fit's regularisation: no V-V pair at squared distance 3 or 4 (lattice
#: units), and with it a fitted third-neighbour V-V term that lowered a Pb's removal energy by
#: 1.49 eV and dissolved the NC in the KMC (studies/ce_barriers, issue 17).  Names give the
#: vacancy count and the squared distance of the pair that is new.
SURFACE_VACANCIES: dict[str, tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = {
    "v2-d2-face": ((), ((0, 0, 0), (-1, -1, 0)), ()),
    "v2-d2-normal": ((), ((0, 0, 0), (-1, 0, 1)), ()),
    "v2-d3-normal": ((), ((0, 0, 0), (-1, -1, 1)), ()),
    "v2-d3-edge": ((), ((-2, 0, 1), (-1, 1, 0)), ()),
    "v2-d4-face": ((), ((-1, 0, 0), (1, 0, 0)), ()),
    "v3-face-line": ((), ((-1, 0, 0), (0, 0, 0), (1, 0, 0)), ()),
    "v3-face-l": ((), ((0, 0, 0), (-1, 0, 0), (0, -1, 0)), ()),
    "v3-d3": ((), ((0, 0, 0), (-1, 0, 0), (-1, -1, 1)), ()),
    "v4-face-square": ((), ((0, 0, 0), (-1, 0, 0), (0, -1, 0), (-1, -1, 0)), ()),
    "pit1-face_v-d2": (((0, 0, 0),), ((-1, -1, 0),), ()),
    "pit1-face_v-d3": (((0, 0, 0),), ((-1, -1, 1),), ()),
    "v1-face_cd-d3": ((), ((0, 0, 0),), ((-1, -1, 1),)),
}


def _surface_pit_set(lattice: Lattice, *, vacuum_angstrom: float) -> list[ReferenceStructure]:
    """Pure CsPbBr3 NCs with receded surface sites and surface vacancy clusters (kind ``nc_pit``).

    :data:`SURFACE_PITS` and :data:`SURFACE_VACANCIES`.

    A receded site is outside (O) although it lies in the as-built cube: the pits and steps
    that expulsion and recession leave, which the KMC's removal and recession energies see
    and the cubes alone never show.  Same species counts make same-crystal groups: a pit on
    a face, an edge or a corner (where a missing unit costs least); a vacancy beside or below
    a pit; one Cd beside, below or far from a pit (on the centre of the opposite face).
    """
    n, p = lattice.n_edge, lattice.pad
    c = p + n // 2

    named = {"edge": (c, p, p), "corner": (p, p, p), "far": (c, c, p + n - 1)}

    def sites(offsets: tuple[Any, ...]) -> list[int]:
        xyz = [named[o] if isinstance(o, str) else (c + o[0], c + o[1], p + o[2]) for o in offsets]
        return [int(lattice.site_index(*(np.array([v]) for v in q))[0]) for q in xyz]

    out = []
    for suffix, offsets in {**SURFACE_PITS, **SURFACE_VACANCIES}.items():
        pits, vacancies, cds = (sites(o) for o in offsets)
        occ = lattice.empty_occupations()
        occ[pits] = species.OUT
        occ[vacancies] = species.VAC
        occ[cds] = species.CD
        out.append(
            _nc_structure(
                f"nc{n}_x0_{suffix}",
                lattice,
                occ,
                vacuum_angstrom,
                kind="nc_pit",
                arrangement="pure" if not cds else "single-cd",
                x_nominal=0.0,
                receded_sites=pits,
                vacancy_sites=vacancies,
                charge_rule=VACANCY_RULE,
            )
        )
    return out


# --- periodic bulk cells --------------------------------------------------------------------

#: The 48 signed permutation matrices of the cubic point group Oh (as integer matrices).
_OH_OPS: tuple[np.ndarray, ...] = tuple(
    np.diag(signs) @ np.eye(3, dtype=np.int64)[list(perm)]
    for perm in itertools.permutations(range(3))
    for signs in itertools.product((1, -1), repeat=3)
)


def _is_proper_t(op: np.ndarray) -> bool:
    """Whether ``op`` is one of the 12 rotations of the tetrahedral group T."""
    perm = np.abs(op).argmax(axis=1)
    cyclic = tuple(perm) in {(0, 1, 2), (1, 2, 0), (2, 0, 1)}
    return cyclic and round(np.linalg.det(op)) == 1


_T_OPS = tuple(i for i, op in enumerate(_OH_OPS) if _is_proper_t(op))


def _images(lattice: Lattice, occupations: np.ndarray) -> list[list[bytes]]:
    """Return, per Oh operation, the occupation bytes of all its translates (periodic cell)."""
    m = lattice.shape[0]
    coords = lattice.coords.astype(np.int64)
    occ = np.asarray(occupations)
    shifts = list(itertools.product(range(m), repeat=3))
    result = []
    for op in _OH_OPS:
        rotated = coords @ op.T
        per_op = []
        for t in shifts:
            c = rotated + np.asarray(t)
            new = np.empty_like(occ)
            new[lattice.site_index(c[:, 0], c[:, 1], c[:, 2])] = occ
            per_op.append(new.tobytes())
        result.append(per_op)
    return result


def _canonical_key(lattice: Lattice, occupations: np.ndarray) -> bytes:
    """Return a key equal for arrangements related by a cubic operation and a translation."""
    return min(b for per_op in _images(lattice, occupations) for b in per_op)


def _has_cubic_symmetry(lattice: Lattice, occupations: np.ndarray) -> bool:
    """Whether the arrangement keeps the 12 rotations of T (so a relaxed cell stays cubic)."""
    own = np.asarray(occupations).tobytes()
    images = _images(lattice, occupations)
    return all(own in images[i] for i in _T_OPS)


def _pair_occupations(lattice: Lattice, displacement: Sequence[int]) -> np.ndarray:
    """Return a periodic cell with two Cd: at the origin and at ``displacement``."""
    occ = np.full(lattice.n_sites, species.PB, dtype=species.OCC_DTYPE)
    d = np.asarray(displacement, dtype=np.int64)
    occ[lattice.site_index(np.array([0]), np.array([0]), np.array([0]))] = species.CD
    occ[lattice.site_index(d[:1], d[1:2], d[2:])] = species.CD
    return occ


#: Two-Cd arrangements of a periodic cell: nearest neighbours, face and body diagonal.
PAIR_ARRANGEMENTS: dict[str, tuple[int, int, int]] = {
    "pair-nn": (1, 0, 0),
    "pair-face": (1, 1, 0),
    "pair-body": (1, 1, 1),
}


def _bulk_set(
    m: int,
    *,
    a_angstrom: float,
    compositions: Sequence[float],
    n_random: int,
    seed: int,
    max_draws: int = 64,
) -> list[ReferenceStructure]:
    """Periodic ``m x m x m`` cells: ordered arrangements and distinct random ones.

    Ordered: for even ``m`` the B-site rock-salt order at ``x = 1/2`` (``bulk{m}_x0.5_rocksalt``,
    cubic), and the two-Cd arrangements :data:`PAIR_ARRANGEMENTS` (``bulk{m}_pair-*``).

    Random arrangements are drawn (up to ``max_draws`` per composition) until ``n_random``
    of them are distinct from each other and from the pair arrangements up to the cubic
    symmetry and translations of the cell (for ``m = 2``, ``x = 0.25`` has only the three pair
    arrangements, ``x = 0`` and ``x = 1`` only one).
    """
    lattice = build_periodic(m, a_angstrom)
    n_sites = lattice.n_sites
    out: list[ReferenceStructure] = []
    seen: set[bytes] = set()

    def add(name: str, occ: np.ndarray, arrangement: str) -> None:
        occ = occ.astype(species.OCC_DTYPE)
        occ.setflags(write=False)
        cubic = _has_cubic_symmetry(lattice, occ)
        out.append(
            ReferenceStructure(
                name=name,
                kind="bulk",
                atoms=atomistic.to_atoms(lattice, occ),
                lattice=lattice,
                occupations=occ,
                x_cd=_x_of(occ),
                n_edge=m,
                tags={
                    "n_cd": int((occ == species.CD).sum()),
                    "arrangement": arrangement,
                    "cubic_symmetry": cubic,
                    "vegard": cubic,
                },
            )
        )

    if m % 2 == 0:  # B-site rock-salt order (Cd on sites with even ix + iy + iz): cubic, x = 1/2
        parity = lattice.coords.astype(np.int64).sum(axis=1) % 2
        occ = np.where(parity == 0, species.CD, species.PB).astype(species.OCC_DTYPE)
        seen.add(_canonical_key(lattice, occ))
        add(f"bulk{m}_x0.5_rocksalt", occ, "rocksalt")
    if n_sites >= 2:
        for label, disp in PAIR_ARRANGEMENTS.items():
            occ = _pair_occupations(lattice, disp)
            key = _canonical_key(lattice, occ)
            if key in seen or int((occ == species.CD).sum()) != 2:
                continue  # m = 1: images coincide
            seen.add(key)
            add(f"bulk{m}_{label}", occ, label)
    for x in compositions:
        n_cd = round(float(x) * n_sites)
        group = f"bulk{m}_x{format_x(x)}_random"
        rng = _rng(seed, group)
        kept = 0
        for _ in range(max_draws):
            if kept == n_random:
                break
            occ = np.full(n_sites, species.PB, dtype=species.OCC_DTYPE)
            occ[rng.choice(n_sites, size=n_cd, replace=False)] = species.CD
            key = _canonical_key(lattice, occ)
            if key in seen:
                continue
            seen.add(key)
            add(f"{group}_{kept}", occ, "random")
            kept += 1
    return out


# --- Ruddlesden-Popper faults ---------------------------------------------------------------


def _rp_fault_atoms(
    lattice: Lattice,
    occupations: np.ndarray,
    level: int,
    gap_angstrom: float,
    vacuum_angstrom: float,
) -> Any:
    """Return the NC with an RP fault below B plane ``level`` (see :func:`build_rp_fault`)."""
    from ase import Atoms

    a = lattice.a_angstrom
    n, pad = lattice.n_edge, lattice.pad
    atoms = atomistic.to_atoms(lattice, occupations)  # grid positions, no recentring yet
    pos = atoms.positions.copy()
    z_k = (pad + level) * a  # height of B plane `level`
    upper = pos[:, 2] > z_k - 0.25 * a  # B plane `level`, its Br, and everything above
    shift = np.array([0.5 * a, 0.5 * a, gap_angstrom])
    pos[upper] += shift

    # The inserted AX layer is the upper block's own bottom CsBr layer: in the upper block's
    # frame it repeats the perovskite AX layer at z_k - a/2 (apical Br under each B of plane
    # `level`, Cs on the (n+1)^2 A sites around them); it moves with the block.
    lo = pad * a
    ij = np.arange(n, dtype=np.float64)
    bx, by = np.meshgrid(lo + ij * a, lo + ij * a, indexing="ij")
    br_new = np.stack([bx.ravel(), by.ravel(), np.full(n * n, z_k - 0.5 * a)], axis=1) + shift
    ia = np.arange(-1, n, dtype=np.float64)
    ax, ay = np.meshgrid(lo + (ia + 0.5) * a, lo + (ia + 0.5) * a, indexing="ij")
    cs_all = np.stack([ax.ravel(), ay.ravel(), np.full(ax.size, z_k - 0.5 * a)], axis=1) + shift
    # Keep n^2 of the (n+1)^2 Cs (the layer is then n^2 neutral CsBr units): drop the 2n + 1
    # least coordinated ones (in-layer B neighbours: 1 at the 4 corners, 2 along the rim),
    # spread evenly around the rim.
    ii, jj = np.meshgrid(np.arange(-1, n), np.arange(-1, n), indexing="ij")
    on_x = (ii == -1) | (ii == n - 1)
    on_y = (jj == -1) | (jj == n - 1)
    coord = (4 // (1 + on_x.astype(int)) // (1 + on_y.astype(int))).ravel()
    drop = _drop_from_rim(cs_all[:, :2], coord, 2 * n + 1)
    cs_new = cs_all[~drop]

    n_old = len(atoms)
    numbers = np.concatenate([atoms.numbers, np.full(n * n, 35), np.full(n * n, 55)])
    block = np.concatenate([upper.astype(np.int64), np.full(2 * n * n, 2, dtype=np.int64)])
    fault = Atoms(
        numbers=numbers,
        positions=np.concatenate([pos, br_new, cs_new]),
        cell=atoms.cell.copy(),
        pbc=False,
    )
    for arr in ("b_site", "owner_site"):
        fault.set_array(arr, np.concatenate([atoms.get_array(arr), np.full(2 * n * n, -1)]))
    fault.set_array("rp_block", block)
    fault.center(vacuum=float(vacuum_angstrom))
    assert len(fault) == n_old + 2 * n * n
    return fault


def _drop_from_rim(xy: np.ndarray, coord: np.ndarray, count: int) -> np.ndarray:
    """Select ``count`` points, lowest ``coord`` first; a partly taken class evenly by angle."""
    drop = np.zeros(coord.size, dtype=bool)
    left = count
    centre = xy.mean(axis=0)
    for c in np.unique(coord):
        if left <= 0:
            break
        cls = np.flatnonzero(coord == c)
        if cls.size <= left:
            drop[cls] = True
            left -= cls.size
            continue
        ang = np.round(np.arctan2(xy[cls, 1] - centre[1], xy[cls, 0] - centre[0]), 9)
        ring = cls[np.lexsort((xy[cls, 1], xy[cls, 0], ang))]
        ranks = ((2 * np.arange(left) + 1) * ring.size) // (2 * left)
        drop[ring[ranks]] = True
        left = 0
    return drop


def build_rp_fault(
    lattice: Lattice,
    occupations: np.ndarray,
    level: int,
    *,
    gap_angstrom: float = RP_GAP_ANGSTROM,
    vacuum_angstrom: float = 8.0,
) -> Any:
    """Return the atomistic NC with a Ruddlesden-Popper (RP) fault below B plane ``level``.

    The full cube (:func:`segsim.atomistic.to_atoms`, B planes ``0 .. n-1`` along z) is cut
    between B planes ``level - 1`` and ``level``, i.e. just above the CsBr (AX) layer that
    separates them.  The lower block keeps that AX layer.  The upper block (B plane
    ``level`` and everything above it) is translated by ``(a/2, a/2, gap)`` and receives its
    own bottom AX layer, which is the perovskite AX layer in the upper block's frame: ``n^2``
    apical Br (one under each B of plane ``level``) and ``n^2`` of its ``(n+1)^2`` Cs (the
    4 corner and ``2n - 3`` rim Cs, evenly spread, are left out).  The two AX layers then face
    each other in rock-salt registry, Cs over Br and Br over Cs, ``gap`` apart (default
    :data:`RP_GAP_ANGSTROM`, the Cs-Br distance of rock-salt CsBr); the B-B spacing across
    the fault is ``a + gap``.  Side view, projected along y (x to the right, z up; B = Pb/Cd,
    X = Br, A = Cs)::

        upper block   B   X   B   X   B   X    B plane `level`, shifted by (a/2, a/2)
                      X   A   X   A   X   A    inserted AX layer: X under B, A in between
                      | gap: rock salt, A over X and X over A
                      A   X   A   X   A   X    AX layer of the lower block: X over B
        lower block   X   B   X   B   X   B    B plane `level - 1`

    The structure stays charge neutral (the inserted layer is ``n^2`` CsBr units) and has
    ``5 n^3 + 6 n^2 + 2 n^2`` atoms for a full cube.  The B atoms keep their ``b_site``
    (grid site of the unfaulted lattice); the per-atom array ``rp_block`` is 0 for the lower
    block, 1 for the upper block and 2 for the inserted layer.  The upper block overhangs the
    lower one by ``a/2`` on two sides (the steps that RP faults make at NC surfaces).

    Parameters
    ----------
    lattice
        The NC lattice (:func:`segsim.lattice.build_cube`).
    occupations
        As-built cube occupations (Pb and Cd inside, O outside; no V).
    level
        First B plane of the upper block, ``1 <= level <= n - 1`` (in NC coordinates).
    gap_angstrom
        Distance between the two facing AX layers, Angstrom.
    vacuum_angstrom
        Vacuum on every side of the non-periodic cluster, Angstrom.
    """
    occ = np.asarray(occupations)
    n = lattice.n_edge
    if not 1 <= level <= n - 1:
        raise ValueError(f"level must be in 1..{n - 1}, got {level}")
    inside = occ[lattice.in_nc]
    if np.any(inside > species.CD) or np.any(occ[~lattice.in_nc] != species.OUT):
        raise ValueError("an RP fault needs the as-built cube (Pb/Cd inside, O outside)")
    if gap_angstrom <= 0:
        raise ValueError(f"gap_angstrom must be positive, got {gap_angstrom}")
    return _rp_fault_atoms(lattice, occ, level, float(gap_angstrom), vacuum_angstrom)


def _rp_set(
    n: int,
    *,
    a_angstrom: float,
    pad: int,
    positions: Sequence[str],
    x_cd: float,
    gap_angstrom: float,
    seed: int,
    vacuum_angstrom: float,
    have: set[str],
) -> list[ReferenceStructure]:
    """RP-fault NCs (pure Pb, Cd in the RP region, Cd far from it) and their unfaulted twins."""
    lattice = build_cube(n, a_angstrom, pad)
    out: list[ReferenceStructure] = []
    levels: dict[str, int] = {}
    for label in positions:
        if label not in RP_POSITIONS:
            raise ValueError(f"unknown rp position {label!r}; choose from {sorted(RP_POSITIONS)}")
        k = int(RP_POSITIONS[label](n))
        if 1 <= k <= n - 1 and k not in levels.values():
            levels[label] = k
    sites = np.flatnonzero(lattice.in_nc)
    plane = lattice.coords[sites, 2].astype(np.int64) - pad
    n_cd = configurations.n_cd_for(lattice, x_cd)
    pure = lattice.empty_occupations()
    pure_name = f"nc{n}_x0_pure"
    if pure_name not in have:
        out.append(
            _nc_structure(
                pure_name, lattice, pure, vacuum_angstrom, arrangement="pure", x_nominal=0.0
            )
        )
    for label, k in levels.items():
        in_region = (plane == k - 1) | (plane == k)
        region = sites[in_region]
        if n_cd > region.size or n_cd > int((~in_region).sum()):
            raise ValueError(f"{n_cd} Cd do not fit in or outside the RP region of an n={n} NC")
        interface = n * n * (int(k - 1 >= 1) + int(k + 1 <= n - 1))
        common = {
            "rp_position": label,
            "fault_level": k,
            "rp_region_b_sites": [int(s) for s in region],
            "n_rp_sites": int(region.size),
            "n_rp_interface_pairs": interface,
            "x_nominal": float(x_cd),
        }
        for variant in ("pb", "cd-in", "cd-out"):
            name = f"nc{n}_rp-{label}_{variant}"
            rng = _rng(seed, name)
            occ = pure.copy()
            if variant == "cd-in":
                occ[rng.choice(region, size=n_cd, replace=False)] = species.CD
            elif variant == "cd-out":
                dist2 = (2 * plane - (2 * k - 1)) ** 2  # (2 x distance from the fault plane)^2
                order = np.lexsort((rng.permutation(sites.size), -dist2))
                far = sites[order][~in_region[order]]
                occ[far[:n_cd]] = species.CD
            occ.setflags(write=False)
            n_cd_rp = int((occ[region] == species.CD).sum())
            twin = (
                pure_name if variant == "pb" else f"nc{n}_x{format_x(x_cd)}_rpref-{label}-{variant}"
            )
            if variant != "pb":
                out.append(
                    _nc_structure(
                        twin,
                        lattice,
                        occ,
                        vacuum_angstrom,
                        arrangement="rp-reference",
                        rp_partner=name,
                        cd_variant=variant,
                        n_cd_rp=n_cd_rp,
                        **common,
                    )
                )
            atoms = build_rp_fault(
                lattice, occ, k, gap_angstrom=gap_angstrom, vacuum_angstrom=vacuum_angstrom
            )
            out.append(
                ReferenceStructure(
                    name=name,
                    kind="nc_rp",
                    atoms=atoms,
                    lattice=None,
                    occupations=None,
                    x_cd=_x_of(occ),
                    n_edge=n,
                    tags={
                        **common,
                        "n_cd": int((occ == species.CD).sum()),
                        "n_cd_rp": n_cd_rp,
                        "cd_variant": variant,
                        "no_fault": twin,
                        "extra_csbr": n * n,
                        "gap_angstrom": float(gap_angstrom),
                        "shift_angstrom": [0.5 * a_angstrom, 0.5 * a_angstrom, float(gap_angstrom)],
                        "charge_rule": "unfaulted NC (segsim.atomistic) plus n^2 neutral CsBr units",
                    },
                )
            )
    return out


def csbr_references() -> list[ReferenceStructure]:
    """Return bulk CsBr cells for the CsBr chemical potential (kind ``"ref_csbr"``).

    ``ref_csbr_cscl``: the ground-state CsCl-type cell (2 atoms, ``a = 4.29`` Angstrom);
    ``ref_csbr_rocksalt``: the conventional rock-salt cell (8 atoms, ``a = 7.2`` Angstrom), the
    structure of the layer an RP fault inserts.
    """
    from ase.build import bulk

    cells = (
        ("ref_csbr_cscl", bulk("CsBr", "cesiumchloride", a=CSBR_CSCL_A_ANGSTROM), "cesiumchloride"),
        (
            "ref_csbr_rocksalt",
            bulk("CsBr", "rocksalt", a=CSBR_ROCKSALT_A_ANGSTROM, cubic=True),
            "rocksalt",
        ),
    )
    return [
        ReferenceStructure(
            name=name,
            kind="ref_csbr",
            atoms=atoms,
            lattice=None,
            occupations=None,
            x_cd=0.0,
            n_edge=1,
            tags={"structure": structure, "formula_units": len(atoms) // 2},
        )
        for name, atoms, structure in cells
    ]


def build_training_set(
    *,
    nc_edges: Sequence[int] = (3, 4, 5),
    compositions: Sequence[float] = (0.1, 0.25, 0.5),
    n_random: int = 3,
    n_random_other: int = 1,
    n_profiles: int = 2,
    nc_end_members: Sequence[float] = (0.0, 1.0),
    vacancy_structures: int = 4,
    vacancy_surface: int = 1,
    vacancy_pairs: bool = False,
    surface_pit_edges: Sequence[int] = (),
    bulk_sizes: Sequence[int] = (2,),
    bulk_compositions: Sequence[float] = (0.0, 0.125, 0.25, 0.5, 1.0),
    n_bulk_random: int = 2,
    rp_edges: Sequence[int] = (4,),
    rp_positions: Sequence[str] = ("middle", "surface"),
    rp_x_cd: float = PUBLISHED_X_CD,
    rp_gap_angstrom: float = RP_GAP_ANGSTROM,
    csbr: bool = True,
    seed: int = 2021,
    a_angstrom: float = 5.87,
    vacuum_angstrom: float = 8.0,
    pad: int = 3,
) -> list[ReferenceStructure]:
    """Return the reference structures of the cluster-expansion training set.

    Every structure draws its random numbers from its own generator,
    ``SeedSequence(seed, spawn_key=(crc32(name),))``, so the set is deterministic for a given
    ``seed`` and a structure does not change when others are added or removed.  Names are
    unique database keys (``nc4_x0.25_core``, ``bulk2_pair-nn``, ``nc4_rp-middle_cd-in``).

    The set, per kind:

    ``"nc"`` (on the CE lattice, ``build_cube(n, a_angstrom, pad)``; atoms from
    :func:`segsim.atomistic.to_atoms` as a non-periodic cluster with ``vacuum_angstrom``), for
    each ``n`` in ``nc_edges``:

    * at ``x = 0.25`` the three published configurations: ``n_random`` random alloys
      (``..._uniform_i``), ``..._surface`` and ``..._core``;
    * ``n_profiles`` layer profiles ``..._profile_t<t>`` between them (named by ``t``, so
      that names stay unique keys when ``n_profiles`` changes): with
      ``t_j = -1 + 2 (j + 1) / (n_profiles + 1)``, the Cd fraction of each depth layer is
      ``(1 - |t|) x + |t| f_seg``, ``f_seg`` the layer fractions of the surface (``t < 0``) or
      core (``t > 0``) configuration (tag ``profile_t``);
    * ``n_random_other`` random alloys at each other ``x`` in ``compositions``;
    * the end members ``x`` in ``nc_end_members`` (``nc{n}_x0_pure``, ``nc{n}_x1_pure``);
    * unfaulted twins of the RP structures (``..._rpref-...``, below).

    ``"nc_vacancy"``: ``vacancy_structures`` NCs per edge at ``x = 0.25`` with one or two B
    vacancies, on interior sites except for the last ``vacancy_surface`` (face sites); each V
    removes two Br (tag ``charge_rule``).

    ``"bulk"``: periodic ``m^3`` cells (``m`` in ``bulk_sizes``, ``5 m^3`` atoms): the
    two-Cd arrangements nearest neighbours, face diagonal, body diagonal (``bulk{m}_pair-*``),
    for even ``m`` the B-site rock-salt order at ``x = 1/2`` (``bulk{m}_x0.5_rocksalt``), and up to ``n_bulk_random`` symmetry-distinct random cells per composition in
    ``bulk_compositions``.  Tag ``vegard`` is True for arrangements with cubic (T) symmetry,
    whose relaxed cell stays cubic; their volumes give the Vegard slope of a(x).

    ``"nc_rp"`` (not on the CE lattice): for each ``n`` in ``rp_edges`` and each position in
    ``rp_positions`` (``"middle"``: fault below B plane ``n // 2``; ``"surface"``: below plane
    1, so that a single octahedral layer, an RP slab, lines the bottom face), an NC with an RP
    fault (:func:`build_rp_fault`) in three variants: pure Pb (``_pb``), ``round(rp_x_cd n^3)``
    Cd on random sites of the RP region (``_cd-in``; the RP region is the two B planes next to
    the fault, tag ``rp_region_b_sites``), and the same number of Cd on the sites farthest from
    the fault (``_cd-out``).  Tag ``no_fault`` names the unfaulted twin with the same Cd
    sites (kind ``"nc"``).

    ``"ref_csbr"``: bulk CsBr (:func:`csbr_references`) for the chemical potential
    ``mu_CsBr``: the lowest relaxed energy per formula unit of these cells, i.e. the
    calculator's own CsBr ground state (experimentally the CsCl type; a machine-learned
    potential or PBE may rank the rock-salt cell, the structure of the fault layer, lower).

    RP parameters of the model (``docs/model.md``, section 2) from these energies
    (relaxed ``E``), with ``N = n^2`` inserted CsBr units (tag ``extra_csbr``)::

        dE(s)  = E(nc_rp s) - E(no_fault of s) - N mu_CsBr
        dE(pb) = n_rp_sites * eps_RP + n_rp_interface_pairs * J_RP
        eta    = (dE(cd-out) - dE(cd-in)) / (n_cd_rp(cd-in) - n_cd_rp(cd-out))

    The ``middle`` and ``surface`` positions have different ``n_rp_interface_pairs``
    (``2 n^2`` and ``n^2``) and the same ``n_rp_sites`` (``2 n^2``), so together they separate
    ``eps_RP`` and ``J_RP``.  Comparing each fault with its own twin cancels the CE energy of
    the Cd arrangement.

    Parameters
    ----------
    nc_edges
        NC edges (B sites per edge) of the ``"nc"`` and ``"nc_vacancy"`` structures.
    compositions
        Cd fractions of the random NC alloys (0.25 is covered by the published set).
    n_random
        Random (uniform) alloys at ``x = 0.25`` per edge.
    n_random_other
        Random alloys at each other composition, per edge.
    n_profiles
        Intermediate layer profiles per edge.
    nc_end_members
        Compositions of the single-cation NCs (0: CsPbBr3, 1: CsCdBr3).
    vacancy_structures
        Vacancy-containing NCs per edge.
    vacancy_surface
        How many of them have the vacancies on face sites of the surface shell.
    vacancy_pairs
        Also, for every edge ``n >= 4``, the pure NCs of
        :data:`TRAINING_VARIANTS`: two vacancies side by
        side on a face, on opposite faces, one right below the other and apart, and one
        vacancy on an edge and on a corner (``nc{n}_x0_v2-face-adjacent``, ...).  With the
        depth series they put the divacancy binding and the site dependence of the vacancy
        energy, which the KMC's Cd loss depends on, into the training set as same-crystal
        differences.
    surface_pit_edges
        NC edges ``n >= 4`` that also get :func:`_surface_pit_set`: NCs with receded surface
        sites (O inside the as-built cube), the damaged surfaces the KMC makes.
    bulk_sizes
        Periodic cell edges ``m`` (``m^3`` B sites).
    bulk_compositions
        Cd fractions of the random bulk cells.
    n_bulk_random
        Distinct random bulk cells per composition (at most).
    rp_edges
        NC edges of the RP-fault structures (``5 n^3 + 8 n^2`` atoms).
    rp_positions
        Fault positions, keys of :data:`RP_POSITIONS`; positions that give the same plane are
        built once.
    rp_x_cd
        Cd fraction of the Cd-containing RP variants.
    rp_gap_angstrom
        Distance between the two CsBr layers facing each other across the fault, Angstrom.
    csbr
        Include the CsBr reference cells.
    seed
        Root seed.
    a_angstrom
        Pseudo-cubic lattice constant (B-B distance) of the unrelaxed structures, Angstrom.
    vacuum_angstrom
        Vacuum around each NC, Angstrom.
    pad
        Outside layers of the NC lattices (at least the reach of the CE's clusters plus one:
        3 for pair cutoffs up to ``2 a``).

    Returns
    -------
    list of ReferenceStructure
        NCs (by edge), vacancy NCs, bulk cells, RP faults with their twins, CsBr references.
    """
    if pad < 1:
        raise ValueError(f"pad must be >= 1, got {pad}")
    out: list[ReferenceStructure] = []
    lattices = [build_cube(int(n), a_angstrom, pad) for n in nc_edges]
    for lattice in lattices:
        out += _nc_set(
            lattice,
            compositions=compositions,
            end_members=nc_end_members,
            n_random=n_random,
            n_random_other=n_random_other,
            n_profiles=n_profiles,
            seed=seed,
            vacuum_angstrom=vacuum_angstrom,
        )
    for lattice in lattices:
        out += _vacancy_set(
            lattice,
            n_structures=vacancy_structures,
            n_surface=vacancy_surface,
            x_cd=PUBLISHED_X_CD,
            seed=seed,
            vacuum_angstrom=vacuum_angstrom,
        )
        if vacancy_pairs and lattice.n_edge >= 4:
            out += build_vacancy_variants(
                lattice.n_edge,
                a_angstrom=a_angstrom,
                vacuum_angstrom=vacuum_angstrom,
                pad=pad,
                variants=TRAINING_VARIANTS,
            ).values()
    for n in surface_pit_edges:
        out += _surface_pit_set(
            build_cube(int(n), a_angstrom, pad), vacuum_angstrom=vacuum_angstrom
        )
    for m in bulk_sizes:
        out += _bulk_set(
            int(m),
            a_angstrom=a_angstrom,
            compositions=bulk_compositions,
            n_random=n_bulk_random,
            seed=seed,
        )
    for n in rp_edges:
        out += _rp_set(
            int(n),
            a_angstrom=a_angstrom,
            pad=pad,
            positions=rp_positions,
            x_cd=rp_x_cd,
            gap_angstrom=rp_gap_angstrom,
            seed=seed,
            vacuum_angstrom=vacuum_angstrom,
            have={s.name for s in out},
        )
    if csbr:
        out += csbr_references()
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise RuntimeError(f"duplicate structure names: {dup}")  # pragma: no cover
    return out


# ----------------------------------------------------------------------------------------
# Vacancy structures (also measured by studies/vacancy_energetics)

#: Structure variants (suffix of the name -> description); the grid sites around the centres
#: of the bottom (-z), top (+z) and -x faces are chosen by :func:`_vacancy_sites`.
VARIANTS: dict[str, str] = {
    "v1-face": "one V at the centre of the bottom face",
    "v1-depth1": "one V one layer below the centre of the bottom face",
    "v1-depth2": "one V two layers below the centre of the bottom face (n >= 5)",
    "v2-face-adjacent": "two V side by side (along x) at the centre of the bottom face",
    "v2-face-apart": "two V at the centres of the bottom and top faces",
    "v2-normal-adjacent": "V at the bottom face centre and V directly below it (depth 1)",
    "v2-normal-apart": "V at the bottom face centre and V one layer below the -x face centre",
    "v1-edge": "one V at the centre of the bottom -y edge",
    "v1-corner": "one V at the bottom -x -y corner",
}

#: The variants that :func:`build_training_set` adds with
#: ``vacancy_pairs`` (the depth series already holds ``v1-face`` and ``v1-depth*``).
TRAINING_VARIANTS: tuple[str, ...] = (
    "v2-face-adjacent",
    "v2-face-apart",
    "v2-normal-adjacent",
    "v2-normal-apart",
    "v1-edge",
    "v1-corner",
)


def structure_name(n_edge: int, variant: str) -> str:
    """Return the name of one structure (``nc4_x0_v2-face-adjacent``)."""
    return f"nc{n_edge}_x0_{variant}"


def _vacancy_sites(lattice: Any, variant: str) -> list[int]:
    """Return the grid sites of the vacancies of ``variant`` on an NC ``lattice``."""
    n, p = lattice.n_edge, lattice.pad
    c = p + n // 2
    bottom, top = p, p + n - 1

    def site(ix: int, iy: int, iz: int) -> int:
        return int(lattice.site_index(np.array([ix]), np.array([iy]), np.array([iz]))[0])

    table = {
        "v1-face": [(c, c, bottom)],
        "v1-depth1": [(c, c, bottom + 1)],
        "v1-depth2": [(c, c, bottom + 2)],
        "v2-face-adjacent": [(c, c, bottom), (c - 1, c, bottom)],
        "v2-face-apart": [(c, c, bottom), (c, c, top)],
        "v2-normal-adjacent": [(c, c, bottom), (c, c, bottom + 1)],
        "v2-normal-apart": [(c, c, bottom), (p + 1, c, c)],
        "v1-edge": [(c, p, bottom)],
        "v1-corner": [(p, p, bottom)],
    }
    return [site(*xyz) for xyz in table[variant]]


def build_vacancy_variants(
    n_edge: int,
    *,
    a_angstrom: float,
    vacuum_angstrom: float,
    pad: int,
    variants: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Return the :class:`~segsim.training.structures.ReferenceStructure` of every variant.

    Parameters
    ----------
    n_edge
        B sites per NC edge (>= 4, so that depth 1 under both faces are distinct sites).
    a_angstrom, vacuum_angstrom, pad
        As in the ``structures`` section of a ``segsim train`` input (Angstrom, sites).
    variants
        Keys of :data:`VARIANTS` to build (default: all).
    """
    if n_edge < 4:
        raise ValueError(f"n_edge must be >= 4, got {n_edge}")
    lattice = build_cube(n_edge, a_angstrom, pad)
    out = {}
    for variant in VARIANTS if variants is None else variants:
        if variant == "v1-depth2" and n_edge < 5:
            continue  # (c, c, bottom + 2) is not at depth 2
        sites = _vacancy_sites(lattice, variant)
        occ = lattice.empty_occupations()
        occ[sites] = species.VAC
        name = structure_name(n_edge, variant)
        out[name] = _nc_structure(
            name,
            lattice,
            occ,
            vacuum_angstrom,
            kind="nc_vacancy",
            arrangement="pure",
            vacancy_sites=sites,
            vacancy_depths=[int(lattice.depth[s]) for s in sites],
            vacancy_series="energetics",
            charge_rule=VACANCY_RULE,
        )
    return out
