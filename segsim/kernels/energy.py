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


# ----------------------------------------------------------------------------- pair field
# The KMC keeps, per site and species, the energy of the site's pair (and singlet) clusters
# in integer multiples of a quantum (``PairField``, :mod:`segsim.engine`): updated exactly
# after every change, so that an incrementally kept field is bitwise a rebuild (resume
# exactness needs that), and a flip's pair part costs two loads instead of a cluster loop.
# Clusters of three or more sites stay in a float ``multi_table`` evaluated as above.


@njit
def _field_init(occ, nbr, ce_index, w_int, pair_table, field):
    """Fill ``field[s, x]``: the pair and singlet energy of species ``x`` at ``s`` (quanta)."""
    n_sp = field.shape[1]
    for s in range(occ.shape[0]):
        for x in range(n_sp):
            e = 0
            for t in range(pair_table.shape[0]):
                base = pair_table[t, 0] + ce_index[occ[nbr[s, pair_table[t, 2]]]] * pair_table[t, 3]
                e += w_int[base + x * pair_table[t, 1]]
            field[s, x] = e


@njit_inline
def _field_apply(c, old_ce, new_ce, nbr, dep, colinfo, w_int, pair_table, field):
    """Update the field of the sites that see site ``c`` change from ``old_ce`` to ``new_ce``.

    For a site ``s = nbr[c, q]``, ``c`` lies at the displacement ``colinfo[q, 1]`` (the
    negated one) of ``s``; the pair row of ``s`` with that displacement, ``colinfo[., 0]``
    (-1: none), is the only one that changes.
    """
    n_sp = field.shape[1]
    for k in range(dep.shape[0]):
        q = dep[k]
        t = colinfo[colinfo[q, 1], 0]
        if t < 0:
            continue
        s = nbr[c, q]
        off = pair_table[t, 0]
        cs = pair_table[t, 1]
        sn = pair_table[t, 3]
        for x in range(n_sp):
            field[s, x] += w_int[off + x * cs + new_ce * sn] - w_int[off + x * cs + old_ce * sn]


@njit_inline
def _field_flip_delta(occ, site, new_code, nbr, ce_index, weights, multi_table, field, quantum):
    """Energy change (eV) of ``site`` -> ``new_code``: pair field plus the multi-site clusters."""
    old_ce = ce_index[occ[site]]
    new_ce = ce_index[new_code]
    if old_ce == new_ce:
        return 0.0
    de = (field[site, new_ce] - field[site, old_ce]) * quantum
    if multi_table.shape[0] > 0:
        de += _flip_delta(occ, site, new_code, nbr, ce_index, weights, multi_table)
    return de


@njit_inline
def _pair_swap_correction(t, a, b, w_int, pair_table):
    """Quanta a swap adds for the pair row ``t`` that joins its two sites (CE species a, b).

    The row of ``j`` whose other site is ``i``: in the field before the swap ``i`` holds
    ``a``; after it ``b`` (:func:`_field_swap_delta`; the KMC's factorised hop rates use the
    same integer, :func:`segsim.kernels.kmc.hop_constants`).
    """
    off = pair_table[t, 0]
    cs = pair_table[t, 1]
    sn = pair_table[t, 3]
    return (w_int[off + a * cs + b * sn] - w_int[off + a * cs + a * sn]) - (
        w_int[off + b * cs + b * sn] - w_int[off + b * cs + a * sn]
    )


@njit_inline
def _field_swap_delta(
    occ, i, j, col_ij, nbr, ce_index, weights, multi_table, field, colinfo, w_int, pair_table,
    quantum,
):  # fmt: skip
    """Energy change (eV) of exchanging the species of ``i`` and ``j = nbr[i, col_ij]``.

    The pair part of ``j``'s flip is taken after ``i`` changed: its field plus the change of
    the one pair row of ``j`` that contains ``i``.  ``occ`` is modified transiently (only
    when there are multi-site clusters) and restored.
    """
    si = occ[i]
    sj = occ[j]
    a = ce_index[si]
    b = ce_index[sj]
    if a == b:
        return 0.0
    d_int = field[i, b] - field[i, a] + field[j, a] - field[j, b]
    t = colinfo[colinfo[col_ij, 1], 0]  # the row of j whose other site is i
    if t >= 0:
        d_int += _pair_swap_correction(t, a, b, w_int, pair_table)
    de = d_int * quantum
    if multi_table.shape[0] > 0:
        de += _flip_delta(occ, i, sj, nbr, ce_index, weights, multi_table)
        occ[i] = sj
        de += _flip_delta(occ, j, si, nbr, ce_index, weights, multi_table)
        occ[i] = si
    return de
