"""Corpus readers for drawings: Hershey fonts, Sketch-RNN .npz (safely), QuickDraw .ndjson and SVG."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from composer_strokes import Drawing, corpora
from composer_strokes import strokes as st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from composer import ComposerError, plugins
from composer.data import resolve

# ---------------------------------------------------------------------------------------- Hershey


def glyphs(font: str = "futural") -> dict[str, Drawing]:
    return {d.label: d for d in corpora.load_hershey(f"hershey:{font}")}


def test_hershey_names_its_fonts_and_all_is_the_latin_ones():
    assert corpora.list_hershey("futural") == ["hershey:futural"]
    assert corpora.list_hershey("TimesR") == ["hershey:timesr"]
    every = corpora.list_hershey("all")
    assert len(every) == 18 and "hershey:gothicger" in every and "hershey:greek" not in every
    with pytest.raises(ComposerError, match="unknown Hershey font 'nope' \\(available: all, futural"):
        corpora.list_hershey("nope")


def test_the_hershey_source_resolves_through_the_registry():
    registry = plugins.get_registry()
    pairs = resolve("hershey:rowmans", "strokes", registry.corpora)
    assert [ref for _, ref in pairs] == ["hershey:rowmans"]


def test_a_hershey_font_gives_one_labelled_drawing_per_printable_character():
    found = glyphs()
    assert len(found) == 94 and " " not in found
    assert set("AZaz09!~,.") <= set(found)
    for drawing in found.values():
        assert drawing.num_points and drawing.strokes[-1, 2] == 1 and drawing.split is None


def test_hershey_glyphs_are_upright_with_y_down():
    found = glyphs()
    a = st.to_polylines(found["A"].strokes)
    points = np.concatenate(a)
    apex = points[np.argmin(points[:, 1])]
    xmin, ymin, xmax, ymax = st.bounds(found["A"].strokes)
    assert xmin + 0.3 * (xmax - xmin) < apex[0] < xmax - 0.3 * (xmax - xmin)  # A's apex is on top, centred
    top_of = {c: st.bounds(found[c].strokes)[1] for c in "'.g"}
    bottom_of = {c: st.bounds(found[c].strokes)[3] for c in "'.ga"}
    assert top_of["'"] < top_of["."]  # the apostrophe sits high, the full stop low
    assert bottom_of["g"] > bottom_of["a"]  # g's descender goes down
    bar = st.to_polylines(found["T"].strokes)
    assert min(line[:, 1].mean() for line in bar) == pytest.approx(st.bounds(found["T"].strokes)[1])


# -------------------------------------------------------------------------------------------- npz


def drawing_array(*drawings) -> np.ndarray:
    out = np.empty(len(drawings), dtype=object)
    out[:] = list(drawings)
    return out


GOOD = np.array([[0, 0, 0], [5, 5, 1]], np.int16)


def test_npz_keeps_each_drawing_with_its_split_and_the_file_as_label(tmp_path):
    path = tmp_path / "cat.npz"
    np.savez(path, train=drawing_array(GOOD, GOOD * 2, GOOD), valid=drawing_array(GOOD), test=drawing_array(GOOD * 3))
    drawings = corpora.load_npz(str(path))
    assert [d.split for d in drawings] == ["train", "train", "train", "valid", "test"]
    assert {d.label for d in drawings} == {"cat"}
    np.testing.assert_array_equal(drawings[1].strokes, GOOD * 2)
    assert drawings[0].strokes.dtype == np.float32


def test_npz_skips_bad_drawings_and_counts_them(tmp_path, capsys):
    path = tmp_path / "dog.npz"
    bad = [np.zeros((3, 2)), np.array([[0, np.nan, 1]]), np.array([[np.inf, 0, 1]]), np.zeros((0, 3)),
           np.array(["a", "b", "c"]), np.zeros(3)]
    np.savez(path, train=drawing_array(GOOD, *bad), valid=np.zeros((2, 4, 3), np.int16))
    drawings = corpora.load_npz(str(path))
    assert len(drawings) == 3 and [d.split for d in drawings] == ["train", "valid", "valid"]
    err = capsys.readouterr().err
    assert err.startswith("warning: dog.npz: skipped 6 of 9 drawings (") and err.count("\n") == 1


def test_npz_skipped_drawings_are_reported_in_one_line(tmp_path, capsys):
    path = tmp_path / "dog.npz"
    np.savez(path, train=drawing_array(GOOD, np.zeros((3, 2)), np.array([[0, np.nan, 1]])))
    corpora.load_npz(str(path))
    err = capsys.readouterr().err
    assert err == "warning: dog.npz: skipped 2 of 3 drawings (1 not [n, 3] rows, 1 values that are not finite)\n"


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a zip"), "x.npz: not an .npz archive"),
    (lambda p: np.savez(p, other=np.zeros(3)), "x.npz: holds none of the arrays train, valid, test"),
    (lambda p: np.savez(p, train=drawing_array(np.zeros((2, 2)))), r"x.npz: no usable drawing in it \(1 skipped\)"),
    (lambda p: np.savez(p, train=drawing_array()), r"x.npz: no usable drawing in it \(0 skipped\)"),
])
def test_a_file_that_is_no_sketch_npz_is_refused_in_one_line(tmp_path, make, message):
    path = tmp_path / "x.npz"
    make(path)
    with pytest.raises(ComposerError, match=message) as caught:
        corpora.load_npz(str(path))
    assert "\n" not in str(caught.value)


class Payload:
    """What an attacker pickles: unpickling it would call ``os.system``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class ExecPayload(Payload):
    def __reduce__(self):
        return exec, (self.command,)


