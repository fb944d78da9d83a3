"""The barrier table: NEB records -> committee values -> ``potentials/barriers.yaml``.

Per path and calculator the table keeps the record's numbers (provenance included).  Per path
the *committee* is the mean of the calculators and its spread (half the range: for two
members the distance of each from the mean), the uncertainty the KMC parameters carry.

Lattice barrier of a bulk hop
-----------------------------
``E_KRA = E_saddle - (E_IS + E_FS') / 2`` (canonical states, :mod:`segsim.barriers`) is the
barrier of the lattice event when the canonical complex is the lowest arrangement of the two
Br vacancies.  Where the elementary hop's own final state (the *split* arrangement: the B
vacancy moved, its Br vacancies not) is lower than the canonical one, the vacancy spends its
time there and the barrier from it is higher by ``E_IS - E_FS`` of the Cd-free path; the
table adds ``delta_arrangement_ev = max(0, E_IS - E_FS)`` (0 Cd, same mechanism) to every
KRA of that calculator and mechanism.  The KMC's ``E_KRA(M)`` is the committee mean over
calculators of the lowest mechanism's Cd-free value; the values with 1 and 2 Cd on the hop's
axis give ``dE_KRA(M, n)``, the KRA's change the kernel adds for ``n`` Cd there (the
difference per calculator, then the committee): the KRA form with ``dE / 2`` of the CE alone
would need them to be 0.

An elementary hop can end *uphill*: its own final state (FS) above every interior image of the
band (surface paths, where the Br vacancies left behind are costly).  The band's top image
is then a local maximum short of the FS, and the lattice event continues with the Br
rearrangement FS -> FS', which no band here computes.  The table says so per calculator:
``fs_above_saddle_ev = max(0, E_FS - E_saddle)``; where it is positive, ``e_kra_ev`` is the
barrier of the hop part only, and ``E_FS - (E_IS + E_FS') / 2`` (``e_kra_via_fs_ev``) is what
the lattice barrier is at least if the rearrangement starts from the FS.

Bands of the staged protocol also keep their relaxed band (before the climbing image):
``e_kra_relaxed_band_ev``, its top interior image against ``(E_IS + E_FS') / 2``, is the
estimate a band gives without climbing.  It is not a bound: the climb also relaxes the rest of
the band further (tilted Cd 2-Cd: 0.67 before, 0.53 eV after), while on the same converged
path the top image lies at or below the saddle.  For a band whose climb failed
(``band_aborted``) it is the number to read; no committee uses it.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segsim.barriers.paths import parse_path_name

__all__ = ["build_table", "committee", "lattice_barriers", "write_table"]

#: Numbers copied from a record into the table, per calculator.
_RECORD_FIELDS = (
    "e_kra_ev", "e_forward_ev", "e_backward_ev", "e_split_ev", "de_lattice_ev",
    "e_saddle_ev", "e_is_ev", "e_fs_ev", "e_fs_canonical_ev", "band_converged",
    "band_fmax_ev_per_angstrom", "band_steps", "climbing_image", "n_atoms", "formula",
    "a_angstrom", "bulk_cells", "nc_edge", "band_file", "finished", "band_aborted",
)  # fmt: skip


def committee(values: Sequence[float]) -> dict[str, float]:
    """Return ``{"mean": ..., "spread": half the range, "n": ...}`` of committee values (eV)."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("a committee needs at least one finite value")
    return {
        "mean": round(float(v.mean()), 4),
        "spread": round(float(0.5 * (v.max() - v.min())), 4),
        "n": int(v.size),
    }


