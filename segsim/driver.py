"""Wiring for one run: config -> lattice -> model -> engine -> observers -> HDF5 sink.

No loops here: the engine runs compiled chunks and :func:`segsim.runloop.run_frames` decides
what happens between them (frames, snapshots, checkpoints, progress, interruption).  This
module only builds the pieces from a configuration: :func:`run_canonical` and
:func:`run_kmc` differ in the state, the engine, the schedule and the observers they wire,
and share :func:`_run` for everything else (seed, sink, resume, signals, wall time, drift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsim import lattice as lat
from segsim import species
from segsim.config import ConfigError, SimulationConfig, loads_resolved
from segsim.engine import KMCEngine, KMCState, MCEngine, MCState
from segsim.io import hdf5
from segsim.kernels.kmc import EVENT_TYPE_NAMES, KP_MU_REC, KP_REC_REF, KP_REF
from segsim.models import load_model
from segsim.observers import (
    Observer,
    cd_fraction_by_depth,
    hollowness,
    kmc_observers,
    mc_observers,
    trace_shapes,
)
from segsim.progress import Progress, TimeProgress
from segsim.rng import make_rng, state_from_json
from segsim.runloop import StepSchedule, TimeSchedule, run_frames, write_first_frame
from segsim.stopflag import StopFlag


class UserError(Exception):
    """A problem the user can fix (bad model file, incompatible result file, ...)."""


class Interrupted(Exception):
    """The run was stopped by a signal after writing a checkpoint."""


@dataclass
class RunSummary:
    """What a finished (or interrupted) run reports."""

    path: Path
    step: int
    energy_ev: float
    acceptance: float
    x_profile: np.ndarray
    wall_s: float


def build_system(cfg: SimulationConfig) -> tuple[Any, lat.Lattice, Any]:
    """Return ``(model, lattice, tables)`` for a configuration."""
    try:
        model = load_model(cfg.model.kind, cfg.model.path)
    except Exception as exc:  # noqa: BLE001  (icet raises many types for a bad file)
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise ConfigError(
            cfg.source,
            "model.path",
            f"cannot read {cfg.model.kind} file {cfg.model.path}: {reason}",
        ) from None
    a = cfg.system.lattice_constant_angstrom or model.a_angstrom
    n = lat.n_edge_from_nm(cfg.system.edge_nm, a)
    min_pad = model.reach + 1
    pad = cfg.system.pad_sites if cfg.system.pad_sites is not None else min_pad
    if pad < min_pad:
        raise ConfigError(
            cfg.source,
            "system.pad_sites",
            f"must be >= {min_pad} (the model's cluster reach + 1) so that periodic images of "
            f"the NC do not interact (got {pad})",
        )
    lattice = lat.build_cube(n, a, pad)
    return model, lattice, model.compile(lattice)


def _lattice_payload(lattice: lat.Lattice) -> dict[str, Any]:
    """Return the ``/lattice`` group of a result file (arrays and attributes)."""
    return {
        "lattice_arrays": {
            "coords": lattice.coords,
            "in_nc": lattice.in_nc,
            "depth": lattice.depth,
            "n_outside_nn": lattice.n_outside_nn,
        },
        "lattice_attrs": {
            "shape": np.asarray(lattice.shape),
            "n_edge": lattice.n_edge,
            "pad": lattice.pad,
            "a_angstrom": lattice.a_angstrom,
            "n_layers": lattice.n_layers,
        },
    }


def _resume_checkpoint(
    out_path: Path, lattice: lat.Lattice, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the checkpoint to resume from, check it fits ``lattice`` and restore ``rng``."""
    ck = hdf5.read_checkpoint(out_path)
    if ck is None:
        raise UserError(f"{out_path}: no checkpoint to resume from")
    arrays, attrs = ck
    if arrays["occupations"].shape != (lattice.n_sites,):
        raise UserError(f"{out_path}: checkpoint does not match the configured lattice")
    rng.bit_generator.state = state_from_json(attrs["rng_state"])
    return arrays, attrs


