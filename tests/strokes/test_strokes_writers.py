"""SVG and PNG output, one drawing per file and contact sheets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib.image
import numpy as np
import pytest
from composer_strokes import Drawing, corpora, writers
from composer_strokes import strokes as st
from composer_strokes.encoder import example_drawings

from composer import plugins

SVG = "{http://www.w3.org/2000/svg}"


def test_both_formats_are_registered_with_a_grid_writer():
    registry = plugins.get_registry()
    for name in ("svg", "png"):
        writer = registry.writers["strokes", name]
        assert writer.write_grid is not None and writer.available() is None


def test_an_svg_keeps_the_drawing_and_its_label_and_reads_back(tmp_path):
    drawing = example_drawings()[2]  # the house: three strokes, the last a single point
    path = tmp_path / "house.svg"
    writers.write_svg(drawing, path)
    root = ET.parse(path).getroot()
    assert root.get("width") == "256" and root.find(f"{SVG}title").text == "house"
    x, y, w, h = map(float, root.get("viewBox").split())
    assert x < 0 and y < 2 and w == h > 20  # padded around (0, 2)-(16, 20)
    assert len(root.findall(f".//{SVG}polyline")) == 3
    (back,) = corpora.load_svg(str(path))
    assert back.label == "house"
    np.testing.assert_allclose(back.strokes[:-1], drawing.strokes[:-1])  # the dot is drawn, not read back


def test_a_label_is_escaped_in_svg(tmp_path):
    path = tmp_path / "lt.svg"
    writers.write_svg(Drawing(st.from_polylines([[(0, 0), (1, 1)]]), label="<&>"), path)
    assert ET.parse(path).getroot().find(f"{SVG}title").text == "<&>"


def test_an_empty_drawing_still_writes_an_image(tmp_path):
    writers.write_svg(Drawing(np.zeros((0, 3))), tmp_path / "e.svg")
    writers.write_png(Drawing(np.zeros((0, 3))), tmp_path / "e.png")
    assert ET.parse(tmp_path / "e.svg").getroot().get("viewBox")
    assert matplotlib.image.imread(tmp_path / "e.png").shape[:2] == (256, 256)


def test_an_svg_grid_has_equal_cells_and_labels(tmp_path):
    items = example_drawings() + [Drawing(d.strokes * 50, label="big") for d in example_drawings()[:1]]
    path = tmp_path / "grid.svg"
    writers.write_svg_grid(items, path)
    root = ET.parse(path).getroot()
    assert writers.grid_shape(5) == (2, 3)
    cell = writers.CELL + writers.LABEL_HEIGHT
    assert (root.get("width"), root.get("height")) == (str(3 * writers.CELL), str(2 * cell))
    assert [t.text for t in root.iter(f"{SVG}text")] == ["square", "cross", "house", "big"]
    squares = [el for el in root.iter(f"{SVG}polyline")]
    first, big = (np.array([p.split(",") for p in squares[i].get("points").split()], float) for i in (0, -1))
    np.testing.assert_allclose(np.ptp(first, axis=0), np.ptp(big, axis=0))  # each drawing fills its cell
    assert big[:, 0].min() >= writers.CELL and big[:, 1].min() >= cell  # second row, second column


@pytest.mark.parametrize("count, shape", [(1, (256, 256)), (4, (2 * (160 + 18), 2 * 160))])
def test_png_files_have_sensible_sizes_and_ink(tmp_path, count, shape):
    items = example_drawings()[:count]
    path = tmp_path / "out.png"
    if count == 1:
        writers.write_png(items[0], path)
        shape = (256 + 18, 256)
    else:
        writers.write_png_grid(items, path)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == shape
    dark = (image[..., :3].mean(axis=2) < 0.5).mean()
    assert 0.002 < dark < 0.2  # black strokes on white


def test_an_upright_glyph_has_its_ink_where_it_belongs(tmp_path):
    """T's bar is on top in the PNG: y grows downwards in the drawing and in the image alike."""
    (tee,) = [d for d in corpora.load_hershey("hershey:futural") if d.label == "T"]
    path = tmp_path / "t.png"
    writers.write_png(tee, path)
    ink = matplotlib.image.imread(path)[..., :3].mean(axis=2) < 0.5
    rows = ink.sum(axis=1)
    assert rows[:128].max() > 3 * rows[128:256].max()
