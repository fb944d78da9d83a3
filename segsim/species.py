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

For the cluster expansion both V and O are the species ``X`` (no B cation).
"""

import numpy as np

PB: int = 0
CD: int = 1
VAC: int = 2
OUT: int = 3

#: Names indexed by code.
NAMES: tuple[str, ...] = ("Pb", "Cd", "V", "O")

#: Chemical symbol used for each code in icet / ASE structures of the B lattice.
CE_SYMBOLS: tuple[str, ...] = ("Pb", "Cd", "X", "X")

N_SPECIES: int = 4

#: Species dtype of occupation arrays.
OCC_DTYPE = np.uint8


def is_cation(codes: np.ndarray) -> np.ndarray:
    """Return a boolean mask of sites occupied by Pb or Cd."""
    return codes <= CD


def in_crystal(codes: np.ndarray) -> np.ndarray:
    """Return a boolean mask of sites inside the crystal (Pb, Cd or V)."""
    return codes != OUT
