"""The provisional CE (potentials/provisional.ce) and the Cd configuration builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segsim import species
from segsim.engine import MCEngine, MCState
from segsim.lattice import build_cube
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.training import configurations as conf
from segsim.training import provisional as prov

SHIPPED = Path(__file__).resolve().parents[2] / "potentials" / "provisional.ce"
A = 5.87


@pytest.fixture(scope="module")
def built():
    return prov.build_provisional_ce()


@pytest.fixture(scope="module")
def shipped():
    return ClusterExpansionModel.from_file(SHIPPED)


@pytest.fixture(scope="module")
def nc3(shipped):
    """The 3 nm NC (n = 5) and the shipped CE compiled for it."""
    lat = build_cube(5, A, shipped.reach + 1)
    return lat, shipped.compile(lat)


# ---------------------------------------------------------------- the CE itself
def test_shipped_file_equals_build(built, shipped):
    np.testing.assert_allclose(shipped.parameters, built.parameters, rtol=0, atol=1e-12)
    assert list(shipped.icet_ce.cutoffs) == list(built.cutoffs) == [prov.CUTOFF_ANGSTROM]
    meta = shipped.metadata
    assert meta["segsim_label"] == built.metadata["segsim_label"] == "provisional"
    assert "PROVISIONAL" in meta["segsim_description"]
    assert "issue 3" in meta["segsim_description"]
    assert meta["energy_unit"] == "eV per B-lattice site (total = N_sites * predict)"
    assert meta["segsim_pair_energies_ev"] == prov.PAIR_ENERGIES_EV
    assert shipped.a_angstrom == pytest.approx(A)
    assert shipped.reach == 1


def test_pair_energies_are_the_documented_choice():
    v = prov.pair_matrix_ev()
    pb, cd, x = (prov.CE_SPECIES.index(s) for s in ("Pb", "Cd", "X"))
    np.testing.assert_array_equal(v, v.T)
    assert v[cd, cd] + v[pb, pb] - 2 * v[pb, cd] == pytest.approx(prov.W_CDCD_EV)
    assert prov.W_CDCD_EV > 0  # Cd avoids Cd
    gamma = 2 * v[pb, x] - v[pb, pb] - v[x, x]
    assert gamma == pytest.approx(prov.GAMMA_BOND_EV)
    assert gamma > 0  # positive surface energy per broken B-B bond
    assert 0.1 <= 3 * gamma <= 0.3  # interior vacancy vs kink: the partial-Schottky scale
    assert 2 * v[cd, x] - v[cd, cd] - v[x, x] > 0
    e_seg = (v[cd, x] - v[pb, x]) - (v[cd, pb] - v[pb, pb])
    assert e_seg == pytest.approx(prov.E_SEG_EV)


def test_ce_reproduces_pair_model_on_fresh_structures(shipped):
    rng = np.random.default_rng(11)
    for shape in [(3, 4, 5), (6, 3, 3), (4, 4, 4)]:
        grid = rng.choice(3, size=shape, p=[0.5, 0.3, 0.2])
        atoms = prov._grid_atoms(grid)
        e_ce = shipped.icet_ce.predict(atoms) * len(atoms)
        assert e_ce == pytest.approx(prov.pair_model_energy_grid_ev(grid), abs=1e-10)


def test_compiled_tables_equal_pair_model_on_nc(shipped, nc3):
    lat, tables = nc3
    rng = np.random.default_rng(5)
    occ = conf.uniform_occupations(lat, 0.25, rng)
    occ[np.flatnonzero(lat.in_nc)[rng.choice(lat.n_nc_sites, 6, replace=False)]] = species.VAC
    e_pair = prov.pair_model_energy_ev(lat, occ)
    assert tables.total_energy(occ) == pytest.approx(e_pair, abs=1e-9)
    assert shipped.predict_total(lat, occ) == pytest.approx(e_pair, abs=1e-9)
    # All Pb: only the surface costs energy, gamma / 2 per cation-O bond.
    n_broken = int(lat.n_outside_nn[lat.in_nc].sum())
    e_pb = tables.total_energy(lat.empty_occupations())
    assert e_pb == pytest.approx(n_broken * prov.GAMMA_BOND_EV / 2, abs=1e-9)


def test_write_provisional(tmp_path, built):
    path = prov.write_provisional(tmp_path / "sub" / "p.ce")
    model = ClusterExpansionModel.from_file(path)
    np.testing.assert_allclose(model.parameters, built.parameters, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- physics ordering (3 nm)
def test_published_ordering_on_3nm_nc(nc3):
    lat, tables = nc3
    r = prov.segregation_energies_ev(tables, lat, 0.25, range(8))
    n_cd = conf.n_cd_for(lat, 0.25)
    assert r["core_minus_uniform"] > 1.0  # eV per NC: very unfavourable
    assert r["core_minus_uniform"] / n_cd > 0.02  # tens of meV per Cd
    assert abs(r["surface_minus_uniform"]) < 0.2 * r["core_minus_uniform"]
    assert r["uniform_std"] < 0.2 * r["core_minus_uniform"]


def test_mc_at_343K_dissolves_core_cluster(shipped):
    lat = build_cube(8, A, shipped.reach + 1)
    tables = shipped.compile(lat)
    occ = conf.core_segregated_occupations(lat, 0.25)
    start = conf.cd_fraction_by_depth(lat, occ)
    assert start[-1] == 1.0
    assert start[0] == 0.0
    engine = MCEngine(
        tables, MCState.initial(occ, tables), np.random.default_rng(3), temperature_k=343.0
    )
    engine.advance(200 * lat.n_nc_sites)
    profile = conf.cd_fraction_by_depth(lat, engine.state.occupations)
    assert np.all(np.abs(profile[:-1] - 0.25) < 0.08)  # the innermost layer has 8 sites only
    assert abs(engine.energy_drift_ev()) < 1e-9
    assert engine.state.energy_ev < tables.total_energy(occ) - 3.0


# ---------------------------------------------------------------- configuration builders
@pytest.mark.parametrize("n_edge", [4, 5, 8])
@pytest.mark.parametrize("x_cd", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_builders_give_exact_cd_counts(n_edge, x_cd):
    lat = build_cube(n_edge, A, 2)
    n_cd = round(x_cd * n_edge**3)
    weights = np.linspace(2.0, 1.0, lat.n_layers)
    for occ in (
        conf.uniform_occupations(lat, x_cd, np.random.default_rng(0)),
        conf.surface_segregated_occupations(lat, x_cd),
        conf.core_segregated_occupations(lat, x_cd),
        conf.layer_profile_occupations(lat, x_cd, weights),
    ):
        assert occ.dtype == np.uint8
        assert occ.shape == (lat.n_sites,)
        assert int((occ == species.CD).sum()) == n_cd
        assert int((occ == species.PB).sum()) == n_edge**3 - n_cd
        np.testing.assert_array_equal(occ == species.OUT, ~lat.in_nc)


def _layer_cd_counts(lat, occ):
    return np.bincount(lat.depth[occ == species.CD], minlength=lat.n_layers)


@pytest.mark.parametrize(("n_edge", "x_cd"), [(5, 0.25), (8, 0.25), (8, 0.6), (20, 0.25)])
def test_surface_and_core_fill_layers_in_order(n_edge, x_cd):
    lat = build_cube(n_edge, A, 2)
    size = conf.layer_sizes(lat)
    assert int(size.sum()) == n_edge**3
    for occ, order in (
        (conf.surface_segregated_occupations(lat, x_cd), np.arange(lat.n_layers)),
        (conf.core_segregated_occupations(lat, x_cd), np.arange(lat.n_layers)[::-1]),
    ):
        counts = _layer_cd_counts(lat, occ)[order]
        filled = size[order]
        partial = int(np.argmax(counts < filled))  # first layer (in fill order) not full
        np.testing.assert_array_equal(counts[:partial], filled[:partial])
        assert np.all(counts[partial + 1 :] == 0)


def test_3nm_configurations_match_the_published_pictures():
    lat = build_cube(5, A, 2)
    surf = conf.cd_fraction_by_depth(lat, conf.surface_segregated_occupations(lat, 0.25))
    np.testing.assert_allclose(surf, [31 / 98, 0.0, 0.0])
    core = conf.cd_fraction_by_depth(lat, conf.core_segregated_occupations(lat, 0.25))
    np.testing.assert_allclose(core, [4 / 98, 1.0, 1.0])


def test_core_partial_layer_is_compact():
    lat = build_cube(5, A, 2)
    occ = conf.core_segregated_occupations(lat, 0.25)
    outer = np.flatnonzero((occ == species.CD) & (lat.depth == 0))
    assert outer.size == 4
    assert np.all(lat.n_outside_nn[outer] == 1)  # face centres, touching the core cube
    centre = lat.pad + 2
    assert np.all((np.abs(lat.coords[outer] - centre) == 2).sum(axis=1) == 1)
    assert np.all((lat.coords[outer] == centre).sum(axis=1) == 2)


def test_builders_are_deterministic_and_rng_sensitive():
    lat = build_cube(6, A, 2)
    for build in (conf.surface_segregated_occupations, conf.core_segregated_occupations):
        np.testing.assert_array_equal(build(lat, 0.3), build(lat, 0.3))
    a = conf.surface_segregated_occupations(lat, 0.3, np.random.default_rng(1))
    b = conf.surface_segregated_occupations(lat, 0.3, np.random.default_rng(2))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(_layer_cd_counts(lat, a), _layer_cd_counts(lat, b))


def test_layer_profile_counts():
    lat = build_cube(10, A, 2)
    size = conf.layer_sizes(lat)
    flat = conf.layer_counts(lat, 0.25, np.ones(lat.n_layers))
    assert int(flat.sum()) == 250
    assert np.all(np.abs(flat - 0.25 * size) <= 1)
    # Surface only (weight on layer 0) caps at the layer size and overflows nowhere else.
    only_surface = conf.layer_counts(lat, 0.25, [1.0, 0, 0, 0, 0])
    np.testing.assert_array_equal(only_surface, [250, 0, 0, 0, 0])
    # Overflowing layers are filled and the rest rescaled.
    steep = conf.layer_counts(lat, 0.5, [100.0, 1.0, 1.0, 1.0, 1.0])
    assert steep[0] == size[0]
    assert int(steep.sum()) == 500
    assert np.all(np.abs(steep[1:] - (500 - size[0]) * size[1:] / size[1:].sum()) <= 1)
    occ = conf.layer_profile_occupations(lat, 0.5, [100.0, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(_layer_cd_counts(lat, occ), steep)
    with pytest.raises(ValueError, match="weights"):
        conf.layer_counts(lat, 0.25, [1.0, -1.0, 0, 0, 0])
    with pytest.raises(ValueError, match="weights"):
        conf.layer_counts(lat, 0.25, [1.0, 1.0])
    with pytest.raises(ValueError, match="do not fit"):
        conf.layer_counts(lat, 0.25, [0, 0, 0, 0, 1.0])
    with pytest.raises(ValueError, match="x_cd"):
        conf.n_cd_for(lat, 1.5)
