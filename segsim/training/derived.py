"""Parameters derived from the relaxed reference structures, each with its provenance.

* **Vegard slope** ``da/dx``: pseudo-cubic lattice constant ``a = (V / n_B)**(1/3)`` of the
  cell-relaxed periodic bulk cells tagged ``vegard`` (cubic arrangements), fitted linearly in x.
* **RP energetics** (MODEL.md section 2, ``E_RP = sum_RP (eps_RP - eta [Cd]) + J_RP n_int``),
  from NCs with a Ruddlesden-Popper fault and their unfaulted twins
  (:func:`segsim.training.structures.build_training_set`)::

      dE(s)  = E(nc_rp s) - E(twin of s) - N_CsBr * mu_CsBr
      eta    = (dE(cd-out) - dE(cd-in)) / (n_cd_rp(cd-in) - n_cd_rp(cd-out))
      eps_RP = dE(pb, middle fault) / n_rp_sites      (J_RP set to 0, see below)

  ``mu_CsBr`` is the lowest relaxed energy per CsBr unit among the ``ref_csbr`` cells.  With a
  single interior fault geometry the interface term cannot be separated from eps_RP, so
  ``J_RP`` is reported as not determined (0 in the parameter file) and eps_RP absorbs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _by_name(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in records}


def vegard(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the Vegard fit ``a(x) = a0 + slope * x`` (Angstrom) from cell-relaxed bulk cells."""
    pts = []
    for r in records:
        if r["kind"] != "bulk" or not r["tags"].get("vegard") or not r.get("relax_cell"):
            continue
        atoms = r["atoms"]
        n_b = sum(1 for s in atoms.get_chemical_symbols() if s in ("Pb", "Cd"))
        pts.append((r["x_cd"], (atoms.get_volume() / n_b) ** (1.0 / 3.0), r["name"]))
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    x = np.array([p[0] for p in pts])
    a = np.array([p[1] for p in pts])
    slope, a0 = np.polyfit(x, a, 1)
    resid = a - (a0 + slope * x)
    return {
        "a0_angstrom": float(a0),
        "slope_angstrom": float(slope),
        "rms_residual_angstrom": float(np.sqrt(np.mean(resid**2))),
        "points": [{"name": n, "x_cd": float(xx), "a_angstrom": float(aa)} for xx, aa, n in pts],
        "provenance": "linear fit to cell-relaxed periodic bulk cells tagged vegard",
    }


def csbr_chemical_potential_ev(records: Sequence[dict[str, Any]]) -> float | None:
    """Return mu_CsBr, the lowest energy per CsBr unit of the relaxed CsBr cells (eV), or None.

    The energy of a CsBr unit taken from or given to the solution, in the reference
    calculator's energy scale: used for the RP faults (extra CsBr layers) and stored in the
    four-species CE for the KMC's recession rule (:mod:`segsim.kinetics`).
    """
    csbr = [r for r in records if r["kind"] == "ref_csbr"]
    if not csbr:
        return None
    return float(min(r["energy_ev"] / (r["n_atoms"] / 2) for r in csbr))


def rp_energetics(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Return eps_RP and eta (eV) from the RP-fault NCs, or None if they are missing."""
    by = _by_name(records)
    mu = csbr_chemical_potential_ev(records)
    rp = [r for r in records if r["kind"] == "nc_rp"]
    if mu is None or not rp:
        return None
    d_e: dict[str, dict[str, Any]] = {}
    for r in rp:
        twin = by.get(r["tags"].get("no_fault", ""))
        if twin is None:
            continue
        n_csbr = (r["n_atoms"] - twin["n_atoms"]) // 2
        d_e[r["name"]] = {
            "dE_ev": r["energy_ev"] - twin["energy_ev"] - n_csbr * mu,
            "tags": r["tags"],
        }
    out: dict[str, Any] = {"mu_csbr_ev": float(mu), "faults": {}}
    for name, v in d_e.items():
        out["faults"][name] = {
            "dE_ev": float(v["dE_ev"]),
            "n_rp_sites": int(v["tags"].get("n_rp_sites", 0)),
            "n_cd_rp": int(v["tags"].get("n_cd_rp", 0)),
        }
    eta = []
    eps = None
    for name, v in d_e.items():
        if name.endswith("_pb") and "middle" in name and v["tags"].get("n_rp_sites"):
            eps = v["dE_ev"] / v["tags"]["n_rp_sites"]
        if name.endswith("_cd-in"):
            other = name[: -len("cd-in")] + "cd-out"
            if other in d_e:
                dn = v["tags"]["n_cd_rp"] - d_e[other]["tags"]["n_cd_rp"]
                if dn:
                    eta.append((d_e[other]["dE_ev"] - v["dE_ev"]) / dn)
    out["eps_rp_ev"] = None if eps is None else float(eps)
    out["eta_ev"] = float(np.mean(eta)) if eta else None
    out["eta_values_ev"] = [float(e) for e in eta]
    out["j_rp_ev"] = None
    out["provenance"] = (
        "dE = E(fault) - E(twin) - N_CsBr mu_CsBr; eps_RP from the middle Pb-only fault per RP "
        "site (absorbs the interface term); eta = (dE(cd-out) - dE(cd-in)) / dn_Cd(RP), "
        "averaged over fault positions; J_RP not determined"
    )
    return out


def derive_parameters(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return every derived parameter (None where the structures needed are missing)."""
    calc = sorted({r["calculator_kind"] for r in records})
    return {
        "calculator": calc,
        "vegard": vegard(records),
        "rp": rp_energetics(records),
    }


def markdown(params: dict[str, Any]) -> str:
    """Return the derived parameters as a markdown section body."""
    lines = [f"Reference calculator: {', '.join(params['calculator'])}.", ""]
    v = params["vegard"]
    if v is None:
        lines.append("* Vegard slope: not determined (no cell-relaxed bulk cells).")
    else:
        lines.append(
            f"* Vegard: a(x) = {v['a0_angstrom']:.4f} + ({v['slope_angstrom']:+.4f}) x Angstrom "
            f"(rms residual {v['rms_residual_angstrom']:.4f} A, {len(v['points'])} cells)."
        )
    rp = params["rp"]
    if rp is None:
        lines.append("* RP energetics: not determined (no RP-fault structures).")
    else:
        eps = rp["eps_rp_ev"]
        eta = rp["eta_ev"]
        lines.append(f"* mu_CsBr = {rp['mu_csbr_ev']:.4f} eV per CsBr unit.")
        lines.append(
            "* eps_RP = "
            + ("n/a" if eps is None else f"{eps:+.4f} eV per RP site")
            + "; eta = "
            + ("n/a" if eta is None else f"{eta:+.4f} eV per Cd")
            + "; J_RP not determined."
        )
        lines += ["", "| fault | dE (eV) | RP sites | Cd in RP |", "|---|---:|---:|---:|"]
        for name, f in rp["faults"].items():
            lines.append(f"| {name} | {f['dE_ev']:+.3f} | {f['n_rp_sites']} | {f['n_cd_rp']} |")
    return "\n".join(lines)
