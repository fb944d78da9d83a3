"""A common tilted start for reference relaxations: the a-a-c+ Glazer tilt of orthorhombic CsPbBr3.

Why
---
The ideal cubic positions of :mod:`segsim.atomistic` are a saddle of the octahedral tilts.
With CHGNet, a 4^3 NC (416 atoms, x = 0.25) relaxed from them (FIRE, 0.01 eV/Angstrom) ends
0.09-0.29 eV apart from rattled starts, in different tilt minima, which is more than the
spread between Cd arrangements.  Imposing one fixed tilt pattern on every structure before
relaxing is meant to put all of them in the same tilt basin.

Measured with CHGNet (``studies/start_spread/start_spread.md``, four 4^3 NCs at x = 0.25, three
rattled starts each): from this pattern the relaxations stay in it and the start-to-start
spread drops from 0.02-0.09 eV (rattled ideal starts) to 0.01-0.05 eV, but the a-a-c+ basin
of the NC lies 0.13-0.22 eV above the lowest rattled-ideal minima (which are dominated by
in-phase tilts about x and y), and a 100 K anneal or a smaller tilt scatter more.  It is
therefore an option, not the default.

The pattern
-----------
Room-temperature CsPbBr3 is orthorhombic, space group Pnma (Pbnm in another setting), with
the a-a-c+ tilt system in Glazer's notation (Stoumpos et al., Cryst. Growth Des. 13, 2722
(2013); Glazer, Acta Cryst. B 28, 3384 (1972)): the octahedra rotate about the pseudo-cubic
x and y axes by the same angle, in antiphase along every axis (a-a-), and about z in phase
along z (c+).  Corner sharing forces neighbouring octahedra within a plane perpendicular to a
rotation axis to turn in opposite senses.  With integer grid coordinates ``(i, j, k)`` of a
B site the rotation components are therefore::

    omega_x = s_a phi_a,  omega_y = s_a phi_a,  omega_z = s_c phi_c,
    s_a = (-1)^(i + j + k)        (antiphase: flips with every step)
    s_c = (-1)^(i + j)            (in phase along z: flips only with steps along x or y)

``phi_a`` is the antiphase and ``phi_c`` the in-phase tilt angle.  A Br between two B sites
``c`` and ``c + e_k`` only feels the components of omega perpendicular to ``e_k``, and those
are opposite on the two sites (checked for every bridge), so both octahedra move the shared
Br by the same vector: the Br is displaced perpendicular to its B-Br-B axis by

    d = r (t x u),   t = (s_a tan phi_a, s_a tan phi_a, s_c tan phi_c),

``r`` the B-Br distance and ``u`` the unit vector from the B to the Br.  For a single
rotation about one axis this turns the B-Br direction by exactly ``phi`` with the B sites
fixed (the B-Br-B angle becomes ``180 - 2 phi``); for the two or three rotations of a-a-c+ the
displacements add (the small-angle superposition of the rotations).  A Br along z moves by
``r sqrt(2) tan phi_a``, a Br along x or y by ``r sqrt(tan^2 phi_a + tan^2 phi_c)``.  B
atoms stay on their sites and Cs atoms on theirs (their Pnma off-centring is left to the
relaxation).

Which B site is ``(0, 0, 0)``
-----------------------------
The pattern is built from the geometry alone, so that it applies to every structure of the
training set (NCs with and without vacancies, periodic cells, NCs with a Ruddlesden-Popper
fault, where the two blocks are not corner-connected): B-Br bonds are found by distance,
Br atoms with two B neighbours on opposite sides along one axis *bridge* them, and integer
coordinates are propagated through the bridges.  Each corner-connected block gets its own
origin, the minimum of its coordinates along each axis (for a cubic NC: the corner with the
smallest x, y and z), so that all arrangements of one NC receive the same pattern.  A
periodic cell with an odd number of octahedra along an axis cannot hold the pattern (a
bridge would join two sites of equal parity): :func:`glazer_tilt_displacements` raises then.

Choice of the angles
--------------------
A literature search (the search tool of this project, for "CsPbBr3 Pnma octahedral tilt
angle" and similar) found the Pnma structure assignment (Stoumpos et al., above) but no
quotable tilt angles, so the defaults are those CHGNet itself gives for bulk CsPbBr3: a
periodic 2 x 2 x 2 cell (40 atoms, a = 5.87 Angstrom) relaxed with positions and cell
(FIRE, 0.01 eV/Angstrom) from this pattern at 10/10 degrees keeps a-a-c+ with
9.1 +- 1.7 degrees (antiphase) and 9.7 degrees (in phase); from rattled ideal positions it
relaxes to the same pattern, 8.7 +- 1.5 and 10.6 degrees, 0.78 eV (0.098 eV per formula
unit) below the cubic saddle (measured by :func:`measure_tilt_degrees`;
``python -m studies.start_spread.start_spread --bulk``, table in ``studies/start_spread/start_spread.md``).
:data:`CHGNET_BULK_TILT_DEGREES` rounds the first to half degrees.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from ase import Atoms

__all__ = [
    "B_SYMBOLS",
    "CHGNET_BULK_TILT_DEGREES",
    "X_SYMBOL",
    "OctahedralNetwork",
    "apply_glazer_tilt",
    "glazer_fingerprint",
    "glazer_tilt_displacements",
    "measure_tilt_degrees",
    "octahedral_network",
    "tilt_vectors",
]

#: Chemical symbols of the octahedral (B) cations.
B_SYMBOLS: tuple[str, ...] = ("Pb", "Cd")

#: Chemical symbol of the halide (X) at the octahedron corners.
X_SYMBOL: str = "Br"

#: Longest distance searched for B-X bonds, Angstrom (B-Br is about 2.9-3.0 Angstrom).
MAX_BOND_ANGSTROM: float = 3.6

#: B-X pairs count as bonds up to this factor times the shortest B-X distance of the
#: structure (ideal structures: all B-Br bonds are ``a / 2``, Cs-Br and Br-Br ``a / sqrt 2``).
BOND_TOLERANCE: float = 1.15

#: Largest sine of the angle between a B-X bond and its nearest grid axis; the tilt is meant
#: for ideal (untilted) structures.
MAX_OFF_AXIS_SINE: float = 0.2

#: (antiphase, in-phase) tilt angles in degrees of a CHGNet-relaxed 2 x 2 x 2 CsPbBr3 cell.
CHGNET_BULK_TILT_DEGREES: tuple[float, float] = (9.0, 9.5)


@dataclass(frozen=True, eq=False)
class OctahedralNetwork:
    """The corner-sharing octahedra of a structure, found from its geometry.

    Attributes
    ----------
    b_atoms
        Atom indices of the B cations (Pb, Cd), shape ``(n_b,)``.
    parity
        Grid-coordinate parities (0 or 1 along x, y, z) of each B cation, shape ``(n_b, 3)``.
    block
        Index of the corner-connected block of each B cation, shape ``(n_b,)``.
    x_atoms
        Atom indices of the X atoms bonded to at least one B cation, shape ``(n_x,)``.
    x_owner
        Position in ``b_atoms`` of the B cation each X is placed from (its lowest-index B
        neighbour), shape ``(n_x,)``.
    x_bond_angstrom
        Vector from that B to the X (minimum image), Angstrom, shape ``(n_x, 3)``.
    x_axis
        Grid axis (0, 1, 2) of each B-X bond, shape ``(n_x,)``.
    n_bridges
        Number of X atoms shared by two octahedra.
    """

    b_atoms: np.ndarray
    parity: np.ndarray
    block: np.ndarray
    x_atoms: np.ndarray
    x_owner: np.ndarray
    x_bond_angstrom: np.ndarray
    x_axis: np.ndarray
    n_bridges: int


def _bonds(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the B-X bonds ``(b, x, vector B -> X in Angstrom)``, sorted by x then b."""
    from ase.neighborlist import neighbor_list

    symbols = np.asarray(atoms.get_chemical_symbols())
    is_b = np.isin(symbols, B_SYMBOLS)
    is_x = symbols == X_SYMBOL
    empty = np.zeros(0, dtype=np.int64)
    if not is_b.any() or not is_x.any():
        return empty, empty, np.zeros((0, 3))
    i, j, vec = neighbor_list("ijD", atoms, MAX_BOND_ANGSTROM)
    keep = is_b[i] & is_x[j]
    i, j, vec = i[keep], j[keep], vec[keep]
    if i.size == 0:
        return empty, empty, np.zeros((0, 3))
    dist = np.linalg.norm(vec, axis=1)
    keep = dist <= BOND_TOLERANCE * dist.min()
    i, j, vec = i[keep], j[keep], vec[keep]
    order = np.lexsort((i, j))
    return i[order], j[order], vec[order]


