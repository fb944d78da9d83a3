"""Read-only observables of a state, and the observers that record them frame by frame.

Observers never mutate the state or write files: the run loop (:mod:`segsim.runloop`) calls
them at every frame and hands their values to the sink.  Each observer declares the trace
datasets it fills (:meth:`Observer.trace_shapes`), so the trace schema of a run is the union
of its observers' declarations (:func:`trace_shapes`), declared once.

Hollowness
----------
``edge_nm`` (:func:`segsim.optics.nc_edge_nm`) is the edge of a cube of the *occupied* sites,
``a(x) N_occ^(1/3)``: it falls when a NC loses cations, whether the NC shrinks or turns
hollow under an unchanged outline.  Two observables tell these apart
(:class:`VacancyObserver`, :class:`EnvelopeObserver`):

* an **interior vacancy** is a V site none of whose six nearest neighbours is outside (O)
  (:func:`interior_vacancy_mask`); every other V site is a **surface vacancy**.  The
  **interior vacancy fraction** is the number of interior vacancies divided by the number of
  crystal B sites (Pb + Cd + V), in total and per depth layer;
* the **envelope edge** is the extent of the crystal, not a cube root of a count: the mean
  over the three axes of ``max - min + 1`` of the grid coordinates of the crystal sites
  (Pb, Cd, V), in sites, times ``a(x)`` (:func:`envelope_extent_sites`,
  :func:`envelope_edges_nm`); the *occupied envelope edge* is the same over the Pb and Cd
  sites only.  A hollow NC keeps its envelope edge while ``edge_nm`` falls; a shrunk one
  loses both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segsim import atomistic, optics, species
from segsim.lattice import depth_from_occupations
from segsim.units import ANGSTROM_PER_NM


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


def interior_vacancy_mask(occupations: np.ndarray, nn: np.ndarray) -> np.ndarray:
    """Return True at every interior vacancy: a V site with no outside (O) nearest neighbour.

    Parameters
    ----------
    occupations
        Species codes per site, shape ``(n_sites,)``.
    nn
        Nearest-neighbour table, shape ``(n_sites, 6)`` (:attr:`segsim.lattice.Lattice.nn`).

    Returns
    -------
    numpy.ndarray
        Boolean mask, shape ``(n_sites,)``.  V sites with at least one O neighbour (surface
        vacancies) and all non-V sites are False.
    """
    occ = np.asarray(occupations)
    vac = occ == species.VAC
    mask = np.zeros(occ.shape[0], dtype=bool)
    mask[vac] = ~np.any(occ[nn[vac]] == species.OUT, axis=1)
    return mask


def vacancy_observables(
    occupations: np.ndarray, nn: np.ndarray, depth: np.ndarray, n_layers: int
) -> dict[str, Any]:
    """Return the interior and surface vacancy counts and the interior vacancy fraction.

    Parameters
    ----------
    occupations
        Species codes per site.
    nn
        Nearest-neighbour table (:attr:`segsim.lattice.Lattice.nn`).
    depth
        Layer index per site (0 = surface shell; -1 = outside), e.g. ``Lattice.depth`` or
        :func:`segsim.lattice.depth_from_occupations`.
    n_layers
        Number of depth layers to report.

    Returns
    -------
    dict
        ``n_vac_interior`` and ``n_vac_surface`` (int; they add up to the number of V sites);
        ``interior_vacancy_fraction``: ``n_vac_interior / (N_Pb + N_Cd + N_V)`` (NaN without
        crystal sites); ``interior_vacancy_fraction_by_depth``: the same per depth layer,
        interior vacancies of the layer over crystal sites of the layer (NaN for a layer
        without crystal sites), shape ``(n_layers,)``.  Summed over the layers, the fraction
        times the layer's crystal sites gives ``n_vac_interior``.
    """
    occ = np.asarray(occupations)
    interior = interior_vacancy_mask(occ, nn)
    n_int = int(np.count_nonzero(interior))
    n_vac = int(np.count_nonzero(occ == species.VAC))
    crystal = species.in_crystal(occ)
    n_crystal = int(np.count_nonzero(crystal))
    inside = crystal & (depth >= 0)
    d = depth[inside]
    n_int_l = np.bincount(d, weights=interior[inside], minlength=n_layers)[:n_layers]
    n_cry_l = np.bincount(d, minlength=n_layers)[:n_layers]
    with np.errstate(invalid="ignore", divide="ignore"):
        by_depth = np.where(n_cry_l > 0, n_int_l / np.maximum(n_cry_l, 1), np.nan)
    return {
        "n_vac_interior": n_int,
        "n_vac_surface": n_vac - n_int,
        "interior_vacancy_fraction": n_int / n_crystal if n_crystal else float("nan"),
        "interior_vacancy_fraction_by_depth": by_depth,
    }


def envelope_extent_sites(
    occupations: np.ndarray, coords: np.ndarray, codes: Sequence[int]
) -> float:
    """Return the mean over the three axes of ``max - min + 1`` of the sites with ``codes``.

    The extent, in sites, of the bounding box of the sites whose species is one of
    ``codes``: for a full ``n``-site cube ``n``, for a cube with a cavity still ``n``.  The
    NC must not wrap around the periodic boundary of the grid (segsim's grids never do).

    Parameters
    ----------
    occupations
        Species codes per site, shape ``(n_sites,)``.
    coords
        Integer grid coordinates per site, shape ``(n_sites, 3)``.
    codes
        Species codes counted (e.g. Pb, Cd, V for the crystal).

    Returns
    -------
    float
        The mean extent in sites; 0.0 if no site has one of ``codes``.
    """
    sel = np.isin(np.asarray(occupations), np.asarray(codes))
    if not sel.any():
        return 0.0
    c = np.asarray(coords)[sel].astype(np.int64)
    return float(np.mean(c.max(axis=0) - c.min(axis=0) + 1))


def envelope_edges_nm(
    occupations: np.ndarray, coords: np.ndarray, a0_angstrom: float | None = None
) -> dict[str, float]:
    """Return the envelope edges (nm) of the crystal and of its occupied sites.

    ``envelope_edge_nm`` is :func:`envelope_extent_sites` of the crystal sites (Pb, Cd, V)
    times the Vegard lattice parameter ``a(x)`` of the whole-crystal Cd fraction
    ``x = N_Cd / (N_Pb + N_Cd)``, the ``a`` that ``edge_nm`` uses
    (:func:`segsim.optics.nc_edge_nm`; ``a0`` if the crystal has no cation), converted to
    nm.  ``occupied_envelope_edge_nm`` is the same over the Pb and Cd sites only.  Either is
    0.0 if there are no such sites.  This is the outline of the crystal, not the exciton
    envelope of :func:`segsim.optics.exciton_weights`.

    Parameters
    ----------
    occupations
        Species codes per site.
    coords
        Integer grid coordinates per site (:attr:`segsim.lattice.Lattice.coords`).
    a0_angstrom
        Vegard ``a0`` in Angstrom; default see :func:`segsim.optics.vegard_a_angstrom`.
    """
    occ = np.asarray(occupations)
    n_pb = int(np.count_nonzero(occ == species.PB))
    n_cd = int(np.count_nonzero(occ == species.CD))
    x = n_cd / (n_pb + n_cd) if n_pb + n_cd else 0.0
    a_nm = float(optics.vegard_a_angstrom(x, a0_angstrom=a0_angstrom)) / ANGSTROM_PER_NM
    crystal = (species.PB, species.CD, species.VAC)
    return {
        "envelope_edge_nm": a_nm * envelope_extent_sites(occ, coords, crystal),
        "occupied_envelope_edge_nm": a_nm
        * envelope_extent_sites(occ, coords, (species.PB, species.CD)),
    }


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
        depth = layer_depth(lat, occ, moving_surface=self.moving_surface)
        return {"cd_fraction_by_depth": cd_fraction_by_depth(occ, depth, lat.n_layers)}


def layer_depth(lattice: Any, occupations: np.ndarray, *, moving_surface: bool) -> np.ndarray:
    """Return the depth layer of every site (0 = surface shell, -1 = outside).

    Parameters
    ----------
    lattice
        The grid.
    occupations
        Species codes per site.
    moving_surface
        Below the current surface (:func:`segsim.lattice.depth_from_occupations`, as KMC
        runs use) instead of below the synthesised NC's surface (``lattice.depth``).
    """
    return depth_from_occupations(lattice, occupations) if moving_surface else lattice.depth


class VacancyObserver:
    """Interior and surface vacancies, interior vacancy fraction in total and per depth layer.

    Values: :func:`vacancy_observables`.  The depth layers are those of the run's Cd profile
    (:class:`DepthProfileObserver` with the same ``moving_surface``); a KMC run uses the
    depth below the current surface (:func:`segsim.lattice.depth_from_occupations`), with
    ``moving_surface=False`` it is the depth below the synthesised NC's surface
    (``lattice.depth``).  With the moving surface, layer 0 is every crystal site with an O
    site among its 26 neighbours, so an interior vacancy (no O among its 6 nearest
    neighbours) can lie in layer 0 next to an edge, a corner or a pit.

    Parameters
    ----------
    lattice
        The grid (:class:`segsim.lattice.Lattice`).
    moving_surface
        Measure depth from the current surface instead of the synthesised NC's.
    """

    def __init__(self, lattice: Any, *, moving_surface: bool) -> None:
        self.lattice = lattice
        self.moving_surface = moving_surface

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return {
            "n_vac_interior": ((), "i8"),
            "n_vac_surface": ((), "i8"),
            "interior_vacancy_fraction": ((), "f8"),
            "interior_vacancy_fraction_by_depth": ((self.lattice.n_layers,), "f8"),
        }

    def from_occupations(self, occupations: np.ndarray) -> dict[str, Any]:
        """Return the values for the occupations of one frame (also of a stored snapshot)."""
        lat = self.lattice
        depth = layer_depth(lat, occupations, moving_surface=self.moving_surface)
        return vacancy_observables(occupations, lat.nn, depth, lat.n_layers)

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        return self.from_occupations(engine.state.occupations)


class EnvelopeObserver:
    """Envelope edges (nm) of the crystal and of its occupied sites (:func:`envelope_edges_nm`).

    Parameters
    ----------
    lattice
        The grid.
    a0_angstrom
        Vegard ``a0`` in Angstrom, the one ``edge_nm`` uses (:class:`OpticsObserver`).
    """

    def __init__(self, lattice: Any, a0_angstrom: float) -> None:
        self.lattice = lattice
        self.a0_angstrom = float(a0_angstrom)

    def trace_shapes(self) -> dict[str, TraceShape]:
        """Return the declared datasets."""
        return dict.fromkeys(("envelope_edge_nm", "occupied_envelope_edge_nm"), ((), "f8"))

    def from_occupations(self, occupations: np.ndarray) -> dict[str, Any]:
        """Return the values for the occupations of one frame (also of a stored snapshot)."""
        return envelope_edges_nm(occupations, self.lattice.coords, a0_angstrom=self.a0_angstrom)

    def observe(self, engine: Any) -> dict[str, Any]:
        """Return the values of one frame."""
        return self.from_occupations(engine.state.occupations)


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


def hollowness_observers(lattice: Any, run_kind: str) -> list[VacancyObserver | EnvelopeObserver]:
    """Return the interior-vacancy and envelope observers of a run of kind ``run_kind``.

    ``"kmc"``: :class:`VacancyObserver` with the depth of the KMC Cd profile (below the
    current surface) and :class:`EnvelopeObserver` with the ``a0`` of ``edge_nm``.  Any other
    kind (canonical MC): none.  Canonical MC places no vacancies (``system.vacancy_fraction``
    is a KMC option) and swaps Pb and Cd only, so its vacancy counts are always zero and its
    outline never changes; its trace has no ``edge_nm`` either.
    """
    if run_kind == "kmc":
        return [
            VacancyObserver(lattice, moving_surface=True),
            EnvelopeObserver(lattice, lattice.a_angstrom),
        ]
    return []


def hollowness(lattice: Any, run_kind: str, occupations: np.ndarray) -> dict[str, Any]:
    """Return what :func:`hollowness_observers` would record for ``occupations``.

    The recomputation of those trace values from a stored snapshot (``segsim info`` on old
    files, :mod:`segsim.invariants`).
    """
    out: dict[str, Any] = {}
    for obs in hollowness_observers(lattice, run_kind):
        out.update(obs.from_occupations(occupations))
    return out


def mc_observers(lattice: Any) -> list[Observer]:
    """Return the observers of a canonical MC run (the MC trace schema)."""
    return [
        MCStepObserver(),
        DepthProfileObserver(lattice, moving_surface=False),
        *hollowness_observers(lattice, "canonical_mc"),  # none: see hollowness_observers
    ]


def kmc_observers(lattice: Any) -> list[Observer]:
    """Return the observers of a KMC run (the KMC trace schema)."""
    a0 = lattice.a_angstrom
    return [
        KMCCountObserver(),
        DepthProfileObserver(lattice, moving_surface=True),
        OpticsObserver(lattice, a0),
        RPObserver(lattice, a0),
        SurfaceRatioObserver(lattice),
        *hollowness_observers(lattice, "kmc"),
    ]
