"""The compiled CE tables agree with icet (and with the naive twin) to round-off.

Every test here compares :class:`segsim.models.base.ModelTables` (the numba kernels
``_total_energy``, ``_flip_delta`` and ``_swap_delta``) with ``N * ClusterExpansion.predict``
on the same periodic grid and/or with :mod:`tests.reference.naive`.
"""

from __future__ import annotations

import numpy as np
import pytest

from segsim import species
from segsim.models.cluster_expansion import ClusterExpansionModel
from tests.reference import naive

TOL_EV = 1e-8

CUTOFFS = {
    "pairs": [12.0],
    "pairs+triplets": [12.0, 8.4],
    "pairs+triplets+quadruplets": [12.0, 8.4, 8.4],
}


def _model_and_tables(ce, lattice):
    model = ClusterExpansionModel(ce)
    return model, model.compile(lattice)


def _nc_model(make_ce, make_cube, cutoffs, n, seed):
    rng = np.random.default_rng(seed)
    ce = make_ce(cutoffs, rng)
    model = ClusterExpansionModel(ce)
    lattice = make_cube(n, model.reach + 1)
    return ce, model, lattice, model.compile(lattice), rng


# ---------------------------------------------------------------------- total energy
@pytest.mark.parametrize("cutoffs", list(CUTOFFS.values()), ids=list(CUTOFFS))
@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_total_energy_equals_icet_predict(make_ce, make_cube, nc_occupations, cutoffs, n, seed):
    _, model, lattice, tables, rng = _nc_model(make_ce, make_cube, cutoffs, n, seed)
    assert tables.reach == model.reach == (2 if cutoffs[0] > 11.74 else 1)
    energies = []
    compositions = [(0.35, 0.15), (0.5, 0.0), (0.0, 0.0), (1.0, 0.0), (0.2, 0.6)]
    for p_cd, p_vac in compositions:
        occ = nc_occupations(lattice, rng, p_cd=p_cd, p_vac=p_vac)
        e_tab = tables.total_energy(occ)
        e_icet = model.predict_total(lattice, occ)
        assert abs(e_tab - e_icet) < TOL_EV, (p_cd, p_vac, e_tab, e_icet)
        energies.append(e_icet)
    # Not a trivial comparison: the configurations have very different energies.
    assert np.ptp(energies) > 1.0


@pytest.mark.parametrize("cutoffs", list(CUTOFFS.values()), ids=list(CUTOFFS))
def test_naive_twin_cluster_vector_and_total_equal_icet(
    make_ce, make_cube, nc_occupations, cutoffs
):
    ce, model, lattice, tables, rng = _nc_model(make_ce, make_cube, cutoffs, 3, 10)
    twin = naive.NaiveCE(ce)
    cs = ce.get_cluster_space_copy()
    for _ in range(2):
        occ = nc_occupations(lattice, rng)
        atoms = model.to_icet_structure(lattice, occ)
        np.testing.assert_allclose(
            twin.cluster_vector(occ, lattice.shape),
            cs.get_cluster_vector(atoms),
            rtol=0,
            atol=1e-12,
        )
        e_naive = twin.total_energy(occ, lattice.shape)
        assert abs(e_naive - model.predict_total(lattice, occ)) < TOL_EV
        assert abs(e_naive - tables.total_energy(occ)) < TOL_EV


def test_periodic_bulk_grid_without_outside_sites_icet(make_ce, make_cube):
    # A 6 x 6 x 6 periodic grid filled with Pb/Cd/V everywhere (no O): bulk-like.
    rng = np.random.default_rng(42)
    ce = make_ce(CUTOFFS["pairs+triplets+quadruplets"], rng)
    lattice = make_cube(4, 1)
    assert lattice.shape == (6, 6, 6)
    model, tables = _model_and_tables(ce, lattice)
    twin = naive.NaiveCE(ce)
    for p in ([0.5, 0.4, 0.1], [0.2, 0.8, 0.0], [0.4, 0.3, 0.3]):
        occ = rng.choice(
            np.array([species.PB, species.CD, species.VAC], dtype=np.uint8),
            size=lattice.n_sites,
            p=p,
        )
        e_icet = model.predict_total(lattice, occ)
        assert abs(tables.total_energy(occ) - e_icet) < TOL_EV
        assert abs(twin.total_energy(occ, lattice.shape) - e_icet) < TOL_EV
        for _ in range(3):
            i, j = (
                rng.choice(np.flatnonzero(occ == species.PB), 1)[0],
                rng.choice(np.flatnonzero(occ != species.PB), 1)[0],
            )
            after = occ.copy()
            after[[i, j]] = occ[[j, i]]
            de_icet = model.predict_total(lattice, after) - e_icet
            assert abs(tables.swap_energy_change(occ, i, j) - de_icet) < TOL_EV


