"""Composition -> optical and structural observables of a nanocrystal (MODEL.md section 4).

What a user compares with experiment, computed from the B-site occupations of one frame:

* ``x``: Cd fraction of the whole crystal, ``N_Cd / (N_Cd + N_Pb)``.
* ``x_eff``: Cd fraction weighted by the exciton ground-state envelope ``|psi|^2``
  (:func:`exciton_weights`), so the core counts more than the corners; the PL reports on
  ``x_eff``, not on ``x``.
* ``pl_peak_nm``: PL peak wavelength of ``x_eff`` from the measured composition/PL table
  (:func:`pl_peak_nm`, interpolated in photon energy).
* ``a_angstrom``: Vegard lattice constant ``a(x) = a0 + slope x`` (:func:`vegard_a_angstrom`).
* ``edge_nm``: NC edge ``a(x) N_occ^(1/3)`` (:func:`nc_edge_nm`).
* ``tolerance_factor`` and ``is_cubic``: Goldschmidt tolerance factor of ``x_eff`` and the
  cubic/orthorhombic indicator with the threshold of ``potentials/optics.yaml``
  (:func:`tolerance_factor`, :func:`phase_indicator`).

:func:`observables` returns all of them (the per-frame record of the KMC driver, keys
:data:`OBSERVABLE_KEYS`).  The experimental data (table, Shannon radii, a0, phase threshold)
live in ``potentials/optics.yaml`` with their sources; this module holds no numbers of its
own except the physical constant ``hc``.  Units: lengths in Angstrom unless a name says
``_nm``, photon energies in eV.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsim import species
from segsim.params.files import POTENTIALS_DIR, ConfigError, read_yaml
from segsim.units import ANGSTROM_PER_NM

#: h c in eV nm (CODATA 2018): photon energy in eV = HC_EV_NM / wavelength in nm.
HC_EV_NM: float = 1239.84198


#: The shipped composition/PL table, radii, a0 and phase threshold.
DEFAULT_OPTICS_PATH: Path = POTENTIALS_DIR / "optics.yaml"

#: Parameters derived from the reference calculations (Vegard slope), written by ``segsim train``.
DEFAULT_DERIVED_PATH: Path = POTENTIALS_DIR / "derived_parameters.yaml"

#: Keys of the dictionary returned by :func:`observables`, in a fixed order.
OBSERVABLE_KEYS: tuple[str, ...] = (
    "x",
    "x_eff",
    "pl_peak_nm",
    "edge_nm",
    "a_angstrom",
    "tolerance_factor",
    "is_cubic",
)

#: Ions whose Shannon radius ``potentials/optics.yaml`` must give.
RADII_KEYS: tuple[str, ...] = ("Cs", "Pb", "Cd", "Br")

_TOP_KEYS = ("source", "composition_vs_pl", "shannon_radii_angstrom", "lattice", "phase")
_ROW_KEYS = ("x", "pl_peak_nm", "pl_fwhm_nm")


@dataclass(frozen=True, eq=False)
class PLTable:
    """Measured PL peak and width of fresh NCs versus Cd fraction.

    Attributes
    ----------
    x
        Cd fraction on B sites of each row, strictly increasing (read-only array).
    peak_nm
        PL peak wavelength in nm (read-only array).
    fwhm_nm
        PL full width at half maximum in nm (read-only array).
    source
        Citation of the data.

    Notes
    -----
    Compared by identity (``eq=False``): numpy arrays have no single truth value.
    """

    x: np.ndarray
    peak_nm: np.ndarray
    fwhm_nm: np.ndarray
    source: str

    @property
    def peak_ev(self) -> np.ndarray:
        """PL peak photon energy in eV of each row."""
        return HC_EV_NM / self.peak_nm


@dataclass(frozen=True, eq=False)
class OpticsData:
    """Everything ``potentials/optics.yaml`` holds.

    Attributes
    ----------
    table
        The composition/PL table.
    radii_angstrom
        Shannon radii in Angstrom keyed by ``Cs``, ``Pb``, ``Cd``, ``Br``.
    a0_angstrom
        Experimental pseudo-cubic lattice constant of CsPbBr3 (Vegard ``a0``), Angstrom.
    cubic_min_tolerance_factor
        Phase threshold: ``t >= threshold`` is reported as cubic.
    source
        The file that was read.
    """

    table: PLTable
    radii_angstrom: Mapping[str, float]
    a0_angstrom: float
    cubic_min_tolerance_factor: float
    source: str


# --------------------------------------------------------------------------------------------
# Reading the data files


def _number(value: Any, src: str, key: str, *, positive: bool = False) -> float:
    """Return ``value`` as a finite float or raise a one-line ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(src, key, f"must be a finite number (got {value!r})")
    if positive and not value > 0:
        raise ConfigError(src, key, f"must be > 0 (got {value!r})")
    return float(value)


