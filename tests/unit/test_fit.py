"""Fitting the cluster expansion (segsim.training.fit) and the fit report, on synthetic data.

The "reference" energies come from a known random CE (pairs to the second neighbour and
triplets, cutoffs [8.4, 8.4]) whose vacuum energy is zero, evaluated as N_grid * predict on NC
grids, plus Gaussian noise of NOISE_MEV_PER_SITE per B site.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from segsim import species
from segsim.lattice import build_cube, build_periodic
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.training import configurations as conf
from segsim.training import fit as fitmod
from segsim.training.report import write_report

A = 5.87
TRUE_CUTOFFS = (8.4, 8.4)
NOISE_MEV_PER_SITE = 1.0
TEST_CANDIDATES = ((7.0,), (8.4, 8.4), (12.0, 8.4))
TEST_METHODS = ("least-squares", "ardr")
PAD = 3


def _ce_total(ce, occ: np.ndarray, shape) -> float:
    atoms = fitmod.grid_atoms(occ, shape, A)
    return float(ce.predict(atoms)) * len(atoms)


@functools.cache
def true_ce():
    """A random CE (eV per grid site) with E(all-X grid) = 0."""
    from icet import ClusterExpansion

    cs = fitmod.build_cluster_space(TRUE_CUTOFFS, A)
    rng = np.random.default_rng(7)
    params = rng.normal(0.0, 0.03, size=len(cs))
    vac = fitmod.vacuum_cluster_vector(cs, A)
    params[0] = -float(vac[1:] @ params[1:])
    return ClusterExpansion(cs, params)


def _nc_occupations(
    rng: np.random.Generator,
) -> list[tuple[str, str, np.ndarray, tuple, float, int, dict]]:
    out = []
    for n in (3, 4, 5):
        lat = build_cube(n, A, PAD)
        for x in (0.1, 0.25, 0.4):
            arrangements = {
                "uniform_a": conf.uniform_occupations(lat, x, rng),
                "uniform_b": conf.uniform_occupations(lat, x, rng),
                "surface": conf.surface_segregated_occupations(lat, x),
                "core": conf.core_segregated_occupations(lat, x),
                "profile": conf.layer_profile_occupations(
                    lat, x, np.linspace(1.0, 0.3, lat.n_layers), rng
                ),
            }
            for label, occ in arrangements.items():
                tags = {"arrangement": label.split("_")[0]}
                out.append((f"nc{n}_x{x:.2f}_{label}", "nc", occ, lat.shape, x, n, tags))
        for i in range(2):
            occ = conf.uniform_occupations(lat, 0.25, rng)
            sites = np.flatnonzero(lat.in_nc)
            occ[rng.choice(sites, size=i + 1, replace=False)] = species.VAC
            out.append((f"nc{n}_vac{i}", "nc_vacancy", occ, lat.shape, 0.25, n, {}))
    for i, x in enumerate((0.0, 0.125, 0.25, 0.5)):
        lat = build_periodic(4, A)
        occ = conf.uniform_occupations(lat, x, rng)
        out.append((f"bulk4_{i}", "bulk", occ, lat.shape, x, 4, {}))
    return out


@functools.cache
def synthetic_records(noise_mev_per_site: float = NOISE_MEV_PER_SITE) -> tuple[dict, ...]:
    rng = np.random.default_rng(12345)
    ce = true_ce()
    records = []
    for name, kind, occ, shape, x, n, tags in _nc_occupations(rng):
        n_b = int(np.count_nonzero(occ != species.OUT))
        exact = _ce_total(ce, occ, shape)
        noise = rng.normal(0.0, noise_mev_per_site * 1e-3 * n_b)
        records.append(
            {
                "name": name,
                "kind": kind,
                "energy_ev": exact + noise,
                "exact_ev": exact,
                "occupations": occ,
                "shape": tuple(int(s) for s in shape),
                "x_cd": x,
                "n_edge": n,
                "tags": tags,
            }
        )
    records.append({"name": "rp_fault", "kind": "nc_rp", "energy_ev": -1.0, "occupations": None})
    return tuple(records)


@functools.cache
def fitted() -> fitmod.FitResult:
    return fitmod.fit_cluster_expansion(
        list(synthetic_records()),
        cutoff_candidates=TEST_CANDIDATES,
        fit_methods=TEST_METHODS,
        n_splits=5,
        seed=2021,
        learning_fractions=(0.4, 0.7, 1.0),
    )


def test_records_are_validated():
    rec = dict(synthetic_records()[0])
    tr = fitmod.TrainingRecord.from_mapping(rec)
    assert tr.n_grid_sites == 9**3
    assert tr.n_b_sites == 27
    assert tr.energy_per_grid_site_ev == pytest.approx(rec["energy_ev"] / 729)
    bad = dict(rec, shape=(9, 9, 8))
    with pytest.raises(ValueError, match="do not fit"):
        fitmod.TrainingRecord.from_mapping(bad)
    _kept, skipped = fitmod.records_from_mappings(list(synthetic_records()))
    assert skipped == ["rp_fault"]
    _, skipped = fitmod.records_from_mappings([rec, dict(rec, name="pending", energy_ev=None)])
    assert skipped == ["pending"]
    with pytest.raises(ValueError, match="duplicate"):
        fitmod.records_from_mappings([rec, rec])


def test_training_structure_matches_reference_structure_convention():
    rec = fitmod.TrainingRecord.from_mapping(synthetic_records()[3])
    atoms = fitmod.training_structure(rec, A)
    lat = build_cube(rec.n_edge, A, PAD)
    np.testing.assert_allclose(atoms.positions, lat.positions_angstrom)
    np.testing.assert_allclose(atoms.cell.array, lat.cell_angstrom)
    assert list(atoms.symbols) == [species.CE_SYMBOLS[c] for c in rec.occupations]


def test_fit_recovers_energies():
    res = fitted()
    assert res.n_structures == len(synthetic_records()) - 1
    assert res.skipped == ["rp_fault"]
    # CV error comparable to the noise (1 meV per B site), train error below it.
    assert res.cv_rmse_mev_per_site < 2.5 * NOISE_MEV_PER_SITE
    assert res.train_rmse_mev_per_site < 1.5 * NOISE_MEV_PER_SITE
    assert res.cv_rmse_mev_per_nc > res.cv_rmse_mev_per_site  # NCs have > 1 B site
    # The best candidate contains the true cluster space.
    assert len(res.cutoffs) >= len(TRUE_CUTOFFS)
    assert all(c >= t for c, t in zip(res.cutoffs, TRUE_CUTOFFS, strict=False))
    # Every candidate was scored; the nearest-neighbour-only one is much worse.
    assert len(res.candidates) == len(TEST_CANDIDATES) * len(TEST_METHODS)
    nn_only = [c for c in res.candidates if c.cutoffs == (7.0,)]
    assert min(c.cv_rmse_mev_per_site for c in nn_only) > 3 * res.cv_rmse_mev_per_site
    # Selection: lowest CV error of same-crystal energy differences.
    chosen = next(
        c for c in res.candidates if c.cutoffs == res.cutoffs and c.fit_method == res.fit_method
    )
    rel = [c.cv_relative_rmse_mev_per_nc for c in res.candidates]
    assert np.all(np.isfinite(rel))
    assert chosen.cv_relative_rmse_mev_per_nc == min(rel)
    # Predictions against the noise-free energies.
    exact_by_name = {r["name"]: r.get("exact_ev") for r in synthetic_records()}
    exact = np.array([exact_by_name[name] for name in res.names])  # the fit orders by name
    err = (res.predicted_ev_per_site - exact / res.n_b_sites) * 1e3
    assert np.sqrt(np.mean(err**2)) < NOISE_MEV_PER_SITE
    assert np.all(np.isfinite(res.cv_predicted_ev_per_site))
    # Learning curve: nested sizes, ending at the full set.
    sizes = [p.n_train for p in res.learning_curve]
    assert sizes == sorted(sizes)
    assert sizes[-1] == res.n_structures
    assert res.learning_curve[-1].cv_rmse_mev_per_site == pytest.approx(res.cv_rmse_mev_per_site)


def test_metadata_and_eci_table():
    res = fitted()
    meta = res.ce.metadata
    assert meta["segsim_label"] == "fitted"
    assert meta["energy_unit"] == "eV per B-lattice site (total = N_sites * predict)"
    assert meta["segsim_cutoffs_angstrom"] == list(res.cutoffs)
    assert meta["segsim_fit_method"] == res.fit_method
    assert meta["segsim_n_training_structures"] == res.n_structures
    assert meta["segsim_cv_rmse_mev_per_b_site"] == pytest.approx(res.cv_rmse_mev_per_site)
    rows = res.eci_table()
    assert len(rows) == res.n_parameters
    assert rows[0]["order"] == 0
    for row, p in zip(rows, res.parameters, strict=True):
        assert row["eci_ev"] * row["multiplicity"] == pytest.approx(p)


def test_vacuum_costs_nothing_and_padding_does_not_matter():
    res = fitted()
    cs = res.ce.get_cluster_space_copy()
    vac = fitmod.vacuum_cluster_vector(cs, A)
    assert float(vac @ res.parameters) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(3)
    lat3, lat5 = build_cube(4, A, 3), build_cube(4, A, 5)
    occ3 = conf.uniform_occupations(lat3, 0.25, rng)
    occ5 = lat5.empty_occupations()
    occ5[np.flatnonzero(lat5.in_nc)] = occ3[np.flatnonzero(lat3.in_nc)]
    e3 = _ce_total(res.ce, occ3, lat3.shape)
    e5 = _ce_total(res.ce, occ5, lat5.shape)
    assert e3 == pytest.approx(e5, abs=1e-8 * abs(e3))


def test_same_seed_same_ecis():
    kwargs = {
        "cutoff_candidates": ((8.4, 8.4),),
        "fit_methods": ("least-squares", "ardr"),
        "n_splits": 4,
        "seed": 11,
        "learning_fractions": (1.0,),
    }
    a = fitmod.fit_cluster_expansion(list(synthetic_records()), **kwargs)
    b = fitmod.fit_cluster_expansion(list(synthetic_records()), **kwargs)
    np.testing.assert_array_equal(a.parameters, b.parameters)
    assert a.cv_rmse_mev_per_site == b.cv_rmse_mev_per_site
    np.testing.assert_array_equal(a.cv_predicted_ev_per_site, b.cv_predicted_ev_per_site)


def test_written_ce_loads_and_compiles_to_the_reference(tmp_path: Path):
    res = fitted()
    path = res.write_ce(tmp_path / "fitted.ce")
    model = ClusterExpansionModel.from_file(path)
    assert model.metadata["segsim_label"] == "fitted"
    np.testing.assert_array_equal(model.parameters, res.parameters)
    for rec in synthetic_records():
        if rec["kind"] != "nc" or rec["n_edge"] != 5:
            continue
        lat = build_cube(5, A, PAD)
        tables = model.compile(lat)
        e = tables.total_energy(rec["occupations"])
        assert e == pytest.approx(model.predict_total(lat, rec["occupations"]), abs=1e-8)
        # to the fit accuracy (a few meV per B site) against the noise-free reference
        assert abs(e - rec["exact_ev"]) / 125 < 3e-3


def test_lasso_and_bayesian_ridge_run_without_warnings():
    # pyproject turns warnings into errors: the known trainstation/sklearn ones must be
    # filtered inside the fit, and LASSO must be fast (fixed alpha grid, serial).
    res = fitmod.fit_cluster_expansion(
        list(synthetic_records()),
        cutoff_candidates=((8.4,),),
        fit_methods=("lasso", "bayesian-ridge"),
        n_splits=3,
        learning_fractions=(0.5, 1.0),
    )
    assert [c.fit_method for c in res.candidates] == ["lasso", "bayesian-ridge"]
    assert all(np.isfinite(c.cv_rmse_mev_per_site) for c in res.candidates)


def test_fit_errors():
    recs = list(synthetic_records())
    with pytest.raises(ValueError, match="at least 4"):
        fitmod.fit_cluster_expansion(recs[:3])
    with pytest.raises(ValueError, match="at least one"):
        fitmod.fit_cluster_expansion(recs, fit_methods=())


# ------------------------------------------------------------------------ physics checks
def _pair_model_ce(v_cdcd: float, v_cdx_shift: float):
    """An exact nearest-neighbour pair model as a CE with E(vacuum) = 0."""
    from icet import ClusterExpansion

    v = np.zeros((3, 3))  # Pb, Cd, X
    v[1, 1] = v_cdcd
    v[0, 2] = v[2, 0] = 0.1
    v[1, 2] = v[2, 1] = 0.1 + v_cdx_shift
    cs = fitmod.build_cluster_space((7.0,), A)
    rng = np.random.default_rng(0)
    cvs, ys = [], []
    for _ in range(30):
        g = rng.choice(3, size=(4, 4, 4), p=[0.4, 0.3, 0.3])
        e = sum(v[g, np.roll(g, -1, axis=ax)].sum() for ax in range(3))
        occ = np.array([species.PB, species.CD, species.OUT])[g].reshape(-1)
        cvs.append(cs.get_cluster_vector(fitmod.grid_atoms(occ, g.shape, A)))
        ys.append(e / g.size)
    params = np.linalg.lstsq(np.array(cvs), np.array(ys), rcond=None)[0]
    return ClusterExpansion(cs, params)


def _arrangement_records(ce, lat):
    recs = []
    occs = {
        "uniform0": conf.uniform_occupations(lat, 0.25, np.random.default_rng(0)),
        "uniform1": conf.uniform_occupations(lat, 0.25, np.random.default_rng(1)),
        "surface": conf.surface_segregated_occupations(lat, 0.25),
        "core": conf.core_segregated_occupations(lat, 0.25),
    }
    for label, occ in occs.items():
        recs.append(
            {
                "name": f"nc5_x0.25_{label}",
                "kind": "nc",
                "energy_ev": _ce_total(ce, occ, lat.shape),
                "occupations": occ,
                "shape": lat.shape,
                "x_cd": 0.25,
                "n_edge": 5,
                "tags": {"arrangement": label.rstrip("01")},
            }
        )
    return recs


def test_segregation_checks_signs():
    ce = _pair_model_ce(v_cdcd=0.05, v_cdx_shift=-0.02)  # Cd avoids Cd, likes the surface
    lat = build_cube(5, A, PAD)
    recs = _arrangement_records(ce, lat)
    checks = fitmod.segregation_checks(ce, recs + list(synthetic_records())[:3])
    assert set(checks.energies) == {"uniform", "surface", "core"}
    assert checks.energies["uniform"].n_structures == 2
    assert checks.core_minus_uniform_reference_ev > 0.5
    assert checks.surface_minus_uniform_reference_ev < 0
    assert checks.core_minus_uniform_ce_ev == pytest.approx(checks.core_minus_uniform_reference_ev)
    assert checks.ordering_reference == checks.ordering_ce == "core > uniform > surface"
    assert checks.ordering_agrees is True
    assert "core > uniform > surface" in checks.summary()
    # Without records: CE only, built from the configuration builders.
    ce_only = fitmod.segregation_checks(ce, None)
    assert ce_only.ordering_reference is None
    assert ce_only.ordering_agrees is None
    assert ce_only.ordering_ce == "core > uniform > surface"
    assert ce_only.energies["uniform"].n_structures == 8


# ------------------------------------------------------------------------------- report
def test_report_writes_markdown_and_figures(tmp_path: Path):
    res = fitted()
    ce = _pair_model_ce(v_cdcd=0.05, v_cdx_shift=-0.02)
    checks = fitmod.segregation_checks(ce, _arrangement_records(ce, build_cube(5, A, PAD)))
    extra = {"DFT validation": "CP2K single points: *pending*."}
    md = write_report(res, checks, tmp_path / "rep", extra_sections=extra)
    text = md.read_text()
    assert md.name == "fit_report.md"
    for needle in (
        "Training set",
        "Cross-validation",
        "Learning curve",
        "ECIs",
        "Physics checks",
        "core > uniform > surface",
        "DFT validation",
        "*pending*",
        "Derived parameters",
        "meV",
    ):
        assert needle in text
    for png in ("parity.png", "learning_curve.png"):
        p = tmp_path / "rep" / png
        assert p.is_file()
        assert p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the report works without checks too
    md2 = write_report(res, None, tmp_path / "rep2")
    assert "Physics checks" in md2.read_text()


def test_same_crystal_groups_and_relative_rmse():
    from segsim.training.fit import TrainingRecord, relative_rmse, same_crystal_groups

    def rec(name, occ, shape=(3, 3, 3)):
        occ = np.asarray(occ, dtype=np.uint8)
        return TrainingRecord(name=name, kind="nc", energy_ev=0.0, occupations=occ,
                              shape=shape, x_cd=0.0, n_edge=1)  # fmt: skip

    base = [3] * 27
    a = list(base)
    a[13] = 0
    a[12] = 1  # Pb + Cd
    b = list(base)
    b[13] = 1
    b[12] = 0  # same counts, swapped: same group
    c = list(base)
    c[13] = 0
    c[12] = 0  # different composition: alone
    d = list(base)
    d[13] = 1
    d[12] = 0
    groups = same_crystal_groups([rec("a", a), rec("b", b), rec("c", c), rec("d", d, (3, 3, 3))])
    assert groups[0] == groups[1] == groups[3] >= 0
    assert groups[2] == -1
    # A constant offset within a group is no error; a spread is.
    assert relative_rmse(np.array([5.0, 5.0, 9.0, 5.0]), groups) == 0.0
    assert relative_rmse(np.array([1.0, -1.0, 0.0, 0.0]), groups) == pytest.approx(
        np.sqrt(np.mean(np.array([1.0, -1.0, 0.0]) ** 2))
    )
    assert np.isnan(relative_rmse(np.zeros(1), np.array([-1])))


def test_difference_rows_are_within_group_deviations():
    from segsim.training.fit import difference_rows

    design = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [7.0, 7.0]])
    target = np.array([1.0, 3.0, 10.0, 4.0])
    groups = np.array([0, 0, -1, 0])
    rows, ys = difference_rows(design, target, groups, np.arange(4))
    mean = design[[0, 1, 3]].mean(axis=0)
    np.testing.assert_allclose(rows, design[[0, 1, 3]] - mean)
    np.testing.assert_allclose(ys, target[[0, 1, 3]] - target[[0, 1, 3]].mean())
    # Only training members count: with one member left, a group gives no rows.
    rows, ys = difference_rows(design, target, groups, np.array([0, 2]))
    assert rows.shape == (0, 2)
    assert ys.shape == (0,)


def test_group_scores_against_the_all_equal_baseline(tmp_path: Path):
    res = fitted()
    scores = fitmod.group_scores(res)
    assert scores[-1].label == "all"
    groups = res.groups
    assert groups.shape == (res.n_structures,)
    per_group = scores[:-1]
    assert len(per_group) == len(np.unique(groups[groups >= 0]))
    assert sum(g.n_members for g in per_group) == scores[-1].n_members == np.sum(groups >= 0)
    # the baseline is the spread of the reference energies about their group mean
    ref = res.reference_ev_per_site * res.n_b_sites
    for g in per_group:
        members = [i for i, n in enumerate(res.names) if n.startswith(g.label)]
        mine = [i for i in members if groups[i] == groups[members[0]]]
        assert len(mine) == g.n_members
        r = ref[mine]
        assert g.baseline_mev_per_nc == pytest.approx(1e3 * np.sqrt(np.mean((r - r.mean()) ** 2)))
    # pooled CV is the selection score; the synthetic CE has arrangement terms, so it beats
    # "all arrangements equal" by far
    chosen = next(
        c for c in res.candidates if c.cutoffs == res.cutoffs and c.fit_method == res.fit_method
    )
    assert scores[-1].cv_mev_per_nc == pytest.approx(chosen.cv_relative_rmse_mev_per_nc)
    assert scores[-1].cv_mev_per_nc < 0.5 * scores[-1].baseline_mev_per_nc
    text = write_report(res, None, tmp_path / "rep").read_text()
    assert "Same-crystal groups" in text
    assert f"`{per_group[0].label}`" in text


def test_separate_vacancy_fit_writes_a_four_species_ce_that_the_kernels_evaluate(tmp_path: Path):
    res = fitmod.fit_cluster_expansion(
        list(synthetic_records()),
        cutoff_candidates=[TRUE_CUTOFFS],
        # the synthetic energies say nothing about V apart from X: plain least squares is
        # then ill-conditioned (huge cancelling parameters); a Bayesian prior keeps it finite
        fit_methods=["bayesian-ridge"],
        n_splits=5,
        seed=2021,
        learning_fractions=(1.0,),
        separate_vacancy=True,
    )
    assert res.settings["separate_vacancy"] is True
    path = res.write_ce(tmp_path / "v.ce")
    model = ClusterExpansionModel.from_file(path)
    assert model.code_symbols == species.CE_SYMBOLS_SEPARATE_V
    # more parameters than the three-species CE of the same cutoffs
    assert len(model.parameters) > len(fitmod.build_cluster_space(TRUE_CUTOFFS))
    # the compiled tables give the fit's own predictions for the training structures
    recs = {r["name"]: r for r in synthetic_records() if r.get("occupations") is not None}
    nc = [n for n in res.names if recs[n]["kind"] != "bulk"][:4]
    assert any(np.any(np.asarray(recs[n]["occupations"]) == species.VAC) for n in nc)
    for name in nc:
        r = recs[name]
        lat = build_cube(r["n_edge"], A, PAD)
        i = res.names.index(name)
        e_fit = res.predicted_ev_per_site[i] * res.n_b_sites[i]
        occ = np.asarray(r["occupations"])
        assert model.compile(lat).total_energy(occ) == pytest.approx(e_fit, abs=1e-8)
        assert model.predict_total(lat, occ) == pytest.approx(e_fit, abs=1e-8)
    text = write_report(res, None, tmp_path / "rep").read_text()
    assert "V is the internal vacancy" in text


def _naive_site_class_counts(occ: np.ndarray, lat) -> np.ndarray:
    """Site-by-site loop over the lattice's nearest-neighbour table (twin of site_class_counts)."""
    counts = np.zeros(len(fitmod.SITE_CLASS_COLUMNS))
    pairs = {
        (species.CD, species.CD): 8,
        (species.CD, species.VAC): 9,
        (species.VAC, species.VAC): 10,
    }
    for i in range(lat.n_sites):
        if occ[i] not in (species.CD, species.VAC):
            continue
        n_out = sum(1 for j in lat.nn[i] if occ[j] == species.OUT)
        counts[(0 if occ[i] == species.CD else 4) + min(n_out, 3)] += 1
        for j in lat.nn[i]:
            key = tuple(sorted((int(occ[i]), int(occ[j]))))
            if key in pairs:
                counts[pairs[key]] += 0.5  # every bond is seen from both ends
    return counts