def test_smallest_allowed_grid_agrees_with_icet(make_ce, make_cube):
    # reach 2 needs every grid dimension > 4: a 5 x 5 x 5 periodic grid is the smallest.
    rng = np.random.default_rng(3)
    ce = make_ce(CUTOFFS["pairs+triplets"], rng)
    lattice = make_cube(3, 1)
    model, tables = _model_and_tables(ce, lattice)
    assert model.reach == 2
    for _ in range(3):
        occ = rng.integers(0, 4, size=lattice.n_sites).astype(np.uint8)
        assert abs(tables.total_energy(occ) - model.predict_total(lattice, occ)) < TOL_EV


@pytest.mark.parametrize(("n", "pad"), [(1, 1), (2, 1)])
def test_compile_rejects_grid_too_small_icet(make_ce, make_cube, n, pad):
    model = ClusterExpansionModel(make_ce(CUTOFFS["pairs"], np.random.default_rng(0)))
    assert model.reach == 2
    with pytest.raises(ValueError, match="too small"):
        model.compile(make_cube(n, pad))


def test_zero_parameters_except_zerolet_give_constant_energy_icet(
    make_ce_with, make_cube, n_params, nc_occupations
):
    cutoffs = CUTOFFS["pairs+triplets+quadruplets"]
    params = np.zeros(n_params(cutoffs))
    params[0] = -1.234
    ce = make_ce_with(cutoffs, params)
    lattice = make_cube(4, 2)
    model, tables = _model_and_tables(ce, lattice)
    rng = np.random.default_rng(5)
    expected = -1.234 * lattice.n_sites
    for _ in range(4):
        occ = nc_occupations(lattice, rng)
        assert tables.total_energy(occ) == pytest.approx(expected, abs=TOL_EV)
        assert model.predict_total(lattice, occ) == pytest.approx(expected, abs=TOL_EV)
        i = int(np.flatnonzero(occ == species.PB)[0])
        j = int(np.flatnonzero(occ == species.CD)[0])
        assert tables.swap_energy_change(occ, i, j) == 0.0
        assert tables.flip_energy_change(occ, i, species.OUT) == 0.0


# ---------------------------------------------------------------------- energy changes
def _site(lattice, xyz):
    return int(lattice.site_index(*np.asarray(xyz)))


def _swap_pairs(lattice, rng):
    """Site pairs covering far, nearby (sharing clusters), crystal/outside and same-X swaps."""
    pad, n = lattice.pad, lattice.n_edge
    nc = np.flatnonzero(lattice.in_nc)
    pairs = []
    # Random pairs of NC sites (any species: Pb/Cd, Cd/V, Pb/V, V/V ...).
    for _ in range(6):
        i, j = rng.choice(nc, size=2, replace=False)
        pairs.append((int(i), int(j)))
    # Pairs at short displacements inside the NC, so that clusters contain both sites.
    for disp in ([1, 0, 0], [0, 1, 1], [1, 1, 1], [2, 0, 0], [0, -1, 2]):
        x = rng.integers(pad, pad + n - 2, size=3)
        pairs.append((_site(lattice, x), _site(lattice, x + np.asarray(disp))))
    # Surface site with an outside neighbour; outside site far from the NC.
    surf = _site(lattice, [pad, pad + 1, pad + 1])
    pairs.append((surf, _site(lattice, [pad - 1, pad + 1, pad + 1])))
    pairs.append((surf, 0))
    return pairs


