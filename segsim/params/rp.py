"""The Ruddlesden-Popper parameter file (``potentials/rp.yaml``): energetics, seeding, synthesis.

Plain data and its validation; the RP physics that uses it is :mod:`segsim.rp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segsim.params.files import DEFAULT_RP, ConfigError

__all__ = ["RPEnergetics", "RPSeeding", "load_rp_defaults"]


@dataclass(frozen=True)
class RPEnergetics:
    """Parameters of the RP energy term and switching barrier (eV).

    Attributes
    ----------
    eps_rp_ev
        Energy of a cation site in RP relative to perovskite (eV, > 0: RP metastable).
    eta_ev
        Extra stabilisation of Cd on an RP site (eV, > 0: Cd prefers RP).
    j_rp_ev
        Cost of one RP/perovskite nearest-neighbour pair of cation sites (eV).
    e_rp_a_ev
        Barrier of the RP <-> perovskite switch of one site (eV), before ``dE/2``.
    """

    eps_rp_ev: float
    eta_ev: float
    j_rp_ev: float
    e_rp_a_ev: float


@dataclass(frozen=True)
class RPSeeding:
    """How RP zones are seeded at synthesis.

    Attributes
    ----------
    probability
        Probability that an NC contains an RP domain (0..1).
    thickness_layers
        B layers of the zone below the face (>= 1).
    width_fraction
        Side of the zone's square footprint as a fraction of the NC edge (0..1].
    """

    probability: float
    thickness_layers: int
    width_fraction: float


def _value(doc: dict[str, Any], section: str, key: str, path: Path) -> Any:
    try:
        entry = doc[section][key]
    except (KeyError, TypeError):
        raise ConfigError(str(path), f"{section}.{key}", "missing") from None
    return entry["value"] if isinstance(entry, dict) else entry


def load_rp_defaults(path: str | Path | None = None) -> tuple[RPEnergetics, RPSeeding, dict]:
    """Read ``potentials/rp.yaml`` (or ``path``): energetics, seeding, synthesis protocol.

    Returns
    -------
    (energetics, seeding, synthesis)
        ``synthesis`` holds ``temperature_k`` and ``mc_sweeps`` of the equilibration.
    """
    p = Path(path) if path is not None else DEFAULT_RP
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(p), "", f"cannot read RP parameters ({exc})") from None
    en = RPEnergetics(
        **{k: float(_value(doc, "energetics", k, p)) for k in RPEnergetics.__dataclass_fields__}
    )
    sd = RPSeeding(
        probability=float(_value(doc, "seeding", "probability", p)),
        thickness_layers=int(_value(doc, "seeding", "thickness_layers", p)),
        width_fraction=float(_value(doc, "seeding", "width_fraction", p)),
    )
    syn = {
        "temperature_k": float(_value(doc, "synthesis", "temperature_k", p)),
        "mc_sweeps": int(_value(doc, "synthesis", "mc_sweeps", p)),
    }
    return en, sd, syn
