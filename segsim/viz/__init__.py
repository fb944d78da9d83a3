"""Pictures and exports of segsim result files (``segsim export|plot|stem|xrd``).

* :mod:`segsim.viz.result`: one result file read for pictures (lattice, trace, snapshots,
  RP phase, snapshot times) and the atomistic view of a snapshot;
* :mod:`segsim.viz.export`: extended-XYZ / ASE-trajectory frames for OVITO and ``ase gui``;
* :mod:`segsim.viz.plot`: x(t), PL peak, depth profiles, mid-plane slices, ensemble histograms;
* :mod:`segsim.viz.stem`: HAADF-STEM-like projected images;
* :mod:`segsim.viz.xrd`: powder X-ray patterns from the Debye scattering equation.

Every writer goes through :func:`atomic_output`, so a failed command never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary name keeps the suffix of ``path`` (``.tmp-<pid>.png``), so writers that infer
    the format from the suffix still work.  On any exception the temporary file is removed
    and ``path`` is left untouched.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
