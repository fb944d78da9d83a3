"""Debye powder patterns (segsim.viz.xrd) against a direct double sum and Bragg's law."""

import math

import numpy as np
import pytest

from segsim import atomistic, optics, species
from segsim.atomistic import RP_GAP_ANGSTROM
from segsim.lattice import build_cube, random_occupations
from segsim.viz import xrd
from segsim.viz.atoms import frame_atoms
from tests.reference.naive import naive_debye_intensity

A = 5.87
LAMBDA = xrd.CU_KALPHA1_ANGSTROM


def _tiny_cluster():
    lat = build_cube(2, A, 1)
    occ = lat.empty_occupations()
    nc = np.flatnonzero(lat.in_nc)
    occ[nc[[1, 6]]] = species.CD
    occ[nc[3]] = species.VAC
    return atomistic.to_atoms(lat, occ)


def test_debye_equals_direct_double_sum():
    atoms = _tiny_cluster()
    assert set(atoms.get_chemical_symbols()) == {"Cs", "Pb", "Cd", "Br"}
    tt = np.linspace(7, 50, 9)
    ref = naive_debye_intensity(atoms, tt)
    fine = xrd.debye_intensity(xrd.distance_histograms(atoms, 1e-5), tt)
    np.testing.assert_allclose(fine, ref, rtol=1e-4)
    # The default bin width is a documented approximation: within 1 % of the strongest point.
    default = xrd.debye_intensity(xrd.distance_histograms(atoms), tt)
    assert np.abs(default - ref).max() < 1e-2 * ref.max()


def test_histogram_counts_every_pair_once():
    atoms = _tiny_cluster()
    h = xrd.distance_histograms(atoms, 0.05)
    n = len(atoms)
    assert h.pairs.sum() == n * (n - 1) // 2
    assert h.counts.sum() == n
    assert np.all(np.tril(h.pairs.sum(axis=2), -1) == 0)  # only type pairs t <= u
    d = atoms.get_all_distances()[np.triu_indices(n, 1)]
    assert h.r_angstrom[np.nonzero(h.pairs.sum(axis=(0, 1)))[0][0]] == pytest.approx(
        d.min(), abs=0.05
    )


@pytest.mark.parametrize("symbol", sorted(xrd.CROMER_MANN))
def test_form_factor_forward_limit_is_z(symbol):
    from ase.data import atomic_numbers

    f = xrd.form_factor(symbol, np.array([0.0, 0.2, 0.5]))
    assert f[0] == pytest.approx(atomic_numbers[symbol], abs=0.06)
    assert f[0] > f[1] > f[2] > 0


def _peak(tt, intensity, near, half_window):
    sel = np.abs(tt - near) <= half_window
    return float(tt[sel][np.argmax(intensity[sel])])


def _scherrer_fwhm_deg(two_theta_deg, size_angstrom):
    theta = math.radians(two_theta_deg / 2)
    return math.degrees(0.9 * LAMBDA / (size_angstrom * math.cos(theta)))


def test_pure_cspbbr3_peaks_at_bragg_angles():
    n = 8
    lat = build_cube(n, A, 1)
    atoms = frame_atoms(lat, lat.empty_occupations(), a_angstrom=A)
    tt = np.arange(10, 35, 0.02)
    intensity = xrd.debye_intensity(xrd.distance_histograms(atoms), tt)
    for hkl_sq in (1, 4):  # (100), (200)
        bragg = xrd.bragg_two_theta_deg(A / math.sqrt(hkl_sq))
        width = _scherrer_fwhm_deg(bragg, n * A)
        peak = _peak(tt, intensity, bragg, width)
        assert abs(peak - bragg) < width / 2, (hkl_sq, peak, bragg, width)
    assert xrd.bragg_two_theta_deg(A) == pytest.approx(15.08, abs=0.01)


def test_perovskite_peaks_shift_with_cd_content():
    n = 8
    lat = build_cube(n, A, 1)
    rng = np.random.default_rng(1)
    pure = lat.empty_occupations()
    alloy = random_occupations(lat, 0.25, rng)
    tt = np.arange(28, 34, 0.01)
    peaks = []
    for occ, x in ((pure, 0.0), (alloy, 0.25)):
        a = float(optics.vegard_a_angstrom(x, a0_angstrom=A))
        atoms = frame_atoms(lat, occ, a_angstrom=a)
        intensity = xrd.debye_intensity(xrd.distance_histograms(atoms), tt)
        peaks.append(_peak(tt, intensity, xrd.bragg_two_theta_deg(a / 2), 1.0))
    a_alloy = float(optics.vegard_a_angstrom(0.25, a0_angstrom=A))
    expected = xrd.bragg_two_theta_deg(a_alloy / 2) - xrd.bragg_two_theta_deg(A / 2)
    assert expected > 0.1  # Cd contracts the lattice: (200) moves to higher angle
    assert peaks[1] - peaks[0] == pytest.approx(expected, abs=0.05)


def test_rp_faults_give_a_low_angle_peak():
    n = 8
    lat = build_cube(n, A, 1)
    occ = lat.empty_occupations()
    phase = np.zeros(lat.n_sites, np.uint8)
    top = lat.pad + n - 1
    phase[lat.in_nc & (lat.coords[:, 2] > top - 5)] = 1  # a 5-plane RP slab at the +z face
    tt = np.arange(7, 13, 0.02)
    patterns = []
    for ph in (None, phase):
        atoms = frame_atoms(lat, occ, ph, a_angstrom=A)
        patterns.append(xrd.debye_intensity(xrd.distance_histograms(atoms), tt))
    rp_angle = xrd.bragg_two_theta_deg(A + RP_GAP_ANGSTROM)
    near = np.abs(tt - rp_angle) < 0.5
    assert patterns[1][near].max() > 3 * patterns[0][near].max()
    peak = _peak(tt, patterns[1], rp_angle, 1.5)
    assert abs(peak - rp_angle) < _scherrer_fwhm_deg(rp_angle, 4 * (A + RP_GAP_ANGSTROM)) / 2


def test_bad_input_is_refused():
    atoms = _tiny_cluster()
    with pytest.raises(ValueError, match="bin_width"):
        xrd.distance_histograms(atoms, 0.0)
    with pytest.raises(ValueError, match="2theta"):
        xrd.debye_intensity(xrd.distance_histograms(atoms), np.array([0.0, 10.0]))
    with pytest.raises(ValueError, match="no form factor"):
        xrd.form_factor("Xx", np.zeros(1))
