"""The H5MD view written by the result sink (segsim.io.h5md), checked by a spec validator."""

import h5py
import numpy as np
import pytest

from segsim import __version__
from segsim.io import h5md, hdf5
from segsim.lattice import build_cube
from tests.h5md_validator import validate_h5md

A = 5.87


def _sink(tmp_path, *, kmc: bool, phase: bool = False):
    lat = build_cube(2, A, 1)
    sink = hdf5.H5Sink(tmp_path / "r.h5")
    trace = {"step": ((), "i8")}
    if kmc:
        trace["time_s"] = ((), "f8")
    sink.create(
        config_yaml="a: 1\n",
        run_kind="kmc" if kmc else "canonical_mc",
        lattice_arrays={"coords": lat.coords, "depth": lat.depth},
        lattice_attrs={"shape": np.asarray(lat.shape), "a_angstrom": A, "n_edge": 2, "pad": 1},
        trace_shapes=trace,
        n_sites=lat.n_sites,
        model_source="m.ce",
    )
    if phase:  # what the RP-aware sink adds: a phase dataset next to the occupations
        with h5py.File(sink.path, "a") as f:
            f["snapshots"].create_dataset(
                "phase", shape=(0, lat.n_sites), maxshape=(None, lat.n_sites), dtype=np.uint8
            )
    return sink, lat


def _append(sink, lat, step, time_s=None, *, snapshot=True):
    frame = {"step": step} if time_s is None else {"step": step, "time_s": time_s}
    occ = np.full(lat.n_sites, step % 4, np.uint8)
    sink.append(frame, snapshot=(step, occ) if snapshot else None)
    if not snapshot:
        return
    with h5py.File(sink.path, "a") as f:
        if "phase" in f["snapshots"]:
            ph = f["snapshots/phase"]
            ph.resize(f["snapshots/step"].shape[0], axis=0)
            ph[-1] = step % 2


def test_kmc_file_is_valid_h5md(tmp_path):
    sink, lat = _sink(tmp_path, kmc=True)
    for k, (step, t) in enumerate([(0, 0.0), (5, 0.5), (5, 1.0), (9, 1.5)]):
        _append(sink, lat, step, t, snapshot=k != 1)
    with h5py.File(sink.path, "r") as f:
        assert validate_h5md(f) == []
        assert tuple(f["h5md"].attrs["version"]) == (1, 1)
        assert f["h5md/creator"].attrs["name"] == b"segsim"
        assert f["h5md/creator"].attrs["version"] == __version__.encode()
        el = f[h5md.SPECIES_PATH]
        np.testing.assert_array_equal(el["step"][()], [0, 5, 9])
        np.testing.assert_array_equal(el["time"][()], [0.0, 1.0, 1.5])
        np.testing.assert_array_equal(el["value"][()], f["snapshots/occupations"][()])
        grp = f[h5md.PARTICLES_GROUP]
        np.testing.assert_allclose(grp["position"][()], lat.coords * A)
        np.testing.assert_allclose(grp["box/edges"][()], np.asarray(lat.shape) * A)
        assert "rp" not in grp


def test_mc_file_has_no_time(tmp_path):
    sink, lat = _sink(tmp_path, kmc=False)
    for step in (0, 10, 20):
        _append(sink, lat, step)
    with h5py.File(sink.path, "r") as f:
        assert validate_h5md(f) == []
        assert "time" not in f[h5md.SPECIES_PATH]
        assert f[h5md.SPECIES_PATH]["value"].shape == (3, lat.n_sites)


def test_resume_truncation_keeps_time_as_long_as_step(tmp_path):
    sink, lat = _sink(tmp_path, kmc=True)
    for step, t in [(0, 0.0), (3, 1.0), (7, 2.0)]:
        _append(sink, lat, step, t)
    sink.truncate_to_step(3)
    _append(sink, lat, 8, 2.5)
    with h5py.File(sink.path, "r") as f:
        assert validate_h5md(f) == []
        np.testing.assert_array_equal(f[h5md.SPECIES_PATH]["step"][()], [0, 3, 8])
        np.testing.assert_array_equal(f[h5md.SPECIES_PATH]["time"][()], [0.0, 1.0, 2.5])


def test_rp_phase_becomes_an_element(tmp_path):
    sink, lat = _sink(tmp_path, kmc=True, phase=True)
    for step, t in [(0, 0.0), (1, 1.0), (2, 2.0)]:
        _append(sink, lat, step, t)
    with h5py.File(sink.path, "r") as f:
        assert validate_h5md(f) == []
        rp = f[h5md.RP_PATH]
        np.testing.assert_array_equal(rp["value"][()][:, 0], [0, 1, 0])
        np.testing.assert_array_equal(rp["time"][()], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("breakage", ["vlen_author", "no_box", "bad_boundary", "short_time"])
def test_validator_catches_violations(tmp_path, breakage):
    sink, lat = _sink(tmp_path, kmc=True)
    _append(sink, lat, 0, 0.0)
    _append(sink, lat, 4, 1.0)
    with h5py.File(sink.path, "a") as f:
        grp = f[h5md.PARTICLES_GROUP]
        if breakage == "vlen_author":
            f["h5md/author"].attrs["name"] = "someone"  # h5py writes str as variable-length
        elif breakage == "no_box":
            del grp["box"]
        elif breakage == "bad_boundary":
            grp["box"].attrs["boundary"] = np.array([b"periodic", b"open", b"none"], dtype="S8")
        else:
            grp["species/time"].resize(1, axis=0)
        assert validate_h5md(f) != []
