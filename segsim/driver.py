"""Wiring for one run: config -> lattice -> model -> engine -> observers -> HDF5 sink.

No loops over sites or events here; the engine runs compiled chunks, this module decides
what happens between them (frames, snapshots, checkpoints, progress, interruption).
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from segsim import lattice as lat
from segsim import species
from segsim.config import ConfigError, SimulationConfig, loads_resolved
from segsim.engine import KMCEngine, KMCState, MCEngine, MCState
from segsim.io import hdf5
from segsim.kernels.kmc import EV_EXPEL_CD, EVENT_TYPE_NAMES, KP_MU_REC, KP_REC_REF, KP_REF
from segsim.models import load_model
from segsim.observers import cd_fraction_by_depth
from segsim.progress import Progress
from segsim.units import SECONDS_PER_DAY


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


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between chunks."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not in the main thread
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


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


def _frame(engine: MCEngine, lattice: lat.Lattice, n_acc: int, n_steps: int) -> dict[str, Any]:
    s = engine.state
    return {
        "step": s.step,
        "energy_ev": engine.tables.total_energy(s.occupations),
        "acceptance": n_acc / n_steps if n_steps else 0.0,
        "n_accepted": s.n_accepted,
        "cd_fraction_by_depth": cd_fraction_by_depth(
            s.occupations, lattice.depth, lattice.n_layers
        ),
    }


def _checkpoint(engine: MCEngine, complete: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    s = engine.state
    arrays = {"occupations": s.occupations, "pb_sites": s.pb_sites, "cd_sites": s.cd_sites}
    attrs = {
        "step": s.step,
        "energy_ev": s.energy_ev,
        "n_accepted": s.n_accepted,
        "rng_state": hdf5.rng_state_to_json(engine.rng.bit_generator.state),
        "complete": complete,
    }
    return arrays, attrs


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
    rng.bit_generator.state = hdf5.rng_state_from_json(attrs["rng_state"])
    return arrays, attrs


def _check_drift(engine: MCEngine | KMCEngine) -> None:
    """Raise if the running energy left the full recompute (a kernel bookkeeping error)."""
    drift = engine.energy_drift_ev()
    if abs(drift) > 1e-6 * max(1.0, abs(engine.state.energy_ev)):
        raise RuntimeError(f"energy drift {drift:.3e} eV: kernel bookkeeping error")


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

    t_start = time.perf_counter()
    out_path = Path(out_path)
    model, lattice, tables = build_system(cfg)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(cfg.run.seed)))
    sink = hdf5.H5Sink(out_path)
    out = cfg.output

    if resume:
        arrays, attrs = _resume_checkpoint(out_path, lattice, rng)
        state = MCState(
            occupations=arrays["occupations"].astype(np.uint8),
            pb_sites=arrays["pb_sites"].astype(np.int64),
            cd_sites=arrays["cd_sites"].astype(np.int64),
            step=int(attrs["step"]),
            energy_ev=float(attrs["energy_ev"]),
            n_accepted=int(attrs["n_accepted"]),
        )
        sink.truncate_to_step(state.step)
    else:
        occ = lat.random_occupations(lattice, cfg.system.x_cd, rng)
        state = MCState.initial(occ, tables)
    engine = MCEngine(tables, state, rng, temperature_k=cfg.run.temperature_k)

    if not resume:
        sink.create(
            config_yaml=cfg.to_yaml(),
            run_kind=cfg.run.kind,
            **_lattice_payload(lattice),
            trace_shapes={
                "step": ((), "i8"),
                "energy_ev": ((), "f8"),
                "acceptance": ((), "f8"),
                "n_accepted": ((), "i8"),
                "cd_fraction_by_depth": ((lattice.n_layers,), "f8"),
            },
            n_sites=lattice.n_sites,
            model_source=str(cfg.model.path),
            extra_metadata={"model_label": str(model.metadata.get("segsim_label", ""))},
        )
        sink.append(
            _frame(engine, lattice, 0, 0),
            snapshot=(0, state.occupations) if out.snapshot_interval_steps else None,
            checkpoint=_checkpoint(engine, state.step >= cfg.run.n_steps),
        )

    total = cfg.run.n_steps
    bar = Progress(total, start_step=state.step, enabled=progress)
    last_acc = 0.0
    with _StopFlag() as flag:
        while state.step < total:
            n = min(
                out.trace_interval_steps - state.step % out.trace_interval_steps, total - state.step
            )
            n_acc = engine.advance(n)
            last_acc = n_acc / n
            done = state.step >= total
            if (walltime_s is not None and time.perf_counter() - t_start > walltime_s) or (
                stop_at_step is not None and state.step >= stop_at_step
            ):
                flag.stop = True
            snap = out.snapshot_interval_steps and (
                state.step % out.snapshot_interval_steps == 0 or done
            )
            ckpt = (
                done
                or flag.stop
                or (
                    out.checkpoint_interval_steps
                    and state.step % out.checkpoint_interval_steps == 0
                )
            )
            sink.append(
                _frame(engine, lattice, n_acc, n),
                snapshot=(state.step, state.occupations) if snap else None,
                checkpoint=_checkpoint(engine, done) if ckpt else None,
            )
            bar.update(state.step, acceptance=last_acc, force=done)
            if flag.stop and not done:
                bar.close()
                raise Interrupted(
                    f"stopped at step {state.step}; resume with: segsim run --resume {out_path}"
                )
    bar.close()
    _check_drift(engine)
    return RunSummary(
        path=out_path,
        step=state.step,
        energy_ev=tables.total_energy(state.occupations),
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
#: Events per compiled call between progress updates and stop-flag checks.  Chunk boundaries
#: that are not output times do not change the trajectory (see KMCEngine.advance).
KMC_CHUNK_EVENTS = 200_000


def initial_kmc_occupations(
    lattice: lat.Lattice, x_cd: float, vacancy_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Return random NC occupations with ``round(vacancy_fraction * n**3)`` vacancies.

    Cd is placed first (``round(x_cd * n**3)`` sites, uniformly at random), then vacancies
    replace randomly chosen Pb sites, so ``x`` of the cations is slightly above ``x_cd`` when
    vacancies are present.
    """
    occ = lat.random_occupations(lattice, x_cd, rng)
    n_vac = round(vacancy_fraction * lattice.n_nc_sites)
    if n_vac:
        pb = np.flatnonzero(occ == species.PB)
        if n_vac > pb.size:
            raise ValueError("vacancy_fraction leaves no room for the Pb sites")
        occ[rng.choice(pb, size=n_vac, replace=False)] = species.VAC
    return occ