@pytest.mark.parametrize("periodic", [False, True])
def test_site_class_counts_match_a_site_by_site_count(periodic: bool):
    rng = np.random.default_rng(3)
    lat = build_periodic(2, A) if periodic else build_cube(4, A, PAD)
    for trial in range(5):
        occ = conf.uniform_occupations(lat, 0.4, rng)
        inside = np.flatnonzero(occ != species.OUT)
        occ[rng.choice(inside, size=2 + trial % 2, replace=False)] = species.VAC
        rec = fitmod.TrainingRecord(name="t", kind="nc", energy_ev=0.0, occupations=occ,
                                    shape=lat.shape, x_cd=0.4, n_edge=lat.n_edge)  # fmt: skip
        got = fitmod.site_class_counts(rec)
        np.testing.assert_array_equal(got, _naive_site_class_counts(occ, lat))
        assert got[:4].sum() == np.count_nonzero(occ == species.CD)
        assert got[4:8].sum() == np.count_nonzero(occ == species.VAC)
    if not periodic:  # a corner Cd has 3 outside neighbours, a centre one none
        occ = np.where(lat.in_nc, species.PB, species.OUT).astype(np.uint8)
        occ[np.flatnonzero(lat.n_outside_nn == 3)[0]] = species.CD
        occ[np.flatnonzero(lat.n_outside_nn == 0)[0]] = species.CD
        rec = fitmod.TrainingRecord(name="t", kind="nc", energy_ev=0.0, occupations=occ,
                                    shape=lat.shape, x_cd=0.0, n_edge=4)  # fmt: skip
        np.testing.assert_array_equal(fitmod.site_class_counts(rec)[:4], [1, 0, 0, 1])


