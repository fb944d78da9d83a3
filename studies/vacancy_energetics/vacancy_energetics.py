"""Measure the B-vacancy energetics that decide how deep Cd loss reaches in the KMC.

``python -m studies.vacancy_energetics.vacancy_energetics`` relaxes a few pure CsPbBr3 NCs with one or
two B vacancies (charge-balanced by :data:`segsim.training.structures.VACANCY_RULE`) from
several rattled starts each, with the calculator and criteria of a ``segsim train`` input,
and reports three energy differences next to what the shipped cluster expansions predict for
the same occupations:

``injection`` (``injection_depth2``)
    E(one V one (two) layers below the centre of a face) - E(one V at that face centre): the
    cost of moving a surface vacancy into the crystal (vacancy injection, MODEL.md section 3);
    depth 2 needs n >= 5.
``binding_surface``
    E(two V on the centres of two opposite faces) - E(two V side by side on one face): how
    strongly surface vacancies bind into pits (> 0: they attract).
``binding_normal``
    E(V at one face centre + V one layer below the centre of a side face) - E(V at a face
    centre + V directly below it): the binding of a vacancy that enters under a surface vacancy.

Why this measurement exists (issue 4 note): in the lattice KMC, surface vacancies left by Cd
expulsion must hop inward for core Cd to reach the surface.  With the provisional CE each of
the quantities is one broken-bond energy GAMMA; at the first choice, 0.20 eV, the KMC keeps
every vacancy in surface pits whatever the barriers, at 0.07 eV core Cd leaves in days.
This measurement is what the reference calculator says about them (and the basis of the
0.07 eV, :data:`segsim.training.provisional.GAMMA_BOND_EV`).

Energies are relaxation-path averages: the tilt landscape of these NCs is glassy (see
``studies/start_spread/start_spread.md``), so every structure is relaxed from ``--starts`` rattled
starts (seeds ``1000 + k``) and the mean and its standard error are reported; differences
carry the combined error.  Relaxations are cached in a JSON-lines file (``--cache``, same
records as :mod:`studies.start_spread.start_spread`), so an interrupted run resumes; the Markdown
report (``--out``) is rewritten after every relaxation.  Run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from segsim.training.structures import VARIANTS, build_vacancy_variants, structure_name

#: This study's folder (its outputs live here).
HERE = Path(__file__).resolve().parent

__all__ = [
    "DIFFERENCES",
    "ce_energies",
    "main",
    "markdown",
    "structures_for",
    "summarise",
]

#: The reported differences: name -> (minuend variant, subtrahend variant, meaning).
DIFFERENCES: dict[str, tuple[str, str, str]] = {
    "injection": ("v1-depth1", "v1-face", "E(V at depth 1) - E(V at the face centre)"),
    "injection_depth2": ("v1-depth2", "v1-face", "E(V at depth 2) - E(V at the face centre)"),
    "binding_surface": (
        "v2-face-apart",
        "v2-face-adjacent",
        "E(2 V on opposite faces) - E(2 V side by side on one face); > 0 attract",
    ),
    "binding_normal": (
        "v2-normal-apart",
        "v2-normal-adjacent",
        "E(V face + V under another face) - E(V face + V right below it); > 0 attract",
    ),
}


def structures_for(cfg: Any, n_edge: int) -> dict[str, Any]:
    """Return :func:`~segsim.training.structures.build_vacancy_variants` with the ``structures`` settings of a train input."""
    s = cfg.structures
    return build_vacancy_variants(
        n_edge, a_angstrom=s.a_angstrom, vacuum_angstrom=s.vacuum_angstrom, pad=s.pad_sites
    )


def ce_energies(structures: dict[str, Any], ce_paths: Sequence[str | Path]) -> dict[str, dict]:
    """Return ``{ce label: {structure name: total CE energy (eV)}}`` for the occupations."""
    from segsim.models.cluster_expansion import load_cluster_expansion

    out: dict[str, dict[str, float]] = {}
    for path in ce_paths:
        model = load_cluster_expansion(path)
        energies = {}
        for name, st in structures.items():
            tables = model.compile(st.lattice)
            energies[name] = float(tables.total_energy(np.asarray(st.occupations)))
        out[Path(path).name] = energies
    return out


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Return per structure: ``n``, ``mean``, ``sem`` (eV), ``min``, ``max``, ``spread``."""
    by_name: dict[str, list[float]] = {}
    for rec in records:
        by_name.setdefault(rec["name"], []).append(float(rec["energy_ev"]))
    out = {}
    for name, values in by_name.items():
        v = np.asarray(values)
        sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
        out[name] = {
            "n": int(v.size),
            "mean": float(v.mean()),
            "sem": sem,
            "min": float(v.min()),
            "max": float(v.max()),
            "spread": float(v.max() - v.min()),
        }
    return out


