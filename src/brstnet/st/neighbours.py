"""Which spots neighbour which: the adjacent spots of a grid, whatever its layout.

ST arrays (her2st, He et al. 2020) put spots on a square grid (200 um pitch): a spot's
3 x 3 neighbourhood is its 8 neighbours, the diagonal ones at sqrt(2) pitches. Visium
puts them on a hexagonal grid (100 um pitch): 6 neighbours at one pitch, the next ring at
sqrt(3) pitches. Spots within 1.5 pitches of each other are neighbours on both grids, and
the pitch is the median distance of a spot to its nearest spot, so pixel coordinates do
(no pixel size needed). Spots at a section's edge, or beside a spot dropped by QC, have
fewer neighbours; spots of different sections never neighbour.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: Neighbours lie within this many grid pitches (3 x 3 on a square grid, 6 on a hex grid).
NEIGHBOUR_RADIUS = 1.5
#: At most this many neighbours a spot (the 3 x 3 neighbourhood of a square grid).
MAX_NEIGHBOURS = 8


def grid_pitch(xy: np.ndarray) -> float:
    """The grid's pitch: the median distance of a spot to its nearest other spot."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return float("nan")
    distance, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(distance[:, 1]))


def spot_neighbours(
    xy: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    pitch: float | None = None,
    radius: float = NEIGHBOUR_RADIUS,
    max_neighbours: int = MAX_NEIGHBOURS,
) -> np.ndarray:
    """Each spot's neighbours: the other spots of its group within ``radius`` pitches.

    Args:
        xy: [n, 2] spot centres (pixels or micrometres).
        groups: [n] section of each spot (None: one section); spots of different groups
            never neighbour, and each group's pitch is its own.
        pitch: The grid pitch in the units of ``xy`` (None: :func:`grid_pitch` per group).
        radius: Neighbours lie within ``radius * pitch``.
        max_neighbours: Columns of the result: the nearest ones are kept.

    Returns:
        [n, max_neighbours] int64 positions into ``xy``, nearest first (ties by position),
        -1 where a spot has fewer neighbours.
    """
    xy = np.asarray(xy, dtype=np.float64)
    n = len(xy)
    out = np.full((n, max_neighbours), -1, dtype=np.int64)
    groups = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        points = xy[members]
        step = grid_pitch(points) if pitch is None else float(pitch)
        if not step > 0:
            continue
        tree = cKDTree(points)
        k = min(max_neighbours + 1, len(members))
        distance, index = tree.query(points, k=k, distance_upper_bound=radius * step * (1 + 1e-9))
        distance, index = distance.reshape(len(members), k), index.reshape(len(members), k)
        for row, (d, i) in enumerate(zip(distance, index, strict=True)):
            keep = np.isfinite(d) & (i != row) & (i < len(members))
            found = i[keep]
            order = np.lexsort((found, d[keep]))  # nearest first, ties by position
            found = members[found[order]][:max_neighbours]
            out[members[row], : len(found)] = found
    return out