def synthesise(
    cfg: SimulationConfig, lattice: lat.Lattice, tables: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return the occupations and RP phase field of a freshly made NC.

    Random Cd (and ``system.vacancy_fraction`` vacancies); without a ``synthesis`` section
    that is all (no RP).  With it: one RP zone with probability ``rp_probability``
    (:func:`segsim.rp.seed_zone`), then canonical MC of the Pb/Cd arrangement at the
    synthesis temperature with the RP term (``mc_sweeps`` trial swaps per cation site), then
    the quench (the arrangement is kept as is).  Every draw comes from ``rng``.
    """
    from segsim import rp as _rp

    occ = initial_kmc_occupations(lattice, cfg.system.x_cd, cfg.system.vacancy_fraction, rng)
    syn = cfg.synthesis
    if syn is None:
        return occ, _rp.empty_phase(lattice.n_sites)
    seeding = _rp.RPSeeding(syn.rp_probability, syn.rp_thickness_layers, syn.rp_width_fraction)
    phase = _rp.seed_zone(lattice, seeding, rng)
    n_cat = int(np.count_nonzero(occ <= species.CD))
    if syn.mc_sweeps and n_cat:
        state = MCState.initial(occ, tables, phase)
        mc = MCEngine(
            tables, state, rng, temperature_k=syn.temperature_k, rp=cfg.rp, lattice=lattice
        )
        mc.advance(syn.mc_sweeps * n_cat)
        occ = state.occupations
    return occ, phase


def kmc_parameter_vectors(
    cfg: SimulationConfig, tables: Any, lattice: lat.Lattice, phase: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(kp during the treatment, kp of the aging, end of the treatment in s)``.

    The RP term is on only if the NC has an RP zone.  The ligand-exchange treatment lowers
    the RP switching barrier of surface-adjacent sites by ``rp_barrier_shift_ev`` for the
    first ``treatment_duration_s`` of the run; without a treatment both vectors are equal
    and the treatment ends at 0.
    """
    from segsim import kinetics
    from segsim.rp import zone_mask

    ligand = cfg.passivation.ligand
    ref = kinetics.removal_reference_ev(tables, lattice)
    rp = cfg.rp if zone_mask(phase).any() else None
    common = {
        "temperature_k": cfg.run.temperature_k,
        "theta": ligand.theta,
        "removal_ref_ev": ref,
        "rp": rp,
        "recession_mu_csbr_ev": kinetics.recession_mu_csbr_ev(tables),
    }
    kp = kinetics.parameter_vector(cfg.kinetics.params, **common)
    shift = float(ligand.rp_barrier_shift_ev) if rp is not None else 0.0
    t_treat = float(ligand.treatment_duration_s) if shift > 0 else 0.0
    kp_treat = (
        kinetics.parameter_vector(cfg.kinetics.params, **common, rp_shift_ev=shift)
        if t_treat > 0
        else kp
    )
    return kp_treat, kp, t_treat


def kmc_frame_times(total_s: float, interval_s: float, t_treat_s: float = 0.0) -> np.ndarray:
    """Return the frame times (s) of a KMC run: 0, every ``interval_s``, the end.

    The end of a ligand-exchange treatment (``t_treat_s`` > 0) is a frame time as well: it is
    the "fresh" state measured after the exchange, and the rates switch there.
    """
    n = int(np.ceil(total_s / interval_s - 1e-9))
    grid = [min(k * interval_s, total_s) for k in range(n + 1)]
    if 0.0 < t_treat_s < total_s:
        grid.append(t_treat_s)
    return np.unique(np.asarray(grid, dtype=np.float64))


def _kmc_frame(engine: KMCEngine, lattice: lat.Lattice, a0: float) -> dict[str, Any]:
    from segsim import optics
    from segsim.rp import rp_observables

    s = engine.state
    occ = s.occupations
    counts = s.counts_by_name()
    depth = lat.depth_from_occupations(lattice, occ)
    obs = optics.observables(occ, lattice.coords, a0_angstrom=a0)
    rp_obs = rp_observables(
        occ, s.phase, lambda x: optics.vegard_a_angstrom(x, a0_angstrom=a0), lattice.nn
    )
    return {
        **rp_obs,
        "step": s.n_events,
        "time_s": s.time_s,
        "energy_ev": engine.total_energy_ev(),
        "n_pb": int(np.count_nonzero(occ == species.PB)),
        "n_cd": int(np.count_nonzero(occ == species.CD)),
        "n_vac": int(np.count_nonzero(occ == species.VAC)),
        "cd_expelled": counts["expel_cd"],
        "pb_expelled": counts["expel_pb"],
        "event_counts": s.counts.copy(),
        "total_rate_per_s": engine.total_rate_per_s,
        "cd_fraction_by_depth": cd_fraction_by_depth(occ, depth, lattice.n_layers),
        **{_obs_name(k): float(v) for k, v in obs.items()},
    }


def _kmc_checkpoint(engine: KMCEngine, frame: int, complete: bool) -> tuple[dict, dict]:
    s = engine.state
    arrays = {"occupations": s.occupations, "counts": s.counts, "phase": s.phase}
    attrs = {
        "step": s.n_events,
        "time_s": s.time_s,
        "frame": frame,
        "energy_ev": s.energy_ev,
        "rng_state": hdf5.rng_state_to_json(engine.rng.bit_generator.state),
        "complete": complete,
    }
    return arrays, attrs


def _kmc_interrupted(state: KMCState, out_path: Path) -> Interrupted:
    return Interrupted(
        f"stopped at t = {state.time_s / SECONDS_PER_DAY:.4f} d; "
        f"resume with: segsim run --resume {out_path}"
    )


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

    from segsim.progress import TimeProgress

    t_start = time.perf_counter()
    out_path = Path(out_path)
    model, lattice, tables = build_system(cfg)
    if lattice.n_edge < 3:
        raise ConfigError(cfg.source, "system.edge_nm", "KMC needs at least 3 B sites per edge")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(cfg.run.seed)))
    sink = hdf5.H5Sink(out_path)
    out = cfg.output
    ligand = cfg.passivation.ligand
    a0 = lattice.a_angstrom
    frame = 0
    if resume:
        arrays, attrs = _resume_checkpoint(out_path, lattice, rng)
        state = KMCState(
            occupations=arrays["occupations"].astype(np.uint8),
            time_s=float(attrs["time_s"]),
            n_events=int(attrs["step"]),
            counts=arrays["counts"].astype(np.int64),
            energy_ev=float(attrs["energy_ev"]),
            phase=arrays["phase"].astype(np.uint8),
        )
        frame = int(attrs["frame"])
        sink.truncate_to_step(state.n_events)
    else:
        occ, phase = synthesise(cfg, lattice, tables, rng)
        state = KMCState.initial(occ, tables, phase)
    kp_treat, kp_age, t_treat = kmc_parameter_vectors(cfg, tables, lattice, state.phase)
    ref = (float(kp_age[KP_REF]), float(kp_age[KP_REF + 1]), float(kp_age[KP_REC_REF]))
    engine = KMCEngine(tables, lattice, state, rng, kp_treat if state.time_s < t_treat else kp_age)
    total_s = cfg.run.duration_s
    times = kmc_frame_times(total_s, out.frame_interval_s, t_treat)
    n_frames = len(times) - 1

    if not resume:
        sink.create(
            config_yaml=cfg.to_yaml(),
            run_kind=cfg.run.kind,
            **_lattice_payload(lattice),
            trace_shapes=_kmc_trace_shapes(lattice),
            n_sites=lattice.n_sites,
            model_source=str(cfg.model.path),
            extra_metadata={
                "model_label": str(model.metadata.get("segsim_label", "")),
                "ligand": ligand.name,
                "theta": ligand.theta,
                "treatment_end_s": t_treat,
                "removal_reference_ev": np.asarray(ref),
                "recession_mu_csbr_ev": float(kp_age[KP_MU_REC]),
                "event_types": ",".join(EVENT_TYPE_NAMES),
            },
        )
        sink.append(
            _kmc_frame(engine, lattice, a0),
            snapshot=(0, state.occupations, state.phase) if out.snapshot_every_frames else None,
            checkpoint=_kmc_checkpoint(engine, 0, total_s <= 0),
        )

    bar = TimeProgress(total_s, start_s=state.time_s, enabled=progress)
    with _StopFlag() as flag:
        while frame < n_frames:
            t_next = times[frame + 1]
            while state.time_s < t_next and not flag.stop:
                engine.advance(t_next, max_events=KMC_CHUNK_EVENTS)
                x = state.counts[EV_EXPEL_CD]
                bar.update_time(state.time_s, state.n_events, extra=f"Cd out {x}")
                if walltime_s is not None and time.perf_counter() - t_start > walltime_s:
                    flag.stop = True
            if state.time_s < t_next:  # stopped inside a frame interval
                sink.checkpoint(*_kmc_checkpoint(engine, frame, False))
                bar.close()
                raise _kmc_interrupted(state, out_path)
            frame += 1
            done = frame >= n_frames
            if state.time_s >= t_treat and engine.kp is kp_treat and kp_treat is not kp_age:
                engine.set_parameters(kp_age)  # the ligand exchange is over (a frame time)
            if stop_at_time_s is not None and state.time_s >= stop_at_time_s:
                flag.stop = True
            snap = out.snapshot_every_frames and (frame % out.snapshot_every_frames == 0 or done)
            ckpt = done or flag.stop or frame % out.checkpoint_every_frames == 0
            sink.append(
                _kmc_frame(engine, lattice, a0),
                snapshot=(state.n_events, state.occupations, state.phase) if snap else None,
                checkpoint=_kmc_checkpoint(engine, frame, done) if ckpt else None,
            )
            if flag.stop and not done:
                bar.close()
                raise _kmc_interrupted(state, out_path)
    bar.update_time(state.time_s, state.n_events, force=True)
    bar.close()
    _check_drift(engine)
    last = hdf5.read_trace(out_path)
    return KMCSummary(
        path=out_path,
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


def _obs_name(key: str) -> str:
    """Trace name of an optics observable (``x`` is stored as ``x_cd``)."""
    return "x_cd" if key == "x" else key


#: RP observables written per frame (:func:`segsim.rp.rp_observables`).
RP_OBSERVABLE_KEYS = ("rp_fraction", "has_rp", "x_rp", "x_pv", "a_rp_angstrom", "a_pv_angstrom")


def _kmc_trace_shapes(lattice: lat.Lattice) -> dict[str, tuple[tuple[int, ...], str]]:
    from segsim import optics

    scalars_f = ("time_s", "energy_ev", "total_rate_per_s")
    scalars_i = ("step", "n_pb", "n_cd", "n_vac", "cd_expelled", "pb_expelled")
    shapes: dict[str, tuple[tuple[int, ...], str]] = dict.fromkeys(scalars_f, ((), "f8"))
    shapes.update(dict.fromkeys(scalars_i, ((), "i8")))
    shapes["event_counts"] = ((len(EVENT_TYPE_NAMES),), "i8")
    shapes["cd_fraction_by_depth"] = ((lattice.n_layers,), "f8")
    shapes.update({_obs_name(k): ((), "f8") for k in optics.OBSERVABLE_KEYS})
    shapes.update(dict.fromkeys(RP_OBSERVABLE_KEYS, ((), "f8")))
    return shapes


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
