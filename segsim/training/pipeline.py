"""``segsim train``: structures -> reference energies (cached) -> CE fit -> report, potentials/.

The steps, each resumable or cheap to repeat:

1. :func:`segsim.training.structures.build_training_set` generates the structures
   (deterministic in the seed).
2. :func:`segsim.training.reference.compute_references` relaxes them with the reference
   calculator, smallest first, and stores every result in the ASE database with its
   provenance; structures already there (same calculator settings and relaxation criteria)
   are not recomputed.
3. :func:`segsim.training.fit.fit_cluster_expansion` chooses cutoffs and fit method by
   cross-validation and fits the CE to the structures on the CE lattice.
4. The physics checks (uniform / surface / core, reference vs CE), the derived parameters
   (:mod:`segsim.training.derived`), the extrapolation check (MC of a 12 nm NC with the CE,
   :mod:`segsim.training.extrapolation`; ``fit.check_steps: 0`` skips it) and, when
   ``dft_validation.md`` (written by ``studies/dft_validation``) is in the output folder, the
   CHGNet-vs-PBE table go into the report.
4a. With ``fit.mc_validation`` (cells such as ``bulk4``, ``nc6``): canonical MC with the
   fitted CE from a random arrangement, both arrangements relaxed with the reference
   calculator (their own database, ``<database>_mcval.db``), CE and reference energy gains
   side by side (:mod:`segsim.training.mc_validation`).  With ``fit.mc_rounds: k`` the fit
   first goes k times round the same MC (new random starts each round, structures
   ``mcfit<r>_*`` in the training database) and adds those arrangements to the training set:
   the structures on which the current CE is most wrong are the ones its own MC finds.
5. ``fitted.ce``, ``derived_parameters.yaml`` and ``fit_report.md`` (+ PNGs) are written to
   the output folder (``paths.output_dir``), which may not be the shipped ``potentials/``
   (simulations read ``derived_parameters.yaml`` there): a new model becomes the shipped one
   only by a deliberate copy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segsim.config import CalculatorConfig, TrainConfig
from segsim.lattice import build_cube, n_cd_for


@dataclass
class TrainSummary:
    """What ``segsim train`` reports."""

    ce_path: Path
    report_path: Path
    n_structures: int
    n_computed: int
    cv_rmse_mev_per_site: float
    checks_text: str
    n_missing: int = 0
    #: pooled CV error of same-crystal differences and its "all equal" baseline, meV per NC
    group_cv_mev_per_nc: float = float("nan")
    group_baseline_mev_per_nc: float = float("nan")
    #: one line per MC validation cell (CE gain against the reference's), empty if none
    mc_validation_lines: tuple[str, ...] = ()


def relax_fields(calculator: CalculatorConfig) -> dict[str, Any]:
    """Return the relaxation settings of ``segsim train`` (a mapping for ``RelaxSettings``).

    Cell relaxation is on (it acts on periodic cells only); tilt angles and
    anneal settings left out of the input keep the defaults of
    :class:`segsim.training.reference.RelaxSettings`.
    """
    c = calculator
    return {
        "optimizer": c.optimizer,
        "fmax_ev_per_angstrom": c.fmax_ev_per_angstrom,
        "max_steps": c.max_steps,
        "relax_cell": True,
        "rattle_angstrom": c.rattle_angstrom,
        "n_starts": c.n_starts,
        "aggregate": c.aggregate,
        "start": c.start,
        **{
            key: value
            for key in (
                "tilt_antiphase_degrees",
                "tilt_inphase_degrees",
                "anneal_kelvin",
                "anneal_femtoseconds",
            )
            if (value := getattr(c, key)) is not None
        },
    }


def _records_for_fit(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the records on the CE lattice (reference records carry ``occupations``/``shape``)."""
    return [r for r in records if r.get("occupations") is not None and r.get("shape") is not None]


def _check_edge(records: list[dict[str, Any]], default: int) -> int:
    """Return ``default`` if its NC has a core-segregated record, else the largest that has."""
    edges = {
        int(r["n_edge"])
        for r in records
        if (r.get("tags") or {}).get("arrangement") == "core" and r.get("n_edge") is not None
    }
    if default in edges or not edges:
        return default
    return max(edges)