def _check_invariants(engine: KMCEngine, lattice: lat.Lattice, trace: dict[str, Any]) -> None:
    """Raise if a finished KMC run broke an invariant of the model (``docs/model.md``).

    Every frame: ``n_cd + cd_expelled`` and ``n_pb + pb_expelled`` equal frame 0's (a cation
    leaves only by expulsion), ``n_vac_interior + n_vac_surface = n_vac``; the final state:
    nothing beyond the synthesised cube, and the interior vacancy count that the last frame
    reports.  A violation is a kernel bookkeeping error.  (The full check of a file against
    its snapshots is :func:`segsim.invariants.check_result`.)
    """
    problems = []
    for ion in ("cd", "pb"):
        total = trace[f"n_{ion}"] + trace[f"{ion}_expelled"]
        if np.any(total != total[0]):
            problems.append(f"n_{ion} + {ion}_expelled changes ({total[0]} -> {total[-1]})")
    if np.any(trace["n_vac_interior"] + trace["n_vac_surface"] != trace["n_vac"]):
        problems.append("n_vac_interior + n_vac_surface != n_vac")
    occ = engine.state.occupations
    if np.any(occ[~lattice.in_nc] != species.OUT):
        problems.append("a site beyond the synthesised cube is not outside")
    n_int = hollowness(lattice, "kmc", occ)["n_vac_interior"]
    if n_int != trace["n_vac_interior"][-1]:
        problems.append(
            f"{n_int} interior vacancies, the last frame says {trace['n_vac_interior'][-1]}"
        )
    if problems:
        raise RuntimeError(f"invariant violated: {'; '.join(problems)}: kernel bookkeeping error")


def _check_drift(engine: MCEngine | KMCEngine) -> None:
    """Raise if the running energy left the full recompute (a kernel bookkeeping error)."""
    drift = engine.energy_drift_ev()
    if abs(drift) > 1e-6 * max(1.0, abs(engine.state.energy_ev)):
        raise RuntimeError(f"energy drift {drift:.3e} eV: kernel bookkeeping error")


@dataclass
class _Wiring:
    """What differs between the run kinds: everything :func:`_run` needs to run one task."""

    engine: MCEngine | KMCEngine
    schedule: StepSchedule | TimeSchedule
    frame: int  # last frame already written (0 for a new run)
    observers: list[Observer]
    bar: Progress
    metadata: dict[str, Any] = field(default_factory=dict)  # extra /metadata of a new file
    on_frame: Callable[[Any], None] | None = None  # see segsim.runloop.run_frames


def _run(
    cfg: SimulationConfig,
    out_path: Path,
    wire: Callable[..., _Wiring],
    *,
    resume: bool,
    walltime_s: float | None,
    stop_at: float | None,
) -> tuple[Any, Any, float]:
    """Build, seed, (re)open the sink, wire, run the frames; return (engine, lattice, t0).

    Raises :class:`Interrupted` (after a checkpoint) when the run stops before its end.
    """
    import time

    t_start = time.perf_counter()
    model, lattice, tables = build_system(cfg)
    rng = make_rng(cfg.run.seed)
    sink = hdf5.H5Sink(out_path)
    ck = _resume_checkpoint(out_path, lattice, rng) if resume else None
    w: _Wiring = wire(model, lattice, tables, rng, ck)
    if ck is not None:
        sink.truncate_to_step(int(ck[1]["step"]))
    else:
        sink.create(
            config_yaml=cfg.to_yaml(),
            run_kind=cfg.run.kind,
            **_lattice_payload(lattice),
            trace_shapes=trace_shapes(w.observers),
            n_sites=lattice.n_sites,
            model_source=str(cfg.model.path),
            extra_metadata={
                "model_label": str(model.metadata.get("segsim_label", "")),
                **w.metadata,
            },
        )
        write_first_frame(w.engine, w.schedule, observers=w.observers, sink=sink)
    with StopFlag() as flag:
        done = run_frames(
            w.engine,
            w.schedule,
            w.frame,
            observers=w.observers,
            sink=sink,
            stop=flag,
            bar=w.bar,
            deadline=None if walltime_s is None else t_start + walltime_s,
            stop_at=stop_at,
            on_frame=w.on_frame,
        )
    w.bar.close()
    if not done:
        raise Interrupted(
            f"stopped at {w.engine.where()}; resume with: segsim run --resume {out_path}"
        )
    _check_drift(w.engine)
    return w.engine, lattice, t_start