def test_local_loo_finds_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 8, size=(20, 3)).astype(float)
    counts = np.column_stack([counts, np.full(20, 4.0)])  # a constant column is dropped
    exact = counts[:, :3] @ np.array([0.05, -0.02, 0.03]) + 7.0
    assert fitmod._local_loo_rmse(exact, counts) == pytest.approx(0.0, abs=1e-9)
    noise = rng.normal(0.0, 0.1, size=20)
    base = float(np.sqrt(np.mean((noise - noise.mean()) ** 2)))
    assert fitmod._local_loo_rmse(noise, counts) > base  # unexplained: LOO above the spread
    # too few members for the columns: not computed
    assert np.isnan(fitmod._local_loo_rmse(exact[:6], counts[:6]))


def test_group_scores_report_the_start_noise(tmp_path: Path):
    rng = np.random.default_rng(11)
    records = [dict(r) for r in synthetic_records()]
    sems = {}
    for r in records:
        if r["occupations"] is not None:
            r["energy_sem_ev"] = sems[r["name"]] = float(rng.uniform(0.001, 0.02))
    res = fitmod.fit_cluster_expansion(
        records, cutoff_candidates=((7.0,),), fit_methods=("least-squares",), n_splits=5,
        learning_fractions=(1.0,),
    )  # fmt: skip
    scores = fitmod.group_scores(res)
    for g in scores[:-1]:
        mine = [n for i, n in enumerate(res.names) if res.groups[i] >= 0 and n.startswith(g.label)]
        mine = [
            n
            for n in mine
            if res.groups[res.names.index(n)] == res.groups[res.names.index(mine[0])]
        ]
        expect = 1e3 * np.sqrt(np.mean([sems[n] ** 2 for n in mine]))
        assert g.start_sem_mev_per_nc == pytest.approx(expect)
    text = write_report(res, None, tmp_path / "rep").read_text()
    assert "start SEM (meV/NC)" in text
    # five arrangements per crystal are too few for the site-class model: no column
    assert all(np.isnan(g.local_loo_mev_per_nc) for g in scores)
    assert "site-class LOO (meV/NC)" not in text
    # without start averages there is no SEM column
    plain = write_report(fitted(), None, tmp_path / "rep2").read_text()
    assert "start SEM (meV/NC)" not in plain