def differences(
    summary: dict[str, dict[str, float]], n_edge: int
) -> dict[str, tuple[float, float, float]]:
    """Return ``{difference: (mean, standard error, difference of the minima)}`` in eV."""
    out = {}
    for key, (plus, minus, _) in DIFFERENCES.items():
        a, b = summary.get(structure_name(n_edge, plus)), summary.get(structure_name(n_edge, minus))
        if a is None or b is None:
            continue
        sem = float(np.hypot(a["sem"], b["sem"]))
        out[key] = (a["mean"] - b["mean"], sem, a["min"] - b["min"])
    return out


def markdown(
    records: Sequence[dict[str, Any]],
    n_edge: int,
    *,
    ce: dict[str, dict[str, float]],
    commands: Sequence[str] = (),
    notes: str = "",
) -> str:
    """Return the Markdown report of the cached relaxations of one NC size.

    Records of different start kinds (``start_spread._setting_label``) are never averaged
    together: each gets its own section.
    """
    from studies.start_spread.start_spread import _setting_label

    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(_setting_label(rec), []).append(rec)
    head = " | ".join(f"{label} (eV)" for label in ce)
    ce_cols = {
        key: " | ".join(
            f"{e[structure_name(n_edge, plus)] - e[structure_name(n_edge, minus)]:+.3f}"
            if structure_name(n_edge, plus) in e and structure_name(n_edge, minus) in e
            else "-"
            for e in ce.values()
        )
        for key, (plus, minus, _) in DIFFERENCES.items()
    }
    lines = [
        f"# B-vacancy energetics of a pure CsPbBr3 NC ({n_edge}^3 B sites)",
        "",
        (
            "Generated by `python -m studies.vacancy_energetics.vacancy_energetics` (module docstring) from "
            "the cached relaxations; commands:"
        ),
        "",
        "```",
        *commands,
        "```",
        "",
        (
            "Each structure is relaxed (FIRE, positions only, the criteria of the `segsim train` "
            "input) from rattled starts (seeds 1000 + k); its energy is the mean over starts "
            "(relaxation-path average, `studies/start_spread/start_spread.md`), with the standard error of "
            "the mean.  CE columns: the shipped cluster expansions on the same occupations.  "
            "One section per start kind."
        ),
    ]
    for label, group in groups.items():
        summary = summarise(group)
        lines += [
            "",
            f"## Start: {label}",
            "",
            "| structure | description | starts | mean E (eV) | s.e. (eV) | spread (eV) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for variant, text in VARIANTS.items():
            name = structure_name(n_edge, variant)
            if variant == "v1-depth2" and n_edge < 5:
                continue
            st = summary.get(name)
            if st is None:
                lines.append(f"| {name} | {text} | 0 | - | - | - |")
                continue
            lines.append(
                f"| {name} | {text} | {st['n']} | {st['mean']:.4f} | {st['sem']:.4f} "
                f"| {st['spread']:.4f} |"
            )
        diff = differences(summary, n_edge)
        lines += [
            "",
            (
                f"| quantity | definition | reference, mean of starts (eV) | reference, "
                f"difference of minima (eV) | {head} |"
            ),
            "|---|---|---:|---:|" + "---:|" * len(ce),
        ]
        for key, (_, _, text) in DIFFERENCES.items():
            if key in diff:
                m, sem, dmin = diff[key]
                ref = f"{m:+.3f} +/- {sem:.3f} | {dmin:+.3f}"
            else:
                ref = "- | -"
            lines.append(f"| {key} | {text} | {ref} | {ce_cols[key]} |")
    lines += [
        "",
        "## Every relaxation",
        "",
        "| structure | start | seed | E (eV) | steps | fmax (eV/A) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for rec in sorted(records, key=lambda r: (r["name"], _setting_label(r), r["seed"] or 0)):
        lines.append(
            f"| {rec['name']} | {_setting_label(rec)} | {rec['seed']} | {rec['energy_ev']:.4f} "
            f"| {rec['n_steps']} | {rec['fmax_final_ev_per_angstrom']:.4f} |"
        )
    if notes:
        lines += ["", notes.rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    from segsim.config import load_train
    from segsim.params.files import POTENTIALS_DIR
    from segsim.training import reference
    from studies.start_spread import start_spread

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="inputs/train.yaml", help="segsim train input")
    p.add_argument("--edge", type=int, default=4, help="B sites per NC edge (>= 4)")
    p.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
        help="relax only these structures (the report shows what the cache holds)",
    )  # fmt: skip
    p.add_argument("--start", choices=reference.STARTS, default="ideal")
    p.add_argument("--rattle", type=float, default=0.02, help="rattle stdev, Angstrom")
    p.add_argument("--starts", type=int, default=6, help="starts per structure (seeds 1000+k)")
    p.add_argument("--jobs", type=int, default=1, help="parallel relaxations")
    p.add_argument("--out", default=str(HERE / "vacancy_energetics.md"))
    p.add_argument("--cache", default=None, help="JSON lines (default: --out with .jsonl)")
    p.add_argument("--notes", default=None, help="Markdown file appended to the report")
    p.add_argument(
        "--ce", nargs="*", default=[str(POTENTIALS_DIR / "provisional.ce"),
                                    str(POTENTIALS_DIR / "fitted.ce")],
        help="cluster expansions to compare with",
    )  # fmt: skip
    args = p.parse_args(argv)

    cfg = load_train(args.config)
    structures = structures_for(cfg, args.edge)
    relax = start_spread._settings(
        cfg.calculator,
        relax_cell=False,
        rattle_angstrom=args.rattle,
        n_starts=args.starts,
        start=args.start,
    )
    fields = start_spread.cache_fields(relax)
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out.with_suffix(".jsonl")
    command = (
        "OMP_NUM_THREADS=1 python -m studies.vacancy_energetics.vacancy_energetics "
        + shlex.join(list(sys.argv[1:] if argv is None else argv))
    )
    ce = ce_energies(structures, args.ce)

    def write(records: list[dict[str, Any]]) -> None:
        mine = [r for r in records if r["name"] in structures]
        commands = sorted({r["command"] for r in mine if r.get("command")})
        out.parent.mkdir(parents=True, exist_ok=True)
        notes = Path(args.notes).read_text() if args.notes else ""
        out.write_text(markdown(mine, args.edge, ce=ce, commands=commands, notes=notes))

    todo = [n for n in (structure_name(args.edge, v) for v in args.variants) if n in structures]
    records = start_spread.run_starts(
        os.fspath(args.config), todo, fields, args.starts, cache, jobs=args.jobs,
        on_result=write, command=command, builder=partial(structures_for, n_edge=args.edge),
    )  # fmt: skip
    write(records)
    # This run's start kind only (the report has a section per kind; never average them).
    mine = [
        r
        for r in records
        if r["name"] in structures
        and r["start_kind"] == args.start
        and r["rattle_angstrom"] == args.rattle
    ]
    print(json.dumps(differences(summarise(mine), args.edge), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
