"""load_corpus(only=...): a recorded held-out split is read without reading the rest of the corpus."""

import numpy as np
import pytest

from composer import ComposerError, CorpusSource, plugins
from composer.data import load_corpus, split

# ten references; 'count:k' holds 1 + k % 3 items, so some names carry '#k'
ITEMS = {f"count:{k}": ["abcabcabc" + "abcd"[: 1 + i] * (k + 1) for i in range(1 + k % 3)] for k in range(10)}


@pytest.fixture
def counting(toy):
    """Corpora with a 'count:' source that records every reference it loads, and a fitted toy encoder."""
    loads: list[str] = []

    def load(ref: str) -> list[str]:
        loads.append(ref)
        return ITEMS[ref]

    corpora = {**plugins.get_registry().corpora, "count": CorpusSource("count", "toy", load, list=lambda _: [*ITEMS])}
    encoder = plugins.get_registry().encoder("toy")()
    encoder.fit(["abcd"])
    return corpora, encoder, loads


def read(corpora, encoder, **kwargs):
    return load_corpus("count:all", encoder, corpora, fitted=True, workers=1, progress=False, **kwargs)


def test_only_the_named_references_are_read_and_the_split_is_the_full_loads(counting):
    corpora, encoder, loads = counting
    full = read(corpora, encoder, use_cache=False)
    assert any("#" in name for name in full.names) and len(loads) == 10
    _, valid, names = split(full, 0.3, seed=2)
    names.append("count:4#1")  # one item of a file whose other items train
    _, valid, _ = split(full, 0.3, seed=2, valid_names=names)
    loads.clear()
    part = read(corpora, encoder, use_cache=False, only=names)
    assert sorted(set(loads)) == sorted({name.split("#")[0] for name in names}) and len(loads) < 10
    assert part.names == [name for name in full.names if name in names]
    assert part.sequences.tolist() == [s for s, name in zip(full.sequences.tolist(), full.names) if name in names]
    assert split(part, 0.3, seed=2, valid_names=names)[1].tolist() == valid.tolist()


def test_a_part_and_the_full_corpus_never_stand_for_each_other_in_the_cache(counting):
    corpora, encoder, loads = counting
    names = ["count:1#0", "count:5#1", "count:6"]
    part = read(corpora, encoder, only=names)
    assert not part.cached and part.names == names and sorted(loads) == ["count:1", "count:5", "count:6"]
    loads.clear()
    full = read(corpora, encoder)
    assert not full.cached and len(loads) == 10 and len(full.names) == sum(1 + k % 3 for k in range(10))
    loads.clear()
    again = read(corpora, encoder, only=names)  # now from the full corpus's cache
    assert again.cached and not loads and again.names == names and again.sequences.tolist() == part.sequences.tolist()
    assert isinstance(again.sequences.flat, np.memmap)  # a view of the full corpus's memory-mapped store
    assert again.digest == part.digest
    other = read(corpora, encoder, only=["count:2#2"])
    assert other.names == ["count:2#2"] and not loads
    assert read(corpora, encoder).names == full.names


def test_a_cached_part_is_served_only_for_the_same_names(counting):
    corpora, encoder, loads = counting
    first = read(corpora, encoder, only=["count:3"])
    loads.clear()
    assert read(corpora, encoder, only=["count:3"]).cached and not loads
    second = read(corpora, encoder, only=["count:3", "count:9"])
    assert not second.cached and second.names == ["count:3", "count:9"] and loads == ["count:3", "count:9"]
    assert first.sequences.tolist() == second.sequences[:1].tolist()


def test_names_not_in_the_corpus_are_a_one_line_error(counting):
    corpora, encoder, loads = counting
    with pytest.raises(ComposerError, match=r"^2 held-out piece\(s\) are not in corpus count:all: count:10$"):
        read(corpora, encoder, only=["count:1", "count:10", "count:1#x"])
    assert not loads
    with pytest.raises(ValueError, match="@tail"):
        read(corpora, encoder, only=["@tail:0.1"])
    with pytest.raises(ValueError, match="fitted encoder"):
        load_corpus("count:all", encoder, corpora, progress=False, only=["count:1"])


def test_a_named_piece_its_file_no_longer_holds_is_warned_of(counting):
    corpora, encoder, _ = counting
    warnings: list[str] = []
    part = read(corpora, encoder, only=["count:0", "count:0#1"], warn=warnings.append)
    assert part.names == ["count:0"]
    assert warnings == ["1 held-out piece(s) were not read from corpus count:all: count:0#1"]
