"""Geometry of the padded NC grid: sizes, surface classes, depth layers, neighbour tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segsim import species
from segsim.lattice import (
    CORNER,
    EDGE,
    FACE,
    INTERIOR,
    NN_DISPLACEMENTS,
    build_cube,
    depth_from_occupations,
    n_edge_from_nm,
    outside_neighbor_counts,
    random_occupations,
)

A = 5.87


# ---------------------------------------------------------------------- n_edge_from_nm
@pytest.mark.parametrize(
    ("edge_nm", "a", "expected"),
    [
        (10.0, 5.87, 17),  # 100 / 5.87 = 17.04
        (5.0, 5.87, 9),  # 8.52
        (4.4, 5.87, 7),  # 7.4957
        (4.41, 5.87, 8),  # 7.513
        (0.587, 5.87, 1),
        (0.1, 5.87, 1),  # rounds to 0, clamped to 1
        (3.0, 6.0, 5),
    ],
)
def test_n_edge_from_nm(edge_nm, a, expected):
    assert n_edge_from_nm(edge_nm, a) == expected


@pytest.mark.parametrize(
    ("edge_nm", "a"), [(0.0, 5.87), (-1.0, 5.87), (5.0, 0.0), (5.0, -2.0), (float("nan"), 5.87)]
)
def test_n_edge_from_nm_rejects_nonpositive(edge_nm, a):
    with pytest.raises(ValueError, match="positive"):
        n_edge_from_nm(edge_nm, a)


# ---------------------------------------------------------------------- build_cube
@pytest.mark.parametrize(("n", "pad"), [(1, 1), (2, 1), (3, 2), (4, 1), (5, 3), (6, 2), (7, 1)])
def test_build_cube_shape_and_nc_sites(n, pad):
    lat = build_cube(n, A, pad)
    size = n + 2 * pad
    assert lat.shape == (size, size, size)
    assert lat.n_sites == size**3
    assert lat.n_nc_sites == n**3
    assert int(lat.in_nc.sum()) == n**3
    # NC sites are exactly the coordinates in [pad, pad + n - 1] on every axis.
    inside = np.all((lat.coords >= pad) & (lat.coords < pad + n), axis=1)
    np.testing.assert_array_equal(lat.in_nc, inside)
    # C-order indexing: site = (ix * L + iy) * L + iz.
    c = lat.coords.astype(np.int64)
    np.testing.assert_array_equal(
        (c[:, 0] * size + c[:, 1]) * size + c[:, 2], np.arange(lat.n_sites)
    )
    np.testing.assert_allclose(lat.positions_angstrom, c * A)
    np.testing.assert_allclose(lat.cell_angstrom, np.eye(3) * size * A)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9])
def test_build_cube_surface_classes(n):
    lat = build_cube(n, A, 2)
    cls = lat.n_outside_nn
    counts = {
        name: int(np.sum(cls == code))
        for name, code in [
            ("interior", INTERIOR),
            ("face", FACE),
            ("edge", EDGE),
            ("corner", CORNER),
        ]
    }
    assert counts == {
        "corner": 8,
        "edge": 12 * (n - 2),
        "face": 6 * (n - 2) ** 2,
        "interior": (n - 2) ** 3,
    }
    assert np.all(cls[~lat.in_nc] == -1)
    assert np.all(cls[lat.in_nc] >= 0)


def test_build_cube_single_site():
    lat = build_cube(1, A, 1)
    assert lat.n_outside_nn[lat.in_nc].tolist() == [6]
    assert lat.depth[lat.in_nc].tolist() == [0]
    assert lat.n_layers == 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 10])
def test_build_cube_depth_layers(n):
    lat = build_cube(n, A, 1)
    assert lat.n_layers == (n + 1) // 2
    assert np.all(lat.depth[~lat.in_nc] == -1)
    depths = lat.depth[lat.in_nc]
    assert depths.min() == 0
    assert depths.max() == lat.n_layers - 1
    for d in range(lat.n_layers):
        outer = n - 2 * d
        inner = max(outer - 2, 0)
        assert int(np.sum(depths == d)) == outer**3 - inner**3, d
    # Surface shell = sites with an outside neighbour.
    np.testing.assert_array_equal(lat.depth[lat.in_nc] == 0, lat.n_outside_nn[lat.in_nc] > 0)


def test_build_cube_depth_is_chebyshev_distance_to_boundary():
    n, pad = 6, 2
    lat = build_cube(n, A, pad)
    for s in np.flatnonzero(lat.in_nc):
        x = lat.coords[s] - pad
        assert lat.depth[s] == min(x.min(), (n - 1 - x).min())


@pytest.mark.parametrize(("n", "pad"), [(1, 1), (3, 1), (4, 2), (5, 3)])
def test_neighbor_table_symmetry_and_wrapping(n, pad):
    lat = build_cube(n, A, pad)
    nn = lat.nn
    size = lat.shape[0]
    assert nn.shape == (lat.n_sites, 6)
    sites = np.arange(lat.n_sites)
    for d, opposite in [(0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4)]:
        np.testing.assert_array_equal(nn[nn[:, d], opposite], sites)
        np.testing.assert_array_equal(NN_DISPLACEMENTS[d], -NN_DISPLACEMENTS[opposite])
        # The neighbour's coordinates are the displaced (wrapped) coordinates.
        expected = np.mod(lat.coords + NN_DISPLACEMENTS[d], size)
        np.testing.assert_array_equal(lat.coords[nn[:, d]], expected)
    # Six distinct neighbours, none of them the site itself (grid >= 3 on every axis).
    assert np.all(np.sort(nn, axis=1)[:, 1:] != np.sort(nn, axis=1)[:, :-1])
    assert np.all(nn != sites[:, None])


def test_neighbor_table_general_displacements():
    lat = build_cube(3, A, 2)
    disp = np.array([[0, 0, 0], [2, -1, 0], [-3, 3, 1], [7, 0, -7]])
    table = lat.neighbor_table(disp)
    assert table.dtype == np.int32
    assert table.shape == (lat.n_sites, 4)
    np.testing.assert_array_equal(table[:, 0], np.arange(lat.n_sites))
    for d in range(4):
        np.testing.assert_array_equal(
            lat.coords[table[:, d]], np.mod(lat.coords + disp[d], lat.shape[0])
        )


def test_build_cube_arrays_are_read_only():
    lat = build_cube(3, A, 1)
    for arr in (lat.coords, lat.nn, lat.in_nc, lat.n_outside_nn, lat.depth):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0


@pytest.mark.parametrize(("n", "pad"), [(0, 1), (3, 0), (-2, 2)])
def test_build_cube_rejects_bad_sizes(n, pad):
    with pytest.raises(ValueError, match="must be >= 1"):
        build_cube(n, A, pad)


def test_empty_occupations():
    lat = build_cube(4, A, 2)
    occ = lat.empty_occupations()
    assert occ.dtype == np.uint8
    assert np.all(occ[lat.in_nc] == species.PB)
    assert np.all(occ[~lat.in_nc] == species.OUT)


# ---------------------------------------------------------------------- random_occupations
@pytest.mark.parametrize(("n", "x"), [(3, 0.0), (3, 0.5), (4, 0.25), (5, 0.1), (5, 1.0), (6, 0.37)])
def test_random_occupations_composition(rng, n, x):
    lat = build_cube(n, A, 2)
    occ = random_occupations(lat, x, rng)
    assert occ.dtype == species.OCC_DTYPE
    assert occ.shape == (lat.n_sites,)
    assert int(np.sum(occ == species.CD)) == round(x * n**3)
    assert int(np.sum(occ == species.PB)) == n**3 - round(x * n**3)
    assert not np.any(occ == species.VAC)
    assert np.all(occ[~lat.in_nc] == species.OUT)
    assert np.all(occ[lat.in_nc] <= species.CD)


def test_random_occupations_reproducible_with_seed():
    lat = build_cube(6, A, 2)
    a = random_occupations(lat, 0.3, np.random.default_rng(123))
    b = random_occupations(lat, 0.3, np.random.default_rng(123))
    c = random_occupations(lat, 0.3, np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_occupations_uniform_over_sites():
    # Each NC site holds Cd with probability x: over many draws, the per-layer Cd fraction
    # of a 6-cube (layers of 152, 56 and 8 sites) is x within a few standard errors.
    lat = build_cube(6, A, 1)
    rng = np.random.default_rng(5)
    x, n_draws = 0.25, 400
    counts = np.zeros(lat.n_sites)
    for _ in range(n_draws):
        counts += random_occupations(lat, x, rng) == species.CD
    for d in range(lat.n_layers):
        layer = lat.depth == d
        frac = counts[layer].sum() / (n_draws * layer.sum())
        se = np.sqrt(x * (1 - x) / (n_draws * layer.sum()))
        assert abs(frac - x) < 5 * se, (d, frac)


@pytest.mark.parametrize("x", [-0.1, 1.5])
def test_random_occupations_rejects_bad_fraction(x):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_occupations(build_cube(3, A, 1), x, np.random.default_rng(0))


# ---------------------------------------------------------------------- depth from occupations
def _brute_force_depth(lat, occ):
    """Periodic Chebyshev distance to the nearest outside site, minus one (-1 outside)."""
    size = np.asarray(lat.shape)
    out_coords = lat.coords[occ == species.OUT]
    depth = np.full(lat.n_sites, -1)
    for s in np.flatnonzero(occ != species.OUT):
        diff = np.abs(out_coords - lat.coords[s])
        diff = np.minimum(diff, size - diff)
        depth[s] = diff.max(axis=1).min() - 1
    return depth


@pytest.mark.parametrize(("n", "pad"), [(1, 1), (2, 1), (5, 1), (6, 3), (9, 2)])
def test_depth_from_occupations_equals_cube_depth(n, pad):
    lat = build_cube(n, A, pad)
    occ = random_occupations(lat, 0.4, np.random.default_rng(0))
    np.testing.assert_array_equal(depth_from_occupations(lat, occ), lat.depth)
    # Vacancies are inside the crystal: they do not change the depth.
    occ[np.flatnonzero(lat.in_nc)[::3]] = species.VAC
    np.testing.assert_array_equal(depth_from_occupations(lat, occ), lat.depth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depth_from_occupations_receded_shape(seed):
    rng = np.random.default_rng(seed)
    lat = build_cube(7, A, 1)
    occ = random_occupations(lat, 0.3, rng)
    # Dissolve a random set of surface sites, a whole corner region and a pit that reaches
    # two layers deep.
    surface = np.flatnonzero(lat.depth == 0)
    occ[rng.choice(surface, size=40, replace=False)] = species.OUT
    corner = np.all(lat.coords <= 2, axis=1)
    occ[corner] = species.OUT
    pit = np.all(lat.coords == [4, 4, 1], axis=1) | np.all(lat.coords == [4, 4, 2], axis=1)
    occ[pit] = species.OUT
    depth = depth_from_occupations(lat, occ)
    expected = _brute_force_depth(lat, occ)
    np.testing.assert_array_equal(depth, expected)
    # The shape really receded: some sites are shallower than in the as-built cube.
    crystal = occ != species.OUT
    assert np.any(depth[crystal] < lat.depth[crystal])
    assert np.all(depth[crystal] <= lat.depth[crystal])


# ---------------------------------------------------------------------- outside neighbours
def test_outside_neighbor_counts_cube_matches_classification():
    lat = build_cube(5, A, 2)
    occ = random_occupations(lat, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(outside_neighbor_counts(lat, occ), lat.n_outside_nn)


def test_outside_neighbor_counts_rough_surface_brute_force():
    rng = np.random.default_rng(11)
    lat = build_cube(5, A, 1)
    occ = random_occupations(lat, 0.5, rng)
    nc = np.flatnonzero(lat.in_nc)
    occ[rng.choice(nc, size=30, replace=False)] = species.OUT
    occ[rng.choice(np.flatnonzero(occ != species.OUT), size=10, replace=False)] = species.VAC
    counts = outside_neighbor_counts(lat, occ)
    size = lat.shape[0]
    for s in range(lat.n_sites):
        if occ[s] == species.OUT:
            assert counts[s] == -1
            continue
        n_out = 0
        for dx, dy, dz in itertools.product((-1, 0, 1), repeat=3):
            if abs(dx) + abs(dy) + abs(dz) != 1:
                continue
            x, y, z = np.mod(lat.coords[s] + [dx, dy, dz], size)
            n_out += occ[(x * size + y) * size + z] == species.OUT
        assert counts[s] == n_out, s
    assert counts.max() > CORNER  # values above 3 occur on rough surfaces
