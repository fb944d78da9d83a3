"""Extrapolation check of a fitted CE: canonical MC of a NC far larger than the training NCs.

The training NCs have 3-5 B sites per edge (~2-3 nm); the simulations use ~12 nm NCs (20 B
sites per edge).  A CE can fit the small NCs and still do something unphysical in a large
one (the first four-species fit put Cd into the core of a 12 nm NC through a bulk mixing
energy that only 8-site periodic cells had constrained).  :func:`run_check` runs the
quickstart's Metropolis MC (the same driver as ``segsim run``) with the fitted CE and
returns the equilibrated Cd fraction by depth, which ``segsim train`` writes into the report.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ExtrapolationCheck:
    """Cd fraction by depth layer (surface first) after canonical MC of one NC."""

    edge_nm: float
    x_cd: float
    temperature_k: float
    n_steps: int
    profile: tuple[float, ...]
    energy_change_ev: float  # final minus initial (random) configuration, eV

    @property
    def spread(self) -> float:
        """Largest minus smallest layer fraction."""
        return float(max(self.profile) - min(self.profile))

    def markdown(self) -> str:
        """Return the report section body."""
        prof = " ".join(f"{v:.3f}" for v in self.profile)
        return "\n".join(
            [
                (
                    f"Canonical Metropolis MC with this CE (the quickstart's driver): one "
                    f"{self.edge_nm:g} nm NC, x = {self.x_cd:g}, {self.temperature_k:g} K, "
                    f"{self.n_steps} trial swaps from a random arrangement. The training NCs are "
                    "2-3 nm, so this shows what the CE does far outside them."
                ),
                "",
                f"- Cd fraction by depth, surface -> core: {prof}",
                (
                    f"- spread between layers: {self.spread:.3f}; energy change "
                    f"{self.energy_change_ev:+.2f} eV"
                ),
            ]
        )


def run_check(
    ce_path: str | Path,
    *,
    edge_nm: float = 12.0,
    x_cd: float = 0.25,
    temperature_k: float = 343.0,
    n_steps: int = 4_000_000,
    seed: int = 2021,
) -> ExtrapolationCheck:
    """Run the MC of one NC with the CE at ``ce_path`` and return its depth profile.

    Parameters
    ----------
    ce_path
        Cluster-expansion file (three or four species).
    edge_nm, x_cd, temperature_k
        The NC (nm), its Cd fraction and the temperature (K).
    n_steps
        Trial Pb/Cd swaps.
    seed
        Seed of the initial arrangement and of the chain.
    """
    from segsim import driver
    from segsim.config import from_dict
    from segsim.io import hdf5

    doc = {
        "system": {"edge_nm": float(edge_nm), "x_cd": float(x_cd)},
        "model": {"kind": "cluster_expansion", "path": str(Path(ce_path).resolve())},
        "run": {
            "kind": "canonical_mc",
            "temperature_k": float(temperature_k),
            "n_steps": int(n_steps),
            "seed": int(seed),
        },
        "output": {
            "trace_interval_steps": int(n_steps),
            "snapshot_interval_steps": int(n_steps),
            "checkpoint_interval_steps": int(n_steps),
        },
    }
    cfg = from_dict(doc, source="extrapolation check")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "check.h5"
        summary = driver.run_canonical(cfg, out, progress=False)
        energies = np.asarray(hdf5.read_trace(out)["energy_ev"], dtype=np.float64)
    return ExtrapolationCheck(
        edge_nm=float(edge_nm),
        x_cd=float(x_cd),
        temperature_k=float(temperature_k),
        n_steps=int(summary.step),
        profile=tuple(float(v) for v in summary.x_profile),
        energy_change_ev=float(energies[-1] - energies[0]),
    )
