r"""The H5MD view of a segsim result file: the B sublattice as an H5MD ``particles`` group.

H5MD ("HDF5 for molecular data", specification version 1.1.0,
https://www.nongnu.org/h5md/h5md.html; de Buyl, Colberg and Hoefling, Comput. Phys. Commun.
185, 1546 (2014)) lets generic readers find particles, their species and the box in an HDF5
file.  The specification allows non-specified groups next to its own ("The H5MD structure is
allowed to possess non-specified groups, datasets, or attributes"), so the segsim groups
(``/metadata``, ``/lattice``, ``/trace``, ``/snapshots``, ``/checkpoint``) and the H5MD groups
live side by side in one file, the H5MD root being the file root.  Layout written here, in the
notation of the specification (section "Particles group", "Time-dependent data", "H5MD
metadata", "Simulation box")::

    h5md
     +-- version: Integer[2] = (1, 1)
     \-- author
     |    +-- name: String[]             the user who ran segsim
     \-- creator
          +-- name: String[] = "segsim"
          +-- version: String[]          segsim's version
    particles
     \-- b_sites                         every site of the padded B grid (N = n_sites)
          \-- box
          |    +-- dimension: Integer[] = 3
          |    +-- boundary: String[3] = periodic, periodic, periodic
          |    \-- edges: Float[3]       grid edge lengths, Angstrom (time-independent)
          \-- position: Float[N][3]      site positions, Angstrom (time-independent)
          \-- species                    time-dependent element (explicit step and time)
          |    \-- step: Integer[variable]        hard link to /snapshots/step
          |    \-- (time: Float[variable])        physical time of each snapshot, s (KMC)
          |    \-- value: Integer[variable][N]    hard link to /snapshots/occupations
          \-- (rp)                        the same for /snapshots/phase (1 = RP), if present

Files whose ``/lattice`` lacks ``coords``, ``a_angstrom`` or ``shape`` (bare test files) get a
box with boundary ``none`` and no edges, and no ``position``, which the specification allows.
``step`` is the MC step or the KMC event count; a KMC snapshot taken after a frame without
events repeats the previous count (non-decreasing, as "monotonically increasing" allows),
while its ``time`` still increases.

Species codes are those of :mod:`segsim.species` (0 Pb, 1 Cd, 2 V, 3 O); the ``species``
group carries them as the non-specified attribute ``codes``.  ``time`` is written only for KMC runs: H5MD 1.1 makes ``time``
optional (proposal 100, "Storage of time information", accepted in 1.1) precisely so that
Monte Carlo trajectories need not invent one.  All strings are fixed-length, as the
specification asks for ``name``, ``version`` and ``boundary``.

``step`` and ``value`` are hard links to the segsim datasets, so they grow with them and cost
no space; only ``time`` is a dataset of its own.  :func:`append_snapshot` is the one entry
point, called by :class:`segsim.io.hdf5.H5Sink` after every snapshot it writes: it creates the
structure on the first call and keeps ``time`` as long as ``step``.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from segsim import __version__, species

#: H5MD specification version written (major, minor).
H5MD_VERSION: tuple[int, int] = (1, 1)

#: The particles subgroup holding the B sublattice.
PARTICLES_GROUP = "particles/b_sites"

#: The time-dependent species element.
SPECIES_PATH = f"{PARTICLES_GROUP}/species"

#: The time-dependent RP-phase element (only when ``/snapshots/phase`` exists).
RP_PATH = f"{PARTICLES_GROUP}/rp"


def _fixed(text: str) -> np.bytes_:
    """Return ``text`` as a fixed-length (not variable-length) HDF5 string."""
    return np.bytes_(text.encode("utf-8"))


def _author() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


def _create(f: h5py.File) -> None:
    """Create the ``h5md`` and ``particles`` groups (the static parts and the links)."""
    meta = f.create_group("h5md")
    meta.attrs["version"] = np.asarray(H5MD_VERSION, dtype=np.int32)
    meta.create_group("author").attrs["name"] = _fixed(_author())
    creator = meta.create_group("creator")
    creator.attrs["name"] = _fixed("segsim")
    creator.attrs["version"] = _fixed(__version__)

    lat = f["lattice"]
    grp = f.create_group(PARTICLES_GROUP)
    box = grp.create_group("box")
    box.attrs["dimension"] = np.int32(3)
    if {"a_angstrom", "shape"} <= set(lat.attrs) and "coords" in lat:
        a = float(lat.attrs["a_angstrom"])
        box.attrs["boundary"] = np.array([b"periodic"] * 3, dtype="S8")
        box.create_dataset("edges", data=np.asarray(lat.attrs["shape"], dtype=np.float64) * a)
        grp.create_dataset("position", data=lat["coords"][()].astype(np.float64) * a)
    else:  # no geometry stored (bare test files): an open box without edges, no positions
        box.attrs["boundary"] = np.array([b"none"] * 3, dtype="S8")
    elem = grp.create_group("species")
    elem.attrs["codes"] = _fixed(", ".join(f"{n}={i}" for i, n in enumerate(species.NAMES)))
    elem["step"] = f["snapshots/step"]
    elem["value"] = f["snapshots/occupations"]


def _link_rp(f: h5py.File) -> None:
    """Add the ``rp`` element once ``/snapshots/phase`` exists (it shares species' step/time)."""
    rp = f.create_group(RP_PATH)
    rp.attrs["codes"] = _fixed("perovskite=0, RP=1")
    rp["step"] = f["snapshots/step"]
    rp["value"] = f["snapshots/phase"]
    if "time" in f[SPECIES_PATH]:
        rp["time"] = f[f"{SPECIES_PATH}/time"]


def append_snapshot(f: h5py.File, frame: Mapping[str, Any]) -> None:
    """Bring the H5MD groups up to date after a snapshot was appended to ``/snapshots``.

    Parameters
    ----------
    f
        The result file, open for writing, whose ``/snapshots`` already hold the new row.
    frame
        The trace frame written with the snapshot; its ``time_s`` (seconds, KMC runs only)
        becomes the snapshot's H5MD ``time``.
    """
    if "h5md" not in f:
        _create(f)
    if "snapshots/phase" in f and RP_PATH not in f:
        _link_rp(f)
    if "time_s" not in frame:
        return
    elem = f[SPECIES_PATH]
    n = f["snapshots/step"].shape[0]
    if "time" not in elem:
        elem.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(256,))
        if RP_PATH in f:
            f[RP_PATH]["time"] = elem["time"]
    time = elem["time"]
    # Resized to the step count, so rows dropped by a resume (truncate_to_step) are overwritten.
    time.resize(n, axis=0)
    time[n - 1] = float(frame["time_s"])


def read_snapshot_times(f: h5py.File) -> np.ndarray | None:
    """Return the H5MD time (s) of every snapshot, or None if the file does not have it."""
    if SPECIES_PATH not in f or "time" not in f[SPECIES_PATH]:
        return None
    t = f[f"{SPECIES_PATH}/time"][()]
    n = f["snapshots/step"].shape[0]
    return t[:n] if t.shape[0] >= n else None
