"""``segsim train`` end to end with the cheap stand-in calculator (no torch, no CP2K)."""

import numpy as np
import pytest
import yaml

from segsim.cli import main
from segsim.models.cluster_expansion import ClusterExpansionModel
from segsim.training.reference import load_references


def _doc():
    return {
        "structures": {
            "nc_edges": [2, 3],
            "compositions": [0.25, 0.5],
            "n_random": 2,
            "n_profiles": 1,
            "vacancy_structures": 1,
            "bulk_sizes": [2],
            "bulk_compositions": [0.0, 0.5, 1.0],
            "rp_edges": [3],
        },
        "calculator": {"kind": "standin", "max_steps": 5},
        "fit": {
            "cutoff_candidates": [[6.0], [8.4]],
            "fit_methods": ["least-squares"],
            "n_splits": 3,
            "check_edge_nm": 3.0,
            "check_steps": 2000,
        },
        "paths": {"database": "refs.db", "output_dir": "out"},
    }


def test_train_pipeline_resumes_and_writes_potentials(tmp_path, capsys):
    inp = tmp_path / "train.yaml"
    inp.write_text(yaml.safe_dump(_doc()))
    assert main(["train", str(inp), "-q"]) == 0
    first = capsys.readouterr().out
    n = int(first.split()[0])
    assert f"({n} computed now)" in first
    assert "same-crystal differences: CV " in first
    assert "for 'all arrangements equal'" in first
    out = tmp_path / "out"
    for name in (
        "fitted.ce",
        "fit_report.md",
        "parity.png",
        "learning_curve.png",
        "derived_parameters.yaml",
    ):
        assert (out / name).stat().st_size > 0, name
    report = (out / "fit_report.md").read_text()
    assert "CV" in report
    assert "Derived parameters" in report
    assert "Extrapolation check: a 3 nm NC" in report
    assert "Cd fraction by depth, surface -> core:" in report
    params = yaml.safe_load((out / "derived_parameters.yaml").read_text())
    assert params["vegard"]["points"]
    assert params["rp"]["eta_ev"] is not None
    # a second run reuses every reference energy and reproduces the same CE
    ce1 = ClusterExpansionModel.from_file(out / "fitted.ce").parameters
    assert main(["train", str(inp), "-q"]) == 0
    assert "(0 computed now)" in capsys.readouterr().out
    ce2 = ClusterExpansionModel.from_file(out / "fitted.ce").parameters
    assert np.array_equal(ce1, ce2)
    recs = load_references(tmp_path / "refs.db")
    assert len(recs) == n
    assert {r["calculator_kind"] for r in recs} == {"standin"}
    assert all(r["provenance"] for r in recs)
    # Three species: no CsBr potential in the CE.  Four species (refit from the same rows):
    # the lowest energy per CsBr unit of the CsBr cells, which the KMC's recession rule reads.
    assert ClusterExpansionModel.from_file(out / "fitted.ce").mu_csbr_ev is None
    doc = _doc()
    doc["fit"]["separate_vacancy"] = True
    doc["paths"]["output_dir"] = "out4"
    inp.write_text(yaml.safe_dump(doc))
    assert main(["train", str(inp), "-q"]) == 0
    assert "(0 computed now)" in capsys.readouterr().out
    model = ClusterExpansionModel.from_file(tmp_path / "out4" / "fitted.ce")
    csbr = [r for r in recs if r["kind"] == "ref_csbr"]
    assert len(csbr) == 2
    mu = min(r["energy_ev"] / (r["n_atoms"] / 2) for r in csbr)
    assert model.mu_csbr_ev == pytest.approx(mu, rel=1e-12)
    assert model.separate_vacancy