def octahedral_network(atoms: Atoms) -> OctahedralNetwork:
    """Find the octahedra, their bridges and the grid parity of every B cation.

    Parameters
    ----------
    atoms
        A structure with B cations on (pseudo-)cubic sites and Br at the octahedron corners,
        as built by :mod:`segsim.atomistic` (NC, periodic cell, or an RP-fault NC).

    Returns
    -------
    OctahedralNetwork
        See the module docstring for how coordinates and origins are chosen.

    Raises
    ------
    ValueError
        If a B-X bond is not along a grid axis (the structure is not ideal), or if the bridges
        do not fit one parity per B site (a periodic cell with an odd number of octahedra
        along an axis).
    """
    symbols = np.asarray(atoms.get_chemical_symbols())
    b_atoms = np.flatnonzero(np.isin(symbols, B_SYMBOLS))
    pos_in_b = np.full(len(atoms), -1, dtype=np.int64)
    pos_in_b[b_atoms] = np.arange(b_atoms.size)
    b_of, x_of, vec = _bonds(atoms)
    dist = np.linalg.norm(vec, axis=1)
    axis = np.abs(vec).argmax(axis=1) if vec.size else np.zeros(0, dtype=np.int64)
    off_axis = np.sqrt(np.maximum(dist**2 - vec[np.arange(axis.size), axis] ** 2, 0.0)) / dist
    if np.any(off_axis > MAX_OFF_AXIS_SINE):
        raise ValueError(
            "a B-Br bond is far from every grid axis: the tilt needs an untilted structure"
        )

    # Bridges: an X with two bonds along one axis, on opposite sides of it.
    x_atoms, first, counts = np.unique(x_of, return_index=True, return_counts=True)
    edges: list[tuple[int, int, int]] = []  # (b_from, b_to, axis): coords differ by +e_axis
    for x_first, n in zip(first.tolist(), counts.tolist(), strict=True):
        if n == 1:
            continue
        rows = list(range(x_first, x_first + n))
        if n != 2 or axis[rows[0]] != axis[rows[1]]:
            raise ValueError(f"X atom {int(x_of[x_first])} is not a linear B-X-B bridge")
        k = int(axis[rows[0]])
        lo, hi = sorted(rows, key=lambda r: vec[r, k], reverse=True)  # lo: X above its B
        if vec[lo, k] <= 0 or vec[hi, k] >= 0:
            raise ValueError(f"X atom {int(x_of[x_first])} is not a linear B-X-B bridge")
        edges.append((int(pos_in_b[b_of[lo]]), int(pos_in_b[b_of[hi]]), k))

    n_b = b_atoms.size
    adjacency: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_b)]
    for u, v, k in edges:
        step = np.zeros(3, dtype=np.int64)
        step[k] = 1
        adjacency[u].append((v, step))
        adjacency[v].append((u, -step))
    coords = np.zeros((n_b, 3), dtype=np.int64)
    block = np.full(n_b, -1, dtype=np.int64)
    n_blocks = 0
    for root in range(n_b):
        if block[root] >= 0:
            continue
        block[root] = n_blocks
        queue = deque([root])
        while queue:
            u = queue.popleft()
            for v, step in adjacency[u]:
                if block[v] < 0:
                    block[v] = n_blocks
                    coords[v] = coords[u] + step
                    queue.append(v)
        members = block == n_blocks
        coords[members] -= coords[members].min(axis=0)
        n_blocks += 1
    parity = coords % 2
    for u, v, k in edges:
        expected = parity[u].copy()
        expected[k] ^= 1
        if not np.array_equal(parity[v], expected):
            raise ValueError(
                "the octahedra do not fit an alternating pattern (a periodic cell needs an even "
                "number of octahedra along every axis)"
            )
    return OctahedralNetwork(
        b_atoms=b_atoms,
        parity=parity,
        block=block,
        x_atoms=x_atoms.astype(np.int64),
        x_owner=pos_in_b[b_of[first]] if first.size else np.zeros(0, dtype=np.int64),
        x_bond_angstrom=vec[first] if first.size else np.zeros((0, 3)),
        x_axis=axis[first] if first.size else np.zeros(0, dtype=np.int64),
        n_bridges=len(edges),
    )


