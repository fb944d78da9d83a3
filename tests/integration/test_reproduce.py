"""segsim reproduce: table, figure, master file, paired ensemble, resume, MPI == serial."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from segsim.cli import main
from segsim.io import hdf5
from segsim.reproduce import TABLE_COLUMNS, ReproduceOptions, make_tasks, reproduce
from tests.helpers import FLAT_KRA, write_random_ce, write_yaml

FAST = {  # small NCs lose Cd within hours with these barriers (tests only)
    "kinetics": {
        "e_kra_pb_ev": 0.80,
        "e_kra_cd_ev": 0.80,
        "e_exp_pb_ev": 1.20,
        "e_exp_cd_ev": 0.90,
        "e_rec_ev": 0.95,
        **FLAT_KRA,
    },
    "rp": {"e_rp_a_ev": 1.0},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    ce = write_random_ce(d / "r.ce", cutoffs=[6.0], scale=0.02)
    params = write_yaml(d / "params.yaml", FAST)
    opts = ReproduceOptions(
        n_ncs=2,
        seed=7,
        duration_days=1.0,
        frame_interval_days=0.5,
        treatments=("pristine", "ddabr"),
        model=str(ce),
        params=str(params),
        edge_mean_nm=2.6,
        edge_std_nm=0.4,
    )
    out = d / "serial"
    rows = reproduce(opts, out, quiet=True)
    return opts, out, rows


def test_table_figure_and_master_file(setup):
    opts, out, rows = setup
    assert len(rows) == 2 * 2  # treatments x report days (0, 1)
    with (out / "table.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(TABLE_COLUMNS)
    assert [(r["treatment"], float(r["day"])) for r in table] == [
        ("pristine", 0.0), ("pristine", 1.0), ("ddabr", 0.0), ("ddabr", 1.0)
    ]  # fmt: skip
    day0 = table[0]
    assert float(day0["pl_published_nm"]) == 478.0  # the published fresh pristine PL
    assert float(day0["pl_diff_nm"]) == pytest.approx(float(day0["pl_model_nm"]) - 478.0, abs=1e-9)
    assert float(table[0]["x_cd"]) == pytest.approx(0.25, abs=0.03)
    assert float(table[1]["x_cd"]) < float(table[0]["x_cd"])  # pristine loses Cd
    # the spread of x between the two NCs, from their own files; the XPS-like ratio likewise
    for row, k in ((table[0], 0), (table[1], -1)):
        day = [hdf5.read_trace(out / "ncs" / f"pristine_nc{i}.h5") for i in range(2)]
        xs = [tr["x_cd"][k] for tr in day]
        assert float(row["x_cd_std"]) == pytest.approx(np.std(xs, ddof=1), abs=1e-12)
        ratios = [tr["cs_ratio_surface"][k] for tr in day]
        assert float(row["cs_ratio_surface"]) == pytest.approx(np.mean(ratios), abs=1e-12)
        assert 1.0 < float(row["cs_ratio_surface"]) < 2.5
        for name in ("interior_vacancy_fraction", "envelope_edge_nm", "occupied_envelope_edge_nm"):
            per_nc = [tr[name][k] for tr in day]
            assert float(row[name]) == pytest.approx(np.mean(per_nc), abs=1e-12)
            sem = np.std(per_nc, ddof=1) / np.sqrt(2)
            assert float(row[f"{name}_sem"]) == pytest.approx(sem, abs=1e-12)
    png = (out / "pl_vs_days.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    with h5py.File(out / "ensemble.h5") as f:
        for t in opts.treatments:
            for i in range(opts.n_ncs):
                link = f.get(f"ncs/{t}/nc{i}", getlink=True)
                assert isinstance(link, h5py.ExternalLink)
                times = f[f"ncs/{t}/nc{i}/trace/time_s"][:]
                expected = [0.0, 0.5 * 86400, 86400.0]
                t_treat = f[f"ncs/{t}/nc{i}/metadata"].attrs["treatment_end_s"]
                if t_treat:  # the end of the ligand exchange (NCs with RP) is a frame too
                    assert t == "ddabr"
                    assert t_treat == 120.0
                    expected.insert(1, 120.0)
                np.testing.assert_allclose(times, expected)
        np.testing.assert_allclose(f["table/x_cd"][:], [float(r["x_cd"]) for r in table])


def test_ensemble_is_paired_and_independent_of_the_task_list(setup, tmp_path):
    opts, out, _ = setup
    tasks = make_tasks(opts, out)
    for i in range(opts.n_ncs):
        a, b = (hdf5.read_snapshots(out / "ncs" / f"{t}_nc{i}.h5")[1][0] for t in opts.treatments)
        np.testing.assert_array_equal(a, b)  # the same synthesised NC under both treatments
    assert tasks[0].edge_nm != tasks[2].edge_nm  # NCs differ from each other
    # Only one treatment, another folder: the ddabr files are identical.
    other = replace(opts, treatments=("ddabr",))
    reproduce(other, tmp_path / "one", quiet=True)
    for i in range(opts.n_ncs):
        a = hdf5.read_trace(out / "ncs" / f"ddabr_nc{i}.h5")
        b = hdf5.read_trace(tmp_path / "one" / "ncs" / f"ddabr_nc{i}.h5")
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_rerun_reads_finished_files_and_recomputes_missing_ones(setup, tmp_path):
    opts, out, rows = setup
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "ncs" / "ddabr_nc1.h5").unlink()
    kept = (copy / "ncs" / "pristine_nc0.h5").stat().st_mtime_ns
    rows2 = reproduce(opts, copy, quiet=True)
    assert (copy / "ncs" / "pristine_nc0.h5").stat().st_mtime_ns == kept  # read, not re-run
    assert rows2 == rows
    a = hdf5.read_trace(out / "ncs" / "ddabr_nc1.h5")
    b = hdf5.read_trace(copy / "ncs" / "ddabr_nc1.h5")
    np.testing.assert_array_equal(a["x_cd"], b["x_cd"])


def test_other_options_in_the_same_folder_are_refused(setup, capsys):
    opts, out, _ = setup
    code = main(["reproduce", "-o", str(out), "-n", "3", "--model", opts.model, "-q"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "other options" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--treatments", "pristine,nonsense"], "--treatments"),
        (["-n", "0"], "--n-ncs"),
        (["--model", "missing.ce"], "--model"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_options_one_line_exit_2(tmp_path, capsys, args, needle):
    assert main(["reproduce", "-o", str(tmp_path / "r"), "-q", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert needle in err
    assert not (tmp_path / "r" / "table.csv").exists()


@pytest.mark.mpi
def test_mpiexec_two_ranks_equals_serial(setup, tmp_path):
    opts, out, _ = setup
    mpiexec = Path(sys.executable).with_name("mpiexec")
    assert mpiexec.exists(), "mpiexec missing: pip install -e '.[test]' brings mpich"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    cmd = [str(mpiexec), "-n", "2", sys.executable, "-m", "segsim", "reproduce",
           "-o", str(tmp_path / "mpi"), "-n", str(opts.n_ncs), "--seed", str(opts.seed),
           "--days", "1", "--frame-days", "0.5", "--treatments", "pristine,ddabr",
           "--model", opts.model, "--params", opts.params,
           "--edge-mean-nm", str(opts.edge_mean_nm), "--edge-std-nm", str(opts.edge_std_nm)]  # fmt: skip
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[rank 1/2]" in proc.stdout  # both ranks ran tasks
    _assert_same_runs(opts, out, tmp_path / "mpi")


def _assert_same_runs(opts, a_dir, b_dir):
    """The same table and, NC by NC, the same trace in two reproduce folders."""
    assert (b_dir / "table.csv").read_text() == (a_dir / "table.csv").read_text()
    for t in opts.treatments:
        for i in range(opts.n_ncs):
            a = hdf5.read_trace(a_dir / "ncs" / f"{t}_nc{i}.h5")
            b = hdf5.read_trace(b_dir / "ncs" / f"{t}_nc{i}.h5")
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{t} nc{i} {k}")


def test_threads_give_the_serial_results(setup, tmp_path):
    """Two NC runs at once on threads (largest NC first): the same per-NC trajectories and
    table as the serial run."""
    opts, out, rows = setup
    rows2 = reproduce(opts, tmp_path / "threads", quiet=True, threads=2)
    assert rows2 == rows
    _assert_same_runs(opts, out, tmp_path / "threads")


def test_cli_ensemble_default_is_the_options_default():
    from segsim.calibrate import CALIBRATE_N_NCS
    from segsim.cli import build_parser
    from segsim.reproduce import ReproduceOptions

    assert build_parser().parse_args(["reproduce"]).n_ncs == ReproduceOptions().n_ncs
    assert build_parser().parse_args(["calibrate"]).n_ncs == CALIBRATE_N_NCS


def test_treatments_with_equal_parameters_are_run_once(setup, tmp_path):
    """OlABr and PEABr share every parameter: one run, a relabelled copy, the same table."""
    opts, _, _ = setup
    both = replace(opts, n_ncs=1, treatments=("olabr", "pheabr"))
    shared = reproduce(both, tmp_path / "shared", quiet=True)
    alone = reproduce(both, tmp_path / "alone", quiet=True, share_identical=False)
    assert shared == alone
    copy = tmp_path / "shared" / "ncs" / "pheabr_nc0.h5"
    ran = tmp_path / "alone" / "ncs" / "pheabr_nc0.h5"
    a, b = hdf5.read_trace(copy), hdf5.read_trace(ran)
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with h5py.File(copy) as fc, h5py.File(ran) as fr:
        assert fc["metadata"].attrs["ligand"] == "pheabr"
        assert fc["metadata"].attrs["same_physics_as"] == "olabr_nc0.h5"
        assert "same_physics_as" not in fr["metadata"].attrs
        assert fc["metadata/config"].asstr()[()] == fr["metadata/config"].asstr()[()]


def test_a_changed_parameter_is_not_shared(setup, tmp_path):
    from segsim.reproduce import shared_tasks

    opts, _, _ = setup
    both = replace(opts, n_ncs=2, treatments=("olabr", "pheabr", "ddabr"))
    tasks = make_tasks(both, tmp_path)
    assert shared_tasks(tasks, both, {}) == {1: 0, 4: 3}  # pheabr_nc{i} = olabr_nc{i}
    params = {"ligands": {"pheabr": {"theta": 0.9}}}
    assert shared_tasks(tasks, both, params) == {}
