"""How much one KMC event recomputes, on a real state (docs/performance.md, issue 28).

Usage::

    python benchmarks/event_reach.py INPUT.yaml RESULT.h5 [n_events]

From the run's checkpoint it draws ``n_events`` events with the probabilities of their
rates (without applying them) and counts, per event, what the kernel's refresh
(:func:`segsim.kernels.kmc._refresh_after`) touches: the neighbourhood of the changed
sites, the sites in it with non-zero rate rows, its vacancies, the hop rates in those rows
and the hop slots of vacancy partners outside it (pass 2).
"""

from __future__ import annotations

import sys

import numpy as np

from segsim import config, driver, species
from segsim.engine import KMCEngine, KMCState
from segsim.io import hdf5
from segsim.kinetics import treatment_parameter_vectors


def main(input_path: str, result_path: str, n_events: int = 3000) -> None:
    cfg = config.load(input_path)
    _, lattice, tables = driver.build_system(cfg)
    arrays, attrs = hdf5.read_checkpoint(result_path)
    _, kp, _ = treatment_parameter_vectors(cfg, tables, lattice, arrays["phase"])
    eng = KMCEngine(tables, lattice, KMCState.from_checkpoint(arrays, attrs),
                    np.random.default_rng(1), kp)  # fmt: skip
    nn, nbr, dep, occ, rates = lattice.nn, tables.nbr, eng.dep, eng.state.occupations, eng.rates
    counts = np.bincount(occ, minlength=4)
    print(f"sites {lattice.n_sites} (NC {int(lattice.in_nc.sum())}), dependency columns "
          f"{dep.size}; Pb {counts[0]}, Cd {counts[1]}, V {counts[2]}, O {counts[3]}")  # fmt: skip
    p = rates.ravel() / rates.sum()
    rows = []
    for x in np.random.default_rng(2).choice(rates.size, size=n_events, p=p):
        site, slot = divmod(int(x), rates.shape[1])
        j = nn[site, slot] if slot < 6 else -1
        hood: dict[int, None] = {}
        for c in (site, j):
            if c >= 0:
                hood.update(dict.fromkeys(nn[c].tolist() + nbr[c, dep].tolist()))
        sites = np.fromiter(hood, dtype=np.int64)
        vac = sites[occ[sites] == species.VAC]
        partners = {(int(c), int(v)) for v in vac for c in nn[v]
                    if occ[c] <= species.CD and int(c) not in hood}  # fmt: skip
        rows.append((sites.size, int((eng.site_total[sites] > 0).sum()), vac.size,
                     int((rates[sites, :6] > 0).sum()), len(partners)))  # fmt: skip
    mean = np.mean(rows, axis=0)
    print(f"per event ({n_events} drawn): neighbourhood {mean[0]:.1f} sites, non-zero rows "
          f"{mean[1]:.1f}, vacancies {mean[2]:.1f}, hop rates in those rows {mean[3]:.1f}, "
          f"vacancy-partner slots outside {mean[4]:.1f}")  # fmt: skip


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], *(int(v) for v in a[2:3]))
