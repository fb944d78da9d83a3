"""segsim export / plot / stem / xrd on small result files (KMC, KMC with RP, canonical MC)."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase.io import read

from segsim import atomistic, species
from segsim.cli import main
from segsim.viz.result import load_result
from tests.h5md_validator import validate_h5md
from tests.helpers import small_input, write_random_ce, write_yaml
from tests.integration.test_kmc_run import kmc_input

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Result files: ``kmc`` (3 nm, 2 s), ``rp`` (its copy with an RP phase), ``mc``."""
    d = tmp_path_factory.mktemp("viz")
    ce = write_random_ce(d / "r.ce", cutoffs=[6.0], scale=0.02)
    kmc_yaml = write_yaml(d / "k.yaml", kmc_input(ce, passivation={"ligand": "ddabr"}))
    out = {"kmc": d / "kmc.h5", "rp": d / "kmc_rp.h5", "mc": d / "mc.h5"}
    assert main(["run", str(kmc_yaml), "-o", str(out["kmc"]), "-q"]) == 0
    mc_yaml = write_yaml(
        d / "m.yaml",
        small_input(
            ce,
            run={"n_steps": 4000},
            output={
                "trace_interval_steps": 1000,
                "snapshot_interval_steps": 1000,
                "checkpoint_interval_steps": 2000,
            },
        ),
    )
    assert main(["run", str(mc_yaml), "-o", str(out["mc"]), "-q"]) == 0
    shutil.copy(out["kmc"], out["rp"])
    with h5py.File(out["rp"], "a") as f:  # RP slab: the outer two planes of the +z face
        occ = f["snapshots/occupations"][()]
        z = f["lattice/coords"][()][:, 2]
        attrs = f["lattice"].attrs
        top = int(attrs["pad"]) + int(attrs["n_edge"]) - 1
        phase = ((z >= top - 1)[None, :] & (occ != species.OUT)).astype(np.uint8)
        f["snapshots/phase"][...] = phase  # KMC files carry the (here all-zero) phase
    return out


