"""Read-only observables of a state, and the observers that record them frame by frame.

Observers never mutate the state or write files: the run loop (:mod:`segsim.runloop`) calls
them at every frame and hands their values to the sink.  Each observer declares the trace
datasets it fills (:meth:`Observer.trace_shapes`), so the trace schema of a run is the union
of its observers' declarations (:func:`trace_shapes`), declared once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segsim import atomistic, optics, species
from segsim.lattice import depth_from_occupations


def cd_fraction_by_depth(occupations: np.ndarray, depth: np.ndarray, n_layers: int) -> np.ndarray:
    """Return the Cd fraction x = N_Cd / (N_Cd + N_Pb) in each depth layer (the profile).

    Parameters
    ----------
    occupations
        Species codes per site.
    depth
        Layer index per site (0 = surface shell; -1 = outside), e.g. ``Lattice.depth``.
    n_layers
        Number of layers to report; layers without cations give NaN.
    """
    inside = depth >= 0
    d = depth[inside]
    occ = occupations[inside]
    n_cd = np.bincount(d, weights=(occ == species.CD), minlength=n_layers)[:n_layers]
    n_cat = np.bincount(d, weights=(occ <= species.CD), minlength=n_layers)[:n_layers]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_cat > 0, n_cd / np.maximum(n_cat, 1), np.nan)


def composition(occupations: np.ndarray) -> dict[str, float]:
    """Return species counts and x = N_Cd / (N_Cd + N_Pb) of the whole crystal."""
    counts = np.bincount(occupations, minlength=species.N_SPECIES)
    n_pb, n_cd = int(counts[species.PB]), int(counts[species.CD])
    return {
        "n_pb": n_pb,
        "n_cd": n_cd,
        "n_vac": int(counts[species.VAC]),
        "x_cd": n_cd / (n_pb + n_cd) if n_pb + n_cd else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# Observers: what a run writes per frame.  Each declares the trace datasets it fills
# (name -> (per-frame shape, dtype)) and returns exactly those names from ``observe``.

#: Per-frame shape and dtype of one trace dataset.
TraceShape = tuple[tuple[int, ...], str]


@runtime_checkable
class Observer(Protocol):
    """What a run records at every frame (read-only; icet's observers, SPPARKS' diag).

    ``trace_shapes`` declares the trace datasets the observer fills; ``observe`` returns one
    value per declared name from the engine's current state, without changing it.
    """

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return ``name -> (per-frame shape, dtype)`` of the datasets this observer fills."""
        ...

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return ``name -> value`` for every declared name."""
        ...


def trace_shapes(observers: Sequence[Observer]) -> dict[str, TraceShape]:
    """Return the trace schema of a run: the union of its observers' declarations.

    Raises
    ------
    ValueError
        If two observers declare the same name.
    """
    shapes: dict[str, TraceShape] = {}
    for obs in observers:
        for name, shape in obs.trace_shapes().items():
            if name in shapes:
                raise ValueError(f"trace name {name!r} declared by two observers")
            shapes[name] = shape
    return shapes


def observe(observers: Sequence[Observer], engine: Any) -> dict[str, Any]:
    """Return one frame: every observer's values, merged."""
    frame: dict[str, Any] = {}
    for obs in observers:
        frame.update(obs.observe(engine))
    return frame


class MCStepObserver:
    """Canonical MC: step, energy (eV), acceptance of the last interval, accepted swaps."""

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return {
            "step": ((), "i8"),
            "energy_ev": ((), "f8"),
            "acceptance": ((), "f8"),
            "n_accepted": ((), "i8"),
        }

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        s = engine.state
        return {
            "step": s.step,
            "energy_ev": engine.tables.total_energy(s.occupations),
            "acceptance": engine.last_acceptance,
            "n_accepted": s.n_accepted,
        }