def test_noise_row_scale_weights_structures_by_their_noise():
    recs = [
        fitmod.TrainingRecord.from_mapping(r)
        for r in synthetic_records()
        if r["occupations"] is not None
    ]
    recs[0] = fitmod.TrainingRecord.from_mapping(dict(synthetic_records()[0], energy_sem_ev=0.05))
    scale = fitmod.noise_row_scale(recs, (0.12, 0.03))
    assert scale.mean() == pytest.approx(1.0)
    periodic = np.array([r.n_b_sites == r.n_grid_sites for r in recs])
    assert periodic.any()
    assert (~periodic).any()
    raw = np.array(
        [r.n_b_sites / np.hypot(0.05 if i == 0 else 0.0, 0.03 if p else 0.12)
         for i, (r, p) in enumerate(zip(recs, periodic, strict=True))]
    )  # fmt: skip
    np.testing.assert_allclose(scale, raw / raw.mean())
    with pytest.raises(ValueError, match="must be > 0"):
        fitmod.noise_row_scale(recs, (0.0, 0.03))


def test_noise_weights_are_a_weighted_least_squares_fit(tmp_path: Path):
    """With the noise weights, least squares is the weighted solution of the same problem."""
    from sklearn.model_selection import KFold

    records = [r for r in synthetic_records() if r["occupations"] is not None]
    noise = (0.5, 0.001)  # NCs nearly ignored against the periodic cells
    res = fitmod.fit_cluster_expansion(
        records, cutoff_candidates=((7.0,),), fit_methods=("least-squares",), n_splits=5,
        learning_fractions=(1.0,), structure_noise_ev=noise,
    )  # fmt: skip
    plain = fitmod.fit_cluster_expansion(
        records, cutoff_candidates=((7.0,),), fit_methods=("least-squares",), n_splits=5,
        learning_fractions=(1.0,),
    )  # fmt: skip
    assert res.settings["structure_noise_ev"] == [0.5, 0.001]
    assert plain.settings["structure_noise_ev"] is None
    assert "`tau` = 0.5 eV for NCs and 0.001 eV" in write_report(res, None, tmp_path).read_text()
    # the same problem solved by hand with numpy's weighted least squares
    kept = sorted(fitmod.records_from_mappings(records)[0], key=lambda r: r.name)
    cs = fitmod.build_cluster_space((7.0,), A)
    sc = fitmod.build_structure_container(cs, kept, A)
    prob = fitmod._make_problem(cs, sc, kept, A, 0.0)
    w = fitmod.noise_row_scale(kept, noise)
    coef = np.linalg.lstsq(prob.design * w[:, None], prob.target * w, rcond=None)[0]
    np.testing.assert_allclose(res.parameters, prob.full_parameters(coef), atol=1e-9)
    assert not np.allclose(res.parameters, plain.parameters, atol=1e-6)
    # CV predictions stay energies per B site (unweighted), held-out folds as KFold gives them
    test = next(iter(KFold(5, shuffle=True, random_state=2021).split(prob.design)))[1]
    train = np.setdiff1d(np.arange(len(kept)), test)
    c = np.linalg.lstsq(prob.design[train] * w[train, None], prob.target[train] * w[train],
                        rcond=None)[0]  # fmt: skip
    shift = prob.y_site - prob.target
    np.testing.assert_allclose(
        res.cv_predicted_ev_per_site[test], prob.design[test] @ c + shift[test], atol=1e-9
    )


