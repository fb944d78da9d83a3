"""Factorised against direct KMC rates on one state, alternately in one process (issue 28).

Usage (a result file with a checkpoint, e.g. one simulated day of the 0.90-eV mix)::

    segsim run studies/tilted_barriers/... -o mix.h5      # any KMC run with a checkpoint
    python benchmarks/kernel_ab.py INPUT.yaml mix.h5 [events] [repeats]

Both kernels start from the run's checkpoint (state and generator), run the same number of
events ``repeats`` times each, alternating, and report events per second of this thread's
CPU time (``time.thread_time``: a shared machine's waiting is not counted, its cache and
memory contention still is) and the median ratio.  Each run must end in the same state and
at the same simulated time: the two kernels make the same events (their rates agree to a few
ulp), which the script checks.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from segsim import config, driver
from segsim.engine import KMCEngine, KMCState
from segsim.io import hdf5
from segsim.kinetics import treatment_parameter_vectors
from segsim.rng import state_from_json


def main(input_path: str, result_path: str, n_events: int = 300_000, repeats: int = 5) -> None:
    cfg = config.load(input_path)
    _, lattice, tables = driver.build_system(cfg)
    ck = hdf5.read_checkpoint(result_path)
    if ck is None:
        raise SystemExit(f"{result_path}: no checkpoint")
    arrays, attrs = ck
    _, kp, _ = treatment_parameter_vectors(cfg, tables, lattice, arrays["phase"])

    def engine(factorised: bool) -> KMCEngine:
        state = KMCState.from_checkpoint(arrays, attrs)
        rng = np.random.default_rng()
        rng.bit_generator.state = state_from_json(attrs["rng_state"])
        return KMCEngine(tables, lattice, state, rng, kp, factorised=factorised)

    for fact in (False, True):  # compile both before timing
        engine(fact).advance(np.inf, max_events=1000)
    speed: dict[bool, list[float]] = {False: [], True: []}
    ends = set()
    for _ in range(repeats):
        for fact in (False, True):
            eng = engine(fact)
            t0 = time.thread_time()
            n, _ = eng.advance(np.inf, max_events=n_events)
            speed[fact].append(n / (time.thread_time() - t0))
            ends.add((eng.state.time_s, eng.state.occupations.tobytes()))
    if len(ends) != 1:
        raise SystemExit("the two kernels ended in different states")
    med = {f: float(np.median(v)) for f, v in speed.items()}
    print(f"{n_events} events x {repeats} per kernel, from t = {attrs['time_s']:.0f} s")
    print(f"direct     {med[False]:.3e} events/s  ({', '.join(f'{v:.2e}' for v in speed[False])})")
    print(f"factorised {med[True]:.3e} events/s  ({', '.join(f'{v:.2e}' for v in speed[True])})")
    print(f"ratio      {med[True] / med[False]:.3f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], *(int(a) for a in args[2:4]))
