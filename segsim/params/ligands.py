"""Surface passivation: the ligand library and the open-channel factor of Cd expulsion.

Fast-variable elimination (MODEL.md section 3): ligand adsorption/desorption is much faster
than every cation event, so the ligand shell is not simulated event by event.  On the time
scale of Cd motion each surface AX (CsBr-type) site is passivated with the quasi-equilibrium
probability ``theta`` of the ligand, independently of the others.  A surface B site with
``k`` outside neighbours has ``k`` AX exit channels and its cation can leave only through an
open one, so its expulsion rate carries the factor ``1 - theta**k``
(:func:`expulsion_channel_factor`; ``k = 0``, an interior site, gives 0).

A ligand is therefore described by ``theta`` plus what its exchange treatment does to the
Ruddlesden-Popper domains (``rp_barrier_shift_ev`` for ``treatment_duration_s`` seconds).
The six treatments of the published study are in ``potentials/ligands.yaml`` (with the
reasoning and sources of their calibration); an input file names one of them or defines its
own (:func:`resolve_ligand`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsim.params.files import DEFAULT_LIGANDS, ConfigError, read_yaml

#: The shipped ligand library.
DEFAULT_LIBRARY_PATH: Path = DEFAULT_LIGANDS

#: Fields of a ligand entry in ``potentials/ligands.yaml``.
LIGAND_KEYS: tuple[str, ...] = (
    "label",
    "theta",
    "rp_barrier_shift_ev",
    "treatment_duration_s",
    "source",
)

#: Keys of a user-defined ligand mapping in an input file.
USER_LIGAND_KEYS: tuple[str, ...] = ("name", "base", *LIGAND_KEYS)


@dataclass(frozen=True)
class Ligand:
    """One surface treatment.

    Attributes
    ----------
    name
        Short name (library key, e.g. ``ddabr``).
    label
        Human-readable name of the ligand / treatment.
    theta
        Quasi-equilibrium passivated fraction of surface AX sites, in [0, 1].
    rp_barrier_shift_ev
        How much the exchange treatment lowers the RP -> perovskite barrier of
        surface-adjacent sites while it acts, in eV (>= 0; 0 for no treatment).
    treatment_duration_s
        How long that effect lasts, in s (>= 0; 0 for no treatment).
    source
        Where the numbers come from.
    """

    name: str
    label: str
    theta: float
    rp_barrier_shift_ev: float = 0.0
    treatment_duration_s: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.theta <= 1.0:
            raise ValueError(f"theta must be in [0, 1], got {self.theta}")
        if not (math.isfinite(self.rp_barrier_shift_ev) and self.rp_barrier_shift_ev >= 0.0):
            raise ValueError(f"rp_barrier_shift_ev must be >= 0, got {self.rp_barrier_shift_ev}")
        if not (math.isfinite(self.treatment_duration_s) and self.treatment_duration_s >= 0.0):
            raise ValueError(f"treatment_duration_s must be >= 0, got {self.treatment_duration_s}")

    @property
    def physics(self) -> tuple[float, float, float]:
        """Return what of the ligand enters a run: ``(theta, shift_ev, duration_s)``.

        Two ligands with equal values give identical trajectories: the name, label and
        source enter no rate and no random number.
        """
        return (self.theta, self.rp_barrier_shift_ev, self.treatment_duration_s)

    def channel_factor(self, k: int | np.ndarray) -> float | np.ndarray:
        """Return ``1 - theta**k`` for a site with ``k`` outside neighbours."""
        return expulsion_channel_factor(self.theta, k)


def expulsion_channel_factor(theta: float, k: int | np.ndarray) -> float | np.ndarray:
    """Return the probability ``1 - theta**k`` that a surface site has an open exit channel.

    Parameters
    ----------
    theta
        Passivated fraction of surface AX sites, in [0, 1].
    k
        Number of outside neighbours of the site (0 interior, 1 face, 2 edge, 3 corner, up
        to 6); scalar or integer array.

    Returns
    -------
    float or numpy.ndarray
        The factor, in [0, 1], the shape of ``k``; 0 for ``k = 0`` whatever ``theta``
        (also for ``theta = 0``: an interior site has no channel).

    Raises
    ------
    ValueError
        If ``theta`` is outside [0, 1] or any ``k`` is outside 0..6.
    """
    th = float(theta)
    if not 0.0 <= th <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    kk = np.asarray(k)
    if kk.dtype.kind not in "iu" or np.any((kk < 0) | (kk > 6)):
        raise ValueError(f"k must be integer outside-neighbour counts in 0..6, got {k!r}")
    factor = 1.0 - th ** kk.astype(np.float64)
    return float(factor) if kk.ndim == 0 else factor


# --------------------------------------------------------------------------------------------
# Reading and validating ligands


def _number(value: Any, src: str, key: str, *, lo: float, hi: float, what: str) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and lo <= value <= hi
    )
    if not ok:
        raise ConfigError(src, key, f"must be a number {what} (got {value!r})")
    return float(value)


def _string(value: Any, src: str, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(src, key, f"must be a string (got {value!r})")
    return " ".join(value.split())


def _fields(entry: Mapping, src: str, prefix: str) -> dict[str, Any]:
    """Validate the ligand fields present in ``entry`` (keys already checked)."""
    out: dict[str, Any] = {}
    if "label" in entry:
        out["label"] = _string(entry["label"], src, f"{prefix}.label")
    if "source" in entry:
        out["source"] = _string(entry["source"], src, f"{prefix}.source")
    if "theta" in entry:
        out["theta"] = _number(
            entry["theta"], src, f"{prefix}.theta", lo=0.0, hi=1.0, what="in [0, 1]"
        )
    if "rp_barrier_shift_ev" in entry:
        out["rp_barrier_shift_ev"] = _number(
            entry["rp_barrier_shift_ev"],
            src,
            f"{prefix}.rp_barrier_shift_ev",
            lo=0.0,
            hi=math.inf,
            what=">= 0 (eV by which the barrier is lowered)",
        )
    if "treatment_duration_s" in entry:
        out["treatment_duration_s"] = _number(
            entry["treatment_duration_s"],
            src,
            f"{prefix}.treatment_duration_s",
            lo=0.0,
            hi=math.inf,
            what=">= 0 (seconds)",
        )
    return out


def _check_keys(entry: Any, allowed: tuple[str, ...], src: str, prefix: str) -> Mapping:
    if not isinstance(entry, Mapping):
        raise ConfigError(src, prefix, f"must be a mapping with keys {list(allowed)}")
    for key in entry:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(src, where, f"unknown key; allowed keys: {list(allowed)}")
    return entry


def load_library(path: str | Path | None = None) -> dict[str, Ligand]:
    """Read and validate the ligand library.

    Parameters
    ----------
    path
        YAML file with a top-level ``ligands:`` mapping of short name -> fields
        (:data:`LIGAND_KEYS`; ``label`` and ``theta`` required).  Default
        ``potentials/ligands.yaml`` next to the package (read once, then cached; a fresh
        ``dict`` is returned on every call).

    Returns
    -------
    dict[str, Ligand]
        Ligands keyed by short name, in file order.

    Raises
    ------
    segsim.params.files.ConfigError
        One line naming the file and the dotted key (e.g. ``ligands.ddabr.theta``) and what
        is allowed, if the file is unreadable or an entry is invalid or unknown.
    """
    if path is None:
        return dict(_default_library())
    return _load_library(Path(path))


@functools.cache
def _default_library() -> dict[str, Ligand]:
    return _load_library(DEFAULT_LIBRARY_PATH)


def _load_library(p: Path) -> dict[str, Ligand]:
    src = str(p)
    data = _check_keys(read_yaml(p), ("ligands",), src, "")
    entries = data.get("ligands")
    if not isinstance(entries, Mapping) or not entries:
        raise ConfigError(src, "ligands", "must be a non-empty mapping of name -> ligand fields")
    library: dict[str, Ligand] = {}
    for name, entry in entries.items():
        prefix = f"ligands.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(src, prefix, "ligand names must be identifiers such as 'ddabr'")
        _check_keys(entry, LIGAND_KEYS, src, prefix)
        for required in ("label", "theta"):
            if required not in entry:
                raise ConfigError(src, f"{prefix}.{required}", "missing")
        library[name] = Ligand(name=name, **_fields(entry, src, prefix))
    return library


def resolve_ligand(
    spec: str | Mapping[str, Any],
    library: Mapping[str, Ligand],
    *,
    source: str,
    key: str,
) -> Ligand:
    """Turn the ligand entry of an input file into a :class:`Ligand`.

    Parameters
    ----------
    spec
        Either the short name of a library ligand (``"ddabr"``) or a mapping that defines a
        user ligand: ``{name, theta, label?, rp_barrier_shift_ev?, treatment_duration_s?,
        source?}``, or ``{base: <library name>, ...overrides}``, which starts from the library
        ligand and replaces the given fields (its name defaults to ``<base>_custom`` when
        anything is overridden, else ``<base>``).
    library
        Known ligands (:func:`load_library`).
    source
        The input file (for error messages).
    key
        Dotted key of ``spec`` in that file (for error messages), e.g. ``run.ligand``.

    Raises
    ------
    segsim.params.files.ConfigError
        One line naming ``source``, the dotted key and what is allowed: unknown library name
        (lists the names), unknown field, ``theta`` outside [0, 1], negative shift/duration,
        missing ``name``/``theta`` without ``base``.
    """
    names = list(library)
    if isinstance(spec, str):
        if spec not in library:
            raise ConfigError(source, key, f"unknown ligand {spec!r}; allowed: {names}")
        return library[spec]
    entry = _check_keys(spec, USER_LIGAND_KEYS, source, key)
    fields = _fields(entry, source, key)
    if "name" in entry:
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(source, f"{key}.name", f"must be a non-empty string (got {name!r})")
        fields["name"] = name.strip()
    if "base" in entry:
        base = entry["base"]
        if not isinstance(base, str) or base not in library:
            raise ConfigError(source, f"{key}.base", f"unknown ligand {base!r}; allowed: {names}")
        parent = library[base]
        overridden = sorted(set(fields) - {"name", "label", "source"})
        merged = {
            "name": base if not overridden else f"{base}_custom",
            "label": parent.label if not overridden else f"{parent.label} (modified)",
            "theta": parent.theta,
            "rp_barrier_shift_ev": parent.rp_barrier_shift_ev,
            "treatment_duration_s": parent.treatment_duration_s,
            "source": (
                parent.source
                if not overridden
                else f"{base} from the library with {', '.join(overridden)} set in {source}"
            ),
        }
        merged.update(fields)
        return Ligand(**merged)
    for required in ("name", "theta"):
        if required not in fields:
            raise ConfigError(
                source,
                f"{key}.{required}",
                "missing (a user ligand needs name and theta, or base: <library name>)",
            )
    fields.setdefault("label", fields["name"])
    fields.setdefault("source", f"user-defined in {source}")
    return Ligand(**fields)
