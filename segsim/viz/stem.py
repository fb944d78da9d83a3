r"""HAADF-STEM-like projected images of one snapshot (``segsim stem``).

High-angle annular dark-field (HAADF) STEM images are "Z-contrast" images: the intensity of
an atomic column viewed end-on grows roughly as :math:`\sum Z^{n}` over the atoms in it, with
``n`` between 1.6 and 2 (Pennycook and Jesson, Phys. Rev. Lett. 64, 938 (1990); Hartel,
Rose and Dinges, Ultramicroscopy 63, 93 (1996)).  The image here is that incoherent
Z-contrast model and nothing more (no channelling, no dynamical scattering, no noise):

1. atoms of the snapshot's atomistic view (:meth:`segsim.viz.result.Result.atoms`: Vegard
   ``a(x)`` of the snapshot, RP faults of :mod:`segsim.viz.atoms`) are projected along the
   beam, ``--axis`` 100, 010 or 001 (the beam along x, y or z; the image shows the two other
   axes in increasing order, the second one upwards);
2. each atom adds :math:`Z^{1.7}` (:data:`Z_EXPONENT`) to the pixel it falls in, pixel size
   :data:`PIXEL_ANGSTROM` = 0.2 Angstrom;
3. the sum is blurred with a Gaussian probe of FWHM :data:`PROBE_FWHM_ANGSTROM` = 1.0 Angstrom
   (an aberration-corrected probe).

Cd (Z = 48) columns are visibly darker than Pb (Z = 82) columns (48^1.7 / 82^1.7 = 0.40), so
Cd-rich regions show as dimmer B columns; RP faults show as the half-cell offset of the
columns across the fault and the wider rock-salt gap when the beam lies in the fault plane.

Regions and column spacing
--------------------------
A *B column* is the line of B sites along the beam through one site of the projected grid.
Its Cd fraction ``x_col`` is ``N_Cd / (N_Cd + N_Pb)`` over the column.  Regions: ``rp``
(columns with at least one RP site), ``cd_rich`` (other columns with ``x_col >=``
:data:`CD_RICH_X`, the as-synthesised composition 0.25), ``rest`` (other columns with
cations).  For each region the mean column-to-column distance is the mean over its columns
of the Vegard lattice constant :math:`a(x_\mathrm{col})` (:func:`segsim.optics.vegard_a_angstrom`
with ``a0`` the run's lattice constant): what a strain analysis of the image would measure if
every column relaxed to its own composition.  (The image itself uses the snapshot's mean
``a``; the lattice model has no local strain.)  The rows are printed and written to a CSV
next to the PNG.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segsim import optics, species
from segsim.viz import BEAM_AXES, atomic_output
from segsim.viz.result import Result, load_result

#: Exponent of the HAADF column intensity ``sum Z^n``.
Z_EXPONENT: float = 1.7

#: Image pixel size, Angstrom.
PIXEL_ANGSTROM: float = 0.2

#: Full width at half maximum of the Gaussian probe, Angstrom.
PROBE_FWHM_ANGSTROM: float = 1.0

#: Empty margin around the NC in the image, Angstrom.
MARGIN_ANGSTROM: float = 6.0

#: Cd fraction of a column from which it counts as Cd-rich (the as-synthesised x).
CD_RICH_X: float = 0.25

#: Region names in CSV order, and their codes in :func:`column_regions` maps.
REGIONS: tuple[str, ...] = ("rp", "cd_rich", "rest")


def image_axes(beam_axis: int) -> tuple[int, int]:
    """Return the (horizontal, vertical) grid axes of an image along ``beam_axis``."""
    u, v = (k for k in range(3) if k != beam_axis)
    return u, v


def _gaussian_matrix(n: int, sigma_px: float) -> np.ndarray:
    idx = np.arange(n, dtype=np.float64)
    g = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma_px) ** 2)
    return g / (sigma_px * math.sqrt(2.0 * math.pi))


def haadf_image(
    positions: np.ndarray,
    numbers: np.ndarray,
    beam_axis: int,
    *,
    pixel_angstrom: float = PIXEL_ANGSTROM,
    probe_fwhm_angstrom: float = PROBE_FWHM_ANGSTROM,
    margin_angstrom: float = MARGIN_ANGSTROM,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Return a projected Z-contrast image and its extent (module docstring, steps 2-3).

    Parameters
    ----------
    positions
        Atom positions, Angstrom, ``(n_atoms, 3)``.
    numbers
        Atomic numbers.
    beam_axis
        Grid axis along the beam (0, 1, 2).
    pixel_angstrom
        Pixel size, Angstrom.
    probe_fwhm_angstrom
        Probe FWHM, Angstrom.
    margin_angstrom
        Margin around the atoms, Angstrom.

    Returns
    -------
    image
        Intensity ``[row = vertical, column = horizontal]`` (row 0 at the bottom).
    extent
        ``(left, right, bottom, top)`` in Angstrom, for ``imshow(origin="lower")``.
    """
    u, v = image_axes(beam_axis)
    pu, pv = positions[:, u], positions[:, v]
    u0, v0 = pu.min() - margin_angstrom, pv.min() - margin_angstrom
    nu = math.ceil((pu.max() + margin_angstrom - u0) / pixel_angstrom)
    nv = math.ceil((pv.max() + margin_angstrom - v0) / pixel_angstrom)
    iu = np.clip(((pu - u0) / pixel_angstrom).astype(np.int64), 0, nu - 1)
    iv = np.clip(((pv - v0) / pixel_angstrom).astype(np.int64), 0, nv - 1)
    weight = np.asarray(numbers, dtype=np.float64) ** Z_EXPONENT
    raw = np.bincount(iv * nu + iu, weights=weight, minlength=nu * nv).reshape(nv, nu)
    sigma_px = probe_fwhm_angstrom / (2.0 * math.sqrt(2.0 * math.log(2.0))) / pixel_angstrom
    image = _gaussian_matrix(nv, sigma_px) @ raw @ _gaussian_matrix(nu, sigma_px).T
    extent = (u0, u0 + nu * pixel_angstrom, v0, v0 + nv * pixel_angstrom)
    return image, extent


