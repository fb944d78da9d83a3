"""Canonical Metropolis Monte Carlo of Pb/Cd swaps, a whole chunk per compiled call."""

import numpy as np

from segsim.kernels._jit import njit
from segsim.kernels.energy import _swap_delta
from segsim.kernels.rp import _rp_swap_delta


@njit
def _run_mc_chunk(
    occ, phase, pb_sites, cd_sites, n_steps, beta, eta_rp, nbr, ce_index, weights, local_table, rng
):
    """Run ``n_steps`` trial Pb/Cd swaps at inverse temperature ``beta`` (1/eV).

    Each trial picks a Pb site ``pb_sites[int(u1 * n_pb)]`` and a Cd site
    ``cd_sites[int(u2 * n_cd)]`` (``u = rng.random()``), computes the swap energy change
    ``dE`` (CE plus, if ``eta_rp != 0``, the RP term ``-eta [Cd on an RP site]`` of the fixed
    phase field ``phase``; the RP pair and site terms do not change in a Pb/Cd swap) and
    accepts it if ``dE <= 0`` or ``rng.random() < exp(-beta * dE)`` (the third
    draw happens only when ``dE > 0``).  On acceptance ``occ``, ``pb_sites`` and ``cd_sites``
    are updated in place (the two list entries exchange their sites).

    Returns
    -------
    (n_accepted, sum of accepted dE in eV)
    """
    n_pb = pb_sites.shape[0]
    n_cd = cd_sites.shape[0]
    n_acc = 0
    de_sum = 0.0
    if n_pb == 0 or n_cd == 0:
        return n_acc, de_sum
    for _ in range(n_steps):
        a = int(rng.random() * n_pb)
        b = int(rng.random() * n_cd)
        i = pb_sites[a]
        j = cd_sites[b]
        de = _swap_delta(occ, i, j, nbr, ce_index, weights, local_table)
        if eta_rp != 0.0:
            de += _rp_swap_delta(phase, i, j, eta_rp)
        if de <= 0.0 or rng.random() < np.exp(-beta * de):
            tmp = occ[i]
            occ[i] = occ[j]
            occ[j] = tmp
            pb_sites[a] = j
            cd_sites[b] = i
            n_acc += 1
            de_sum += de
    return n_acc, de_sum
