"""Atomistic view of a B-sublattice state: Cs, Pb/Cd and Br atoms as an :class:`ase.Atoms`.

segsim simulates only the B sublattice; every Pb/Cd/V site carries its CsBr3 formula unit
implicitly (``docs/model.md``, section 1).  This module builds the explicit
perovskite structure from the same site indices, for reference calculations, export and
pictures, with a documented, charge-balanced termination.

Geometry
--------
With lattice constant ``a`` (Angstrom) and integer grid coordinates ``c`` of a B site:

* B (Pb or Cd) at ``c * a`` (exactly :attr:`segsim.lattice.Lattice.positions_angstrom`);
* Br (X sites) at the octahedron vertices ``c * a +/- (a / 2) e_k``, ``k = x, y, z``:
  corner-sharing octahedra, so a Br shared by two B sites is one atom.  X sites are indexed
  by *slots* ``(i, k)``: the X site at ``c_i + (a / 2) e_k`` ("owned" by site ``i``);
* Cs (A sites) at the cube centres ``c * a + (a / 2) (1, 1, 1)``, indexed by the owning grid
  site ``i``.  The A site owned by ``i`` touches the eight B sites ``c_i + {0, 1}^3``.

Formal charges are Cs +1, Pb +2, Cd +2, Br -1.

Termination (charge-balanced; used for reference energies and export)
--------------------------------------------------------------------
A B site is *present* if its species is Pb, Cd or V (inside the crystal); O sites carry
nothing.  The structure is built in five steps:

1. **B atoms**: one Pb/Cd atom on every Pb/Cd site.
2. **Octahedra**: a Br on every X site that is a vertex of at least one present octahedron
   (the octahedron of every present site, V included, is built complete).
3. **Vacancies**: for each V site, its B atom is absent and, to keep the V site neutral, two
   Br of its octahedron are removed.  First the Br that no B atom holds any more
   (*orphans*: both sites of the Br are V or O, e.g. the outer Br of a surface vacancy or
   the Br between two vacancies), up to two, in the order +z, -z, +y, -y, +x, -x; if only
   one was an orphan, its trans partner completes the pair (if still present).  A V site
   without orphans loses the trans pair along z if both of its Br are still present, else
   the pair along y, else the pair along x, else (if no complete trans pair is left) the
   first two still-present Br in the order above (fewer if fewer are left).  V sites are
   treated in increasing site index.  So an interior vacancy without V neighbours loses its
   z pair, a face vacancy the pair along its face normal, and no Br is left without a B atom
   where a vacancy could take it (a Br held by no cation would be an artefact of the
   termination, which costs energy in a reference calculation and spoils vacancy-vacancy
   energies).
4. **Cs**: a Cs on every A site that touches at least one present octahedron.  Its
   *coordination* is the number of present B sites (Pb, Cd or V) among its eight B
   neighbours (1 corner, 2 edge, 4 face, 8 bulk for a cube).
5. **Charge balance**: with ``Q = N_Cs + 2 N_B - N_Br`` the excess charge, ``Q`` Cs are
   removed, least coordinated first (coordination 1, then 2, ...).  Within the coordination
   class that is only partly removed, the removals are spread deterministically:

   * the candidates of that class are split into connected components (A sites one ``a``
     apart, i.e. nearest neighbours on the A grid);
   * ``k`` removals are shared among components in proportion to their size ``m``: each
     component gets ``floor(k m / M)`` (``M`` = number of candidates), and the remaining ones
     go, one each, to the components with the largest remainder ``k m mod M``; ties are
     broken by a farthest-point order of the component centroids (start from the
     lexicographically smallest centroid, then repeatedly take the component whose centroid
     is farthest from those already taken, i.e. has the largest minimum distance to them;
     ties by lexicographic centroid order);
   * within a component of ``m`` sites sorted lexicographically by position (``x``, then
     ``y``, then ``z``), ``q`` removals take the ranks ``floor((2j + 1) m / (2 q))``,
     ``j = 0 .. q - 1``: evenly spaced and centred.

   If ``Q`` is negative (too few Cs: porous states with many O sites inside the crystal,
   e.g. isolated octahedra), ``-Q`` Br are removed instead, least cation-coordinated first
   (number of neighbouring Pb/Cd atoms: 0, then 1, then 2), then lowest slot index.  The
   balance always succeeds: every present site owns three distinct X slots, so
   ``N_Br >= 3 N_present - 2 N_V >= 2 N_B`` and ``Q`` drops to zero before the Cs run out.

**Full cube.**  For the as-built cube of ``n^3`` Pb/Cd sites this gives ``n^3`` B,
``3 n^3 + 3 n^2`` Br and ``(n + 1)^3`` A sites before step 5, so ``Q = 3 n + 1``: the cube
keeps ``n^3 + 3 n^2`` Cs, i.e. all ``(n - 1)^3`` interior A sites and all surface A sites
except ``3 n + 1``.  The removed ones are the 8 cube corners (coordination 1) and, for
``n >= 3``, ``3 n - 7`` edge A sites (coordination 2).  The 12 edges (``n - 1`` non-corner A
sites each) are the components of the coordination-2 class, so each edge loses
``(3 n - 7) // 12`` or one more, evenly spaced and centred along the edge (the farthest-point
order gives the extra ones first to the four edges parallel to z, then to the others).  For
``n = 1`` and ``n = 2`` (``3 n + 1 < 8``) only corners are removed: for ``n = 2`` seven of the
eight corners (the one kept is the last in the farthest-point order of the corners), for
``n = 1`` (the eight A sites form one connected component) the four on the ``+z`` side of the
octahedron.  Internal vacancies that lose two Br each (always the case for isolated ones and,
in the tests, for a cube made entirely of V) are neutral and do not change which Cs are
removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from segsim import species
from segsim.lattice import Lattice

#: Formal charges used for the charge balance.
FORMAL_CHARGES: dict[str, int] = {"Cs": 1, "Pb": 2, "Cd": 2, "Br": -1}

#: Gap between the two facing CsBr (AX) layers of a Ruddlesden-Popper fault, Angstrom: the
#: Cs-Br distance of rock-salt CsBr (half its conventional cell, 7.2 / 2), i.e. a Cs of one
#: layer sits this far above the Br of the other.  Relaxation adjusts it.
RP_GAP_ANGSTROM: float = 3.6

#: Grid displacements from the owner of an A site to its eight B neighbours.
A_TO_B_DISPLACEMENTS = np.array(
    [[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], dtype=np.int64
)

#: Vacancy trans pairs in order of preference (z, y, x): (axis k, index of the -e_k neighbour
#: in :data:`segsim.lattice.NN_DISPLACEMENTS`).
_VAC_PAIRS = ((2, 5), (1, 3), (0, 1))


@dataclass(frozen=True, eq=False)
class Termination:
    """Which atoms of the atomistic view are present, per lattice index.

    Attributes
    ----------
    b_atom
        True for grid sites with a B atom (Pb or Cd), shape ``(n_sites,)``.
    br
        True for X slots with a Br atom, shape ``(n_sites, 3)``: slot ``(i, k)`` is the X site
        at ``coords[i] + e_k / 2``.
    cs
        True for A sites with a Cs atom, shape ``(n_sites,)``: A site ``i`` is at
        ``coords[i] + (1/2, 1/2, 1/2)``.
    a_coordination
        Number of present B sites (Pb, Cd or V) among the eight neighbours of each A site,
        shape ``(n_sites,)``.
    cs_removed
        A sites that touch a present octahedron but lost their Cs in the charge balance.
    """

    b_atom: np.ndarray
    br: np.ndarray
    cs: np.ndarray
    a_coordination: np.ndarray
    cs_removed: np.ndarray

    @property
    def charge(self) -> int:
        """Total formal charge (0 for every structure this module builds)."""
        return int(self.cs.sum()) + 2 * int(self.b_atom.sum()) - int(self.br.sum())


def _check_occupations(lattice: Lattice, occupations: np.ndarray) -> np.ndarray:
    occ = np.asarray(occupations)
    if occ.shape != (lattice.n_sites,):
        raise ValueError(f"occupations must have shape ({lattice.n_sites},), got {occ.shape}")
    if occ.size and (occ.min() < 0 or occ.max() >= species.N_SPECIES):
        raise ValueError("occupations contain codes outside 0..3")
    return occ


def _components(cand: np.ndarray, nn: np.ndarray, n_sites: int) -> np.ndarray:
    """Label connected components of the candidate sites (nearest neighbours on the grid).

    Returns, for each candidate, the position (in ``cand``) of the smallest member of its
    component.
    """
    pos = np.full(n_sites, -1, dtype=np.int64)
    pos[cand] = np.arange(cand.size)
    nbr = pos[nn[cand]]  # (m, 6), -1 where the neighbour is not a candidate
    valid = nbr >= 0
    nbr_safe = np.where(valid, nbr, 0)
    big = np.int64(cand.size)
    lab = np.arange(cand.size, dtype=np.int64)
    while True:
        nb = np.where(valid, lab[nbr_safe], big).min(axis=1)
        new = np.minimum(lab, nb)
        new = new[new]  # pointer jumping
        if np.array_equal(new, lab):
            return lab
        lab = new


def _farthest_point_rank(centroids: np.ndarray) -> np.ndarray:
    """Rank of each centroid in a deterministic farthest-point order (0 = first)."""
    n = centroids.shape[0]
    lex = np.lexsort((centroids[:, 2], centroids[:, 1], centroids[:, 0]))
    lexrank = np.empty(n, dtype=np.int64)
    lexrank[lex] = np.arange(n)
    rank = np.empty(n, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    mind = np.full(n, np.inf)
    cur = int(lex[0])
    for r in range(n):
        rank[cur] = r
        taken[cur] = True
        if r == n - 1:
            break
        d2 = ((centroids - centroids[cur]) ** 2).sum(axis=1)
        mind = np.minimum(mind, np.round(d2, 6))
        score = np.where(taken, -1.0, mind)
        best = np.flatnonzero(score == score.max())
        cur = int(best[np.argmin(lexrank[best])])
    return rank


def _spread_select(k: int, cand: np.ndarray, lattice: Lattice) -> np.ndarray:
    """Pick ``k`` of the candidate grid sites (sorted ascending), spread as documented."""
    m_all = cand.size
    if k <= 0:
        return cand[:0]
    if k >= m_all:
        return cand
    lab = _components(cand, lattice.nn, lattice.n_sites)
    roots, comp = np.unique(lab, return_inverse=True)
    n_comp = roots.size
    sizes = np.bincount(comp, minlength=n_comp).astype(np.int64)
    quota = (k * sizes) // m_all
    left = k - int(quota.sum())
    if left > 0:
        remainder = (k * sizes) % m_all
        coords = lattice.coords[cand].astype(np.float64)
        centroids = (
            np.stack(
                [np.bincount(comp, weights=coords[:, d], minlength=n_comp) for d in range(3)],
                axis=1,
            )
            / sizes[:, None]
        )
        fps = _farthest_point_rank(centroids)
        order = np.lexsort((fps, -remainder))
        quota[order[:left]] += 1
    # Candidates are sorted by site index, i.e. lexicographically by grid position.
    members = np.argsort(comp, kind="stable")
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    picked = []
    for c in np.flatnonzero(quota):
        q, m = int(quota[c]), int(sizes[c])
        ranks = ((2 * np.arange(q) + 1) * m) // (2 * q)
        picked.append(members[starts[c] + ranks])
    return np.sort(cand[np.concatenate(picked)])


def terminate(lattice: Lattice, occupations: np.ndarray) -> Termination:
    """Return the charge-balanced termination of a B-sublattice state.

    The rule is the one in the module docstring; the result has zero formal charge.

    Parameters
    ----------
    lattice
        The NC lattice.
    occupations
        Species codes (:mod:`segsim.species`), shape ``(n_sites,)``.

    Returns
    -------
    Termination
        Boolean masks of the present B, Br and Cs atoms, indexed by grid site (and axis for
        Br).
    """
    occ = _check_occupations(lattice, occupations)
    nn = lattice.nn
    n = lattice.n_sites
    present = occ != species.OUT
    b_atom = occ <= species.CD

    # Step 2: every vertex of a present octahedron.  Slot (i, k) joins i and nn[i, 2k].
    plus = nn[:, 0::2]  # +x, +y, +z neighbours, shape (n, 3)
    br = present[:, None] | present[plus]

    # Step 3: vacancies lose two Br: orphans first, else a trans pair (z, else y, else x).
    vac = np.flatnonzero(occ == species.VAC)
    if vac.size:
        # Fast path: a V whose neighbours all hold B atoms has no orphan and loses its z pair.
        bulk = b_atom[nn[vac]].all(axis=1)
        iso = vac[bulk]
        br[iso, 2] = False
        br[nn[iso, 5], 2] = False
        for i in vac[~bulk].tolist():
            _strip_vacancy(br, nn, b_atom, i)

    # Step 4: Cs on every A site touching a present octahedron.
    a_nbrs = lattice.neighbor_table(A_TO_B_DISPLACEMENTS)
    a_coord = present[a_nbrs].sum(axis=1).astype(np.int8)
    cs = a_coord > 0
    cs_removed = np.zeros(n, dtype=bool)

    # Step 5: charge balance.
    q = int(cs.sum()) + 2 * int(b_atom.sum()) - int(br.sum())
    if q > 0:
        for c in range(1, 9):
            if q == 0:
                break
            tier = np.flatnonzero(cs & (a_coord == c))
            chosen = _spread_select(q, tier, lattice)
            cs[chosen] = False
            cs_removed[chosen] = True
            q -= chosen.size
    if q < 0:
        _remove_bromide(br, b_atom, plus, -q)
    return Termination(b_atom=b_atom, br=br, cs=cs, a_coordination=a_coord, cs_removed=cs_removed)


def _strip_vacancy(br: np.ndarray, nn: np.ndarray, b_atom: np.ndarray, i: int) -> None:
    """Remove two Br of the octahedron of V site ``i`` (in place), by the documented rule."""
    # Slots of the octahedron in the order +z, -z, +y, -y, +x, -x, with the far site of each.
    slots = []
    for k, minus in _VAC_PAIRS:
        slots.append(((i, k), int(nn[i, 2 * k])))
        slots.append(((int(nn[i, minus]), k), int(nn[i, minus])))
    orphans = [j for j, (s, far) in enumerate(slots) if br[s] and not b_atom[far]][:2]
    for j in orphans:
        br[slots[j][0]] = False
    if len(orphans) == 1:
        partner = slots[orphans[0] ^ 1][0]  # the other slot of the same trans pair
        if br[partner]:
            br[partner] = False
            return
    elif len(orphans) == 2:
        return
    need = 2 - len(orphans)
    if need == 2:  # no orphan: the first complete trans pair (z, y, x)
        for j in range(0, 6, 2):
            if br[slots[j][0]] and br[slots[j + 1][0]]:
                br[slots[j][0]] = br[slots[j + 1][0]] = False
                return
    for s, _ in slots:
        if need and br[s]:
            br[s] = False
            need -= 1


def _remove_bromide(br: np.ndarray, b_atom: np.ndarray, plus: np.ndarray, count: int) -> None:
    """Remove ``count`` Br (in place), least cation-coordinated first, then lowest slot."""
    cat_coord = (b_atom[:, None].astype(np.int64) + b_atom[plus]).ravel()
    flat = br.reshape(-1)
    cand = np.flatnonzero(flat)
    order = np.lexsort((cand, cat_coord[cand]))
    flat[cand[order[:count]]] = False


def to_atoms(
    lattice: Lattice,
    occupations: np.ndarray,
    *,
    a_angstrom: float | None = None,
    vacuum_angstrom: float | None = None,
) -> Atoms:
    """Build the atomistic view (Cs, Pb/Cd, Br) of a B-sublattice state.

    Atoms are ordered B (by site index), then Br (by slot index ``3 i + k``), then Cs (by A
    site index).  The termination is :func:`terminate` (module docstring); the structure has
    zero formal charge.

    Parameters
    ----------
    lattice
        The NC lattice.
    occupations
        Species codes (:mod:`segsim.species`), shape ``(n_sites,)``.
    a_angstrom
        Lattice constant in Angstrom; default ``lattice.a_angstrom`` (then B positions equal
        ``lattice.positions_angstrom``).
    vacuum_angstrom
        If given, return a non-periodic cluster centred in a box with this much vacuum (in
        Angstrom) on every side (``Atoms.center(vacuum=...)``).  By default the cell is the
        lattice's periodic grid (``shape * a``) with ``pbc=True``.

    Returns
    -------
    ase.Atoms
        The structure, with per-atom integer arrays ``b_site`` (grid site of a B atom, -1 for
        Cs and Br) and ``owner_site`` (grid site whose position plus the atom's offset,
        ``0`` for B, ``e_k / 2`` for Br, ``(1, 1, 1) / 2`` for Cs, gives the atom).
    """
    term = terminate(lattice, occupations)
    occ = np.asarray(occupations)
    a = lattice.a_angstrom if a_angstrom is None else float(a_angstrom)
    if not a > 0:
        raise ValueError(f"a_angstrom must be positive, got {a}")
    if vacuum_angstrom is not None and (occ != species.OUT)[lattice.coords.min(axis=1) == 0].any():
        raise ValueError("a cluster needs the crystal away from the grid boundary (coordinate 0)")

    base = lattice.coords.astype(np.float64) * a
    b_sites = np.flatnonzero(term.b_atom)
    br_slots = np.flatnonzero(term.br.reshape(-1))
    br_owner, br_axis = np.divmod(br_slots, 3)
    cs_sites = np.flatnonzero(term.cs)

    br_pos = base[br_owner].copy()
    br_pos[np.arange(br_slots.size), br_axis] += 0.5 * a
    positions = np.concatenate([base[b_sites], br_pos, base[cs_sites] + 0.5 * a])

    numbers = np.concatenate(
        [
            np.where(occ[b_sites] == species.CD, 48, 82),
            np.full(br_slots.size, 35),
            np.full(cs_sites.size, 55),
        ]
    )
    b_site = np.concatenate(
        [b_sites, np.full(br_slots.size + cs_sites.size, -1, dtype=np.int64)]
    ).astype(np.int64)
    owner = np.concatenate([b_sites, br_owner, cs_sites]).astype(np.int64)

    atoms = Atoms(
        numbers=numbers,
        positions=positions,
        cell=np.diag(np.asarray(lattice.shape, dtype=np.float64) * a),
        pbc=True,
    )
    atoms.set_array("b_site", b_site)
    atoms.set_array("owner_site", owner)
    if vacuum_angstrom is not None:
        atoms.pbc = False
        atoms.center(vacuum=float(vacuum_angstrom))
    return atoms


def charge(atoms: Atoms) -> int:
    """Return the total formal charge (Cs +1, Pb +2, Cd +2, Br -1) of a structure.

    Raises
    ------
    KeyError
        If the structure holds an element without a formal charge here.
    """
    symbols, counts = np.unique(np.asarray(atoms.get_chemical_symbols()), return_counts=True)
    return int(sum(FORMAL_CHARGES[str(s)] * int(c) for s, c in zip(symbols, counts, strict=True)))


def formula_counts(atoms: Atoms) -> dict[str, int]:
    """Return the number of atoms of each of Cs, Pb, Cd, Br (and any other element present)."""
    symbols, counts = np.unique(np.asarray(atoms.get_chemical_symbols()), return_counts=True)
    out = dict.fromkeys(("Cs", "Pb", "Cd", "Br"), 0)
    out.update({str(s): int(c) for s, c in zip(symbols, counts, strict=True)})
    return out


#: Depth of the XPS-like surface shell, Angstrom: photoelectrons of Cs 3d and Pb 4f excited by
#: Al K-alpha have inelastic mean free paths of about 1.5-2 nm in lead-halide perovskites, so
#: XPS ratios report on the outer ~1.5 nm.
XPS_SHELL_ANGSTROM: float = 15.0


def _outside_distance(
    lattice: Lattice, occ: np.ndarray, points: np.ndarray, reach: float
) -> np.ndarray:
    """Distance (grid units) of ``points`` (grid units) to the nearest O site; inf beyond ``reach``."""
    from scipy.spatial import cKDTree

    box = np.asarray(lattice.shape, dtype=np.float64)
    outside = lattice.coords[occ == species.OUT].astype(np.float64)
    if outside.size == 0:
        return np.full(len(points), np.inf)
    tree = cKDTree(outside, boxsize=box)
    dist, _ = tree.query(np.mod(points, box), distance_upper_bound=reach)
    return dist


def depth_below_surface_angstrom(
    lattice: Lattice,
    occupations: np.ndarray,
    atoms: Atoms | None = None,
    max_depth_angstrom: float = 2.5 * XPS_SHELL_ANGSTROM,
) -> np.ndarray:
    """Return the depth of every atom of the atomistic view below the NC's outer surface.

    The outer surface is taken half a lattice constant in front of the outside (O) B sites,
    where the CsBr termination layer lies (the apical Br of a surface octahedron is at depth
    0, a surface B atom at ``a / 2``): depth = (distance to the nearest O grid site) - a / 2.
    Pits and receded sites count as outside, so the surface follows them.

    Parameters
    ----------
    lattice
        The NC lattice.
    occupations
        Species codes, shape ``(n_sites,)``.
    atoms
        The atomistic view of this state (:func:`to_atoms` with the lattice's own ``a`` and
        no vacuum); built here when not given.
    max_depth_angstrom
        Atoms deeper than this get ``inf`` (the search stops there).

    Returns
    -------
    numpy.ndarray
        Depths in Angstrom, one per atom in the order of ``atoms``.
    """
    a = lattice.a_angstrom
    occ = _check_occupations(lattice, occupations)
    if atoms is None:
        atoms = to_atoms(lattice, occ)
    reach = max_depth_angstrom / a + 0.5
    return (_outside_distance(lattice, occ, atoms.positions / a, reach) - 0.5) * a


def surface_cation_ratio(
    lattice: Lattice, occupations: np.ndarray, shell_angstrom: float = XPS_SHELL_ANGSTROM
) -> float:
    """Return the Cs/(Pb+Cd) atomic ratio of the outer ``shell_angstrom`` of the NC (XPS-like).

    Counts the Cs and B atoms of the atomistic view (charge-balanced termination,
    :func:`terminate`) whose depth below the outer surface (as in
    :func:`depth_below_surface_angstrom`) is at most ``shell_angstrom``: a sharp shell, not
    XPS's exponential attenuation.  A perfect cube of ``n^3`` B sites has ``1 + 3 / n`` over
    the whole NC; a vacancy keeps its Cs and loses its B atom, so Cd expulsion raises the
    ratio.  NaN for a shell without B atoms.
    """
    if not shell_angstrom > 0:
        raise ValueError(f"shell_angstrom must be positive, got {shell_angstrom}")
    occ = _check_occupations(lattice, occupations)
    term = terminate(lattice, occ)
    coords = lattice.coords.astype(np.float64)
    reach = shell_angstrom / lattice.a_angstrom + 0.5
    d_b = _outside_distance(lattice, occ, coords[term.b_atom], reach)
    d_cs = _outside_distance(lattice, occ, coords[term.cs] + 0.5, reach)
    n_b = int(np.count_nonzero(np.isfinite(d_b)))
    return float(np.count_nonzero(np.isfinite(d_cs))) / n_b if n_b else float("nan")
