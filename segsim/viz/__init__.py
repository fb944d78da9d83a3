"""Pictures and exports of segsim result files (``segsim export|plot|stem|xrd``).

* :mod:`segsim.viz.result`: one result file read for pictures (lattice, trace, snapshots,
  RP phase, snapshot times) and the atomistic view of a snapshot;
* :mod:`segsim.viz.export`: extended-XYZ / ASE-trajectory frames for OVITO and ``ase gui``;
* :mod:`segsim.viz.plot`: x(t), PL peak, depth profiles, mid-plane slices, ensemble histograms;
* :mod:`segsim.viz.stem`: HAADF-STEM-like projected images;
* :mod:`segsim.viz.xrd`: powder X-ray patterns from the Debye scattering equation.

Every writer goes through :func:`atomic_output`, so a failed command never leaves a
half-written file behind.  The option tables below are plain data so that the command-line
parser can offer them without importing numpy, h5py or matplotlib.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

#: ``segsim export --format`` -> (ASE format name, default file suffix).
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "extxyz": ("extxyz", ".extxyz"),
    "traj": ("traj", ".traj"),
}

#: ``segsim plot --what`` values, in the order of :data:`segsim.viz.plot.PLOTS`.
PLOT_KINDS: tuple[str, ...] = ("xt", "pl", "depth", "slice", "histogram")

#: ``segsim stem --axis`` -> beam direction (grid axis).
BEAM_AXES: dict[str, int] = {"100": 0, "010": 1, "001": 2}


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
