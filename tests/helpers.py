"""Small helpers shared by the integration tests (not fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

A_ANGSTROM = 5.87


def write_random_ce(
    path: Path,
    *,
    cutoffs: list[float] | None = None,
    scale: float = 0.02,
    seed: int = 3,
    separate_vacancy: bool = False,
) -> Path:
    """Write a random-ECI icet CE on the simple-cubic B lattice to ``path``.

    Species Pb, Cd, X, or Pb, Cd, V, X with ``separate_vacancy``.
    """
    from ase import Atoms
    from icet import ClusterExpansion, ClusterSpace

    symbols = ["Pb", "Cd", "V", "X"] if separate_vacancy else ["Pb", "Cd", "X"]
    prim = Atoms("Pb", positions=[[0, 0, 0]], cell=np.eye(3) * A_ANGSTROM, pbc=True)
    cs = ClusterSpace(prim, cutoffs=cutoffs or [8.4], chemical_symbols=symbols)
    rng = np.random.default_rng(seed)
    ClusterExpansion(cs, rng.normal(size=len(cs)) * scale).write(str(path))
    return path


def small_input(model_path: Path, **overrides: dict) -> dict:
    """Return a small valid input document (3 nm NC, short run)."""
    doc = {
        "system": {"edge_nm": 3.0, "x_cd": 0.25},
        "model": {"kind": "cluster_expansion", "path": str(model_path)},
        "run": {"kind": "canonical_mc", "temperature_k": 343.0, "n_steps": 20000, "seed": 7},
        "output": {
            "trace_interval_steps": 1000,
            "snapshot_interval_steps": 5000,
            "checkpoint_interval_steps": 5000,
        },
    }
    for section, values in overrides.items():
        doc[section] = {**doc.get(section, {}), **values}
    return doc


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


#: KRA shifts with Cd on the hop's axis switched off: the machinery tests that set their own
#: low E_KRA would otherwise inherit the shipped shifts (potentials/kinetics.yaml) on top.
FLAT_KRA = {f"de_kra_{m}_{n}cd_ev": 0.0 for m in ("pb", "cd") for n in (1, 2)}
