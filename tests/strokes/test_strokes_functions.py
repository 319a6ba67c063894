"""The pure functions on stroke-3 / stroke-5 rows and polylines."""

from __future__ import annotations

import random

import numpy as np
import pytest
from composer_strokes import strokes as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

offsets = hnp.arrays(np.float32, hs.tuples(hs.integers(1, 40), hs.just(2)),
                     elements=hs.floats(-100, 100, width=32, allow_nan=False))
pens = hs.lists(hs.booleans(), min_size=40, max_size=40)


def stroke3(xy: np.ndarray, pen: list[bool]) -> np.ndarray:
    rows = np.zeros((len(xy), 3), dtype=np.float32)
    rows[:, :2] = xy
    rows[:, 2] = pen[: len(xy)]
    rows[-1, 2] = 1
    return rows


@settings(max_examples=60, deadline=None)
@given(offsets, pens)
def test_stroke3_and_stroke5_round_trip(xy, pen):
    rows = stroke3(xy, pen)
    five = st.to_stroke5(rows)
    assert five.shape == (len(rows), 5)
    assert (five[:, 2:].sum(axis=1) == 1).all() and not five[:, 4].any()
    np.testing.assert_array_equal(st.from_stroke5(five), rows)


def test_from_stroke5_stops_at_the_first_end_row_and_reads_soft_pen_values():
    rows = np.array([[1, 2, 0.7, 0.2, 0.1], [3, 4, 0.1, 0.8, 0.1], [0, 0, 0, 0, 1], [5, 5, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(st.from_stroke5(rows), [[1, 2, 0], [3, 4, 1]])


@settings(max_examples=60, deadline=None)
@given(offsets, pens)
def test_polylines_round_trip_to_stroke3(xy, pen):
    rows = stroke3(np.round(xy), pen)  # whole numbers: the absolute sums are exact
    lines = st.to_polylines(rows)
    assert len(lines) == int(rows[:, 2].sum())
    np.testing.assert_array_equal(st.from_polylines(lines), rows)


def test_polylines_are_absolute_and_the_first_offset_is_from_the_origin():
    rows = st.from_polylines([[(5, 5), (8, 9)], [(0, 0)]])
    np.testing.assert_array_equal(rows, [[5, 5, 0], [3, 4, 1], [-8, -9, 1]])
    lines = st.to_polylines(rows)
    np.testing.assert_array_equal(lines[0], [[5, 5], [8, 9]])
    np.testing.assert_array_equal(lines[1], [[0, 0]])


def test_rdp_drops_points_within_epsilon_of_the_chord():
    line = np.array([[0, 0], [2, 0.3], [4, 0], [4, 3]])
    # the chord (0,0)-(4,3) has length 5: (2, .3) lies |3*2 - 4*.3| / 5 = .96 from it, (4, 0) 12 / 5 = 2.4;
    # (4, 0) splits, and (2, .3) lies .3 from the new chord (0,0)-(4,0)
    np.testing.assert_array_equal(st.rdp(line, 0.5), [[0, 0], [4, 0], [4, 3]])
    np.testing.assert_array_equal(st.rdp(line, 0.2), line)
    np.testing.assert_array_equal(st.rdp(line, 2.5), [[0, 0], [4, 3]])
    np.testing.assert_array_equal(st.rdp(line, 0), line)


def test_rdp_keeps_the_far_point_of_a_closed_loop():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], dtype=float)
    # first and last coincide: distances are to that point; the farthest, (4, 4), splits the loop
    np.testing.assert_array_equal(st.rdp(square, 1), square)
    np.testing.assert_array_equal(st.rdp(square, 6), [[0, 0], [0, 0]])


def test_simplify_works_per_stroke_and_keeps_pen_lifts():
    rows = st.from_polylines([[(0, 0), (1, 0.01), (2, 0)], [(5, 5), (6, 5), (7, 5)]])
    np.testing.assert_allclose(st.simplify(rows, 0.1), st.from_polylines([[(0, 0), (2, 0)], [(5, 5), (7, 5)]]))


def test_bounds_and_normalize_size():
    rows = st.from_polylines([[(2, 1), (6, 3)], [(4, 9)]])
    assert st.bounds(rows) == (2, 1, 6, 9)
    scaled = st.normalize_size(rows, 4)
    assert st.bounds(scaled) == pytest.approx((1, 0.5, 3, 4.5))
    assert st.bounds(np.zeros((0, 3))) == (0, 0, 0, 0)


def test_normalizing_scale_is_the_spread_of_all_offsets():
    a = np.array([[1, 2, 0], [3, 4, 1]], np.float32)
    b = np.array([[-1, 0, 1]], np.float32)
    assert st.normalizing_scale([a, b]) == pytest.approx(np.std([1, 2, 3, 4, -1, 0]))
    assert st.normalizing_scale([]) == 1.0
    assert st.normalizing_scale([np.zeros((2, 3))]) == 1.0


def test_random_scale_stays_within_the_factor_and_follows_the_rng():
    rows = np.ones((5, 3), np.float32)
    out = st.random_scale(rows, random.Random(3), 0.15)
    sx, sy = out[0, 0], out[0, 1]
    assert 0.85 <= sx <= 1.15 and 0.85 <= sy <= 1.15 and sx != sy
    np.testing.assert_array_equal(out[:, 2], rows[:, 2])
    np.testing.assert_array_equal(out, st.random_scale(rows, random.Random(3), 0.15))


def test_drop_points_keeps_the_path_through_kept_points_and_every_stroke_end():
    line = [(x, (x * 7) % 5) for x in range(30)]
    rows = st.from_polylines([line, [(40, 0), (41, 1), (42, 0)], [(50, 50)]])
    out = st.drop_points(rows, random.Random(0), 0.5)
    assert 0 < len(rows) - len(out) < 28
    kept = np.concatenate(st.to_polylines(out))
    points = np.concatenate(st.to_polylines(rows))
    assert all(any((p == q).all() for q in points) for p in kept)
    for before, after in zip(st.to_polylines(rows), st.to_polylines(out)):
        np.testing.assert_array_equal(after[[0, -1]], before[[0, -1]])
    np.testing.assert_array_equal(out, st.drop_points(rows, random.Random(0), 0.5))
    np.testing.assert_array_equal(st.drop_points(rows, random.Random(0), 0), rows)


def test_drop_points_never_drops_a_two_point_stroke():
    rows = st.from_polylines([[(0, 0), (1, 1)], [(2, 2), (3, 3)]])
    np.testing.assert_array_equal(st.drop_points(rows, random.Random(0), 1.0), rows)
