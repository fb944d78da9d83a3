"""The atomistic view of one snapshot for pictures: perovskite plus Ruddlesden-Popper faults.

The lattice model knows only *which* B sites are RP (``phase`` = 1), not the geometry of the
RP domain.  Pictures (export, STEM, XRD) need atoms, so this module takes the charge-balanced
perovskite view of :func:`segsim.atomistic.to_atoms` and applies a documented geometric
model of the RP domains on top of it; nothing here is used by the simulation.

RP geometry (the fault of :func:`segsim.training.structures.build_rp_fault`, generalised to
a phase field):

1. **Domains** are the connected components (nearest neighbours) of the RP sites that are
   inside the crystal (Pb, Cd or V).
2. **Stacking direction.**  RP domains border the surface (MODEL.md), with the faults parallel
   to the nearest face.  Each domain stacks along the grid axis ``k`` along which its
   centroid is farthest from the centroid of the crystal, pointing outwards (sign ``s`` of
   that offset; ties prefer z, then y; a domain at the very centre stacks along +z).
3. **Faults.**  Between every two RP sites of the same domain that are neighbours along
   ``k`` there is an RP fault (so a run of ``m`` RP sites along ``k`` is ``m`` single-octahedron
   blocks, the ``n = 1`` member Cs2BBr4 of the RP series; a two-plane RP region is exactly one
   fault, as in the training structures).  A single RP plane without an RP neighbour along
   ``k`` has no fault and looks like perovskite.
4. **Displacement.**  Everything beyond a fault (farther out along ``s k``, in the same column
   of sites along ``k``) is moved by ``s gap e_k`` plus ``(a/2)(e_u + e_v)`` (``u``, ``v`` the
   other two axes) for an odd number of faults crossed, so consecutive blocks are offset by
   half a cell, as in the RP phase.  ``gap`` is
   :data:`segsim.atomistic.RP_GAP_ANGSTROM` (3.6 Angstrom, the Cs-Br distance of
   rock-salt CsBr).  Atoms move with the grid site that owns them (``owner_site`` of
   :func:`segsim.atomistic.to_atoms`), so every formula unit stays whole.
5. **Inserted layer.**  Each fault adds one CsBr unit per column, the missing AX layer of the
   rock-salt double layer: a Br in line with the B site on the far side of the fault (the
   site with the larger coordinate along ``k``, whose own AX layer is not the one shared in
   perovskite) and a Cs offset from it by ``(a/2)(e_u + e_v)``, ``a/2`` from that B site
   towards the fault.  The two AX layers then face each other in rock-salt registry (Cs over
   Br), ``gap`` apart; the structure stays neutral.

Per-atom integer array ``rp``: 0 perovskite, 1 atoms owned by an RP site, 2 atoms of an
inserted fault layer (also set as ``tags``, which ``ase gui`` and OVITO can colour by).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from segsim import atomistic, species
from segsim.lattice import Lattice

#: Values of the per-atom ``rp`` array.
RP_NONE, RP_SITE, RP_INSERTED = 0, 1, 2


def _stacking(lattice: Lattice, rp_sites: np.ndarray, crystal: np.ndarray) -> np.ndarray:
    """Return ``(axis, sign)`` of each RP site's domain, shape ``(n_rp, 2)`` (rule 2)."""
    lab = atomistic._components(rp_sites, lattice.nn, lattice.n_sites)
    roots, comp = np.unique(lab, return_inverse=True)
    coords = lattice.coords[rp_sites].astype(np.float64)
    sizes = np.bincount(comp, minlength=roots.size)
    centroids = (
        np.stack(
            [np.bincount(comp, weights=coords[:, d], minlength=roots.size) for d in range(3)],
            axis=1,
        )
        / sizes[:, None]
    )
    offset = centroids - lattice.coords[crystal].astype(np.float64).mean(axis=0)
    mag = np.round(np.abs(offset), 9)
    axis = 2 - np.argmax(mag[:, ::-1], axis=1)  # largest |offset|, ties to z then y
    sign = np.where(offset[np.arange(roots.size), axis] < 0, -1, 1)
    return np.stack([axis[comp], sign[comp]], axis=1)


