"""segsim calibrate (recovers a known coverage, reproducible) and sweeps (grid, run over ranks)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from segsim.calibrate import (
    CalibrateOptions,
    _pl14,
    calibrate,
    golden_section,
    plateau_edge,
)
from segsim.cli import main
from segsim.io import hdf5
from segsim.reproduce import ReproduceOptions
from tests.helpers import write_random_ce, write_yaml
from tests.integration.test_kmc_run import kmc_input
from tests.integration.test_reproduce import FAST


def test_golden_section_finds_a_minimum_and_ends_at_a_bound_when_monotonic():
    x, y, hist = golden_section(lambda v: (v - 0.3) ** 2, 0.0, 1.0, 20)
    assert x == pytest.approx(0.3, abs=1e-3)
    assert y < 1e-6
    assert len(hist) == 22  # n_iter evaluations plus the two bounds
    x, _, _ = golden_section(lambda v: -v, 0.0, 1.0, 6)
    assert x == 1.0


def test_plateau_edge_takes_the_inner_edge_of_a_flat_objective_at_a_bound():
    # A target beyond reach: the PL shift saturates at 26 nm below x ~ 1 (target 32 nm),
    # with noise of 0.1-0.3 nm on the plateau; the noisy minimum lies deep inside it.
    def shift(x: float) -> float:
        noise = 0.3 * math.sin(37.0 * x)
        return 26.0 + noise if x < 1.0 else 26.0 - 60.0 * (x - 1.0)

    _, _, hist = golden_section(lambda x: (shift(x) - 32.0) ** 2, 0.85, 1.2, 10)
    x_min = min(hist, key=lambda p: p[1])[0]
    x, plateau = plateau_edge(hist, 0.85, 1.2)
    assert plateau is not None
    assert x == plateau["plateau"][1] > x_min  # the inner edge, not the noisy minimum
    assert plateau["plateau"][0] == 0.85
    assert x < 1.0 + 0.5 / 60.0  # inside the plateau (miss within 0.5 nm)
    assert plateau["plateau_limit"] > x  # the first evaluated value beyond it
    assert (
        math.sqrt(dict(hist)[plateau["plateau_limit"]]) > math.sqrt(min(dict(hist).values())) + 0.5
    )

    # Flat towards the upper bound: the edge is the plateau's lowest value.
    mirrored = [(2.05 - xx, y) for xx, y in hist]
    x2, p2 = plateau_edge(mirrored, 0.85, 1.2)
    assert x2 == pytest.approx(2.05 - x)
    assert p2["plateau"][1] == pytest.approx(1.2)

    # A proper minimum in the interior: the argmin, no plateau.
    _, _, hist = golden_section(lambda v: (100.0 * (v - 0.3)) ** 2, 0.0, 1.0, 12)
    x3, p3 = plateau_edge(hist, 0.0, 1.0)
    assert p3 is None
    assert x3 == min(hist, key=lambda p: p[1])[0]
    # Flat everywhere (both bounds within the tolerance): nothing is constrained, argmin.
    x4, p4 = plateau_edge([(0.0, 1.0), (0.5, 0.9), (1.0, 1.1)], 0.0, 1.0)
    assert (x4, p4) == (0.5, None)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    ce = write_random_ce(d / "r.ce", cutoffs=[6.0], scale=0.02)
    slow_exit = {**FAST, "kinetics": {**FAST["kinetics"], "e_exp_cd_ev": 1.0}}
    params = write_yaml(d / "params.yaml", slow_exit)
    return d, ReproduceOptions(
        n_ncs=2, seed=3, duration_days=1.0, frame_interval_days=0.5,
        treatments=("olabr",), model=str(ce), params=str(params),
        edge_mean_nm=3.0, edge_std_nm=0.3,
    )  # fmt: skip


def test_calibrate_recovers_the_shift_of_a_known_coverage_and_is_reproducible(ensemble):
    d, opts = ensemble
    # Synthetic target: the model's own 1-day PL shift of OlABr at theta = 0.9.
    truth = _pl14(opts, {"ligands": {"olabr": {"theta": 0.9}}}, "olabr", d / "truth")
    shift = truth["pl14_nm"] - truth["pl0_nm"]
    assert shift > 0.5  # the NCs lose Cd: the target is informative
    wide = _pl14(opts, {"ligands": {"olabr": {"theta": 0.0}}}, "olabr", d / "wide")
    assert wide["pl14_nm"] - wide["pl0_nm"] > shift + 0.5  # and theta matters
    targets = write_yaml(d / "targets.yaml", {
        "report_days": [0, 1],
        "treatments": {"olabr": {"pl_fresh_nm": 477.0, "pl_day14_nm": 477.0 + shift}},
    })  # fmt: skip
    copt = CalibrateOptions(ensemble=opts, n_iter=7, targets=str(targets), fit_rp=False,
                            fit_e_exp=False)  # fmt: skip
    doc = calibrate(copt, d / "cal.yaml", quiet=True)
    fit = doc["calibration"]["fits"]["ligands.olabr.theta"]
    assert fit["miss_nm"] < 0.25 * shift
    assert not fit["at_bound"]
    theta = doc["ligands"]["olabr"]["theta"]
    assert 0.5 < theta < 0.99
    assert doc["kinetics"]["e_exp_cd_ev"] == 1.0  # the base parameter file is carried over
    again = calibrate(copt, d / "cal2.yaml", quiet=True)
    assert again["ligands"] == doc["ligands"]  # same seed, same fit
    # reproduce takes the file.
    assert yaml.safe_load((d / "cal.yaml").read_text())["ligands"]["olabr"]["theta"] == theta


def test_treatments_with_equal_parameters_and_targets_are_fitted_once(ensemble, monkeypatch):
    import segsim.calibrate as cal

    d, opts = ensemble
    calls = []
    real = cal._pl14

    def counted(o, params, treatment, workdir):
        calls.append(treatment)
        return real(o, params, treatment, workdir)

    monkeypatch.setattr(cal, "_pl14", counted)
    pub = {"pl_fresh_nm": 477.0, "pl_day14_nm": 479.0}
    targets = write_yaml(d / "targets2.yaml", {
        "report_days": [0, 1], "treatments": {"olabr": pub, "pheabr": pub},
    })  # fmt: skip
    both = CalibrateOptions(
        ensemble=replace(opts, n_ncs=1, treatments=("olabr", "pheabr")), n_iter=2,
        targets=str(targets), fit_rp=False, fit_e_exp=False,
    )  # fmt: skip
    doc = calibrate(both, d / "cal_both.yaml", quiet=True)
    assert set(calls) == {"olabr"}
    assert len(calls) == 4
    fits = doc["calibration"]["fits"]
    assert fits["ligands.pheabr.theta"]["same_as"] == "olabr"
    assert fits["ligands.pheabr.theta"]["target"].startswith("pheabr PL shift")
    assert doc["ligands"]["pheabr"]["theta"] == doc["ligands"]["olabr"]["theta"]


def test_a_calibration_rerun_with_its_cache_runs_nothing_and_gives_the_same_file(
    ensemble, monkeypatch
):
    import segsim.calibrate as cal

    d, opts = ensemble
    pub = {"pl_fresh_nm": 477.0, "pl_day14_nm": 479.0}
    targets = write_yaml(d / "targets3.yaml", {"report_days": [0, 1],
                                               "treatments": {"olabr": pub}})  # fmt: skip
    copt = CalibrateOptions(
        ensemble=replace(opts, n_ncs=1), n_iter=3, targets=str(targets), fit_rp=False,
        fit_e_exp=False, cache=str(d / "evals.json"),
    )  # fmt: skip
    first = calibrate(copt, d / "c1.yaml", quiet=True)
    import json

    cached = json.loads((d / "evals.json").read_text())
    assert cached.pop(cal.DEFAULTS_KEY) == cal.defaults_digest()
    assert len(cached) == 5  # n_iter evaluations plus the two bounds, all distinct
    assert {v["treatment"] for v in cached.values()} == {"olabr"}

    def refuse(*args, **kwargs):
        raise AssertionError("an evaluation ran although it is in the cache")

    monkeypatch.setattr(cal, "_pl14", refuse)
    again = calibrate(copt, d / "c2.yaml", quiet=True)
    assert again["ligands"] == first["ligands"]
    assert again["calibration"]["fits"] == first["calibration"]["fits"]
    # another seed is another ensemble: not in the cache
    other = replace(copt, ensemble=replace(copt.ensemble, seed=4))
    with pytest.raises(AssertionError, match="in the cache"):
        calibrate(other, d / "c3.yaml", quiet=True)

    # A cache made before the digest was recorded is replayed as it is.
    (d / "old.json").write_text(json.dumps(cached))
    old = replace(copt, cache=str(d / "old.json"))
    assert calibrate(old, d / "c4.yaml", quiet=True)["ligands"] == first["ligands"]

    # Other default values (here E_KRA(Pb) in potentials/kinetics.yaml) make the cache's
    # evaluations stale although their keys are the same: refused, one line.
    from segsim import kinetics

    real = kinetics.load_defaults()
    monkeypatch.setattr(
        kinetics, "load_defaults", lambda *a: replace(real, e_kra_pb_ev=real.e_kra_pb_ev + 0.01)
    )
    assert cal.defaults_digest() != json.loads((d / "evals.json").read_text())[cal.DEFAULTS_KEY]
    with pytest.raises(cal.CalibrateError, match="other default parameter values") as err:
        calibrate(copt, d / "c5.yaml", quiet=True)
    assert "\n" not in str(err.value)
    assert not (d / "c5.yaml").exists()


def test_evaluation_key_follows_the_ligand_physics_not_its_name():
    """Equal theta, RP shift and exchange time: one key, whatever the treatment is called."""
    from segsim.calibrate import evaluation_key

    ens = ReproduceOptions(n_ncs=2)
    lig = {"theta": 0.99, "rp_barrier_shift_ev": 0.25}
    same = {"ligands": {"olabr": dict(lig), "ddabr": dict(lig)}}
    assert evaluation_key(ens, same, "olabr") == evaluation_key(ens, same, "ddabr")
    # the other treatments' values do not enter
    more = {"ligands": {**same["ligands"], "cs_oleate": {"theta": 0.1}}}
    assert evaluation_key(ens, more, "olabr") == evaluation_key(ens, same, "olabr")
    other = {"ligands": {"olabr": dict(lig), "ddabr": {**lig, "theta": 0.999}}}
    assert evaluation_key(ens, other, "olabr") != evaluation_key(ens, other, "ddabr")
    # pristine has no exchange: not the same physics as an exchange with its theta
    pristine = {"ligands": {"cs_oleate": {"theta": 0.5, "rp_barrier_shift_ev": 0.0}}}
    assert evaluation_key(ens, pristine, "pristine") != evaluation_key(ens, pristine, "cs_oleate")
    # kinetics, RP parameters and the ensemble are in the key
    for changed in ({**same, "kinetics": {"e_exp_cd_ev": 1.0}}, {**same, "rp": {"e_rp_a_ev": 1.0}}):
        assert evaluation_key(ens, changed, "olabr") != evaluation_key(ens, same, "olabr")
    assert evaluation_key(replace(ens, seed=3), same, "olabr") != evaluation_key(ens, same, "olabr")


def test_sweep_grid_and_run_over_two_ranks_equals_serial(tmp_path):
    ce = write_random_ce(tmp_path / "r.ce", cutoffs=[6.0], scale=0.02)
    base = write_yaml(tmp_path / "base.yaml", kmc_input(ce))
    assert main(["sweep", str(base), "-o", str(tmp_path / "grid"), "--ligands",
                 "pristine,ddabr", "--temperatures", "298,320"]) == 0  # fmt: skip
    inputs = sorted((tmp_path / "grid").glob("*.yaml"))
    assert len(inputs) == 4
    temps = {yaml.safe_load(p.read_text())["run"]["temperature_k"] for p in inputs}
    assert temps == {298.0, 320.0}
    (tmp_path / "serial").mkdir()
    assert main(["run", *map(str, inputs), "-o", str(tmp_path / "serial"), "-q"]) == 0
    mpiexec = Path(sys.executable).with_name("mpiexec")
    (tmp_path / "mpi").mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-m", "segsim", "run", *map(str, inputs),
         "-o", str(tmp_path / "mpi")],
        check=False, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[rank 1/2]" in proc.stdout
    for p in inputs:
        a = hdf5.read_trace(tmp_path / "serial" / f"{p.stem}.h5")
        b = hdf5.read_trace(tmp_path / "mpi" / f"{p.stem}.h5")
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # Re-running a finished sweep reads the files instead of running again.
    before = [(tmp_path / "serial" / f"{p.stem}.h5").stat().st_mtime_ns for p in inputs]
    assert main(["run", *map(str, inputs), "-o", str(tmp_path / "serial"), "-q"]) == 0
    after = [(tmp_path / "serial" / f"{p.stem}.h5").stat().st_mtime_ns for p in inputs]
    assert before == after
    hot = [p for p in inputs if "T320" in p.stem]
    assert all(not math.isnan(hdf5.read_trace(tmp_path / "serial" / f"{p.stem}.h5")["x_cd"][-1])
               for p in hot)  # fmt: skip


def test_bad_sweep_and_calibrate_options_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "g")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["calibrate", "-o", str(tmp_path / "c.yaml"), "--iterations", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--iterations" in err
    assert not (tmp_path / "c.yaml").exists()


def test_rp_shift_fit_clears_rp_in_the_ddabr_exchange_and_not_below(ensemble):
    """The fitted shift is the smallest that leaves no RP after the 2-min DDABr exchange."""
    from segsim.calibrate import RP_SHIFT_BOUNDS_EV, _fit_rp_shift, _Search
    from segsim.params.ligands import load_library

    d, opts = ensemble
    dd = replace(opts, n_ncs=3, seed=5, treatments=("ddabr",), frame_interval_days=0.25)
    short = replace(dd, duration_days=dd.frame_interval_days)

    def rp0(shift):
        lig = {"ddabr": {"rp_barrier_shift_ev": shift}}
        return _pl14(short, {"ligands": lig}, "ddabr", d / "rp0")["rp_day0"]

    assert rp0(0.0) > 0  # some NC of this ensemble keeps an RP domain through the exchange
    params = {"kinetics": {}, "rp": {}, "ligands": {}}
    report = {}
    n_iter = 5
    _fit_rp_shift(_Search(dd, params, report, load_library(), d / "fit", n_iter, lambda m: None))
    entry = report["ligands.*.rp_barrier_shift_ev"]
    assert entry["constrained"]
    assert entry["reached"]
    value = entry["value"]
    lo, hi = entry["bracket"]
    assert hi - lo == pytest.approx((RP_SHIFT_BOUNDS_EV[1] - RP_SHIFT_BOUNDS_EV[0]) / 2**n_iter)
    assert value == round(hi, 4)
    assert hi < RP_SHIFT_BOUNDS_EV[1]
    assert rp0(hi) == 0
    assert rp0(lo) > 0
    exchanges = {"cs_oleate", "cs_phace", "olabr", "pheabr", "ddabr"}
    assert set(entry["applies_to"]) == exchanges
    assert {
        n for n, v in params["ligands"].items() if v["rp_barrier_shift_ev"] == value
    } == exchanges


@pytest.mark.mpi
def test_calibrate_over_two_ranks_with_an_odd_task_count_equals_serial(ensemble, tmp_path):
    """3 NCs on 2 ranks: the ranks load the model a different number of times.

    ASE (icet's reader) would broadcast each read over COMM_WORLD; unpaired, that hung or
    fed ASE's payload to calibrate's own broadcast (segsim.parallel._serial_ase).
    """
    _, opts = ensemble
    pub = {"pl_fresh_nm": 477.0, "pl_day14_nm": 479.0}
    targets = write_yaml(tmp_path / "t.yaml", {"report_days": [0, 1],
                                                "treatments": {"olabr": pub}})  # fmt: skip
    args = ["calibrate", "-n", "3", "--seed", str(opts.seed), "--days", "1",
            "--frame-days", "0.5", "--treatments", "olabr", "--iterations", "2",
            "--targets", str(targets), "--model", opts.model,
            "--edge-mean-nm", str(opts.edge_mean_nm), "--edge-std-nm", str(opts.edge_std_nm),
            "-q"]  # fmt: skip
    assert main([*args, "-o", str(tmp_path / "serial.yaml")]) == 0
    mpiexec = Path(sys.executable).with_name("mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-m", "segsim", *args,
         "-o", str(tmp_path / "mpi.yaml")],
        check=False, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    serial = yaml.safe_load((tmp_path / "serial.yaml").read_text())
    mpi = yaml.safe_load((tmp_path / "mpi.yaml").read_text())
    assert mpi["ligands"] == serial["ligands"]
    assert mpi["calibration"]["fits"] == serial["calibration"]["fits"]


def test_calibration_records_repository_files_relative_to_the_root(tmp_path):
    from segsim.calibrate import _portable
    from segsim.params.files import POTENTIALS_DIR

    ens = {"model": str(POTENTIALS_DIR / "provisional.ce"), "params": str(tmp_path / "p.yaml")}
    out = _portable(ens)
    assert out["model"] == "potentials/provisional.ce"
    assert out["params"] == str(tmp_path / "p.yaml")  # outside the repository: unchanged
    assert _portable({"model": "x.ce", "params": None})["params"] is None
