"""The command line: runs, result files, errors for bad input, resume, interruption."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from segsim import driver
from segsim.cli import main
from segsim.config import load
from segsim.io import hdf5
from tests.helpers import small_input, write_random_ce, write_yaml


@pytest.fixture(scope="module")
def ce_file(tmp_path_factory):
    return write_random_ce(tmp_path_factory.mktemp("ce") / "r.ce")


def test_run_writes_schema_and_info(tmp_path, ce_file, capsys):
    inp = write_yaml(tmp_path / "in.yaml", small_input(ce_file))
    out = tmp_path / "out.h5"
    assert main(["run", str(inp), "-o", str(out)]) == 0
    with h5py.File(out) as f:
        assert f["metadata"].attrs["schema_version"] == hdf5.SCHEMA_VERSION
        assert "energy" in f["metadata"].attrs["units"]
        assert "canonical_mc" in f["metadata/config"].asstr()[()]
        steps = f["trace/step"][:]
        assert np.array_equal(steps, np.arange(0, 20001, 1000))
        assert f["trace/cd_fraction_by_depth"].shape == (21, f["lattice"].attrs["n_layers"])
        assert f["trace/step"].maxshape == (None,)
        assert list(f["snapshots/step"][:]) == [0, 5000, 10000, 15000, 20000]
        assert f["snapshots/occupations"].dtype == np.uint8
        assert f["snapshots/occupations"].compression == "gzip"
        assert f["checkpoint"].attrs["complete"]
        occ = f["checkpoint/occupations"][:]
        assert np.array_equal(occ, f["snapshots/occupations"][-1])
    # composition is conserved by canonical swaps
    assert (occ == 1).sum() == round(0.25 * 5**3)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames: 21" in text
    assert "complete" in text


def test_energy_trace_matches_recompute(tmp_path, ce_file):
    cfg = load(write_yaml(tmp_path / "in.yaml", small_input(ce_file)))
    driver.run_canonical(cfg, tmp_path / "o.h5", progress=False)
    _, _lattice, tables = driver.build_system(cfg)
    steps, occs = hdf5.read_snapshots(tmp_path / "o.h5")
    trace = hdf5.read_trace(tmp_path / "o.h5")
    for step, occ in zip(steps, occs, strict=True):
        k = int(np.flatnonzero(trace["step"] == step)[0])
        assert trace["energy_ev"][k] == pytest.approx(tables.total_energy(occ), abs=1e-9)


def test_mc_has_no_hollowness_datasets_and_info_prints_none(tmp_path, ce_file, capsys):
    """Canonical MC has no vacancies and a fixed outline: nothing to trace, nothing n/a."""
    from segsim.invariants import check_result

    out = tmp_path / "v.h5"
    driver.run_canonical(
        load(write_yaml(tmp_path / "v.yaml", small_input(ce_file))), out, progress=False
    )
    tr = hdf5.read_trace(out)
    assert not {"n_vac_interior", "envelope_edge_nm"} & set(tr)
    assert check_result(out) == []
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Cd fraction by depth" in text
    assert "vacanc" not in text


def test_resume_gives_identical_result(tmp_path, ce_file):
    cfg = load(write_yaml(tmp_path / "in.yaml", small_input(ce_file)))
    full = tmp_path / "full.h5"
    part = tmp_path / "part.h5"
    driver.run_canonical(cfg, full, progress=False)
    with pytest.raises(driver.Interrupted):
        driver.run_canonical(cfg, part, progress=False, stop_at_step=7000)
    ck = hdf5.read_checkpoint(part)
    assert ck is not None
    assert ck[1]["step"] == 7000
    assert not ck[1]["complete"]
    assert main(["run", "--resume", str(part), "-q"]) == 0
    a, b = hdf5.read_trace(full), hdf5.read_trace(part)
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    ca, cb = hdf5.read_checkpoint(full), hdf5.read_checkpoint(part)
    for key in ca[0]:
        assert np.array_equal(ca[0][key], cb[0][key]), key
    assert ca[1]["rng_state"] == cb[1]["rng_state"]
    assert np.array_equal(hdf5.read_snapshots(full)[1], hdf5.read_snapshots(part)[1])


def test_resume_after_checkpoint_cuts_later_frames(tmp_path, ce_file):
    """Frames written after the last checkpoint (a killed run) are recomputed identically."""
    cfg = load(write_yaml(tmp_path / "in.yaml", small_input(ce_file)))
    full = tmp_path / "full.h5"
    driver.run_canonical(cfg, full, progress=False)
    part = tmp_path / "part.h5"
    with pytest.raises(driver.Interrupted):
        driver.run_canonical(cfg, part, progress=False, stop_at_step=12000)
    # pretend the run was killed at step 12000 after its last checkpoint at step 10000:
    # frames 11000 and 12000 are on disk but the checkpoint is older
    with pytest.raises(driver.Interrupted):
        driver.run_canonical(cfg, tmp_path / "at10k.h5", progress=False, stop_at_step=10000)
    # (the checkpoint group as the killed run left it: it records the 11 rows of that time)
    import h5py

    with h5py.File(part, "a") as fp, h5py.File(tmp_path / "at10k.h5", "r") as fk:
        del fp["checkpoint"]
        fk.copy(fk["checkpoint"], fp, "checkpoint")
    assert hdf5.summarize(part)["n_frames"] == 13
    assert main(["run", "--resume", str(part), "-q"]) == 0
    a, b = hdf5.read_trace(full), hdf5.read_trace(part)
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key


def _bad(tmp_path, ce_file, section, values):
    return write_yaml(tmp_path / "bad.yaml", small_input(ce_file, **{section: values}))


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("system", {"nonsense": 1}, "system.nonsense"),
        ("run", {"temperature_k": "warm"}, "run.temperature_k"),
        ("run", {"temperature_k": -1.0}, "run.temperature_k"),
        ("system", {"x_cd": 2.0}, "system.x_cd"),
        ("model", {"path": "/no/such/model.ce"}, "model.path"),
        ("system", {"pad_sites": 1}, "system.pad_sites"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(tmp_path, ce_file, capsys, section, values, needle):
    inp = _bad(tmp_path, ce_file, section, values)
    out = tmp_path / "out.h5"
    assert main(["run", str(inp), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert needle in err
    assert str(inp) in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob("*.h5*"))


def test_unreadable_yaml_and_bad_model_file(tmp_path, capsys):
    p = tmp_path / "x.yaml"
    p.write_text("run: [unclosed\n")
    assert main(["run", str(p), "-o", str(tmp_path / "o.h5")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    junk = tmp_path / "junk.ce"
    junk.write_text("this is not a cluster expansion")
    inp = write_yaml(tmp_path / "in.yaml", small_input(junk))
    assert main(["run", str(inp), "-o", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "model.path" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()


def test_refuses_to_overwrite_and_bad_resume(tmp_path, ce_file, capsys):
    inp = write_yaml(tmp_path / "in.yaml", small_input(ce_file))
    out = tmp_path / "o.h5"
    out.write_text("precious")
    assert main(["run", str(inp), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert main(["run", "--resume", str(tmp_path / "none.h5")]) == 2
    assert "no such result file" in capsys.readouterr().err
    assert main(["info", str(out)]) == 2
    assert "not a readable HDF5" in capsys.readouterr().err


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "segsim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def _long_input(tmp_path, ce_file):
    return write_yaml(
        tmp_path / "long.yaml",
        small_input(
            ce_file,
            system={"edge_nm": 6.0},
            run={"n_steps": 400_000_000},
            output={
                "trace_interval_steps": 200_000,
                "snapshot_interval_steps": 200_000,
                "checkpoint_interval_steps": 200_000,
            },
        ),
    )


def _wait_frames(out, n, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        with contextlib.suppress(OSError, KeyError, hdf5.ResultFileError):  # not there yet
            if hdf5.summarize(out)["n_frames"] >= n:
                return
        time.sleep(0.2)
    raise AssertionError("no frames appeared")


def test_sigint_checkpoints_and_exits_130(tmp_path, ce_file):
    out = tmp_path / "o.h5"
    proc = _cli("run", str(_long_input(tmp_path, ce_file)), "-o", str(out))
    _wait_frames(out, 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert "Traceback" not in err
    s = hdf5.summarize(out)
    assert s["checkpoint_step"] == s["last"]["step"]
    assert not s["complete"]


def test_sigkill_leaves_readable_file(tmp_path, ce_file):
    out = tmp_path / "o.h5"
    proc = _cli("run", str(_long_input(tmp_path, ce_file)), "-o", str(out))
    _wait_frames(out, 3)
    proc.kill()
    proc.communicate(timeout=30)
    s = hdf5.summarize(out)
    assert s["n_frames"] >= 3
    trace = hdf5.read_trace(out)
    assert np.all(np.diff(trace["step"]) == 200_000)
    assert np.all(np.isfinite(trace["energy_ev"]))


def test_warmup_and_version(capsys):
    assert main(["warmup"]) == 0
    assert "compiled" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_bench_cli_prints_one_json_object(ce_file, capsys):
    import json

    assert main(["bench", "mc", "--model", "/no/such.ce"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["bench", "mc", "--quick", "--json", "--model", str(ce_file)]) == 0
    out = capsys.readouterr().out.strip()
    result = json.loads(out)
    assert "\n" not in out
    for key in ("segsim_steps_per_s", "icet_steps_per_s", "ratio", "energies_agree"):
        assert key in result
    assert result["ratio"] == result["segsim_steps_per_s"] / result["icet_steps_per_s"]