def tilt_vectors(
    parity: np.ndarray, antiphase_degrees: float, inphase_degrees: float
) -> np.ndarray:
    """Return ``t = (s_a tan phi_a, s_a tan phi_a, s_c tan phi_c)`` per B site, shape ``(n, 3)``.

    Parameters
    ----------
    parity
        Grid-coordinate parities of the B sites, shape ``(n, 3)``.
    antiphase_degrees, inphase_degrees
        Tilt angles ``phi_a`` (about x and y) and ``phi_c`` (about z), degrees.
    """
    p = np.asarray(parity, dtype=np.int64)
    s_a = 1 - 2 * (p.sum(axis=1) % 2)
    s_c = 1 - 2 * ((p[:, 0] + p[:, 1]) % 2)
    ta = np.tan(np.radians(float(antiphase_degrees)))
    tc = np.tan(np.radians(float(inphase_degrees)))
    return np.stack([s_a * ta, s_a * ta, s_c * tc], axis=1).astype(np.float64)


def glazer_tilt_displacements(
    atoms: Atoms, antiphase_degrees: float, inphase_degrees: float
) -> np.ndarray:
    """Return the a-a-c+ displacements of every atom (Angstrom), shape ``(n_atoms, 3)``.

    Only X atoms bonded to a B cation move (module docstring); B, Cs and unbonded X atoms get
    zero.

    Parameters
    ----------
    atoms
        An untilted structure (see :func:`octahedral_network`).
    antiphase_degrees
        Tilt ``phi_a`` about x and about y (antiphase along every axis), degrees.
    inphase_degrees
        Tilt ``phi_c`` about z (in phase along z), degrees.

    Raises
    ------
    ValueError
        For angles outside ``[0, 30)`` degrees, or a structure the pattern does not fit.
    """
    for name, value in (("antiphase", antiphase_degrees), ("inphase", inphase_degrees)):
        if not 0.0 <= float(value) < 30.0:
            raise ValueError(f"{name} tilt must be in [0, 30) degrees, got {value}")
    net = octahedral_network(atoms)
    disp = np.zeros((len(atoms), 3))
    if net.x_atoms.size:
        t = tilt_vectors(net.parity, antiphase_degrees, inphase_degrees)
        disp[net.x_atoms] = np.cross(t[net.x_owner], net.x_bond_angstrom)
    return disp


