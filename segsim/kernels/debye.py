"""Pair-distance histograms for the Debye scattering equation (``segsim xrd``).

The public wrapper is :func:`segsim.viz.xrd.distance_histograms`; the slow twin is the direct
double sum ``naive_debye_intensity`` in ``tests/reference/naive.py``.
"""

import numpy as np

from segsim.kernels._jit import njit


@njit
def _pair_histograms(
    positions: np.ndarray, types: np.ndarray, n_types: int, bin_width: float, n_bins: int
) -> np.ndarray:
    """Count the pairs ``i < j`` by type pair and distance bin.

    Parameters
    ----------
    positions
        ``float64`` Cartesian positions, Angstrom, ``(n_atoms, 3)``.
    types
        ``int64`` type index of each atom, ``0 .. n_types - 1``.
    n_types
        Number of atom types.
    bin_width
        Histogram bin width, Angstrom: bin ``k`` holds ``k w <= r < (k + 1) w``.
    n_bins
        Number of bins; must exceed the largest distance divided by ``bin_width``.

    Returns
    -------
    numpy.ndarray
        ``int64`` counts ``(n_types, n_types, n_bins)``, filled for type pairs ``t <= u``
        only (each unordered pair of atoms counted once).
    """
    n = positions.shape[0]
    hist = np.zeros((n_types, n_types, n_bins), dtype=np.int64)
    inv = 1.0 / bin_width
    for i in range(n - 1):
        xi = positions[i, 0]
        yi = positions[i, 1]
        zi = positions[i, 2]
        ti = types[i]
        for j in range(i + 1, n):
            dx = positions[j, 0] - xi
            dy = positions[j, 1] - yi
            dz = positions[j, 2] - zi
            k = int(np.sqrt(dx * dx + dy * dy + dz * dz) * inv)
            tj = types[j]
            if ti <= tj:
                hist[ti, tj, k] += 1
            else:
                hist[tj, ti, k] += 1
    return hist
