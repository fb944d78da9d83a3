"""Reference configurations, reference energies and cluster-expansion models for segsim.

Submodules (imported explicitly; importing this package imports nothing heavy):

- :mod:`segsim.training.configurations`: Cd arrangements on a NC lattice (uniform,
  surface-segregated, core-segregated, layer profiles) shared by the physics checks and the
  reference-energy pipeline.
- :mod:`segsim.training.provisional`: the hand-made provisional cluster expansion
  (``potentials/provisional.ce``) that lets segsim run before the fitted CE exists.
"""
