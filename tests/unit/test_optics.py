import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsim import optics, species
from segsim.config import ConfigError
from segsim.lattice import build_cube, n_cd_for, random_occupations

HC = 1239.84198
TABLE_X = [0.0, 0.08, 0.12, 0.25]
TABLE_NM = [507.0, 496.0, 484.0, 476.0]


def _cube(n=8, pad=2):
    lat = build_cube(n, 5.87, pad)
    occ = np.full(lat.n_sites, species.OUT, dtype=species.OCC_DTYPE)
    occ[lat.in_nc] = species.PB
    return lat, occ


def _optics_doc():
    return yaml.safe_load(optics.DEFAULT_OPTICS_PATH.read_text())


def _write(tmp_path, doc, name="optics.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


# --- table and PL interpolation -------------------------------------------------------------


def test_default_table_is_the_published_one():
    t = optics.load_pl_table()
    np.testing.assert_array_equal(t.x, TABLE_X)
    np.testing.assert_array_equal(t.peak_nm, TABLE_NM)
    np.testing.assert_array_equal(t.fwhm_nm, [16, 18, 20, 24])
    assert "10.1021/acs.chemmater.0c03825" in t.source
    assert not t.x.flags.writeable
    root = Path(optics.__file__).resolve().parents[1]
    assert root / "potentials" / "optics.yaml" == optics.DEFAULT_OPTICS_PATH


def test_interpolation_passes_through_table_points():
    for x, nm in zip(TABLE_X, TABLE_NM, strict=True):
        assert optics.pl_peak_nm(x) == pytest.approx(nm, abs=1e-9)
    np.testing.assert_allclose(optics.pl_peak_nm(np.array(TABLE_X)), TABLE_NM, atol=1e-9)


def test_interpolation_is_linear_in_energy_not_wavelength():
    xm = 0.5 * (0.12 + 0.25)
    e_mid = 0.5 * (HC / 484.0 + HC / 476.0)
    got = optics.pl_peak_nm(xm)
    assert got == pytest.approx(HC / e_mid, abs=1e-9)
    nm_linear = 0.5 * (484.0 + 476.0)
    assert abs(got - nm_linear) > 0.01  # 479.966 vs 480.000 nm
    # first interval, quarter point
    xq = 0.02
    e_q = HC / 507.0 + 0.25 * (HC / 496.0 - HC / 507.0)
    assert optics.pl_peak_nm(xq) == pytest.approx(HC / e_q, abs=1e-9)


def test_interpolation_is_monotone_and_vectorised():
    x = np.linspace(0.0, 0.25, 1001)
    nm = optics.pl_peak_nm(x)
    assert isinstance(nm, np.ndarray)
    assert nm.shape == x.shape
    assert np.all(np.diff(nm) < 0)  # more Cd -> bluer
    assert isinstance(optics.pl_peak_nm(0.1), float)
    grid = optics.pl_peak_nm(np.full((2, 3), 0.08))
    assert grid.shape == (2, 3)
    np.testing.assert_allclose(grid, 496.0)


def test_interpolation_clamps_outside_the_table():
    assert optics.pl_peak_nm(0.4) == pytest.approx(476.0)
    assert optics.pl_peak_nm(1.0) == pytest.approx(476.0)
    assert optics.pl_peak_nm(-0.1) == pytest.approx(507.0)
    assert math.isnan(optics.pl_peak_nm(math.nan))


def test_custom_table_is_used(tmp_path):
    doc = _optics_doc()
    doc["composition_vs_pl"] = [
        {"x": 0.0, "pl_peak_nm": 500.0, "pl_fwhm_nm": 10.0},
        {"x": 0.5, "pl_peak_nm": 400.0, "pl_fwhm_nm": 10.0},
    ]
    t = optics.load_pl_table(_write(tmp_path, doc))
    e = 0.5 * (HC / 500 + HC / 400)
    assert optics.pl_peak_nm(0.25, t) == pytest.approx(HC / e)


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"),
    [
        (
            lambda d: d["composition_vs_pl"].__setitem__(slice(1, None), []),
            "composition_vs_pl",
            "at least 2",
        ),
        (
            lambda d: d["composition_vs_pl"][2].__setitem__("x", 0.05),
            "composition_vs_pl[2].x",
            "increase",
        ),
        (
            lambda d: d["composition_vs_pl"][1].__setitem__("x", 0.0),
            "composition_vs_pl[1].x",
            "increase",
        ),
        (
            lambda d: d["composition_vs_pl"][0].__setitem__("pl_peak_nm", -5),
            "composition_vs_pl[0].pl_peak_nm",
            "> 0",
        ),
        (
            lambda d: d["composition_vs_pl"][0].__setitem__("pl_peak_nm", "blue"),
            "composition_vs_pl[0].pl_peak_nm",
            "number",
        ),
        (
            lambda d: d["composition_vs_pl"][0].__setitem__("colour", 1),
            "composition_vs_pl[0].colour",
            "allowed keys",
        ),
        (
            lambda d: d["composition_vs_pl"][0].pop("pl_fwhm_nm"),
            "composition_vs_pl[0].pl_fwhm_nm",
            "missing",
        ),
        (lambda d: d.__setitem__("extra", 1), "extra", "allowed keys"),
        (lambda d: d["shannon_radii_angstrom"].pop("Cd"), "shannon_radii_angstrom.Cd", "missing"),
        (
            lambda d: d["phase"].__setitem__("cubic_min_tolerance_factor", True),
            "phase.cubic_min_tolerance_factor",
            "number",
        ),
    ],
)
def test_bad_optics_file_is_one_line_config_error(tmp_path, mutate, key, fragment):
    doc = _optics_doc()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        optics.load_pl_table(path)
    msg = str(err.value)
    assert str(path) in msg
    assert key in msg
    assert fragment in msg
    assert "\n" not in msg
    assert err.value.key == key


