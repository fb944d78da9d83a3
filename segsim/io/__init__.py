"""Input/output: the on-disk HDF5 schema lives in :mod:`segsim.io.hdf5`."""