def _run(capsys, *args):
    """Run the CLI; return (exit code, stdout, stderr), argparse errors included."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse reports bad options by exiting
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 2000


def test_driver_output_is_valid_h5md(files):
    for key in ("kmc", "mc"):
        with h5py.File(files[key], "r") as f:
            assert validate_h5md(f) == []
    r = load_result(files["kmc"])
    # H5MD snapshot times are trace times (frames 0, 5, 10, ... of 0.1 s).
    np.testing.assert_allclose(r.snapshot_time_s, [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-12)


@pytest.mark.parametrize("fmt", ["extxyz", "traj"])
@pytest.mark.parametrize("key", ["kmc", "rp"])
def test_export_reads_back_with_ase(files, tmp_path, capsys, fmt, key):
    out = tmp_path / f"frames.{fmt}"
    rc, stdout, _ = _run(capsys, "export", files[key], "--format", fmt, "-o", out)
    assert rc == 0
    assert "5 frames" in stdout
    frames = read(out, ":")
    with h5py.File(files[key], "r") as f:
        steps = f["snapshots/step"][()]
        occs = f["snapshots/occupations"][()]
        phase = f["snapshots/phase"][()] if "phase" in f["snapshots"] else np.zeros_like(occs)
    r = load_result(files[key])
    assert len(frames) == len(steps)
    for i, atoms in enumerate(frames):
        counts = atomistic.formula_counts(atoms)
        occ = occs[i]
        assert counts["Pb"] == int((occ == species.PB).sum())
        assert counts["Cd"] == int((occ == species.CD).sum())
        plain = atomistic.formula_counts(atomistic.to_atoms(r.lattice, occ))
        rp_tags = atoms.get_tags()
        n_inserted = int((rp_tags == 2).sum()) // 2  # one Cs and one Br per fault column
        assert counts["Cs"] == plain["Cs"] + n_inserted
        assert counts["Br"] == plain["Br"] + n_inserted
        assert atomistic.charge(atoms) == 0
        assert atoms.info["step"] == steps[i]
        assert atoms.info["time_s"] == pytest.approx(r.snapshot_time_s[i])
        rp_cations = int((phase[i].astype(bool) & species.is_cation(occ)).sum())
        b_atoms = np.isin(atoms.numbers, [48, 82])
        assert int((b_atoms & (rp_tags == 1)).sum()) == rp_cations
        if key == "rp":
            assert rp_cations > 0
            assert n_inserted > 0
        if fmt == "extxyz":
            np.testing.assert_array_equal(atoms.get_array("rp"), rp_tags)


def test_export_frame_selection(files, tmp_path, capsys):
    out = tmp_path / "two.extxyz"
    assert (
        _run(capsys, "export", files["kmc"], "--format", "extxyz", "--frames", "0,-1", "-o", out)[0]
        == 0
    )
    frames = read(out, ":")
    steps = load_result(files["kmc"]).snapshot_step
    assert [a.info["step"] for a in frames] == [steps[0], steps[-1]]
    assert (
        _run(
            capsys,
            "export",
            files["kmc"],
            "--format",
            "traj",
            "--frames",
            "1:4:2",
            "-o",
            out.with_suffix(".traj"),
        )[0]
        == 0
    )
    assert [a.info["frame"] for a in read(out.with_suffix(".traj"), ":")] == [1, 3]


@pytest.mark.parametrize("what", ["xt", "pl", "depth", "slice", "histogram"])
@pytest.mark.parametrize("keys", [("kmc", "rp"), ("mc",)])
def test_plot_writes_png(files, tmp_path, capsys, what, keys):
    out = tmp_path / f"{what}.png"
    times = ["--times", "0,2000"] if keys == ("mc",) else ["--times", f"0,{1.5 / 86400}"]
    rc, stdout, err = _run(
        capsys, "plot", *(files[k] for k in keys), "--what", what, *times, "-o", out
    )
    assert rc == 0, err
    _png(out)
    assert str(out) in stdout


def test_stem_png_and_region_csv(files, tmp_path, capsys):
    out = tmp_path / "stem.png"
    rc, stdout, err = _run(capsys, "stem", files["rp"], "--frame", "0", "--axis", "100", "-o", out)
    assert rc == 0, err
    _png(out)
    with out.with_suffix(".csv").open() as fh:
        rows = {r["region"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"rp", "cd_rich", "rest"}
    r = load_result(files["rp"])
    # Beam along x: a (y, z) column is RP if any of its sites is; the slab is 2 planes deep.
    n = r.lattice.n_edge
    assert int(rows["rp"]["n_columns"]) == 2 * n
    total = sum(int(v["n_columns"]) for v in rows.values())
    assert total == n * n
    a0 = r.lattice.a_angstrom
    for v in rows.values():
        if int(v["n_columns"]):
            assert float(v["column_distance_angstrom"]) <= a0 + 1e-9
    assert float(rows["cd_rich"]["column_distance_angstrom"]) < float(
        rows["rest"]["column_distance_angstrom"]
    )
    assert "rp" in stdout


def test_xrd_png_and_csv(files, tmp_path, capsys):
    out = tmp_path / "xrd.png"
    rc, _, err = _run(capsys, "xrd", files["rp"], "--frame", "-1", "--csv", "-o", out)
    assert rc == 0, err
    _png(out)
    data = np.loadtxt(out.with_suffix(".csv"), delimiter=",", skiprows=1)
    assert data[0, 0] == pytest.approx(7.0)
    assert data[-1, 0] == pytest.approx(50.0)
    assert np.all(data[:, 1] > 0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "{missing}", "--format", "extxyz"], "no such result file"),
        (["export", "{kmc}", "--format", "pdb"], "invalid choice"),
        (["export", "{kmc}", "--format", "extxyz", "--frames", "7"], "out of range"),
        (["export", "{kmc}", "--format", "extxyz", "--frames", "x"], "--frames"),
        (["plot", "{kmc}", "--what", "movie"], "invalid choice"),
        (["plot", "{kmc}", "{mc}", "--what", "xt"], "cannot be overlaid"),
        (["plot", "{kmc}", "--what", "xt", "--times", "a"], "--times"),
        (["stem", "{kmc}", "--frame", "5"], "out of range"),
        (["stem", "{kmc}", "--axis", "110"], "invalid choice"),
        (["xrd", "{kmc}", "--frame", "-6"], "out of range"),
        (["xrd", "{readme}"], "not a readable HDF5 file"),
        (["xrd", "{kmc}", "-o", "{tmp}/no/such/dir/x.png"], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(files, tmp_path, capsys, args, needle):
    names = {
        "missing": tmp_path / "missing.h5",
        "kmc": files["kmc"],
        "mc": files["mc"],
        "readme": ROOT / "README.md",
        "tmp": tmp_path,
    }
    argv = [a.format(**names) for a in args]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.png")]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1
    assert err.startswith("segsim: error:")
    assert needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Pictures", 1)[1].split("\n## ", 1)[0]
    cmds = re.findall(r"^segsim (export|plot|stem|xrd)( .*)$", section, flags=re.MULTILINE)
    return [[c, *rest.split("#")[0].split()] for c, rest in cmds]


def test_readme_picture_commands_run_on_small_files(files, tmp_path, capsys):
    cmds = _readme_commands()
    assert {c[0] for c in cmds} >= {"plot", "stem", "xrd", "export"}
    kinds = {c[c.index("--what") + 1] for c in cmds if c[0] == "plot"}
    assert kinds == {"xt", "pl", "depth", "slice", "histogram"}
    names = {"pristine.h5": files["kmc"], "ddabr.h5": files["rp"]}
    for cmd in cmds:
        argv = [str(names.get(a, a)) for a in cmd]
        k = argv.index("-o") + 1
        argv[k] = str(tmp_path / Path(argv[k]).name)
        if "--times" in argv:  # the README's days are beyond the 2 s test runs: use seconds
            t = argv.index("--times") + 1
            argv[t] = ",".join(str(float(v) * 2.0 / 14.0 / 86400) for v in argv[t].split(","))
        rc, _, err = _run(capsys, *argv)
        assert rc == 0, (cmd, err)
        out = Path(argv[argv.index("-o") + 1])
        assert out.stat().st_size > 0
        if out.suffix == ".png":
            _png(out)
        if cmd[0] == "stem" or "--csv" in cmd:
            assert out.with_suffix(".csv").stat().st_size > 0
