"""Measure how much relaxed reference energies depend on the start geometry.

``python -m studies.start_spread.start_spread`` relaxes a few NCs of the training set (default: the
four 4^3 NCs at x = 0.25 ``nc4_x0.25_uniform_0``, ``_uniform_1``, ``_core``, ``_surface``)
from several starts of one start kind (:func:`segsim.training.reference.start_atoms`: ideal or
a-a-c+ tilted positions, each rattled with seeds ``1000 + k``) and reports, per structure, the
final energies, their spread (max - min, eV), the FIRE steps and the final largest force.  A
cluster expansion can only fit energy differences between Cd arrangements that are larger
than this start-to-start spread.

The calculator, the optimizer and its criteria and the structure parameters come from a
``segsim train`` input (default ``inputs/train.yaml``); the start kind, rattle, number of
starts and tilt angles from the command line.  Every finished relaxation is appended to a
JSON-lines cache (``--cache``), so an interrupted run resumes and runs with other start
settings accumulate; the Markdown report (``--out``) is rewritten from the whole cache after
each relaxation.  The report compares with the ideal-start energies of the shipped database
(``paths.database`` of the input) where it holds the same structures.

``--bulk`` also relaxes a periodic 2 x 2 x 2 CsPbBr3 cell (positions and cell) from the
ideal and from the tilted positions and reports the a-a-c+ tilt angles it relaxes to
(:func:`segsim.training.tilt.measure_tilt_degrees`): the origin of
:data:`segsim.training.tilt.CHGNET_BULK_TILT_DEGREES`.

``--notes FILE`` appends a Markdown file (e.g. the conclusions drawn from the table) to the
report; ``--save-dir DIR`` keeps the relaxed structures (extended XYZ).

Run it with one thread per process (``OMP_NUM_THREADS=1``); ``--jobs`` relaxations run in
parallel processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

#: This study's folder (its outputs live here).
HERE = Path(__file__).resolve().parent

__all__ = ["DEFAULT_NAMES", "bulk_tilt", "main", "markdown", "run_starts"]

#: The structures measured by default (4^3 NCs at x = 0.25: two random, core, surface).
DEFAULT_NAMES: tuple[str, ...] = (
    "nc4_x0.25_uniform_0",
    "nc4_x0.25_uniform_1",
    "nc4_x0.25_core",
    "nc4_x0.25_surface",
)


def _structures(cfg: Any, names: Sequence[str]) -> dict[str, Any]:
    """Return the named NCs, built exactly as ``segsim train`` builds them from ``cfg``."""
    from segsim.training.structures import build_training_set

    s = cfg.structures
    edges = sorted({int(name.split("_")[0][2:]) for name in names})
    n_random = 1 + max(
        (int(name.rsplit("_", 1)[1]) for name in names if "_uniform_" in name), default=0
    )
    built = build_training_set(
        nc_edges=edges,
        compositions=(),
        n_random=n_random,
        n_profiles=0,
        nc_end_members=(),
        vacancy_structures=0,
        bulk_sizes=(),
        rp_edges=(),
        csbr=False,
        seed=s.seed,
        a_angstrom=s.a_angstrom,
        vacuum_angstrom=s.vacuum_angstrom,
        pad=s.pad_sites,
    )
    by_name = {st.name: st for st in built}
    missing = sorted(set(names) - set(by_name))
    if missing:
        raise ValueError(f"not built by the training-set generator: {missing}")
    return {name: by_name[name] for name in names}


def _job(
    cfg_path: str,
    name: str,
    relax_fields: dict[str, Any],
    k: int,
    calc_threads: int,
    save_dir: str | None = None,
    builder: Any = None,
) -> dict[str, Any]:
    """Relax start ``k`` of structure ``name`` (runs in a worker process).

    With ``save_dir`` the relaxed structure is also written there (extended XYZ).
    ``builder(cfg)`` returns the structures by name (default: the training-set generator).
    """
    from segsim.config import load_train
    from segsim.training import calculators, reference, tilt

    calculators.limit_torch_threads(calc_threads)  # one thread per worker for CHGNet
    cfg = load_train(cfg_path)
    structure = (_structures(cfg, [name]) if builder is None else builder(cfg))[name]
    relax = reference.RelaxSettings(**relax_fields)
    calc, _ = calculators.make_calculator(cfg.calculator.kind, cfg.calculator.settings)
    t0 = time.perf_counter()
    out, atoms = reference.relax_start(structure.atoms, calc, relax, k)
    seconds = time.perf_counter() - t0
    angles = tilt.measure_tilt_degrees(atoms, structure.atoms)
    if save_dir is not None:
        from ase.io import write

        Path(save_dir).mkdir(parents=True, exist_ok=True)
        label = f"{relax.start}_r{relax.rattle_angstrom:g}_s{1000 + k}"
        write(Path(save_dir) / f"{name}_{label}.extxyz", atoms)
    return {
        "name": name,
        "start_kind": relax.start,
        "rattle_angstrom": relax.rattle_angstrom,
        "seed": 1000 + k if relax.rattle_angstrom > 0 else None,
        "tilt_degrees": (
            [relax.tilt_antiphase_degrees, relax.tilt_inphase_degrees]
            if relax.start in ("tilted", "tilted_anneal")
            else None
        ),
        "anneal": (
            [relax.anneal_kelvin, relax.anneal_femtoseconds]
            if relax.start == "tilted_anneal"
            else None
        ),
        "key": _key(name, relax_fields, k),
        "structure_hash": reference.structure_hash(structure.atoms),
        "energy_ev": out["energy_ev"],
        "n_steps": out["n_steps"],
        "fmax_final_ev_per_angstrom": out["fmax_final_ev_per_angstrom"],
        "converged": out["converged"],
        "seconds": seconds,
        "final_antiphase_degrees": angles["antiphase_degrees"],
        "final_inphase_degrees": angles["inphase_degrees"],
        "final_modes_degrees": tilt.glazer_fingerprint(atoms, structure.atoms),
        "n_atoms": len(atoms),
    }


def cache_fields(relax: Any) -> dict[str, Any]:
    """Return the relaxation settings that key a cached start (a ``RelaxSettings``).

    Left out: ``n_starts`` and ``aggregate`` (how many starts there are and how they are
    combined do not change any one start), and the anneal settings unless the start anneals.
    So the keys of runs made before a setting existed stay valid.
    """
    skip = {"n_starts", "aggregate"} | (
        {"anneal_kelvin", "anneal_femtoseconds"} if relax.start != "tilted_anneal" else set()
    )
    return {k: v for k, v in asdict(relax).items() if k not in skip}


def _key(name: str, relax_fields: dict[str, Any], k: int) -> str:
    return json.dumps({"name": name, "relax": relax_fields, "k": k}, sort_keys=True)


def _read_cache(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_starts(
    cfg_path: str,
    names: Sequence[str],
    relax_fields: dict[str, Any],
    n_starts: int,
    cache: Path,
    *,
    jobs: int = 1,
    on_result: Any = None,
    command: str = "",
    save_dir: str | None = None,
    builder: Any = None,
) -> list[dict[str, Any]]:
    """Relax starts ``0 .. n_starts - 1`` of each structure; return all cached records.

    Relaxations already in ``cache`` (same structure, settings and start) are not repeated;
    records of a structure whose atoms have changed since (``structure_hash``; records
    without one count as current) are ignored and recomputed.  Each new one is appended to
    it (with ``command``, the command line that made it) as soon as it is done and
    ``on_result`` is called.  ``builder`` (a picklable callable, ``cfg -> {name:
    ReferenceStructure}``) supplies structures that are not in the training set.
    """
    from segsim.config import load_train
    from segsim.training.reference import structure_hash

    cfg = load_train(cfg_path)
    built = _structures(cfg, names) if builder is None else builder(cfg)
    current = {name: structure_hash(built[name].atoms) for name in names}

    def stale(rec: dict[str, Any]) -> bool:  # cached for a structure that has changed since
        now = current.get(rec["name"])
        return now is not None and rec.get("structure_hash", now) != now

    records = [r for r in _read_cache(cache) if not stale(r)]
    done = {r["key"] for r in records}
    todo = [
        (name, k)
        for name in names
        for k in range(n_starts)
        if _key(name, relax_fields, k) not in done
    ]
    cache.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(_job, cfg_path, name, relax_fields, k, 1, save_dir, builder)
            for name, k in todo
        ]
        for fut in as_completed(futures):
            rec = {**fut.result(), "command": command}
            with cache.open("a") as fh:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
            records.append(rec)
            print(
                f"{rec['name']} {rec['start_kind']} seed {rec['seed']}: "
                f"E = {rec['energy_ev']:.4f} eV, {rec['n_steps']} steps, "
                f"{rec['seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            if on_result is not None:
                on_result(records)
    return records


def bulk_tilt(cfg_path: str, start_degrees: tuple[float, float]) -> list[dict[str, Any]]:
    """Relax a 2 x 2 x 2 CsPbBr3 cell (positions and cell) from the ideal and tilted starts.

    Returns one record per start: ``start``, ``energy_ev``, ``n_steps``, cell lengths
    (Angstrom) and the relaxed a-a-c+ angles (degrees).
    """
    from segsim.atomistic import to_atoms
    from segsim.config import load_train
    from segsim.lattice import build_periodic
    from segsim.training import calculators, reference, tilt

    cfg = load_train(cfg_path)
    c = cfg.calculator
    calc, _ = calculators.make_calculator(c.kind, c.settings)
    lattice = build_periodic(2, cfg.structures.a_angstrom)
    ideal = to_atoms(lattice, lattice.empty_occupations())
    base = _settings(c, relax_cell=False, rattle_angstrom=0.0, n_starts=1, start="ideal")
    out = []
    for label, relax in (
        ("ideal", base),
        ("ideal, rattled 0.03 A", replace(base, rattle_angstrom=0.03)),
        (
            f"tilted {start_degrees[0]:g}/{start_degrees[1]:g} deg",
            replace(
                base,
                start="tilted",
                tilt_antiphase_degrees=start_degrees[0],
                tilt_inphase_degrees=start_degrees[1],
            ),
        ),
    ):
        res, atoms = reference.relax_start(ideal, calc, relax, 0, relax_cell=True)
        angles = tilt.measure_tilt_degrees(atoms, ideal)
        out.append(
            {
                "start": label,
                "energy_ev": res["energy_ev"],
                "n_steps": res["n_steps"],
                "converged": res["converged"],
                "cell_angstrom": [float(x) for x in atoms.cell.lengths()],
                **angles,
            }
        )
    return out


def _settings(calculator: Any, **overrides: Any) -> Any:
    """Return the ``segsim train`` relaxation settings of an input, with ``overrides``."""
    from segsim.training.pipeline import relax_fields
    from segsim.training.reference import RelaxSettings

    return RelaxSettings(**{**relax_fields(calculator), **overrides})


def _ideal_reference(cfg: Any, names: Sequence[str]) -> dict[str, float]:
    """Energies (eV) of the named structures in the input's database, ideal default start."""
    from segsim.training import calculators, reference

    if not cfg.database.is_file():
        return {}
    c = cfg.calculator
    relax = _settings(c, rattle_angstrom=0.0, n_starts=1, start="ideal")
    prov = calculators.calculator_provenance(c.kind, c.settings)
    rows = reference.load_references(
        cfg.database, provenance_hash=reference.provenance_hash(prov, relax)
    )
    return {r["name"]: r["energy_ev"] for r in rows if r["name"] in names}