def _vacancy_interaction_ev(tables, n_sites: int, j: int, code: int) -> float:
    """W = E(code at 0, V at j) - E(code at 0) - E(V at j) + E(all Pb), from segsim's kernels."""

    def energy(changes: dict[int, int]) -> float:
        occ = np.full(n_sites, species.PB, dtype=species.OCC_DTYPE)
        for site, c in changes.items():
            occ[site] = c
        return float(tables.total_energy(occ))

    return (
        energy({0: code, j: species.VAC})
        - energy({0: code})
        - energy({j: species.VAC})
        + energy({})
    )


def _vacancy_interactions(ce) -> dict[tuple[int, int], float]:
    """W(code, V; d^2) for d^2 = 1..4 and code in (Cd, V, X), in a periodic 7^3 cell."""
    lat = build_periodic(7, A)
    tables = ClusterExpansionModel(ce).compile(lat)
    out = {}
    for r in ((1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 0, 0)):
        j = int(lat.site_index(np.array(r[0]), np.array(r[1]), np.array(r[2])))
        for code in (species.CD, species.VAC, species.OUT):
            out[(sum(c * c for c in r), code)] = _vacancy_interaction_ev(
                tables, lat.n_sites, j, code
            )
    return out


def test_vacancy_pair_constraint_removes_exactly_the_vacancy_interactions_beyond_the_cutoff():
    """Any CE in the constrained basis: a vacancy feels Cd, V and X beyond 6 A exactly as Pb.

    The interactions are evaluated with segsim's compiled kernels (not icet's cluster
    vectors, from which the constraint rows are built), on a periodic cell of another size.
    """
    from icet import ClusterExpansion

    cs = fitmod.build_cluster_space((12.0,), A, separate_vacancy=True)
    rows = fitmod.vacancy_pair_constraints(cs, 6.0, A)
    assert rows.shape == (9, len(cs))  # d^2 = 2, 3, 4, each for Cd, V and X
    basis = fitmod.constrained_basis(rows, len(cs))
    assert np.linalg.matrix_rank(rows) == 9
    assert basis.shape == (len(cs), len(cs) - 9)
    assert np.allclose(rows @ basis, 0.0, atol=1e-12)
    assert np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-12)
    # parameters no constraint touches (at least the constant, the points and the
    # nearest-neighbour pairs) keep a unit column of their own: sparse fits stay sparse
    free = np.flatnonzero(np.all(np.abs(rows) < 1e-12, axis=0))
    assert set(range(1 + 3 + 6)) <= set(free.tolist())
    for k in free:
        assert np.sum(np.isclose(basis[k], 1.0)) == 1
        assert np.sum(np.abs(basis[k])) == 1.0
    params = basis @ np.random.default_rng(3).normal(0.0, 0.05, basis.shape[1])
    w = _vacancy_interactions(ClusterExpansion(cs, params))
    for (d2, code), value in w.items():
        if d2 == 1:
            assert abs(value) > 1e-4, (d2, code)  # nearest neighbours: free
        else:
            assert abs(value) < 1e-9, (d2, code, value)
    # the same random parameters without the constraint interact at every distance
    free = ClusterExpansion(cs, np.random.default_rng(3).normal(0.0, 0.05, len(cs)))
    assert all(abs(v) > 1e-4 for v in _vacancy_interactions(free).values())
    # below the nearest-neighbour distance nothing is left free; beyond the pairs, nothing
    assert fitmod.vacancy_pair_constraints(cs, 12.0, A).shape == (0, len(cs))
    assert fitmod.vacancy_pair_constraints(cs, 1.0, A).shape == (12, len(cs))
    with pytest.raises(ValueError, match="separate vacancy"):
        fitmod.vacancy_pair_constraints(fitmod.build_cluster_space((12.0,), A), 6.0, A)


