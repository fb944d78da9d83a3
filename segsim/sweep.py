"""Parameter sweeps: write a grid of inputs (``segsim sweep``), run many inputs over ranks.

A sweep is two steps, so that the grid is visible and each point is an ordinary input::

    segsim sweep inputs/aging_pristine.yaml --ligands pristine,olabr,ddabr
        --temperatures 288,298,308 --x-cd 0.1,0.25 -o sweep/
    mpiexec -n 8 segsim run sweep/*.yaml -o sweep/

``segsim run`` with several inputs spreads them over the MPI ranks (round-robin,
:mod:`segsim.parallel`); every input writes ``<output dir>/<stem>.h5``.  Re-running the same
command continues a stopped sweep: finished files are skipped, stopped ones resumed from their
checkpoints, missing ones run.  Each point keeps the seed of its input, so the results do not
depend on the number of ranks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """Bad sweep options (one line)."""


def _label(v: float) -> str:
    return f"{v:g}".replace(".", "p")


def write_grid(
    base: str | Path,
    out_dir: str | Path,
    *,
    ligands: Sequence[str] = (),
    temperatures_k: Sequence[float] = (),
    x_cds: Sequence[float] = (),
) -> list[Path]:
    """Write one input per point of ligand x temperature x composition; return the paths.

    Unset axes keep the base input's value.  Relative paths in the base input (the model, a
    ligand library, kinetics defaults) are made absolute so the files work from ``out_dir``.
    Every written input is validated.
    """
    from segsim import config

    base = Path(base)
    try:
        doc = yaml.safe_load(base.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SweepError(f"{base}: cannot read ({exc})") from None
    cfg = config.load(base)  # validates the base (ConfigError on bad input)
    if cfg.run.kind != "kmc":
        raise SweepError(f"{base}: run.kind must be kmc for a sweep (got {cfg.run.kind})")
    doc["model"]["path"] = str(cfg.model.path)
    for sec, key in (("passivation", "library"), ("kinetics", "defaults"), ("rp", "defaults")):
        if isinstance(doc.get(sec), dict) and doc[sec].get(key):
            doc[sec][key] = str((base.parent / doc[sec][key]).resolve())
    lig_axis: list[Any] = list(ligands) or [doc.get("passivation", {}).get("ligand", "pristine")]
    t_axis = list(temperatures_k) or [doc["run"]["temperature_k"]]
    x_axis = list(x_cds) or [doc["system"]["x_cd"]]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lig, temp, x in itertools.product(lig_axis, t_axis, x_axis):
        name = lig if isinstance(lig, str) else "custom"
        d = {**doc}
        d["passivation"] = {**doc.get("passivation", {}), "ligand": lig}
        d["run"] = {**doc["run"], "temperature_k": float(temp)}
        d["system"] = {**doc["system"], "x_cd": float(x)}
        p = out / f"{base.stem}_{name}_T{_label(float(temp))}_x{_label(float(x))}.yaml"
        text = yaml.safe_dump(d, sort_keys=False)
        config.from_dict(yaml.safe_load(text), source=str(p))
        p.write_text(text)
        paths.append(p)
    return paths


def run_many(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    force: bool = False,
    quiet: bool = False,
    walltime_s: float | None = None,
) -> list[dict[str, Any]] | None:
    """Run several inputs over the MPI ranks; return one summary per input on rank 0.

    All inputs are validated first (a bad one stops the sweep before anything runs).
    """
    import time

    from segsim import config, driver, parallel
    from segsim.io import hdf5

    cfgs = [config.load(p) for p in inputs]
    out = Path(out_dir)
    if not out.is_dir():
        raise SweepError(f"output directory {out} does not exist")
    stems = [Path(p).stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise SweepError("two inputs have the same file name; their outputs would collide")
    w = parallel.world()
    t0 = time.perf_counter()
    tasks = list(range(len(inputs)))

    def one(k: int) -> dict[str, Any]:
        path = out / f"{stems[k]}.h5"
        ck = hdf5.read_checkpoint(path) if path.exists() and not force else None
        if ck is not None and bool(ck[1].get("complete")):
            status = "done before"
        else:
            left = None if walltime_s is None else walltime_s - (time.perf_counter() - t0)
            run = driver.run_kmc if cfgs[k].run.kind == "kmc" else driver.run_canonical
            if left is not None and left <= 0:
                status = "not started (walltime; re-run the command to continue)"
            else:
                try:
                    run(cfgs[k], path, resume=ck is not None, progress=False, walltime_s=left)
                    status = "resumed" if ck is not None else "ran"
                except driver.Interrupted:
                    status = "stopped with a checkpoint (re-run the command to continue)"
        if not quiet:
            prefix = f"[rank {w.rank}/{w.size}] " if w.size > 1 else ""
            print(f"{prefix}{inputs[k]} -> {path}: {status}", flush=True)
        return {"input": str(inputs[k]), "output": str(path), "status": status}

    return parallel.run_tasks(w, tasks, one)
