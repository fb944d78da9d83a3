"""Tests of the atomistic view (segsim.atomistic): counts, charge balance, geometry."""

import time

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from segsim import atomistic, species
from segsim.lattice import build_cube, random_occupations

A = 5.87


def _cube(n: int, pad: int = 1):
    lat = build_cube(n, A, pad)
    return lat, lat.empty_occupations()


def _symbol_counts(atoms):
    c = atomistic.formula_counts(atoms)
    return c["Cs"], c["Pb"] + c["Cd"], c["Br"]


@pytest.mark.parametrize("n", range(1, 7))
def test_full_cube_counts(n):
    lat, occ = _cube(n)
    atoms = atomistic.to_atoms(lat, occ)
    assert _symbol_counts(atoms) == (n**3 + 3 * n**2, n**3, 3 * n**3 + 3 * n**2)
    assert atomistic.charge(atoms) == 0
    assert atomistic.terminate(lat, occ).charge == 0


@pytest.mark.parametrize("n", range(1, 9))
def test_cube_removes_corners_then_edges(n):
    pad = 2
    lat, occ = _cube(n, pad)
    term = atomistic.terminate(lat, occ)
    removed = np.flatnonzero(term.cs_removed)
    assert removed.size == 3 * n + 1
    # Every surface A site of the (n+1)^3 grid touches an octahedron; nothing beyond it does.
    assert int((term.a_coordination > 0).sum()) == (n + 1) ** 3
    coord = term.a_coordination[removed]
    if n <= 2:
        assert np.all(coord == 1)
        return
    n_corner = int((term.a_coordination == 1).sum())
    assert n_corner == 8
    assert int((coord == 1).sum()) == 8  # all corners
    assert int((coord == 2).sum()) == 3 * n - 7  # the rest on edges
    # Spread over the 12 edges: counts differ by at most one; evenly spaced and centred.
    g = lat.coords[removed[coord == 2]] - (pad - 1)  # A-grid coordinates 0..n
    per_edge: dict[tuple, list[int]] = {}
    for p in g:
        on_face = (p == 0) | (p == n)
        assert on_face.sum() == 2
        axis = int(np.flatnonzero(~on_face)[0])
        key = (axis, *(int(p[k]) for k in range(3) if k != axis))
        per_edge.setdefault(key, []).append(int(p[axis]))
    q, r = divmod(3 * n - 7, 12)
    counts = sorted([len(v) for v in per_edge.values()] + [0] * (12 - len(per_edge)))
    assert counts == [q] * (12 - r) + [q + 1] * r
    m = n - 1
    for positions in per_edge.values():
        k = len(positions)
        expected = [((2 * j + 1) * m) // (2 * k) + 1 for j in range(k)]
        assert sorted(positions) == expected


def test_n2_and_n1_corner_choice():
    lat, occ = _cube(1, 1)
    term = atomistic.terminate(lat, occ)
    kept = lat.coords[term.cs] - lat.coords[lat.in_nc][0]
    assert np.all(kept[:, 2] == -1)  # n = 1: the four Cs on the -z side are kept
    lat, occ = _cube(2, 1)
    term = atomistic.terminate(lat, occ)
    corners = np.flatnonzero(term.a_coordination == 1)
    assert corners.size == 8
    assert int(term.cs[corners].sum()) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pb_cd(seed):
    lat = build_cube(5, A, 1)
    occ = random_occupations(lat, 0.25, np.random.default_rng(seed))
    atoms = atomistic.to_atoms(lat, occ)
    counts = atomistic.formula_counts(atoms)
    assert counts["Cd"] == int((occ == species.CD).sum())
    assert counts["Pb"] == int((occ == species.PB).sum())
    assert atomistic.charge(atoms) == 0
    # Same termination as the pure cube: only the B species differ.
    pure = atomistic.to_atoms(lat, lat.empty_occupations())
    np.testing.assert_array_equal(atoms.positions, pure.positions)


def test_internal_vacancies_are_neutral():
    n = 6
    lat, occ = _cube(n)
    pristine = atomistic.terminate(lat, occ)
    rng = np.random.default_rng(3)
    occ = random_occupations(lat, 0.2, rng)
    interior = np.flatnonzero(lat.depth >= 1)
    # An isolated vacancy, a z-pair and a 2x2x2 block inside the cube.
    c0 = lat.coords[interior].min(axis=0)
    block = lat.site_index(*(c0[:, None] + np.indices((2, 2, 2)).reshape(3, -1)))
    pair = lat.site_index(c0[0] + np.array([3, 3]), c0[1] + np.array([3, 3]), c0[2] + [0, 1])
    lone = lat.site_index(c0[0] + np.array([3]), c0[1] + np.array([0]), c0[2] + np.array([3]))
    vac = np.concatenate([block, pair, lone])
    occ[vac] = species.VAC
    term = atomistic.terminate(lat, occ)
    atoms = atomistic.to_atoms(lat, occ)
    cs, b, br = _symbol_counts(atoms)
    assert atomistic.charge(atoms) == 0
    assert b == n**3 - vac.size
    assert br == 3 * n**3 + 3 * n**2 - 2 * vac.size
    np.testing.assert_array_equal(term.cs, pristine.cs)  # vacancies do not move the Cs
    assert cs == n**3 + 3 * n**2
    assert atomistic.formula_counts(atoms)["Cd"] == int((occ == species.CD).sum())
    # The isolated vacancy loses its z pair and keeps the x and y Br.
    i = int(lone[0])
    assert not term.br[i, 2]
    assert not term.br[lat.nn[i, 5], 2]
    assert term.br[i, 0]
    assert term.br[lat.nn[i, 1], 0]
    assert term.br[i, 1]
    assert term.br[lat.nn[i, 3], 1]
    # In the z pair, the second vacancy falls back to its y pair.
    lo, hi = int(pair[0]), int(pair[1])
    assert not term.br[lo, 2]
    assert not term.br[lat.nn[lo, 5], 2]
    assert term.br[hi, 2]
    assert not term.br[hi, 1]
    assert not term.br[lat.nn[hi, 3], 1]


def test_all_vacancy_cube_keeps_cube_termination():
    n = 4
    lat, occ = _cube(n)
    pristine = atomistic.terminate(lat, occ)
    occ[lat.in_nc] = species.VAC
    term = atomistic.terminate(lat, occ)
    assert term.charge == 0
    assert int(term.b_atom.sum()) == 0
    assert int(term.br.sum()) == n**3 + 3 * n**2  # every V lost two Br (fallbacks included)
    np.testing.assert_array_equal(term.cs, pristine.cs)


def test_surface_sites_outside():
    n = 5
    lat = build_cube(n, A, 1)
    occ = random_occupations(lat, 0.25, np.random.default_rng(7))
    surface = np.flatnonzero(lat.depth == 0)
    corner = surface[lat.n_outside_nn[surface] == 3][0]
    faces = surface[lat.n_outside_nn[surface] == 1][[0, 5, 11]]
    occ[[corner, *faces]] = species.OUT
    occ[np.flatnonzero(lat.depth == 2)[0]] = species.VAC
    term = atomistic.terminate(lat, occ)
    atoms = atomistic.to_atoms(lat, occ)
    assert atomistic.charge(atoms) == 0
    assert atomistic.formula_counts(atoms)["Cd"] == int((occ == species.CD).sum())
    # Every Cs touches a present octahedron; Pb/Cd octahedra away from the vacancy are complete.
    assert np.all(term.a_coordination[term.cs] >= 1)
    i, j = neighbor_list("ij", atoms, 0.55 * A)
    sym = np.asarray(atoms.get_chemical_symbols())
    is_b = np.isin(sym, ["Pb", "Cd"])
    n_br = np.bincount(i[is_b[i] & (sym[j] == "Br")], minlength=len(atoms))
    near_vac = (occ[lat.nn] == species.VAC).any(axis=1)[atoms.arrays["b_site"][is_b]]
    assert np.all(n_br[is_b][~near_vac] == 6)
    assert np.all(n_br[is_b][near_vac] >= 5)


@pytest.mark.parametrize("seed", range(6))
def test_rough_states_are_neutral(seed):
    lat = build_cube(5, A, 1)
    rng = np.random.default_rng(seed)
    occ = random_occupations(lat, 0.3, rng)
    nc = np.flatnonzero(lat.in_nc)
    u = rng.random(nc.size)
    occ[nc[u < 0.25]] = species.OUT
    occ[nc[(u >= 0.25) & (u < 0.4)]] = species.VAC
    term = atomistic.terminate(lat, occ)
    atoms = atomistic.to_atoms(lat, occ)
    assert term.charge == 0
    assert atomistic.charge(atoms) == 0
    assert atomistic.formula_counts(atoms)["Cd"] == int((occ == species.CD).sum())
    assert not neighbor_list("i", atoms, 0.4 * A).size


def test_br_rich_porous_state_removes_br():
    # Isolated octahedra (rock-salt pattern): more Br than Cs can balance.
    lat, occ = _cube(4)
    c = lat.coords
    occ[lat.in_nc & (c.sum(axis=1) % 2 == 1)] = species.OUT
    term = atomistic.terminate(lat, occ)
    assert term.charge == 0
    assert not term.cs_removed.any()
    assert int(term.br.sum()) < 6 * int(term.b_atom.sum())


def test_min_distance_and_positions():
    lat = build_cube(4, A, 2)
    occ = random_occupations(lat, 0.25, np.random.default_rng(0))
    occ[np.flatnonzero(lat.depth == 1)[:3]] = species.VAC
    atoms = atomistic.to_atoms(lat, occ)
    assert not neighbor_list("i", atoms, 0.4 * A).size
    d = neighbor_list("d", atoms, 0.6 * A)
    np.testing.assert_allclose(d.min(), 0.5 * A)
    b_site = atoms.arrays["b_site"]
    is_b = b_site >= 0
    np.testing.assert_array_equal(atoms.positions[is_b], lat.positions_angstrom[b_site[is_b]])
    np.testing.assert_array_equal(np.sort(b_site[is_b]), np.flatnonzero(occ <= species.CD))
    sym = np.asarray(atoms.get_chemical_symbols())
    assert np.all(np.isin(sym[is_b], ["Pb", "Cd"]))
    assert not np.isin(sym[~is_b], ["Pb", "Cd"]).any()
    np.testing.assert_array_equal(sym[is_b] == "Cd", occ[b_site[is_b]] == species.CD)
    # owner_site + offset reproduces every position.
    owner = atoms.arrays["owner_site"]
    offset = atoms.positions - lat.positions_angstrom[owner]
    half = 0.5 * A
    np.testing.assert_allclose(offset[is_b], 0.0)
    np.testing.assert_allclose(offset[sym == "Cs"], half)
    np.testing.assert_allclose(
        np.sort(offset[sym == "Br"], axis=1), [[0, 0, half]] * int((sym == "Br").sum())
    )


def test_cell_pbc_and_vacuum():
    lat = build_cube(3, A, 2)
    occ = random_occupations(lat, 0.25, np.random.default_rng(1))
    atoms = atomistic.to_atoms(lat, occ)
    assert atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell[:], lat.cell_angstrom)
    np.testing.assert_array_less(-1e-12, atoms.get_scaled_positions(wrap=False))
    np.testing.assert_array_less(atoms.get_scaled_positions(wrap=False), 1.0)
    cluster = atomistic.to_atoms(lat, occ, vacuum_angstrom=8.0)
    assert not cluster.pbc.any()
    extent = np.ptp(cluster.positions, axis=0)
    np.testing.assert_allclose(cluster.cell.lengths(), extent + 16.0)
    np.testing.assert_allclose(cluster.positions.min(axis=0), 8.0)
    np.testing.assert_allclose(
        cluster.positions - cluster.positions[0], atoms.positions - atoms.positions[0]
    )
    np.testing.assert_array_equal(cluster.arrays["b_site"], atoms.arrays["b_site"])
    scaled = atomistic.to_atoms(lat, occ, a_angstrom=6.0)
    np.testing.assert_allclose(scaled.positions, atoms.positions * 6.0 / A)
    np.testing.assert_allclose(scaled.cell[:], lat.cell_angstrom * 6.0 / A)


