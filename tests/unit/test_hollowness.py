"""Interior vacancies and envelope edges: the observables that tell a hollow NC from a small one."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from segsim import observers as ob
from segsim import optics, species
from segsim.lattice import depth_from_occupations
from segsim.reproduce import NCResult, ensemble_table

N = 6  # sites per edge of the hand-built cubes
A0 = 5.87  # Vegard a0 of the test lattice, Angstrom


@pytest.fixture
def cube(make_cube):
    return make_cube(N, 2)


def _pb_cube(lattice):
    return lattice.empty_occupations()


def _kmc(lattice, occ):
    return ob.hollowness(lattice, "kmc", occ)


def _a_nm(occ, lattice):
    """The ``a(x)`` of ``edge_nm`` in nm (``a_angstrom`` of the optics record)."""
    return optics.observables(occ, lattice.coords, a0_angstrom=A0)["a_angstrom"] / 10.0


def test_full_cube_has_no_vacancy_and_its_edge_as_envelope(cube):
    occ = _pb_cube(cube)
    h = _kmc(cube, occ)
    assert (h["n_vac_interior"], h["n_vac_surface"]) == (0, 0)
    assert h["interior_vacancy_fraction"] == 0.0
    np.testing.assert_array_equal(h["interior_vacancy_fraction_by_depth"], np.zeros(3))
    assert h["envelope_edge_nm"] == pytest.approx(N * A0 / 10.0, rel=1e-12)
    assert h["occupied_envelope_edge_nm"] == pytest.approx(N * A0 / 10.0, rel=1e-12)
    # a full cube: the cube root of the occupied sites is the outline
    assert optics.nc_edge_nm(occ, 0.0, a0_angstrom=A0) == pytest.approx(h["envelope_edge_nm"])


def test_hollow_cube_keeps_its_envelope_and_reports_the_exact_interior_fraction(cube):
    full = _pb_cube(cube)
    hollow = full.copy()
    core = cube.in_nc & (cube.depth >= 1)  # everything under the surface shell: 4**3 sites
    hollow[core] = species.VAC
    h = _kmc(cube, hollow)
    assert h["n_vac_interior"] == (N - 2) ** 3 == 64
    assert h["n_vac_surface"] == 0
    assert h["interior_vacancy_fraction"] == 64 / N**3
    # shell 0 has no interior vacancy, shells 1 and 2 are all interior vacancies
    np.testing.assert_array_equal(h["interior_vacancy_fraction_by_depth"], [0.0, 1.0, 1.0])
    before = _kmc(cube, full)
    assert h["envelope_edge_nm"] == before["envelope_edge_nm"]
    assert h["occupied_envelope_edge_nm"] == before["occupied_envelope_edge_nm"]
    # ... while edge_nm, the cube root of the occupied sites, falls
    edge_full = optics.nc_edge_nm(full, 0.0, a0_angstrom=A0)
    edge_hollow = optics.nc_edge_nm(hollow, 0.0, a0_angstrom=A0)
    assert edge_hollow == pytest.approx(edge_full * (1 - 64 / 216) ** (1 / 3))
    assert edge_hollow < 0.9 * h["envelope_edge_nm"]


def test_nc_losing_cd_inside_a_full_outline_keeps_its_envelope_in_sites(cube):
    occ = _pb_cube(cube)
    core = np.flatnonzero(cube.in_nc & (cube.depth >= 1))
    occ[core[::2]] = species.CD  # Cd in the core only, the Pb shell complete
    lost = occ.copy()
    lost[lost == species.CD] = species.VAC  # every Cd expelled, the outline kept
    for o in (occ, lost):
        assert ob.envelope_extent_sites(o, cube.coords, (species.PB, species.CD, species.VAC)) == N
        h = _kmc(cube, o)
        # the envelope edge is the extent times the a(x) that edge_nm uses
        assert h["envelope_edge_nm"] == pytest.approx(N * _a_nm(o, cube), rel=1e-12)
        assert h["occupied_envelope_edge_nm"] == h["envelope_edge_nm"]
    edge = [optics.observables(o, cube.coords, a0_angstrom=A0)["edge_nm"] for o in (occ, lost)]
    n_occ = N**3 - len(core[::2])
    assert edge[1] == pytest.approx(N * _a_nm(lost, cube) * (n_occ / N**3) ** (1 / 3), rel=1e-12)
    assert edge[1] < edge[0]
    assert _kmc(cube, lost)["n_vac_interior"] == len(core[::2])


def test_shrunk_cube_has_a_smaller_envelope(cube):
    occ = _pb_cube(cube)
    occ[cube.in_nc & (cube.depth == 0)] = species.OUT  # the outer shell receded
    h = _kmc(cube, occ)
    assert h["envelope_edge_nm"] == pytest.approx((N - 2) * A0 / 10.0, rel=1e-12)
    assert h["occupied_envelope_edge_nm"] == pytest.approx((N - 2) * A0 / 10.0, rel=1e-12)
    assert h["interior_vacancy_fraction"] == 0.0
    # the moving-surface depth: two layers left, the old core layer is empty
    by_depth = h["interior_vacancy_fraction_by_depth"]
    assert by_depth[:2].tolist() == [0.0, 0.0]
    assert math.isnan(by_depth[2])


def test_one_face_of_vacancies_shrinks_only_the_occupied_envelope(cube):
    occ = _pb_cube(cube)
    x_min = cube.coords[cube.in_nc, 0].min()
    occ[cube.in_nc & (cube.coords[:, 0] == x_min)] = species.VAC
    h = _kmc(cube, occ)
    assert h["envelope_edge_nm"] == pytest.approx(N * A0 / 10.0, rel=1e-12)
    assert h["occupied_envelope_edge_nm"] == pytest.approx((N - 1 / 3) * A0 / 10.0, rel=1e-12)
    assert (h["n_vac_interior"], h["n_vac_surface"]) == (0, N * N)  # all touch the outside


@pytest.mark.parametrize("where", ["corner", "edge", "face"])
def test_a_vacancy_in_the_surface_shell_is_not_interior(cube, where):
    occ = _pb_cube(cube)
    lo, mid = cube.pad, cube.pad + N // 2
    ijk = {"corner": (lo, lo, lo), "edge": (lo, lo, mid), "face": (lo, mid, mid)}[where]
    site = int(cube.site_index(*(np.array([c]) for c in ijk))[0])
    assert cube.depth[site] == 0
    occ[site] = species.VAC
    h = _kmc(cube, occ)
    assert (h["n_vac_interior"], h["n_vac_surface"]) == (0, 1)
    assert not ob.interior_vacancy_mask(occ, cube.nn).any()


def test_a_vacancy_under_a_surface_vacancy_is_interior_until_the_surface_recedes(cube):
    occ = _pb_cube(cube)
    lo, mid = cube.pad, cube.pad + N // 2
    outer = int(cube.site_index(np.array([lo]), np.array([mid]), np.array([mid]))[0])
    inner = int(cube.site_index(np.array([lo + 1]), np.array([mid]), np.array([mid]))[0])
    occ[[outer, inner]] = species.VAC
    assert np.flatnonzero(ob.interior_vacancy_mask(occ, cube.nn)).tolist() == [inner]
    occ[outer] = species.OUT  # a pit: the inner vacancy now touches the outside
    assert not ob.interior_vacancy_mask(occ, cube.nn).any()


@pytest.mark.parametrize("moving_surface", [True, False])
def test_interior_vacancies_by_depth_add_up_to_the_total(make_cube, nc_occupations, moving_surface):
    lattice = make_cube(8, 2)
    rng = np.random.default_rng(11)
    occ = nc_occupations(lattice, rng, p_cd=0.2, p_vac=0.3)
    shell = np.flatnonzero(lattice.in_nc & (lattice.depth == 0))
    occ[rng.choice(shell, size=40, replace=False)] = species.OUT  # rough, receded surface
    depth = depth_from_occupations(lattice, occ) if moving_surface else lattice.depth
    obs = ob.VacancyObserver(lattice, moving_surface=moving_surface)
    h = obs.from_occupations(occ)
    crystal = species.in_crystal(occ) & (depth >= 0)
    sites = np.bincount(depth[crystal], minlength=lattice.n_layers)
    n_int = h["n_vac_interior"]
    assert n_int > 20
    assert np.nansum(h["interior_vacancy_fraction_by_depth"] * sites) == pytest.approx(n_int)
    n_vac = int(np.count_nonzero(occ == species.VAC))
    assert n_int + h["n_vac_surface"] == n_vac
    assert h["interior_vacancy_fraction"] == n_int / int(np.count_nonzero(crystal))
    # a brute-force count of V sites without an O among the six neighbours
    brute = sum(
        1
        for i in np.flatnonzero(occ == species.VAC)
        if all(occ[j] != species.OUT for j in lattice.nn[i])
    )
    assert n_int == brute


def test_vacancy_depth_is_the_depth_of_the_cd_profile(cube):
    """KMC: depth below the current surface (as its Cd profile); static: the cube's depth."""
    occ = _pb_cube(cube)
    lo, mid = cube.pad, cube.pad + N // 2
    pit = int(cube.site_index(np.array([lo]), np.array([mid]), np.array([mid]))[0])
    under = int(cube.site_index(np.array([lo + 2]), np.array([mid]), np.array([mid]))[0])
    occ[pit] = species.OUT
    occ[under] = species.VAC  # depth 2 of the cube, depth 1 below the pit
    kmc = ob.hollowness(cube, "kmc", occ)["interior_vacancy_fraction_by_depth"]
    static = ob.VacancyObserver(cube, moving_surface=False).from_occupations(occ)
    mc = static["interior_vacancy_fraction_by_depth"]
    assert kmc[1] > 0
    assert kmc[2] == 0
    assert mc[2] > 0
    assert mc[1] == 0