class DepthProfileObserver:
    """Cd fraction per depth layer (layer 0 = surface).

    Parameters
    ----------
    lattice
        The grid (:class:`segsim.lattice.Lattice`).
    moving_surface
        Measure depth from the current surface (:func:`segsim.lattice.depth_from_occupations`;
        KMC, where the surface recedes) instead of the synthesised NC's (``lattice.depth``).
    """

    def __init__(self, lattice: Any, *, moving_surface: bool) -> None:
        self.lattice = lattice
        self.moving_surface = moving_surface

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return {"cd_fraction_by_depth": ((self.lattice.n_layers,), "f8")}

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        lat, occ = self.lattice, engine.state.occupations
        depth = depth_from_occupations(lat, occ) if self.moving_surface else lat.depth
        return {"cd_fraction_by_depth": cd_fraction_by_depth(occ, depth, lat.n_layers)}


class KMCCountObserver:
    """KMC: events, time (s), energy (eV), species counts, expelled cations, total rate (1/s)."""

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        from segsim.kernels.kmc import EVENT_TYPE_NAMES  # numba: only when a KMC runs

        shapes: dict[str, TraceShape] = dict.fromkeys(
            ("time_s", "energy_ev", "total_rate_per_s"), ((), "f8")
        )
        shapes.update(
            dict.fromkeys(
                ("step", "n_pb", "n_cd", "n_vac", "cd_expelled", "pb_expelled"), ((), "i8")
            )
        )
        shapes["event_counts"] = ((len(EVENT_TYPE_NAMES),), "i8")
        return shapes

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        s = engine.state
        occ = s.occupations
        counts = s.counts_by_name()
        return {
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
        }


def _optics_name(key: str) -> str:
    """Trace name of an optics observable (``x`` is stored as ``x_cd``)."""
    return "x_cd" if key == "x" else key


class OpticsObserver:
    """Composition, PL peak, edge, lattice parameter, phase (:func:`segsim.optics.observables`).

    Parameters
    ----------
    lattice
        The grid.
    a0_angstrom
        Lattice constant of the model (Angstrom) for the Vegard relation.
    """

    def __init__(self, lattice: Any, a0_angstrom: float) -> None:
        self.lattice = lattice
        self.a0_angstrom = float(a0_angstrom)

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return {_optics_name(k): ((), "f8") for k in optics.OBSERVABLE_KEYS}

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        obs = optics.observables(
            engine.state.occupations, self.lattice.coords, a0_angstrom=self.a0_angstrom
        )
        return {_optics_name(k): float(v) for k, v in obs.items()}


#: RP observables written per frame (:func:`segsim.rp.rp_observables`).
RP_OBSERVABLE_KEYS = ("rp_fraction", "has_rp", "x_rp", "x_pv", "a_rp_angstrom", "a_pv_angstrom")


class RPObserver:
    """RP share, domain presence, Cd fraction and lattice parameter inside / outside RP."""

    def __init__(self, lattice: Any, a0_angstrom: float) -> None:
        self.lattice = lattice
        self.a0_angstrom = float(a0_angstrom)

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return dict.fromkeys(RP_OBSERVABLE_KEYS, ((), "f8"))

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        from segsim.rp import rp_observables  # numba (RP kernels): only when a KMC runs

        a0 = self.a0_angstrom
        s = engine.state
        return rp_observables(
            s.occupations,
            s.phase,
            lambda x: optics.vegard_a_angstrom(x, a0_angstrom=a0),
            self.lattice.nn,
        )


class SurfaceRatioObserver:
    """XPS-like Cs/(Pb+Cd) ratio of the outer 1.5 nm (:func:`segsim.atomistic.surface_cation_ratio`)."""

    def __init__(self, lattice: Any) -> None:
        self.lattice = lattice

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return {"cs_ratio_surface": ((), "f8")}

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        return {
            "cs_ratio_surface": atomistic.surface_cation_ratio(
                self.lattice, engine.state.occupations
            )
        }


def mc_observers(lattice: Any) -> list[Observer]:
    """Return the observers of a canonical MC run (the MC trace schema)."""
    return [MCStepObserver(), DepthProfileObserver(lattice, moving_surface=False)]


def kmc_observers(lattice: Any) -> list[Observer]:
    """Return the observers of a KMC run (the KMC trace schema)."""
    a0 = lattice.a_angstrom
    return [
        KMCCountObserver(),
        DepthProfileObserver(lattice, moving_surface=True),
        OpticsObserver(lattice, a0),
        RPObserver(lattice, a0),
        SurfaceRatioObserver(lattice),
    ]