def test_determinism():
    lat = build_cube(5, A, 1)
    occ = random_occupations(lat, 0.2, np.random.default_rng(5))
    occ[np.flatnonzero(lat.depth == 0)[::7]] = species.OUT
    occ[np.flatnonzero(lat.depth == 1)[::5]] = species.VAC
    a1 = atomistic.to_atoms(lat, occ)
    a2 = atomistic.to_atoms(lat, occ.copy())
    np.testing.assert_array_equal(a1.numbers, a2.numbers)
    np.testing.assert_array_equal(a1.positions, a2.positions)
    np.testing.assert_array_equal(a1.arrays["owner_site"], a2.arrays["owner_site"])


def test_invalid_input():
    lat, occ = _cube(2)
    with pytest.raises(ValueError, match="shape"):
        atomistic.to_atoms(lat, occ[:-1])
    bad = occ.copy()
    bad[0] = 7
    with pytest.raises(ValueError, match="codes"):
        atomistic.to_atoms(lat, bad)
    edge = occ.copy()
    edge[0] = species.PB  # grid site (0, 0, 0): a cluster would straddle the boundary
    assert atomistic.charge(atomistic.to_atoms(lat, edge)) == 0
    with pytest.raises(ValueError, match="boundary"):
        atomistic.to_atoms(lat, edge, vacuum_angstrom=5.0)
    with pytest.raises(ValueError, match="positive"):
        atomistic.to_atoms(lat, occ, a_angstrom=-1.0)


