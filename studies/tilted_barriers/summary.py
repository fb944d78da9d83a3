"""Day-14 rows of the delta ladder (data/delta_*_table.csv) in one table.

Run from the repository root after run_ladder.sh:
    python studies/tilted_barriers/summary.py
Writes studies/tilted_barriers/data/summary_day14.csv and prints it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
COLUMNS = ("pl_model_nm", "pl_published_nm", "x_cd", "x_cd_std", "interior_vacancy_fraction",
           "edge_nm", "envelope_edge_nm", "n_ncs")  # fmt: skip


def main() -> None:
    """Collect the day-14 rows of every delta table (eV offsets of the tilted barriers)."""
    rows = []
    for table in sorted((HERE / "data").glob("delta_*_table.csv"), reverse=True):
        tag = table.name.split("_")[1]
        delta_ev = int(tag) / 100
        kinetics = yaml.safe_load((HERE / f"delta_{tag}.yaml").read_text())["kinetics"]
        with table.open() as fh:
            for r in csv.DictReader(fh):
                if float(r["day"]) == 14.0:
                    rows.append({"delta_ev": f"{delta_ev:.2f}",
                                 "e_kra_pb_ev": f"{kinetics['e_kra_pb_ev']:.3f}",
                                 "e_kra_cd_ev": f"{kinetics['e_kra_cd_ev']:.3f}",
                                 "treatment": r["treatment"],
                                 **{c: r[c] for c in COLUMNS}})  # fmt: skip
    out = HERE / "data" / "summary_day14.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(
            f"{r['delta_ev']} {r['e_kra_pb_ev']} {r['treatment']:9s} PL {float(r['pl_model_nm']):6.1f}"
            f" (pub {r['pl_published_nm']}) x {float(r['x_cd']):.3f} +/- {float(r['x_cd_std']):.3f}"
            f" f_iV {float(r['interior_vacancy_fraction']):.3f} n {r['n_ncs']}"
        )


if __name__ == "__main__":
    main()