def apply_glazer_tilt(atoms: Atoms, antiphase_degrees: float, inphase_degrees: float) -> None:
    """Move the X atoms of ``atoms`` (in place) by :func:`glazer_tilt_displacements`."""
    disp = glazer_tilt_displacements(atoms, antiphase_degrees, inphase_degrees)
    atoms.set_positions(atoms.positions + disp)


def measure_tilt_degrees(atoms: Atoms, reference: Atoms) -> dict[str, float]:
    """Return the mean a-a-c+ tilt angles of a (relaxed) structure, degrees.

    The octahedral network (bonds, parities) is taken from the untilted ``reference`` (same
    atoms in the same order).  For every bridging Br the displacement from the midpoint of
    its two B atoms, perpendicular to their axis, divided by half the B-B distance, gives
    ``tan`` of the rotation components perpendicular to the bridge (x and y bridges give
    ``phi_a`` and ``phi_c``, z bridges ``phi_a`` twice); components are signed by the
    pattern's expected sign, so a structure with the pattern gives positive angles and one
    with another pattern averages towards zero.

    Parameters
    ----------
    atoms
        The structure to measure (e.g. relaxed from the tilted start).
    reference
        Its untilted twin (ideal positions).

    Returns
    -------
    dict
        ``antiphase_degrees``, ``inphase_degrees`` (means), ``antiphase_std_degrees``,
        ``inphase_std_degrees`` and ``n_bridges``.
    """
    net = octahedral_network(reference)
    b_of, x_of, _ = _bonds(reference)
    sign = np.sign(tilt_vectors(net.parity, 1.0, 1.0))
    anti: list[float] = []
    inph: list[float] = []
    for idx, x in enumerate(net.x_atoms.tolist()):
        partners = b_of[x_of == x]
        if partners.size != 2:
            continue
        k = int(net.x_axis[idx])
        owner = int(net.x_owner[idx])
        b0 = int(net.b_atoms[owner])
        other = int(partners[partners != b0][0])
        to_x = atoms.get_distance(b0, x, mic=True, vector=True)
        # Through the X: in a 2-periodic cell the minimum image of the other B is ambiguous.
        to_b = to_x + atoms.get_distance(x, other, mic=True, vector=True)
        half = 0.5 * float(np.linalg.norm(to_b))
        u = to_b / (2.0 * half)
        perp = to_x - 0.5 * to_b
        perp -= np.dot(perp, u) * u
        # d = r (t x u)  =>  the part of t perpendicular to u is (u x d) / r.
        t_perp = np.cross(u, perp) / half
        for comp in range(3):
            if comp != k:
                value = float(np.degrees(np.arctan(t_perp[comp] * sign[owner, comp])))
                (inph if comp == 2 else anti).append(value)
    return {
        "antiphase_degrees": float(np.mean(anti)) if anti else 0.0,
        "inphase_degrees": float(np.mean(inph)) if inph else 0.0,
        "antiphase_std_degrees": float(np.std(anti)) if anti else 0.0,
        "inphase_std_degrees": float(np.std(inph)) if inph else 0.0,
        "n_bridges": int(net.n_bridges),
    }