def _prune(db_path: Path, records: list[dict[str, Any]]) -> None:
    """Delete the rows of ``db_path`` that are not ``records``, saying so on stderr."""
    from segsim.training import reference

    n_pruned = reference.prune_database(db_path, records)
    if n_pruned:  # destructive: say so (rows of other settings or of dropped structures)
        print(f"{db_path}: removed {n_pruned} rows that this input does not use", file=sys.stderr)


def mc_cells(
    cfg: TrainConfig,
    model: Any,
    *,
    prefix: str,
    db_path: Path,
    progress: bool,
    cached_only: bool,
    entries: Any = None,
) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """MC of the ``fit.mc_validation`` cells with ``model``; reference energies into ``db_path``.

    ``entries`` replaces the config's cells (``python -m segsim.training.mc_validation``).
    Returns the comparison rows (:func:`segsim.training.mc_validation.compare`), the skipped
    cells and the reference records of the structures.
    """
    from segsim.training import mc_validation, reference

    f, s, c = cfg.fit, cfg.structures, cfg.calculator
    entries = f.mc_validation if entries is None else entries
    cells = [mc_validation.parse_cell(v, f.mc_validation_x) for v in entries]
    pairs, skipped = mc_validation.validation_pairs(
        model,
        cells,
        sweeps=f.mc_validation_sweeps,
        temperature_k=f.mc_validation_temperature_k,
        seed=f.seed,
        pad=s.pad_sites,
        vacuum_angstrom=s.vacuum_angstrom,
        prefix=prefix,
    )
    structs = [st for p in pairs for st in (p.start, p.final)]
    records: list[dict[str, Any]] = []
    if not (cached_only and not Path(db_path).is_file()):
        records = reference.compute_references(
            sorted(structs, key=lambda st: (len(st.atoms), st.name)),
            calculator_kind=c.kind,
            calculator_settings=c.settings,
            relax=relax_fields(c),
            db_path=db_path,
            progress=progress,
            jobs=c.jobs,
            compute=not cached_only,
        )
    return mc_validation.compare(pairs, records, f.structure_noise_ev), skipped, records


def mc_markdown(cfg: TrainConfig, rows: list[dict[str, Any]], skipped: list[str]) -> str:
    """Return the MC validation table of ``rows`` with the input's settings and caveats.

    ``skipped`` lines (cells too small for the CE) are listed under the table, with a caution
    when the reference relaxes from ideal positions.  Used by ``segsim train`` and by
    ``python -m segsim.training.mc_validation``.
    """
    from segsim.training import mc_validation

    f = cfg.fit
    notes = list(skipped)
    if cfg.calculator.rattle_angstrom == 0.0 and cfg.calculator.start == "ideal":
        notes.append(
            "caution: the reference relaxes from ideal positions, where a symmetric arrangement "
            "(e.g. perfect rock-salt order) keeps its symmetry and stays at the untilted saddle; "
            "its reference energy is then too high (measured: 1.8 eV for a 4^3 rock-salt cell). "
            "Use rattled starts (inputs/train.yaml) for a verdict."
        )
    return mc_validation.markdown(
        rows,
        temperature_k=f.mc_validation_temperature_k,
        sweeps=f.mc_validation_sweeps,
        skipped=notes,
    )


def _mc_line(row: dict[str, Any]) -> str:
    """One line of the ``segsim train`` summary for an MC validation row."""
    ref = "not computed" if row["ref_de_ev"] is None else f"{row['ref_de_ev']:+.3f} eV"
    if row["ref_sem_ev"] is not None:
        ref += f" +/- {row['ref_sem_ev']:.3f}"
    line = f"MC validation {row['label']}: CE {row['ce_de_ev']:+.3f} eV, reference {ref}"
    if row.get("verdict"):
        line += f" (noise {row['noise_ev']:.3f} eV: {row['verdict']})"
    return line


def _mc_validation(
    cfg: TrainConfig, ce_path: Path, *, progress: bool, cached_only: bool
) -> tuple[str, str, list[dict[str, Any]]]:
    """Run the MC validation of the CE at ``ce_path``; return the report section and rows.

    The validation database is never pruned: it holds the MC arrangements of every CE that
    was validated (the shipped one, candidates), which are evidence, not stale rows of an
    old training set, and the shipped model's tests reproduce its rows from it.
    """
    from segsim.training import mc_validation

    db_path = mc_validation.validation_database_path(cfg.database)
    rows, skipped, _ = mc_cells(
        cfg, ce_path, prefix="mcval", db_path=db_path, progress=progress, cached_only=cached_only
    )
    title = "MC validation: the CE's Monte Carlo against the reference"
    return title, mc_markdown(cfg, rows, skipped), rows