def run_canonical(
    cfg: SimulationConfig,
    out_path: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    walltime_s: float | None = None,
    stop_at_step: int | None = None,
) -> RunSummary:
    """Run (or resume) a canonical Monte Carlo simulation and write ``out_path``.

    Parameters
    ----------
    cfg
        The validated configuration.
    out_path
        Result file; created (overwritten) unless ``resume``.
    resume
        Continue from the checkpoint in ``out_path``; the result is identical to an
        uninterrupted run.
    progress
        Show the progress line (None: only on a terminal).
    walltime_s
        Stop cleanly (checkpoint, :class:`Interrupted`) at the first frame after this many
        seconds of wall time, e.g. before a cluster job's limit.
    stop_at_step
        Stop cleanly at the first frame at or after this step (testing resume).
    """
    import time

    out, total = cfg.output, cfg.run.n_steps
    schedule = StepSchedule(
        total, out.trace_interval_steps, out.snapshot_interval_steps, out.checkpoint_interval_steps
    )

    def wire(model: Any, lattice: lat.Lattice, tables: Any, rng: Any, ck: Any) -> _Wiring:
        if ck is not None:
            state = MCState.from_checkpoint(*ck)
        else:
            state = MCState.initial(lat.random_occupations(lattice, cfg.system.x_cd, rng), tables)
        return _Wiring(
            engine=MCEngine(tables, state, rng, temperature_k=cfg.run.temperature_k),
            schedule=schedule,
            frame=schedule.frame_of(state.step),
            observers=mc_observers(lattice),
            bar=Progress(total, start_step=state.step, enabled=progress),
        )

    engine, lattice, t_start = _run(
        cfg, Path(out_path), wire, resume=resume, walltime_s=walltime_s, stop_at=stop_at_step
    )
    state = engine.state
    return RunSummary(
        path=Path(out_path),
        step=state.step,
        energy_ev=engine.tables.total_energy(state.occupations),
        acceptance=state.n_accepted / state.step if state.step else 0.0,
        x_profile=cd_fraction_by_depth(state.occupations, lattice.depth, lattice.n_layers),
        wall_s=time.perf_counter() - t_start,
    )


def resume_config(out_path: str | Path) -> SimulationConfig:
    """Return the configuration stored in a result file (for ``--resume``)."""
    try:
        text = hdf5.read_config_yaml(out_path)
    except hdf5.ResultFileError as exc:
        raise UserError(str(exc)) from None
    return loads_resolved(text, source=f"{out_path}:/metadata/config")


# --------------------------------------------------------------------------- kinetic MC
#: Events per compiled call between progress updates and stop-flag checks (the engine's
#: default; tests lower it).  Chunk boundaries that are not output times do not change the
#: trajectory (see KMCEngine.advance).
KMC_CHUNK_EVENTS = KMCEngine.chunk_events


