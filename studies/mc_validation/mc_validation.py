"""MC validation of any cluster-expansion file outside ``segsim train`` (a study tool).

``python -m studies.mc_validation.mc_validation potentials/provisional.ce --cells bulk4 nc6``
runs the MC validation of :mod:`segsim.training.mc_validation` (the same code that
``segsim train`` runs with ``fit.mc_validation``) on CE files that were not just fitted, and
writes one Markdown table per CE.  ``mc_validation_provisional.md`` in this folder is its
table for ``potentials/provisional.ce``; ``mc_validation_extra.db`` holds the relaxations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segsim.config import parse_cell

HERE = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    """Validate any CE file(s) outside ``segsim train``: MC, reference relaxations, table.

    ``python -m studies.mc_validation.mc_validation potentials/provisional.ce --cells bulk4 nc6``
    takes the calculator, relaxation and MC settings of ``--config`` (a ``segsim train``
    input; ``--cells`` defaults to its ``fit.mc_validation``), stores the relaxations in
    ``--database`` (never pruned; default ``studies/mc_validation/mc_validation_extra.db``) and writes
    one table per CE to ``--out`` (Markdown) and stdout.
    """
    import argparse

    from segsim.config import load_train
    from segsim.training.pipeline import mc_cells, mc_markdown

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("ce", nargs="+", help="cluster-expansion files (.ce)")
    p.add_argument("--config", default="inputs/train.yaml", help="segsim train input")
    p.add_argument("--cells", nargs="+", default=None, help="e.g. bulk4 bulk4_x0.5 nc6")
    p.add_argument("--database", default=str(HERE / "mc_validation_extra.db"))
    p.add_argument("--out", default=None, help="Markdown report (default: none)")
    args = p.parse_args(argv)
    cfg = load_train(args.config)
    f, c = cfg.fit, cfg.calculator
    entries = args.cells if args.cells else list(f.mc_validation)
    try:
        for v in entries:
            parse_cell(v, f.mc_validation_x)
    except ValueError as exc:
        p.error(f"--cells: {exc}")
    sections = []
    for ce_path in args.ce:
        rows, skipped, _ = mc_cells(
            cfg,
            ce_path,
            prefix="mcval",
            db_path=Path(args.database),
            progress=True,
            cached_only=False,
            entries=entries,
        )
        table = mc_markdown(cfg, rows, skipped)
        sections.append(f"## `{ce_path}`\n\n{table}\n")
        print(sections[-1], flush=True)
    if args.out:
        head = (
            "# MC validation of cluster expansions\n\n"
            f"`python -m studies.mc_validation.mc_validation {' '.join(args.ce)} --config "
            f"{args.config} --cells {' '.join(entries)}`; reference: {c.kind}, settings of "
            f"{args.config}; database `{Path(args.database).name}`.\n\n"
        )
        Path(args.out).write_text(head + "\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
