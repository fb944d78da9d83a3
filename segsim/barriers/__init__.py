"""Computed migration barriers of the KMC (issue 27): ``segsim barriers input.yaml``.

:mod:`segsim.barriers.paths` builds the end points of every path the lattice KMC uses from the
model's own atomistic view (:mod:`segsim.atomistic`), :mod:`segsim.barriers.neb` relaxes them
and runs a climbing-image nudged elastic band with a reference calculator, and
:mod:`segsim.barriers.runner` reads the input, keeps one resumable record per path and
calculator; :mod:`segsim.barriers.table` turns the records into the barrier table the KMC
reads (``potentials/barriers.yaml``).

The vacancy of a path is the model's B vacancy: the neutral complex ``V_M'' + 2 V_Br*`` of
:mod:`segsim.defects`, whose two Br vacancies are part of the B site's octahedron.  The
lattice event "M on site j hops into V on site i" joins two *canonical* states (the complex
on i, then on j); the elementary hop of M leaves the two Br vacancies where they were, and
the complex re-forms around j by Br hops, which are much faster than a B-cation hop.  The
barrier of the lattice event is therefore measured from the canonical states:
``E_KRA = E_saddle - (E_IS + E_FS') / 2`` (``docs/barriers.md``).
"""