@pytest.mark.parametrize("kind", [Payload, ExecPayload])
def test_an_npz_whose_pickle_carries_a_payload_is_refused_without_running_it(tmp_path, kind):
    marker = tmp_path / "PWNED-strokes"
    command = f"touch {marker}" if kind is Payload else f"open({str(marker)!r}, 'w').close()"
    buffer = io.BytesIO()
    np.save(buffer, drawing_array(GOOD, kind(command)), allow_pickle=True)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.npy", buffer.getvalue())
    with pytest.raises(ComposerError, match=r"evil.npz: array 'train': refused to load '(posix|builtins)\.") as caught:
        corpora.load_npz(str(path))
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_an_npz_with_a_broken_pickle_is_refused_in_one_line(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, drawing_array(GOOD, GOOD), allow_pickle=True)
    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.npy", buffer.getvalue()[:-30])
    with pytest.raises(ComposerError, match="cut.npz: array 'train': its object array cannot be read"):
        corpora.load_npz(str(path))


# ----------------------------------------------------------------------------------------- ndjson


def quickdraw(word, strokes, **extra) -> str:
    return json.dumps({"word": word, "countrycode": "US", "drawing": strokes, **extra})


def test_ndjson_reads_absolute_strokes_labelled_with_their_word(tmp_path, capsys):
    lines = [
        quickdraw("cat", [[[10, 20, 30], [5, 5, 15]], [[0], [0]]], recognized=True),
        quickdraw("cat", [[[1, 2], [3, 4]]], recognized=False),
        "{not json",
        quickdraw("cat", [[[1, 2, 3], [3, 4]]]),  # xs and ys differ in length
        quickdraw("cat", [[[1, "a"], [3, 4]]]),
        '{"word": "cat", "drawing": [[[1, NaN], [3, 4]]]}',
        "[1, 2]",
        "",
        quickdraw("dog", [[[0, 255], [0, 0]]]),
    ]
    path = tmp_path / "animals.ndjson"
    path.write_text("\n".join(lines) + "\n")
    cat, dog = corpora.load_ndjson(str(path))
    assert (cat.label, dog.label) == ("cat", "dog")
    np.testing.assert_array_equal(cat.strokes, [[10, 5, 0], [10, 0, 0], [10, 10, 1], [-30, -15, 1]])
    err = capsys.readouterr().err
    assert err.startswith("warning: animals.ndjson: skipped 6 of 8 drawings (3 bad drawings, ")
    assert "1 not recognized" in err and "1 lines that do not parse" in err


def test_an_ndjson_file_with_nothing_usable_is_refused(tmp_path):
    path = tmp_path / "none.ndjson"
    path.write_text("garbage\n" + quickdraw("cat", [], recognized=True) + "\n")
    with pytest.raises(ComposerError, match=r"none.ndjson: no usable QuickDraw drawing in it \(2 lines skipped\)"):
        corpora.load_ndjson(str(path))


# -------------------------------------------------------------------------------------------- SVG


def svg(body: str, head: str = "") -> str:
    return f'{head}<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">{body}</svg>'


def load(tmp_path: Path, text: str) -> Drawing:
    path = tmp_path / "d.svg"
    path.write_text(text)
    (drawing,) = corpora.load_svg(str(path))
    return drawing


def lines_of(drawing: Drawing) -> list[list[list[float]]]:
    return [np.round(line, 6).tolist() for line in st.to_polylines(drawing.strokes)]


def test_svg_path_lines_relative_moves_and_close(tmp_path):
    drawing = load(tmp_path, svg('<title>box</title><path d="M10 10 H20 V20 h-10 z m5 5 l 1,1 2 2"/>'))
    assert drawing.label == "box"
    assert lines_of(drawing) == [[[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]], [[15, 15], [16, 16], [18, 18]]]