@pytest.mark.parametrize("cutoffs", list(CUTOFFS.values()), ids=list(CUTOFFS))
@pytest.mark.parametrize(("n", "seed"), [(3, 0), (4, 1), (5, 2)])
def test_swap_energy_change_equals_icet_difference(
    make_ce, make_cube, nc_occupations, cutoffs, n, seed
):
    _, model, lattice, tables, rng = _nc_model(make_ce, make_cube, cutoffs, n, seed)
    occ = nc_occupations(lattice, rng, p_cd=0.4, p_vac=0.2)
    occ_ref = occ.copy()
    e0 = model.predict_total(lattice, occ)
    n_nonzero = 0
    for i, j in _swap_pairs(lattice, rng):
        after = occ.copy()
        after[[i, j]] = occ[[j, i]]
        de_icet = model.predict_total(lattice, after) - e0
        de_tab = tables.swap_energy_change(occ, i, j)
        assert abs(de_tab - de_icet) < TOL_EV, (i, j, occ[i], occ[j], de_tab, de_icet)
        np.testing.assert_array_equal(occ, occ_ref)  # the kernel restores occupations
        n_nonzero += abs(de_icet) > 1e-6
        same_x = {int(occ[i]), int(occ[j])} <= {species.VAC, species.OUT}
        if occ[i] == occ[j] or same_x:
            assert de_tab == 0.0
    assert n_nonzero >= 6


@pytest.mark.parametrize("cutoffs", list(CUTOFFS.values()), ids=list(CUTOFFS))
def test_swap_energy_change_equals_naive_twin_icet(make_ce, make_cube, nc_occupations, cutoffs):
    ce, _, lattice, tables, rng = _nc_model(make_ce, make_cube, cutoffs, 3, 7)
    twin = naive.NaiveCE(ce)
    occ = nc_occupations(lattice, rng, p_cd=0.4, p_vac=0.2)
    pairs = _swap_pairs(lattice, rng)
    for i, j in pairs:
        de_tab = tables.swap_energy_change(occ, i, j)
        de_local = twin.swap_delta_local(occ, lattice.shape, i, j)
        assert abs(de_tab - de_local) < TOL_EV, (i, j)
    for i, j in pairs[::3]:  # full recomputes are slow: a subset
        de_full = twin.swap_delta_full(occ, lattice.shape, i, j)
        assert abs(tables.swap_energy_change(occ, i, j) - de_full) < TOL_EV, (i, j)


def _flips_equal_icet(model, tables, lattice, occ, sites, e0):
    """Check every flip of ``sites`` against icet; return (site, old, new, dE) per flip."""
    out = []
    for site in sites:
        for new in range(species.N_SPECIES):
            after = occ.copy()
            after[site] = new
            de_icet = model.predict_total(lattice, after) - e0
            de_tab = tables.flip_energy_change(occ, site, new)
            assert abs(de_tab - de_icet) < TOL_EV, (site, occ[site], new, de_tab, de_icet)
            out.append((site, int(occ[site]), new, de_tab))
    return out


@pytest.mark.parametrize("cutoffs", list(CUTOFFS.values()), ids=list(CUTOFFS))
@pytest.mark.parametrize(("n", "seed"), [(3, 3), (5, 4)])
def test_flip_energy_change_equals_icet_difference(
    make_ce, make_cube, nc_occupations, cutoffs, n, seed
):
    ce, model, lattice, tables, rng = _nc_model(make_ce, make_cube, cutoffs, n, seed)
    twin = naive.NaiveCE(ce) if n == 3 else None
    occ = nc_occupations(lattice, rng)
    occ_ref = occ.copy()
    e0 = model.predict_total(lattice, occ)
    pad = lattice.pad
    sites = [int(s) for s in rng.choice(np.flatnonzero(lattice.in_nc), size=4, replace=False)]
    sites += [
        _site(lattice, [pad - 1, pad, pad + 1]),  # outside, next to the surface
        _site(lattice, [pad, pad, pad]),
    ]  # a corner
    for site, old, new, de_tab in _flips_equal_icet(model, tables, lattice, occ, sites, e0):
        if species.CE_SYMBOLS[new] == species.CE_SYMBOLS[old]:
            assert de_tab == 0.0  # includes V <-> O
        if twin is not None and new != old and site in sites[:2]:
            de_naive = twin.flip_delta_full(occ, lattice.shape, site, new)
            assert abs(de_tab - de_naive) < TOL_EV
    np.testing.assert_array_equal(occ, occ_ref)


