"""Atomistic frames of a result file for OVITO and ``ase gui`` (``segsim export``).

Each snapshot becomes one frame: the atomistic view of :meth:`segsim.viz.result.Result.atoms`
(Cs, Pb, Cd, Br; V and O sites carry no atoms, vacancies are neutral as in
:mod:`segsim.atomistic`; RP faults as in :mod:`segsim.viz.atoms`) at the snapshot's Vegard
lattice constant, positions in Angstrom, in the cell of the padded grid with ``pbc`` False.

Formats (:data:`segsim.viz.EXPORT_FORMATS`):

* ``extxyz``: extended XYZ, one file with every frame (the atom count may change from frame
  to frame).  Per-atom columns ``rp`` (0 perovskite, 1 RP site, 2 inserted fault layer),
  ``tags`` (= ``rp``), ``b_site``, ``owner_site``; per-frame keys ``frame``, ``step``,
  ``x_cd``, ``a_angstrom`` and (KMC) ``time_s``.  OVITO reads it directly and can colour by
  ``rp``.
* ``traj``: ASE trajectory (``ase gui out.traj``).  It keeps numbers, positions, cell,
  ``tags`` (= ``rp``) and ``info``, but not custom per-atom arrays.
"""

from __future__ import annotations

from pathlib import Path

from segsim.io.hdf5 import ResultFileError
from segsim.viz import EXPORT_FORMATS, atomic_output
from segsim.viz.result import Result, load_result


def frame_selection(text: str) -> slice | list[int]:
    """Parse a ``--frames`` value: ``all``, ``N``, ``A:B[:C]`` (Python slice) or ``N,M,...``.

    Raises
    ------
    ValueError
        If the text is none of these.
    """
    t = text.strip()
    if t in ("all", ":"):
        return slice(None)
    if ":" in t:
        parts = t.split(":")
        if len(parts) > 3:
            raise ValueError(f"bad slice {text!r}")
        return slice(*(int(p) if p.strip() else None for p in parts))
    return [int(p) for p in t.split(",")]


def select_frames(result: Result, selection: slice | list[int]) -> list[int]:
    """Return the snapshot indices a selection picks (each checked against the file).

    Raises
    ------
    ResultFileError
        If an index is out of range or the selection is empty.
    """
    n = result.n_snapshots
    if isinstance(selection, slice):
        picked = list(range(n))[selection]
    else:
        picked = [result.snapshot_index(i, option="--frames") for i in selection]
    if not picked:
        raise ResultFileError(f"{result.path}: --frames selects no snapshot (the file has {n})")
    return picked


def export_frames(
    path: str | Path,
    *,
    fmt: str,
    frames: slice | list[int] | None = None,
    output: str | Path | None = None,
) -> tuple[Path, int]:
    """Write the atomistic frames of a result file.

    Parameters
    ----------
    path
        The result file.
    fmt
        A key of :data:`segsim.viz.EXPORT_FORMATS`.
    frames
        Snapshots to write (:func:`frame_selection`); default all.
    output
        Output file; default the result file's stem with the format's suffix, next to it.

    Returns
    -------
    tuple
        The written file and the number of frames in it.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(EXPORT_FORMATS)}")
    from ase.io import write

    result = load_result(path)
    result.require_snapshots()
    picked = select_frames(result, slice(None) if frames is None else frames)
    ase_format, suffix = EXPORT_FORMATS[fmt]
    out = Path(output) if output is not None else result.path.with_suffix(suffix)
    images = [result.atoms(i) for i in picked]
    with atomic_output(out) as tmp:
        write(tmp, images, format=ase_format)
    return out, len(images)