def test_large_nc_is_fast():
    lat = build_cube(20, A, 3)
    occ = random_occupations(lat, 0.25, np.random.default_rng(0))
    occ[np.flatnonzero(lat.depth >= 1)[::50]] = species.VAC
    atomistic.to_atoms(lat, occ)  # warm-up
    t0 = time.perf_counter()
    atoms = atomistic.to_atoms(lat, occ)
    elapsed = time.perf_counter() - t0
    assert len(atoms) > 40000
    assert atomistic.charge(atoms) == 0
    assert elapsed < 1.0


def _orphans(lat, term):
    """Br slots present with no B atom at either end (slot (i, k) joins i and nn[i, 2k])."""
    ends = term.b_atom[:, None] | term.b_atom[lat.nn[:, 0::2]]
    return np.argwhere(term.br & ~ends)


def _site(lat, x, y, z):
    return int(lat.site_index(np.array([x]), np.array([y]), np.array([z]))[0])


def test_face_vacancy_loses_its_face_normal_pair():
    n, pad = 5, 1
    lat, occ = _cube(n, pad)
    c = pad + n // 2
    i = _site(lat, pad + n - 1, c, c)  # centre of the +x face
    occ[i] = species.VAC
    term = atomistic.terminate(lat, occ)
    assert term.charge == 0
    assert not term.br[i, 0]  # the outer Br (held by no B atom any more)
    assert not term.br[lat.nn[i, 1], 0]  # and its trans partner
    assert term.br[i, 1]
    assert term.br[i, 2]
    assert _orphans(lat, term).size == 0