def glazer_fingerprint(atoms: Atoms, reference: Atoms) -> dict[str, float]:
    """Return the amplitudes (degrees) of the six tilt modes of a (relaxed) structure.

    Each octahedron's rotation ``t`` (``tan`` of the angle per axis) is estimated from its
    Br: a Br at unit vector ``u`` from its B (``reference``, untilted), displaced by ``d``
    relative to the B, gives the components of ``t`` perpendicular to ``u`` as
    ``(u x d) / r``; the estimates of all Br of the octahedron are averaged per component.
    The rotation about axis ``c`` is then projected on its two corner-sharing-compatible
    sign patterns over the B sites: antiphase, ``(-1)^(i + j + k)`` (Glazer ``-``), and in
    phase along ``c``, ``(-1)^(sum of the other two indices)`` (Glazer ``+``).

    Parameters
    ----------
    atoms
        The structure to analyse.
    reference
        Its untilted twin (same atoms, same order).

    Returns
    -------
    dict
        Keys ``x-``, ``x+``, ``y-``, ``y+``, ``z-``, ``z+``: the mean projected rotation,
        degrees (signed; the pattern imposed by :func:`apply_glazer_tilt` gives ``x-`` =
        ``y-`` = ``phi_a``, ``z+`` = ``phi_c`` and zero for the others).
    """
    net = octahedral_network(reference)
    b_of, x_of, vec = _bonds(reference)
    pos_in_b = np.full(len(reference), -1, dtype=np.int64)
    pos_in_b[net.b_atoms] = np.arange(net.b_atoms.size)
    sums = np.zeros((net.b_atoms.size, 3))
    counts = np.zeros((net.b_atoms.size, 3))
    for b, x, v in zip(b_of.tolist(), x_of.tolist(), vec, strict=True):
        r = float(np.linalg.norm(v))
        u = v / r
        d = atoms.get_distance(b, x, mic=True, vector=True) - v
        t_perp = np.cross(u, d) / r
        axis = int(np.abs(u).argmax())
        i = pos_in_b[b]
        for comp in range(3):
            if comp != axis:
                sums[i, comp] += t_perp[comp]
                counts[i, comp] += 1
    has = counts > 0
    t = np.where(has, sums / np.maximum(counts, 1), 0.0)
    p = net.parity
    anti = 1 - 2 * (p.sum(axis=1) % 2)
    out: dict[str, float] = {}
    for comp, name in enumerate("xyz"):
        inph = 1 - 2 * ((p.sum(axis=1) - p[:, comp]) % 2)
        sel = has[:, comp]
        for label, pattern in (("-", anti), ("+", inph)):
            mean = float(np.mean(t[sel, comp] * pattern[sel])) if sel.any() else 0.0
            out[f"{name}{label}"] = float(np.degrees(np.arctan(mean)))
    return out