def test_vacancy_pair_partners_constrain_only_the_named_species():
    """V-V and V-Cd held to the nearest neighbour, V-X free: exactly that, in the kernels."""
    from icet import ClusterExpansion

    cs = fitmod.build_cluster_space((12.0,), A, separate_vacancy=True)
    rows = fitmod.vacancy_pair_constraints(cs, 6.0, A, partners=("Cd", "V"))
    assert rows.shape == (6, len(cs))  # d^2 = 2, 3, 4, each for Cd and V
    every = fitmod.vacancy_pair_constraints(cs, 6.0, A)
    assert np.allclose(rows, every[[i for i in range(9) if i % 3 != 2]])  # the X rows left out
    basis = fitmod.constrained_basis(rows, len(cs))
    params = basis @ np.random.default_rng(5).normal(0.0, 0.05, basis.shape[1])
    w = _vacancy_interactions(ClusterExpansion(cs, params))
    for (d2, code), value in w.items():
        if d2 > 1 and code in (species.CD, species.VAC):
            assert abs(value) < 1e-9, (d2, code, value)
        else:
            assert abs(value) > 1e-4, (d2, code, value)  # nearest neighbours and V-X: free
    assert fitmod.vacancy_pair_constraints(cs, 6.0, A, partners=()).shape == (0, len(cs))
    with pytest.raises(ValueError, match="partners must be among"):
        fitmod.vacancy_pair_constraints(cs, 6.0, A, partners=("Pb",))