@pytest.mark.parametrize(
    ("pair", "axis"),
    [(((0, 0, 0), (1, 0, 0)), "x on the -z face"), (((0, 0, 2), (0, 1, 2)), "y, interior")],
)
def test_vacancy_pairs_leave_no_orphan_bromide(pair, axis):
    n, pad = 5, 1
    lat, occ = _cube(n, pad)
    c = pad + n // 2
    sites = [_site(lat, c + dx, c + dy, pad + dz) for dx, dy, dz in pair]
    occ[sites] = species.VAC
    term = atomistic.terminate(lat, occ)
    full = atomistic.terminate(lat, lat.empty_occupations())
    assert term.charge == 0, axis
    assert int(full.br.sum()) - int(term.br.sum()) == 4, axis
    assert _orphans(lat, term).size == 0, axis


def test_random_vacancies_leave_orphans_only_where_no_vacancy_can_take_them():
    n, pad = 6, 1
    lat, occ = _cube(n, pad)
    rng = np.random.default_rng(11)
    in_nc = np.flatnonzero(lat.in_nc)
    occ[rng.choice(in_nc, size=30, replace=False)] = species.VAC
    term = atomistic.terminate(lat, occ)
    assert term.charge == 0
    full = atomistic.terminate(lat, lat.empty_occupations())
    n_vac = int((occ == species.VAC).sum())
    assert int(full.br.sum()) - int(term.br.sum()) == 2 * n_vac
    # A remaining orphan touches only vacancies that already gave two orphans away.
    for i, k in _orphans(lat, term):
        for site in (i, lat.nn[i, 2 * k]):
            if occ[site] != species.VAC:
                continue
            own = [(site, kk) for kk in range(3)] + [
                (lat.nn[site, 2 * kk + 1], kk) for kk in range(3)
            ]
            gone = [
                s for s in own if full.br[s] and not term.br[s]
                and not (term.b_atom[s[0]] or term.b_atom[lat.nn[s[0], 2 * s[1]]])
            ]  # fmt: skip
            assert len(gone) >= 2, (site, i, k)