def run_kmc(
    cfg: SimulationConfig,
    out_path: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    walltime_s: float | None = None,
    stop_at_time_s: float | None = None,
) -> KMCSummary:
    """Run (or resume) a lattice kinetic Monte Carlo simulation and write ``out_path``.

    Frames are written every ``output.frame_interval_s`` of simulated time (and at the end);
    a checkpoint is written every ``checkpoint_every_frames`` frames, at the end and when the
    run is stopped (signal, ``walltime_s``).  A resumed run writes exactly what an
    uninterrupted run writes.

    Parameters
    ----------
    cfg
        The validated configuration (``run.kind: kmc``).
    out_path
        Result file; created (overwritten) unless ``resume``.
    resume
        Continue from the checkpoint in ``out_path``.
    progress
        Show the progress line (None: only on a terminal).
    walltime_s
        Stop cleanly (checkpoint, :class:`Interrupted`) once this much wall time has passed.
    stop_at_time_s
        Stop cleanly at the first frame at or after this simulated time (testing resume).
    """
    import time

    from segsim.kinetics import treatment_parameter_vectors
    from segsim.synthesis import synthesise

    out, total_s = cfg.output, cfg.run.duration_s
    ligand = cfg.passivation.ligand

    def wire(model: Any, lattice: lat.Lattice, tables: Any, rng: Any, ck: Any) -> _Wiring:
        if lattice.n_edge < 3:
            raise ConfigError(cfg.source, "system.edge_nm", "KMC needs at least 3 B sites per edge")
        if ck is not None:
            state, frame = KMCState.from_checkpoint(*ck), int(ck[1]["frame"])
        else:
            occ, phase = synthesise(cfg, lattice, tables, rng)
            state, frame = KMCState.initial(occ, tables, phase), 0
        kp_treat, kp_age, t_treat = treatment_parameter_vectors(cfg, tables, lattice, state.phase)
        engine = KMCEngine(
            tables, lattice, state, rng, kp_treat if state.time_s < t_treat else kp_age
        )
        engine.chunk_events = KMC_CHUNK_EVENTS

        def end_of_treatment(eng: KMCEngine) -> None:
            if eng.state.time_s >= t_treat and eng.kp is kp_treat and kp_treat is not kp_age:
                eng.set_parameters(kp_age)  # the ligand exchange is over (a frame time)

        ref = (float(kp_age[KP_REF]), float(kp_age[KP_REF + 1]), float(kp_age[KP_REC_REF]))
        return _Wiring(
            engine=engine,
            schedule=TimeSchedule.regular(
                total_s,
                out.frame_interval_s,
                extra_s=(t_treat,),
                snapshot_every=out.snapshot_every_frames,
                checkpoint_every=out.checkpoint_every_frames,
            ),
            frame=frame,
            observers=kmc_observers(lattice),
            bar=TimeProgress(total_s, start_s=state.time_s, enabled=progress),
            metadata={
                "ligand": ligand.name,
                "theta": ligand.theta,
                "treatment_end_s": t_treat,
                "removal_reference_ev": np.asarray(ref),
                "recession_mu_csbr_ev": float(kp_age[KP_MU_REC]),
                "event_types": ",".join(EVENT_TYPE_NAMES),
            },
            on_frame=end_of_treatment,
        )

    engine, _, t_start = _run(
        cfg, Path(out_path), wire, resume=resume, walltime_s=walltime_s, stop_at=stop_at_time_s
    )
    state = engine.state
    last = hdf5.read_trace(out_path)
    _check_invariants(engine, engine.lattice, last)
    return KMCSummary(
        path=Path(out_path),
        time_s=state.time_s,
        n_events=state.n_events,
        counts=state.counts_by_name(),
        x_cd=float(last["x_cd"][-1]),
        x_cd_start=float(last["x_cd"][0]),
        pl_peak_nm=float(last["pl_peak_nm"][-1]),
        pl_peak_start_nm=float(last["pl_peak_nm"][0]),
        edge_nm=float(last["edge_nm"][-1]),
        wall_s=time.perf_counter() - t_start,
    )


@dataclass
class KMCSummary:
    """What a finished KMC run reports (times in s, lengths in nm)."""

    path: Path
    time_s: float
    n_events: int
    counts: dict[str, int]
    x_cd: float
    x_cd_start: float
    pl_peak_nm: float
    pl_peak_start_nm: float
    edge_nm: float
    wall_s: float