def test_structure_weights_scale_rows_and_zero_takes_a_structure_out_of_the_fit():
    names = ["nc4_x0_v4-face-square", "nc4_x0_v2-face", "bulk2_x0", "nc5_x0_v2-face"]
    w = fitmod.structure_weight_factors(names, {"nc4_x0_v4-*": 0.0, "nc*_v2-*": 3.0})
    assert w.tolist() == [0.0, 3.0, 1.0, 3.0]
    # the first matching pattern decides
    w = fitmod.structure_weight_factors(names, {"nc4_*": 2.0, "nc4_x0_v4-*": 0.0})
    assert w.tolist() == [2.0, 2.0, 1.0, 1.0]
    assert fitmod.structure_weight_factors(names, None).tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="finite and >= 0"):
        fitmod.structure_weight_factors(names, {"nc*": -1.0})
    # weight 0: the structure's energy does not enter the fit (here: shifting it by 5 eV
    # changes nothing), but it is still predicted by the cross-validation and reported
    recs = list(synthetic_records())
    dropped = recs[3]["name"]
    shifted = [dict(r, energy_ev=r["energy_ev"] + 5.0) if r["name"] == dropped else r for r in recs]
    kwargs = {
        "cutoff_candidates": [(7.0,)],
        "fit_methods": ["least-squares"],
        "n_splits": 5,
        "learning_fractions": (1.0,),
        "separate_vacancy": True,
    }
    weights = {dropped: 0.0}
    weighted = fitmod.fit_cluster_expansion(recs, structure_weights=weights, **kwargs)
    moved = fitmod.fit_cluster_expansion(shifted, structure_weights=weights, **kwargs)
    np.testing.assert_array_equal(weighted.ce.parameters, moved.ce.parameters)
    plain = fitmod.fit_cluster_expansion(recs, **kwargs)
    plain_moved = fitmod.fit_cluster_expansion(shifted, **kwargs)
    i = plain.names.index(dropped)
    assert abs(plain_moved.predicted_ev_per_site[i] - plain.predicted_ev_per_site[i]) > 1e-3
    assert dropped in weighted.names
    assert np.isfinite(weighted.cv_predicted_ev_per_site[weighted.names.index(dropped)])
    assert weighted.settings["structure_weights"] == {dropped: 0.0}
    assert "structure_weights" not in plain.settings  # the defaults are not recorded


def test_constrained_fit_has_no_long_range_vacancy_interaction(tmp_path: Path):
    kwargs = {
        "fit_methods": ["bayesian-ridge"],
        "n_splits": 5,
        "seed": 2021,
        "learning_fractions": (1.0,),
        "separate_vacancy": True,
    }
    recs = list(synthetic_records())
    res = fitmod.fit_cluster_expansion(
        recs, cutoff_candidates=[(6.0,), (12.0,)], vacancy_pair_cutoff_angstrom=6.0, **kwargs
    )
    assert res.settings["vacancy_pair_cutoff_angstrom"] == 6.0
    # the nearest-neighbour candidate has nothing to constrain
    by_cut = {c.cutoffs: c for c in res.candidates}
    assert by_cut[(6.0,)].vacancy_pair_cutoff_angstrom is None
    assert by_cut[(12.0,)].vacancy_pair_cutoff_angstrom == 6.0
    ce = fitmod.fit_cluster_expansion(
        recs, cutoff_candidates=[(12.0,)], vacancy_pair_cutoff_angstrom=6.0, **kwargs
    ).ce
    w = _vacancy_interactions(ce)
    assert max(abs(v) for (d2, _), v in w.items() if d2 > 1) < 1e-9
    text = write_report(res, None, tmp_path / "rep").read_text()
    assert "Vacancy pair constraint" in text
    assert "| V pairs to (A) |" in text
    free = fitmod.fit_cluster_expansion(recs, cutoff_candidates=[(12.0,)], **kwargs).ce
    assert max(abs(v) for (d2, _), v in _vacancy_interactions(free).items() if d2 > 1) > 1e-4
    # the constrained CE still reproduces its training energies through the compiled kernels
    path = tmp_path / "c.ce"
    ce.write(str(path))
    model = ClusterExpansionModel.from_file(path)
    r = next(r for r in recs if r["name"].startswith("nc4_vac1"))
    lat = build_cube(4, A, PAD)
    assert model.compile(lat).total_energy(np.asarray(r["occupations"])) == pytest.approx(
        model.predict_total(lat, np.asarray(r["occupations"])), abs=1e-8
    )


def _cluster_energy(tables, lat, sites, codes) -> float:
    """Inclusion-exclusion energy of a cluster in a Pb crystal, from segsim's kernels."""
    import itertools

    idx = [int(lat.site_index(np.array(s[0]), np.array(s[1]), np.array(s[2]))) for s in sites]
    total = 0.0
    for k in range(len(idx) + 1):
        for subset in itertools.combinations(range(len(idx)), k):
            occ = np.full(lat.n_sites, species.PB, dtype=species.OCC_DTYPE)
            for i in subset:
                occ[idx[i]] = codes[i]
            total += (-1.0) ** (len(idx) - k) * float(tables.total_energy(occ))
    return total


