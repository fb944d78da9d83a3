"""Relaxations and climbing-image nudged elastic bands of one path (ASE).

:func:`run_path` relaxes the three end points of a path (:mod:`segsim.barriers.paths`) at
fixed cell, builds the band (IDPP interpolation, minimum image), relaxes it with a climbing
image and returns a JSON record with every energy and the band's geometry.  Energies in eV,
forces in eV/Angstrom, lengths in Angstrom.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms

from segsim.barriers.paths import Endpoints

__all__ = ["NEBSettings", "cubic_lattice_constant", "relax_positions", "run_path"]


@dataclass(frozen=True)
class NEBSettings:
    """How a band is built and relaxed (part of every record).

    Attributes
    ----------
    n_images
        Intermediate images (>= 1).
    fmax_ev_per_angstrom
        Convergence of the band (largest force on any image, climbing image included).
    max_steps
        Optimizer steps of the band.
    optimizer
        ``"FIRE"``, ``"BFGS"`` or ``"MDMin"`` (ASE; the band and the end points).
    climb
        Climbing image (the highest image climbs to the saddle).
    spring_ev_per_angstrom2
        Spring constant of the band.
    relax_fmax_ev_per_angstrom
        Convergence of the end-point relaxations.
    relax_max_steps
        Optimizer steps of each end-point relaxation.
    pre_relax_fmax_ev_per_angstrom
        Staged band protocol (None = off): the band is first relaxed *without* the climbing
        image to this force, then the highest image climbs to ``fmax_ev_per_angstrom``.  A
        band that starts climbing from the interpolation can fly off when its images find
        lower states beside the path (the cubic perovskite is a saddle of the octahedral
        tilts); a relaxed band gives the climb a tangent first.  Both stages share
        ``max_steps``.
    max_step_angstrom
        Largest displacement of an atom per optimizer step of the band (ASE ``maxstep``;
        None = ASE's default, 0.2 Angstrom).
    abort_above_ev
        Stop the band when an image rises this far above the IS (eV; None = never): a band
        whose atoms start to collide is stopped early and marked ``band_aborted`` instead of
        running its remaining steps.

    Notes
    -----
    The staged-protocol fields and ``abort_above_ev`` are left out of a record's key while
    they are None, so the records made before they existed keep their keys.
    """

    n_images: int = 5
    fmax_ev_per_angstrom: float = 0.05
    max_steps: int = 400
    optimizer: str = "FIRE"
    climb: bool = True
    spring_ev_per_angstrom2: float = 0.1
    relax_fmax_ev_per_angstrom: float = 0.02
    relax_max_steps: int = 500
    pre_relax_fmax_ev_per_angstrom: float | None = None
    max_step_angstrom: float | None = None
    abort_above_ev: float | None = None

    def __post_init__(self) -> None:
        if self.n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {self.n_images}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("fmax_ev_per_angstrom", "spring_ev_per_angstrom2",
                     "relax_fmax_ev_per_angstrom"):  # fmt: skip
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value}")
        for name in ("pre_relax_fmax_ev_per_angstrom", "max_step_angstrom", "abort_above_ev"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and np.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a finite positive number or null, got {value}")
        if (
            self.pre_relax_fmax_ev_per_angstrom is not None
            and self.pre_relax_fmax_ev_per_angstrom < self.fmax_ev_per_angstrom
        ):
            raise ValueError("pre_relax_fmax_ev_per_angstrom must be >= fmax_ev_per_angstrom")
        if self.max_steps < 1 or self.relax_max_steps < 0:
            raise ValueError("max_steps must be >= 1 and relax_max_steps >= 0")


#: Optimizers of the band and the end points (ASE).
OPTIMIZERS = ("FIRE", "BFGS", "MDMin")


def _optimizer(name: str) -> Any:
    from ase import optimize

    return {"FIRE": optimize.FIRE, "BFGS": optimize.BFGS, "MDMin": optimize.MDMin}[name]


def _fmax(forces: np.ndarray) -> float:
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0


def relax_positions(atoms: Atoms, calc: Any, settings: NEBSettings) -> dict[str, Any]:
    """Relax the positions of ``atoms`` at fixed cell (in place); return a summary.

    Returns
    -------
    dict
        ``energy_ev``, ``fmax_ev_per_angstrom``, ``n_steps``, ``converged``.
    """
    atoms.calc = calc
    n_steps = 0
    if settings.relax_max_steps:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = _optimizer(settings.optimizer)(atoms, logfile=None)
            opt.run(fmax=settings.relax_fmax_ev_per_angstrom, steps=settings.relax_max_steps)
            n_steps = int(opt.nsteps)
    fmax = _fmax(atoms.get_forces())
    return {
        "energy_ev": float(atoms.get_potential_energy()),
        "fmax_ev_per_angstrom": fmax,
        "n_steps": n_steps,
        "converged": bool(fmax <= settings.relax_fmax_ev_per_angstrom * (1 + 1e-9)),
    }


def cubic_lattice_constant(calc: Any, *, a0_angstrom: float = 5.9) -> float:
    """Return the calculator's lattice constant (Angstrom) of cubic CsPbBr3 (Pm-3m).

    The five-atom cell is relaxed isotropically (atoms on their symmetric positions: the
    forces vanish by symmetry, only the volume changes): the aristotype that the lattice model
    and every path start from.
    """
    from ase import optimize
    from ase.filters import FrechetCellFilter

    atoms = cubic_perovskite(a0_angstrom)
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filt = FrechetCellFilter(atoms, hydrostatic_strain=True)
        optimize.BFGS(filt, logfile=None).run(fmax=1e-3, steps=200)
    return float(np.cbrt(atoms.get_volume()))


def tilted_lattice_constant(
    calc: Any, tilt_degrees: tuple[float, float], a0_angstrom: float
) -> float:
    """Return the pseudo-cubic lattice constant (Angstrom) of a-a-c+ tilted CsPbBr3.

    A 2x2x2 cell (40 atoms) with the tilt imposed is relaxed, positions and cell (Frechet
    filter); the result is ``(V / 8)^(1/3)``.
    """
    from ase import optimize
    from ase.filters import FrechetCellFilter

    from segsim.training.tilt import apply_glazer_tilt

    atoms = cubic_perovskite(a0_angstrom).repeat((2, 2, 2))
    apply_glazer_tilt(atoms, *tilt_degrees)
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimize.BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=5e-3, steps=400)
    return float(np.cbrt(atoms.get_volume() / 8.0))


def cubic_perovskite(a: float) -> Atoms:
    """Return the five-atom cubic CsPbBr3 cell (Pm-3m) with lattice constant ``a`` (Angstrom)."""
    frac = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)]
    return Atoms("PbCsBr3", scaled_positions=frac, cell=np.eye(3) * a, pbc=True)


def _seed_images(images: list[Atoms], seed: list[Atoms]) -> None:
    """Set the interior images' positions from ``seed`` (scaled to this cell), in place."""
    if len(seed) != len(images) or any(
        s.get_chemical_symbols() != images[0].get_chemical_symbols() for s in seed
    ):
        raise ValueError("the seed band does not match the path (images or atoms differ)")
    for im, src in zip(images[1:-1], seed[1:-1], strict=True):
        im.set_scaled_positions(src.get_scaled_positions(wrap=False))


#: Optimizer steps between two progress lines of a band.
PROGRESS_EVERY = 25


class BandDiverged(RuntimeError):
    """An image of the band rose above ``NEBSettings.abort_above_ev``."""


def _attach_progress(
    opt: Any, band: Any, images: list[Atoms], say: Any, stage: str, abort_above_ev: float | None
) -> None:
    """Report the band's progress and stop it when it diverges.

    Every :data:`PROGRESS_EVERY` steps a line (step, force, top and lowest image); at any
    step :class:`BandDiverged` when an image rises ``abort_above_ev`` above the IS.  Reads the
    forces and energies the optimizer has just computed (no extra calculation).
    """

    def report() -> None:
        energies = getattr(band, "energies", None)
        if energies is None:
            return
        top = float(np.max(energies[1:-1]) - energies[0])
        if abort_above_ev is not None and top > abort_above_ev:
            say(f"{stage}: step {opt.nsteps}, top image {top:+.3f} eV: band stopped (diverged)")
            raise BandDiverged(f"top image {top:.3f} eV above the IS")
        if opt.nsteps == 0 or opt.nsteps % PROGRESS_EVERY:
            return
        inner = np.asarray(energies[1:-1]) - energies[0]
        say(
            f"{stage}: step {opt.nsteps}, fmax {_last_fmax(band):.3f} eV/A, "
            f"top image {inner.max():+.3f} eV, lowest {inner.min():+.3f} eV"
        )

    opt.attach(report, interval=1)


def _watch_forces(band: Any) -> None:
    """Make ``band`` remember the largest NEB force of its last force call (no extra work)."""
    compute = band.get_forces

    def get_forces() -> np.ndarray:
        forces = compute()
        band.segsim_fmax = _fmax(forces)
        return forces

    band.get_forces = get_forces


def _last_fmax(band: Any) -> float:
    return float(getattr(band, "segsim_fmax", float("nan")))


def _freeze_end_points(images: list[Atoms]) -> None:
    """Give the relaxed end points their energy and forces as fixed results.

    ASE's NEB asks the end points for their energy at every step; with one calculator shared
    by all images that is two extra evaluations per step (the calculator last saw another
    image).  The end points do not move, so their relaxed results are exact.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    for im in (images[0], images[-1]):
        energy = float(im.get_potential_energy())
        forces = im.get_forces(apply_constraint=False)
        im.calc = SinglePointCalculator(im, energy=energy, forces=forces)


def _place(atoms: Atoms, indices: np.ndarray, positions: np.ndarray) -> None:
    """Put the atoms ``indices`` at ``positions`` (Angstrom), whatever their constraints."""
    pos = atoms.get_positions()
    pos[indices] = positions
    atoms.set_positions(pos, apply_constraint=False)


def _band_energies(images: list[Atoms]) -> np.ndarray:
    return np.array([float(im.get_potential_energy()) for im in images])


def run_path(
    endpoints: Endpoints,
    calc: Any,
    settings: NEBSettings,
    *,
    log: Any = None,
    seed_band: list[Atoms] | None = None,
) -> tuple[dict[str, Any], list[Atoms]]:
    """Relax the end points of a path and run its climbing-image NEB.

    Parameters
    ----------
    endpoints
        The path's end points (:func:`segsim.barriers.paths.build_endpoints`).
    calc
        ASE calculator (shared by all images; they are evaluated one after the other).
    settings
        Band and relaxation settings.
    log
        Optional callable ``log(str)`` for progress lines.
    seed_band
        Optional band of the same path (same atoms and order, ``n_images + 2`` images, e.g.
        another calculator's relaxed band): its interior images, with the cell scaled to
        this path's cell, start the band instead of the IDPP interpolation.  The end points
        are relaxed with ``calc`` as always; only the start of the band changes, so a
        converged band is the same saddle, reached in fewer steps.

    Notes
    -----
    With frozen atoms (``endpoints.frozen``, a surface path's far field) the IS is relaxed
    whole; the FS, the FS' and every image then hold the frozen atoms where the relaxed IS has
    them (ASE ``FixAtoms``), and the record says how many (``frozen_atoms``).  What the
    constraint costs is measured on FS': relaxed on without it from its constrained minimum,
    ``relax_fs_canonical["freeze_bias_ev"]`` is how much the frozen far field raises it.

    Returns
    -------
    tuple
        ``(record, images)``: the JSON record (energies in eV relative to nothing: absolute
        calculator energies, and the derived barriers) and the relaxed band, IS to FS.
        Derived quantities: ``e_forward_ev = E_saddle - E_IS``, ``e_backward_ev = E_saddle
        - E_FS``, ``e_split_ev = E_FS - E_IS`` (the elementary hop's reaction energy),
        ``de_lattice_ev = E_FS' - E_IS`` (the lattice event's energy change) and
        ``e_kra_ev = E_saddle - (E_IS + E_FS') / 2``: the kinetically resolved barrier of
        the lattice event, measured from the two canonical states.
    """
    from ase.mep import NEB

    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    initial = endpoints.initial.copy()
    final = endpoints.final.copy()
    canonical = endpoints.canonical_final.copy()
    r_is = relax_positions(initial, calc, settings)
    say(f"IS {r_is['energy_ev']:.4f} eV ({r_is['n_steps']} steps)")
    frozen = endpoints.frozen
    if frozen.size:  # the far field of the relaxed IS, held in FS, FS' and every image
        from ase.constraints import FixAtoms

        pairs = endpoints.canonical_frozen
        _place(final, frozen, initial.positions[frozen])
        _place(canonical, pairs[:, 0], initial.positions[pairs[:, 1]])
        for atoms, idx in ((initial, frozen), (final, frozen), (canonical, pairs[:, 0])):
            atoms.set_constraint(FixAtoms(indices=idx))
        say(f"{frozen.size} of {len(initial)} atoms frozen beyond "
            f"{endpoints.freeze_beyond_angstrom:.2f} A of the hop")  # fmt: skip
    r_fs = relax_positions(final, calc, settings)
    say(f"FS {r_fs['energy_ev']:.4f} eV ({r_fs['n_steps']} steps)")
    r_can = relax_positions(canonical, calc, settings)
    say(f"FS' {r_can['energy_ev']:.4f} eV ({r_can['n_steps']} steps)")
    if frozen.size:  # what the frozen far field costs: FS' relaxed on without it
        released = canonical.copy()
        released.set_constraint()
        r_can["released"] = relax_positions(released, calc, settings)
        r_can["freeze_bias_ev"] = r_can["energy_ev"] - r_can["released"]["energy_ev"]
        say(f"FS' released: {r_can['released']['energy_ev']:.4f} eV "
            f"(freezing costs {r_can['freeze_bias_ev']:+.4f} eV)")  # fmt: skip

    images = [initial]
    for _ in range(settings.n_images):
        im = initial.copy()
        im.calc = calc
        images.append(im)
    images.append(final)
    final.calc = calc
    _freeze_end_points(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        band = NEB(
            images,
            k=settings.spring_ev_per_angstrom2,
            climb=settings.climb,
            method="improvedtangent",
            allow_shared_calculator=True,
        )
        if seed_band is None:
            band.interpolate(method="idpp", mic=bool(initial.pbc.all()))
        else:
            _seed_images(images, seed_band)
        if frozen.size:  # whatever the start, the frozen atoms are the IS's
            for im in images[1:-1]:
                _place(im, frozen, initial.positions[frozen])
        _watch_forces(band)
        extra = (
            {} if settings.max_step_angstrom is None else {"maxstep": settings.max_step_angstrom}
        )
        n_steps = 0
        relaxed_band = None
        converged = aborted = False
        abort = settings.abort_above_ev
        try:
            if settings.pre_relax_fmax_ev_per_angstrom is not None and settings.climb:
                band.climb = False  # stage 1: a relaxed band without the climbing image
                opt = _optimizer(settings.optimizer)(band, logfile=None, **extra)
                _attach_progress(opt, band, images, say, "relaxing", abort)
                opt.run(fmax=settings.pre_relax_fmax_ev_per_angstrom, steps=settings.max_steps)
                n_steps = int(opt.nsteps)
                relaxed_band = [float(e) for e in band.energies]
                say(f"band relaxed without climbing in {n_steps} steps")
                band.climb = True
            opt = _optimizer(settings.optimizer)(band, logfile=None, **extra)
            _attach_progress(opt, band, images, say, "climbing" if settings.climb else "relaxing",
                             abort)  # fmt: skip
            converged = bool(
                opt.run(
                    fmax=settings.fmax_ev_per_angstrom, steps=max(settings.max_steps - n_steps, 1)
                )
            )
        except BandDiverged:
            aborted = True
        n_steps += int(opt.nsteps)
    band_fmax = _fmax(band.get_forces())
    energies = _band_energies(images)
    i_top = int(np.argmax(energies[1:-1])) + 1
    e_is, e_fs, e_can = r_is["energy_ev"], r_fs["energy_ev"], r_can["energy_ev"]
    e_sad = float(energies[i_top])
    step = (
        images[i_top].get_positions()[endpoints.mover_index]
        - initial.get_positions()[endpoints.mover_index]
    )
    if initial.pbc.all():  # minimum image: a wrapped coordinate is no displacement
        from ase.geometry import find_mic

        step = find_mic(step[None, :], initial.cell, pbc=True)[0][0]
    disp = np.linalg.norm(step)
    record = {
        "path": endpoints.spec.name,
        "location": endpoints.spec.location,
        "mover": endpoints.spec.mover,
        "mechanism": endpoints.spec.mechanism,
        "n_cd": endpoints.spec.n_cd,
        "n_atoms": len(initial),
        "formula": initial.get_chemical_formula(),
        "sites": endpoints.sites,
        "hop_vector_angstrom": [float(x) for x in endpoints.hop_vector_angstrom],
        "settings": asdict(settings),
        "relax_is": r_is,
        "relax_fs": r_fs,
        "relax_fs_canonical": r_can,
        "band_energies_ev": [float(e) for e in energies],
        "climbing_image": i_top,
        "band_converged": converged,
        "band_aborted": aborted,
        "relaxed_band_energies_ev": relaxed_band,
        "band_steps": n_steps,
        "band_fmax_ev_per_angstrom": band_fmax,
        "mover_displacement_at_saddle_angstrom": float(disp),
        "e_is_ev": e_is,
        "e_fs_ev": e_fs,
        "e_fs_canonical_ev": e_can,
        "e_saddle_ev": e_sad,
        "e_forward_ev": e_sad - e_is,
        "e_backward_ev": e_sad - e_fs,
        "e_split_ev": e_fs - e_is,
        "de_lattice_ev": e_can - e_is,
        "e_kra_ev": e_sad - 0.5 * (e_is + e_can),
        "band_start": "idpp" if seed_band is None else "seed band",
        "freeze_beyond_angstrom": endpoints.freeze_beyond_angstrom,
        "frozen_atoms": int(frozen.size),
        "seconds": time.perf_counter() - t0,
    }
    say(
        f"band {'converged' if converged else 'NOT converged'} in {n_steps} steps, "
        f"fmax {band_fmax:.3f}: E_fwd {record['e_forward_ev']:.3f} eV, "
        f"E_KRA {record['e_kra_ev']:.3f} eV"
    )
    return record, images