def _latest(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Return the last record per (calculator, path) (records are appended in time order)."""
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in records:
        out[(str(r["calculator"]), str(r["path"]))] = r
    return out


def lattice_barriers(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict]]:
    """Return ``{path: {calculator: {"e_kra_lattice_ev", "delta_arrangement_ev", ...}}}``.

    ``e_kra_lattice_ev = e_kra_ev + delta_arrangement_ev`` (module docstring); surface paths
    take ``delta`` 0 (their end points are already each other's lowest computed states).
    """
    latest = _latest(records)
    delta: dict[tuple[str, str, str], float] = {}
    for (calc, path), r in latest.items():
        spec = parse_path_name(path)
        if spec.location == "bulk" and spec.n_cd == 0:
            delta[(calc, spec.mover, spec.mechanism)] = max(0.0, -float(r["e_split_ev"]))
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (calc, path), r in latest.items():
        spec = parse_path_name(path)
        d = 0.0
        if spec.location == "bulk":
            d = delta.get((calc, spec.mover, spec.mechanism), 0.0)
        entry = {k: r.get(k) for k in _RECORD_FIELDS}
        entry["delta_arrangement_ev"] = round(d, 4)
        entry["e_kra_lattice_ev"] = round(float(r["e_kra_ev"]) + d, 4)
        mid = 0.5 * (float(r["e_is_ev"]) + float(r["e_fs_canonical_ev"]))
        uphill = float(r["e_fs_ev"]) - float(r["e_saddle_ev"])
        entry["fs_above_saddle_ev"] = round(max(0.0, uphill), 4)
        if uphill > 0:
            entry["e_kra_via_fs_ev"] = round(float(r["e_fs_ev"]) - mid, 4)
        relaxed = r.get("relaxed_band_energies_ev")
        if relaxed and len(relaxed) > 2:
            entry["e_kra_relaxed_band_ev"] = round(max(relaxed[1:-1]) - mid, 4)
        out[path][calc] = _plain(entry)
    return dict(out)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return float(f"{obj:.8g}")  # significant digits: 1e-6 stays 1e-6
    return obj


def path_committees(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return ``{path: {"calculators": ..., "committee_e_kra_lattice_ev": ...}}``.

    Per path (bulk first, then by name) every calculator's :func:`lattice_barriers` entry and
    the committee of the converged ones (None without one).
    """
    per_path = lattice_barriers(records)
    paths: dict[str, Any] = {}
    for name in sorted(per_path, key=lambda p: (parse_path_name(p).location, p)):
        members = per_path[name]
        values = [m["e_kra_lattice_ev"] for m in members.values() if m.get("band_converged")]
        paths[name] = {
            "calculators": members,
            # only converged bands vote: an unconverged band's top image is no saddle
            "committee_e_kra_lattice_ev": committee(values) if values else None,
        }
    return paths


def build_table(
    records: Sequence[Mapping[str, Any]],
    *,
    source: str,
    kmc_choices: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    physical: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the barrier table (a plain mapping, written by :func:`write_table`).

    Parameters
    ----------
    records
        NEB records (:func:`segsim.barriers.runner.read_records`).
    source
        The command and input that made the records (provenance).
    kmc_choices
        ``{kmc_key: {"value": ..., "source": ...}}`` for the KMC parameters that are not a
        committee value of a path (expulsion, recession): what the KMC uses and why it
        differs from a computed number.
    extra
        More top-level sections (e.g. PBE checks, reaction energies), copied.
    physical
        ``{"input": name, "records": [...], "why": text}``: the records of the geometry the
        computed barriers belong to when the KMC's own differ (e.g. the tilted cell while the
        KMC keeps the cubic one).  Every hop entry of ``kmc`` then also holds that geometry's
        value and the difference (``physical_geometry``), and the top-level section
        ``physical_geometry`` says which input and why the KMC differs.

    The ``kmc`` section holds ``e_kra_pb_ev`` and ``e_kra_cd_ev``: the committee mean of the
    lowest bulk mechanism's Cd-free ``e_kra_lattice_ev``, with its spread (None for a single
    calculator: no committee, no uncertainty), each member's value and the path.
    """
    paths = path_committees(records)
    provenance = {}
    for r in records:
        provenance[str(r["calculator"])] = _plain(r.get("provenance", {}))
    kmc = hop_entries(paths)
    if physical is not None:
        _compare_with_physical(kmc, physical)
    for key, choice in (kmc_choices or {}).items():
        kmc[key] = _plain(dict(choice))
    table = {
        "description": (
            "Computed migration barriers of the segsim KMC (segsim barriers; "
            "segsim/barriers/table.py has the definitions; docs/barriers.md)."
        ),
        "made": {"by": source, "date": time.strftime("%Y-%m-%d")},
        "calculators": provenance,
        "kmc": kmc,
        "paths": paths,
    }
    if physical is not None:
        table["physical_geometry"] = {"input": physical["input"], "why": str(physical["why"])}
    if extra:
        table.update(_plain(dict(extra)))
    return table


def hop_entries(paths: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``kmc`` hop entries (``e_kra_*_ev``, ``de_kra_*_ev``) of path committees.

    Parameters
    ----------
    paths
        :func:`path_committees` of one input's records.
    """
    kmc: dict[str, Any] = {}
    for mover in ("pb", "cd"):
        best = None
        for mech in ("open", "closed"):
            name = f"bulk_{mover}_{mech}_0cd"
            c = paths.get(name, {}).get("committee_e_kra_lattice_ev")
            if c is not None and (best is None or c["mean"] < best[1]["mean"]):
                best = (name, c)
        if best is None:
            continue
        env = {}
        for n in (1, 2):
            name = best[0].replace("_0cd", f"_{n}cd")
            if name in paths:
                env[f"{n}cd"] = paths[name]["committee_e_kra_lattice_ev"] or "no converged band"
        members = {  # the committee's voters: converged bands only
            calc: m["e_kra_lattice_ev"]
            for calc, m in paths[best[0]]["calculators"].items()
            if m.get("band_converged")
        }
        kmc[f"e_kra_{mover}_ev"] = {
            "value": best[1]["mean"],
            "uncertainty_ev": best[1]["spread"] if best[1]["n"] > 1 else None,
            "uncertainty_note": (
                f"half the range of {best[1]['n']} calculators (committee spread); not the "
                "error against PBE (checks) nor the cubic-cell / no-tilt approximation"
                if best[1]["n"] > 1
                else "one calculator only: no committee, so no spread; see checks"
            ),
            "computed": f"paths.{best[0]}: committee mean of e_kra_lattice_ev (lowest mechanism)",
            "members": members,
            "environment": env,
        }
        for n in (1, 2):
            kmc[f"de_kra_{mover}_{n}cd_ev"] = _environment_shift(paths, best[0], n)
    return kmc


def _compare_with_physical(kmc: dict[str, Any], physical: Mapping[str, Any]) -> None:
    """Add the physical geometry's value and the difference to every hop entry of ``kmc``."""
    other = hop_entries(path_committees(physical["records"]))
    for key, entry in kmc.items():
        there = other.get(key)
        if there is None or not there["members"]:
            entry["physical_geometry"] = {
                "input": physical["input"],
                "value": None,
                "note": "not computed in that geometry",
            }
            continue
        entry["physical_geometry"] = {
            "input": physical["input"],
            "value": there["value"],
            "uncertainty_ev": there["uncertainty_ev"],
            "members": there["members"],
            "kmc_minus_physical_ev": round(float(entry["value"] - there["value"]), 4),
        }


def _environment_shift(paths: Mapping[str, Any], zero: str, n: int) -> dict[str, Any]:
    """Return the ``kmc`` entry of the KRA's change with ``n`` Cd on the hop's axis (eV).

    Per calculator with converged bands of both the Cd-free path ``zero`` and its ``n``-Cd
    twin, the difference of their ``e_kra_lattice_ev``; the committee of those differences is
    the value (a calculator's systematic offset cancels in its own difference).  Without such
    a pair the value is 0 (no environment dependence) and the entry says that it is not
    computed.
    """
    name = zero.replace("_0cd", f"_{n}cd")
    base = paths.get(zero, {}).get("calculators", {})
    other = paths.get(name, {}).get("calculators", {})
    diffs = {
        calc: round(float(m["e_kra_lattice_ev"] - base[calc]["e_kra_lattice_ev"]), 4)
        for calc, m in other.items()
        if m.get("band_converged") and base.get(calc, {}).get("band_converged")
    }
    if not diffs:
        return {
            "value": 0.0,
            "uncertainty_ev": None,
            "uncertainty_note": "not computed: no converged band pair, so no shift is applied",
            "computed": f"none: paths.{name} has no converged band beside one of paths.{zero}",
            "members": {},
        }
    c = committee(list(diffs.values()))
    return {
        "value": c["mean"],
        "uncertainty_ev": c["spread"] if c["n"] > 1 else None,
        "uncertainty_note": (
            f"half the range of {c['n']} calculators (committee spread)"
            if c["n"] > 1
            else "one calculator only: no committee, so no spread"
        ),
        "computed": (
            f"paths.{name} - paths.{zero}: e_kra_lattice_ev difference per calculator "
            f"({n} Cd on the hop's axis: beyond the vacancy"
            + (" and behind the cation)" if n == 2 else ")")
        ),
        "members": diffs,
    }


def write_table(table: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the table as YAML (atomically: a temporary file, then a rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(
        "# Computed barriers of the segsim KMC: written by `segsim barriers --table`; do not edit\n"
        "# by hand (potentials/kinetics.yaml reads its e_kra_*, e_exp_* and e_rec_ev from `kmc`).\n"
        + yaml.safe_dump(_plain(dict(table)), sort_keys=False, width=100)
    )
    os.replace(tmp, p)
    return p
