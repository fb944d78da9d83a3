"""The one numba ``njit`` configuration used by every kernel.

``SEGSIM_NUMBA_CACHE=0`` disables the on-disk cache (``NUMBA_CACHE_DIR`` chooses where it
lives; set it per job on clusters, see ``hpc/``).  ``NUMBA_DISABLE_JIT=1`` runs the kernels as
plain Python (used by CI for coverage).  ``fastmath`` is off: the kernels must agree with
icet to round-off.
"""

import os

from numba import njit as _numba_njit

_CACHE = os.environ.get("SEGSIM_NUMBA_CACHE", "1") != "0"


def njit(func):  # type: ignore[no-untyped-def]
    """Compile ``func`` with segsim's numba settings (nopython, cached, no fastmath)."""
    return _numba_njit(cache=_CACHE, nogil=True, fastmath=False, boundscheck=False)(func)


def njit_inline(func):  # type: ignore[no-untyped-def]
    """Like :func:`njit`, but inlined into its callers at numba-IR level.

    Used for small hot helpers that take many array arguments: a non-inlined call passes
    every array as a decomposed struct and updates reference counts, which costs more than
    the helper's own work in the KMC inner loop.
    """
    return _numba_njit(
        cache=_CACHE, nogil=True, fastmath=False, boundscheck=False, inline="always"
    )(func)
