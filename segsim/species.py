"""Species codes of the B sublattice, shared by every part of segsim.

Occupations are ``uint8`` arrays with one code per site of the padded grid:

====  ====  =====================================================
code  name  meaning
====  ====  =====================================================
0     Pb    Pb2+ on a B site (with its CsBr3 formula unit)
1     Cd    Cd2+ on a B site (with its CsBr3 formula unit)
2     V     empty B site inside the crystal (vacancy)
3     O     outside the crystal (solvent / vacuum)
====  ====  =====================================================

For the cluster expansion V and O are both the species ``X`` (no B cation) in a
three-species CE (Pb, Cd, X), the original model of the design brief (``docs/model.md``).  A
four-species CE (Pb, Cd, V, X) keeps the vacancy a species of its own, written with the
chemical symbol ``V`` (vanadium's symbol standing for the vacancy; no vanadium is involved):
the CHGNet references show that an internal vacancy does not cost what the same number of
outside contacts costs at the surface (issue 3 note, ``potentials/fit_report.md``).
"""

from collections.abc import Sequence

import numpy as np

PB: int = 0
CD: int = 1
VAC: int = 2
OUT: int = 3

#: Names indexed by code.
NAMES: tuple[str, ...] = ("Pb", "Cd", "V", "O")

#: Chemical symbol used for each code in icet / ASE structures of the B lattice.
CE_SYMBOLS: tuple[str, ...] = ("Pb", "Cd", "X", "X")

#: The same for a four-species CE (Pb, Cd, V, X): the vacancy keeps its own species.
CE_SYMBOLS_SEPARATE_V: tuple[str, ...] = ("Pb", "Cd", "V", "X")


def ce_symbols(chemical_symbols: Sequence[str]) -> tuple[str, ...]:
    """Return the symbol per code for a CE with these species (three or four).

    Raises
    ------
    ValueError
        Unless the species are {Pb, Cd, X} or {Pb, Cd, V, X}.
    """
    allowed = sorted(chemical_symbols)
    if allowed == sorted(set(CE_SYMBOLS)):
        return CE_SYMBOLS
    if allowed == sorted(CE_SYMBOLS_SEPARATE_V):
        return CE_SYMBOLS_SEPARATE_V
    raise ValueError(
        f"cluster-expansion species must be {sorted(set(CE_SYMBOLS))} or "
        f"{sorted(CE_SYMBOLS_SEPARATE_V)}, got {allowed}"
    )


N_SPECIES: int = 4

#: Species dtype of occupation arrays.
OCC_DTYPE = np.uint8


def is_cation(codes: np.ndarray) -> np.ndarray:
    """Return a boolean mask of sites occupied by Pb or Cd."""
    return codes <= CD


def in_crystal(codes: np.ndarray) -> np.ndarray:
    """Return a boolean mask of sites inside the crystal (Pb, Cd or V)."""
    return codes != OUT