@dataclass(frozen=True, eq=False)
class ColumnMap:
    """The B columns of a projection.

    Attributes
    ----------
    region
        Region code per column (index into :data:`REGIONS`; -1 for columns without cations),
        ``[vertical, horizontal]`` over the grid.
    x_col
        Cd fraction per column (NaN without cations).
    a_angstrom
        Grid spacing used to place the columns (column ``(j, k)`` at ``(k a, j a)``), Angstrom.
    """

    region: np.ndarray
    x_col: np.ndarray
    a_angstrom: float


def column_regions(
    result: Result, i: int, beam_axis: int, *, cd_rich_x: float = CD_RICH_X
) -> ColumnMap:
    """Classify the B columns of snapshot ``i`` along ``beam_axis`` (module docstring)."""
    lat = result.lattice
    occ = result.occupations[i].reshape(lat.shape)
    rp = (result.phase[i].reshape(lat.shape) != 0) & species.in_crystal(occ)
    n_cd = (occ == species.CD).sum(axis=beam_axis)
    n_cat = species.is_cation(occ).sum(axis=beam_axis)
    any_rp = rp.any(axis=beam_axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_col = np.where(n_cat > 0, n_cd / np.maximum(n_cat, 1), np.nan)
    region = np.full(x_col.shape, -1, dtype=np.int64)
    has = n_cat > 0
    region[has] = REGIONS.index("rest")
    region[has & (x_col >= cd_rich_x)] = REGIONS.index("cd_rich")
    region[any_rp] = REGIONS.index("rp")
    # The sums are indexed [horizontal, vertical] (remaining axes in increasing order);
    # the maps are [vertical, horizontal], like the image.
    return ColumnMap(region=region.T, x_col=x_col.T, a_angstrom=result.a_angstrom(i))


def region_table(columns: ColumnMap, a0_angstrom: float) -> list[dict[str, float | int | str]]:
    """Return one row per region: columns, mean ``x_col`` and mean Vegard column distance.

    Parameters
    ----------
    columns
        The column map.
    a0_angstrom
        Vegard ``a0`` (the run's lattice constant), Angstrom.
    """
    rows: list[dict[str, float | int | str]] = []
    for code, name in enumerate(REGIONS):
        sel = (columns.region == code) & np.isfinite(columns.x_col)
        xs = columns.x_col[sel]
        if xs.size:
            a = np.asarray(optics.vegard_a_angstrom(xs, a0_angstrom=a0_angstrom))
            x_mean, d_mean = float(xs.mean()), float(a.mean())
        else:
            x_mean = d_mean = math.nan
        rows.append(
            {
                "region": name,
                "n_columns": int(xs.size),
                "x_cd": x_mean,
                "column_distance_angstrom": d_mean,
            }
        )
    return rows


def _distance_text(row: dict[str, float | int | str]) -> str:
    d = float(row["column_distance_angstrom"])
    return "" if math.isnan(d) else f", mean column distance {d:.3f} Å"


def write_stem(
    path: str | Path,
    frame: int,
    axis: str,
    output: str | Path | None = None,
    *,
    cd_rich_x: float = CD_RICH_X,
) -> tuple[Path, Path, list[dict[str, float | int | str]]]:
    """Draw the HAADF image and the column-region map; write the PNG and the CSV.

    Parameters
    ----------
    path
        The result file.
    frame
        Snapshot index (negative counts from the end).
    axis
        Beam direction, a key of :data:`BEAM_AXES`.
    output
        PNG path; default ``<stem>_stem_<axis>.png`` in the working directory.  The CSV
        gets the same path with suffix ``.csv``.
    cd_rich_x
        Column Cd fraction from which a column counts as Cd-rich.

    Returns
    -------
    tuple
        PNG path, CSV path and the region rows.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from segsim.viz.plot import new_figure, save_figure

    if axis not in BEAM_AXES:
        raise ValueError(f"unknown axis {axis!r}; choose from {sorted(BEAM_AXES)}")
    result = load_result(path)
    i = result.snapshot_index(frame)
    beam = BEAM_AXES[axis]
    atoms = result.atoms(i)
    image, extent = haadf_image(atoms.positions, atoms.numbers, beam)
    columns = column_regions(result, i, beam, cd_rich_x=cd_rich_x)
    rows = region_table(columns, result.lattice.a_angstrom)

    fig, (ax_img, ax_map) = new_figure(1, 2, size=(4.2, 5.0), width_ratios=(1.6, 1.0))
    ax_img.imshow(image, origin="lower", extent=extent, cmap="gray", interpolation="nearest")
    ax_img.set_title(
        f"HAADF-STEM model [{axis}], {result.label}\nsnapshot {i} ({result.snapshot_time_text(i)}), "
        f"pixel {PIXEL_ANGSTROM} Å, probe {PROBE_FWHM_ANGSTROM} Å",
        fontsize=8,
    )
    bar = 20.0  # scale bar, Angstrom
    x0, y0 = extent[0] + 3.0, extent[2] + 3.0
    ax_img.plot([x0, x0 + bar], [y0, y0], color="w", lw=3)
    ax_img.text(x0 + bar / 2, y0 + 1.5, "2 nm", color="w", ha="center", fontsize=8)
    ax_img.set_axis_off()

    colors = ["#d62728", "#1f77b4", "#bdbdbd"]
    a = columns.a_angstrom
    shown = np.where(columns.region >= 0, columns.region, np.nan)
    nv, nu = shown.shape
    ax_map.imshow(
        shown,
        origin="lower",
        extent=(-0.5 * a, (nu - 0.5) * a, -0.5 * a, (nv - 0.5) * a),
        cmap=ListedColormap(colors),
        vmin=-0.5,
        vmax=2.5,
        interpolation="nearest",
    )
    ax_map.set_xlim(extent[0], extent[1])
    ax_map.set_ylim(extent[2], extent[3])
    ax_map.set_aspect("equal")
    ax_map.set_title(f"B columns: RP, Cd-rich (x_col ≥ {cd_rich_x:g}), rest", fontsize=8)
    handles = [
        Patch(color=c, label=f"{r['region']}: {r['n_columns']} columns{_distance_text(r)}")
        for c, r in zip(colors, rows, strict=True)
    ]
    ax_map.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.03))
    ax_map.set_axis_off()
    out = Path(output) if output is not None else Path(f"{result.path.stem}_stem_{axis}.png")
    csv_path = out.with_suffix(".csv")
    save_figure(fig, out)
    with atomic_output(csv_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out, csv_path, rows
