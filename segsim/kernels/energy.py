"""Cluster-expansion energy kernels on flat tables (see :class:`segsim.models.base.ModelTables`).

Table layout (all ``int64`` rows, padded with the zero displacement and stride 0):

* ``local_table[t] = [w_offset, center_stride, d_1, s_1, ..., d_{K-1}, s_{K-1}]``: one row per
  (cluster, position of the centre site in it) among the clusters that contain a site; the
  other sites are ``nbr[i, d_q]``.
* ``anchor_table[c] = [w_offset, d_0, s_0, ..., d_{K-1}, s_{K-1}]``: one row per cluster
  anchored at a site (each cluster of the supercell is counted once).

The energy of one cluster is ``weights[w_offset + sum_q ce_index[occ[site_q]] * s_q]``.
"""

from segsim.kernels._jit import njit, njit_inline


@njit_inline
def _flip_delta(occ, site, new_code, nbr, ce_index, weights, local_table):
    """Energy change (eV) when ``site`` changes from ``occ[site]`` to ``new_code``."""
    old_ce = ce_index[occ[site]]
    new_ce = ce_index[new_code]
    if old_ce == new_ce:
        return 0.0
    n_cols = local_table.shape[1]
    de = 0.0
    for t in range(local_table.shape[0]):
        base = local_table[t, 0]
        q = 2
        while q < n_cols:
            base += ce_index[occ[nbr[site, local_table[t, q]]]] * local_table[t, q + 1]
            q += 2
        cs = local_table[t, 1]
        de += weights[base + new_ce * cs] - weights[base + old_ce * cs]
    return de


@njit_inline
def _swap_delta(occ, i, j, nbr, ce_index, weights, local_table):
    """Energy change (eV) of exchanging the species on sites ``i`` and ``j``.

    ``occ`` is modified transiently and restored before returning.
    """
    si = occ[i]
    sj = occ[j]
    if ce_index[si] == ce_index[sj]:
        return 0.0
    de = _flip_delta(occ, i, sj, nbr, ce_index, weights, local_table)
    occ[i] = sj
    de += _flip_delta(occ, j, si, nbr, ce_index, weights, local_table)
    occ[i] = si
    return de


@njit
def _total_energy(occ, nbr, ce_index, weights, anchor_table, constant):
    """Total cluster-expansion energy (eV) of the whole periodic grid.

    Summed per site with Kahan compensation so that the result agrees with
    ``n_sites * ClusterExpansion.predict`` to round-off for large grids.
    """
    n_cols = anchor_table.shape[1]
    total = 0.0
    comp = 0.0
    for site in range(occ.shape[0]):
        e_site = 0.0
        for c in range(anchor_table.shape[0]):
            idx = anchor_table[c, 0]
            q = 1
            while q < n_cols:
                idx += ce_index[occ[nbr[site, anchor_table[c, q]]]] * anchor_table[c, q + 1]
                q += 2
            e_site += weights[idx]
        y = e_site - comp
        t = total + y
        comp = (t - total) - y
        total = t
    return total + constant * occ.shape[0]
