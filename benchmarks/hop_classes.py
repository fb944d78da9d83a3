"""Where the hops of an aging run go: the table of docs/performance.md (issue 16).

Usage (after ``segsim run inputs/aging_pristine.yaml -o aging_pristine.h5``)::

    python benchmarks/hop_classes.py inputs/aging_pristine.yaml aging_pristine.h5

For each stored snapshot (days 1, 3, 7, 14 of the shipped input, with
``snapshot_every_frames: 10`` and 0.1-day frames) it restarts the KMC from that state, runs
1e5 events with the shipped kinetics and classifies every hop: both sites interior (no
outside neighbour), and whether the vacancy sits in a cube of radius 1, 2, 3 that holds
only Pb besides it (radius 3 is the smallest region a first-passage step could protect with
a nearest-neighbour CE: a box of half-width 1 plus a halo of reach + 1 = 2).
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

from segsim import config, driver, kinetics, species
from segsim.engine import KMCEngine, KMCState

N_EVENTS = 100_000


def main(input_path: str, result_path: str, snapshots: tuple[int, ...] = (1, 3, 7, 14)) -> None:
    cfg = config.load(input_path)
    _, lattice, tables = driver.build_system(cfg)
    nn, shape = lattice.nn, lattice.shape
    with h5py.File(result_path, "r") as f:
        occs = f["/snapshots/occupations"][:]
        phases = f["/snapshots/phase"][:]
    print("snapshot | x | vacancies (surface) | both interior | pure-Pb cube r=1 / 2 / 3")
    for snap in snapshots:
        state = KMCState.initial(occs[snap], tables, phases[snap])
        _, kp_age, _ = kinetics.treatment_parameter_vectors(cfg, tables, lattice, state.phase)
        occ = state.occupations.copy()
        n_vac = int(np.count_nonzero(occ == species.VAC))
        surf = sum(
            1 for v in np.flatnonzero(occ == species.VAC) if (occ[nn[v]] == species.OUT).any()
        )
        cation = occ <= species.CD
        x = np.count_nonzero(occ == species.CD) / np.count_nonzero(cation)
        eng = KMCEngine(tables, lattice, state, np.random.default_rng(0), kp_age)
        _, log = eng.advance(np.inf, max_events=N_EVENTS, log_events=N_EVENTS)
        grid = occ.reshape(shape)  # a view: follows the replay below
        n_hop = interior = 0
        pure = [0, 0, 0, 0]
        for site, slot in zip(log.site, log.slot, strict=True):
            if slot < 6:
                v = nn[site, slot]
                n_hop += 1
                if (
                    not (occ[nn[v]] == species.OUT).any()
                    and not (occ[nn[site]] == species.OUT).any()
                ):
                    interior += 1
                c = np.unravel_index(v, shape)
                for r in (1, 2, 3):
                    lo = [max(k - r, 0) for k in c]
                    box = grid[lo[0] : c[0] + r + 1, lo[1] : c[1] + r + 1, lo[2] : c[2] + r + 1]
                    if box.size == (2 * r + 1) ** 3 and np.count_nonzero(box != species.PB) == 1:
                        pure[r] += 1
                occ[v], occ[site] = occ[site], species.VAC
            elif slot == 6:
                occ[site] = species.VAC
            elif slot == 7:
                occ[site] = species.OUT
        print(
            f"{snap} | {x:.3f} | {n_vac} ({surf}) | {interior / n_hop:.3f} | "
            + " / ".join(f"{pure[r] / n_hop:.4f}" for r in (1, 2, 3))
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
