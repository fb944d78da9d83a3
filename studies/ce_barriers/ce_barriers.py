"""What barriers each shipped cluster expansion gives the KMC events (issue 17, item 1, start).

``python -m studies.ce_barriers.ce_barriers [--out FILE]`` builds the 12 nm NC of the aging
inputs (random Cd at x = 0.25, seed 0) for ``potentials/provisional.ce`` and
``potentials/fitted.ce`` and tabulates, from the compiled tables (the numbers the KMC kernel
uses), the energy changes that enter the barriers of ``segsim.kinetics``:

* removal ``dE_rm`` (M -> V) of surface Pb and Cd by outside neighbours k (1 face, 2 edge,
  3 corner), relative to the model's reference (the face centre of a pure NC): the
  expulsion barrier is ``E_exp(M) + bep_alpha * (dE_rm - dE_rm_ref(M))``;
* the same on the face next to one surface vacancy (pit growth);
* recession ``dE_rec + (k - 1) mu_CsBr`` (V -> O) relative to the reference (enters the
  barrier only with ``bep_alpha_recession > 0``);
* removal of the face-centre Pb of a pure NC with m vacant nearest neighbours, and with m
  surface vacancies at its second and third neighbours, and with one vacancy one layer below
  at the first, second or third neighbour distance (how removal changes as a pit grows);
* vacancy injection (a face-centre V swapped with the Pb below it, pure NC) and the energy
  changes of hops of a surface vacancy (x = 0.25);
* which V-V distances the training database of ``fitted.ce`` holds at all
  (:func:`training_vv_distances`).

Barriers in eV follow with the shipped ``potentials/kinetics.yaml``.  It is a first
measurement for the diagnosis asked by issue 17, not the diagnosis itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segsim import kinetics, species
from segsim.lattice import build_cube, n_edge_from_nm
from segsim.models import load_model
from segsim.params.files import POTENTIALS_DIR
from segsim.synthesis import initial_kmc_occupations

HERE = Path(__file__).resolve().parent
NAMES = {species.PB: "Pb", species.CD: "Cd"}


def _stats(values: Sequence[float], ref: float) -> str:
    d = np.asarray(values) - ref
    if d.size == 0:
        return "| - | - | - | 0 |"
    return f"| {d.mean():+.3f} | {d.min():+.3f} | {d.max():+.3f} | {d.size} |"


def model_rows(ce: str | Path, edge_nm: float = 12.0, seed: int = 0) -> list[str]:
    """Return the Markdown rows of one CE file (a path, or a file name in ``potentials/``)."""
    path = Path(ce) if Path(ce).is_file() else POTENTIALS_DIR / ce
    m = load_model("cluster_expansion", path)
    n = n_edge_from_nm(edge_nm, m.a_angstrom)
    lat = build_cube(n, m.a_angstrom, m.reach + 1)
    t = m.compile(lat)
    ref_pb, ref_cd, ref_rec = kinetics.removal_reference_ev(t, lat)
    mu = kinetics.recession_mu_csbr_ev(t)
    occ = initial_kmc_occupations(lat, 0.25, 0.0, np.random.default_rng(seed))
    k = lat.n_outside_nn
    surf = np.flatnonzero(lat.in_nc & (k > 0))
    rows = [
        (
            f"### `{ce}` (reach {m.reach}; references: dE_rm(Pb) {ref_pb:.3f}, dE_rm(Cd) "
            f"{ref_cd:.3f}, dE_rec {ref_rec:.3f}, mu_CsBr {mu:.3f} eV)"
        ),
        "",
        "| quantity (eV, relative to the reference) | mean | min | max | sites |",
        "|---|---:|---:|---:|---:|",
    ]
    for sp, ref in ((species.PB, ref_pb), (species.CD, ref_cd)):
        for kk in (1, 2, 3):
            sites = [s for s in surf if k[s] == kk and occ[s] == sp]
            d = [t.flip_energy_change(occ, s, species.VAC) for s in sites]
            rows.append(f"| dE_rm({NAMES[sp]}), k = {kk} " + _stats(d, ref))
        pit = []
        for s in surf:
            if k[s] != 1 or occ[s] != sp:
                continue
            v = next((j for j in lat.nn[s] if k[j] == 1 and occ[j] <= species.CD), None)
            if v is None:
                continue
            o = occ.copy()
            o[v] = species.VAC
            pit.append(t.flip_energy_change(o, s, species.VAC))
        rows.append(f"| dE_rm({NAMES[sp]}), face, beside a surface V " + _stats(pit, ref))
    for kk in (1, 2, 3):
        d = []
        for s in (s for s in surf if k[s] == kk):
            o = occ.copy()
            o[s] = species.VAC
            d.append(t.flip_energy_change(o, s, species.OUT) + (kk - 1) * mu)
        rows.append(f"| dE_rec + (k - 1) mu_CsBr, k = {kk} " + _stats(d, ref_rec))
    # Pb at the centre of a face of a pure NC with m of its crystal neighbours vacant (the
    # four in-plane ones first, then the one below): how removal changes as a pit grows
    o = lat.empty_occupations()
    c = lat.pad + n // 2
    centre = int(lat.site_index(np.array([c]), np.array([c]), np.array([lat.pad]))[0])
    around = [j for j in lat.nn[centre] if k[j] == 1] + [
        j for j in lat.nn[centre] if k[j] == 0 and lat.in_nc[j]
    ]
    for m in range(len(around) + 1):
        o = lat.empty_occupations()
        o[around[:m]] = species.VAC
        d = t.flip_energy_change(o, centre, species.VAC)
        rows.append(
            f"| dE_rm(Pb), face centre of a pure NC, {m} vacant neighbours " + _stats([d], ref_pb)
        )
    # ... and with m vacancies on the surface within the CE's reach but not beside it (the
    # second and third neighbours in the face): a CE whose pair terms sum linearly lowers the
    # removal energy by every vacancy it sees
    d2 = ((lat.coords - lat.coords[centre]) ** 2).sum(axis=1)
    shell = [int(j) for j in np.flatnonzero((k == 1) & (d2 >= 2) & (d2 <= 4))]
    for m in (2, 4, len(shell)):
        o = lat.empty_occupations()
        o[shell[:m]] = species.VAC
        d = t.flip_energy_change(o, centre, species.VAC)
        rows.append(
            f"| dE_rm(Pb), face centre of a pure NC, {m} surface V at 2nd/3rd neighbours "
            + _stats([d], ref_pb)
        )
    # ... and with one vacancy one layer below it at the 1st, 2nd or 3rd neighbour distance
    # (d^2 = 1, 2, 3 lattice units): the V-V pair energies at those distances, relative to
    # Pb-V, as the removal sees them
    below = np.flatnonzero((k == 0) & lat.in_nc & (lat.coords[:, 2] == lat.pad + 1))
    for dd in (1, 2, 3):
        j = int(below[np.flatnonzero(d2[below] == dd)[0]])
        o = lat.empty_occupations()
        o[j] = species.VAC
        d = t.flip_energy_change(o, centre, species.VAC)
        rows.append(
            f"| dE_rm(Pb), face centre of a pure NC, one V below at d^2 = {dd} "
            + _stats([d], ref_pb)
        )
    o = lat.empty_occupations()
    f0, f1 = (int(lat.site_index(np.array([c]), np.array([c]), np.array([z]))[0])
              for z in (lat.pad, lat.pad + 1))  # fmt: skip
    o[f0] = species.VAC
    rows.append("| V injection (face centre -> depth 1, pure NC) " + _stats(
        [t.swap_energy_change(o, f0, f1)], 0.0))  # fmt: skip
    hops = []
    for s in surf:
        if occ[s] > species.CD:
            continue
        o = occ.copy()
        o[s] = species.VAC
        hops += [t.swap_energy_change(o, s, j) for j in lat.nn[s] if o[j] <= species.CD]
    rows.append("| hop of a surface V (dE, all neighbours) " + _stats(hops, 0.0))
    return rows


def training_vv_distances(db: str | Path = POTENTIALS_DIR / "training.db") -> dict[int, int]:
    """Return ``{squared V-V distance (lattice units): structures}`` of the training database.

    Counts, over the structures on the CE lattice with two or more vacancies, every V-V pair
    once (minimum image for periodic cells): which V-V pair clusters the fitted CE has data
    for.
    """
    from segsim.training.reference import load_references

    counts: dict[int, int] = {}
    for rec in load_references(db):
        if rec.get("lattice") is None or rec.get("occupations") is None:
            continue  # off the CE lattice (RP faults, CsBr)
        occ = np.asarray(rec["occupations"])
        shape = np.asarray(rec["lattice"]["shape"])
        v = np.array(np.unravel_index(np.flatnonzero(occ == species.VAC), shape)).T
        for i in range(len(v)):
            for j in range(i + 1, len(v)):
                d = v[i] - v[j]
                if rec["lattice"]["periodic"]:
                    d = (d + shape // 2) % shape - shape // 2
                key = int((d**2).sum())
                counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Write the table for both shipped CEs (``--out``, default ``ce_barriers.md`` here)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", default=str(HERE / "ce_barriers.md"))
    p.add_argument(
        "--models",
        nargs="+",
        default=["provisional.ce", "fitted.ce"],
        help="CE files (paths, or names in potentials/)",
    )
    p.add_argument("--database", default=str(POTENTIALS_DIR / "training.db"))
    args = p.parse_args(argv)
    kp = kinetics.load_defaults()
    text = [
        "# Energy changes behind the KMC barriers, per shipped CE",
        "",
        (
            "Generated by `python -m studies.ce_barriers.ce_barriers` (module docstring). Shipped "
            f"kinetics: bep_alpha {kp.bep_alpha}, bep_alpha_recession {kp.bep_alpha_recession}, "
            f"E_exp(Pb) {kp.e_exp_pb_ev}, E_exp(Cd) {kp.e_exp_cd_ev}, E_KRA(Pb) {kp.e_kra_pb_ev}, "
            f"E_KRA(Cd) {kp.e_kra_cd_ev}, E_rec {kp.e_rec_ev} eV."
        ),
        "",
    ]
    for ce in args.models:
        text += [*model_rows(ce), ""]
    vv = training_vv_distances(args.database)
    text += [
        f"### V-V pairs in the training database `{Path(args.database).name}`",
        "",
        "| squared V-V distance (lattice units) | " + " | ".join(str(k) for k in vv) + " |",
        "|---|" + "---:|" * len(vv),
        "| pairs | " + " | ".join(str(v) for v in vv.values()) + " |",
        "",
        "The third-neighbour V-V pair (squared distance 3) is absent when no column 3 appears:",
        "its interaction is then fixed by the fit's regularisation alone, not by data.",
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
