"""segsim: cation segregation in CsCd_xPb_(1-x)Br3 perovskite nanocrystals.

Cluster-expansion energies (icet) evaluated by compiled kernels (numba), canonical
Metropolis Monte Carlo and (later) lattice kinetic Monte Carlo, driven from YAML inputs and
written to HDF5.  Units everywhere: eV, K, Angstrom, seconds (see :mod:`segsim.units`).

Importing the package is cheap: it does not import numba, h5py, icet or mpi4py.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