def _setting_label(rec: dict[str, Any]) -> str:
    if rec["start_kind"] == "ideal":
        label = "ideal"
    elif rec["start_kind"] == "untilted":
        label = "untilted (Br on bond axes)"
    else:
        a, c = rec["tilt_degrees"]
        label = f"tilted {a:g}/{c:g} deg"
    if rec.get("anneal"):
        kelvin, fs = rec["anneal"]
        label += f" + MD {kelvin:g} K {fs:g} fs"
    if rec["rattle_angstrom"]:
        label += f" + rattle {rec['rattle_angstrom']:g} A"
    return label


def _modes(rec: dict[str, Any], threshold_degrees: float = 1.0) -> str:
    """Return the tilt modes of a record above ``threshold_degrees`` (``x- 5.1, z+ 4.4``)."""
    modes = rec.get("final_modes_degrees")
    if modes is None:
        return "-"
    big = [f"{m} {v:+.1f}" for m, v in modes.items() if abs(v) >= threshold_degrees]
    return ", ".join(big) if big else "none"


def markdown(
    records: Sequence[dict[str, Any]],
    names: Sequence[str],
    *,
    reference_ev: dict[str, float],
    bulk: Sequence[dict[str, Any]] | None = None,
    notes: str = "",
) -> str:
    """Return the Markdown report of the cached relaxations."""
    lines = [
        "# Start-geometry spread of CHGNet reference relaxations",
        "",
        (
            "Made by (from the repository root; the relaxations are cached in the JSON-lines file "
            "next to this report, so the runs below accumulate):"
        ),
        "",
        "```",
        *dict.fromkeys(r["command"] for r in records if r.get("command")),
        "```",
        "",
        (
            "Each row is one relaxation (FIRE, positions only, criteria of the `segsim train` "
            "input) of one start: ideal or a-a-c+ tilted positions (`segsim.training.tilt`), "
            "rattled with the seed shown.  Final tilt: the mean a-a-c+ angles (antiphase / "
            "in-phase, degrees) of the relaxed structure, signed by the imposed pattern "
            "(`tilt.measure_tilt_degrees`; near 0 where the structure left the pattern or never "
            "had it).  Final tilt modes: the rotations about x, y, z projected on the antiphase "
            "(-) and in-phase (+) patterns, those of at least 1 degree "
            "(`tilt.glazer_fingerprint`; a-a-c+ is x-, y-, z+).  Energies are total energies in "
            "eV."
        ),
        "",
        (
            "| structure | start | seed | E (eV) | FIRE steps | final fmax (eV/A) | converged "
            "| final tilt (deg) | final tilt modes (deg) | time (s) |"
        ),
        "|---|---|---:|---:|---:|---:|---|---|---|---:|",
    ]
    order = {n: i for i, n in enumerate(names)}
    recs = sorted(
        (r for r in records if r["name"] in order),
        key=lambda r: (order[r["name"]], _setting_label(r), r["seed"] or 0),
    )
    for r in recs:
        lines.append(
            f"| {r['name']} | {_setting_label(r)} | {r['seed']} | {r['energy_ev']:.4f} "
            f"| {r['n_steps']} | {r['fmax_final_ev_per_angstrom']:.4f} | {r['converged']} "
            f"| {r['final_antiphase_degrees']:.1f} / {r['final_inphase_degrees']:.1f} "
            f"| {_modes(r)} | {r['seconds']:.0f} |"
        )
    lines += [
        "",
        "## Spread per structure and start kind",
        "",
        (
            "Spread: max - min of the final energies of the starts (eV).  Ideal start (db): the "
            "energy stored in the input's database for the default ideal start (no rattle), "
            "where present."
        ),
        "",
        (
            "| structure | start | n | E min (eV) | E max (eV) | spread (eV) | std (eV) "
            "| E min - ideal start (db) (eV) |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[float]] = {}
    for r in recs:
        groups.setdefault((r["name"], _setting_label(r)), []).append(r["energy_ev"])
    for (name, label), energies in groups.items():
        e = np.asarray(energies)
        ref = reference_ev.get(name)
        diff = f"{e.min() - ref:+.4f}" if ref is not None else "-"
        lines.append(
            f"| {name} | {label} | {e.size} | {e.min():.4f} | {e.max():.4f} "
            f"| {e.max() - e.min():.4f} | {e.std():.4f} | {diff} |"
        )
    if bulk:
        lines += [
            "",
            "## Tilt angles of a relaxed 2x2x2 CsPbBr3 cell",
            "",
            (
                "Positions and cell relaxed (FrechetCellFilter, same criteria); angles measured "
                "against the a-a-c+ pattern as above (mean +- std over the bridging Br)."
            ),
            "",
            "| start | E (eV) | steps | cell (A) | antiphase (deg) | in-phase (deg) |",
            "|---|---:|---:|---|---|---|",
        ]
        for b in bulk:
            cell = " x ".join(f"{x:.3f}" for x in b["cell_angstrom"])
            lines.append(
                f"| {b['start']} | {b['energy_ev']:.4f} | {b['n_steps']} | {cell} "
                f"| {b['antiphase_degrees']:.2f} +- {b['antiphase_std_degrees']:.2f} "
                f"| {b['inphase_degrees']:.2f} +- {b['inphase_std_degrees']:.2f} |"
            )
    if notes.strip():
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    from segsim.config import load_train
    from segsim.training import reference, tilt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="inputs/train.yaml", help="segsim train input")
    p.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES))
    p.add_argument("--start", choices=reference.STARTS, default="tilted")
    p.add_argument("--tilt", nargs=2, type=float, default=tilt.CHGNET_BULK_TILT_DEGREES,
                   metavar=("ANTIPHASE", "INPHASE"), help="tilt angles, degrees")  # fmt: skip
    p.add_argument("--rattle", type=float, default=0.02, help="rattle stdev, Angstrom")
    p.add_argument("--anneal", nargs=2, type=float, default=(100.0, 300.0),
                   metavar=("KELVIN", "FS"), help="MD anneal of --start tilted_anneal")  # fmt: skip
    p.add_argument("--starts", type=int, default=3, help="starts per structure (seeds 1000+k)")
    p.add_argument("--jobs", type=int, default=1, help="parallel relaxations")
    p.add_argument("--bulk", action="store_true", help="also the 2x2x2 bulk tilt calibration")
    p.add_argument("--out", default=str(HERE / "start_spread.md"))
    p.add_argument("--cache", default=None, help="JSON lines (default: --out with .jsonl)")
    p.add_argument("--notes", default=None, help="Markdown file appended to the report")
    p.add_argument("--save-dir", default=None, help="write the relaxed structures here")
    args = p.parse_args(argv)

    cfg = load_train(args.config)
    relax = _settings(
        cfg.calculator,
        relax_cell=False,
        rattle_angstrom=args.rattle,
        n_starts=args.starts,
        start=args.start,
        tilt_antiphase_degrees=args.tilt[0],
        tilt_inphase_degrees=args.tilt[1],
        anneal_kelvin=args.anneal[0],
        anneal_femtoseconds=args.anneal[1],
    )
    fields = cache_fields(relax)
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out.with_suffix(".jsonl")
    bulk_path = cache.with_name(cache.stem + "_bulk.json")
    command = "OMP_NUM_THREADS=1 python -m studies.start_spread.start_spread " + shlex.join(
        list(sys.argv[1:] if argv is None else argv)
    )
    reference_ev = _ideal_reference(cfg, args.names)

    def write(records: list[dict[str, Any]]) -> None:
        bulk = json.loads(bulk_path.read_text()) if bulk_path.is_file() else None
        out.parent.mkdir(parents=True, exist_ok=True)
        text = markdown(
            records,
            args.names,
            reference_ev=reference_ev,
            bulk=bulk,
            notes=Path(args.notes).read_text() if args.notes else "",
        )
        out.write_text(text)

    if args.bulk:
        bulk_path.parent.mkdir(parents=True, exist_ok=True)
        bulk_path.write_text(json.dumps(bulk_tilt(args.config, (10.0, 10.0)), indent=1) + "\n")
    records = run_starts(
        os.fspath(args.config), args.names, fields, args.starts, cache, jobs=args.jobs,
        on_result=write, command=command, save_dir=args.save_dir,
    )  # fmt: skip
    write(records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
