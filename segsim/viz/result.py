"""One segsim result file, read for pictures: lattice, trace, snapshots, RP phase, times.

Frames and snapshots
--------------------
A *frame* is a row of ``/trace`` (every output time); a *snapshot* is a row of
``/snapshots`` (the occupations of every site at some frames).  Commands that need atoms
(``export``, ``stem``, ``xrd``, ``plot --what slice``) take snapshot indices; ``--frame N``
counts snapshots from 0 (negative values count from the end, -1 the last).

Time axes
---------
KMC files (``run_kind`` ``kmc``) have a physical time: ``/trace/time_s`` per frame and, per
snapshot, the H5MD time (:mod:`segsim.io.h5md`) or, in files written before it existed, the
time of the first frame with the snapshot's event count.  Pictures show it in days.  Canonical
MC files have no time; their axis is the MC step.  ``--times`` values are therefore days for
KMC files and steps for MC files.

RP phase
--------
``/snapshots/phase`` (1 = RP) is read when the file has it; otherwise there is no RP and the
phase is all zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsim import optics, species
from segsim.io.hdf5 import ResultFileError, read_result
from segsim.lattice import Lattice, build_cube
from segsim.units import SECONDS_PER_DAY


@dataclass(frozen=True, eq=False)
class Result:
    """A result file in memory (arrays are read once; files are small per snapshot).

    Attributes
    ----------
    path
        The file.
    run_kind
        ``"kmc"`` or ``"canonical_mc"``.
    ligand
        The ligand shell of a KMC run (``/metadata`` attribute ``ligand``), else None.
    lattice
        The NC lattice, rebuilt from ``/lattice`` and checked against its coordinates.
    trace
        Every ``/trace`` dataset, one row per frame.
    snapshot_step
        Step (MC) or event count (KMC) of every snapshot.
    occupations
        Species codes, ``(n_snapshots, n_sites)``.
    phase
        RP phase (1 = RP), same shape; zeros if the file has no ``/snapshots/phase``.
    snapshot_time_s
        Time of every snapshot in s (KMC), or None (MC).
    """

    path: Path
    run_kind: str
    ligand: str | None
    lattice: Lattice
    trace: dict[str, np.ndarray]
    snapshot_step: np.ndarray
    occupations: np.ndarray
    phase: np.ndarray
    snapshot_time_s: np.ndarray | None

    # ------------------------------------------------------------------ identity
    @property
    def is_kmc(self) -> bool:
        """Whether the file has a physical time axis (KMC)."""
        return self.run_kind == "kmc"

    @property
    def label(self) -> str:
        """Legend label: the ligand of a KMC run, else the file stem."""
        return self.ligand or self.path.stem

    @property
    def n_snapshots(self) -> int:
        """Number of stored snapshots."""
        return int(self.snapshot_step.shape[0])

    @property
    def axis_label(self) -> str:
        """Label of the time axis of :meth:`frame_axis` and :meth:`snapshot_axis`."""
        return "time (days)" if self.is_kmc else "MC step"

    # ------------------------------------------------------------------ axes
    def frame_axis(self) -> np.ndarray:
        """Time of every frame: days (KMC) or steps (MC)."""
        if self.is_kmc:
            return self.trace["time_s"] / SECONDS_PER_DAY
        return self.trace["step"].astype(np.float64)

    def snapshot_axis(self) -> np.ndarray:
        """Time of every snapshot: days (KMC) or steps (MC)."""
        if self.snapshot_time_s is not None:
            return self.snapshot_time_s / SECONDS_PER_DAY
        return self.snapshot_step.astype(np.float64)

    def nearest_frame(self, t: float) -> int:
        """Index of the frame closest to ``t`` (days for KMC, steps for MC)."""
        return int(np.argmin(np.abs(self.frame_axis() - t)))

    def nearest_snapshot(self, t: float) -> int:
        """Index of the snapshot closest to ``t`` (days for KMC, steps for MC)."""
        self.require_snapshots()
        return int(np.argmin(np.abs(self.snapshot_axis() - t)))

    def time_text(self, value: float) -> str:
        """Format a value of the time axis (``"3.50 d"``, ``"1.5 s"`` or ``"step 20000"``)."""
        if not self.is_kmc:
            return f"step {round(value)}"
        if value == 0 or abs(value) >= 0.01:
            return f"{value:.2f} d"
        return f"{value * SECONDS_PER_DAY:.3g} s"

    # ------------------------------------------------------------------ snapshots
    def require_snapshots(self) -> None:
        """Raise :class:`ResultFileError` if the file has no snapshot."""
        if self.n_snapshots == 0:
            raise ResultFileError(
                f"{self.path}: no snapshots stored (the run had snapshots switched off)"
            )

    def snapshot_index(self, frame: int, *, option: str = "--frame") -> int:
        """Validate a snapshot index (negative counts from the end) and return it >= 0.

        ``option`` names the command-line option in the error message.

        Raises
        ------
        ResultFileError
            One line naming the file and the allowed range.
        """
        self.require_snapshots()
        n = self.n_snapshots
        if not -n <= frame < n:
            raise ResultFileError(
                f"{self.path}: {option} {frame} out of range; the file has {n} snapshots "
                f"(0..{n - 1}, or -{n}..-1 from the end)"
            )
        return frame % n

    def x_cd(self, i: int) -> float:
        """Cd fraction ``N_Cd / (N_Cd + N_Pb)`` of snapshot ``i`` (NaN without cations)."""
        occ = self.occupations[i]
        n_cd = int(np.count_nonzero(occ == species.CD))
        n_cat = int(np.count_nonzero(species.is_cation(occ)))
        return n_cd / n_cat if n_cat else math.nan

    def a_angstrom(self, i: int) -> float:
        """Vegard lattice constant of snapshot ``i``, Angstrom (``a0`` = the lattice's a).

        The same ``a(x)`` as the KMC trace's ``a_angstrom``
        (:func:`segsim.optics.vegard_a_angstrom` with ``a0`` the run's lattice constant);
        ``a0`` if the snapshot has no cation.
        """
        x = self.x_cd(i)
        a0 = self.lattice.a_angstrom
        return a0 if math.isnan(x) else float(optics.vegard_a_angstrom(x, a0_angstrom=a0))

    def snapshot_time_text(self, i: int) -> str:
        """Human-readable time of snapshot ``i``."""
        return self.time_text(float(self.snapshot_axis()[i]))

    def atoms(self, i: int) -> Any:
        """Atomistic view of snapshot ``i`` at its Vegard ``a`` (:mod:`segsim.viz.atoms`).

        ``info`` holds ``frame`` (the snapshot index), ``step``, ``x_cd``, ``a_angstrom``
        and, for KMC, ``time_s``.
        """
        from segsim.viz.atoms import frame_atoms

        a = self.a_angstrom(i)
        atoms = frame_atoms(self.lattice, self.occupations[i], self.phase[i], a_angstrom=a)
        atoms.info.update(
            {"frame": int(i), "step": int(self.snapshot_step[i]), "x_cd": self.x_cd(i)}
        )
        atoms.info["a_angstrom"] = a
        if self.snapshot_time_s is not None:
            atoms.info["time_s"] = float(self.snapshot_time_s[i])
        return atoms


def _lattice_from(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> Lattice:
    try:
        lattice = build_cube(int(attrs["n_edge"]), float(attrs["a_angstrom"]), int(attrs["pad"]))
    except (KeyError, ValueError) as exc:
        raise ResultFileError(f"{path}: /lattice is incomplete or invalid ({exc})") from None
    if not np.array_equal(lattice.coords, arrays.get("coords")):
        raise ResultFileError(f"{path}: /lattice/coords is not the cube its attributes describe")
    return lattice


def _kmc_snapshot_times(raw: dict[str, Any]) -> np.ndarray:
    """Snapshot times of a KMC file without H5MD times (written before segsim stored them).

    The event count alone is ambiguous (a NC that stopped changing keeps its count for many
    frames), so the driver's schedule is used: snapshots at frames ``0, k, 2k, ...`` and the
    last frame of a finished run, ``k = output.snapshot_every_frames`` of the stored config,
    accepted if the event counts agree.  Otherwise: the first frame with the same count.
    """
    import yaml

    steps, t = raw["trace"]["step"], raw["trace"]["time_s"]
    snap = raw["snapshot_step"]
    if len(t) == 0:
        return np.zeros(len(snap))
    try:
        k = int(yaml.safe_load(raw["config_yaml"])["output"]["snapshot_every_frames"])
    except (KeyError, TypeError, ValueError, yaml.YAMLError):
        k = 0
    if k > 0:
        frames = list(range(0, len(t), k))
        if len(frames) < len(snap):
            frames.append(len(t) - 1)
        frames = frames[: len(snap)]
        if len(frames) == len(snap) and np.array_equal(steps[frames], snap):
            return t[frames]
    idx = np.clip(np.searchsorted(steps, snap, side="left"), 0, len(t) - 1)
    return t[idx]


def load_result(path: str | Path) -> Result:
    """Read a result file for pictures.

    Raises
    ------
    ResultFileError
        If the file is missing, not a segsim result file, or inconsistent.
    """
    p = Path(path)
    raw = read_result(p)
    lattice = _lattice_from(p, raw["lattice_arrays"], raw["lattice_attrs"])
    occ = raw["occupations"]
    phase = raw["phase"]
    if phase is None or phase.shape != occ.shape:
        phase = np.zeros_like(occ)
    kind = str(raw["metadata"].get("run_kind", ""))
    if kind == "kmc" and "time_s" not in raw["trace"]:
        raise ResultFileError(f"{p}: a KMC result file without /trace/time_s")
    times = raw["snapshot_time_s"]
    if kind == "kmc" and times is None:
        times = _kmc_snapshot_times(raw)
    ligand = raw["metadata"].get("ligand")
    return Result(
        path=p,
        run_kind=kind,
        ligand=str(ligand) if ligand else None,
        lattice=lattice,
        trace=raw["trace"],
        snapshot_step=raw["snapshot_step"],
        occupations=occ,
        phase=phase,
        snapshot_time_s=times if kind == "kmc" else None,
    )
