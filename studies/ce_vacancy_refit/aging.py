"""Age the pristine NC 14 days with a candidate CE: does it still turn hollow (issue 26).

``python -m studies.ce_vacancy_refit.aging NAME [NAME ...]`` writes, for each name,
``aging_<NAME>.yaml`` here (``inputs/aging_pristine.yaml`` with ``model.path`` pointed at
``<NAME>.ce`` of this folder; ``shipped`` means ``potentials/fitted.ce`` itself), runs
``segsim run`` on it (the result file goes to ``--workdir``, default a temporary folder) and
appends to ``aging.md`` the snapshots of days 0, 1, 4 and 14: Cd fraction x (Cd / (Pb + Cd)),
vacancy sites, interior vacancies (no outside nearest neighbour), the vacancy clusters
(nearest-neighbour connected V sites, ``scipy.ndimage.label``: their number and the largest),
the crystal's extent (max - min + 1 of the grid coordinates of the non-outside sites, per
axis) and the KMC events so far (``/snapshots/step``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from segsim import species

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DAYS: tuple[float, ...] = (0.0, 1.0, 4.0, 14.0)
SECONDS_PER_DAY = 86400.0


def write_input(name: str) -> Path:
    """Write ``aging_<name>.yaml`` here (the shipped aging input, the candidate's CE)."""
    doc = yaml.safe_load((ROOT / "inputs" / "aging_pristine.yaml").read_text())
    ce = ROOT / "potentials" / "fitted.ce" if name == "shipped" else HERE / f"{name}.ce"
    doc["model"]["path"] = str(Path("..") / ".." / ce.relative_to(ROOT))
    path = HERE / f"aging_{name}.yaml"
    path.write_text(
        f"# inputs/aging_pristine.yaml with the CE `{ce.relative_to(ROOT)}` "
        "(python -m studies.ce_vacancy_refit.aging)\n" + yaml.safe_dump(doc, sort_keys=False)
    )
    return path


def snapshot_rows(h5: Path) -> list[dict[str, Any]]:
    """Return the observables of the snapshots nearest to :data:`DAYS`."""
    from segsim.io.h5md import read_snapshot_times

    with h5py.File(h5, "r") as f:
        coords = np.asarray(f["lattice/coords"][()], dtype=np.int64)
        shape = tuple(int(v) for v in coords.max(axis=0) + 1)
        t = read_snapshot_times(f)
        rows = []
        for day in DAYS:
            i = int(np.argmin(np.abs(t / SECONDS_PER_DAY - day)))
            grid = np.full(shape, species.OUT, dtype=np.uint8)
            grid[tuple(coords.T)] = np.asarray(f["snapshots/occupations"][i])
            rows.append(
                {
                    "day": float(t[i] / SECONDS_PER_DAY),
                    "events": int(f["snapshots/step"][i]),
                    **observables(grid),
                }
            )
    return rows


def observables(occ: np.ndarray) -> dict[str, Any]:
    """Return x, vacancy sites, interior vacancies, V clusters and the extent of one grid."""
    from scipy import ndimage

    out_mask = occ == species.OUT
    n_out_nn = np.zeros(occ.shape, dtype=np.int64)
    for axis in range(3):
        for step in (1, -1):
            n_out_nn += np.roll(out_mask, step, axis)
    vac = occ == species.VAC
    n_pb = int(np.count_nonzero(occ == species.PB))
    n_cd = int(np.count_nonzero(occ == species.CD))
    inside = np.argwhere(~out_mask)
    extent = tuple(int(v) for v in inside.max(axis=0) - inside.min(axis=0) + 1)
    labels, n_clusters = ndimage.label(vac)
    sizes = np.bincount(labels.ravel())[1:]
    return {
        "x": n_cd / max(n_pb + n_cd, 1),
        "n_cd": n_cd,
        "n_v": int(np.count_nonzero(vac)),
        "n_v_interior": int(np.count_nonzero(vac & (n_out_nn == 0))),
        "n_b": n_pb + n_cd + int(np.count_nonzero(vac)),
        "n_clusters": int(n_clusters),
        "largest": int(sizes.max(initial=0)),
        "extent": extent,
    }


def markdown(name: str, rows: Sequence[dict[str, Any]], seconds: float, log: str) -> str:
    """Return the table of one run."""
    lines = [
        f"### `{name}` ({seconds:.0f} s wall)",
        "",
        (
            "| day | x | Cd | V sites | interior V | V clusters | largest cluster "
            "| B sites (Pb+Cd+V) | extent (sites) | KMC events |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['day']:.1f} | {r['x']:.4f} | {r['n_cd']} | {r['n_v']} | {r['n_v_interior']} "
            f"| {r['n_clusters']} | {r['largest']} "
            f"| {r['n_b']} | {' x '.join(str(e) for e in r['extent'])} | {r['events']:.3g} |"
        )
    if log.strip():
        lines += ["", "```", log.strip()[-1500:], "```"]
    return "\n".join(lines) + "\n\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the aging for each candidate name and append its table to ``aging.md``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("names", nargs="+")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=str(HERE / "aging.md"))
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ce_vacancy_refit_"))
    for name in args.names:
        inp = write_input(name)
        h5 = work / f"aging_{name}.h5"
        h5.unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "segsim", "run", str(inp), "-o", str(h5)],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        text = markdown(name, snapshot_rows(h5), seconds, proc.stderr)
        with Path(args.out).open("a") as fh:
            fh.write(text)
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
