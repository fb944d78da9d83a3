"""The a-a-c+ Glazer tilt of the tilted reference start (segsim.training.tilt)."""

from __future__ import annotations

import numpy as np
import pytest

from segsim import species
from segsim.atomistic import to_atoms
from segsim.lattice import build_cube, build_periodic
from segsim.training import tilt
from segsim.training.structures import build_rp_fault

A = 5.87
R = A / 2  # B-Br distance of the ideal structures
ANTI, INPH = 8.0, 5.0  # different angles, so that the two tilts can be told apart


def _pure_nc(n: int = 3):
    lat = build_cube(n, A, 2)
    return lat, to_atoms(lat, lat.empty_occupations(), vacuum_angstrom=6)


def _b_grid(lat, atoms) -> dict[tuple[int, int, int], int]:
    """Grid coordinates (relative to the NC's lowest corner) -> B atom index."""
    b_site = atoms.get_array("b_site")
    idx = np.flatnonzero(b_site >= 0)
    coords = lat.coords[b_site[idx]].astype(int)
    coords -= coords.min(axis=0)
    return {tuple(c): int(i) for c, i in zip(coords.tolist(), idx.tolist(), strict=True)}


def _br_at(atoms, point: np.ndarray) -> int:
    d = np.linalg.norm(atoms.positions - point, axis=1)
    j = int(d.argmin())
    assert d[j] < 1e-6
    assert atoms[j].symbol == "Br"
    return j


def test_only_bonded_br_move_perpendicular_to_their_bond_by_the_glazer_amount():
    _lat, atoms = _pure_nc(3)
    disp = tilt.glazer_tilt_displacements(atoms, ANTI, INPH)
    symbols = np.asarray(atoms.get_chemical_symbols())
    assert np.all(disp[symbols != "Br"] == 0.0)  # B and Cs stay
    net = tilt.octahedral_network(atoms)
    assert net.x_atoms.size == int((symbols == "Br").sum())  # every Br of a pure NC is bonded
    assert net.n_bridges == 3 * 3 * 3 * 2  # n^2 (n - 1) per axis
    ta, tc = np.tan(np.radians(ANTI)), np.tan(np.radians(INPH))
    for x, bond, axis in zip(net.x_atoms, net.x_bond_angstrom, net.x_axis, strict=True):
        d = disp[x]
        assert abs(np.dot(d, bond)) < 1e-12  # perpendicular to the B-Br-B axis
        expected = R * (np.sqrt(2) * ta if axis == 2 else np.hypot(ta, tc))
        assert np.linalg.norm(d) == pytest.approx(expected, rel=1e-12)


def test_neighbouring_octahedra_rotate_in_the_a_minus_a_minus_c_plus_phase_relation():
    lat, atoms = _pure_nc(3)
    disp = tilt.glazer_tilt_displacements(atoms, ANTI, INPH)
    grid = _b_grid(lat, atoms)
    ex, ey = np.eye(3)[0], np.eye(3)[1]
    omega = {}
    for c, b in grid.items():
        if c[0] == 2 or c[1] == 2:
            continue  # needs its own +x and +y Br (corner NC sites have them only inside)
        p = atoms.positions[b]
        dx = disp[_br_at(atoms, p + R * ex)]  # d = r (t x e_x) = r (0, t_z, -t_y)
        dy = disp[_br_at(atoms, p + R * ey)]  # d = r (t x e_y) = r (-t_z, 0, t_x)
        t = np.array([dy[2], -dx[2], dx[1]]) / R
        assert dy[0] == pytest.approx(-dx[1], abs=1e-12)  # both Br see the same t_z
        omega[c] = np.degrees(np.arctan(t))
    # The octahedron at the NC's lowest corner rotates by (+phi_a, +phi_a, +phi_c).
    assert omega[(0, 0, 0)] == pytest.approx([ANTI, ANTI, INPH], abs=1e-9)
    for (i, j, k), w in omega.items():
        for step, flip in (
            ((1, 0, 0), (-1, -1, -1)),  # along x: antiphase a-, and in-plane for c
            ((0, 1, 0), (-1, -1, -1)),
            ((0, 0, 1), (-1, -1, +1)),  # along z: a- antiphase, c+ in phase
        ):
            nb = (i + step[0], j + step[1], k + step[2])
            if nb in omega:
                assert omega[nb] == pytest.approx(np.asarray(flip) * w, abs=1e-9)


