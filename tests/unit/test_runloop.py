"""The run loop's pieces: observers declare exactly what they return; schedules place frames."""

from __future__ import annotations

import numpy as np
import pytest

from segsim import lattice as lat
from segsim import observers as ob
from segsim.engine import KMCEngine, KMCState, MCEngine, MCState
from segsim.runloop import StepSchedule, TimeSchedule, run_frames


@pytest.fixture(scope="module")
def small_system():
    from segsim.models import load_model
    from segsim.params.files import POTENTIALS_DIR

    model = load_model("cluster_expansion", POTENTIALS_DIR / "provisional.ce")
    lattice = lat.build_cube(4, model.a_angstrom, model.reach + 1)
    return model, lattice, model.compile(lattice)


def _check_frame(observers, engine):
    shapes = ob.trace_shapes(observers)
    frame = ob.observe(observers, engine)
    assert set(frame) == set(shapes)
    for name, (shape, dtype) in shapes.items():
        value = np.asarray(frame[name])
        assert value.shape == shape, name
        assert np.can_cast(value.dtype, np.dtype(dtype), casting="same_kind"), name


def test_mc_observers_return_what_they_declare(small_system):
    _, lattice, tables = small_system
    rng = np.random.default_rng(1)
    state = MCState.initial(lat.random_occupations(lattice, 0.25, rng), tables)
    engine = MCEngine(tables, state, rng, temperature_k=343.0)
    observers = ob.mc_observers(lattice)
    assert all(isinstance(o, ob.Observer) for o in observers)
    _check_frame(observers, engine)
    engine.advance_to(500)
    assert engine.position == 500
    assert 0.0 < engine.last_acceptance <= 1.0
    assert ob.observe(observers, engine)["acceptance"] == engine.last_acceptance


def test_kmc_observers_return_what_they_declare(small_system):
    from segsim.kinetics import load_defaults, parameter_vector, removal_reference_ev

    _, lattice, tables = small_system
    rng = np.random.default_rng(2)
    occ = lat.random_occupations(lattice, 0.25, rng)
    state = KMCState.initial(occ, tables)
    kp = parameter_vector(
        load_defaults(), temperature_k=298.0, theta=0.5,
        removal_ref_ev=removal_reference_ev(tables, lattice),
    )  # fmt: skip
    engine = KMCEngine(tables, lattice, state, rng, kp)
    _check_frame(ob.kmc_observers(lattice), engine)


def test_trace_names_are_declared_once():
    class Twice:
        def trace_shapes(self):
            return {"step": ((), "i8")}

        def observe(self, engine):
            return {"step": 0}

    with pytest.raises(ValueError, match="'step' declared by two observers"):
        ob.trace_shapes([Twice(), Twice()])


def test_step_schedule_places_frames_snapshots_and_checkpoints():
    s = StepSchedule(total=250, interval=100, snapshot_interval=200, checkpoint_interval=100)
    assert s.n_frames == 3
    assert [s.target(k) for k in range(4)] == [0, 100, 200, 250]
    assert [s.frame_of(step) for step in (0, 100, 200, 250)] == [0, 1, 2, 3]
    assert [s.snapshot_due(k, k == 3) for k in range(4)] == [True, False, True, True]
    assert [s.checkpoint_due(k) for k in range(4)] == [True, True, True, False]
    assert StepSchedule(total=0, interval=100).n_frames == 0


def test_time_schedule_adds_the_end_of_the_treatment_as_a_frame():
    s = TimeSchedule.regular(1.0, 0.3, extra_s=(0.45, 0.0, 2.0), snapshot_every=2)
    np.testing.assert_allclose(s.times, [0.0, 0.3, 0.45, 0.6, 0.9, 1.0])
    assert s.n_frames == 5
    assert [s.snapshot_due(k, k == 5) for k in range(6)] == [True, False, True, False, True, True]
    assert TimeSchedule.regular(1.0, 0.5).times.tolist() == [0.0, 0.5, 1.0]


class _Sink:
    def __init__(self):
        self.frames, self.snapshots, self.checkpoints = [], [], []

    def append(self, frame, *, snapshot=None, checkpoint=None):
        self.frames.append(frame)
        if snapshot is not None:
            self.snapshots.append(snapshot[0])
        if checkpoint is not None:
            self.checkpoints.append(checkpoint[1]["step"])

    def checkpoint(self, arrays, attrs):
        self.checkpoints.append(attrs["step"])


class _Bar:
    def update(self, *a, **k):
        pass


class _Flag:
    stop = False


def test_run_frames_stops_at_a_frame_and_resumes_to_the_same_frames(small_system):
    _, lattice, tables = small_system
    schedule = StepSchedule(total=400, interval=100, snapshot_interval=200)
    observers = ob.mc_observers(lattice)

    def fresh():
        rng = np.random.default_rng(5)
        state = MCState.initial(lat.random_occupations(lattice, 0.25, rng), tables)
        return MCEngine(tables, state, rng, temperature_k=343.0)

    whole, sink = fresh(), _Sink()
    assert run_frames(whole, schedule, 0, observers=observers, sink=sink, stop=_Flag(), bar=_Bar())
    assert [f["step"] for f in sink.frames] == [100, 200, 300, 400]
    assert sink.snapshots == [200, 400]
    assert sink.checkpoints == [400]  # no checkpoint interval: only at the end

    part, first = fresh(), _Sink()
    flag = _Flag()
    assert not run_frames(
        part, schedule, 0, observers=observers, sink=first, stop=flag, bar=_Bar(), stop_at=200
    )
    assert [f["step"] for f in first.frames] == [100, 200]
    assert first.checkpoints == [200]  # the stop writes one
    flag.stop = False
    rest = _Sink()
    assert run_frames(
        part, schedule, schedule.frame_of(part.position), observers=observers, sink=rest,
        stop=flag, bar=_Bar(),
    )  # fmt: skip
    for a, b in zip(sink.frames, first.frames + rest.frames, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