def _check_keys(data: Mapping, allowed: tuple[str, ...], src: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(src, f"{prefix}{key}", f"unknown key; allowed keys: {list(allowed)}")


def _mapping(value: Any, src: str, key: str, allowed: tuple[str, ...]) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(src, key, f"must be a mapping with keys {list(allowed)}")
    return value


def _parse_table(rows: Any, src: str, source: str) -> PLTable:
    key = "composition_vs_pl"
    if not isinstance(rows, list) or len(rows) < 2:
        raise ConfigError(
            src, key, f"must be a list of at least 2 rows with keys {list(_ROW_KEYS)}"
        )
    cols: dict[str, list[float]] = {k: [] for k in _ROW_KEYS}
    for i, row in enumerate(rows):
        rkey = f"{key}[{i}]"
        row = _mapping(row, src, rkey, _ROW_KEYS)
        _check_keys(row, _ROW_KEYS, src, f"{rkey}.")
        for k in _ROW_KEYS:
            if k not in row:
                raise ConfigError(src, f"{rkey}.{k}", "missing")
            cols[k].append(_number(row[k], src, f"{rkey}.{k}", positive=k != "x"))
        if not 0.0 <= cols["x"][-1] <= 1.0:
            raise ConfigError(src, f"{rkey}.x", f"must be in [0, 1] (got {cols['x'][-1]})")
        if i > 0 and not cols["x"][i] > cols["x"][i - 1]:
            raise ConfigError(
                src, f"{rkey}.x", f"x must increase strictly from row to row (got {cols['x']})"
            )
    arrays = {}
    for k, values in cols.items():
        arr = np.asarray(values, dtype=np.float64)
        arr.setflags(write=False)
        arrays[k] = arr
    return PLTable(
        x=arrays["x"], peak_nm=arrays["pl_peak_nm"], fwhm_nm=arrays["pl_fwhm_nm"], source=source
    )


def load_optics(path: str | Path | None = None) -> OpticsData:
    """Read and validate ``potentials/optics.yaml`` (or ``path``).

    Parameters
    ----------
    path
        Alternative file with the same layout; ``None`` reads the shipped file (cached).

    Raises
    ------
    segsim.config.ConfigError
        One line naming the file and the dotted key if the file is unreadable or invalid
        (unknown key, fewer than 2 table rows, x not strictly increasing, non-positive
        wavelength, width or radius, ...).
    """
    if path is None:
        return _default_optics()
    return _load_optics(Path(path))


@functools.cache
def _default_optics() -> OpticsData:
    return _load_optics(DEFAULT_OPTICS_PATH)


def _load_optics(p: Path) -> OpticsData:
    src = str(p)
    data = _mapping(read_yaml(p), src, "", _TOP_KEYS)
    _check_keys(data, _TOP_KEYS, src, "")
    for key in _TOP_KEYS:
        if key not in data:
            raise ConfigError(src, key, "missing")
    source = data["source"]
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(src, "source", "must be a non-empty citation string")
    table = _parse_table(data["composition_vs_pl"], src, " ".join(source.split()))

    radii_in = _mapping(data["shannon_radii_angstrom"], src, "shannon_radii_angstrom", RADII_KEYS)
    _check_keys(radii_in, RADII_KEYS, src, "shannon_radii_angstrom.")
    radii: dict[str, float] = {}
    for ion in RADII_KEYS:
        if ion not in radii_in:
            raise ConfigError(src, f"shannon_radii_angstrom.{ion}", "missing")
        radii[ion] = _number(radii_in[ion], src, f"shannon_radii_angstrom.{ion}", positive=True)

    lattice = _mapping(data["lattice"], src, "lattice", ("a0_angstrom",))
    _check_keys(lattice, ("a0_angstrom",), src, "lattice.")
    a0 = _number(lattice.get("a0_angstrom"), src, "lattice.a0_angstrom", positive=True)

    phase = _mapping(data["phase"], src, "phase", ("cubic_min_tolerance_factor",))
    _check_keys(phase, ("cubic_min_tolerance_factor",), src, "phase.")
    threshold = _number(
        phase.get("cubic_min_tolerance_factor"),
        src,
        "phase.cubic_min_tolerance_factor",
        positive=True,
    )
    return OpticsData(
        table=table,
        radii_angstrom=dict(radii),
        a0_angstrom=a0,
        cubic_min_tolerance_factor=threshold,
        source=src,
    )


def load_pl_table(path: str | Path | None = None) -> PLTable:
    """Return the composition/PL table of ``potentials/optics.yaml`` (or of ``path``).

    Parameters
    ----------
    path
        Alternative file with the layout of ``potentials/optics.yaml``; ``None`` reads the
        shipped file (resolved next to the package, cached).

    Raises
    ------
    segsim.config.ConfigError
        One line naming the file and key if the file is unreadable or invalid (fewer than 2
        rows, x not strictly increasing, non-positive wavelength, unknown key, ...).
    """
    return load_optics(path).table


def vegard_slope_angstrom(path: str | Path | None = None) -> float:
    """Return the Vegard slope ``da/dx`` in Angstrom per unit Cd fraction.

    Read from ``vegard.slope_angstrom`` of ``potentials/derived_parameters.yaml`` (or
    ``path``), the linear fit of cell-relaxed bulk reference cells written by
    ``segsim train`` (CHGNet: about -0.37 Angstrom).  Only the slope (the relative
    contraction) is taken from the reference calculations; ``a0`` is the experimental value
    (see :func:`vegard_a_angstrom`).

    If the file does not exist, or has no ``vegard.slope_angstrom`` (or it is null), falls
    back to the Shannon-radius estimate of an ideal cubic perovskite, ``a = 2 (r_B + r_X)``,
    so ``da/dx = 2 (r_Cd - r_Pb) = -0.48`` Angstrom with the radii of
    ``potentials/optics.yaml``.  This overestimates the contraction because octahedral
    tilting and the Cs site take up part of the size mismatch.

    Raises
    ------
    segsim.config.ConfigError
        If the file exists but is unreadable, or the slope is not a finite number.
    """
    if path is None:
        return _default_vegard_slope()
    return _read_vegard_slope(Path(path))


@functools.cache
def _default_vegard_slope() -> float:
    return _read_vegard_slope(DEFAULT_DERIVED_PATH)


def _read_vegard_slope(p: Path) -> float:
    if p.exists():
        data = read_yaml(p)
        vegard = data.get("vegard") if isinstance(data, Mapping) else None
        slope = vegard.get("slope_angstrom") if isinstance(vegard, Mapping) else None
        if slope is not None:
            return _number(slope, str(p), "vegard.slope_angstrom")
    return shannon_vegard_slope_angstrom()


def shannon_vegard_slope_angstrom(radii_angstrom: Mapping[str, float] | None = None) -> float:
    """Return the ideal-cubic-perovskite Vegard slope ``2 (r_Cd - r_Pb)`` in Angstrom.

    Parameters
    ----------
    radii_angstrom
        Shannon radii keyed by ion (``Pb``, ``Cd``); default those of ``potentials/optics.yaml``.
    """
    r = radii_angstrom if radii_angstrom is not None else load_optics().radii_angstrom
    return 2.0 * (float(r["Cd"]) - float(r["Pb"]))


# --------------------------------------------------------------------------------------------
# Composition -> PL


def _scalar_or_array(value: np.ndarray, like: Any) -> float | np.ndarray:
    return float(value) if np.ndim(like) == 0 else value


def pl_peak_nm(x_eff: float | np.ndarray, table: PLTable | None = None) -> float | np.ndarray:
    """Return the PL peak wavelength (nm) of NCs with effective Cd fraction ``x_eff``.

    The table is interpolated **piecewise-linearly in photon energy** ``E = hc / lambda``
    (eV) versus x, then converted back to nm.  Why:

    * energy, not wavelength: the band gap is what shifts (roughly linearly) with
      composition, and wavelength is a nonlinear function of it;
    * piecewise-linear, not a spline or PCHIP: it passes exactly through every measured
      point, is monotone between points whenever the data are (no overshoot), and with four
      points carrying +-0.02 uncertainty in x there is nothing to justify curvature.

    Outside the table the value is clamped: below the first row (x < 0 is impossible, so in
    practice never) to the first row, above the last row (x > 0.25 has no perovskite data; the
    alloy turns hexagonal) to the last row, 476 nm.  NaN gives NaN.

    Parameters
    ----------
    x_eff
        Effective Cd fraction(s) (scalar or array).
    table
        Composition/PL table; default :func:`load_pl_table`.

    Returns
    -------
    float or numpy.ndarray
        Peak wavelength(s) in nm, the shape of ``x_eff``.
    """
    t = table if table is not None else load_pl_table()
    x = np.asarray(x_eff, dtype=np.float64)
    energy_ev = np.interp(x, t.x, t.peak_ev)
    return _scalar_or_array(HC_EV_NM / energy_ev, x_eff)


# --------------------------------------------------------------------------------------------
# Exciton envelope and effective composition


def _check_sites(occupations: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    occ = np.asarray(occupations)
    c = np.asarray(coords)
    if occ.ndim != 1 or c.ndim != 2 or c.shape != (occ.shape[0], 3):
        raise ValueError(
            f"need occupations of shape (n_sites,) and coords (n_sites, 3); "
            f"got {occ.shape} and {c.shape}"
        )
    return occ, c


def exciton_weights(occupations: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Return the exciton ground-state weight ``|psi|^2`` of every site, summing to 1.

    The envelope is the ground state of a particle in the **current** bounding box of the
    crystal (all Pb, Cd and V sites; ``O`` sites are outside): with ``n_d`` sites along axis
    ``d`` starting at ``c_min,d``,

        ``|psi(c)|^2 ~ prod_d sin^2(pi (c_d - c_min,d + 1) / (n_d + 1))``,

    which is also the exact ground state of nearest-neighbour hopping on an ``n_x x n_y x
    n_z`` grid with hard walls one spacing beyond the outermost sites.  The box is recomputed
    for every frame, so the envelope follows a shrinking (receding) NC.  Simplifications:
    vacancies and missing outside sites inside the box do not deform the envelope (a
    quantum-confinement weight, not an electronic-structure calculation), and the NC must not
    wrap around the periodic boundary of the padded grid (segsim's grids never do).

    Parameters
    ----------
    occupations
        Species codes of every site (:mod:`segsim.species`), shape ``(n_sites,)``.
    coords
        Integer grid coordinates of every site, shape ``(n_sites, 3)``
        (:attr:`segsim.lattice.Lattice.coords`).

    Returns
    -------
    numpy.ndarray
        ``float64`` weights, shape ``(n_sites,)``: zero on ``O`` sites (and so outside the
        box), normalised to sum 1 over the crystal sites; all zero if there is no crystal.
    """
    occ, c = _check_sites(occupations, coords)
    inside = species.in_crystal(occ)
    w = np.zeros(occ.shape[0], dtype=np.float64)
    if not inside.any():
        return w
    ci = c[inside].astype(np.int64)
    lo = ci.min(axis=0)
    n = ci.max(axis=0) - lo + 1
    arg = np.pi * (ci - lo + 1) / (n + 1)
    wi = np.prod(np.sin(arg) ** 2, axis=1)
    w[inside] = wi / wi.sum()
    return w


def x_effective(occupations: np.ndarray, coords: np.ndarray) -> float:
    """Return the exciton-weighted Cd fraction ``sum(w [Cd]) / sum(w [Pb or Cd])``.

    ``w`` are the :func:`exciton_weights`; vacancies carry weight but no cation, so they drop
    out of numerator and denominator.  A uniform alloy gives ``x_eff ~ x``; Cd in the core
    gives ``x_eff > x`` (bluer PL), Cd at the surface ``x_eff < x``.

    Returns
    -------
    float
        ``x_eff`` in [0, 1]; NaN if the crystal has no cation.
    """
    occ, c = _check_sites(occupations, coords)
    w = exciton_weights(occ, c)
    den = float(w[species.is_cation(occ)].sum())
    if not den > 0.0:
        return math.nan
    return float(w[occ == species.CD].sum()) / den


def _cation_counts(occupations: np.ndarray) -> tuple[int, int]:
    occ = np.asarray(occupations)
    return int(np.count_nonzero(occ == species.PB)), int(np.count_nonzero(occ == species.CD))


# --------------------------------------------------------------------------------------------
# Structure


def vegard_a_angstrom(
    x: float | np.ndarray,
    a0_angstrom: float | None = None,
    slope_angstrom: float | None = None,
) -> float | np.ndarray:
    """Return the pseudo-cubic lattice constant ``a(x) = a0 + slope x`` in Angstrom.

    Parameters
    ----------
    x
        Cd fraction(s) on B sites.
    a0_angstrom
        Lattice constant of CsPbBr3.  Default: the experimental pseudo-cubic 5.87 Angstrom
        (``lattice.a0_angstrom`` of ``potentials/optics.yaml``, from seed_targets).  The a0 of
        the CHGNet reference cells (~6.02 Angstrom) is deliberately not used: CHGNet, like
        PBE, overestimates a by ~2.5 %.
    slope_angstrom
        ``da/dx``.  Default: :func:`vegard_slope_angstrom`, the slope of the relaxed CHGNet
        reference cells (the relative contraction, which a uniform overestimate of a does
        not spoil much), or the Shannon-radius estimate ``2 (r_Cd - r_Pb) = -0.48`` Angstrom
        if ``potentials/derived_parameters.yaml`` is missing.

    Returns
    -------
    float or numpy.ndarray
        ``a`` in Angstrom, the shape of ``x``.
    """
    a0 = load_optics().a0_angstrom if a0_angstrom is None else float(a0_angstrom)
    slope = vegard_slope_angstrom() if slope_angstrom is None else float(slope_angstrom)
    a = a0 + slope * np.asarray(x, dtype=np.float64)
    return _scalar_or_array(a, x)


def nc_edge_nm(occupations: np.ndarray, x: float, a0_angstrom: float | None = None) -> float:
    """Return the NC edge ``d = a(x) N_occ^(1/3)`` in nm.

    Parameters
    ----------
    occupations
        Species codes of every site.
    x
        Cd fraction used for the lattice constant (normally the whole-crystal fraction).
    a0_angstrom
        Vegard ``a0`` (Angstrom); default see :func:`vegard_a_angstrom`.

    Returns
    -------
    float
        Edge of a cube of the same number ``N_occ`` of occupied (Pb + Cd) B sites, in nm;
        0.0 if there is none.
    """
    n_pb, n_cd = _cation_counts(occupations)
    n_occ = n_pb + n_cd
    if n_occ == 0:
        return 0.0
    a = float(vegard_a_angstrom(x, a0_angstrom=a0_angstrom))
    return a * n_occ ** (1.0 / 3.0) / ANGSTROM_PER_NM


def tolerance_factor(
    x: float | np.ndarray, radii_angstrom: Mapping[str, float] | None = None
) -> float | np.ndarray:
    """Return the Goldschmidt tolerance factor of CsCd_xPb_(1-x)Br3.

    ``t = (r_Cs + r_Br) / (sqrt(2) (r_B + r_Br))`` with the composition-averaged B radius
    ``r_B = x r_Cd + (1 - x) r_Pb`` and the Shannon radii (Angstrom) of
    ``potentials/optics.yaml`` (Cs 1.88, Pb 1.19, Cd 0.95, Br 1.96): t(0) = 0.862,
    t(0.25) = 0.879.

    Parameters
    ----------
    x
        Cd fraction(s) on B sites.
    radii_angstrom
        Shannon radii keyed by ``Cs``, ``Pb``, ``Cd``, ``Br``; default from optics.yaml.
    """
    r = radii_angstrom if radii_angstrom is not None else load_optics().radii_angstrom
    xx = np.asarray(x, dtype=np.float64)
    r_b = xx * r["Cd"] + (1.0 - xx) * r["Pb"]
    t = (r["Cs"] + r["Br"]) / (math.sqrt(2.0) * (r_b + r["Br"]))
    return _scalar_or_array(t, x)


def cubic_threshold() -> float:
    """Return the tolerance factor above which :func:`phase_indicator` says cubic (0.870)."""
    return load_optics().cubic_min_tolerance_factor


def phase_indicator(x: float | np.ndarray, threshold: float | None = None) -> str | np.ndarray:
    """Return ``"cubic"`` or ``"orthorhombic"`` from the tolerance factor of ``x``.

    A **heuristic** indicator, not a structure prediction: ``t(x) >= threshold`` is called
    cubic.  The default threshold, 0.870 (``phase.cubic_min_tolerance_factor`` of
    ``potentials/optics.yaml``), is calibrated on the only two anchors published for these
    NCs: CsPbBr3 NCs (x = 0, t = 0.862) are orthorhombic, the x = 0.25 alloy NCs
    (t = 0.879) are reported cubic-like.  The phase at intermediate x is not known, so the
    threshold is the midpoint of the anchors in t (x ~ 0.12), which keeps the largest margin
    to both: neither the +-0.02 uncertainty of the measured x nor small ``x_eff``
    fluctuations of a fresh x = 0.25 NC flip it, while a NC that lost about half its
    (effective) Cd is reported orthorhombic.  The bulk rule of thumb (cubic for t > ~0.89)
    would call every composition here non-cubic, contrary to the NC data.

    Parameters
    ----------
    x
        Cd fraction(s), normally ``x_eff``.
    threshold
        Tolerance-factor threshold; default :func:`cubic_threshold`.

    Returns
    -------
    str or numpy.ndarray
        ``"cubic"`` or ``"orthorhombic"`` (an array of them for array input); ``"undefined"``
        where x is NaN (a crystal without cations).
    """
    thr = cubic_threshold() if threshold is None else float(threshold)
    t = np.asarray(tolerance_factor(x), dtype=np.float64)
    out = np.where(t >= thr, "cubic", "orthorhombic")
    out = np.where(np.isnan(t), "undefined", out)
    return str(out) if np.ndim(x) == 0 else out


# --------------------------------------------------------------------------------------------
# Per-frame record


def observables(
    occupations: np.ndarray, coords: np.ndarray, a0_angstrom: float | None = None
) -> dict[str, float]:
    """Return the optical/structural observables of one frame (keys :data:`OBSERVABLE_KEYS`).

    Parameters
    ----------
    occupations
        Species codes of every site, shape ``(n_sites,)``.
    coords
        Integer grid coordinates of every site, shape ``(n_sites, 3)``.
    a0_angstrom
        Vegard ``a0`` in Angstrom; default the experimental CsPbBr3 value (see
        :func:`vegard_a_angstrom`).

    Returns
    -------
    dict[str, float]
        ``x`` (whole-crystal Cd fraction), ``x_eff`` (exciton-weighted), ``pl_peak_nm`` (of
        ``x_eff``), ``edge_nm`` and ``a_angstrom`` (Vegard, of ``x``), ``tolerance_factor``
        (of ``x_eff``) and ``is_cubic`` (1.0 / 0.0 from :func:`phase_indicator`).  Values
        that need a cation are NaN when there is none (``edge_nm`` is then 0.0).
    """
    occ, c = _check_sites(occupations, coords)
    n_pb, n_cd = _cation_counts(occ)
    x = n_cd / (n_pb + n_cd) if n_pb + n_cd else math.nan
    x_eff = x_effective(occ, c)
    t = float(tolerance_factor(x_eff))
    phase = phase_indicator(x_eff)
    return {
        "x": float(x),
        "x_eff": x_eff,
        "pl_peak_nm": float(pl_peak_nm(x_eff)),
        "edge_nm": nc_edge_nm(occ, x, a0_angstrom=a0_angstrom),
        "a_angstrom": float(vegard_a_angstrom(x, a0_angstrom=a0_angstrom)),
        "tolerance_factor": t,
        "is_cubic": math.nan if phase == "undefined" else float(phase == "cubic"),
    }