def test_a_shared_br_gets_the_same_displacement_from_both_octahedra():
    _lat, atoms = _pure_nc(3)
    net = tilt.octahedral_network(atoms)
    t = tilt.tilt_vectors(net.parity, ANTI, INPH)
    where = {int(b): i for i, b in enumerate(net.b_atoms)}
    n_checked = 0
    for x in net.x_atoms:
        d = atoms.positions[net.b_atoms] - atoms.positions[x]
        near = np.flatnonzero(np.linalg.norm(d, axis=1) < R + 1e-6)
        if near.size == 2:
            b1, b2 = (int(net.b_atoms[i]) for i in near)
            u1 = atoms.positions[x] - atoms.positions[b1]
            u2 = atoms.positions[x] - atoms.positions[b2]
            np.testing.assert_allclose(
                np.cross(t[where[b1]], u1), np.cross(t[where[b2]], u2), atol=1e-12
            )
            n_checked += 1
    assert n_checked == net.n_bridges


def test_measure_recovers_the_imposed_angles_and_apply_moves_in_place():
    _, atoms = _pure_nc(4)
    tilted = atoms.copy()
    tilt.apply_glazer_tilt(tilted, ANTI, INPH)
    got = tilt.measure_tilt_degrees(tilted, atoms)
    assert got["antiphase_degrees"] == pytest.approx(ANTI, abs=1e-9)
    assert got["inphase_degrees"] == pytest.approx(INPH, abs=1e-9)
    assert got["antiphase_std_degrees"] < 1e-9
    assert tilt.measure_tilt_degrees(atoms, atoms)["antiphase_degrees"] == 0.0
    tilt.apply_glazer_tilt(tilted := atoms.copy(), 10.0, 10.0)
    with pytest.raises(ValueError, match="untilted structure"):
        tilt.apply_glazer_tilt(tilted, 1.0, 1.0)  # already tilted: bonds 14 degrees off-axis


def test_periodic_cells_need_an_even_number_of_octahedra_per_axis():
    lat2 = build_periodic(2, A)
    cell = to_atoms(lat2, lat2.empty_occupations())
    tilted = cell.copy()
    tilt.apply_glazer_tilt(tilted, ANTI, INPH)
    got = tilt.measure_tilt_degrees(tilted, cell)
    assert (got["antiphase_degrees"], got["inphase_degrees"]) == pytest.approx((ANTI, INPH))
    assert got["n_bridges"] == 24  # every Br bridges two octahedra
    lat3 = build_periodic(3, A)
    with pytest.raises(ValueError, match="even number of octahedra"):
        tilt.glazer_tilt_displacements(to_atoms(lat3, lat3.empty_occupations()), ANTI, INPH)


def test_each_block_of_an_rp_fault_and_a_vacancy_nc_get_the_pattern():
    lat = build_cube(4, A, 3)
    occ = lat.empty_occupations()
    fault = build_rp_fault(lat, occ, 2)
    net = tilt.octahedral_network(fault)
    assert np.unique(net.block).size == 2  # no corner sharing across the fault
    tilted = fault.copy()
    tilt.apply_glazer_tilt(tilted, ANTI, INPH)
    got = tilt.measure_tilt_degrees(tilted, fault)
    assert (got["antiphase_degrees"], got["inphase_degrees"]) == pytest.approx((ANTI, INPH))
    # A vacancy: its Br with one B neighbour left move with that octahedron.
    vac = occ.copy()
    vac[np.flatnonzero(lat.depth == 1)[0]] = species.VAC
    atoms = to_atoms(lat, vac, vacuum_angstrom=6)
    disp = tilt.glazer_tilt_displacements(atoms, ANTI, INPH)
    is_br = np.asarray(atoms.get_chemical_symbols()) == "Br"
    assert np.all(np.linalg.norm(disp[is_br], axis=1) > 0.1)


def test_angles_outside_the_range_are_rejected():
    _, atoms = _pure_nc(2)
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        tilt.glazer_tilt_displacements(atoms, 31.0, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        tilt.glazer_tilt_displacements(atoms, 0.0, -1.0)


def test_train_input_passes_the_start_to_the_relaxation(tmp_path):
    from pathlib import Path

    import yaml

    from segsim.config import ConfigError, load_train

    root = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((root / "inputs" / "train.yaml").read_text())
    assert doc["calculator"]["start"] in ("ideal", "tilted")
    doc["calculator"].update(start="tilted", tilt_inphase_degrees=7.5)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    c = load_train(path).calculator
    assert (c.start, c.tilt_antiphase_degrees, c.tilt_inphase_degrees) == ("tilted", None, 7.5)
    doc["calculator"]["start"] = "twisted"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"calculator\.start: must be one of"):
        load_train(path)
