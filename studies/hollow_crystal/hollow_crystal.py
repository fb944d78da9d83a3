"""Why the aged NC turns hollow: the vacancy energetics of a CE, its reference, and a trajectory.

``python -m studies.hollow_crystal.hollow_crystal [--model potentials/fitted.ce] [RESULT.h5 ...]``
writes ``studies/hollow_crystal/hollow_crystal.md`` (``--out``) with three tables:

1. **The model's energies** (the CE on a 20^3 NC of pure CsPbBr3 and an 8^3 periodic cell):
   E(V at depth d) - E(V at the face centre); the nearest-neighbour divacancy binding in the
   bulk; the grand-canonical recession energy ``dOmega = dE(V -> O) - (2 - k) mu_CsBr`` of a
   face, step (a face site beside a receded one), edge and corner vacancy; the formation free
   energy of an interior vacancy relative to the dissolved formula unit
   ``G_f = dE(Pb -> V, bulk) + e_bulk - mu_CsBr`` (CsBr-rich limit, ``docs/model.md``) and
   the equilibrium interior vacancy fraction ``exp(-G_f / kT)`` at 298 K and 343 K.
2. **The reference calculator's energies** for the same quantities, from the start-averaged
   CHGNet energies of ``potentials/training.db`` and the relaxations cached by
   ``studies/vacancy_energetics`` (mean over rattled starts, with the standard error).
3. **Trajectories** (any number of KMC result files): per species snapshot the vacancies,
   the interior vacancies (V without an outside neighbour), the receded sites of the synthesised cube
   and the crystal's extent; the event counts; and the rates of one face vacancy at 298 K.

The package never imports this study.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.kernels.kmc import EVENT_TYPE_NAMES
from segsim.lattice import build_cube, build_periodic
from segsim.models.cluster_expansion import load_cluster_expansion
from segsim.units import beta_per_ev

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPERATURES_K = (298.0, 343.0)


def ce_numbers(model_path: str | Path, n_edge: int = 20) -> dict[str, float]:
    """Return the vacancy energetics (eV) of a four-species CE (see the module docstring)."""
    model = load_cluster_expansion(model_path)
    mu = model.mu_csbr_ev
    if mu is None:
        raise ValueError(f"{model_path}: no mu_csbr_ev in the CE (not a four-species fit)")
    lat = build_cube(n_edge, model.a_angstrom, model.reach + 1)
    t = model.compile(lat)
    p, c = lat.pad, lat.pad + n_edge // 2

    def site(x: int, y: int, z: int) -> int:
        return int(lat.site_index(np.array([x]), np.array([y]), np.array([z]))[0])

    occ = lat.empty_occupations()
    face = site(c, c, p)
    out: dict[str, float] = {}
    e_face = t.flip_energy_change(occ, face, species.VAC)
    for d in (1, 2, n_edge // 2):
        out[f"v_depth{d}_minus_face"] = (
            t.flip_energy_change(occ, site(c, c, p + d), species.VAC) - e_face
        )

    def d_omega(s: int) -> float:
        k = int(np.sum(occ[lat.nn[s]] == species.OUT))
        occ[s] = species.VAC
        de = t.flip_energy_change(occ, s, species.OUT)
        occ[s] = species.PB
        return de - (2 - k) * mu

    out["domega_face"] = d_omega(face)
    out["domega_edge"] = d_omega(site(c, p, p))
    out["domega_corner"] = d_omega(site(p, p, p))
    occ[face] = species.OUT
    out["domega_step"] = d_omega(site(c + 1, c, p))
    occ[face] = species.PB

    bulk = build_periodic(8, model.a_angstrom)
    tb = model.compile(bulk)
    ob = bulk.empty_occupations()
    e_bulk = tb.total_energy(ob) / bulk.n_sites
    de_v = tb.flip_energy_change(ob, 0, species.VAC)
    ob[0] = species.VAC
    ob[int(bulk.nn[0, 0])] = species.VAC
    e2_near = tb.total_energy(ob)
    ob[int(bulk.nn[0, 0])] = species.PB
    ob[bulk.n_sites // 2 + 3] = species.VAC
    e2_far = tb.total_energy(ob)
    out["divacancy_binding_bulk"] = e2_far - e2_near  # > 0: attract
    out["mu_csbr"] = mu
    out["e_bulk_per_unit"] = e_bulk
    out["g_f_bulk_csbr_rich"] = de_v + e_bulk - mu
    for temp in TEMPERATURES_K:
        out[f"c_eq_{temp:.0f}K"] = math.exp(-beta_per_ev(temp) * out["g_f_bulk_csbr_rich"])
    return out


def _db_energies(db_path: Path) -> dict[str, tuple[float, float]]:
    from ase.db import connect

    return {
        r.get("name"): (float(r.energy), float(r.get("energy_sem_ev") or 0.0))
        for r in connect(str(db_path)).select()
    }


def _study_energies(jsonl: Path) -> dict[str, tuple[float, float]]:
    """Mean and standard error over the 'ideal + rattle' starts (the training set's) per structure."""
    by: dict[str, list[float]] = {}
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("start_kind") != "ideal":  # the training set's start kind
            continue
        by.setdefault(rec["name"], []).append(float(rec["energy_ev"]))
    return {
        n: (float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0)
        for n, v in by.items()
    }


def reference_numbers(
    db_path: Path, vacancy_jsonl: Path, mu: float
) -> dict[str, tuple[float, float]]:
    """Return the same quantities from the reference energies: (value, standard error) in eV."""
    e = _db_energies(db_path)
    e.update({k: v for k, v in _study_energies(vacancy_jsonl).items() if k not in e})

    def diff(a: str, b: str, shift: float = 0.0) -> tuple[float, float]:
        return e[a][0] - e[b][0] + shift, math.hypot(e[a][1], e[b][1])

    out = {
        "v_depth1_minus_face (5^3 NC)": diff("nc5_x0_vac1-depth1", "nc5_x0_vac1-depth0"),
        "v_depth2_minus_face (5^3 NC)": diff("nc5_x0_vac1-depth2", "nc5_x0_vac1-depth0"),
        "v_depth1_minus_face (4^3 NC)": diff("nc4_x0_v1-depth1", "nc4_x0_v1-face"),
        "divacancy_binding face pair (5^3 NC)": diff(
            "nc5_x0_v2-face-apart", "nc5_x0_v2-face-adjacent"
        ),
        "divacancy_binding normal pair (5^3 NC)": diff(
            "nc5_x0_v2-normal-apart", "nc5_x0_v2-normal-adjacent"
        ),
        "domega_face (4^3 NC)": diff("nc4_x0_pit1-face", "nc4_x0_v1-face", -mu),
        "domega_edge (4^3 NC)": diff("nc4_x0_pit1-edge", "nc4_x0_v1-edge"),
        "domega_corner (4^3 NC)": diff("nc4_x0_pit1-corner", "nc4_x0_v1-corner", mu),
    }
    e_bulk = e["bulk4_x0_random_0"][0] / 64
    for d in (0, 1, 2):
        g, s = diff(f"nc5_x0_vac1-depth{d}", "nc5_x0_pure", e_bulk - mu)
        out[f"g_f (5^3 NC, V at depth {d}, CsBr-rich)"] = (g, s)
    return out


def trajectory_numbers(path: str | Path) -> dict[str, Any]:
    """Per species snapshot of a KMC result file: vacancies, interior ones, receded, extent."""
    from segsim.observers import hollowness
    from segsim.viz.result import load_result

    res = load_result(path)
    lat = res.lattice
    coords, in_nc = lat.coords, np.asarray(lat.in_nc, dtype=bool)
    counts = res.trace["event_counts"][-1]
    names = EVENT_TYPE_NAMES
    t_trace = float(res.trace["time_s"][-1])
    times, values = res.snapshot_time_s, res.occupations
    rows = []
    for t, occ in zip(times, values, strict=True):
        crystal = occ <= species.VAC
        vac = occ == species.VAC
        n_interior = int(hollowness(lat, "kmc", occ)["n_vac_interior"])
        extent = [int(np.ptp(coords[crystal][:, a]) + 1) for a in range(3)]
        rows.append(
            {
                "day": float(t) / 86400.0,
                "n_cd": int(np.sum(occ == species.CD)),
                "n_v": int(vac.sum()),
                "n_v_interior": n_interior,
                "interior_fraction": n_interior / int(crystal.sum()),
                "receded": int(np.sum((occ == species.OUT) & in_nc)),
                "extent": extent,
            }
        )
    return {
        "path": str(path),
        "events": dict(zip(names, (int(c) for c in counts), strict=True)),
        "days": t_trace / 86400.0,
        "frames": rows,
    }


def markdown(
    model_path: str,
    ce: dict[str, float],
    ref: dict[str, tuple[float, float]],
    trajectories: Sequence[dict[str, Any]],
) -> str:
    """Return the report."""
    lines = [
        "# The hollow crystal: vacancy energetics and trajectories",
        "",
        "Generated by `python -m studies.hollow_crystal.hollow_crystal` (module docstring).",
        "",
        f"## The model: `{model_path}` (20^3 NC, 8^3 periodic cell; eV)",
        "",
        "| quantity | value |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:+.4g} |" for k, v in ce.items()]
    lines += [
        "",
        "## The reference (CHGNet, start-averaged; eV, +/- standard error)",
        "",
        "| quantity | value |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:+.3f} +/- {s:.3f} |" for k, (v, s) in ref.items()]
    kt = 1.0 / beta_per_ev(298.0)
    lines += [
        "",
        "Equilibrium fraction of the reference's NC estimates at 298 K: "
        + ", ".join(
            f"{k.split('(')[1].rstrip(')')}: {math.exp(-v / kt):.1e}"
            for k, (v, _) in ref.items()
            if k.startswith("g_f")
        )
        + ".",
        "",
    ]
    for tr in trajectories:
        lines += [
            f"## Trajectory `{tr['path']}` ({tr['days']:.2f} days)",
            "",
            "Events: " + ", ".join(f"{k} {v:,}" for k, v in tr["events"].items()),
            "",
            "| day | Cd | V | interior V | interior / crystal sites | receded sites of the synthesised cube | extent (sites) |",
            "|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in tr["frames"]:
            lines.append(
                f"| {r['day']:.1f} | {r['n_cd']} | {r['n_v']} | {r['n_v_interior']} | "
                f"{100 * r['interior_fraction']:.2f} % | {r['receded']} | {r['extent']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="*", help="KMC result files (.h5)")
    ap.add_argument("--model", default=str(ROOT / "potentials" / "fitted.ce"))
    ap.add_argument("--db", default=str(ROOT / "potentials" / "training.db"))
    ap.add_argument(
        "--vacancy-cache",
        default=str(ROOT / "studies" / "vacancy_energetics" / "vacancy_energetics.jsonl"),
    )
    ap.add_argument("--out", default=str(HERE / "hollow_crystal.md"))
    args = ap.parse_args(argv)
    ce = ce_numbers(args.model)
    ref = reference_numbers(Path(args.db), Path(args.vacancy_cache), ce["mu_csbr"])
    trajectories = [trajectory_numbers(p) for p in args.results]
    model_name = Path(args.model).resolve()
    if model_name.is_relative_to(ROOT):
        model_name = model_name.relative_to(ROOT)
    Path(args.out).write_text(markdown(str(model_name), ce, ref, trajectories) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