def test_svg_curves_are_flattened_and_arcs_become_lines(tmp_path):
    drawing = load(tmp_path, svg('<path d="M0 0 C0 10 10 10 10 0 S20 -10 20 0 Q25 10 30 0 T40 0 A5 5 0 0150 0"/>'))
    (line,) = st.to_polylines(drawing.strokes)
    assert len(line) == 1 + 4 * 8 + 1
    np.testing.assert_allclose(line[8], [10, 0], atol=1e-5)  # the cubic ends where it should
    np.testing.assert_allclose(line[4], [5, 7.5], atol=1e-5)  # its middle: (0+3*0+3*10+10)/8, (0+30+30+0)/8
    np.testing.assert_allclose(line[12], [15, -7.5], atol=1e-5)  # S reflects the last control point
    np.testing.assert_allclose(line[28], [35, -5], atol=1e-5)  # T reflects Q's control point (25, 10)
    np.testing.assert_allclose(line[-1], [50, 0], atol=1e-5)


def test_svg_shapes_and_transforms(tmp_path):
    drawing = load(tmp_path, svg(
        '<g transform="translate(10 20) scale(2)"><line x1="0" y1="0" x2="1" y2="1"/>'
        '<polyline points="0,0 1,0 1,1"/></g><polygon points="0 0 5 0 5 5"/>'
        '<defs><path d="M0 0 L99 99"/></defs>'))
    assert lines_of(drawing) == [[[10, 20], [12, 22]], [[10, 20], [12, 20], [12, 22]],
                                 [[0, 0], [5, 0], [5, 5], [0, 0]]]


@pytest.mark.parametrize("text, message", [
    (svg("", '<!DOCTYPE svg [<!ENTITY a "aaaa">]>'), "declares a DOCTYPE or ENTITY"),
    ('<?xml version="1.0" encoding="cp037"?>' + svg(""), "only UTF-8, ASCII and Latin-1"),
    (svg('<path d="M0 0 L1 1"'), "not well-formed XML"),
    ("<html/>", r"not an SVG document \(its root is <html>\)"),
    (svg('<path d="M0 0 L 1"/>'), "path data: expected a number"),
    (svg('<path d="M0 0 X 1 1"/>'), "path data: expected a command"),
    (svg('<circle r="0"/>'), "nothing drawable in it"),
])
def test_bad_svg_files_are_refused_in_one_line(tmp_path, text, message):
    with pytest.raises(ComposerError, match=message) as caught:
        load(tmp_path, text)
    assert str(caught.value).startswith("d.svg: ") and "\n" not in str(caught.value)


def test_a_utf16_svg_is_refused(tmp_path):
    path = tmp_path / "d.svg"
    path.write_bytes(svg('<path d="M0 0 L1 1"/>').encode("utf-16"))
    with pytest.raises(ComposerError, match="only UTF-8"):
        corpora.load_svg(str(path))


# -------------------------------------------------------------------------------- any input at all

path_text = hs.text(alphabet="MmLlHhVvZzCcSsQqTtAaXe0123456789.-+, ", max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=path_text)
def test_any_path_data_reads_or_is_refused_in_one_line(tmp_path, d):
    try:
        drawing = load(tmp_path, svg(f'<path d="{d}"/>'))
    except ComposerError as exc:
        assert "\n" not in str(exc)
    else:
        assert drawing.num_points and np.isfinite(drawing.strokes).all()


@settings(max_examples=150, deadline=None)
@given(line=hs.text(max_size=80) | hs.builds(json.dumps, hs.recursive(
    hs.none() | hs.booleans() | hs.floats() | hs.integers() | hs.text(max_size=5),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.sampled_from(["word", "drawing"]), inner),
    max_leaves=12)))
def test_any_ndjson_line_parses_or_is_counted(line):
    drawing, reason = corpora.parse_quickdraw(line)
    assert (drawing is None) == bool(reason)
    if drawing is not None:
        assert np.isfinite(drawing.strokes).all()


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_npz_pickled_with_older_protocols_reads(tmp_path, protocol):
    """Files written by older numpy and Python (QuickDraw's date from 2017) use pickle protocol 2 or 3."""
    import pickle

    from numpy.lib import format as npy

    array = drawing_array(GOOD, GOOD * 2)
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, npy.header_data_from_array_1_0(array))
    pickle.dump(array, buffer, protocol=protocol)
    path = tmp_path / "old.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("valid.npy", buffer.getvalue())
    drawings = corpora.load_npz(str(path))
    assert [d.split for d in drawings] == ["valid", "valid"]
    np.testing.assert_array_equal(drawings[1].strokes, GOOD * 2)