def test_train_cached_only_fits_a_partial_database_without_computing(tmp_path, capsys):
    doc = _doc()
    inp = tmp_path / "train.yaml"
    # no database yet: a one-line error, nothing written
    inp.write_text(yaml.safe_dump(doc))
    assert main(["train", str(inp), "-q", "--cached-only"]) == 2
    assert "no reference database" in capsys.readouterr().err
    assert not (tmp_path / "refs.db").exists()
    # compute a smaller set (no n = 3 NCs but the RP one), then ask for the whole set cached-only
    # (with two worker processes: --jobs overrides calculator.jobs, a bad value is refused)
    small = {**doc, "structures": {**doc["structures"], "nc_edges": [2]}}
    inp.write_text(yaml.safe_dump(small))
    assert main(["train", str(inp), "-q", "--jobs", "0"]) == 2
    assert "--jobs must be a positive integer (got 0)" in capsys.readouterr().err
    assert main(["train", str(inp), "-q", "--jobs", "2"]) == 0
    n_small = int(capsys.readouterr().out.split()[0])
    inp.write_text(yaml.safe_dump(doc))
    assert main(["train", str(inp), "-q", "--cached-only"]) == 0
    captured = capsys.readouterr()
    assert "removed" not in captured.err
    out = captured.out
    n_all = int(out.split()[0])
    assert n_all > n_small
    assert f"(0 computed now, {n_all - n_small} not yet computed)" in out
    assert len(load_references(tmp_path / "refs.db")) == n_small  # nothing added or pruned
    report = (tmp_path / "out" / "fit_report.md").read_text()
    assert f"partial: {n_small} of {n_all} structures computed" in report
    # --cached-only on a complete database: the same CE as a full run, no "partial"
    inp.write_text(yaml.safe_dump(small))
    assert main(["train", str(inp), "-q", "--cached-only"]) == 0
    cached = ClusterExpansionModel.from_file(tmp_path / "out" / "fitted.ce")
    assert "partial" not in cached.metadata["segsim_description"]
    assert main(["train", str(inp), "-q"]) == 0
    full = ClusterExpansionModel.from_file(tmp_path / "out" / "fitted.ce")
    assert cached.metadata == full.metadata
    np.testing.assert_array_equal(cached.parameters, full.parameters)
    capsys.readouterr()
    # a full run of the smaller set again prunes the rows it does not use, and says so
    inp.write_text(yaml.safe_dump({**small, "calculator": {**small["calculator"], "max_steps": 4}}))
    assert main(["train", str(inp), "-q"]) == 0
    assert f"removed {n_small} rows that this input does not use" in capsys.readouterr().err


def _mc_input(tmp_path, **fit):
    """Write the stand-in input with MC validation settings (no 12 nm check) and return it."""
    doc = _doc()
    doc["fit"] = {**doc["fit"], "check_steps": 0, "mc_validation_sweeps": 50, **fit}
    inp = tmp_path / "train.yaml"
    inp.write_text(yaml.safe_dump(doc))
    return inp