def test_observers_declare_the_new_trace_datasets(cube):
    kmc = ob.trace_shapes(ob.kmc_observers(cube))
    mc = ob.trace_shapes(ob.mc_observers(cube))
    vac = {"n_vac_interior", "n_vac_surface", "interior_vacancy_fraction"}
    env = {"envelope_edge_nm", "occupied_envelope_edge_nm"}
    assert vac | env <= set(kmc)
    assert not (vac | env) & set(mc)  # MC: no vacancies, no outline change, no edge_nm
    assert ob.hollowness(cube, "canonical_mc", _pb_cube(cube)) == {}
    assert kmc["interior_vacancy_fraction_by_depth"] == ((cube.n_layers,), "f8")
    assert set(ob.hollowness(cube, "kmc", _pb_cube(cube))) == vac | env | {
        "interior_vacancy_fraction_by_depth"
    }


def test_no_crystal_gives_nan_fraction_and_zero_edges(cube):
    occ = np.full(cube.n_sites, species.OUT, dtype=species.OCC_DTYPE)
    h = _kmc(cube, occ)
    assert math.isnan(h["interior_vacancy_fraction"])
    assert h["envelope_edge_nm"] == 0.0 == h["occupied_envelope_edge_nm"]


def _nc(nc, interior, envelope):
    return NCResult(
        treatment="pristine", nc=nc, edge0_nm=12.0, days=[0.0, 14.0], pl_nm=[480.0, 500.0],
        x_cd=[0.25, 0.01], edge_nm=[11.6, 10.7], has_rp=[0.0, 0.0], a_rp=[math.nan] * 2,
        a_pv=[5.8, 5.87], cubic=[1.0, 0.0], cs_ratio=[1.1, 1.3], envelope_edge=envelope,
        occupied_envelope_edge=envelope, interior_vac=interior,
    )  # fmt: skip


