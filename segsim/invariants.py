"""Invariants of a result file: its trace against its own snapshots (for tests and checks).

:func:`check_result` returns every violated invariant as one line; an empty list means all
hold:

* **snapshots**: every frame with a snapshot at the same step (MC trial step or KMC event
  count; a KMC frame without an event since the snapshot has the same occupations) records
  the interior/surface vacancy counts, the interior vacancy fraction (total and per depth
  layer) and the envelope edges that :func:`segsim.observers.hollowness` recomputes from
  the snapshot's occupations: counts exactly, the rest to a relative 1e-12;
* **depth layers**: at those frames the per-layer interior vacancy fraction times the
  layer's crystal sites (counted in the snapshot) sums to ``n_vac_interior``;
* **vacancies** (KMC): ``n_vac_interior + n_vac_surface = n_vac`` in every frame;
* **atoms** (KMC): ``n_cd + cd_expelled`` and ``n_pb + pb_expelled`` are the same in every
  frame (a cation leaves the crystal only by expulsion and never comes back);
* **outline**: in every snapshot every site beyond the synthesised cube (``Lattice.in_nc``)
  is outside: nothing grows beyond the NC as made (``docs/model.md``);
* **edges** (KMC): ``edge_nm <= occupied_envelope_edge_nm <= envelope_edge_nm`` in every
  frame (to a relative 1e-12): the occupied sites lie in the crystal's bounding box, and
  ``N_occ^(1/3)`` is at most the geometric mean of the box's extents, which is at most their
  arithmetic mean; all three use the same ``a(x)``.

A check whose datasets the file lacks (a file written before they existed) is skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.observers import hollowness, layer_depth

__all__ = ["check_result", "recomputed_frames"]

_COUNTS = ("n_vac_interior", "n_vac_surface")


def _snapshot_frames(res: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame indices, occupations)`` of every snapshot with frames at its step."""
    steps = np.asarray(res.trace.get("step", np.empty(0, np.int64)))
    for step, occ in zip(res.snapshot_step, res.occupations, strict=True):
        frames = np.flatnonzero(steps == step)
        if frames.size:
            yield frames, occ


def recomputed_frames(path: str | Path) -> dict[int, dict[str, Any]]:
    """Return ``frame index -> hollowness values`` recomputed from the stored snapshots.

    Every frame whose step equals a snapshot's step gets the values that
    :func:`segsim.observers.hollowness` computes from that snapshot's occupations, with the
    conventions of the file's run kind (KMC: depth below the current surface, envelope
    edges with the lattice's ``a0``; canonical MC traces none of them, so its values are
    empty).  Frames without a snapshot are absent.

    Raises
    ------
    segsim.io.hdf5.ResultFileError
        If the file is missing, not a segsim result file, or inconsistent.
    """
    from segsim.viz.result import load_result  # the lattice rebuilt and checked

    res = load_result(path)
    out: dict[int, dict[str, Any]] = {}
    for frames, occ in _snapshot_frames(res):
        values = hollowness(res.lattice, res.run_kind, occ)
        out.update(dict.fromkeys(frames.tolist(), values))
    return out


def _differs(stored: Any, expected: Any, name: str) -> bool:
    a, b = np.asarray(stored), np.asarray(expected)
    if name in _COUNTS:
        return not np.array_equal(a, b)
    return not np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True)


def _snapshot_problems(res: Any) -> list[str]:
    """Frames with a snapshot: the trace against the recomputation, and the layer sum."""
    tr, lat = res.trace, res.lattice
    problems: list[str] = []
    for frames, occ in _snapshot_frames(res):
        values = hollowness(lat, res.run_kind, occ)
        depth = layer_depth(lat, occ, moving_surface=res.run_kind == "kmc")
        sites = np.bincount(depth[species.in_crystal(occ) & (depth >= 0)], minlength=lat.n_layers)[
            : lat.n_layers
        ]
        for k in frames:
            problems += [
                f"frame {k}: {name} = {tr[name][k]} in the trace, {value} from the snapshot"
                for name, value in values.items()
                if name in tr and _differs(tr[name][k], value, name)
            ]
            if "interior_vacancy_fraction_by_depth" in tr and "n_vac_interior" in tr:
                frac = np.nan_to_num(tr["interior_vacancy_fraction_by_depth"][k])
                total = float(np.sum(frac * sites))
                if abs(total - tr["n_vac_interior"][k]) > 1e-9 * max(1.0, total):
                    problems.append(
                        f"frame {k}: interior vacancies summed over the depth layers "
                        f"{total:g} != n_vac_interior {tr['n_vac_interior'][k]}"
                    )
    return problems


def check_result(path: str | Path) -> list[str]:
    """Return every violated invariant of a result file, one line each (see module docstring).

    Parameters
    ----------
    path
        A segsim result file (canonical MC or KMC).

    Returns
    -------
    list[str]
        Empty if every invariant holds; otherwise one line per violation, naming the frame
        and the dataset.

    Raises
    ------
    segsim.io.hdf5.ResultFileError
        If the file is missing, not a segsim result file, or inconsistent.
    """
    from segsim.viz.result import load_result

    res = load_result(path)
    tr = res.trace
    problems = _snapshot_problems(res)
    beyond = ~np.asarray(res.lattice.in_nc, dtype=bool)
    for step, occ in zip(res.snapshot_step, res.occupations, strict=True):
        n_bad = int(np.sum(occ[beyond] != species.OUT))
        if n_bad:
            problems.append(
                f"snapshot at step {step}: {n_bad} sites beyond the synthesised cube are not outside"
            )
    if all(n in tr for n in ("n_vac", *_COUNTS)):
        bad = np.flatnonzero(tr["n_vac_interior"] + tr["n_vac_surface"] != tr["n_vac"])
        problems += [f"frame {k}: n_vac_interior + n_vac_surface != n_vac" for k in bad]
    edges = ("edge_nm", "occupied_envelope_edge_nm", "envelope_edge_nm")
    if all(n in tr for n in edges):
        for small, large in itertools.pairwise(edges):
            bad = np.flatnonzero(tr[small] > tr[large] * (1 + 1e-12))
            problems += [f"frame {k}: {small} > {large}" for k in bad]
    for ion in ("cd", "pb"):
        n, out = f"n_{ion}", f"{ion}_expelled"
        if n in tr and out in tr and tr[n].size:
            total = tr[n] + tr[out]
            bad = np.flatnonzero(total != total[0])
            problems += [
                f"frame {k}: {n} + {out} = {total[k]}, frame 0 had {total[0]}" for k in bad
            ]
    return problems
