"""The one numba ``njit`` configuration used by every kernel.

``SEGSIM_NUMBA_CACHE=0`` disables the on-disk cache (``NUMBA_CACHE_DIR`` chooses where it
lives; set it per job on clusters, see ``hpc/``).  ``NUMBA_DISABLE_JIT=1`` runs the kernels as
plain Python (used by CI for coverage).  ``fastmath`` is off: the kernels must agree with
icet to round-off.
"""

import os

from numba import config as _numba_config
from numba import njit as _numba_njit
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

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


def _borrow_python(arr):  # type: ignore[no-untyped-def]
    """Pure-Python ``borrow`` (``NUMBA_DISABLE_JIT=1``): the array itself."""
    return arr


@intrinsic
def borrow(typingctx, arr):  # type: ignore[no-untyped-def]
    """Return a view of ``arr`` without a memory-info pointer (a borrowed reference).

    numba keeps array lifetimes with atomic reference counts on the array's memory-info
    pointer; each array argument of an inlined helper costs an atomic increment and decrement
    per call, which in the KMC event loop cost more than the event's own work (measured with
    ``perf``: 28 % of the time in ``NRT_incref``/``NRT_decref``).  The reference-count calls
    skip a null pointer, so a kernel that borrows its arrays once at entry runs its inner loop
    without them.  Only for use inside a kernel whose caller keeps ``arr`` alive for the call.
    """
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        src = context.make_array(arr)(context, builder, value=args[0])
        dst = context.make_array(arr)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(dst, name, getattr(src, name))
        dst.meminfo = context.get_constant_null(types.MemInfoPointer(arr.dtype))
        dst.parent = cgutils.get_null_value(dst.parent.type)
        return dst._getvalue()

    return arr(arr), codegen


if _numba_config.DISABLE_JIT:  # an intrinsic cannot run as plain Python
    borrow = _borrow_python
