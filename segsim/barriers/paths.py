"""The migration paths of the KMC as atomistic end points (``segsim barriers``).

A path is a B-sublattice state (a lattice and its occupations, :mod:`segsim.lattice`) with one
vacancy ``V`` at site ``vacancy`` and one cation ``M`` (Pb or Cd) at the neighbouring site
``mover``.  The atomistic initial state (IS) is :func:`segsim.atomistic.to_atoms` of that
state, i.e. the model's vacancy: the B atom and two Br of its octahedron are missing (an
interior V loses its trans pair along z, a surface V its orphaned outer Br and that Br's trans
partner; :mod:`segsim.defects`).  The final state (FS) of the elementary hop is the same atoms
with M moved onto the vacant B position: the two missing Br stay where they were.  The
*canonical* final state (FS') is ``to_atoms`` of the state after the lattice event (V on the
mover's site, with its own two Br missing): same composition, the state the lattice model
means.  The lattice barrier is measured between canonical states (:mod:`segsim.barriers`).

Mechanisms of the hop (bulk, periodic ``n^3`` cell, V at the centre ``(1, 1, 1)``):

``open``
    M hops along z, the axis of the V's missing trans pair, through the empty X site between
    the two B sites (one of the V's own Br vacancies).
``closed``
    M hops along x, past the Br that bridges the two B sites (it must move aside).

Surface paths (cubic NC of ``n_edge^3`` B sites, one outside layer, in vacuum):

``face``
    V in the +z face, M its neighbour in the face (+x): a closed hop in the face.
``face_sub``
    V in the +z face, M below it (depth 1): an open hop through the V's inner Br vacancy.
``edge``
    V on the edge along x at the +z, -y faces, M its neighbour on that edge (+x).

A surface path may hold the NC beyond a distance of the hop fixed (``freeze_beyond_angstrom``):
the atoms farther than that from the segment between M's start and the vacant site are
*frozen* (:attr:`Endpoints.frozen`).  :func:`segsim.barriers.neb.run_path` then relaxes the IS
whole and holds the frozen atoms of the FS, the FS' and every image where the relaxed IS has
them.  A small NC in vacuum has soft surface modes (Cs and Br rearranging far from the hop)
that a band of a few images cannot converge on; the frozen far field removes them, the way a
slab's bottom layers are fixed.  The price is an upper bound: the far field cannot respond
to the vacancy's move (FS and FS' slightly too high), a bias that shrinks with the distance.

Cd among the neighbours of the path (``n_cd`` 0, 1 or 2) sit on B sites next to the V
(``+x``) and next to M (``-x``) for the bulk open hop (the ``+y`` neighbours for the closed
hop), perpendicular to the hop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from segsim import species
from segsim.atomistic import to_atoms
from segsim.lattice import Lattice, build_cube, build_periodic

__all__ = [
    "BULK_MECHANISMS",
    "SURFACE_GEOMETRIES",
    "Endpoints",
    "PathSpec",
    "build_endpoints",
    "parse_path_name",
    "path_names",
]

#: Mechanisms of the bulk hop.
BULK_MECHANISMS: tuple[str, ...] = ("open", "closed")
#: Surface hop geometries on the NC.
SURFACE_GEOMETRIES: tuple[str, ...] = ("face", "face_sub", "edge")
#: The mobile species.
MOVERS: dict[str, int] = {"pb": species.PB, "cd": species.CD}


@dataclass(frozen=True)
class PathSpec:
    """One migration path.

    Attributes
    ----------
    name
        ``bulk_<mover>_<mechanism>_<n>cd`` or ``nc_<mover>_<geometry>``.
    location
        ``"bulk"`` or ``"nc"``.
    mover
        ``"pb"`` or ``"cd"``.
    mechanism
        ``"open"``/``"closed"`` (bulk) or the surface geometry (nc).
    n_cd
        Cd among the neighbours of the path (0, 1 or 2; bulk only).
    """

    name: str
    location: str
    mover: str
    mechanism: str
    n_cd: int = 0


def parse_path_name(name: str) -> PathSpec:
    """Return the :class:`PathSpec` of a path name.

    Raises
    ------
    ValueError
        For a name that is not ``bulk_<pb|cd>_<open|closed>_<0|1|2>cd`` or
        ``nc_<pb|cd>_<face|face_sub|edge>``.
    """
    parts = str(name).split("_")
    allowed = (
        "bulk_<pb|cd>_<open|closed>_<0|1|2>cd or nc_<pb|cd>_<face|face_sub|edge>, "
        "e.g. bulk_pb_open_0cd, nc_cd_face_sub"
    )
    try:
        if parts[0] == "bulk" and len(parts) == 4:
            mover, mech, ncd = parts[1], parts[2], parts[3]
            n_cd = int(ncd.removesuffix("cd"))
            if (
                mover in MOVERS
                and mech in BULK_MECHANISMS
                and ncd.endswith("cd")
                and 0 <= n_cd <= 2
            ):
                return PathSpec(name, "bulk", mover, mech, n_cd)
        if parts[0] == "nc" and len(parts) >= 3:
            mover, geom = parts[1], "_".join(parts[2:])
            if mover in MOVERS and geom in SURFACE_GEOMETRIES:
                return PathSpec(name, "nc", mover, geom, 0)
    except ValueError:
        pass
    raise ValueError(f"unknown path {name!r}; allowed: {allowed}")


def path_names() -> list[str]:
    """Return every path name, bulk first."""
    out = [f"bulk_{m}_{mech}_{n}cd" for m in MOVERS for mech in BULK_MECHANISMS for n in range(3)]
    out += [f"nc_{m}_{g}" for m in MOVERS for g in SURFACE_GEOMETRIES]
    return out


@dataclass
class Endpoints:
    """Atomistic end points of one path (unrelaxed, ideal positions).

    Attributes
    ----------
    spec
        The path.
    initial
        IS: the model's vacancy at ``vacancy``, M at ``mover``.
    final
        FS of the elementary hop: ``initial`` with M moved onto the vacant B position.
    canonical_final
        FS': the model's vacancy at ``mover``, M at ``vacancy`` (same composition).
    mover_index
        Index of M in ``initial`` and ``final``.
    hop_vector_angstrom
        B-B displacement of the hop.
    sites
        Grid sites (``vacancy``, ``mover``, ``cd``) for the provenance.
    frozen
        Indices (in ``initial`` and ``final``) of the atoms held fixed (empty: none).
    canonical_frozen
        ``(k, 2)`` pairs ``(index in canonical_final, index in initial)`` of the same frozen
        atoms in FS' (``canonical_final`` is then translated into the IS's frame).
    freeze_beyond_angstrom
        The distance from the hop beyond which atoms are frozen (None: none frozen).
    """

    spec: PathSpec
    initial: Atoms
    final: Atoms
    canonical_final: Atoms
    mover_index: int
    hop_vector_angstrom: np.ndarray
    sites: dict[str, list[int]] = field(default_factory=dict)
    frozen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    canonical_frozen: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    freeze_beyond_angstrom: float | None = None


def _site(lat: Lattice, xyz: tuple[int, int, int]) -> int:
    c = np.asarray(xyz, dtype=np.int64) % np.asarray(lat.shape)
    return int(lat.site_index(c[:1], c[1:2], c[2:3])[0])


def _layout(spec: PathSpec, n_cells: int, n_edge: int) -> tuple[Lattice, dict, tuple]:
    """Return the lattice, the grid coordinates of V, M and the Cd sites, and the NC flag."""
    if spec.location == "bulk":
        lat = build_periodic(n_cells, 1.0)
        v = (1, 1, 1)
        if spec.mechanism == "open":
            m = (1, 1, 2)
            cd_sites = [(2, 1, 1), (0, 1, 2)]
        else:
            m = (2, 1, 1)
            cd_sites = [(1, 2, 1), (2, 0, 1)]
        return lat, {"v": v, "m": m, "cd": cd_sites[: spec.n_cd]}, False
    lat = build_cube(n_edge, 1.0, pad=1)
    where = "edge" if spec.mechanism == "edge" else "face"
    v = surface_site(n_edge, where)
    step = (0, 0, -1) if spec.mechanism == "face_sub" else (1, 0, 0)  # inward, or along x
    m = tuple(c + d for c, d in zip(v, step, strict=True))
    return lat, {"v": v, "m": m, "cd": []}, True


def surface_site(n_edge: int, where: str) -> tuple[int, int, int]:
    """Return the grid site of the NC (``build_cube(n_edge, a, pad=1)``) used for ``where``.

    ``"face"``: the centre (rounded down) of the +z face; ``"edge"``: the middle of the edge
    along x at the -y, +z faces; ``"corner"``: the corner at -x, -y, +z.  Crystal sites have
    grid coordinates 1..n_edge.
    """
    lo, hi = 1, n_edge
    mid = lo + (n_edge - 1) // 2
    return {"face": (mid, mid, hi), "edge": (mid, lo, hi), "corner": (lo, lo, hi)}[where]


def build_endpoints(
    spec: PathSpec,
    a_angstrom: float,
    *,
    n_cells: int = 3,
    n_edge: int = 4,
    vacuum_angstrom: float = 8.0,
    tilt_degrees: tuple[float, float] | None = None,
    freeze_beyond_angstrom: float | None = None,
) -> Endpoints:
    """Build the unrelaxed end points of a path.

    Parameters
    ----------
    spec
        The path (:func:`parse_path_name`).
    a_angstrom
        Cubic lattice constant (Angstrom), the calculator's own.
    n_cells
        Periodic cell of ``n_cells^3`` formula units for bulk paths (>= 2).
    n_edge
        B sites per edge of the NC for surface paths (>= 3).
    vacuum_angstrom
        Vacuum around the NC (Angstrom).
    tilt_degrees
        ``(antiphase, inphase)``: impose the a-a-c+ Glazer tilt of orthorhombic CsPbBr3
        (:func:`segsim.training.tilt.apply_glazer_tilt`) on the IS and FS' before relaxing
        (the FS is the tilted IS with M moved).  Bulk paths with an even ``n_cells`` only.
    freeze_beyond_angstrom
        Surface paths only: freeze the atoms farther than this (Angstrom, at least one lattice
        constant) from the hop segment (module docstring).  None: every atom moves.

    Returns
    -------
    Endpoints
    """
    if spec.location == "bulk" and n_cells < 2:
        raise ValueError(f"a bulk path needs n_cells >= 2, got {n_cells}")
    if spec.location == "nc" and n_edge < 3:
        raise ValueError(f"a surface path needs n_edge >= 3, got {n_edge}")
    if tilt_degrees is not None and (spec.location != "bulk" or n_cells % 2):
        raise ValueError("a tilted start needs a bulk path and an even n_cells")
    if freeze_beyond_angstrom is not None and (
        spec.location != "nc"
        or not np.isfinite(freeze_beyond_angstrom)
        or freeze_beyond_angstrom < a_angstrom
    ):
        raise ValueError(
            "freeze_beyond_angstrom needs a surface path and a finite distance of at least one "
            f"lattice constant ({a_angstrom:.3f} Angstrom), got {freeze_beyond_angstrom!r}"
        )
    lat, where, is_nc = _layout(spec, n_cells, n_edge)
    v, m = _site(lat, where["v"]), _site(lat, where["m"])
    cd = [_site(lat, c) for c in where["cd"]]
    if is_nc:
        occ = np.where(lat.in_nc, species.PB, species.OUT).astype(species.OCC_DTYPE)
    else:
        occ = np.full(lat.n_sites, species.PB, dtype=species.OCC_DTYPE)
    occ[cd] = species.CD
    occ_is = occ.copy()
    occ_is[v] = species.VAC
    occ_is[m] = MOVERS[spec.mover]
    occ_fs = occ.copy()
    occ_fs[m] = species.VAC
    occ_fs[v] = MOVERS[spec.mover]
    vac = vacuum_angstrom if is_nc else None
    initial = to_atoms(lat, occ_is, a_angstrom=a_angstrom, vacuum_angstrom=vac)
    canonical = to_atoms(lat, occ_fs, a_angstrom=a_angstrom, vacuum_angstrom=vac)
    if tilt_degrees is not None:
        from segsim.training.tilt import apply_glazer_tilt

        apply_glazer_tilt(initial, *tilt_degrees)
        apply_glazer_tilt(canonical, *tilt_degrees)
    idx = int(np.flatnonzero(initial.get_array("b_site") == m)[0])
    hop = (lat.coords[v] - lat.coords[m]).astype(np.float64)
    if not is_nc:  # minimum image on the periodic grid
        shape = np.asarray(lat.shape, dtype=np.float64)
        hop -= shape * np.round(hop / shape)
    hop *= a_angstrom
    final = initial.copy()
    pos = final.get_positions()
    pos[idx] += hop
    final.set_positions(pos)
    if not is_nc:
        final.wrap()
    ends = Endpoints(
        spec=spec,
        initial=initial,
        final=final,
        canonical_final=canonical,
        mover_index=idx,
        hop_vector_angstrom=hop,
        sites={"vacancy": [v], "mover": [m], "cd": cd},
    )
    if freeze_beyond_angstrom is not None:
        _freeze_far_field(ends, float(freeze_beyond_angstrom))
    return ends


def _distance_to_segment(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    seg = end - start
    t = np.clip((points - start) @ seg / float(seg @ seg), 0.0, 1.0)
    return np.linalg.norm(points - (start + t[:, None] * seg), axis=1)


def _freeze_far_field(ends: Endpoints, radius: float) -> None:
    """Mark the atoms farther than ``radius`` from the hop as frozen, in IS and FS' (in place).

    FS' is translated into the IS's frame (each is a cluster centred in its own box); every
    frozen atom of FS' must have an atom of the same element at the same place in the IS.
    """
    initial, canonical = ends.initial, ends.canonical_final
    start = initial.positions[ends.mover_index].copy()
    end = start + ends.hop_vector_angstrom
    # each cluster is centred in its own box: align FS' on the IS through a B atom of a site
    # that both hold (same grid site, so the same place in the crystal)
    b_is, b_can = initial.get_array("b_site"), canonical.get_array("b_site")
    moved = set(ends.sites["vacancy"] + ends.sites["mover"])
    site = next(int(s) for s in b_is if s >= 0 and int(s) not in moved)
    canonical.translate(
        initial.positions[np.flatnonzero(b_is == site)[0]]
        - canonical.positions[np.flatnonzero(b_can == site)[0]]
    )
    far_is = np.flatnonzero(_distance_to_segment(initial.positions, start, end) > radius)
    far_can = np.flatnonzero(_distance_to_segment(canonical.positions, start, end) > radius)
    pairs = []
    for j in far_can:
        d = np.linalg.norm(initial.positions[far_is] - canonical.positions[j], axis=1)
        k = int(np.argmin(d))
        if d[k] > 1e-6 or initial.numbers[far_is[k]] != canonical.numbers[j]:
            raise ValueError(f"frozen atom {j} of FS' has no counterpart in the IS")
        pairs.append((int(j), int(far_is[k])))
    if len(pairs) != far_is.size:
        raise ValueError("the IS and FS' differ beyond freeze_beyond_angstrom")
    ends.frozen = far_is.astype(np.int64)
    ends.canonical_frozen = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    ends.freeze_beyond_angstrom = radius