def test_train_mc_validation_checks_the_ce_mc_against_the_reference(tmp_path, capsys):
    """MC of the fitted CE, both arrangements relaxed by the reference, in a database of their own."""
    from segsim.training import mc_validation

    inp = _mc_input(
        tmp_path, mc_validation=["bulk2", "bulk3", "nc3"], mc_validation_temperature_k=300.0
    )
    assert main(["train", str(inp), "-q"]) == 0
    printed = capsys.readouterr().out
    val_db = tmp_path / "refs_mcval.db"
    recs = {r["name"]: r for r in load_references(val_db)}
    assert {r["kind"] for r in recs.values()} == {"mcval_bulk", "mcval_nc"}
    assert not [r for r in load_references(tmp_path / "refs.db") if r["kind"].startswith("mcval")]
    report = (tmp_path / "out" / "fit_report.md").read_text()
    assert "MC validation: the CE's Monte Carlo against the reference" in report
    assert "not computed" not in report
    # The table's numbers are the differences of the stored energies and of the CE.
    pairs, skipped = mc_validation.validation_pairs(
        tmp_path / "out" / "fitted.ce",
        [("bulk", 2, 0.25), ("bulk", 3, 0.25), ("nc", 3, 0.25)],
        sweeps=50,
        temperature_k=300.0,
        seed=2021,
        pad=3,
        vacuum_angstrom=8.0,
    )
    model = ClusterExpansionModel.from_file(tmp_path / "out" / "fitted.ce")
    if model.reach >= 1:  # a 2^3 cell is too small for it: skipped, and the report says why
        assert [p.label for p in pairs] == ["bulk3_x0.25", "nc3_x0.25"]
        assert skipped[0] in report
    rows = mc_validation.compare(pairs, list(recs.values()))
    for p, row in zip(pairs, rows, strict=True):
        assert p.final.name in recs  # the same MC, reproduced
        assert p.start.name in recs
        ref_de = recs[p.final.name]["energy_ev"] - recs[p.start.name]["energy_ev"]
        assert row["ref_de_ev"] == ref_de
        tables = model.compile(p.start.lattice)
        ce_de = tables.total_energy(p.final.occupations) - tables.total_energy(p.start.occupations)
        assert row["ce_de_ev"] == ce_de
        assert f"{row['ref_de_ev']:+.3f}" in report
        assert (
            f"MC validation {row['label']}: CE {row['ce_de_ev']:+.3f} eV, reference "
            f"{row['ref_de_ev']:+.3f} eV" in printed
        )
        assert p.acceptance > 0.0
    assert not np.array_equal(pairs[-1].start.occupations, pairs[-1].final.occupations)
    # a rerun computes nothing and keeps every validation row
    assert main(["train", str(inp), "-q"]) == 0
    assert "(0 computed now)" in capsys.readouterr().out
    assert len(load_references(val_db)) == len(recs)
    # another MC (seed) adds its arrangements and keeps every earlier row: the validation
    # database holds the evidence of every CE validated, a shipped one's included
    doc = yaml.safe_load(inp.read_text())
    doc["fit"]["seed"] = 7
    inp.write_text(yaml.safe_dump(doc))
    assert main(["train", str(inp), "-q"]) == 0
    assert "rows that this input does not use" not in capsys.readouterr().err
    after = {r["name"] for r in load_references(val_db)}
    assert set(recs) < after


def test_train_mc_rounds_add_the_ce_mc_arrangements_to_the_training_set(tmp_path, capsys):
    inp = _mc_input(tmp_path, mc_validation=["bulk3", "nc3"], mc_rounds=1)
    assert main(["train", str(inp), "-q"]) == 0
    first = capsys.readouterr().out
    n = int(first.split()[0])
    recs = load_references(tmp_path / "refs.db")
    rounds = sorted(r["name"] for r in recs if r["name"].startswith("mcfit1_"))
    assert len(rounds) == 4  # start and final of both cells, in the training database
    assert {r["kind"] for r in recs if r["name"] in rounds} == {"mcfit_bulk", "mcfit_nc"}
    assert len(recs) == n
    # the round's starts are new random arrangements, not the validation's
    val = {r["name"]: r for r in load_references(tmp_path / "refs_mcval.db")}
    by_name = {r["name"]: r for r in recs}
    assert not np.array_equal(
        by_name["mcfit1_nc3_x0.25_start"]["occupations"],
        val["mcval_nc3_x0.25_start"]["occupations"],
    )
    ce = ClusterExpansionModel.from_file(tmp_path / "out" / "fitted.ce")
    assert ce.metadata["segsim_n_training_structures"] == sum(
        1 for r in recs if r["occupations"] is not None
    )
    report = (tmp_path / "out" / "fit_report.md").read_text()
    assert "MC training round 1: the previous fit's Monte Carlo" in report
    assert "MC validation: the CE's Monte Carlo against the reference" in report
    # resumable: a rerun computes nothing and refits the same CE
    assert main(["train", str(inp), "-q"]) == 0
    assert "(0 computed now)" in capsys.readouterr().out
    assert np.array_equal(
        ClusterExpansionModel.from_file(tmp_path / "out" / "fitted.ce").parameters, ce.parameters
    )
