"""The parameter files segsim reads (bottom layer: plain data and its validation).

* :mod:`segsim.params.files` — where the shipped data lives (:func:`potentials_dir`), the one
  YAML reader (:func:`read_yaml`) and the one input error (:class:`ConfigError`).
* :mod:`segsim.params.ligands` — the ligand library (``potentials/ligands.yaml``).
* :mod:`segsim.params.rp` — the RP energetics, seeding and synthesis (``potentials/rp.yaml``).

Nothing here imports numba, h5py, icet, mpi4py or any physics module: :mod:`segsim.config`
and the physics modules both build on it (layer table: ``docs/layers.md``).
"""