def test_recession_gains_two_minus_k_csbr_units_and_expulsion_removes_mbr2():
    """The composition bookkeeping behind the KMC's grand-canonical recession rule.

    V -> O of a site with k outside neighbours gains 2 - k CsBr units (face +1, edge 0,
    corner -1, ...), on flat and rough surfaces alike; M -> V always removes one MBr2.
    """
    lat = build_cube(5, A, 3)
    rng = np.random.default_rng(1)
    surface = np.flatnonzero(lat.in_nc & (lat.n_outside_nn > 0))
    seen = set()
    for trial in range(4):
        occ = lat.empty_occupations()
        if trial:  # rough: some surface sites already receded
            occ[rng.choice(surface, 10, replace=False)] = species.OUT
        occ[rng.choice(np.flatnonzero(occ == species.PB), 6, replace=False)] = species.CD
        before = atomistic.formula_counts(atomistic.to_atoms(lat, occ))
        exposed = [s for s in np.flatnonzero(occ <= species.CD)
                   if any(occ[j] == species.OUT for j in lat.nn[s])]  # fmt: skip
        for s in rng.choice(exposed, 6, replace=False):
            k = int(sum(occ[j] == species.OUT for j in lat.nn[s]))
            metal = "Cd" if occ[s] == species.CD else "Pb"
            vac = occ.copy()
            vac[s] = species.VAC
            out = occ.copy()
            out[s] = species.OUT
            c_vac = atomistic.formula_counts(atomistic.to_atoms(lat, vac))
            c_out = atomistic.formula_counts(atomistic.to_atoms(lat, out))
            assert c_vac[metal] == before[metal] - 1
            assert c_vac["Br"] == before["Br"] - 2
            assert c_vac["Cs"] == before["Cs"]
            assert c_out["Cs"] - c_vac["Cs"] == 2 - k
            assert c_out["Br"] - c_vac["Br"] == 2 - k
            seen.add(k)
    assert {1, 2, 3} <= seen