def _training_structures(cfg: TrainConfig) -> list[Any]:
    """Return the reference structures of the ``structures`` section (step 1)."""
    from segsim.training import structures

    s = cfg.structures
    return structures.build_training_set(
        nc_edges=s.nc_edges,
        compositions=s.compositions,
        n_random=s.n_random,
        n_profiles=s.n_profiles,
        vacancy_structures=s.vacancy_structures,
        vacancy_pairs=s.vacancy_pairs,
        surface_pit_edges=s.surface_pit_edges,
        bulk_sizes=s.bulk_sizes,
        bulk_compositions=s.bulk_compositions,
        rp_edges=s.rp_edges,
        seed=s.seed,
        a_angstrom=s.a_angstrom,
        vacuum_angstrom=s.vacuum_angstrom,
        pad=s.pad_sites,
    )


def _checks_of_the_fit(
    cfg: TrainConfig, ce_path: Path, progress: bool, cached_only: bool
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Run the checks of a written CE that go into the report (step 4, 4a).

    Returns the report sections by title (extrapolation check, MC validation, and the DFT
    validation when ``dft_validation.md`` is in the output folder) and the MC-validation
    summary lines.
    """
    f = cfg.fit
    sections: dict[str, str] = {}
    if f.check_steps > 0:
        from segsim.training.extrapolation import run_check

        check = run_check(
            ce_path, edge_nm=f.check_edge_nm, x_cd=0.25, n_steps=f.check_steps, seed=f.seed
        )
        sections[f"Extrapolation check: a {f.check_edge_nm:g} nm NC"] = check.markdown()
    val_lines: tuple[str, ...] = ()
    if f.mc_validation:
        title, body, val_rows = _mc_validation(
            cfg, ce_path, progress=progress, cached_only=cached_only
        )
        sections[title] = body
        val_lines = tuple(_mc_line(r) for r in val_rows)
    dft_md = cfg.output_dir / "dft_validation.md"
    if dft_md.is_file():  # written by studies/dft_validation (CP2K); included as it is
        sections["DFT validation"] = dft_md.read_text()
    return sections, val_lines


def train(cfg: TrainConfig, *, progress: bool = True, cached_only: bool = False) -> TrainSummary:
    """Run the whole training pipeline of a validated configuration.

    Parameters
    ----------
    cfg
        The validated ``segsim train`` input.
    progress
        Print a line per structure.
    cached_only
        Compute nothing: fit the structures already in the database (``segsim train
        --cached-only``), e.g. to look at a partial database while the rest is being
        computed.  The database is not pruned, and the report and the CE's description say
        how many structures are missing (with none missing, the CE is that of a full run).  The physics checks use the 3 nm NC (``n = 5``) if
        its arrangements are stored, else the largest NC that has them.

    Raises
    ------
    FileNotFoundError
        With ``cached_only`` and no database.
    """
    from segsim.training import derived, fit, reference, report

    s = cfg.structures
    structs = _training_structures(cfg)
    c = cfg.calculator
    if cached_only and not cfg.database.is_file():
        raise FileNotFoundError(f"--cached-only: no reference database at {cfg.database}")
    cfg.database.parent.mkdir(parents=True, exist_ok=True)
    # Smallest structures first (then by name): an interrupted run has covered every kind
    # of structure, and the large NCs, which cost most, come last.  The fit does not depend
    # on the order (it sorts the records by name).
    records = reference.compute_references(
        sorted(structs, key=lambda st: (len(st.atoms), st.name)),
        calculator_kind=c.kind,
        calculator_settings=c.settings,
        relax=relax_fields(c),
        db_path=cfg.database,
        progress=progress,
        jobs=c.jobs,
        compute=not cached_only,
    )
    records = sorted(records, key=lambda r: r["name"])  # everything below is order-free
    n_computed = sum(1 for r in records if not r.get("reused"))
    n_structs = len(structs)
    n_missing = n_structs - len(records)
    partial = ""  # set below for --cached-only; only the final fit is written
    f = cfg.fit

    def fit_all(recs: list[dict[str, Any]]) -> Any:
        return fit.fit_cluster_expansion(
            _records_for_fit(recs),
            cutoff_candidates=f.cutoff_candidates,
            fit_methods=f.fit_methods,
            n_splits=f.n_splits,
            seed=f.seed,
            difference_weight=f.difference_weight,
            separate_vacancy=f.separate_vacancy,
            structure_noise_ev=f.structure_noise_ev,
            vacancy_pair_cutoff_angstrom=f.vacancy_pair_cutoff_angstrom,
            vacancy_pair_partners=f.vacancy_pair_partners,
            structure_weights=f.structure_weights,
            vacancy_cluster_terms=f.vacancy_cluster_terms,
            a_angstrom=s.a_angstrom,
            description=(
                f"fitted by segsim train to {c.kind} reference energies ({cfg.source}); "
                f"database {cfg.database.name}{partial}"
            ),
        )

    # MC training rounds: the CE's own MC arrangements, relaxed by the reference, join the
    # training set (the adversarial structures of the current fit), then the CE is refitted.
    round_sections: dict[str, str] = {}
    for r in range(1, f.mc_rounds + 1):
        from segsim.models.cluster_expansion import ClusterExpansionModel

        model_r = ClusterExpansionModel(fit_all(records).ce)
        rows, skipped, recs_r = mc_cells(
            cfg,
            model_r,
            prefix=f"mcfit{r}",
            db_path=cfg.database,
            progress=progress,
            cached_only=cached_only,
        )
        n_computed += sum(1 for rec in recs_r if not rec.get("reused"))
        n_round = 2 * len(rows)
        n_missing += n_round - len(recs_r)
        n_structs += n_round
        records = sorted(records + recs_r, key=lambda rec: rec["name"])
        round_sections[f"MC training round {r}: the previous fit's Monte Carlo"] = (
            f"Structures `mcfit{r}_*` (training set, training database). The CE here is the "
            f"fit before round {r}; its arrangements join the training set.\n\n"
            + mc_markdown(cfg, rows, skipped)
        )
    if cached_only:
        if n_missing:  # a complete database gives the same CE as a full run
            partial = f"; partial: {len(records)} of {n_structs} structures computed"
    else:
        _prune(cfg.database, records)
    result = fit_all(records)
    # The published configurations are x = 0.25 nominal; match the realised fraction
    # round(0.25 n^3) / n^3 of the 3 nm NC (31/125 = 0.248), which is what the records store.
    n_check = _check_edge(_records_for_fit(records), default=5)
    x_check = n_cd_for(build_cube(n_check, s.a_angstrom, s.pad_sites), 0.25) / n_check**3
    checks = fit.segregation_checks(
        result.ce, _records_for_fit(records), n_edge=n_check, x_cd=x_check, pad=s.pad_sites
    )
    params = derived.derive_parameters(records)
    mu_csbr = derived.csbr_chemical_potential_ev(records)
    if f.separate_vacancy and mu_csbr is not None:
        # the KMC's recession rule needs the CE's CsBr energy (segsim.kinetics)
        from segsim.models.cluster_expansion import MU_CSBR_KEY

        result.ce.metadata[MU_CSBR_KEY] = mu_csbr
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    ce_path = out / "fitted.ce"
    result.ce.write(str(ce_path))
    (out / "derived_parameters.yaml").write_text(
        "# Derived from the reference database by segsim train; see fit_report.md.\n"
        + yaml.safe_dump(params, sort_keys=False)
    )
    extra = {"Derived parameters": derived.markdown(params), **round_sections}
    checks_extra, val_lines = _checks_of_the_fit(cfg, ce_path, progress, cached_only)
    extra.update(checks_extra)
    report_path = report.write_report(result, checks, out, extra_sections=extra)
    pooled = fit.group_scores(result)[-1:] or [None]
    return TrainSummary(
        ce_path=ce_path,
        report_path=report_path,
        n_structures=n_structs,
        n_computed=n_computed,
        cv_rmse_mev_per_site=float(result.cv_rmse_mev_per_site),
        checks_text=checks.summary(),
        n_missing=n_missing,
        group_cv_mev_per_nc=pooled[0].cv_mev_per_nc if pooled[0] else float("nan"),
        group_baseline_mev_per_nc=pooled[0].baseline_mev_per_nc if pooled[0] else float("nan"),
        mc_validation_lines=val_lines,
    )