def test_vacancy_cluster_terms_leave_only_the_named_many_body_energies():
    """In the constrained basis the triplets carry V-V-V (and V-V-X with X at an end) only.

    The energies are evaluated with segsim's compiled kernels on a periodic 6^3 cell (the
    rows come from icet cluster vectors of a 7^3 cell), for random parameters.
    """
    from icet import ClusterExpansion

    cs = fitmod.build_cluster_space((8.4, 8.4), A, separate_vacancy=True)
    lat = build_periodic(6, A)
    L = ((1, 0, 0), (0, 0, 0), (0, 1, 0))  # the L triplet, corner in the middle
    TRI = ((1, 1, 0), (1, 0, 1), (0, 1, 1))  # the triangle of second neighbours
    V, X, CD = species.VAC, species.OUT, species.CD
    cases = {
        "VVV on L": (L, (V, V, V)),
        "VVX on L, X at an end": (L, (V, V, X)),
        "VXV on L, X at the corner": (L, (V, X, V)),
        "VVCd on L": (L, (V, V, CD)),
        "CdCdCd on L": (L, (CD, CD, CD)),
        "VVV on the triangle": (TRI, (V, V, V)),
    }
    rng = np.random.default_rng(7)
    for terms, nonzero in (
        (["V-V-V"], {"VVV on L"}),
        (["V-V-V", "X-V-V"], {"VVV on L", "VVX on L, X at an end"}),
    ):
        rows = fitmod.vacancy_cluster_constraints(cs, terms, A)
        directions = fitmod.vacancy_cluster_directions(cs, terms, A)
        assert directions.shape == (len(cs), len(nonzero))
        assert np.allclose(rows @ directions, 0.0, atol=1e-10)
        basis = fitmod.constrained_basis(rows, len(cs))
        params = basis @ rng.normal(0.0, 0.05, basis.shape[1])
        tables = ClusterExpansionModel(ClusterExpansion(cs, params)).compile(lat)
        for label, (sites, codes) in cases.items():
            w = _cluster_energy(tables, lat, sites, codes)
            if label in nonzero:
                assert abs(w) > 1e-4, (terms, label)
            else:
                assert abs(w) < 1e-9, (terms, label, w)
        # each direction: 1 eV per cluster of its term, nothing else (no pair, no point)
        for j in range(directions.shape[1]):
            tables = ClusterExpansionModel(ClusterExpansion(cs, directions[:, j])).compile(lat)
            got = {lab: _cluster_energy(tables, lat, s, c) for lab, (s, c) in cases.items()}
            assert sorted(round(v, 9) for v in got.values()) == [0.0] * 5 + [1.0]
            pair = _cluster_energy(tables, lat, L[:2], (V, V))
            point = _cluster_energy(tables, lat, L[:1], (V,))
            assert abs(pair) < 1e-9
            assert abs(point) < 1e-9
    # unconstrained random parameters: every case interacts
    tables = ClusterExpansionModel(ClusterExpansion(cs, rng.normal(0.0, 0.05, len(cs)))).compile(
        lat
    )
    assert all(abs(_cluster_energy(tables, lat, s, c)) > 1e-4 for s, c in cases.values())
    # the straight triplet needs its end pair (2a) in the pair cutoff to carry a term alone
    cs12 = fitmod.build_cluster_space((10.2, 12.0), A, separate_vacancy=True)
    assert fitmod.vacancy_cluster_directions(cs12, ["V-V-V"], A).shape[1] == 1  # L only
    for bad in ("V-V", "Pb-V-V", "Cd-Cd-X"):
        with pytest.raises(ValueError, match="vacancy cluster term"):
            fitmod.parse_cluster_term(bad)


def test_vacancy_cluster_fit_counts_the_term_and_keeps_the_pair_constraint(tmp_path: Path):
    """A fit with ``vacancy_cluster_terms``: the V-V-V energy of the data, nothing else."""
    from icet import ClusterExpansion

    kwargs = {
        "fit_methods": ["bayesian-ridge"],  # the synthetic set leaves V terms undetermined
        "n_splits": 5,
        "seed": 2021,
        "learning_fractions": (1.0,),
        "separate_vacancy": True,
        "vacancy_pair_cutoff_angstrom": 6.0,
    }
    recs = list(synthetic_records())
    res = fitmod.fit_cluster_expansion(
        recs, cutoff_candidates=[(8.4, 8.4)], vacancy_cluster_terms=["V-V-V"], **kwargs
    )
    assert res.settings["vacancy_cluster_terms"] == ["V-V-V"]
    text = write_report(res, None, tmp_path / "rep").read_text()
    assert "Many-body vacancy terms: the clusters of three or more sites carry only `V-V-V`" in text
    ce = res.ce
    w = _vacancy_interactions(ce)
    assert max(abs(v) for (d2, _), v in w.items() if d2 > 1) < 1e-9
    lat = build_periodic(6, A)
    tables = ClusterExpansionModel(ce).compile(lat)
    V = species.VAC
    tri = _cluster_energy(tables, lat, ((1, 1, 0), (1, 0, 1), (0, 1, 1)), (V, V, V))
    vvcd = _cluster_energy(tables, lat, ((1, 0, 0), (0, 0, 0), (0, 1, 0)), (V, V, species.CD))
    assert abs(tri) < 1e-9
    assert abs(vvcd) < 1e-9
    # no synthetic structure holds three vacancies on an L: the term is left at exactly 0
    vvv = _cluster_energy(tables, lat, ((1, 0, 0), (0, 0, 0), (0, 1, 0)), (V, V, V))
    assert abs(vvv) < 1e-9
    # and without the option the triplets are free (the same data set them)
    free = fitmod.fit_cluster_expansion(recs, cutoff_candidates=[(8.4, 8.4)], **kwargs).ce
    t_free = ClusterExpansionModel(ClusterExpansion.read(_written(free, tmp_path))).compile(lat)
    assert (
        abs(_cluster_energy(t_free, lat, ((1, 0, 0), (0, 0, 0), (0, 1, 0)), (V, V, species.CD)))
        > 1e-6
    )


def _written(ce, tmp_path: Path) -> str:
    path = tmp_path / "free.ce"
    ce.write(str(path))
    return str(path)