# --- XPS-like surface shell -----------------------------------------------------------------


def _damaged_cube(n: int = 4, seed: int = 3) -> tuple:
    """A small NC with Cd, vacancies and receded sites (pits), for the shell tests."""
    lat = build_cube(n, 5.87, 3)
    rng = np.random.default_rng(seed)
    occ = lat.empty_occupations()
    inside = np.flatnonzero(lat.in_nc)
    occ[rng.choice(inside, n**3 // 4, replace=False)] = species.CD
    surf = inside[lat.depth[inside] == 0]
    picks = rng.choice(surf, 6, replace=False)
    occ[picks[:3]] = species.OUT
    occ[picks[3:]] = species.VAC
    return lat, occ


def test_depth_below_surface_agrees_with_every_outside_site_by_hand():
    from tests.reference.naive import naive_distance_to_outside

    lat, occ = _damaged_cube()
    atoms = atomistic.to_atoms(lat, occ)
    got = atomistic.depth_below_surface_angstrom(lat, occ, atoms)
    is_out = (occ == species.OUT).reshape(lat.shape)
    ref = (naive_distance_to_outside(atoms.positions / lat.a_angstrom, is_out) - 0.5) * 5.87
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    # the pits are outside: atoms next to a receded site are at the surface
    assert (
        np.count_nonzero(got <= 1e-9)
        > np.count_nonzero(
            atomistic.depth_below_surface_angstrom(lat, lat.empty_occupations()) <= 1e-9
        )
        - 1
    )


def test_depth_below_surface_puts_the_termination_layer_at_zero():
    lat = build_cube(4, 5.87, 3)
    occ = lat.empty_occupations()
    atoms = atomistic.to_atoms(lat, occ)
    depth = atomistic.depth_below_surface_angstrom(lat, occ, atoms)
    a = lat.a_angstrom
    b = atoms.arrays["b_site"] >= 0
    # surface B atoms half a lattice constant deep, the centre ones 2 a (n = 4: layers 0, 1)
    np.testing.assert_allclose(np.unique(np.round(depth[b] / a, 9)), [0.5, 1.5], rtol=0, atol=1e-9)
    assert depth.min() == pytest.approx(0.0)  # apical Br of the surface octahedra
    assert np.all(depth >= 0)


def test_surface_cation_ratio_of_a_cube_and_of_a_damaged_nc():
    n = 6
    lat = build_cube(n, 5.87, 3)
    occ = lat.empty_occupations()
    # a shell deeper than the NC: the whole crystal, n^3 + 3 n^2 Cs on n^3 B
    whole = atomistic.surface_cation_ratio(lat, occ, shell_angstrom=100.0)
    assert whole == pytest.approx((n**3 + 3 * n**2) / n**3)
    # a 3 Angstrom shell holds the surface B layer (depth a / 2) and the outer Cs layer
    # (depth (sqrt(3) - 1) a / 2), not the next Cs layer (about 1.16 a): the surface A sites
    # less the 3 n + 1 Cs of the charge balance, on the surface B sites
    outer = atomistic.surface_cation_ratio(lat, occ, shell_angstrom=3.0)
    n_cs = (n + 1) ** 3 - (n - 1) ** 3 - (3 * n + 1)
    assert outer == pytest.approx(n_cs / (n**3 - (n - 2) ** 3))
    # Cd leaving a surface site as a vacancy keeps its Cs: the ratio rises
    surf = np.flatnonzero(lat.in_nc & (lat.depth == 0))
    occ2 = occ.copy()
    occ2[surf[:5]] = species.VAC
    assert atomistic.surface_cation_ratio(lat, occ2, shell_angstrom=3.0) > outer
    with pytest.raises(ValueError, match="shell_angstrom"):
        atomistic.surface_cation_ratio(lat, occ, shell_angstrom=0.0)
