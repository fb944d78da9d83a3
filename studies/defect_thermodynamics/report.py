"""Markdown report of :mod:`studies.defect_thermodynamics.defect_thermodynamics` (from its cache).

All quantities are derived here from the cached records with the formulas of
:mod:`segsim.defects`; nothing is computed by a calculator.  Energies in eV.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsim.defects import (
    TRANS_PAIR_ORIENTATIONS,
    ChemicalPotentials,
    combine,
    exchanged_units,
    fraction_interval,
    mean_sem,
    recession_energy_ev,
    vacancy_formation_energy_ev,
)
from studies.defect_thermodynamics.defect_thermodynamics import (
    CALCULATORS,
    HERE,
    nc_lattice_occupations,
    nc_states,
    read_cache,
)

__all__ = ["Stat", "summarise", "write_report"]

#: Temperatures of the equilibrium fractions, K (room temperature, the aging experiments).
TEMPERATURES_K: tuple[float, ...] = (298.0, 343.0)
#: Literature densities (g/cm^3) for the reference-crystal check.
LIT_DENSITY: dict[str, float] = {"pbbr2_pnma": 6.66, "csbr_cscl": 4.44}
#: A relaxed PbBr2 cell whose density is further than this (relative) from the literature
#: value is not the Pnma crystal any more: its PbBr2-rich limit is not used.
PBBR2_DENSITY_TOLERANCE = 0.12
#: The PBE single points (written by cp2k_check.py).
PBE_JSON = HERE / "defect_thermodynamics_pbe.json"

#: Columns of the report: a calculator's relaxations, or SevenNet single points on the CHGNet
#: geometries.
METHODS: dict[str, str] = {
    "chgnet": "CHGNet (relaxed)",
    "sevennet": "SevenNet-0 (relaxed)",
    "sevennet-sp": "SevenNet-0 single points on the CHGNet geometries",
    "chgnet-tilted": "CHGNet (relaxed from a-a-c+ tilted, rattled starts)",
    "sevennet-tilted": "SevenNet-0 (relaxed from a-a-c+ tilted, rattled starts)",
    "chgnet-db": "CHGNet on the lowest-start geometries of training.db (5^3 V states, pure)",
    "sevennet-db": "SevenNet-0 single points on those geometries",
}

#: Where a ``-db`` method takes the structures that training.db does not hold.
DB_FALLBACK: dict[str, str] = {"chgnet-db": "chgnet", "sevennet-db": "sevennet-sp"}


class Stat:
    """Mean, standard error and count of one structure's start energies (eV)."""

    def __init__(self, values: Sequence[float], counts: dict[str, int]) -> None:
        self.values = [float(v) for v in values]
        self.n = len(self.values)
        self.mean, self.sem = mean_sem(self.values)
        if self.n < 2:
            self.sem = 0.0
        self.counts = counts

    def __sub__(self, other: Stat) -> tuple[float, float]:
        return self.mean - other.mean, combine(self.sem, other.sem)


def _method(rec: dict[str, Any]) -> str:
    if rec["mode"] == "single":
        return f"{rec['calculator']}-sp"
    if rec["mode"] == "single-db":
        return f"{rec['calculator']}-db"
    if rec["mode"] == "relax_tilted":
        return f"{rec['calculator']}-tilted"
    return rec["calculator"]