def test_missing_or_invalid_yaml_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        optics.load_pl_table(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("composition_vs_pl: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        optics.load_pl_table(bad)


# --- exciton envelope and x_eff ---------------------------------------------------------------


def test_exciton_weights_peak_at_centre_and_are_symmetric():
    n = 7
    lat, occ = _cube(n)
    w = optics.exciton_weights(occ, lat.coords)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w[~lat.in_nc] == 0.0)
    assert np.all(w[lat.in_nc] > 0.0)
    grid = w.reshape(lat.shape)
    box = grid[lat.pad : lat.pad + n, lat.pad : lat.pad + n, lat.pad : lat.pad + n]
    c = n // 2
    assert (
        np.argmax(w)
        == lat.site_index(
            np.array([lat.pad + c]), np.array([lat.pad + c]), np.array([lat.pad + c])
        )[0]
    )
    assert box[c, c, c] == pytest.approx(w.max())
    # mirror symmetric along each axis and symmetric under axis permutations
    np.testing.assert_allclose(box, box[::-1, :, :], rtol=1e-12)
    np.testing.assert_allclose(box, box[:, ::-1, :], rtol=1e-12)
    np.testing.assert_allclose(box, box[:, :, ::-1], rtol=1e-12)
    np.testing.assert_allclose(box, box.transpose(1, 2, 0), rtol=1e-12)
    # corners weigh least; the explicit product of sin^2
    s = np.sin(np.pi * np.arange(1, n + 1) / (n + 1)) ** 2
    expect = np.einsum("i,j,k->ijk", s, s, s)
    np.testing.assert_allclose(box, expect / expect.sum(), rtol=1e-12)
    assert box[0, 0, 0] == pytest.approx(w[lat.in_nc].min())


def test_vacancies_carry_weight_but_outside_sites_do_not():
    lat, occ = _cube(6)
    centre = np.flatnonzero(lat.in_nc & (lat.depth == 2))[0]
    occ[centre] = species.VAC
    w = optics.exciton_weights(occ, lat.coords)
    assert w[centre] > 0.0
    w0 = optics.exciton_weights(np.where(lat.in_nc, species.PB, species.OUT), lat.coords)
    np.testing.assert_allclose(w, w0)


def test_shrunk_crystal_moves_the_box():
    n = 8
    lat, occ = _cube(n)
    z = lat.coords[:, 2]
    top = lat.pad + n - 1
    occ[lat.in_nc & (z == top)] = species.OUT
    w = optics.exciton_weights(occ, lat.coords)
    assert np.all(w[lat.in_nc & (z == top)] == 0.0)
    # the envelope is that of an n x n x (n-1) box: peak moved down by half a layer
    inside = occ != species.OUT
    zc = np.sum(w * z)
    assert zc == pytest.approx(lat.pad + (n - 2) / 2)
    s = np.sin(np.pi * np.arange(1, n + 1) / (n + 1)) ** 2
    sz = np.sin(np.pi * np.arange(1, n) / n) ** 2
    expect = np.einsum("i,j,k->ijk", s, s, sz)
    got = w.reshape(lat.shape)[lat.pad : lat.pad + n, lat.pad : lat.pad + n, lat.pad : top]
    np.testing.assert_allclose(got, expect / expect.sum(), rtol=1e-12)
    assert w[inside].sum() == pytest.approx(1.0)


def test_x_eff_pure_and_complement():
    lat, occ = _cube(8)
    assert optics.x_effective(occ, lat.coords) == 0.0
    occ_cd = np.where(lat.in_nc, species.CD, species.OUT).astype(species.OCC_DTYPE)
    assert optics.x_effective(occ_cd, lat.coords) == pytest.approx(1.0)
    rnd = random_occupations(lat, 0.3, np.random.default_rng(5))
    swapped = rnd.copy()
    swapped[rnd == species.PB] = species.CD
    swapped[rnd == species.CD] = species.PB
    total = optics.x_effective(rnd, lat.coords) + optics.x_effective(swapped, lat.coords)
    assert total == pytest.approx(1.0, abs=1e-12)


def test_x_eff_of_uniform_crystal_is_x():
    lat = build_cube(10, 5.87, 1)
    rng = np.random.default_rng(11)
    x = n_cd_for(lat, 0.25) / lat.n_nc_sites
    vals = [optics.x_effective(random_occupations(lat, 0.25, rng), lat.coords) for _ in range(200)]
    # unbiased: every cation site is Cd with probability x, so E[x_eff] = x
    sem = np.std(vals) / np.sqrt(len(vals))
    assert abs(np.mean(vals) - x) < 4 * sem + 1e-12
    assert np.std(vals) < 0.03


def _layered(lat, n_cd, core_first):
    occ = np.where(lat.in_nc, species.PB, species.OUT).astype(species.OCC_DTYPE)
    sites = np.flatnonzero(lat.in_nc)
    order = np.argsort(lat.depth[sites], kind="stable")
    if core_first:
        order = order[::-1]
    occ[sites[order[:n_cd]]] = species.CD
    return occ


def test_core_enriched_raises_and_surface_enriched_lowers_x_eff():
    lat = build_cube(10, 5.87, 1)
    n_cd = n_cd_for(lat, 0.25)
    x = n_cd / lat.n_nc_sites
    core = _layered(lat, n_cd, core_first=True)
    surf = _layered(lat, n_cd, core_first=False)
    assert optics.x_effective(core, lat.coords) > x + 0.2
    assert optics.x_effective(surf, lat.coords) < x - 0.1
    assert optics.pl_peak_nm(optics.x_effective(core, lat.coords)) < optics.pl_peak_nm(
        optics.x_effective(surf, lat.coords)
    )


def test_x_eff_nan_without_cations_and_shape_check():
    lat, occ = _cube(4)
    occ[lat.in_nc] = species.VAC
    assert math.isnan(optics.x_effective(occ, lat.coords))
    occ[:] = species.OUT
    assert np.all(optics.exciton_weights(occ, lat.coords) == 0.0)
    with pytest.raises(ValueError, match="n_sites"):
        optics.exciton_weights(occ[:-1], lat.coords)


# --- structure -------------------------------------------------------------------------------


def test_vegard_numbers(tmp_path):
    assert optics.vegard_a_angstrom(0.0) == pytest.approx(5.87)
    slope = optics.vegard_slope_angstrom()
    derived = yaml.safe_load(optics.DEFAULT_DERIVED_PATH.read_text())
    assert slope == derived["vegard"]["slope_angstrom"]
    assert -0.5 < slope < -0.2
    assert optics.vegard_a_angstrom(0.25) == pytest.approx(5.87 + 0.25 * slope)
    assert optics.vegard_a_angstrom(0.5, a0_angstrom=6.0, slope_angstrom=-0.4) == pytest.approx(5.8)
    a = optics.vegard_a_angstrom(np.array([0.0, 1.0]), a0_angstrom=5.0, slope_angstrom=-1.0)
    np.testing.assert_allclose(a, [5.0, 4.0])
    # no derived parameters: Shannon estimate 2 (r_Cd - r_Pb)
    assert optics.vegard_slope_angstrom(tmp_path / "missing.yaml") == pytest.approx(-0.48)
    assert optics.shannon_vegard_slope_angstrom() == pytest.approx(2 * (0.95 - 1.19))
    no_key = tmp_path / "derived.yaml"
    no_key.write_text("rp: {eps_rp_ev: 0.1}\n")
    assert optics.vegard_slope_angstrom(no_key) == pytest.approx(-0.48)
    bad = tmp_path / "bad.yaml"
    bad.write_text("vegard: {slope_angstrom: steep}\n")
    with pytest.raises(ConfigError, match=r"vegard\.slope_angstrom"):
        optics.vegard_slope_angstrom(bad)


def test_nc_edge():
    lat, occ = _cube(10)
    d = optics.nc_edge_nm(occ, 0.0, a0_angstrom=5.87)
    assert d == pytest.approx(5.87)  # 10 sites of 0.587 nm
    occ[np.flatnonzero(lat.in_nc)[:500]] = species.VAC  # half the cations gone
    d_half = optics.nc_edge_nm(occ, 0.0, a0_angstrom=5.87)
    assert d_half == pytest.approx(0.587 * 500 ** (1 / 3))
    d_cd = optics.nc_edge_nm(occ, 0.25)
    assert d_cd == pytest.approx(optics.vegard_a_angstrom(0.25) / 10 * 500 ** (1 / 3))
    occ[lat.in_nc] = species.VAC
    assert optics.nc_edge_nm(occ, math.nan) == 0.0


def test_tolerance_factor_and_phase():
    t0 = (1.88 + 1.96) / (math.sqrt(2) * (1.19 + 1.96))
    assert abs(optics.tolerance_factor(0.0) - t0) < 1e-12
    t25 = (1.88 + 1.96) / (math.sqrt(2) * (0.25 * 0.95 + 0.75 * 1.19 + 1.96))
    assert abs(optics.tolerance_factor(0.25) - t25) < 1e-12
    ts = optics.tolerance_factor(np.linspace(0, 1, 11))
    assert np.all(np.diff(ts) > 0)  # smaller B cation -> larger t
    thr = optics.cubic_threshold()
    assert t0 < thr <= t25
    # margin: the EDS uncertainty (+-0.02) around both anchors does not flip the indicator
    assert optics.phase_indicator(0.0) == "orthorhombic"
    assert optics.phase_indicator(0.02) == "orthorhombic"
    assert optics.phase_indicator(0.25) == "cubic"
    assert optics.phase_indicator(0.23) == "cubic"
    out = optics.phase_indicator(np.array([0.0, 0.25, math.nan]))
    assert list(out) == ["orthorhombic", "cubic", "undefined"]
    assert optics.phase_indicator(0.25, threshold=0.9) == "orthorhombic"


# --- per-frame record ------------------------------------------------------------------------


def test_observables_of_a_fresh_uniform_nc():
    lat = build_cube(12, 5.87, 2)
    occ = random_occupations(lat, 0.25, np.random.default_rng(3))
    obs = optics.observables(occ, lat.coords)
    assert tuple(obs) == optics.OBSERVABLE_KEYS
    assert all(isinstance(v, float) for v in obs.values())
    assert obs["x"] == pytest.approx(n_cd_for(lat, 0.25) / lat.n_nc_sites)
    assert obs["x_eff"] == pytest.approx(optics.x_effective(occ, lat.coords))
    assert obs["pl_peak_nm"] == pytest.approx(optics.pl_peak_nm(obs["x_eff"]))
    assert 474.0 < obs["pl_peak_nm"] < 480.0
    assert obs["a_angstrom"] == pytest.approx(optics.vegard_a_angstrom(obs["x"]))
    assert obs["edge_nm"] == pytest.approx(obs["a_angstrom"] * 12 / 10)
    assert obs["tolerance_factor"] == pytest.approx(optics.tolerance_factor(obs["x_eff"]))
    assert obs["is_cubic"] == 1.0


def test_observables_after_cd_loss_and_without_cations():
    lat, occ = _cube(8)
    obs = optics.observables(occ, lat.coords, a0_angstrom=5.87)
    assert obs["x"] == 0.0
    assert obs["pl_peak_nm"] == pytest.approx(507.0)
    assert obs["is_cubic"] == 0.0
    assert obs["edge_nm"] == pytest.approx(0.587 * 8)
    occ[lat.in_nc] = species.VAC
    empty = optics.observables(occ, lat.coords)
    assert math.isnan(empty["x"])
    assert math.isnan(empty["x_eff"])
    assert math.isnan(empty["pl_peak_nm"])
    assert math.isnan(empty["is_cubic"])
    assert empty["edge_nm"] == 0.0
