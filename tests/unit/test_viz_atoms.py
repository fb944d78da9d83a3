"""The atomistic view for pictures (segsim.viz.atoms): perovskite plus RP-fault geometry."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from segsim import atomistic, species
from segsim.atomistic import RP_GAP_ANGSTROM
from segsim.lattice import build_cube
from segsim.training.structures import build_rp_fault
from segsim.viz.atoms import RP_INSERTED, RP_SITE, frame_atoms

A = 5.87


def _slab(lat, axis, sign, thickness):
    """RP phase on the outer ``thickness`` planes of one face."""
    c = lat.coords[:, axis]
    lo, hi = lat.pad, lat.pad + lat.n_edge - 1
    sel = c > hi - thickness if sign > 0 else c < lo + thickness
    return (lat.in_nc & sel).astype(np.uint8)


def test_without_rp_it_is_the_perovskite_view(rng):
    lat = build_cube(5, A, 2)
    occ = lat.empty_occupations()
    nc = np.flatnonzero(lat.in_nc)
    occ[rng.choice(nc, 30, replace=False)] = species.CD
    occ[nc[[7, 60]]] = species.VAC
    ref = atomistic.to_atoms(lat, occ, a_angstrom=5.8)
    for phase in (None, np.zeros(lat.n_sites, np.uint8)):
        atoms = frame_atoms(lat, occ, phase, a_angstrom=5.8)
        np.testing.assert_array_equal(atoms.numbers, ref.numbers)
        np.testing.assert_allclose(atoms.positions, ref.positions)
        assert not atoms.get_array("rp").any()
        assert not atoms.pbc.any()


@pytest.mark.parametrize(("axis", "sign"), [(2, 1), (2, -1), (0, 1), (1, -1)])
@pytest.mark.parametrize("thickness", [2, 3])
def test_rp_slab_geometry(axis, sign, thickness):
    n = 5
    lat = build_cube(n, A, 2)
    occ = lat.empty_occupations()
    occ[np.flatnonzero(lat.in_nc)[::4]] = species.CD
    phase = _slab(lat, axis, sign, thickness)
    plain = atomistic.to_atoms(lat, occ)
    atoms = frame_atoms(lat, occ, phase, a_angstrom=A)
    n_faults = (thickness - 1) * n * n
    counts, ref = atomistic.formula_counts(atoms), atomistic.formula_counts(plain)
    assert counts["Pb"] == ref["Pb"]
    assert counts["Cd"] == ref["Cd"]
    assert counts["Cs"] == ref["Cs"] + n_faults
    assert counts["Br"] == ref["Br"] + n_faults
    assert atomistic.charge(atoms) == 0
    rp = atoms.get_array("rp")
    np.testing.assert_array_equal(atoms.get_tags(), rp)
    assert int((rp == RP_INSERTED).sum()) == 2 * n_faults
    b = atoms.get_array("b_site")
    assert int(((b >= 0) & (rp == RP_SITE)).sum()) == int(phase.sum())
    # No two atoms closer than in the perovskite (Pb-Br = a/2 = 2.9 A).
    i, _ = neighbor_list("ij", atoms, 0.45 * A)
    assert i.size == 0
    # Blocks: the outermost RP plane moved outwards by (thickness - 1) gaps.
    outer = lat.pad + n - 1 if sign > 0 else lat.pad
    site = np.flatnonzero(lat.in_nc & (lat.coords[:, axis] == outer))[0]
    k = int(np.flatnonzero(b == site)[0])
    shift = atoms.positions[k] - lat.coords[site] * A
    assert shift[axis] == pytest.approx(sign * (thickness - 1) * RP_GAP_ANGSTROM)
    lateral = [d for d in range(3) if d != axis]
    assert shift[lateral] == pytest.approx(((thickness - 1) % 2) * A / 2 * np.ones(2))


def test_two_plane_region_is_the_training_fault():
    """Two RP planes around level k give the fault of build_rp_fault (same B positions)."""
    n, level = 4, 2
    lat = build_cube(n, A, 2)
    occ = lat.empty_occupations()
    z = lat.coords[:, 2] - lat.pad
    phase = (lat.in_nc & ((z == level - 1) | (z == level))).astype(np.uint8)
    ours = frame_atoms(lat, occ, phase, a_angstrom=A)
    ref = build_rp_fault(lat, occ, level, vacuum_angstrom=8.0)
    b_ours, b_ref = ours.get_array("b_site"), ref.get_array("b_site")
    sel = b_ref >= 0
    order = np.argsort(b_ours[b_ours >= 0])
    p_ours = ours.positions[b_ours >= 0][order]
    p_ref = ref.positions[sel][np.argsort(b_ref[sel])]
    # build_rp_fault recentres its cluster: compare relative positions.
    np.testing.assert_allclose(p_ours - p_ours[0], p_ref - p_ref[0], atol=1e-9)
    assert len(ours) == len(ref)
