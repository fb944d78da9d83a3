"""Compile (and cache) every kernel once on tiny inputs of the production dtypes.

Used by ``segsim warmup`` before MPI or array jobs start, so that ranks load the on-disk cache
instead of compiling concurrently (see ``hpc/README.md``).
"""

import numpy as np

from segsim.kernels.energy import _flip_delta, _swap_delta, _total_energy
from segsim.kernels.metropolis import _run_mc_chunk


def warm_up() -> None:
    """Call each kernel on a 2-site toy model with the dtypes the engines use."""
    occ = np.array([0, 1], dtype=np.uint8)
    nbr = np.array([[0, 1], [1, 0]], dtype=np.int32)
    ce_index = np.array([2, 1, 0, 0], dtype=np.int64)
    weights = np.zeros(9, dtype=np.float64)
    local = np.array([[0, 1, 1, 3], [0, 3, 1, 1]], dtype=np.int64)
    anchor = np.array([[0, 0, 1, 1, 3]], dtype=np.int64)
    _flip_delta(occ, 0, 1, nbr, ce_index, weights, local)
    _swap_delta(occ, 0, 1, nbr, ce_index, weights, local)
    _total_energy(occ, nbr, ce_index, weights, anchor, 0.0)
    pb = np.array([0], dtype=np.int64)
    cd = np.array([1], dtype=np.int64)
    _run_mc_chunk(
        occ,
        np.zeros(2, np.uint8),
        pb,
        cd,
        1,
        1.0,
        0.0,
        nbr,
        ce_index,
        weights,
        local,
        np.random.default_rng(0),
    )