def test_energy_changes_validate_arguments_icet(make_ce, tiny_cube, nc_occupations, rng):
    lattice = tiny_cube
    tables = ClusterExpansionModel(make_ce(CUTOFFS["pairs"], rng)).compile(lattice)
    occ = nc_occupations(lattice, rng)
    with pytest.raises(ValueError, match="uint8"):
        tables.total_energy(occ.astype(np.int64))
    with pytest.raises(ValueError, match="shape"):
        tables.total_energy(occ[:-1])
    with pytest.raises(ValueError, match="distinct"):
        tables.swap_energy_change(occ, 3, 3)
    with pytest.raises(ValueError, match="distinct"):
        tables.swap_energy_change(occ, 0, lattice.n_sites)
    with pytest.raises(ValueError, match="out of range"):
        tables.flip_energy_change(occ, 0, 4)
    with pytest.raises(ValueError, match="out of range"):
        tables.flip_energy_change(occ, -1, 0)


# ------------------------------------------------------- four-species CE (V its own species)
@pytest.mark.parametrize("cutoffs", [CUTOFFS["pairs+triplets"], [8.4, 8.4, 6.0]], ids=["23", "234"])
def test_four_species_ce_tables_equal_icet_and_the_naive_twin(
    make_ce, make_cube, nc_occupations, cutoffs
):
    """With V a species of its own, total, flip and swap energies still equal icet's."""
    rng = np.random.default_rng(40)
    ce = make_ce(cutoffs, rng, separate_vacancy=True)
    model = ClusterExpansionModel(ce)
    assert model.n_ce_species == 4
    assert model.code_symbols == species.CE_SYMBOLS_SEPARATE_V
    lattice = make_cube(3, model.reach + 1)
    tables = model.compile(lattice)
    twin = naive.NaiveCE(ce)
    occ = nc_occupations(lattice, rng, p_cd=0.3, p_vac=0.2)
    atoms = model.to_icet_structure(lattice, occ)
    assert "V" in atoms.get_chemical_symbols()
    np.testing.assert_allclose(
        twin.cluster_vector(occ, lattice.shape),
        ce.get_cluster_space_copy().get_cluster_vector(atoms),
        rtol=0,
        atol=1e-12,
    )
    e0 = model.predict_total(lattice, occ)
    assert abs(tables.total_energy(occ) - e0) < TOL_EV
    assert abs(twin.total_energy(occ, lattice.shape) - e0) < TOL_EV
    # flips, including V <-> O, which now changes the energy
    vac = np.flatnonzero(occ == species.VAC)
    sites = [int(s) for s in rng.choice(np.flatnonzero(lattice.in_nc), size=3, replace=False)]
    sites += [int(s) for s in vac[:2]]
    n_vo = 0
    for _, old, new, de_tab in _flips_equal_icet(model, tables, lattice, occ, sites, e0):
        if {old, new} == {species.VAC, species.OUT}:
            n_vo += 1
            assert abs(de_tab) > 1e-6  # no longer the same CE species
    assert n_vo >= 2
    # swaps of a cation with a vacancy (the KMC hop)
    for s in vac[:3]:
        j = int(lattice.neighbor_table(np.array([[1, 0, 0]], dtype=np.int64))[s, 0])
        after = occ.copy()
        after[[s, j]] = occ[[j, s]]
        de_icet = model.predict_total(lattice, after) - e0
        assert abs(tables.swap_energy_change(occ, int(s), j) - de_icet) < TOL_EV


def test_three_species_files_are_unchanged_and_bad_species_are_refused(make_ce, rng):
    model = ClusterExpansionModel(make_ce(CUTOFFS["pairs"], rng))
    assert model.n_ce_species == 3
    assert model.code_symbols == species.CE_SYMBOLS
    with pytest.raises(ValueError, match="species must be"):
        species.ce_symbols(["Pb", "Cd", "V"])
