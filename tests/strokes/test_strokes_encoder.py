"""The ``strokes`` encoder: stroke-5 rows with the corpus scale, augmentation, state and registration."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from composer_strokes import Drawing, StrokeEncoder
from composer_strokes import strokes as st

from composer import ComposerError, MixtureDensity, plugins

START, END = [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]


def fitted(**options) -> StrokeEncoder:
    encoder = StrokeEncoder(**options)
    encoder.fit(encoder.example_items())
    return encoder


def test_the_encoder_is_registered_with_a_mixture_density_head():
    encoder = plugins.get_registry().encoder("strokes")()
    assert isinstance(encoder, StrokeEncoder)
    assert encoder.head == MixtureDensity(components=20, dims=2, pen_states=3)
    assert encoder.input_dim == 5 and encoder.modality == "strokes" and encoder.needs_fit
    assert encoder.bos == tuple(START) and encoder.pad_value == tuple(END) and encoder.eos is None


def test_encode_divides_offsets_by_the_scale_between_a_start_and_an_end_row():
    encoder = fitted()
    rows = np.concatenate([d.strokes for d in encoder.example_items()])
    assert encoder.scale == pytest.approx(float(np.std(rows[:, :2])), rel=1e-5)
    drawing = Drawing(st.from_polylines([[(0, 0), (3, 4)], [(6, 0)]]))
    seq = encoder.encode(drawing)
    assert seq.dtype == np.float32 and seq.shape == (5, 5)
    np.testing.assert_array_equal(seq[0], START)
    np.testing.assert_array_equal(seq[-1], END)
    np.testing.assert_allclose(seq[1:-1, :2] * encoder.scale, drawing.strokes[:, :2], rtol=1e-6)
    np.testing.assert_array_equal(seq[1:-1, 2:], [[1, 0, 0], [0, 1, 0], [0, 1, 0]])


def test_decode_inverts_encode_for_the_examples():
    encoder = fitted()
    assert encoder.scale != 1
    for drawing in encoder.example_items():
        back = encoder.decode(encoder.encode(drawing))
        np.testing.assert_allclose(back.strokes, drawing.strokes, atol=1e-4)


def test_decode_stops_at_the_first_end_row_and_lifts_the_pen_at_the_last_point():
    encoder = StrokeEncoder()
    seq = np.array([START, [1, 1, 1, 0, 0], [2, 2, 0.2, 0.1, 0.7], [9, 9, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(encoder.decode(seq).strokes, [[1, 1, 1]])
    no_start = np.array([[1, 2, 1, 0, 0], [3, 4, 1, 0, 0]], np.float32)  # a sequence cut off by the length
    np.testing.assert_array_equal(encoder.decode(no_start).strokes, [[1, 2, 0], [3, 4, 1]])


@pytest.mark.parametrize("rows", [np.zeros((0, 3)), [[1, np.nan, 1]], [[np.inf, 0, 1]]])
def test_empty_or_not_finite_drawings_encode_to_nothing(rows):
    seq, report = StrokeEncoder().encode_checked(Drawing(rows))
    assert seq.shape == (0, 5) and report.dropped == 1


def test_a_drawing_longer_than_max_length_after_simplification_is_dropped():
    wiggly = Drawing(st.from_polylines([[(x, 0.01 * (x % 2)) for x in range(20)]]))
    seq, report = StrokeEncoder(max_length=10).encode_checked(wiggly)
    assert len(seq) == 0 and report.dropped == 1
    seq, report = StrokeEncoder(max_length=10, epsilon=0.1).encode_checked(wiggly)
    assert len(seq) == 4 and not report  # start, the two ends of the line, end


def test_scale_to_rescales_each_drawing_before_encoding():
    encoder = StrokeEncoder(scale_to=100)
    small = Drawing(st.from_polylines([[(0, 0), (2, 1)]]))
    decoded = encoder.decode(encoder.encode(small))
    assert st.bounds(decoded.strokes) == pytest.approx((0, 0, 100, 50))


def test_augment_keeps_start_and_end_rows_and_follows_the_rng():
    encoder = fitted(augment_drop=0.5)
    line = Drawing(st.from_polylines([[(x, x % 3) for x in range(40)], [(50, 0), (60, 10)]]))
    seq = np.concatenate([encoder.encode(line), [END, END]])  # padded as the core pads
    out = encoder.augment(seq, random.Random(7))
    np.testing.assert_array_equal(out[0], START)
    np.testing.assert_array_equal(out[-3:], [END, END, END])
    assert out.dtype == np.float32 and out.shape[1] == 5 and len(out) < len(seq)
    assert (out[1:-3, 2:].sum(axis=1) == 1).all() and not out[1:-3, 4].any()
    np.testing.assert_array_equal(out, encoder.augment(seq, random.Random(7)))
    assert not np.array_equal(out, encoder.augment(seq, random.Random(8)))


def test_augment_without_dropping_only_scales_each_axis():
    encoder = fitted(augment_drop=0)
    seq = encoder.encode(encoder.example_items()[2])
    out = encoder.augment(seq, random.Random(1))
    assert out.shape == seq.shape
    body, scaled = seq[1:-1], out[1:-1]
    moving = body[:, 0] != 0
    factors = scaled[moving, 0] / body[moving, 0]
    assert np.allclose(factors, factors[0]) and 0.85 <= factors[0] <= 1.15


def test_primer_is_the_rows_without_start_and_end():
    encoder = fitted()
    drawing = encoder.example_items()[1]
    np.testing.assert_array_equal(encoder.primer(drawing), encoder.encode(drawing)[1:-1])
    with pytest.raises(ComposerError, match="primer drawing is empty"):
        encoder.primer(Drawing(np.zeros((0, 3))))


def test_generation_plan_counts_points():
    assert StrokeEncoder(max_length=99).generation_plan().max_tokens == 99
    assert StrokeEncoder().generation_plan(length=40).max_tokens == 40


def test_state_survives_a_json_checkpoint():
    encoder = fitted(max_length=100, epsilon=0.5)
    state = json.loads(json.dumps(encoder.state_dict()))
    again = StrokeEncoder(**state["options"])
    again.load_state_dict(state)
    assert again.scale == encoder.scale and again.options == encoder.options
    drawing = encoder.example_items()[0]
    np.testing.assert_array_equal(again.encode(drawing), encoder.encode(drawing))
    with pytest.raises(ComposerError, match="scale must be a positive number"):
        again.load_state_dict({"scale": -1})


@pytest.mark.parametrize("option, value", [("max_length", 0), ("epsilon", -1), ("augment_scale", 1.5),
                                           ("augment_drop", 2), ("scale_to", float("nan"))])
def test_bad_options_are_one_line_errors(option, value):
    with pytest.raises(ComposerError, match=option):
        StrokeEncoder(**{option: value})


def test_summary_and_statistics():
    encoder = StrokeEncoder()
    square, cross, house, zigzag = encoder.example_items()
    assert encoder.summarize(cross) == "2 strokes, 4 points, label 'cross'"
    assert encoder.summarize(zigzag) == "1 stroke, 6 points"
    stats = encoder.statistics([square, cross])
    assert stats == {"drawings": 2, "strokes": 1.5, "points": 4.5, "aspect": 1.0}
    compared = encoder.statistics([square], reference=[zigzag])
    assert compared["points difference"] == 5 - 6
    assert compared["aspect difference"] == pytest.approx(1 - 4)  # the zigzag is 20 wide and 5 high
