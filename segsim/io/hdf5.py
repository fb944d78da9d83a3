"""The segsim HDF5 result file: schema, streaming appends and checkpoints.

Layout (``SCHEMA_VERSION`` 1)::

    /metadata                 attrs: segsim_version, schema_version, created, units (JSON),
                              run_kind, model_source; dataset ``config`` = resolved YAML text
    /lattice                  static arrays: coords, in_nc, depth, n_outside_nn;
                              attrs: shape, n_edge, pad, a_angstrom
    /trace/<name>             resizable datasets ``(n_frames, ...)``, chunked, one row per
                              frame, appended between compiled chunks: step, energy_ev,
                              acceptance, n_accepted, cd_fraction_by_depth, ...
    /snapshots/step           steps of the occupation snapshots
    /snapshots/occupations    ``(n_snapshots, n_sites)`` uint8, gzip-compressed
    /snapshots/phase          (KMC) the same shape, 1 = RP site, 0 = perovskite
    /checkpoint               latest state: datasets (occupations, ...) and attrs step,
                              rng_state (JSON of ``bit_generator.state``), complete (bool)
    /h5md, /particles         the H5MD 1.1 view of the snapshots (:mod:`segsim.io.h5md`),
                              written with the first snapshot

The file is opened, appended to and closed for every frame, so a run that is killed between
frames (nearly all of its time) leaves a readable file with every completed frame.  On resume
the traces are cut back to the checkpoint's step before new frames are appended, so a resumed
run writes exactly what an uninterrupted run writes.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from segsim import __version__
from segsim.io import h5md
from segsim.units import UNITS

SCHEMA_VERSION = 1


class ResultFileError(ValueError):
    """A result file is missing, unreadable or incompatible."""


def _open_writable(path: Path, *, timeout_s: float = 60.0) -> h5py.File:
    """Open ``path`` for appending, waiting while a reader (e.g. ``segsim info``) holds it."""
    import time

    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            return h5py.File(path, "a")
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(0.5, 2 * delay)


class H5Sink:
    """Writes one run's result file.

    Parameters
    ----------
    path
        The result file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ creation
    def create(
        self,
        *,
        config_yaml: str,
        run_kind: str,
        lattice_arrays: Mapping[str, np.ndarray],
        lattice_attrs: Mapping[str, Any],
        trace_shapes: Mapping[str, tuple[tuple[int, ...], str]],
        n_sites: int,
        model_source: str,
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the file (overwriting), with metadata, lattice and empty traces.

        Parameters
        ----------
        trace_shapes
            ``name -> (per-frame shape, dtype)`` of every trace dataset.
        """
        tmp = self.path.with_name(self.path.name + ".part")
        with h5py.File(tmp, "w") as f:
            meta = f.create_group("metadata")
            meta.attrs["segsim_version"] = __version__
            meta.attrs["schema_version"] = SCHEMA_VERSION
            meta.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            meta.attrs["units"] = json.dumps(UNITS)
            meta.attrs["run_kind"] = run_kind
            meta.attrs["model_source"] = model_source
            for k, v in (extra_metadata or {}).items():
                meta.attrs[k] = v
            meta.create_dataset("config", data=config_yaml)
            lat = f.create_group("lattice")
            for k, v in lattice_arrays.items():
                lat.create_dataset(k, data=v, compression="gzip")
            for k, v in lattice_attrs.items():
                lat.attrs[k] = v
            trace = f.create_group("trace")
            for name, (shape, dtype) in trace_shapes.items():
                trace.create_dataset(
                    name,
                    shape=(0, *shape),
                    maxshape=(None, *shape),
                    dtype=dtype,
                    chunks=(max(1, min(1024, 65536 // max(1, int(np.prod(shape))))), *shape),
                )
            snaps = f.create_group("snapshots")
            snaps.create_dataset(
                "step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,)
            )
            snaps.create_dataset(
                "occupations",
                shape=(0, n_sites),
                maxshape=(None, n_sites),
                dtype=np.uint8,
                chunks=(1, n_sites),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            f.create_group("checkpoint")
        tmp.replace(self.path)

    # ------------------------------------------------------------------ appends
    def append(
        self,
        frame: Mapping[str, Any],
        *,
        snapshot: tuple[int, np.ndarray] | None = None,
        checkpoint: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    ) -> None:
        """Append one frame (all trace names), optionally a snapshot and a checkpoint.

        Parameters
        ----------
        frame
            ``name -> value`` for every trace dataset.
        snapshot
            ``(step, occupations)`` or ``(step, occupations, phase)`` to append to
            ``/snapshots`` (the phase as ``/snapshots/phase``, 1 = RP, 0 = perovskite).
        checkpoint
            ``(arrays, attrs)`` replacing ``/checkpoint``; ``attrs`` must contain ``step``.
        """
        with _open_writable(self.path) as f:
            trace = f["trace"]
            if set(frame) != set(trace):
                raise ResultFileError(
                    f"{self.path}: frame keys {sorted(frame)} != trace datasets {sorted(trace)}"
                )
            for name, value in frame.items():
                ds = trace[name]
                n = ds.shape[0]
                ds.resize(n + 1, axis=0)
                ds[n] = value
            if snapshot is not None:
                step, occ = snapshot[:2]
                s, o = f["snapshots/step"], f["snapshots/occupations"]
                n = s.shape[0]
                s.resize(n + 1, axis=0)
                o.resize(n + 1, axis=0)
                s[n] = step
                o[n] = occ
                if len(snapshot) > 2:  # RP phase: stored as 1 = RP, 0 = perovskite
                    if "phase" not in f["snapshots"]:
                        f["snapshots"].create_dataset(
                            "phase", shape=(0, o.shape[1]), maxshape=(None, o.shape[1]),
                            dtype="u1", chunks=(1, o.shape[1]), compression="gzip",
                        )  # fmt: skip
                    ph = f["snapshots/phase"]
                    ph.resize(n + 1, axis=0)
                    ph[n] = np.asarray(snapshot[2]) == 1
                h5md.append_snapshot(f, frame)
            if checkpoint is not None:
                _write_checkpoint(f, *checkpoint)

    def checkpoint(self, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        """Replace ``/checkpoint`` with the given state."""
        with _open_writable(self.path) as f:
            _write_checkpoint(f, arrays, attrs)

    def truncate_to_step(self, step: int) -> None:
        """Drop trace frames and snapshots written after the checkpoint at ``step`` (resume).

        The checkpoint records how many trace and snapshot rows existed when it was written
        (``n_trace_rows``, ``n_snapshot_rows``), which is exact even when the step does not
        advance between frames (a KMC run in which nothing happens); files without these
        attributes are cut by step.
        """
        with _open_writable(self.path) as f:
            ck = f["checkpoint"].attrs if "checkpoint" in f else {}
            if "n_trace_rows" in ck and int(ck["step"]) == int(step):
                keep, keep_s = int(ck["n_trace_rows"]), int(ck["n_snapshot_rows"])
            else:
                keep = int(np.searchsorted(f["trace/step"][:], step, side="right"))
                keep_s = int(np.searchsorted(f["snapshots/step"][:], step, side="right"))
            for ds in f["trace"].values():
                ds.resize(keep, axis=0)
            f["snapshots/step"].resize(keep_s, axis=0)
            f["snapshots/occupations"].resize(keep_s, axis=0)
            if "phase" in f["snapshots"]:
                f["snapshots/phase"].resize(keep_s, axis=0)


def _write_checkpoint(f: h5py.File, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    if "step" not in attrs:
        raise ValueError("checkpoint attrs must contain 'step'")
    if "checkpoint" in f:
        del f["checkpoint"]
    grp = f.create_group("checkpoint")
    for k, v in arrays.items():
        grp.create_dataset(k, data=v, compression="gzip" if np.size(v) > 1024 else None)
    for k, v in attrs.items():
        grp.attrs[k] = v
    # Rows written so far: what a resume from this checkpoint keeps (truncate_to_step).
    grp.attrs["n_trace_rows"] = f["trace/step"].shape[0] if "trace/step" in f else 0
    grp.attrs["n_snapshot_rows"] = f["snapshots/step"].shape[0] if "snapshots/step" in f else 0


# --------------------------------------------------------------------------- reading
def _open(path: str | Path) -> h5py.File:
    p = Path(path)
    if not p.is_file():
        raise ResultFileError(f"{p}: no such result file")
    try:
        # No file lock: a reader (``segsim info`` on a running job) must never block the
        # writer, which opens the file only between chunks.
        f = h5py.File(p, "r", locking=False)
    except OSError as exc:
        raise ResultFileError(f"{p}: not a readable HDF5 file ({exc})") from None
    if "metadata" not in f or "schema_version" not in f["metadata"].attrs:
        f.close()
        raise ResultFileError(f"{p}: not a segsim result file (no /metadata)")
    version = int(f["metadata"].attrs["schema_version"])
    if version != SCHEMA_VERSION:
        f.close()
        raise ResultFileError(
            f"{p}: schema_version {version} is not supported (this segsim reads {SCHEMA_VERSION})"
        )
    return f


def read_config_yaml(path: str | Path) -> str:
    """Return the resolved configuration stored in a result file."""
    with _open(path) as f:
        return f["metadata/config"].asstr()[()]


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return ``(arrays, attrs)`` of the checkpoint, or None if the file has none yet."""
    with _open(path) as f:
        grp = f["checkpoint"]
        if "step" not in grp.attrs:
            return None
        arrays = {k: grp[k][()] for k in grp}
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in grp.attrs.items()}
        return arrays, attrs


