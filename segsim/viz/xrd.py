r"""Powder X-ray diffraction pattern of one nanocrystal (``segsim xrd``).

The Debye scattering equation gives the orientation-averaged elastic intensity of a finite
particle directly from its atoms, without a crystal lattice or a peak-shape model (finite
size, RP stacking and vacancies are all in the atom positions):

.. math::

    I(q) = P(2\theta) \Big[ \sum_i f_i(q)^2
           + 2 \sum_{i<j} f_i(q) f_j(q) \frac{\sin(q r_{ij})}{q r_{ij}} \Big],
    \qquad q = \frac{4 \pi \sin\theta}{\lambda},

in electron units squared, with :math:`P = (1 + \cos^2 2\theta) / 2` the polarisation factor
of an unpolarised laboratory source (no Lorentz factor: the Debye sum is already the powder
average per solid angle; no Debye-Waller damping: the atoms sit on their ideal sites).

Atoms: the atomistic view of the snapshot (:meth:`segsim.viz.result.Result.atoms`) at the
snapshot's Vegard lattice constant ``a(x)``, so the perovskite peaks shift with the Cd
content, and with the RP-fault geometry of :mod:`segsim.viz.atoms`, whose stacking period
``a + gap`` (9.5 Angstrom for ``n = 1`` blocks) gives a low-angle peak near 2theta = 9.3 deg
when the NC has RP domains.

Distance-histogram approximation: the pair sum runs over a histogram of the distances
:math:`r_{ij}` per pair of elements, with bin width ``w`` (:data:`BIN_WIDTH_ANGSTROM`,
0.01 Angstrom), every distance replaced by the centre of its bin.  The phase error is at most
:math:`q w / 2 = 0.017` rad at 2theta = 50 deg, below the width of any NC peak; the histogram
is counted by the compiled kernel :func:`segsim.kernels.debye._pair_histograms` (every pair
once, :math:`N^2 / 2` distances: a few seconds for a 12 nm NC of ~40,000 atoms).

Atomic form factors: the four-Gaussian fits of Cromer and Mann for the neutral atoms,
:math:`f(s) = \sum_{i=1}^{4} a_i \exp(-b_i s^2) + c`, :math:`s = \sin\theta / \lambda`
(D. T. Cromer and J. B. Mann, Acta Cryst. A24, 321-324 (1968); coefficients as tabulated in
International Tables for Crystallography Vol. C (2006), Table 6.1.1.4), in
:data:`CROMER_MANN`.  Anomalous dispersion is neglected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from segsim.viz import atomic_output
from segsim.viz.result import load_result

#: Cu K-alpha1 wavelength, Angstrom.
CU_KALPHA1_ANGSTROM: float = 1.5406

#: Default 2theta range, degrees.
TWO_THETA_RANGE_DEG: tuple[float, float] = (7.0, 50.0)

#: Default 2theta step, degrees.
TWO_THETA_STEP_DEG: float = 0.02

#: Default distance-histogram bin width, Angstrom.
BIN_WIDTH_ANGSTROM: float = 0.01

#: Cromer-Mann coefficients (a1, a2, a3, a4, b1, b2, b3, b4, c) of the neutral atoms, with
#: ``b`` in Angstrom^2 (International Tables for Crystallography Vol. C, Table 6.1.1.4).
CROMER_MANN: dict[str, tuple[float, ...]] = {
    "Br": (17.1789, 5.2358, 5.6377, 3.9851, 2.1723, 16.5796, 0.2609, 41.4328, 2.9557),
    "Cd": (19.2214, 17.6444, 4.461, 1.6029, 0.5946, 6.9089, 24.7008, 87.4825, 5.0694),
    "Cs": (20.3892, 19.1062, 10.662, 1.4953, 3.569, 0.3107, 24.3879, 213.904, 3.3352),
    "Pb": (31.0617, 13.0637, 18.442, 5.9696, 0.6902, 2.3576, 8.618, 47.2579, 13.4118),
}


def form_factor(symbol: str, s_per_angstrom: np.ndarray) -> np.ndarray:
    """Return the atomic form factor (electrons) of ``symbol`` at ``s = sin(theta) / lambda``.

    Parameters
    ----------
    symbol
        A key of :data:`CROMER_MANN`.
    s_per_angstrom
        ``sin(theta) / lambda`` in 1/Angstrom.
    """
    if symbol not in CROMER_MANN:
        raise ValueError(f"no form factor for {symbol!r}; available: {sorted(CROMER_MANN)}")
    c = CROMER_MANN[symbol]
    s2 = np.asarray(s_per_angstrom, dtype=np.float64) ** 2
    return sum(c[i] * np.exp(-c[4 + i] * s2) for i in range(4)) + c[8]


@dataclass(frozen=True, eq=False)
class DistanceHistograms:
    """Pair-distance histograms of a structure, per pair of elements.

    Attributes
    ----------
    symbols
        Element of each type index.
    counts
        Number of atoms of each type.
    bin_width_angstrom
        Bin width, Angstrom.
    pairs
        ``(n_types, n_types, n_bins)`` counts of pairs ``i < j`` (types ``t <= u`` only).
    """

    symbols: tuple[str, ...]
    counts: np.ndarray
    bin_width_angstrom: float
    pairs: np.ndarray

    @property
    def r_angstrom(self) -> np.ndarray:
        """Bin centres, Angstrom."""
        return (np.arange(self.pairs.shape[2]) + 0.5) * self.bin_width_angstrom


def distance_histograms(
    atoms: Atoms, bin_width_angstrom: float = BIN_WIDTH_ANGSTROM
) -> DistanceHistograms:
    """Histogram every interatomic distance of ``atoms`` by element pair.

    A validating wrapper around the compiled kernel
    :func:`segsim.kernels.debye._pair_histograms`.

    Parameters
    ----------
    atoms
        The structure (positions in Angstrom; periodicity is ignored).
    bin_width_angstrom
        Bin width, Angstrom (> 0).
    """
    from segsim.kernels.debye import _pair_histograms

    if not bin_width_angstrom > 0:
        raise ValueError(f"bin_width_angstrom must be > 0, got {bin_width_angstrom}")
    symbols, types = np.unique(np.asarray(atoms.get_chemical_symbols()), return_inverse=True)
    pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    extent = float(np.linalg.norm(pos.max(axis=0) - pos.min(axis=0))) if len(pos) else 0.0
    n_bins = int(extent / bin_width_angstrom) + 2
    hist = _pair_histograms(
        pos, types.astype(np.int64), int(symbols.size), float(bin_width_angstrom), n_bins
    )
    return DistanceHistograms(
        symbols=tuple(str(s) for s in symbols),
        counts=np.bincount(types, minlength=symbols.size),
        bin_width_angstrom=float(bin_width_angstrom),
        pairs=hist,
    )


def two_theta_to_q(two_theta_deg: np.ndarray, wavelength_angstrom: float) -> np.ndarray:
    """Return ``q = 4 pi sin(theta) / lambda`` (1/Angstrom) for 2theta in degrees."""
    return 4.0 * np.pi * np.sin(np.radians(np.asarray(two_theta_deg)) / 2.0) / wavelength_angstrom


def debye_intensity(
    hist: DistanceHistograms,
    two_theta_deg: np.ndarray,
    wavelength_angstrom: float = CU_KALPHA1_ANGSTROM,
    *,
    chunk: int = 64,
) -> np.ndarray:
    """Return the Debye intensity (electron units squared) at each 2theta (module docstring).

    Parameters
    ----------
    hist
        Distance histograms of the structure (:func:`distance_histograms`).
    two_theta_deg
        Scattering angles 2theta, degrees (0 < 2theta < 180).
    wavelength_angstrom
        X-ray wavelength, Angstrom.
    chunk
        Angles per block of the ``sin(q r) / (q r)`` matrix (memory: ``chunk * n_bins``).
    """
    tt = np.asarray(two_theta_deg, dtype=np.float64)
    if np.any((tt <= 0) | (tt >= 180)):
        raise ValueError("2theta must lie in (0, 180) degrees")
    q = two_theta_to_q(tt, wavelength_angstrom)
    s = q / (4.0 * np.pi)
    f = np.stack([form_factor(sym, s) for sym in hist.symbols])  # (n_types, n_q)
    r = hist.r_angstrom
    n_t = len(hist.symbols)
    iu, ju = np.triu_indices(n_t)
    weights = hist.pairs[iu, ju].astype(np.float64)  # (n_pairs, n_bins)
    used = np.flatnonzero(weights.any(axis=0))
    r, weights = r[used], weights[:, used]
    sums = np.empty((iu.size, q.size))
    for start in range(0, q.size, chunk):
        qr = np.outer(q[start : start + chunk], r)
        sums[:, start : start + chunk] = weights @ np.sinc(qr / np.pi).T
    intensity = (hist.counts[:, None] * f**2).sum(axis=0)
    intensity += 2.0 * (f[iu] * f[ju] * sums).sum(axis=0)
    polarisation = 0.5 * (1.0 + np.cos(np.radians(tt)) ** 2)
    return polarisation * intensity


def bragg_two_theta_deg(
    d_angstrom: float, wavelength_angstrom: float = CU_KALPHA1_ANGSTROM
) -> float:
    """Return the Bragg angle 2theta (degrees) of spacing ``d``, or NaN beyond 2theta = 180."""
    x = wavelength_angstrom / (2.0 * d_angstrom)
    return math.degrees(2.0 * math.asin(x)) if x <= 1.0 else math.nan


#: Pseudo-cubic perovskite reflections marked on the plot.
PEROVSKITE_HKL: tuple[tuple[int, int, int], ...] = (
    (1, 0, 0),
    (1, 1, 0),
    (1, 1, 1),
    (2, 0, 0),
    (2, 1, 0),
    (2, 1, 1),
    (2, 2, 0),
    (3, 0, 0),
    (3, 1, 0),
)


@dataclass(frozen=True, eq=False)
class XRDPattern:
    """A computed powder pattern of one snapshot.

    Attributes
    ----------
    two_theta_deg
        Scattering angles, degrees.
    intensity
        Debye intensity, electron units squared.
    a_angstrom
        Vegard lattice constant of the snapshot, Angstrom.
    has_rp
        Whether the snapshot has RP faults.
    n_atoms
        Number of atoms in the sum.
    label
        Text naming the file and snapshot.
    """

    two_theta_deg: np.ndarray
    intensity: np.ndarray
    a_angstrom: float
    has_rp: bool
    n_atoms: int
    label: str


def snapshot_pattern(
    path: str | Path,
    frame: int,
    *,
    two_theta_range_deg: tuple[float, float] = TWO_THETA_RANGE_DEG,
    step_deg: float = TWO_THETA_STEP_DEG,
    wavelength_angstrom: float = CU_KALPHA1_ANGSTROM,
    bin_width_angstrom: float = BIN_WIDTH_ANGSTROM,
) -> XRDPattern:
    """Return the powder pattern of snapshot ``frame`` of a result file.

    Parameters
    ----------
    path
        The result file.
    frame
        Snapshot index (negative counts from the end).
    two_theta_range_deg
        First and last 2theta, degrees.
    step_deg
        2theta step, degrees.
    wavelength_angstrom
        X-ray wavelength, Angstrom (default Cu K-alpha1).
    bin_width_angstrom
        Distance-histogram bin width, Angstrom.
    """
    result = load_result(path)
    i = result.snapshot_index(frame)
    atoms = result.atoms(i)
    lo, hi = two_theta_range_deg
    tt = np.arange(lo, hi + 0.5 * step_deg, step_deg)
    hist = distance_histograms(atoms, bin_width_angstrom)
    return XRDPattern(
        two_theta_deg=tt,
        intensity=debye_intensity(hist, tt, wavelength_angstrom),
        a_angstrom=result.a_angstrom(i),
        has_rp=bool(np.any(atoms.get_array("rp"))),
        n_atoms=len(atoms),
        label=f"{result.label}, snapshot {i} ({result.snapshot_time_text(i)})",
    )


def write_xrd(
    pattern: XRDPattern, output: str | Path, *, csv: bool = False
) -> tuple[Path, Path | None]:
    """Plot a pattern to a PNG (and optionally a CSV with the same stem).

    The intensity is normalised to its maximum in the range; ticks mark the Bragg angles of
    the pseudo-cubic perovskite reflections for the snapshot's ``a`` and, with RP, of the
    ``(001)`` stacking period ``a + gap`` of the RP faults.

    Returns
    -------
    tuple
        The PNG and the CSV (or None).
    """
    from segsim.atomistic import RP_GAP_ANGSTROM
    from segsim.viz.plot import new_figure, save_figure

    out = Path(output)
    fig, ax = new_figure()
    norm = pattern.intensity / pattern.intensity.max()
    ax.plot(pattern.two_theta_deg, norm, color="k", lw=1.0)
    for hkl in PEROVSKITE_HKL:
        d = pattern.a_angstrom / math.sqrt(sum(h * h for h in hkl))
        tt = bragg_two_theta_deg(d)
        ax.axvline(tt, color="tab:blue", lw=0.6, ls=":")
        ax.text(tt, 1.02, "".join(map(str, hkl)), ha="center", fontsize=7, color="tab:blue")
    if pattern.has_rp:
        tt = bragg_two_theta_deg(pattern.a_angstrom + RP_GAP_ANGSTROM)
        ax.axvline(tt, color="tab:red", lw=0.8, ls="--")
        ax.text(tt, 0.9, " RP", color="tab:red", fontsize=8)
    ax.set_xlabel(r"2$\theta$ (degrees, Cu K$\alpha_1$)")
    ax.set_ylabel("intensity (normalised)")
    ax.set_ylim(0, 1.1)
    ax.set_title(
        f"{pattern.label}\na = {pattern.a_angstrom:.3f} Å, {pattern.n_atoms} atoms", fontsize=9
    )
    save_figure(fig, out)
    csv_path = None
    if csv:
        csv_path = out.with_suffix(".csv")
        with atomic_output(csv_path) as tmp:
            np.savetxt(
                tmp,
                np.column_stack([pattern.two_theta_deg, pattern.intensity]),
                delimiter=",",
                header="two_theta_deg,intensity_electron_units2",
                comments="",
                fmt="%.6g",
            )
    return out, csv_path
