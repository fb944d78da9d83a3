"""Compiled (numba) kernels: pure functions of arrays, scalars and ``np.random.Generator``.

Nothing in this package imports h5py, mpi4py, yaml or icet, allocates per event, or touches
Python objects.  Every kernel has a slow, obviously-correct twin in ``tests/reference/naive.py``.
"""
