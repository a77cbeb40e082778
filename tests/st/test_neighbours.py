"""Spot neighbours on the grids of the real layouts: square ST arrays, hexagonal Visium."""

from __future__ import annotations

import numpy as np

from brstnet.st.neighbours import grid_pitch, spot_neighbours


def _square(nx: int, ny: int, pitch: float = 200.0) -> np.ndarray:
    # ST arrays (her2st, He et al.): spot (x, y) of the array at x, y pitches
    return np.array([(x * pitch, y * pitch) for y in range(ny) for x in range(nx)], float)


def _hex(rows: int, cols: int, pitch: float = 100.0) -> np.ndarray:
    # Visium: array_col steps by 2 along a row, odd rows shifted by one; a spot's six
    # neighbours lie one pitch away (x = col * pitch / 2, y = row * pitch * sqrt(3) / 2)
    return np.array(
        [
            (col * pitch / 2, row * pitch * np.sqrt(3) / 2)
            for row in range(rows)
            for col in range(row % 2, 2 * cols, 2)
        ],
        float,
    )


def _count(neighbours: np.ndarray) -> np.ndarray:
    return (neighbours >= 0).sum(axis=1)


def test_square_grid_is_the_3x3_neighbourhood_with_fewer_at_the_edges() -> None:
    xy = _square(5, 4)
    neighbours = spot_neighbours(xy)
    counts = _count(neighbours).reshape(4, 5)
    assert counts[0, 0] == counts[3, 4] == 3  # corners
    assert counts[0, 2] == counts[2, 0] == 5  # edges
    assert (counts[1:3, 1:4] == 8).all()  # interior: the 3 x 3 neighbourhood
    centre = 1 * 5 + 1  # spot (1, 1): the four at one pitch first, then the diagonals
    got = neighbours[centre]
    assert set(got[:4]) == {1, 5, 7, 11} and set(got[4:]) == {0, 2, 10, 12}
    assert grid_pitch(xy) == 200.0


def test_hex_grid_gives_six_neighbours_inside_and_not_the_second_ring() -> None:
    xy = _hex(6, 6)
    neighbours = spot_neighbours(xy)
    inside = [
        i
        for i, (x, y) in enumerate(xy)
        if 100 < x < xy[:, 0].max() - 100 and 100 < y < xy[:, 1].max() - 100
    ]
    assert inside and (_count(neighbours)[inside] == 6).all()
    for i in inside:
        found = neighbours[i][neighbours[i] >= 0]
        np.testing.assert_allclose(np.linalg.norm(xy[found] - xy[i], axis=1), 100.0)
    assert _count(neighbours).min() in (2, 3)  # a corner of the hexagonal lattice


def test_sections_never_neighbour_and_a_missing_spot_leaves_a_gap() -> None:
    a, b = _square(3, 3), _square(3, 3) + 50.0  # overlapping coordinates, other section
    xy = np.r_[a, b]
    groups = np.array(["A1"] * 9 + ["B1"] * 9)
    neighbours = spot_neighbours(xy, groups)
    assert (neighbours[:9][neighbours[:9] >= 0] < 9).all()
    assert (neighbours[9:][neighbours[9:] >= 0] >= 9).all()
    assert _count(neighbours)[4] == _count(neighbours)[13] == 8
    # a spot dropped by QC (the centre's right neighbour): the centre keeps 7
    kept = np.delete(a, 5, axis=0)
    assert _count(spot_neighbours(kept))[4] == 7
    # pixel coordinates at any scale give the same neighbours
    np.testing.assert_array_equal(spot_neighbours(a * 0.29), spot_neighbours(a))
    # a lone spot has none
    assert (spot_neighbours(np.zeros((1, 2))) == -1).all()