def _expand(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add a ``chgnet`` ``single-db`` record for the CHGNet energy of each db geometry."""
    out = list(records)
    for r in records:
        if r["mode"] == "single-db" and "chgnet_energy_same_geometry_ev" in r:
            out.append(
                {
                    **r,
                    "calculator": "chgnet",
                    "energy_ev": r["chgnet_energy_same_geometry_ev"],
                    "source": "training.db energy_min_ev of the same geometry",
                }
            )
    return out


def summarise(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], Stat]:
    """Return ``{(method, mode, name): Stat}``; one record per seed (this study's first)."""
    by: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in _expand(records):
        mode = "relax" if r["mode"] == "relax_tilted" else r["mode"]
        key = (_method(r), mode, r["name"])
        seeds = by.setdefault(key, {})
        old = seeds.get(r["seed"])
        if old is None or (old["source"] != "this study" and r["source"] == "this study"):
            seeds[r["seed"]] = r
    return {
        key: Stat([r["energy_ev"] for r in seeds.values()], next(iter(seeds.values()))["counts"])
        for key, seeds in by.items()
    }


def _pm(x: tuple[float, float] | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    m, s = x
    return f"{m:+.{digits}f} +/- {s:.{digits}f}"


def _fu(counts: dict[str, int]) -> int:
    return counts["Pb"] + counts["Cd"]


class Derived:
    """Chemical potentials and defect energies of one method."""

    def __init__(
        self,
        stats: dict[tuple[str, str, str], Stat],
        method: str,
        credible_pbbr2: dict[str, bool] | None = None,
    ) -> None:
        credible_pbbr2 = credible_pbbr2 or {}
        self.stats = stats
        self.method = method
        ref_method = method.removesuffix("-sp").removesuffix("-db").removesuffix("-tilted")
        cell = {
            name: st for (m, mode, name), st in stats.items() if m == ref_method and mode == "cell"
        }
        self.mu_csbr_by = {n: cell[n].mean / cell[n].counts["Cs"] for n in cell if "csbr" in n}
        self.mu_csbr = min(self.mu_csbr_by.values()) if self.mu_csbr_by else None
        self.mu_pbbr2_bulk = (
            cell["pbbr2_pnma"].mean / cell["pbbr2_pnma"].counts["Pb"]
            if "pbbr2_pnma" in cell and credible_pbbr2.get(ref_method, False)
            else None
        )

    def get(self, name: str, mode: str = "relax") -> Stat | None:
        """Return the statistics of a structure (``single`` records for ``-sp`` methods)."""
        if self.method.endswith("-sp"):
            mode = "single"
        if self.method in DB_FALLBACK:
            st = self.stats.get((self.method, "single-db", name))
            if st is not None:
                return st
            fallback = DB_FALLBACK[self.method]
            return self.stats.get((fallback, "single" if fallback.endswith("-sp") else mode, name))
        return self.stats.get((self.method, mode, name))

    def e_bulk(self, n: int) -> tuple[float, float] | None:
        """Energy per formula unit of the relaxed perfect ``n^3`` cell (eV) and its SEM."""
        st = self.get(f"bulk{n}_perfect")
        if st is None:
            return None
        return st.mean / n**3, st.sem / n**3

    def e_bulk_ground(self, n: int) -> tuple[float, float] | None:
        """Return the lowest of :meth:`e_bulk` and this calculator's tilted-start ``e_bulk``.

        The dissolved formula unit is the bulk ground state: for CHGNet the a-a-c+ tilted
        4^3 cell lies below every ideal start.  Single-point methods keep their own.
        """
        own = self.e_bulk(n)
        if self.method.endswith("-sp"):
            return own
        tilted_method = self.method.removesuffix("-db").removesuffix("-tilted") + "-tilted"
        st = self.stats.get((tilted_method, "relax", f"bulk{n}_perfect"))
        if st is None:
            return own
        tilted = (st.mean / n**3, st.sem / n**3)
        return tilted if own is None or tilted[0] < own[0] else own

    def mu(self, e_bulk: float, limit: str) -> ChemicalPotentials | None:
        """Chemical potentials of a limit (``CsBr-rich`` or ``PbBr2-rich``)."""
        if limit == "CsBr-rich" and self.mu_csbr is not None:
            return ChemicalPotentials.csbr_rich(e_bulk, self.mu_csbr)
        if limit == "PbBr2-rich" and self.mu_pbbr2_bulk is not None:
            return ChemicalPotentials.pbbr2_rich(e_bulk, self.mu_pbbr2_bulk)
        return None

    def g_f_bulk(self, n: int, variant: str, limit: str) -> tuple[float, float] | None:
        """``G_f`` of a bulk vacancy variant, eV, and its SEM (perfect and defect starts)."""
        host, defect = self.get(f"bulk{n}_perfect"), self.get(f"bulk{n}_{variant}")
        g = self._formation_ev(host, defect, self.e_bulk(n), limit)
        if g is None:
            return None
        # mu_PbBr2 = e_bulk - mu_CsBr carries the host's SEM / n^3 (correlated with E(host)):
        # G = E(V) - (1 - 1/n^3) E(host) - mu_CsBr.
        sem = combine(defect.sem, host.sem * (1.0 - 1.0 / n**3))
        return g, sem

    def g_f_nc(self, n_nc: int, suffix: str, n_bulk: int, limit: str) -> tuple[float, float] | None:
        """``G_f`` of NC state ``suffix`` relative to the perfect NC, bulk ``n_bulk`` mu."""
        host, defect = self.get(f"nc{n_nc}_x0_pure"), self.get(f"nc{n_nc}_x0_{suffix}")
        eb = self.e_bulk_ground(n_bulk)
        g = self._formation_ev(host, defect, eb, limit)
        if g is None:
            return None
        return g, combine(defect.sem, host.sem, eb[1])

    def _formation_ev(
        self, host: Any, defect: Any, e_bulk: tuple[float, float] | None, limit: str
    ) -> float | None:
        """``G_f`` (eV) of ``defect`` against ``host`` at ``limit``; None if anything is missing."""
        if host is None or defect is None or e_bulk is None:
            return None
        mu = self.mu(e_bulk[0], limit)
        if mu is None:
            return None
        units = exchanged_units(host.counts, defect.counts)
        return vacancy_formation_energy_ev(defect.mean, host.mean, units, mu)

    def diff(self, a: str, b: str) -> tuple[float, float] | None:
        """``E(a) - E(b)`` of two structures with the same composition, eV, and its SEM."""
        sa, sb = self.get(a), self.get(b)
        if sa is None or sb is None:
            return None
        if sa.counts != sb.counts:
            raise ValueError(f"{a} and {b} differ in composition")
        return sa - sb

    def recession(self, v_name: str, o_name: str) -> tuple[float, float, int] | None:
        """``dOmega_rec`` (eV), its SEM and the CsBr units the O state gained."""
        sv, so = self.get(v_name), self.get(o_name)
        if sv is None or so is None or self.mu_csbr is None:
            return None
        units = exchanged_units(sv.counts, so.counts)
        gained = -units["CsBr"]
        if units["PbBr2"] != 0:
            raise ValueError(f"{v_name} -> {o_name} changes the B count")
        d = recession_energy_ev(so.mean, sv.mean, gained, self.mu_csbr)
        return d, combine(sv.sem, so.sem), gained


# --------------------------------------------------------------------------------------------
# cluster expansion
# --------------------------------------------------------------------------------------------


def ce_quantities(nc_edges: Sequence[int]) -> dict[str, Any]:
    """Return the fitted CE's numbers on the study's occupations (eV)."""
    from segsim import species
    from segsim.lattice import build_periodic
    from segsim.models.cluster_expansion import load_cluster_expansion
    from segsim.params.files import POTENTIALS_DIR

    path = POTENTIALS_DIR / "fitted.ce"
    ce = load_cluster_expansion(path)
    mu_csbr = float(ce.mu_csbr_ev)
    lat = build_periodic(4, 5.87)
    tab = ce.compile(lat)
    occ = np.zeros(lat.n_sites, dtype=species.OCC_DTYPE)
    e0 = float(tab.total_energy(occ))
    e_bulk = e0 / lat.n_sites
    dv = float(tab.flip_energy_change(occ, 0, species.VAC))
    out: dict[str, Any] = {
        "path": "potentials/fitted.ce",
        "mu_csbr": mu_csbr,
        "e_bulk": e_bulk,
        "g_f_bulk": dv + e_bulk - mu_csbr,
        "nc": {},
    }
    for n in nc_edges:
        energies = {}
        for suffix in nc_states(n):
            lat_nc, occ_nc = nc_lattice_occupations(n, suffix)
            energies[suffix] = float(ce.compile(lat_nc).total_energy(occ_nc))
        out["nc"][n] = energies
    return out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

#: Recession cases: label -> (V state, O state).
RECESSION: dict[str, tuple[str, str]] = {
    "face (k = 1)": ("vac1-depth0", "pit1-face"),
    "step (k = 2: V beside a pit -> two-site pit)": ("pit1-face_v-beside", "pit2-face"),
    "edge (k = 2)": ("v1-edge", "pit1-edge"),
    "corner (k = 3)": ("v1-corner", "pit1-corner"),
}


def _fraction_cells(g: tuple[float, float] | None, t: float, deg: int) -> str:
    if g is None:
        return "-"
    c, lo, hi = fraction_interval(g[0], g[1], t, deg)
    return f"{c:.2g} [{lo:.2g}, {hi:.2g}]"


#: A fixed-cell perfect cell whose start mean lies more than this above the volume-relaxed
#: cell at the same lattice constant is trapped (eV per cell): its G_f is not used.
TRAP_TOLERANCE_EV = 0.05


def trapped(records: Sequence[dict[str, Any]], stats: dict, calc: str, n: int) -> bool:
    """Return True if ``calc``'s ideal-start perfect ``n^3`` cells stay above its volume relax."""
    vol = [
        r["energy_ev"]
        for r in records
        if r["mode"] == "volume" and r["calculator"] == calc and r["name"] == f"bulk{n}_perfect"
    ]
    st = stats.get((calc, "relax", f"bulk{n}_perfect"))
    return bool(vol and st and vol[0] < st.mean - TRAP_TOLERANCE_EV)


def markdown(records: Sequence[dict[str, Any]], pbe: dict[str, Any] | None = None) -> str:
    """Return the report text."""
    stats = summarise(records)
    methods = [m for m in METHODS if any(k[0] == m for k in stats)]
    credible = {
        r["calculator"]: abs(r["density_g_per_cm3"] / LIT_DENSITY["pbbr2_pnma"] - 1.0)
        < PBBR2_DENSITY_TOLERANCE
        for r in records
        if r["mode"] == "cell" and r["name"] == "pbbr2_pnma"
    }
    der = {m: Derived(stats, m, credible) for m in methods}
    bulk_methods = [m for m in methods if m not in DB_FALLBACK]
    nc_edges = sorted({int(k[2][2]) for k in stats if k[2].startswith("nc")})
    bulk_ns = sorted({int(k[2][4]) for k in stats if k[2].startswith("bulk")})
    ce = ce_quantities(nc_edges)
    commands = sorted({r["command"] for r in records if r.get("command")})
    L: list[str] = [
        "# Defect thermodynamics of the model's B vacancy (CHGNet, SevenNet-0, CE, PBE)",
        "",
        (
            "Generated by `python -m studies.defect_thermodynamics.defect_thermodynamics report` "
            "from `defect_thermodynamics.jsonl` (README.md has the commands; the defect chemistry "
            "and formulas are `segsim/defects`).  Energies in eV; `+/-` is the standard error of "
            "the mean over rattled starts (seeds 1000 + k, 0.02 A; FIRE, fmax 0.01 eV/A, positions "
            "only at fixed cell), combined in quadrature for differences."
        ),
        "",
        "Commands that made the records:",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Defect chemistry (stated once; `segsim/defects/__init__.py`)",
        "",
        (
            "* Expulsion of a B cation M removes a neutral MBr2 unit; the site becomes V and keeps "
            "its Cs and (bulk convention) one Br.  Kroeger-Vink: `V_M'' + 2 V_Br*`, a neutral "
            "PbBr2 partial Schottky defect.  The atomistic V of an isolated interior site lacks "
            "the z trans pair of Br (`segsim.atomistic`); `v-cis` removes a cis (+z, +x) pair "
            "instead, as a check of the defect's lowest form."
        ),
        (
            "* Recession V -> O removes the rest of the unit, CsBr.  In a finite NC the charge-"
            "balanced termination moves Cs-Br pairs elsewhere, so the CsBr count of each V -> O "
            "change is read from the two structures (column `n CsBr`): +1 for a face site (k = 1 "
            "outside neighbour), 0 for k = 2 (edge, step), -1 for a corner (k = 3), i.e. 2 - k."
        ),
        (
            "* `G_f = E(cell with V) - E(host) + mu_PbBr2`; `dOmega_rec = E(O) - E(V) - n_CsBr "
            "mu_CsBr`; `c_eq = g exp(-G_f / k_B T)` per B site, g = 1 (lattice model: one V state "
            "per site) or g = 3 (the three orientations of the missing trans Br pair)."
        ),
        "",
        "## Reference crystals and chemical potentials",
        "",
        (
            "| method | crystal | E per formula unit | a, b, c (A) | density (g/cm3) | "
            "literature density | steps | fmax |"
        ),
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in records:
        if r["mode"] != "cell":
            continue
        fu = r["counts"]["Cs"] if "csbr" in r["name"] else r["counts"]["Pb"]
        abc = ", ".join(f"{x:.3f}" for x in r["cellpar"][:3])
        lit = LIT_DENSITY.get(r["name"])
        L.append(
            f"| {r['calculator']} | {r['name']} | {r['energy_ev'] / fu:.4f} | {abc} | "
            f"{r['density_g_per_cm3']:.3f} | {lit if lit else '-'} | {r['n_steps']} | "
            f"{r['fmax_final_ev_per_angstrom']:.4f} |"
        )
    L += [
        "",
        (
            "| method | n | a_n (A, volume-relaxed perfect n^3 cell) | e_bulk = E/n^3 (relaxed at "
            "a_n, start mean) | mu_CsBr (lowest CsBr) | mu_PbBr2 CsBr-rich = e_bulk - mu_CsBr | "
            "mu_PbBr2 (bulk PbBr2) | dH = e_bulk - mu_CsBr - mu_PbBr2(bulk) | E(volume-relaxed "
            "cell) - mean E(fixed-cell perfect starts): >= 0 fine, < 0 the starts are trapped |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in bulk_methods:
        d = der[m]
        for n in bulk_ns:
            eb = d.e_bulk(n)
            vol = next(
                (
                    r["energy_ev"]
                    for r in records
                    if r["mode"] == "volume"
                    and r["calculator"] == m.split("-")[0]
                    and r["name"] == f"bulk{n}_perfect"
                ),
                None,
            )
            trap = (
                "-"
                if vol is None or eb is None or m.endswith("-sp")
                else f"{vol - eb[0] * n**3:+.3f}"
            )
            a = next(
                (
                    r.get("a_angstrom")
                    for r in records
                    if r["mode"] == "volume"
                    and r["calculator"] == ("chgnet" if m.endswith("-sp") else m.split("-")[0])
                    and r["name"] == f"bulk{n}_perfect"
                ),
                None,
            )
            if eb is None:
                continue
            mu_c = d.mu_csbr
            dh = (
                eb[0] - mu_c - d.mu_pbbr2_bulk
                if mu_c is not None and d.mu_pbbr2_bulk is not None
                else None
            )
            L.append(
                f"| {m} | {n} | {'-' if a is None else f'{a:.4f}'} | {_pm(eb, 4)} | "
                f"{mu_c:.4f} | {eb[0] - mu_c:.4f} | "
                f"{d.mu_pbbr2_bulk if d.mu_pbbr2_bulk is not None else float('nan'):.4f} | "
                f"{dh if dh is not None else float('nan'):+.4f} | {trap} |"
            )
    L += [
        "",
        (
            f"CE (`{ce['path']}`): mu_CsBr = {ce['mu_csbr']:.4f} (metadata), e_bulk = "
            f"{ce['e_bulk']:.4f} per site (pure periodic cell)."
        ),
    ]

    # ---- bulk
    L += [
        "",
        "## Bulk: formation free energy of one vacancy",
        "",
        (
            "`G_f = E(V cell) - E(perfect) + mu_PbBr2`, both cells at the method's a_n (SevenNet "
            "single points: the CHGNet cells and geometries).  CsBr-rich: mu_PbBr2 = e_bulk - "
            "mu_CsBr; PbBr2-rich: mu_PbBr2 = bulk PbBr2."
        ),
        "",
        "| method | n | variant | starts (V / perfect) | G_f CsBr-rich | G_f PbBr2-rich |",
        "|---|---:|---|---|---:|---:|",
    ]
    for m in bulk_methods:
        d = der[m]
        for n in bulk_ns:
            for v in ("v-trans", "v-cis"):
                g = d.g_f_bulk(n, v, "CsBr-rich")
                if g is None:
                    continue
                nv, nh = d.get(f"bulk{n}_{v}").n, d.get(f"bulk{n}_perfect").n
                flag = (
                    " (perfect starts trapped: not usable)" if trapped(records, stats, m, n) else ""
                )
                L.append(
                    f"| {m} | {n} | {v}{flag} | {nv} / {nh} | {_pm(g)} | "
                    f"{_pm(d.g_f_bulk(n, v, 'PbBr2-rich'))} |"
                )
    L.append(f"| CE fitted.ce | any | model V | - | {ce['g_f_bulk']:+.3f} | - |")
    cd_lines = []
    for m in bulk_methods:
        x = der[m].diff("bulk3_v-cd-near", "bulk3_v-cd-far")
        if x is not None:
            cd_lines.append(f"| {m} | {_pm(x)} |")
    if cd_lines:
        L += [
            "",
            (
                "Cd next to the vacancy vs far (3^3 cell): E(V + Cd nearest neighbour) - "
                "E(V + Cd at (1, 1, 1)) (< 0: Cd binds to the vacancy)."
            ),
            "",
            "| method | E(near) - E(far) |",
            "|---|---:|",
            *cd_lines,
        ]

    # ---- NCs
    all_methods = methods
    for n in nc_edges:
        methods = [
            m for m in all_methods if any(k[0] == m and k[2].startswith(f"nc{n}") for k in stats)
        ]
        methods += [m for m in all_methods if m in DB_FALLBACK and m not in methods]
        methods = [m for m in all_methods if m in methods]
        states = list(nc_states(n))
        L += [
            "",
            f"## {n}^3 NC (pure CsPbBr3)",
            "",
            "| state | V sites | O sites | atoms | "
            + " | ".join(f"{m}: starts, mean E" for m in methods)
            + " | CE total |",
            "|---|---|---|---:|" + "---|" * len(methods) + "---:|",
        ]
        for s in states:
            name = f"nc{n}_x0_{s}"
            st0 = next((der[m].get(name) for m in methods if der[m].get(name)), None)
            atoms = sum(st0.counts.values()) if st0 else "-"
            cols = []
            for m in methods:
                st = der[m].get(name)
                cols.append(f"{st.n}, {st.mean:.3f} +/- {st.sem:.3f}" if st else "-")
            L.append(
                f"| {s} | {nc_states(n)[s]['V']} | {nc_states(n)[s]['O']} | {atoms} | "
                + " | ".join(cols)
                + f" | {ce['nc'][n][s]:.3f} |"
            )
        depths = [s for s in states if s.startswith("vac1-depth") and s != "vac1-depth0"]
        L += [
            "",
            f"Depth profile E(V at depth d) - E(V at the face centre), {n}^3:",
            "",
            "| d | " + " | ".join(methods) + " | CE |",
            "|---:|" + "---:|" * (len(methods) + 1),
        ]
        for s in depths:
            cols = [_pm(der[m].diff(f"nc{n}_x0_{s}", f"nc{n}_x0_vac1-depth0")) for m in methods]
            ce_d = ce["nc"][n][s] - ce["nc"][n]["vac1-depth0"]
            L.append(f"| {s[-1]} | " + " | ".join(cols) + f" | {ce_d:+.3f} |")
        nb = max(bulk_ns) if bulk_ns else None
        L += [
            "",
            (
                f"G_f(NC, V at depth d) = E(NC with V) - E(perfect NC) + mu_PbBr2, CsBr-rich "
                f"(mu from the {nb}^3 bulk cell of the same calculator, its lowest start kind: for "
                f"CHGNet the tilted starts), {n}^3; edge and corner V "
                "included:"
            ),
            "",
            "| V state | " + " | ".join(methods) + " | CE |",
            "|---|" + "---:|" * (len(methods) + 1),
        ]
        for s in [*["vac1-depth0", *depths], "v1-edge", "v1-corner"]:
            if nb is None:
                break
            cols = [_pm(der[m].g_f_nc(n, s, nb, "CsBr-rich")) for m in methods]
            ce_g = ce["nc"][n][s] - ce["nc"][n]["pure"] + ce["e_bulk"] - ce["mu_csbr"]
            L.append(f"| {s} | " + " | ".join(cols) + f" | {ce_g:+.3f} |")
        L += [
            "",
            f"Recession dOmega_rec = E(O state) - E(V state) - n_CsBr mu_CsBr, {n}^3:",
            "",
            "| site | V state -> O state | n CsBr | " + " | ".join(methods) + " | CE |",
            "|---|---|---:|" + "---:|" * (len(methods) + 1),
        ]
        for label, (v, o) in RECESSION.items():
            cols, gained = [], "-"
            for m in methods:
                if m in DB_FALLBACK:  # V (lowest start) and O (start mean) would mix
                    cols.append("n/a")
                    continue
                x = der[m].recession(f"nc{n}_x0_{v}", f"nc{n}_x0_{o}")
                if x is not None:
                    gained = str(x[2])
                cols.append(_pm(x[:2]) if x else "-")
            if gained == "-":
                ce_r = "-"
            else:
                ce_r = f"{ce['nc'][n][o] - ce['nc'][n][v] - int(gained) * ce['mu_csbr']:+.3f}"
            L.append(f"| {label} | {v} -> {o} | {gained} | " + " | ".join(cols) + f" | {ce_r} |")

    methods = all_methods if nc_edges else methods

    # ---- fractions
    L += [
        "",
        "## Equilibrium vacancy fraction per B site (CsBr-rich)",
        "",
        (
            "`c_eq = g exp(-G_f / k_B T)`; in brackets the range for G_f -/+ sigma, sigma = "
            "sqrt(SEM^2 + (G_f(SevenNet) - G_f(CHGNet))^2) where both calculators have the number "
            "(the calculator spread as a systematic error), else the SEM alone.  Central value: "
            "CHGNet.  For G_f < 0 the dilute formula does not apply (the crystal would lose PbBr2 "
            "spontaneously at that mu)."
        ),
        "",
        "| defect | G_f CHGNet (start mean) | G_f SevenNet-0 (relaxed, same starts) | SevenNet "
        "single point - CHGNet on the CHGNet geometries (not in sigma) | sigma | "
        + " | ".join(f"c_eq {t:.0f} K, g = {g}" for t in TEMPERATURES_K for g in (1, 3))
        + " |",
        "|---|---:|---:|---:|---:|" + "---|" * (2 * len(TEMPERATURES_K)),
    ]
    rows: list[tuple[str, Any, Any, Any]] = []

    def get(m: str, f: Any) -> Any:
        return f(der[m]) if m in der else None

    for n in bulk_ns:

        def f(d: Derived, n: int = n) -> Any:
            return d.g_f_bulk(n, "v-trans", "CsBr-rich")

        sp = get("sevennet-sp", f)
        ch = get("chgnet", f)
        seven = None if trapped(records, stats, "sevennet", n) else get("sevennet", f)
        rows.append((f"bulk {n}^3, trans V", ch, seven,
                     (sp[0] - ch[0]) if sp and ch else None))  # fmt: skip
        if get("chgnet-tilted", f):
            rows.append((f"bulk {n}^3, trans V, tilted starts", get("chgnet-tilted", f),
                         get("sevennet-tilted", f), None))  # fmt: skip
    for n in nc_edges:
        if not bulk_ns:
            break
        deepest = max(s for s in nc_states(n) if s.startswith("vac1-depth"))
        for s_ in ("vac1-depth0", deepest):

            def f(d: Derived, n: int = n, s: str = s_) -> Any:
                return d.g_f_nc(n, s, max(bulk_ns), "CsBr-rich")

            sp, ch = get("sevennet-db", f), get("chgnet-db", f)
            rows.append((f"{n}^3 NC, {s_}", get("chgnet", f), None,
                         (sp[0] - ch[0]) if sp and ch else None))  # fmt: skip
    for label, g1, g7, sp_diff in rows:
        if not g1:
            continue
        spread = g7[0] - g1[0] if g7 else None
        sigma = combine(g1[1], spread) if spread is not None else g1[1]
        cells = [
            _fraction_cells((g1[0], sigma), t, deg)
            for t in TEMPERATURES_K
            for deg in (1, TRANS_PAIR_ORIENTATIONS)
        ]
        L.append(
            f"| {label} | {_pm(g1)} | {_pm(g7) if g7 else '-'} | "
            f"{'-' if sp_diff is None else f'{sp_diff:+.3f}'} | {sigma:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    g_ce = ce["g_f_bulk"]
    L.append(
        f"| CE bulk | {g_ce:+.3f} | - | - | - | "
        + " | ".join(
            f"{math.exp(-g_ce / (8.617333262e-5 * t)) * deg:.2g}"
            for t in TEMPERATURES_K
            for deg in (1, TRANS_PAIR_ORIENTATIONS)
        )
        + " |"
    )

    # ---- PBE
    L += ["", "## CP2K PBE check", ""]
    if pbe and pbe.get("cells"):
        L += [
            (
                "Single points (settings of `studies/dft_validation`, Gamma only) on the CHGNet-"
                "relaxed geometries (`cp2k_check.py`)."
            ),
            "",
            "| cell | atoms | E PBE | E CHGNet (same geometry) |",
            "|---|---:|---:|---:|",
        ]
        for name, c in pbe["cells"].items():
            L.append(
                f"| {name} | {c['n_atoms']} | {c.get('energy_eV', float('nan')):.4f} | "
                f"{c.get('chgnet_energy_eV', float('nan')):.4f} |"
            )
        L += _pbe_derived(pbe["cells"])
    else:
        L.append("No PBE results yet (README: how to run `cp2k_check.py`).")

    # ---- every relaxation
    L += [
        "",
        "## Every record",
        "",
        "| method | mode | structure | start (seed) | E (eV) | steps | fmax (eV/A) | s | source |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(records, key=lambda r: (_method(r), r["mode"], r["name"], r["seed"])):
        steps = r["n_steps"] if r["n_steps"] is not None else "-"
        fmax = r["fmax_final_ev_per_angstrom"]
        sec = r["seconds"]
        L.append(
            f"| {_method(r)} | {r['mode']} | {r['name']} | {r['seed']} | {r['energy_ev']:.4f} "
            f"| {steps} | {'-' if fmax is None else f'{fmax:.4f}'} | "
            f"{'-' if sec is None else f'{sec:.0f}'} | {r['source']} |"
        )
    notes = HERE / "notes.md"
    if notes.exists():
        L += ["", notes.read_text().rstrip()]
    return "\n".join(L) + "\n"


def _pbe_derived(cells: dict[str, Any]) -> list[str]:
    """Return the report lines of the PBE and CHGNet numbers on the same geometries."""
    need = ("bulk2_perfect", "bulk2_v-trans")
    csbr = [c for c in ("csbr_cscl", "csbr_rocksalt") if c in cells]
    if not all(c in cells for c in need) or not csbr:
        return ["", "(G_f needs bulk2_perfect, bulk2_v-trans and a CsBr cell.)"]
    out = [
        "",
        "| quantity | PBE | CHGNet (same geometries) |",
        "|---|---:|---:|",
    ]
    vals = {}
    for key, label in (("energy_eV", "PBE"), ("chgnet_energy_eV", "CHGNet")):
        mu = {c: cells[c][key] / cells[c]["counts"]["Cs"] for c in csbr}
        e_perf, e_v = cells["bulk2_perfect"][key], cells["bulk2_v-trans"][key]
        e_bulk = e_perf / 8
        mu_csbr = min(mu.values())
        vals[label] = {
            "rs_minus_cscl": (
                mu["csbr_rocksalt"] - mu["csbr_cscl"] if len(mu) == 2 else float("nan")
            ),
            "dv": e_v - e_perf + e_bulk,
            "g_rich": e_v - e_perf + e_bulk - mu_csbr,
            "g_cscl": e_v - e_perf + e_bulk - mu.get("csbr_cscl", float("nan")),
        }
        if "pbbr2_pnma" in cells:
            mu_pb = cells["pbbr2_pnma"][key] / cells["pbbr2_pnma"]["counts"]["Pb"]
            vals[label]["dh"] = e_bulk - mu_csbr - mu_pb
            vals[label]["g_poor"] = e_v - e_perf + mu_pb
        else:
            vals[label]["dh"] = vals[label]["g_poor"] = float("nan")
    rows = (
        ("mu_CsBr(rock salt) - mu_CsBr(CsCl type), eV per CsBr", "rs_minus_cscl"),
        ("dH = e_bulk(2x2x2) - mu_CsBr - mu_PbBr2(Pnma), eV per formula unit", "dh"),
        ("G_f 2x2x2, PbBr2-rich", "g_poor"),
        ("G_f 2x2x2, CsBr-rich (mu_CsBr: lowest CsBr polymorph of the method)", "g_rich"),
        ("G_f 2x2x2, CsBr-rich with mu_CsBr of CsCl-type CsBr", "g_cscl"),
    )
    for label, key in rows:
        out.append(f"| {label} | {vals['PBE'][key]:+.3f} | {vals['CHGNet'][key]:+.3f} |")
    kp = [f"{c}@k222" for c in need]
    if all(c in cells for c in kp):
        e_perf, e_v = (cells[c]["energy_eV"] for c in kp)
        mu = {c: cells[c]["energy_eV"] / cells[c]["counts"]["Cs"] for c in csbr}
        g = e_v - e_perf + e_perf / 8 - min(mu.values())
        out.append(f"| G_f 2x2x2, CsBr-rich, perovskite cells with 2x2x2 k-points | {g:+.3f} | - |")
        if "pbbr2_pnma" in cells:
            mu_pb = cells["pbbr2_pnma"]["energy_eV"] / cells["pbbr2_pnma"]["counts"]["Pb"]
            out.append(
                f"| dH with 2x2x2 k-points | {e_perf / 8 - min(mu.values()) - mu_pb:+.3f} | - |"
            )
    relaxed = [f"{c}_pbe-relaxed" for c in need]
    if all(c in cells for c in relaxed):
        e_perf, e_v = (cells[c]["energy_eV"] for c in relaxed)
        mu = {c: cells[c]["energy_eV"] / cells[c]["counts"]["Cs"] for c in csbr}
        g = e_v - e_perf + e_perf / 8 - min(mu.values())
        out.append(f"| G_f 2x2x2, CsBr-rich, both cells relaxed with PBE | {g:+.3f} | - |")
    return out


def write_report(cache: Path, out: Path) -> None:
    """Write the report from the cache (and the PBE JSON if present)."""
    pbe = json.loads(PBE_JSON.read_text()) if PBE_JSON.exists() else None
    out.write_text(markdown(read_cache(cache), pbe))
    print(f"wrote {out}")


if __name__ == "__main__":  # pragma: no cover
    write_report(HERE / "defect_thermodynamics.jsonl", HERE / "defect_thermodynamics.md")
    _ = CALCULATORS
