"""Refit the CE with other vacancy settings and compare the vacancy energetics (issue 26).

``python -m studies.ce_vacancy_refit.refit [--config inputs/train.yaml] [--only NAME ...]``
refits every candidate of :data:`CANDIDATES` from the cached reference database of the
training input (no reference calculation: the records are read with
:func:`segsim.training.reference.load_references`), writes ``<name>.ce`` next to this file
and ``comparison.md`` with, per candidate:

* the fit: CV RMSE (meV per B site), the pooled same-crystal CV and that of every vacancy
  group against its "all equal" baseline (meV per NC);
* the vacancy energetics of :mod:`studies.ce_vacancy_refit.metrics` against CHGNet;
* the published-arrangement check (5^3 NC, x = 0.248: core and surface minus uniform);
* the CE against CHGNet on the Cd arrangements of the MC validation database (the MC
  arrangements of the CEs validated so far: no new calculation), and the candidate's own MC
  gain in the validation cells (with CHGNet's value where its final arrangement is stored).

Every candidate uses the input's fit settings (noise weights, four species, vacancy pair
constraint) with the cutoffs and method that the shipped CE selected ([10.2] Angstrom,
least squares), changed only as :data:`CANDIDATES` says.  ``shipped`` reproduces
``potentials/fitted.ce``.  A refit takes about 5 s on one core; the MC about 1 min per
candidate.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsim.config import load_train
from segsim.training import derived, fit, mc_validation
from segsim.training.reference import load_references

from . import metrics as M

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

#: Patterns of the structures with internal vacancies or receded sites (kinds nc_vacancy,
#: nc_pit), for the weighting candidates.
VACANCY_PATTERNS: tuple[str, ...] = ("*vac*", "*_v[1-4]-*", "*pit*")

#: The 4-vacancy square on a face of the 4^3 NC: the one structure a pair CE cannot fit.
SQUARE = "nc4_x0_v4-face-square"

#: name -> (what it changes, keyword arguments of ``fit.fit_cluster_expansion`` that
#: override the training input's).
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "shipped": ("the shipped fit (inputs/train.yaml)", {}),
    "vacw4": (
        "rows of every structure with a vacancy or pit x 4",
        {"structure_weights": dict.fromkeys(VACANCY_PATTERNS, 4.0)},
    ),
    "diff3": ("same-crystal difference rows, weight 3", {"difference_weight": 3.0}),
    "diff10": ("same-crystal difference rows, weight 10", {"difference_weight": 10.0}),
    "nosquare": (
        "the 4-vacancy square not fitted (weight 0)",
        {"structure_weights": {SQUARE: 0.0}},
    ),
    "nosquare_diff3": (
        "no square, difference rows weight 3",
        {"structure_weights": {SQUARE: 0.0}, "difference_weight": 3.0},
    ),
    "nosquare_vx": (
        "no square; V-X pairs free to 10.2 A (V-V, V-Cd to the nearest neighbour)",
        {"structure_weights": {SQUARE: 0.0}, "vacancy_pair_partners": ("Cd", "V")},
    ),
    "nosquare_vxcd": (
        "no square; V-X and V-Cd pairs free to 10.2 A (V-V to the nearest neighbour)",
        {"structure_weights": {SQUARE: 0.0}, "vacancy_pair_partners": ("V",)},
    ),
    "vx": (
        "V-X pairs free to 10.2 A, square fitted",
        {"vacancy_pair_partners": ("Cd", "V")},
    ),
    "nosquare_v84": (
        "no square; every V pair to 8.4 A (second neighbour)",
        {"structure_weights": {SQUARE: 0.0}, "vacancy_pair_cutoff_angstrom": 8.4},
    ),
    "vvv": (
        "+ V-V-V on the L triplet (the only many-body term; triplets to 8.4 A), square fitted",
        {"cutoff_candidates": [(10.2, 8.4)], "vacancy_cluster_terms": ("V-V-V",)},
    ),
    "vvv_nosquare": (
        "+ V-V-V on the L triplet, square not fitted",
        {
            "cutoff_candidates": [(10.2, 8.4)],
            "vacancy_cluster_terms": ("V-V-V",),
            "structure_weights": {SQUARE: 0.0},
        },
    ),
    "vvv_vvx": (
        "+ V-V-V and V-V-X (X at an end) on the L triplet, square fitted",
        {"cutoff_candidates": [(10.2, 8.4)], "vacancy_cluster_terms": ("V-V-V", "V-V-X")},
    ),
    "vvv12": (
        "pairs to 12.0 A (V pairs still to the NN) + V-V-V on the L and the straight triplet",
        {"cutoff_candidates": [(12.0, 12.0)], "vacancy_cluster_terms": ("V-V-V",)},
    ),
    "plaquette": (
        "+ V-V-V-V on the square plaquette (quadruplets to 8.4 A), square fitted",
        {"cutoff_candidates": [(10.2, 8.4, 8.4)], "vacancy_cluster_terms": ("V-V-V-V",)},
    ),
}

#: Same-crystal groups shown in the table (labels of :func:`segsim.training.fit.group_scores`).
VACANCY_GROUPS: tuple[str, ...] = (
    "nc4_x0_v2",
    "nc5_x0_v2",
    "nc4_x0_v",
    "nc5_x0_v",
    "nc4_x0_v3",
    "nc4_x0_pit1-face_v",
    "nc4_x0_pit1-face_cd",
    "nc3_x0_vac1-depth",
    "nc4_x0.25_vac2",
    "nc5_x0.25_vac2",
)

#: Vacancy quantities of the table: (key of metrics.vacancy_values, column title).
VACANCY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("vv_nn_bulk", "V-V NN (bulk)"),
    ("bind_nc5_face", "bind nc5 face"),
    ("bind_nc5_normal", "bind nc5 normal"),
    ("bind_nc4_face", "bind nc4 face"),
    ("bind_nc4_normal", "bind nc4 normal"),
    ("depth_nc5_1", "depth nc5 1"),
    ("depth_nc5_2", "depth nc5 2"),
    ("depth_nc4_1", "depth nc4 1"),
    ("domega_face", "dOmega face"),
    ("domega_edge", "dOmega edge"),
    ("domega_corner", "dOmega corner"),
    ("gf_bulk", "G_f bulk"),
)

REMOVAL_KEYS: tuple[str, ...] = (
    "rm_beside",
    "rm_below_d1",
    "rm_surface_d2",
    "rm_surface_d4",
    "rm_below_d2",
    "rm_below_d3",
)


def fit_settings(cfg: Any) -> dict[str, Any]:
    """Return the keyword arguments of the input's fit, at the shipped CE's selection."""
    f = cfg.fit
    return {
        "cutoff_candidates": [(10.2,)],
        "fit_methods": ["least-squares"],
        "n_splits": f.n_splits,
        "seed": f.seed,
        "difference_weight": f.difference_weight,
        "separate_vacancy": f.separate_vacancy,
        "structure_noise_ev": f.structure_noise_ev,
        "vacancy_pair_cutoff_angstrom": f.vacancy_pair_cutoff_angstrom,
        "vacancy_pair_partners": f.vacancy_pair_partners,
        "structure_weights": dict(f.structure_weights),
        "vacancy_cluster_terms": f.vacancy_cluster_terms,
        "a_angstrom": cfg.structures.a_angstrom,
        "learning_fractions": (1.0,),
    }


def own_mc(ce_path: Path, cfg: Any, mcval: Mapping[str, Any]) -> list[tuple[str, float, Any]]:
    """Run the candidate's own MC in the validation cells: ``(label, CE gain, CHGNet gain)``.

    CHGNet's gain is None unless the final arrangement (named by its digest) is stored.
    """
    f, s = cfg.fit, cfg.structures
    cells = [mc_validation.parse_cell(v, f.mc_validation_x) for v in f.mc_validation]
    pairs, _ = mc_validation.validation_pairs(
        str(ce_path),
        cells,
        sweeps=f.mc_validation_sweeps,
        temperature_k=f.mc_validation_temperature_k,
        seed=f.seed,
        pad=s.pad_sites,
        vacuum_angstrom=s.vacuum_angstrom,
    )
    out = []
    for p in pairs:
        ref = None
        if p.final.name in mcval and p.start.name in mcval:
            ref = mcval[p.final.name].energy_ev - mcval[p.start.name].energy_ev
        out.append((p.label, p.ce_final_ev - p.ce_start_ev, ref))
    return out


def evaluate(
    name: str,
    overrides: Mapping[str, Any],
    cfg: Any,
    records: Sequence[fit.TrainingRecord],
    mcval: Sequence[fit.TrainingRecord],
    mu_csbr_ev: float,
    *,
    run_mc: bool = True,
) -> dict[str, Any]:
    """Fit one candidate, write ``<name>.ce`` here and return its numbers."""
    from segsim.models.cluster_expansion import MU_CSBR_KEY

    kwargs = {**fit_settings(cfg), **overrides}
    t0 = time.perf_counter()
    res = fit.fit_cluster_expansion(list(records), **kwargs)
    seconds = time.perf_counter() - t0
    res.ce.metadata[MU_CSBR_KEY] = mu_csbr_ev
    res.ce.metadata["segsim_description"] = (
        f"issue-26 candidate `{name}` (studies/ce_vacancy_refit): " + CANDIDATES[name][0]
        if name in CANDIDATES
        else name
    )
    path = HERE / f"{name}.ce"
    res.ce.write(str(path))
    by_name = {r.name: r for r in records}
    groups = {g.label: g for g in fit.group_scores(res)}
    seg = fit.segregation_checks(
        res.ce, list(records), n_edge=5, x_cd=31 / 125, pad=cfg.structures.pad_sites
    )
    mc_rows = M.mc_arrangement_values(res.ce, mcval)
    out = {
        "name": name,
        "what": CANDIDATES.get(name, ("", {}))[0],
        "seconds": seconds,
        "cv": res.cv_rmse_mev_per_site,
        "groups": groups,
        "values": M.vacancy_values(res.ce, by_name, mu_csbr_ev),
        "seg": seg,
        "mc_rows": mc_rows,
        "mc_rms": math.sqrt(np.mean([(a - b) ** 2 for _, a, b, _ in mc_rows])),
        "square_cv_mev": _square_residual(res),
        "own_mc": own_mc(path, cfg, {r.name: r for r in mcval}) if run_mc else [],
    }
    return out


def _square_residual(res: fit.FitResult) -> float:
    """CV residual (CE - CHGNet) of the 4-vacancy square, meV; NaN if absent."""
    if SQUARE not in res.names:
        return float("nan")
    i = res.names.index(SQUARE)
    d = res.cv_predicted_ev_per_site[i] - res.reference_ev_per_site[i]
    return 1000.0 * float(d * res.n_b_sites[i])


def _f(v: float | None, fmt: str = "+.3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return the comparison tables of :func:`evaluate` results."""
    names = [r["name"] for r in rows]
    head = "| | " + " | ".join(f"`{n}`" for n in names) + " |"
    rule = "|---|" + "---:|" * len(names)
    lines = ["## Candidates", ""]
    lines += [f"- `{r['name']}`: {r['what']}" for r in rows]
    lines += [
        "",
        "## Fit (meV; same-crystal groups: CV / baseline per NC)",
        "",
        head,
        rule,
        "| CV RMSE (meV/site) | " + " | ".join(f"{r['cv']:.2f}" for r in rows) + " |",
    ]
    for label in ("all", *VACANCY_GROUPS):
        cells = []
        for r in rows:
            g = r["groups"].get(label)
            cells.append(
                "n/a" if g is None else f"{g.cv_mev_per_nc:.0f} / {g.baseline_mev_per_nc:.0f}"
            )
        title = "same-crystal CV, pooled" if label == "all" else f"`{label}`"
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append(
        "| CV residual of the 4-V square (meV) | "
        + " | ".join(_f(r["square_cv_mev"], "+.0f") for r in rows)
        + " |"
    )
    ref = rows[0]["values"]
    lines += [
        "",
        "## Vacancy energetics (eV)",
        "",
        (
            "CHGNet: start means of the training records, +/- the combined start SEM (G_f: mean "
            "of the three NC estimates and of their SEMs)."
        ),
        "",
        "| quantity | CHGNet | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for key, title in VACANCY_COLUMNS:
        v = ref[key]
        chg = "n/a" if v.ref_ev is None else f"{v.ref_ev:+.3f} +/- {v.ref_sem_ev:.3f}"
        lines.append(
            f"| {title} | {chg} | " + " | ".join(_f(r["values"][key].ce_ev) for r in rows) + " |"
        )
    lines += [
        "",
        "## Face-centre Pb removal beside one vacancy, relative to a clean face (eV)",
        "",
        "Beyond the nearest neighbour a vacancy must not make the removal cheaper (issue 17).",
        "",
        head,
        rule,
    ]
    for key in REMOVAL_KEYS:
        lines.append(f"| `{key}` | " + " | ".join(_f(r["values"][key].ce_ev) for r in rows) + " |")
    lines += [
        "",
        "## Published arrangements (5^3 NC, x = 0.248; eV above uniform)",
        "",
        "CHGNet: core "
        + _f(rows[0]["seg"].core_minus_uniform_reference_ev)
        + ", surface "
        + _f(rows[0]["seg"].surface_minus_uniform_reference_ev)
        + f" ({rows[0]['seg'].ordering_reference}).",
        "",
        head,
        rule,
        "| core - uniform | "
        + " | ".join(_f(r["seg"].core_minus_uniform_ce_ev) for r in rows)
        + " |",
        "| surface - uniform | "
        + " | ".join(_f(r["seg"].surface_minus_uniform_ce_ev) for r in rows)
        + " |",
        "| ordering | " + " | ".join(r["seg"].ordering_ce for r in rows) + " |",
    ]
    lines += [
        "",
        "## Stored MC-validation arrangements: CE against CHGNet (eV, final - start)",
        "",
        "| arrangement | CHGNet | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for i, (label, _, chg, sem) in enumerate(rows[0]["mc_rows"]):
        lines.append(
            f"| `{label}` | {chg:+.3f} +/- {sem:.3f} | "
            + " | ".join(f"{r['mc_rows'][i][1]:+.3f}" for r in rows)
            + " |"
        )
    lines.append("| RMS (CE - CHGNet) | | " + " | ".join(f"{r['mc_rms']:.3f}" for r in rows) + " |")
    if any(r["own_mc"] for r in rows):
        lines += [
            "",
            (
                "## Each candidate's own MC in the validation cells (CE gain, eV; CHGNet where "
                "the final arrangement is stored)"
            ),
            "",
            head,
            rule,
        ]
        labels = list(dict.fromkeys(lab for r in rows for lab, _, _ in r["own_mc"]))
        for lab in labels:
            cells = []
            for r in rows:
                own = {label: (g, ref) for label, g, ref in r["own_mc"]}
                if lab not in own:  # no MC there (e.g. a cell smaller than the CE's reach)
                    cells.append("n/a")
                    continue
                ce_gain, ref_gain = own[lab]
                cells.append(
                    f"{ce_gain:+.3f}" + ("" if ref_gain is None else f" (CHGNet {ref_gain:+.3f})")
                )
            lines.append(f"| `{lab}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Refit the candidates, write their ``.ce`` files and ``comparison.md``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--config", default=str(ROOT / "inputs" / "train.yaml"))
    p.add_argument("--only", nargs="+", default=None, help="candidate names (default: all)")
    p.add_argument("--no-mc", action="store_true", help="skip each candidate's own MC")
    p.add_argument("--out", default=str(HERE / "comparison.md"))
    args = p.parse_args(argv)
    cfg = load_train(args.config)
    raw = load_references(cfg.database)
    records, _ = fit.records_from_mappings(
        [r for r in raw if r.get("occupations") is not None and r.get("shape") is not None]
    )
    mcval, _ = fit.records_from_mappings(
        load_references(mc_validation.validation_database_path(cfg.database))
    )
    mu = derived.csbr_chemical_potential_ev(raw)
    names = args.only or list(CANDIDATES)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        rows.append(
            evaluate(name, CANDIDATES[name][1], cfg, records, mcval, mu, run_mc=not args.no_mc)
        )
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    text = (
        "# CE vacancy refit: comparison of the candidates\n\n"
        f"Written by `python -m studies.ce_vacancy_refit.refit` from `{Path(cfg.database).name}` "
        f"({len(records)} structures on the CE lattice; mu_CsBr {mu:.3f} eV).\n\n" + markdown(rows)
    )
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
