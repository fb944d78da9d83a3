"""The fit report of the cluster expansion: ``fit_report.md``, ``parity.png``, ``learning_curve.png``.

:func:`write_report` turns a :class:`segsim.training.fit.FitResult` and the physics checks
(:func:`segsim.training.fit.segregation_checks`) into a markdown report with two figures.
Sections that other parts of the pipeline produce (DFT validation, derived parameters) are
passed in as markdown and placed at the end; without them the report says they are missing.

matplotlib is imported lazily (Agg backend), so importing this module costs nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segsim.training.fit import CandidateScore, FitResult, SegregationChecks

__all__ = ["REPORT_NAME", "write_report"]

REPORT_NAME: str = "fit_report.md"
PARITY_NAME: str = "parity.png"
LEARNING_CURVE_NAME: str = "learning_curve.png"

#: Sections always present at the end of the report (filled from ``extra_sections``).
STANDARD_EXTRA_SECTIONS: tuple[str, ...] = ("DFT validation", "Derived parameters")


def _fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _training_section(res: FitResult) -> list[str]:
    lines = ["## Training set", ""]
    lines.append(
        f"{res.n_structures} structures on the CE lattice"
        + (f"; {len(res.skipped)} skipped (not on the CE lattice)." if res.skipped else ".")
    )
    lines.append("")
    by_kind: dict[str, list[int]] = {}
    for kind, nb in zip(res.kinds, res.n_b_sites, strict=True):
        by_kind.setdefault(kind, []).append(int(nb))
    rows = [
        [kind, len(nbs), ", ".join(f"{n} x {c}" for n, c in sorted(Counter(nbs).items()))]
        for kind, nbs in sorted(by_kind.items())
    ]
    lines += _table(["kind", "structures", "B sites (N_B x count)"], rows)
    lines += [
        "",
        (
            "Target: total reference energy / number of grid sites (eV per B-lattice site of the "
            "periodic grid, padding included), so that `N_grid * predict` is the total energy. "
            "Rows are weighted by `N_grid / N_B`, so the loss and every RMSE below are per B site of "
            "the crystal (`N_B` = Pb + Cd + V sites); per-NC RMSEs are per structure."
        ),
    ]
    noise = res.settings.get("structure_noise_ev")
    if noise is not None:
        lines.append(
            f"Noise weights (generalized least squares): each fitted row is further weighted "
            f"by `N_B / sqrt(sem^2 + tau^2)`, `tau` = {noise[0]:g} eV for NCs and {noise[1]:g} "
            "eV for periodic cells (the fit's `noise_nc_ev`, `noise_bulk_ev`), `sem` the "
            "start standard error of the structure's energy; the RMSEs below are unweighted."
        )
    weights = res.settings.get("structure_weights")
    if weights:
        listed = ", ".join(f"`{p}` x {w:g}" for p, w in weights.items())
        lines.append(
            f"Structure weights (`fit.structure_weights`, first matching pattern): {listed}; "
            "a structure with factor 0 is not fitted but still predicted by the "
            "cross-validation and reported below."
        )
    vac = res.settings.get("vacuum_energy_ev_per_site")
    if vac is not None:
        lines.append(
            f"The energy of an all-X (empty) grid is fixed at {vac} eV per site: the padding "
            "contributes nothing and the CE energy of a NC does not depend on it."
        )
    else:
        lines.append("The vacuum (all-X) energy was fitted freely.")
    if res.skipped:
        lines += ["", "Skipped: " + ", ".join(f"`{n}`" for n in res.skipped)]
    return [*lines, ""]


def _chosen(res: FitResult) -> CandidateScore:
    return next(
        c for c in res.candidates if c.cutoffs == res.cutoffs and c.fit_method == res.fit_method
    )


def _cv_section(res: FitResult) -> list[str]:
    s = res.settings
    lines = [
        "## Cross-validation and model selection",
        "",
        (
            f"Selected: cutoffs **{list(res.cutoffs)} Angstrom**, fit method **{res.fit_method}** "
            f"({res.n_nonzero_parameters} of {res.n_parameters} parameters non-zero)."
        ),
        "",
        (
            f"- CV RMSE: **{_fmt(res.cv_rmse_mev_per_site)} meV per B site** "
            f"({_fmt(res.cv_rmse_mev_per_nc, '.1f')} meV per NC)"
        ),
        (
            f"- train RMSE: {_fmt(res.train_rmse_mev_per_site)} meV per B site "
            f"({_fmt(res.train_rmse_mev_per_nc, '.1f')} meV per NC)"
        ),
        (
            f"- CV RMSE of energy differences between structures of the same crystal "
            f"(same grid and species counts; what MC swaps and KMC hops see): "
            f"**{_fmt(_chosen(res).cv_relative_rmse_mev_per_nc, '.1f')} meV per NC**"
        ),
        (
            f"- {s.get('n_splits')}-fold CV (trainstation k-fold, seed {s.get('seed')}), pooled over "
            "the held-out predictions. Selection: lowest same-crystal difference CV RMSE, then "
            "lowest CV RMSE per B site (the simulations only use energy differences between "
            "configurations of one crystal, which the total CV RMSE, dominated by composition, "
            "vacancy and size variations, does not measure)."
        ),
        "",
    ]
    vcut = s.get("vacancy_pair_cutoff_angstrom")
    names = list(s.get("vacancy_pair_partners") or ["Cd", "V", "X"])
    partners = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    if vcut is not None:
        lines += [
            (
                f"Vacancy pair constraint: in every candidate, the pair interactions of the "
                f"vacancy V (with {partners}, relative to Pb) are zero beyond {vcut:g} Angstrom "
                "(`segsim.training.fit.vacancy_pair_constraints`); the Cd-Cd, Cd-X and X-X "
                "pairs keep the candidate's cutoff. Column `V pairs to` below: the distance "
                "beyond which that candidate's vacancy pairs vanish (`-`: none beyond its cutoff)."
            ),
            "",
        ]
    terms = s.get("vacancy_cluster_terms")
    if terms is not None:
        lines += [
            (
                "Many-body vacancy terms: the clusters of three or more sites carry only "
                + ", ".join(f"`{t}`" for t in terms)
                + " on nearest-neighbour connected clusters; every other triplet or "
                "quadruplet interaction is held to zero "
                "(`segsim.training.fit.vacancy_cluster_constraints`)."
            ),
            "",
        ]
    lines += _group_lines(res)
    lines += [
        "All candidates:",
        "",
    ]
    rows = []
    for c in res.candidates:
        chosen = c.cutoffs == res.cutoffs and c.fit_method == res.fit_method
        rows.append(
            [
                ("**" if chosen else "") + str(list(c.cutoffs)) + ("**" if chosen else ""),
                c.fit_method,
                *(
                    [_fmt(c.vacancy_pair_cutoff_angstrom, "g")]
                    if vcut is not None and c.vacancy_pair_cutoff_angstrom is not None
                    else ["-"]
                    if vcut is not None
                    else []
                ),
                c.n_parameters,
                c.n_nonzero_parameters,
                c.rank,
                _fmt(c.cv_rmse_mev_per_site),
                _fmt(c.cv_rmse_mev_per_nc, ".1f"),
                _fmt(c.cv_rmse_fold_mean_mev_per_site),
                _fmt(c.cv_relative_rmse_mev_per_nc, ".1f"),
                _fmt(c.train_rmse_mev_per_site),
                c.error or "",
            ]
        )
    lines += _table(
        [
            "cutoffs (A)",
            "method",
            *(["V pairs to (A)"] if vcut is not None else []),
            "parameters",
            "non-zero",
            "rank",
            "CV RMSE (meV/site)",
            "CV RMSE (meV/NC)",
            "fold-mean CV (meV/site)",
            "same-crystal diff. CV (meV/NC)",
            "train RMSE (meV/site)",
            "error",
        ],
        rows,
    )
    lines += [
        "",
        (
            "`rank` is the rank of the weighted fit matrix; below the number of free parameters, "
            "some parameter combinations are not determined by the training set (clusters that only "
            "see the shape of the cube) and the fit picks the minimum-norm or sparsest solution."
        ),
        "",
        f"![parity]({PARITY_NAME})",
        "",
    ]
    return lines


def _group_lines(res: FitResult) -> list[str]:
    """Return the same-crystal group lines: reference spread ("all equal") vs CE errors."""
    from segsim.training.fit import group_scores

    scores = group_scores(res)
    if not scores:
        return []
    pooled = scores[-1]
    lines = [
        (
            "Same-crystal groups (structures with equal grid and species counts). `baseline`: "
            "RMS deviation of the reference energies from their group mean, the error of a CE "
            "that gives every arrangement the same energy; the CE orders the arrangements of a "
            "group only where its CV error is below that. "
            f"Pooled: CV **{_fmt(pooled.cv_mev_per_nc, '.1f')}** against baseline "
            f"**{_fmt(pooled.baseline_mev_per_nc, '.1f')} meV per NC**."
        ),
        "",
    ]
    groups = scores[:-1]
    has_sem = any(np.isfinite(g.start_sem_mev_per_nc) for g in groups)
    has_local = any(np.isfinite(g.local_loo_mev_per_nc) for g in groups)
    if has_sem:
        lines += [
            (
                "`start SEM`: RMS of the members' standard errors over their relaxation starts, "
                "the part of the baseline that is relaxation noise; a baseline not well above it "
                "leaves no arrangement energy to fit."
            ),
            "",
        ]
    if has_local:
        lines += [
            (
                "`site-class LOO`: leave-one-out error of a linear model fitted to that group "
                "alone, in the counts of Cd and V sites with 0, 1, 2 and 3+ outside neighbours "
                "and of Cd-Cd, Cd-V and V-V nearest-neighbour pairs (within one crystal a "
                "nearest-neighbour CE is linear in these); n/a for groups with too few members. "
                "Where it is not below the baseline, short-range descriptors do not explain that "
                "group's reference energies."
            ),
            "",
        ]
    header = ["group", "structures", "B sites", "baseline (meV/NC)"]
    header += ["start SEM (meV/NC)"] * has_sem + ["site-class LOO (meV/NC)"] * has_local
    header += ["CV (meV/NC)", "train (meV/NC)"]
    rows = []
    for g in groups:
        row: list[Any] = [f"`{g.label}`", g.n_members, g.n_b_sites]
        row.append(_fmt(g.baseline_mev_per_nc, ".1f"))
        row += [_fmt(g.start_sem_mev_per_nc, ".1f")] * has_sem
        row += [_fmt(g.local_loo_mev_per_nc, ".1f")] * has_local
        row += [_fmt(g.cv_mev_per_nc, ".1f"), _fmt(g.train_mev_per_nc, ".1f")]
        rows.append(row)
    lines += _table(header, rows)
    return [*lines, ""]


def _learning_section(res: FitResult) -> list[str]:
    lines = ["## Learning curve", ""]
    if not res.learning_curve:
        return [*lines, "Not computed.", ""]
    lines.append(
        f"Selected candidate, nested random subsets (seed {res.settings.get('seed')}), "
        "k-fold CV on each subset."
    )
    lines.append("")
    rows = [
        [
            p.n_train,
            p.n_splits,
            _fmt(p.cv_rmse_mev_per_site),
            _fmt(p.cv_rmse_mev_per_nc, ".1f"),
            _fmt(p.train_rmse_mev_per_site),
        ]
        for p in res.learning_curve
    ]
    lines += _table(
        ["structures", "folds", "CV RMSE (meV/site)", "CV RMSE (meV/NC)", "train RMSE (meV/site)"],
        rows,
    )
    return [*lines, "", f"![learning curve]({LEARNING_CURVE_NAME})", ""]


def _eci_section(res: FitResult) -> list[str]:
    lines = [
        "## ECIs",
        "",
        (
            "icet parameters (eV per grid site, multiplying the cluster-vector element) and ECIs "
            "(parameter / multiplicity). Species order of the multicomponent vector: icet's point "
            f"functions for ({', '.join(res.ce.get_cluster_space_copy().chemical_symbols[0])})"
            + (
                "; V is the internal vacancy (its own species), X the outside."
                if res.settings.get("separate_vacancy")
                else "; X is both the vacancy and the outside."
            )
        ),
        "",
    ]
    rows = [
        [
            r["index"],
            r["order"],
            f"{r['radius_angstrom']:.3f}",
            r["multiplicity"],
            r["multicomponent_vector"],
            f"{r['parameter_ev']:+.6f}",
            f"{1000 * r['eci_ev']:+.3f}",
        ]
        for r in res.eci_table()
    ]
    lines += _table(
        [
            "index",
            "order",
            "radius (A)",
            "multiplicity",
            "mc vector",
            "parameter (eV)",
            "ECI (meV)",
        ],
        rows,
    )
    return [*lines, ""]


def _checks_section(checks: SegregationChecks | None) -> list[str]:
    lines = ["## Physics checks: Cd arrangements of the published DFT study", ""]
    if checks is None:
        return [*lines, "Not provided.", ""]
    lines.append(
        f"{checks.n_edge}^3 B-site NC ({checks.n_b_sites} B sites) at x = {checks.x_cd}; "
        "energies in eV per NC (mean over structures), the CE evaluated on the same "
        "occupations. Published DFT: E(core) >> E(uniform) ~ E(surface). No tuning."
    )
    lines.append("")
    rows = []
    for arr, e in checks.energies.items():
        ref = e.reference_ev
        diff_ref = (
            None
            if ref is None or checks.energies["uniform"].reference_ev is None
            else (ref - checks.energies["uniform"].reference_ev)
        )
        diff_ce = e.ce_ev - checks.energies["uniform"].ce_ev
        rows.append(
            [
                arr,
                e.n_structures,
                _fmt(ref, ".4f"),
                _fmt(e.ce_ev, ".4f"),
                _fmt(diff_ref, "+.4f"),
                _fmt(diff_ce, "+.4f"),
                _fmt(None if diff_ref is None else 1000 * diff_ref / checks.n_b_sites, "+.2f"),
                _fmt(1000 * diff_ce / checks.n_b_sites, "+.2f"),
            ]
        )
    lines += _table(
        [
            "arrangement",
            "structures",
            "E ref (eV)",
            "E CE (eV)",
            "E - E(uniform) ref (eV)",
            "E - E(uniform) CE (eV)",
            "ref (meV/site)",
            "CE (meV/site)",
        ],
        rows,
    )
    lines.append("")
    ref_order = checks.ordering_reference or "n/a (no reference records)"
    lines.append(f"- Ordering, reference (highest first): **{ref_order}**")
    lines.append(f"- Ordering, CE (highest first): **{checks.ordering_ce}**")
    if checks.ordering_agrees is not None:
        lines.append(f"- CE ordering agrees with the reference: **{checks.ordering_agrees}**")
    return [*lines, ""]


def _extra_sections(extra: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> list[str]:
    items = list(extra.items()) if isinstance(extra, Mapping) else list(extra or [])
    given = dict(items)
    order = list(STANDARD_EXTRA_SECTIONS) + [
        k for k, _ in items if k not in STANDARD_EXTRA_SECTIONS
    ]
    lines: list[str] = []
    for title in order:
        body = given.get(title)
        lines += [f"## {title}", "", body.strip() if body else "Not provided.", ""]
    return lines


def _plot_parity(res: FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = 1000 * res.reference_ev_per_site
    zero = float(np.mean(ref))
    fig, (ax, ax_res) = plt.subplots(1, 2, figsize=(10, 4.5))
    kinds = sorted(set(res.kinds))
    cmap = plt.get_cmap("tab10")
    kind_arr = np.asarray(res.kinds)
    for i, kind in enumerate(kinds):
        m = kind_arr == kind
        colour = cmap(i % 10)
        ax.scatter(
            ref[m] - zero,
            1000 * res.predicted_ev_per_site[m] - zero,
            s=18,
            color=colour,
            label=kind,
        )
        ax.scatter(
            ref[m] - zero,
            1000 * res.cv_predicted_ev_per_site[m] - zero,
            s=18,
            facecolors="none",
            edgecolors=colour,
        )
        ax_res.scatter(
            ref[m] - zero,
            1000 * (res.cv_predicted_ev_per_site[m] - res.reference_ev_per_site[m]),
            s=18,
            color=colour,
            label=kind,
        )
    lo, hi = float(np.min(ref - zero)), float(np.max(ref - zero))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
    ax.set_xlabel(f"reference energy - {zero:.1f} (meV per B site)")
    ax.set_ylabel(f"CE energy - {zero:.1f} (meV per B site)")
    ax.set_title("parity (filled: final fit, open: CV held-out)")
    ax.legend(fontsize=8)
    ax_res.axhline(0.0, color="k", lw=0.8)
    ax_res.set_xlabel(f"reference energy - {zero:.1f} (meV per B site)")
    ax_res.set_ylabel("CV error (meV per B site)")
    ax_res.set_title(f"CV RMSE {res.cv_rmse_mev_per_site:.2f} meV/site")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_learning_curve(res: FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    pts = res.learning_curve
    n = [p.n_train for p in pts]
    ax.plot(n, [p.cv_rmse_mev_per_site for p in pts], "o-", label="CV")
    ax.plot(n, [p.train_rmse_mev_per_site for p in pts], "s--", label="train")
    ax.set_xlabel("training structures")
    ax.set_ylabel("RMSE (meV per B site)")
    ax.set_title(f"{list(res.cutoffs)} A, {res.fit_method}")
    ax.set_ylim(bottom=0.0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    fit_result: FitResult,
    checks: SegregationChecks | None,
    out_dir: str | Path,
    *,
    extra_sections: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write ``fit_report.md``, ``parity.png`` and ``learning_curve.png`` into ``out_dir``.

    Parameters
    ----------
    fit_result
        The result of :func:`segsim.training.fit.fit_cluster_expansion`.
    checks
        The result of :func:`segsim.training.fit.segregation_checks`, or None.
    out_dir
        Output folder (created).
    extra_sections
        Markdown sections by title, appended at the end.  "DFT validation" and "Derived
        parameters" are always present ("Not provided." when missing).

    Returns
    -------
    pathlib.Path
        The path of ``fit_report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = fit_result
    meta = res.ce.metadata
    lines = [
        "# Cluster-expansion fit report",
        "",
        str(meta.get("segsim_description", "")),
        "",
        f"- label: `{meta.get('segsim_label')}`; energy unit: {meta.get('energy_unit')}",
        f"- lattice constant of the CE primitive cell: {res.settings.get('a_angstrom')} Angstrom",
        f"- icet {meta.get('icet_version', '?')}",
        "",
    ]
    lines += _training_section(res)
    lines += _cv_section(res)
    lines += _learning_section(res)
    lines += _eci_section(res)
    lines += _checks_section(checks)
    lines += _extra_sections(extra_sections)
    _plot_parity(res, out / PARITY_NAME)
    _plot_learning_curve(res, out / LEARNING_CURVE_NAME)
    path = out / REPORT_NAME
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