def test_reproduce_table_has_ensemble_mean_and_sem_of_the_new_columns():
    ncs = [_nc(0, [0.0, 0.20], [11.6, 11.7]), _nc(1, [0.0, 0.24], [11.6, 11.8])]
    rows = ensemble_table(ncs, {"treatments": {}}, ("pristine",))
    day14 = rows[1]
    assert day14["interior_vacancy_fraction"] == pytest.approx(0.22)
    assert day14["interior_vacancy_fraction_sem"] == pytest.approx(
        np.std([0.2, 0.24], ddof=1) / 2**0.5
    )
    assert day14["envelope_edge_nm"] == pytest.approx(11.75)
    assert day14["envelope_edge_nm_sem"] == pytest.approx(0.05)
    assert rows[0]["interior_vacancy_fraction_sem"] == 0.0
    # a file written before the observables existed gives NaN; its mean and SEM skip it
    old = _nc(2, [math.nan, math.nan], [math.nan, math.nan])
    rows = ensemble_table([*ncs, old], {"treatments": {}}, ("pristine",))
    assert rows[1]["interior_vacancy_fraction"] == pytest.approx(0.22)
    one = ensemble_table([ncs[0]], {"treatments": {}}, ("pristine",))
    assert math.isnan(one[1]["envelope_edge_nm_sem"])


def test_driver_invariant_check_catches_each_violation():
    """``driver._check_invariants``: atoms, vacancy split, outline, interior count."""
    from types import SimpleNamespace

    from segsim import driver
    from segsim.lattice import build_cube

    lattice = build_cube(4, 5.87, 2)
    occ = lattice.empty_occupations()
    inside = np.flatnonzero(lattice.in_nc)
    centre = int(inside[np.flatnonzero(lattice.n_outside_nn[inside] == 0)[0]])
    occ[centre] = species.VAC  # one interior vacancy
    engine = SimpleNamespace(state=SimpleNamespace(occupations=occ))

    def trace(**changes):
        t = {
            "n_cd": np.array([0, 0]),
            "cd_expelled": np.array([0, 0]),
            "n_pb": np.array([63, 63]),
            "pb_expelled": np.array([0, 0]),
            "n_vac": np.array([0, 1]),
            "n_vac_interior": np.array([0, 1]),
            "n_vac_surface": np.array([0, 0]),
        }
        t.update({k: np.array(v) for k, v in changes.items()})
        return t

    driver._check_invariants(engine, lattice, trace())  # all hold
    bad = {
        "n_pb + pb_expelled changes": {"pb_expelled": [0, 1]},
        "n_vac_interior + n_vac_surface != n_vac": {"n_vac_surface": [0, 1]},
        "the last frame says 2": {"n_vac_interior": [0, 2], "n_vac": [0, 2]},
    }
    for needle, changes in bad.items():
        with pytest.raises(RuntimeError, match=re.escape(needle)):
            driver._check_invariants(engine, lattice, trace(**changes))
    occ[int(np.flatnonzero(~lattice.in_nc)[0])] = species.PB
    with pytest.raises(RuntimeError, match="beyond the synthesised cube"):
        driver._check_invariants(engine, lattice, trace())
