"""CP2K PBE check of the bulk vacancy formation energy on CHGNet-relaxed geometries.

``python -m studies.defect_thermodynamics.cp2k_check`` runs PBE single points (the settings of
:mod:`studies.dft_validation.dft_validation`: PBE, DZVP-MOLOPT-SR-GTH, GTH-PBE, 400/60 Ry,
EPS_SCF 1e-6, diagonalisation + Broyden mixing) on

* ``bulk2_perfect`` and ``bulk2_v-trans``: the 2x2x2 CsPbBr3 cell (40 atoms) and the same cell
  with the model's vacancy (37 atoms), positions relaxed by CHGNet at CHGNet's lattice
  constant (start k = 0 of ``run bulk2``); Gamma point only (the 2x2x2 cell folds R onto
  Gamma), Fermi-Dirac smearing at 300 K with 20 added MOs and mixing 0.1 (the settings
  dft_validation needed for its vacancy cells; for a gapped system the smearing does not
  change the energy), used for both cells;
* ``csbr_rocksalt`` (8 atoms, CHGNet-relaxed conventional cell, 3x3x3 Monkhorst-Pack k-points)
  and ``csbr_cscl`` (2 atoms, 6x6x6), for mu_CsBr; ``pbbr2_pnma`` (12 atoms, 3x5x3) for the
  PbBr2-rich limit and the formation energy of CsPbBr3 from CsBr + PbBr2.

The perovskite cells are Gamma-only and the CsBr cells use k-points: the k-point errors do not
cancel between them exactly (a systematic error of order 10 meV per formula unit, not
measured by the Gamma-only cells; ``bulk2_*@k222`` repeat the two perovskite cells with a
2x2x2 Monkhorst-Pack mesh as the check).  Results (with the CHGNet energy of the same geometry) go to
``defect_thermodynamics_pbe.json`` after every cell; a rerun skips cells already there.
``--relax`` relaxes the positions with PBE instead (CP2K GEO_OPT, BFGS, fixed cell, max force
4.5e-4 Ha/bohr), starting from the CHGNet geometry; the energy is the last one of the run and
the record is ``<cell>_pbe-relaxed``.  Run with ``OMP_NUM_THREADS=2`` in the background
(``nohup``); scratch in ``/tmp/defects_cp2k``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studies.defect_thermodynamics.defect_thermodynamics import (
    HERE,
    _read_geometry,
    geometry_path,
)

OUT = HERE / "defect_thermodynamics_pbe.json"

#: Cells: name -> (k-point mesh or None for Gamma, extra CP2K settings).
CELLS: dict[str, tuple[tuple[int, int, int] | None, dict[str, Any]]] = {
    "csbr_cscl": ((6, 6, 6), {}),
    "csbr_rocksalt": ((3, 3, 3), {}),
    "pbbr2_pnma": ((3, 5, 3), {}),
    "bulk2_perfect": (None, {"smear_kelvin": 300.0, "added_mos": 20, "mixing_alpha": 0.1}),
    "bulk2_v-trans": (None, {"smear_kelvin": 300.0, "added_mos": 20, "mixing_alpha": 0.1}),
    # k-point check of the Gamma-only perovskite cells (2x2x2 Monkhorst-Pack on the 2x2x2 cell)
    "bulk2_perfect@k222": (
        (2, 2, 2),
        {"smear_kelvin": 300.0, "added_mos": 20, "mixing_alpha": 0.1},
    ),
    "bulk2_v-trans@k222": (
        (2, 2, 2),
        {"smear_kelvin": 300.0, "added_mos": 20, "mixing_alpha": 0.1},
    ),
}


def _with_kpoints(text: str, mesh: tuple[int, int, int] | None) -> str:
    if mesh is None:
        return text
    block = (
        "    &KPOINTS\n"
        f"      SCHEME MONKHORST-PACK {mesh[0]} {mesh[1]} {mesh[2]}\n"
        "      SYMMETRY .FALSE.\n"
        "      FULL_GRID .FALSE.\n"
        "    &END KPOINTS\n"
    )
    return text.replace("  &END DFT\n", block + "  &END DFT\n", 1)


def _as_geo_opt(text: str) -> str:
    """Turn a single-point input into a positions-only BFGS relaxation (fixed cell)."""
    text = text.replace("RUN_TYPE ENERGY", "RUN_TYPE GEO_OPT", 1)
    motion = (
        "&MOTION\n"
        "  &GEO_OPT\n"
        "    OPTIMIZER BFGS\n"
        f"    MAX_FORCE {GEO_OPT_MAX_FORCE_HARTREE_PER_BOHR:.1E}\n"
        "    MAX_ITER 200\n"
        "  &END GEO_OPT\n"
        "&END MOTION\n"
    )
    return text + motion


#: GEO_OPT force criterion, Hartree/bohr (4.5e-4 = 0.023 eV/A, CP2K's default).
GEO_OPT_MAX_FORCE_HARTREE_PER_BOHR = 4.5e-4


def run_cell(name: str, workroot: Path, threads: int, relax: bool = False) -> dict[str, Any]:
    """Run one PBE single point (``relax``: a GEO_OPT from the CHGNet geometry); return it."""
    import os
    import subprocess

    from studies.dft_validation.dft_validation import (
        CP2K_SETTINGS,
        cp2k_input,
        parse_cp2k_output,
    )

    mesh, extra = CELLS[name]
    atoms = _read_geometry(geometry_path("chgnet", name.split("@")[0], 0))
    settings = {**CP2K_SETTINGS, **extra}
    workdir = workroot / (name + ("_relax" if relax else ""))
    workdir.mkdir(parents=True, exist_ok=True)
    text = _with_kpoints(cp2k_input(atoms, settings), mesh)
    (workdir / "in.inp").write_text(_as_geo_opt(text) if relax else text)
    t0 = time.perf_counter()
    with open(workdir / "out.log", "w") as out:
        proc = subprocess.run(
            ["cp2k.psmp", "-i", "in.inp"],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"cp2k.psmp exited with {proc.returncode}; see {workdir}")
    res = parse_cp2k_output((workdir / "out.log").read_text(errors="replace"))
    chg = next(
        r
        for r in (
            json.loads(line)
            for line in (HERE / "defect_thermodynamics.jsonl").read_text().splitlines()
            if line.strip()
        )
        if r["calculator"] == "chgnet" and r["name"] == name.split("@")[0] and r["k"] == 0
        and r["mode"] in ("relax", "cell")
    )  # fmt: skip
    return {
        "n_atoms": len(atoms),
        "counts": {s: atoms.get_chemical_symbols().count(s) for s in ("Cs", "Pb", "Br")},
        "energy_eV": res["energy_eV"],
        "scf_steps": res["scf_steps"],
        "cp2k_version": res["cp2k_version"],
        "kpoints": list(mesh) if mesh else "Gamma",
        "settings": settings,
        "wall_s": time.perf_counter() - t0,
        "geometry": str(geometry_path("chgnet", name.split("@")[0], 0).relative_to(HERE)),
        "chgnet_energy_eV": chg["energy_ev"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cells", nargs="+", default=[c for c in CELLS if "@" not in c], choices=list(CELLS)
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default="/tmp/defects_cp2k")
    p.add_argument(
        "--relax", action="store_true",
        help="PBE positions-only relaxation (BFGS, fixed cell) from the CHGNet geometry; "
        "stored as <cell>_pbe-relaxed",
    )  # fmt: skip
    args = p.parse_args(argv)
    data = json.loads(OUT.read_text()) if OUT.exists() else {"cells": {}}
    for cell in args.cells:
        name = cell + ("_pbe-relaxed" if args.relax else "")
        if name in data["cells"]:
            continue
        print(f"{name} ...", flush=True)
        try:
            data["cells"][name] = run_cell(cell, Path(args.workdir), args.threads, args.relax)
        except (RuntimeError, StopIteration, FileNotFoundError) as exc:
            print(f"FAILED {name}: {exc!r}", flush=True)
            continue
        OUT.write_text(json.dumps(data, indent=1) + "\n")
        print(f"{name}: {data['cells'][name]['energy_eV']:.4f} eV", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
