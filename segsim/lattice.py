"""The B-sublattice geometry of a cubic nanocrystal in a padded periodic grid.

A nanocrystal (NC) of ``n x n x n`` B sites (Pb/Cd) sits in the middle of a simple-cubic
grid of shape ``(L, L, L)`` with ``L = n + 2 * pad``; the padding sites are *outside* (species
``O``).  The grid is periodic, exactly as icet sees a nanoparticle surrounded by vacuum, so the
compiled cluster-expansion kernels agree with ``icet.ClusterExpansion.predict`` on the same
grid.  With ``pad`` at least the cluster reach, periodic images of the NC do not interact.

Site indexing is C order: ``site = (ix * L + iy) * L + iz``.

This module owns geometry only: coordinates, neighbour tables, the surface classification and
the depth of each site below the surface.  It knows nothing about energies, rates or species
counts; the one function that draws random numbers, :func:`random_occupations`, takes the
generator as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segsim import species
from segsim.units import ANGSTROM_PER_NM

#: The six nearest-neighbour displacements of the simple-cubic grid, in this order.
NN_DISPLACEMENTS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.int64
)

#: Surface classification codes (number of outside nearest neighbours of a crystal site).
INTERIOR, FACE, EDGE, CORNER = 0, 1, 2, 3
SURFACE_NAMES = ("interior", "face", "edge", "corner")


@dataclass(frozen=True, eq=False)
class Lattice:
    """Static geometry of a cubic NC in a padded periodic simple-cubic grid.

    Attributes
    ----------
    n_edge
        B sites per NC edge, ``n``.
    pad
        Outside sites between the NC and the box boundary on each side.
    a_angstrom
        Lattice constant (B-B distance) in Angstrom used for positions.
    shape
        Grid shape ``(L, L, L)``.
    coords
        Integer grid coordinates of every site, shape ``(n_sites, 3)``.
    nn
        Periodic nearest-neighbour table, shape ``(n_sites, 6)``, in the order of
        :data:`NN_DISPLACEMENTS`.
    in_nc
        True for sites of the as-built NC cube.
    n_outside_nn
        Number of outside nearest neighbours of each NC site in the as-built cube
        (0 interior, 1 face, 2 edge, 3 corner); -1 for outside sites.
    depth
        Layer index below the surface of the as-built cube (0 = surface shell, 1 = next
        shell, ...); -1 for outside sites.
    """

    n_edge: int
    pad: int
    a_angstrom: float
    shape: tuple[int, int, int]
    coords: np.ndarray
    nn: np.ndarray
    in_nc: np.ndarray
    n_outside_nn: np.ndarray
    depth: np.ndarray

    @property
    def n_sites(self) -> int:
        """Number of grid sites (inside and outside the NC)."""
        return int(self.coords.shape[0])

    @property
    def n_nc_sites(self) -> int:
        """Number of B sites of the as-built NC, ``n**3``."""
        return self.n_edge**3

    @property
    def n_layers(self) -> int:
        """Number of depth layers of the as-built cube, ``ceil(n / 2)``."""
        return (self.n_edge + 1) // 2

    @property
    def positions_angstrom(self) -> np.ndarray:
        """Cartesian B-site positions in Angstrom, shape ``(n_sites, 3)``."""
        return self.coords.astype(np.float64) * self.a_angstrom

    @property
    def cell_angstrom(self) -> np.ndarray:
        """Periodic cell of the grid in Angstrom (3 x 3, rows are cell vectors)."""
        return np.diag(np.asarray(self.shape, dtype=np.float64) * self.a_angstrom)

    def site_index(self, ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
        """Return flat site indices of (periodically wrapped) grid coordinates."""
        lx, ly, lz = self.shape
        return ((np.mod(ix, lx) * ly + np.mod(iy, ly)) * lz + np.mod(iz, lz)).astype(np.int64)

    def neighbor_table(self, displacements: np.ndarray) -> np.ndarray:
        """Return the periodic neighbour table for a list of integer displacements.

        Parameters
        ----------
        displacements
            Integer grid displacements, shape ``(n_disp, 3)``.

        Returns
        -------
        numpy.ndarray
            ``int32`` array of shape ``(n_sites, n_disp)``: entry ``[i, d]`` is the site at
            ``coords[i] + displacements[d]`` (wrapped).
        """
        disp = np.asarray(displacements, dtype=np.int64).reshape(-1, 3)
        c = self.coords.astype(np.int64)
        out = np.empty((self.n_sites, disp.shape[0]), dtype=np.int32)
        for d, (dx, dy, dz) in enumerate(disp):
            out[:, d] = self.site_index(c[:, 0] + dx, c[:, 1] + dy, c[:, 2] + dz)
        return out

    def empty_occupations(self) -> np.ndarray:
        """Return an occupation array with the NC all Pb and the padding outside (``O``)."""
        occ = np.full(self.n_sites, species.OUT, dtype=species.OCC_DTYPE)
        occ[self.in_nc] = species.PB
        return occ


def n_edge_from_nm(edge_nm: float, a_angstrom: float) -> int:
    """Return the number of B sites per edge, ``round(edge / a)`` (at least 1).

    Parameters
    ----------
    edge_nm
        NC edge length in nm.
    a_angstrom
        Pseudo-cubic lattice constant in Angstrom.
    """
    if not edge_nm > 0 or not a_angstrom > 0:
        raise ValueError("edge_nm and a_angstrom must be positive")
    return max(1, round(edge_nm * ANGSTROM_PER_NM / a_angstrom))


def build_cube(n_edge: int, a_angstrom: float, pad: int) -> Lattice:
    """Build the lattice of a cubic NC of ``n_edge**3`` B sites with ``pad`` outside layers.

    Parameters
    ----------
    n_edge
        B sites per edge (>= 1).
    a_angstrom
        Lattice constant in Angstrom (only used for positions).
    pad
        Outside layers on each side (>= 1).
    """
    if n_edge < 1:
        raise ValueError(f"n_edge must be >= 1, got {n_edge}")
    if pad < 1:
        raise ValueError(f"pad must be >= 1, got {pad}")
    size = n_edge + 2 * pad
    shape = (size, size, size)
    grid = np.indices(shape).reshape(3, -1).T.astype(np.int32)
    lo, hi = pad, pad + n_edge - 1
    inside = np.all((grid >= lo) & (grid <= hi), axis=1)
    # Chebyshev distance to the cube boundary = concentric shell index.
    dist = np.minimum(grid - lo, hi - grid).min(axis=1)
    depth = np.where(inside, dist, -1).astype(np.int32)
    return _assemble(n_edge, pad, a_angstrom, shape, grid, inside, depth, None)


def build_periodic(n_cells: int, a_angstrom: float) -> Lattice:
    """Build a fully periodic ``n_cells**3`` simple-cubic grid of B sites (a bulk crystal).

    There are no outside sites: every site is a crystal site (``in_nc`` all True, ``pad`` 0,
    ``depth`` 0 and ``n_outside_nn`` 0 everywhere), so the grid is a bulk alloy, as used by
    benchmarks and thermodynamic references.  :func:`random_occupations` fills every site.

    Parameters
    ----------
    n_cells
        Sites per edge of the periodic box (>= 1).
    a_angstrom
        Lattice constant in Angstrom (only used for positions).
    """
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    shape = (n_cells, n_cells, n_cells)
    grid = np.indices(shape).reshape(3, -1).T.astype(np.int32)
    n_sites = grid.shape[0]
    inside = np.ones(n_sites, dtype=bool)
    depth = np.zeros(n_sites, dtype=np.int32)
    n_out = np.zeros(n_sites, dtype=np.int8)
    return _assemble(n_cells, 0, a_angstrom, shape, grid, inside, depth, n_out)


def _assemble(
    n_edge: int,
    pad: int,
    a_angstrom: float,
    shape: tuple[int, int, int],
    grid: np.ndarray,
    inside: np.ndarray,
    depth: np.ndarray,
    n_out: np.ndarray | None,
) -> Lattice:
    """Add the neighbour table (and, if None, the outside-neighbour counts); freeze arrays."""
    lat0 = Lattice(
        n_edge=n_edge,
        pad=pad,
        a_angstrom=float(a_angstrom),
        shape=shape,
        coords=grid,
        nn=np.empty((0, 6), np.int32),
        in_nc=inside,
        n_outside_nn=np.empty(0, np.int8),
        depth=depth,
    )
    nn = lat0.neighbor_table(NN_DISPLACEMENTS)
    if n_out is None:
        n_out = np.where(inside, (~inside[nn]).sum(axis=1), -1).astype(np.int8)
    for arr in (grid, nn, inside, n_out, depth):
        arr.setflags(write=False)
    return Lattice(
        n_edge=n_edge,
        pad=pad,
        a_angstrom=float(a_angstrom),
        shape=shape,
        coords=grid,
        nn=nn,
        in_nc=inside,
        n_outside_nn=n_out,
        depth=depth,
    )


def random_occupations(lattice: Lattice, x_cd: float, rng: np.random.Generator) -> np.ndarray:
    """Return NC occupations with ``round(x * n**3)`` Cd placed uniformly at random.

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    rng
        The run's generator (the only source of randomness).
    """
    occ = lattice.empty_occupations()
    nc_sites = np.flatnonzero(lattice.in_nc)
    occ[rng.choice(nc_sites, size=n_cd_for(lattice, x_cd), replace=False)] = species.CD
    return occ


def n_cd_for(lattice: Lattice, x_cd: float) -> int:
    """Return the number of Cd of a NC at Cd fraction ``x_cd``: ``round(x_cd * n**3)``.

    Parameters
    ----------
    lattice
        The NC lattice.
    x_cd
        Cd fraction on the B sites, in [0, 1].
    """
    if not 0.0 <= x_cd <= 1.0:
        raise ValueError(f"x_cd must be in [0, 1], got {x_cd}")
    return round(float(x_cd) * lattice.n_nc_sites)


def outside_neighbor_counts(lattice: Lattice, occupations: np.ndarray) -> np.ndarray:
    """Return the number of outside (``O``) nearest neighbours of every site.

    For a crystal site this classifies it: 0 interior, 1 face, 2 edge, 3 corner (values above
    3 occur on rough surfaces).  Outside sites get -1.
    """
    out = occupations == species.OUT
    counts = out[lattice.nn].sum(axis=1).astype(np.int8)
    counts[out] = -1
    return counts


def depth_from_occupations(lattice: Lattice, occupations: np.ndarray) -> np.ndarray:
    """Return each crystal site's layer index below the current surface.

    The depth is the Chebyshev (26-neighbour) distance to the nearest outside site minus one,
    so that for a cube it is the concentric-shell index (0 = surface shell).  Outside sites get
    -1.  Works for any shape the NC takes as it recedes.
    """
    inside = (occupations != species.OUT).reshape(lattice.shape)
    depth = np.where(inside, -1, 0).astype(np.int32)
    reached = ~inside
    level = 0
    while not reached.all():
        grown = reached.copy()
        for axis in range(3):
            grown = grown | np.roll(grown, 1, axis=axis) | np.roll(grown, -1, axis=axis)
        new = grown & ~reached
        depth[new] = level
        reached = grown
        level += 1
        if level > max(lattice.shape):  # no outside site at all
            break
    depth[~inside] = -1
    return depth.reshape(-1)
