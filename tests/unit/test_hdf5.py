import subprocess
import sys

import h5py
import numpy as np
import pytest

from segsim.io import hdf5
from segsim.rng import state_from_json as rng_state_from_json
from segsim.rng import state_to_json as rng_state_to_json


def _sink(tmp_path):
    sink = hdf5.H5Sink(tmp_path / "r.h5")
    sink.create(
        config_yaml="a: 1\n",
        run_kind="canonical_mc",
        lattice_arrays={"depth": np.zeros(8, np.int32)},
        lattice_attrs={"n_edge": 2},
        trace_shapes={"step": ((), "i8"), "profile": ((2,), "f8")},
        n_sites=8,
        model_source="m.ce",
    )
    return sink


def test_append_resize_and_truncate(tmp_path):
    sink = _sink(tmp_path)
    for step in range(5):
        snap = (step, np.full(8, step, np.uint8)) if step % 2 == 0 else None
        sink.append({"step": step, "profile": [step, -step]}, snapshot=snap)
    tr = hdf5.read_trace(sink.path)
    assert list(tr["step"]) == [0, 1, 2, 3, 4]
    assert tr["profile"].shape == (5, 2)
    sink.truncate_to_step(2)
    assert list(hdf5.read_trace(sink.path)["step"]) == [0, 1, 2]
    steps, occ = hdf5.read_snapshots(sink.path)
    assert list(steps) == [0, 2]
    assert occ[1, 0] == 2
    with pytest.raises(hdf5.ResultFileError, match="frame keys"):
        sink.append({"step": 9})


def test_checkpoint_roundtrip_with_rng_state(tmp_path):
    sink = _sink(tmp_path)
    assert hdf5.read_checkpoint(sink.path) is None
    rng = np.random.default_rng(123)
    rng.random(7)
    sink.checkpoint(
        {"occupations": np.arange(8, dtype=np.uint8)},
        {"step": 42, "rng_state": rng_state_to_json(rng.bit_generator.state)},
    )
    arrays, attrs = hdf5.read_checkpoint(sink.path)
    assert attrs["step"] == 42
    other = np.random.default_rng()
    other.bit_generator.state = rng_state_from_json(attrs["rng_state"])
    assert other.random() == rng.random()
    assert np.array_equal(arrays["occupations"], np.arange(8))


def test_writer_waits_for_a_reader_holding_the_file(tmp_path):
    """Another process holding a locking read handle delays, but does not break, a frame."""
    sink = _sink(tmp_path)
    code = (
        "import sys, time, h5py\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "print('open', flush=True)\n"
        "time.sleep(0.5)\n"
        "f.close()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(sink.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(BlockingIOError):
            h5py.File(sink.path, "a")  # the lock is real ...
        sink.append({"step": 1, "profile": [0.0, 0.0]})  # ... and the sink waits it out
    finally:
        proc.communicate(timeout=30)
    assert list(hdf5.read_trace(sink.path)["step"]) == [1]


def test_wrong_schema_version_is_refused(tmp_path):
    sink = _sink(tmp_path)
    with h5py.File(sink.path, "a") as f:
        f["metadata"].attrs["schema_version"] = 99
    with pytest.raises(hdf5.ResultFileError, match="schema_version 99"):
        hdf5.summarize(sink.path)
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(hdf5.ResultFileError, match="not a readable HDF5"):
        hdf5.summarize(tmp_path / "x.h5")
