"""Plots of result files (``segsim plot``): matplotlib with the Agg canvas, PNG output.

What (:data:`PLOTS`), for one or several files overlaid (e.g. the six ligand treatments,
labelled by ligand, or by file stem for MC files and repeated ligands):

* ``xt``: Cd fraction x = N_Cd / (N_Cd + N_Pb) versus time;
* ``pl``: PL peak wavelength (nm) versus time;
* ``depth``: Cd fraction by depth below the surface (layer 0 = surface shell) at the chosen
  times, one panel per file;
* ``slice``: mid-plane (z) map of the species and of the RP phase at the chosen times, one
  row per file and time;
* ``histogram``: ensemble histogram of x over the files at each chosen time.

Time axes (:mod:`segsim.viz.result`): KMC files are plotted against time in days (``--times``
in days), canonical-MC files against the MC step (``--times`` in steps); the two cannot be
overlaid.  KMC series come from ``/trace`` (every frame: ``x_cd``, ``pl_peak_nm``,
``cd_fraction_by_depth``); MC traces have no composition or PL, so x and the PL peak are
computed from the snapshots with :func:`segsim.optics.observables` (the same code the KMC
driver uses).  ``--times`` picks the nearest frame (depth, histogram) or snapshot (slice);
without it: first and last (depth, slice) or last (histogram).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsim import optics, species
from segsim.io.hdf5 import ResultFileError
from segsim.viz import PLOT_KINDS, atomic_output
from segsim.viz.result import Result, load_result

#: Resolution of written PNGs, dots per inch.
DPI: int = 120

#: Colours of the species codes (Pb, Cd, V, O) in slice maps.
SPECIES_COLORS: tuple[str, ...] = ("#8c8c8c", "#1f77b4", "#000000", "#f4f1e8")


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    size: tuple[float, float] = (6.0, 4.0),
    width_ratios: Sequence[float] | None = None,
) -> Any:
    """Return ``(figure, axes)`` on a non-interactive Agg canvas (no pyplot, no display).

    Parameters
    ----------
    nrows, ncols
        Grid of axes (a single axes is returned unwrapped, as ``Figure.subplots`` does).
    size
        Size of one panel in inches (the figure is ``ncols`` by ``nrows`` panels).
    width_ratios
        Relative panel widths, as in ``Figure.subplots``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, width_ratios=width_ratios)
    return fig, axes


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` through a temporary file; return the path."""
    out = Path(path)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return out


# --------------------------------------------------------------------------- series
def x_series(result: Result) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(time axis, x)``: KMC every frame, MC every snapshot."""
    if result.is_kmc:
        return result.frame_axis(), result.trace["x_cd"]
    result.require_snapshots()
    return result.snapshot_axis(), np.array([result.x_cd(i) for i in range(result.n_snapshots)])


def pl_series(result: Result) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(time axis, PL peak in nm)``: KMC every frame, MC every snapshot."""
    if result.is_kmc:
        return result.frame_axis(), result.trace["pl_peak_nm"]
    result.require_snapshots()
    coords = result.lattice.coords
    pl = [optics.observables(occ, coords)["pl_peak_nm"] for occ in result.occupations]
    return result.snapshot_axis(), np.asarray(pl)


def labels(results: Sequence[Result]) -> list[str]:
    """Legend labels: ligand (KMC) or stem; ``label (stem)`` where labels repeat."""
    base = [r.label for r in results]
    return [
        f"{b} ({r.path.stem})" if base.count(b) > 1 else b
        for b, r in zip(base, results, strict=True)
    ]


def _same_axis(results: Sequence[Result]) -> None:
    kinds = {r.is_kmc for r in results}
    if len(kinds) > 1:
        mc = next(r for r in results if not r.is_kmc)
        raise ResultFileError(
            f"{mc.path}: a canonical-MC result (axis: MC step) cannot be overlaid with KMC "
            "results (axis: time); plot them separately"
        )


# --------------------------------------------------------------------------- plots
def _plot_series(
    results: Sequence[Result],
    series: Callable[[Result], tuple[np.ndarray, np.ndarray]],
    ylabel: str,
) -> Any:
    _same_axis(results)
    fig, ax = new_figure()
    for r, label in zip(results, labels(results), strict=True):
        t, y = series(r)
        ax.plot(t, y, marker="." if len(t) < 30 else None, label=label)
    ax.set_xlabel(results[0].axis_label)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig


def plot_xt(results: Sequence[Result], times: Sequence[float] | None = None) -> Any:
    """Cd fraction versus time, one line per file."""
    return _plot_series(results, x_series, "Cd fraction x")


def plot_pl(results: Sequence[Result], times: Sequence[float] | None = None) -> Any:
    """PL peak versus time, one line per file."""
    return _plot_series(results, pl_series, "PL peak (nm)")


def _default_times(result: Result, axis: np.ndarray) -> list[float]:
    return [float(axis[0]), float(axis[-1])] if len(axis) else []


def plot_depth(results: Sequence[Result], times: Sequence[float] | None = None) -> Any:
    """Cd fraction by depth (layer 0 = surface) at the chosen times, one panel per file."""
    fig, axes = new_figure(1, len(results), size=(4.5, 3.5))
    axes = np.asarray(axes).ravel()
    for ax, r, label in zip(axes, results, labels(results), strict=True):
        profiles = r.trace["cd_fraction_by_depth"]
        axis = r.frame_axis()
        for t in times or _default_times(r, axis):
            k = r.nearest_frame(t)
            ax.plot(
                np.arange(profiles.shape[1]),
                profiles[k],
                marker="o",
                ms=3,
                label=r.time_text(axis[k]),
            )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("depth layer (0 = surface)")
        ax.set_ylabel("Cd fraction")
        ax.legend(fontsize=7)
    return fig


def mid_plane(result: Result, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the species and RP maps of the mid-plane (constant z) of snapshot ``i``.

    Both are 2-D arrays indexed ``[x, y]`` over the NC plus one outside layer.
    """
    lat = result.lattice
    shape = lat.shape
    lo, hi = max(lat.pad - 1, 0), min(lat.pad + lat.n_edge + 1, shape[0])
    z = lat.pad + lat.n_edge // 2
    occ = result.occupations[i].reshape(shape)[lo:hi, lo:hi, z]
    rp = result.phase[i].reshape(shape)[lo:hi, lo:hi, z] != 0
    return occ, rp & species.in_crystal(occ)


def plot_slice(results: Sequence[Result], times: Sequence[float] | None = None) -> Any:
    """Mid-plane species map and RP map at the chosen times (one row per file and time)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = []
    for r, label in zip(results, labels(results), strict=True):
        r.require_snapshots()
        axis = r.snapshot_axis()
        for t in times or _default_times(r, axis):
            rows.append((r, label, r.nearest_snapshot(t)))
    fig, axes = new_figure(len(rows), 2, size=(3.6, 3.4))
    axes = np.atleast_2d(axes)
    cmap = ListedColormap(SPECIES_COLORS)
    rp_cmap = ListedColormap(["#f4f1e8", "#d9d9d9", "#d62728"])
    for (r, label, i), (ax_s, ax_rp) in zip(rows, axes, strict=True):
        occ, rp = mid_plane(r, i)
        ax_s.imshow(occ.T, origin="lower", cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest")
        ax_s.set_title(f"{label}: species, {r.snapshot_time_text(i)}", fontsize=8)
        rp_map = np.where(rp, 2, np.where(species.in_crystal(occ), 1, 0))
        ax_rp.imshow(
            rp_map.T, origin="lower", cmap=rp_cmap, vmin=-0.5, vmax=2.5, interpolation="nearest"
        )
        ax_rp.set_title(f"RP phase ({int(rp.sum())} sites in this plane)", fontsize=8)
        for ax in (ax_s, ax_rp):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("x (sites)")
            ax.set_ylabel("y (sites)")
    handles = [Patch(color=c, label=n) for c, n in zip(SPECIES_COLORS, species.NAMES, strict=True)]
    handles.append(Patch(color="#d62728", label="RP"))
    fig.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8)
    return fig


def plot_histogram(results: Sequence[Result], times: Sequence[float] | None = None) -> Any:
    """Histogram of x over the files at each chosen time (default: each file's last frame)."""
    _same_axis(results)
    fig, ax = new_figure()
    chosen = [None] if not times else list(times)
    series = [x_series(r) for r in results]
    all_x = []
    for t in chosen:
        xs = []
        for axis, x in series:
            k = len(axis) - 1 if t is None else int(np.argmin(np.abs(axis - t)))
            xs.append(float(x[k]))
        all_x.append(xs)
    edges = np.histogram_bin_edges(np.concatenate(all_x), bins=max(5, min(30, len(results))))
    for t, xs in zip(chosen, all_x, strict=True):
        name = "last frame" if t is None else results[0].time_text(t)
        ax.hist(xs, bins=edges, alpha=0.6, label=f"{name}: mean {np.mean(xs):.4f}, n = {len(xs)}")
    ax.set_xlabel("Cd fraction x")
    ax.set_ylabel("number of nanocrystals")
    ax.legend(fontsize=8)
    return fig


#: ``--what`` -> plot function ``(results, times) -> figure``.
PLOTS: dict[str, Callable[[Sequence[Result], Sequence[float] | None], Any]] = dict(
    zip(PLOT_KINDS, (plot_xt, plot_pl, plot_depth, plot_slice, plot_histogram), strict=True)
)


def plot_files(
    paths: Sequence[str | Path],
    what: str,
    *,
    times: Sequence[float] | None = None,
    output: str | Path | None = None,
) -> Path:
    """Read result files, draw ``what`` (a key of :data:`PLOTS`) and write the PNG.

    Parameters
    ----------
    paths
        Result files.
    what
        Kind of plot.
    times
        Chosen times: days (KMC) or MC steps (MC).
    output
        PNG path; default ``<first file stem>_<what>.png`` in the working directory.
    """
    if what not in PLOTS:
        raise ValueError(f"unknown plot {what!r}; choose from {sorted(PLOTS)}")
    results = [load_result(p) for p in paths]
    fig = PLOTS[what](results, times)
    out = Path(output) if output is not None else Path(f"{Path(paths[0]).stem}_{what}.png")
    return save_figure(fig, out)
