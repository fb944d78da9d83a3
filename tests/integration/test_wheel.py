"""segsim as an installed package: build a wheel, install it in a fresh virtualenv, run.

The wheel must carry the shipped data (``potentials/`` as ``segsim/potentials``, ``inputs/``
as ``segsim/inputs``) and every subpackage; the installed copy must read its own data, not the
repository's.  The fresh virtualenv gets segsim from the wheel only; the dependencies (numpy,
numba, icet, ...) come from the virtualenv running the tests, through a ``.pth`` line, so no
download or source build is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from segsim.io.hdf5 import read_config_yaml, read_trace

ROOT = Path(__file__).resolve().parents[2]


def _tracked_copy(dest: Path) -> Path:
    """Copy the files git tracks (plus untracked, not ignored ones) to ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _tracked_copy(tmp / "src")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(dist), str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = dist.glob("segsim-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # the dependencies of the outer environment, after the fresh site-packages
    (site / "outer_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {"wheel": wheel, "python": python, "segsim": env_dir / "bin" / "segsim",
            "site": site, "work": tmp / "work"}  # fmt: skip


def test_wheel_holds_every_package_and_the_shipped_data(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "segsim").rglob("*.py")}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"subpackages missing from the wheel (pyproject packages): {missing}"
    for data in ("kinetics.yaml", "barriers.yaml", "ligands.yaml", "rp.yaml", "optics.yaml", "fitted.ce",
                 "provisional.ce", "derived_parameters.yaml", "aging_targets.yaml"):  # fmt: skip
        assert f"segsim/potentials/{data}" in names
    assert "segsim/inputs/quickstart.yaml" in names
    assert not any(n.startswith(("studies/", "segsim/studies")) for n in names)


def test_installed_package_reads_its_own_data_and_runs_the_quickstart(installed):
    work = installed["work"]
    work.mkdir()
    probe = subprocess.run(
        [str(installed["python"]), "-c",
         "import segsim, segsim.params.files as f; print(segsim.__file__); print(f.POTENTIALS_DIR)"],
        cwd=work, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(installed["site"]) for p in probe), probe
    quickstart = Path(probe[1]).parent / "inputs" / "quickstart.yaml"
    out = work / "quickstart.h5"
    run = subprocess.run(
        [str(installed["segsim"]), "run", str(quickstart), "-o", str(out)],
        cwd=work, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert read_trace(out)["step"][-1] > 0
    assert str(Path(probe[1]) / "fitted.ce") in read_config_yaml(out)


def test_installed_package_runs_a_kmc_on_its_shipped_kinetics_and_ligands(installed):
    """A KMC input naming no parameter file: kinetics, ligands and RP come from the package."""
    work = installed["work"]
    work.mkdir(exist_ok=True)
    site_pot = installed["site"] / "segsim" / "potentials"
    (work / "kmc.yaml").write_text(
        "system: {edge_nm: 3.0, x_cd: 0.25}\n"
        f"model: {{kind: cluster_expansion, path: {site_pot / 'provisional.ce'}}}\n"
        "run: {kind: kmc, temperature_k: 298.0, duration_s: 1.0, seed: 7}\n"
        "passivation: {ligand: ddabr}\n"
        "output: {frame_interval_s: 0.5}\n"
    )
    run = subprocess.run(
        [str(installed["segsim"]), "run", "kmc.yaml", "-o", "kmc.h5"],
        cwd=work, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    text = read_config_yaml(work / "kmc.h5")
    assert str(site_pot / "kinetics.yaml") in text
    assert str(site_pot / "ligands.yaml") in text