def read_trace(path: str | Path) -> dict[str, np.ndarray]:
    """Return every ``/trace`` dataset as an array."""
    with _open(path) as f:
        return {k: v[()] for k, v in f["trace"].items()}


def read_snapshots(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(steps, occupations)`` of the stored snapshots."""
    with _open(path) as f:
        return f["snapshots/step"][()], f["snapshots/occupations"][()]


def read_result(path: str | Path) -> dict[str, Any]:
    """Return everything a picture needs from a result file, in one read.

    Returns
    -------
    dict
        ``metadata`` (attrs of ``/metadata``), ``lattice_arrays`` and ``lattice_attrs``,
        ``trace`` (every ``/trace`` dataset), ``snapshot_step``, ``occupations``,
        ``phase`` (``/snapshots/phase``, 1 = RP; None if the file has none) and
        ``snapshot_time_s`` (the H5MD time of each snapshot in s; None if not stored),
        ``config_yaml`` (the resolved input).
    """
    with _open(path) as f:
        snaps = f["snapshots"]
        return {
            "metadata": {k: _plain(v) for k, v in f["metadata"].attrs.items()},
            "lattice_arrays": {k: v[()] for k, v in f["lattice"].items()},
            "lattice_attrs": {k: _plain(v) for k, v in f["lattice"].attrs.items()},
            "trace": {k: v[()] for k, v in f["trace"].items()},
            "snapshot_step": snaps["step"][()],
            "occupations": snaps["occupations"][()],
            "phase": snaps["phase"][()] if "phase" in snaps else None,
            "snapshot_time_s": h5md.read_snapshot_times(f),
            "config_yaml": f["metadata/config"].asstr()[()],
        }


def read_lattice(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return ``(arrays, attrs)`` of ``/lattice``."""
    with _open(path) as f:
        g = f["lattice"]
        return {k: g[k][()] for k in g}, dict(g.attrs)


def summarize(path: str | Path) -> dict[str, Any]:
    """Return a short summary of a result file (used by ``segsim info``)."""
    with _open(path) as f:
        meta = f["metadata"]
        out: dict[str, Any] = {
            "file": str(path),
            "segsim_version": str(meta.attrs["segsim_version"]),
            "schema_version": int(meta.attrs["schema_version"]),
            "created": str(meta.attrs.get("created", "")),
            "run_kind": str(meta.attrs.get("run_kind", "")),
            "model_source": str(meta.attrs.get("model_source", "")),
            "lattice": {k: _plain(v) for k, v in f["lattice"].attrs.items()},
            "n_frames": int(f["trace/step"].shape[0]) if "trace/step" in f else 0,
            "n_snapshots": int(f["snapshots/step"].shape[0]),
            "config": f["metadata/config"].asstr()[()],
        }
        if out["n_frames"]:
            out["first"] = {k: _plain(v[0]) for k, v in f["trace"].items()}
            out["last"] = {k: _plain(v[-1]) for k, v in f["trace"].items()}
        ck = f["checkpoint"].attrs
        out["checkpoint_step"] = int(ck["step"]) if "step" in ck else None
        out["complete"] = bool(ck.get("complete", False))
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v