def rp_displacements(
    lattice: Lattice,
    occupations: np.ndarray,
    phase: np.ndarray,
    *,
    a_angstrom: float,
    gap_angstrom: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the RP-fault geometry of a snapshot (module docstring, rules 1-5).

    Parameters
    ----------
    lattice
        The NC lattice.
    occupations
        Species codes, shape ``(n_sites,)``.
    phase
        1 on RP sites, 0 elsewhere, shape ``(n_sites,)``.
    a_angstrom
        Lattice constant, Angstrom.
    gap_angstrom
        Distance between the two facing AX layers of a fault, Angstrom.

    Returns
    -------
    displacement
        Displacement of every grid site (and the atoms it owns), Angstrom, ``(n_sites, 3)``.
    fault_sites
        For each fault, the site on its far side along the axis (larger coordinate).
    fault_axis
        The stacking axis of each fault.
    """
    crystal = species.in_crystal(np.asarray(occupations))
    rp = (np.asarray(phase) != 0) & crystal
    disp = np.zeros((lattice.n_sites, 3))
    rp_sites = np.flatnonzero(rp)
    if rp_sites.size == 0:
        return disp, rp_sites, rp_sites
    stack = _stacking(lattice, rp_sites, crystal)
    dom = np.full(lattice.n_sites, -1, dtype=np.int64)
    dom[rp_sites] = atomistic._components(rp_sites, lattice.nn, lattice.n_sites)
    shape = lattice.shape
    far_sites, far_axes = [], []
    for k in range(3):
        for s in (-1, 1):
            mine = rp_sites[(stack[:, 0] == k) & (stack[:, 1] == s)]
            if mine.size == 0:
                continue
            # The outer neighbour along s e_k (nn order: +x, -x, +y, -y, +z, -z).
            outer = lattice.nn[mine, 2 * k + (0 if s > 0 else 1)].astype(np.int64)
            fault = dom[outer] == dom[mine]
            upper = outer[fault]  # first site beyond each fault
            faults = np.zeros(lattice.n_sites, dtype=np.int64)
            faults[upper] = 1
            grid = faults.reshape(shape)
            count = (
                np.cumsum(grid, axis=k)
                if s > 0
                else np.flip(np.cumsum(np.flip(grid, axis=k), axis=k), axis=k)
            )
            count = count.reshape(-1)
            lateral = np.ones(3)
            lateral[k] = 0.0
            disp += count[:, None] * (s * gap_angstrom * np.eye(3)[k])
            disp += (count % 2)[:, None] * (0.5 * a_angstrom * lateral)
            far_sites.append(upper if s > 0 else mine[fault])
            far_axes.append(np.full(upper.size, k, dtype=np.int64))
    return disp, np.concatenate(far_sites), np.concatenate(far_axes)


def frame_atoms(
    lattice: Lattice,
    occupations: np.ndarray,
    phase: np.ndarray | None = None,
    *,
    a_angstrom: float,
    gap_angstrom: float | None = None,
) -> Atoms:
    """Return the atomistic view of one snapshot, RP faults included (module docstring).

    The perovskite part is :func:`segsim.atomistic.to_atoms` (charge-balanced termination;
    V and O sites carry no formula unit); RP faults are applied on top.  The result is a
    non-periodic cluster (``pbc`` False) in the cell of the padded grid.

    Parameters
    ----------
    lattice
        The NC lattice.
    occupations
        Species codes, shape ``(n_sites,)``.
    phase
        1 on RP sites, shape ``(n_sites,)``; None means no RP.
    a_angstrom
        Lattice constant for the positions, Angstrom (normally the Vegard ``a(x)`` of the
        snapshot).
    gap_angstrom
        Fault gap, Angstrom; default :data:`segsim.atomistic.RP_GAP_ANGSTROM`.

    Returns
    -------
    ase.Atoms
        Atoms with per-atom arrays ``rp`` (0, 1, 2; see the module docstring, also the
        ``tags``), ``b_site`` and ``owner_site`` (as in :func:`segsim.atomistic.to_atoms`;
        ``b_site`` -1 for inserted atoms, whose ``owner_site`` is the site they move with).
    """
    from segsim.atomistic import RP_GAP_ANGSTROM

    gap = RP_GAP_ANGSTROM if gap_angstrom is None else float(gap_angstrom)
    atoms = atomistic.to_atoms(lattice, occupations, a_angstrom=a_angstrom)
    atoms.pbc = False
    owner = atoms.get_array("owner_site")
    rp_atom = np.zeros(len(atoms), dtype=np.int64)
    if phase is not None and np.any(phase):
        ph = np.asarray(phase)
        disp, far, axes = rp_displacements(
            lattice, occupations, ph, a_angstrom=a_angstrom, gap_angstrom=gap
        )
        rp_atom[(ph[owner] != 0) & species.in_crystal(np.asarray(occupations))[owner]] = RP_SITE
        base = lattice.coords[far].astype(np.float64) * a_angstrom
        half = 0.5 * a_angstrom
        e_k = np.eye(3)[axes]
        br = base - half * e_k + disp[far]
        cs = br + half * (1.0 - e_k)
        n_new = far.size
        atoms.positions = atoms.positions + disp[owner]
        extra = Atoms(
            numbers=np.concatenate([np.full(n_new, 35), np.full(n_new, 55)]),
            positions=np.concatenate([br, cs]),
        )
        extra.set_array("b_site", np.full(2 * n_new, -1, dtype=np.int64))
        extra.set_array("owner_site", np.concatenate([far, far]).astype(np.int64))
        atoms.extend(extra)
        rp_atom = np.concatenate([rp_atom, np.full(2 * n_new, RP_INSERTED, dtype=np.int64)])
    atoms.set_array("rp", rp_atom)
    atoms.set_tags(rp_atom)
    return atoms
