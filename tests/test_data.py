import os
import pickle
import random

import numpy as np
import pytest
import torch

from composer import ComposerError, CorpusSource, Encoder, plugins
from composer.data import Sequences, epoch_steps, load_corpus, padded_batches, piece_batches, resolve, split


def toy_encoder():
    return plugins.get_registry().encoder("toy")()


def test_folder_glob_and_named_sources_resolve(toy, toy_corpus):
    corpora = plugins.get_registry().corpora
    assert len(resolve(str(toy_corpus), "toy", corpora)) == 12
    assert len(resolve(str(toy_corpus / "1*.toy"), "toy", corpora)) == 3
    assert [ref for _, ref in resolve("toy:patterns", "toy", corpora)][0] == "toy:patterns/0"
    assert len(resolve(f"toy:patterns, {toy_corpus / '1*.toy'}", "toy", corpora)) == 4 + 3
    (toy_corpus.parent / "nothing").mkdir()
    with pytest.raises(ComposerError, match="no toy files"):
        resolve(str(toy_corpus.parent / "nothing"), "toy", corpora)
    with pytest.raises(ComposerError, match="corpus not found"):
        resolve("/no/such/place", "toy", corpora)


def test_a_minus_source_leaves_its_pieces_out(toy, toy_corpus):
    corpora = plugins.get_registry().corpora
    kept = [ref for _, ref in resolve(f"{toy_corpus},-{toy_corpus / '1*.toy'}", "toy", corpora)]
    assert len(kept) == 12 - 3 and not any(os.path.basename(ref).startswith("1") for ref in kept)
    with pytest.raises(ComposerError, match="empty once its exclusions"):
        resolve(f"{toy_corpus / '1*.toy'},-{toy_corpus}", "toy", corpora)
    with pytest.raises(ComposerError, match="starts with an exclusion"):
        resolve(f"-{toy_corpus},{toy_corpus}", "toy", corpora)


def test_bad_files_are_skipped_warned_and_counted(toy, toy_corpus):
    (toy_corpus / "empty.toy").write_text("")
    (toy_corpus / "binary.toy").write_bytes(b"\xff\xfe\x00garbage")
    warnings = []
    corpus = load_corpus(str(toy_corpus), toy_encoder(), plugins.get_registry().corpora, workers=2,
                         warn=warnings.append, progress=False)
    assert len(corpus.skipped) == 2 and len(warnings) == 2
    assert any("empty.toy" in w and "empty toy file" in w for w in warnings)
    assert any("binary.toy" in w for w in warnings)
    assert len(corpus.sequences) == sum(1 + i % 3 for i in range(12))
    assert "skipped 2 unusable file(s)" in corpus.summary()


def test_nothing_usable_is_a_clear_error(toy, tmp_path):
    (tmp_path / "a.toy").write_text("")
    with pytest.raises(ComposerError, match="nothing usable in corpus"):
        load_corpus(str(tmp_path), toy_encoder(), plugins.get_registry().corpora, warn=lambda m: None)


def test_second_load_comes_from_the_cache_with_the_same_result(toy, toy_corpus):
    corpora = plugins.get_registry().corpora
    first = load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False)
    encoder = toy_encoder()
    second = load_corpus(str(toy_corpus), encoder, corpora, progress=False)
    assert not first.cached and second.cached
    assert second.sequences.tolist() == first.sequences.tolist() and second.names == first.names
    assert encoder.chars  # the fitted vocabulary comes back with the cache
    (toy_corpus / "new.toy").write_text("zzz")
    third = load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False)
    assert not third.cached and len(third.sequences) == len(first.sequences) + 1


def test_split_is_by_piece_seeded_and_reusable(toy, toy_corpus):
    corpus = load_corpus(str(toy_corpus), toy_encoder(), plugins.get_registry().corpora, progress=False)
    train, valid, names = split(corpus, 0.2, seed=1)
    assert len(valid) == round(len(corpus.sequences) * 0.2) and len(train) + len(valid) == len(corpus.sequences)
    again_train, again_valid, _ = split(corpus, 0.5, seed=9, valid_names=names)
    assert again_valid.tolist() == valid.tolist() and again_train.tolist() == train.tolist()


def test_small_corpus_validates_on_the_tail_of_each_piece(toy, tmp_path):
    (tmp_path / "one.toy").write_text("abcabcabcabcabcabcabcabcabcabc")
    corpus = load_corpus(str(tmp_path), toy_encoder(), plugins.get_registry().corpora, progress=False)
    train, valid, names = split(corpus, 0.1, seed=0)
    assert names == ["@tail:0.1"] and len(train[0]) == 28 and valid[0][0] == train[0][-1]
    assert train.flat is valid.flat is corpus.sequences.flat  # views of the corpus's store
    assert split(corpus, 0.5, seed=3, valid_names=names)[1].tolist() == valid.tolist()


def test_piece_batches_restart_the_state_where_each_piece_begins(toy):
    seqs = [list(range(100)), list(range(100, 130)), list(range(200, 212)), list(range(300, 390))]
    enc = toy_encoder()
    windows, mask, restart, labels = piece_batches(seqs, enc, batch_size=2, seq_len=10, rng=random.Random(0),
                                                   augment=False)
    assert windows.shape[1:] == (2, 11) and restart.shape == windows.shape[:2] and mask.shape == windows.shape
    assert windows.dtype == torch.int16 and mask.dtype == torch.bool and labels is None
    assert (windows[~mask] == 0).all()  # padding holds zeros, left out by the mask
    seen = []
    for row in range(2):
        for step in range(windows.shape[0]):
            w, m = windows[step, row], mask[step, row]
            real = w[m].tolist()
            assert m.tolist() == sorted(m.tolist(), reverse=True)  # data first, then padding
            if restart[step, row] and real:
                seen.append(real[0])  # a piece starts here, from its first token
            if step + 1 < windows.shape[0] and not restart[step + 1, row]:
                assert windows[step + 1, row, 0] == w[-1]  # the next window continues this one
    # four pieces for two rows are cut into eight segments (each restarts); every piece's start is among them
    assert {0, 100, 200, 300} <= set(seen) and len(seen) == 8
    predicted = sorted(windows[:, :, 1:][mask[:, :, 1:]].tolist())
    assert predicted == sorted(t for s in seqs for t in s[1:])  # every token but a piece's first is a target
    shard = piece_batches(seqs, enc, batch_size=2, seq_len=10, rng=random.Random(0), augment=False, rank=1, world=2)
    assert shard.inputs.shape[1] == 2 and shard.restart.shape[1] == 2 and shard.mask.shape == shard.inputs.shape


def test_piece_batches_end_the_epoch_before_rows_run_dry(toy):
    seqs = [list(range(1000))] + [list(range(50)) for _ in range(7)]
    batches = piece_batches(seqs, toy_encoder(), batch_size=4, seq_len=10, rng=random.Random(0), augment=False)
    active = batches.mask[:, :, 1:].any(-1).sum(-1)
    assert (active >= 2).all()  # never an update from fewer than half the rows
    assert epoch_steps(Sequences.from_arrays(seqs), 4, 10) == batches.inputs.shape[0]


def test_a_small_corpus_is_cut_so_every_row_reads_and_long_tails_are_reached(toy):
    seqs = [list(range(400)), list(range(1000, 1040))]
    windows, mask, restart, _ = piece_batches(seqs, toy_encoder(), batch_size=4, seq_len=10, rng=random.Random(0),
                                              augment=False)
    assert mask[0, :, 1:].any(-1).all()  # no row sits empty
    predicted = set(windows[:, :, 1:][mask[:, :, 1:]].tolist())
    assert 399 in predicted and 1039 in predicted  # the ends of both pieces are trained on
    assert int(restart.sum()) >= 16


# ---------------------------------------------------------------- the store: Sequences and the cache


def test_sequences_pick_the_smallest_integer_dtype_and_index_as_views():
    small = Sequences.from_arrays([[1, 2, 3], np.array([4, 5]), [], [32767, -32768]])
    assert small.flat.dtype == np.int16 and small.is_tokens and small.feature_dim == 0
    assert len(small) == 4 and small.lengths.tolist() == [3, 2, 0, 2] and small.total == 7
    assert small.tolist() == [[1, 2, 3], [4, 5], [], [32767, -32768]]
    assert Sequences.from_arrays([[0, 40000]]).flat.dtype == np.int32
    assert Sequences.from_arrays([[-(2 ** 40)]]).flat.dtype == np.int64
    first = small[0]
    assert isinstance(first, np.ndarray) and not first.flags.writeable and np.shares_memory(first, small.flat)
    with pytest.raises(ValueError):
        first[0] = 9
    assert small[-1].tolist() == [32767, -32768] and [s.tolist() for s in small][1] == [4, 5]
    for part in (small[1:3], small[[3, 0]], small[np.array([True, False, False, True])]):
        assert isinstance(part, Sequences) and part.flat is small.flat  # the same store, nothing copied
    assert small[[3, 0]].tolist() == [[32767, -32768], [1, 2, 3]] and small[1:3].tolist() == [[4, 5], []]
    assert len(small[[]]) == 0
    assert pickle.loads(pickle.dumps(small[[3, 0]])).tolist() == small[[3, 0]].tolist()
    with pytest.raises(IndexError):
        small[4]
    with pytest.raises(AttributeError):
        small.flat = None


def test_feature_sequences_are_float32_rows():
    rows = [np.random.default_rng(0).normal(size=(n, 5)) for n in (3, 7)]
    feats = Sequences.from_arrays(rows)
    assert feats.flat.dtype == np.float32 and feats.flat.shape == (10, 5)
    assert not feats.is_tokens and feats.feature_dim == 5 and feats.total == 10
    assert feats[1].shape == (7, 5) and np.allclose(feats[1], rows[1])
    with pytest.raises(ValueError, match="width"):
        Sequences.from_arrays([np.zeros((2, 5)), np.zeros((2, 4))])


class Tagged(str):
    """A text item that carries a dataset's own split and a class label, as Sketch-RNN's npz items do."""

    def __new__(cls, text, split=None, label=None):
        item = super().__new__(cls, text)
        item.split, item.label = split, label
        return item


TAGGED = {f"tag:{k}": Tagged("abcab" * (k + 1), ("train", "valid", "test", "train")[k % 4], f"class{k % 3}")
          for k in range(12)}


def load_tagged(ref):
    return [TAGGED[ref]]


def list_tagged(_):
    return sorted(TAGGED)


def tagged_corpora(toy):
    """Corpora with 'tag:', whose items carry a split and a label (module-level functions: workers pickle them)."""
    return {**plugins.get_registry().corpora, "tag": CorpusSource("tag", "toy", load_tagged, list=list_tagged)}, TAGGED


def cache_folders():
    from composer.checkpoint import composer_home

    return sorted((composer_home() / "cache").glob("corpus-*"))


def test_the_cache_is_a_memory_mapped_folder_that_reads_back_the_same(toy):
    corpora, parts = tagged_corpora(toy)
    first = load_corpus("tag:all", toy_encoder(), corpora, progress=False)
    (folder,) = cache_folders()
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == ["flat.npy", "meta.json", "offsets.npy"]
    again = load_corpus("tag:all", toy_encoder(), corpora, progress=False)
    assert again.cached and not first.cached
    flat = again.sequences.flat
    assert isinstance(flat, np.memmap) and not flat.flags.writeable
    view = again.sequences[3]
    assert isinstance(view.base, np.memmap) or isinstance(view.base.base, np.memmap)
    assert again.sequences.tolist() == first.sequences.tolist() and again.names == first.names
    assert again.labels == first.labels == [parts[n].label for n in first.names]
    assert again.splits == first.splits and again.digest == first.digest
    assert again.summary().endswith("(cached)") and " tokens from " in again.summary()


def test_a_partial_or_corrupt_cache_folder_is_ignored_and_rebuilt(toy, toy_corpus):
    corpora = plugins.get_registry().corpora
    first = load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False)
    (folder,) = cache_folders()
    (folder / "meta.json").unlink()  # as if a writer had been stopped half way (never renamed in, but still)
    again = load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False)
    assert not again.cached and again.sequences.tolist() == first.sequences.tolist()
    assert load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False).cached  # rebuilt
    data = (folder / "flat.npy").read_bytes()
    (folder / "flat.npy").write_bytes(data[: len(data) // 2])  # truncated
    assert not load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False).cached
    (folder / "offsets.npy").write_bytes(b"junk")
    assert not load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False).cached
    (folder.parent / f".{folder.name}.123-abcd.tmp").mkdir()  # an interrupted writer's leftover is never read
    assert load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False).cached
    assert cache_folders() == [folder]


class Features(Encoder):
    """A feature encoder: each character a row of 3 floats (pen-stroke-like data)."""

    name, modality = "feat", "toy"

    def encode(self, item):
        return np.array([[ord(c) / 100, len(item), 0.5] for c in item], dtype=np.float64)


def test_features_go_through_the_cache_as_rows(toy):
    corpora, _ = tagged_corpora(toy)
    first = load_corpus("tag:all", Features(), corpora, progress=False)
    again = load_corpus("tag:all", Features(), corpora, progress=False)
    assert again.cached and again.sequences.flat.shape == (first.tokens, 3) and again.sequences.feature_dim == 3
    assert np.array_equal(again.sequences.flat, first.sequences.flat) and "steps from" in again.summary()


def test_a_datasets_own_split_is_kept_and_its_test_part_left_out(toy):
    corpora, parts = tagged_corpora(toy)
    corpus = load_corpus("tag:all", toy_encoder(), corpora, progress=False, workers=2)
    assert corpus.splits == [parts[n].split for n in corpus.names]
    train, valid, names = split(corpus, 0.5, seed=0)
    assert names == [n for n in corpus.names if parts[n].split == "valid"]
    by_name = dict(zip(corpus.names, corpus.sequences.tolist()))
    assert valid.tolist() == [by_name[n] for n in names]
    assert train.tolist() == [by_name[n] for n in corpus.names if parts[n].split == "train"]
    resumed_train, resumed_valid, _ = split(corpus, 0.1, seed=5, valid_names=names)  # a resumed run
    assert resumed_train.tolist() == train.tolist() and resumed_valid.tolist() == valid.tolist()


# ---------------------------------------------------------------- batches with masks


def reference_windows(sequences, augment, batch_size, seq_len, rng, rank=0, world=1):
    """piece_batches as it was with lists and IGNORE = -100 padding: the numpy version must read the same."""
    import heapq

    ignore = -100
    rows = batch_size * world
    pieces = [augment(list(seq), rng) for seq in sequences] if augment else [list(s) for s in sequences]
    chunked = [[p[s: s + seq_len + 1] for s in range(0, len(p) - 1, seq_len)] for p in pieces]
    kept = [c for c in chunked if c]
    if len(kept) < 4 * rows:
        heap = [(-len(c), k) for k, c in enumerate(kept)]
        heapq.heapify(heap)
        while len(kept) < 4 * rows and heap and -heap[0][0] >= 2:
            _, k = heapq.heappop(heap)
            whole = kept[k]
            kept[k], rest = whole[: len(whole) // 2], whole[len(whole) // 2:]
            kept.append(rest)
            heapq.heappush(heap, (-len(kept[k]), k))
            heapq.heappush(heap, (-len(rest), len(kept) - 1))
        chunked = kept
    order = list(range(len(chunked)))
    rng.shuffle(order)
    order.sort(key=lambda i: -len(chunked[i]))
    assigned = [[] for _ in range(rows)]
    heap = [(0, r) for r in range(rows)]
    for i in order:
        if chunked[i]:
            length, r = heapq.heappop(heap)
            assigned[r].append(i)
            heapq.heappush(heap, (length + len(chunked[i]), r))
    lanes, firsts = [[] for _ in range(rows)], [[] for _ in range(rows)]
    for r, mine in enumerate(assigned):
        rng.shuffle(mine)
        for i in mine:
            lanes[r].extend(chunk + [ignore] * (seq_len + 1 - len(chunk)) for chunk in chunked[i])
            firsts[r].extend([True] + [False] * (len(chunked[i]) - 1))
    steps = max(1, sorted(len(lane) for lane in lanes)[rows // 2])
    for lane, first in zip(lanes, firsts):
        del lane[steps:], first[steps:]
        first.extend([True] * (steps - len(lane)))
        lane.extend([[ignore] * (seq_len + 1)] * (steps - len(lane)))
    windows = torch.tensor(lanes, dtype=torch.long).transpose(0, 1)[:, rank::world]
    return windows, torch.tensor(firsts).transpose(0, 1)[:, rank::world]


class Shifting(Encoder):
    """Augments by adding one drawn shift to every token (works on lists and read-only arrays alike)."""

    name, modality = "shifting", "toy"

    def augment(self, seq, rng):
        shift = rng.randint(0, 5)
        return [int(t) + shift for t in seq]


@pytest.mark.parametrize("count, batch_size, seq_len, world", [(3, 2, 7, 1), (40, 3, 5, 2), (25, 2, 16, 1)])
def test_piece_batches_read_what_the_list_version_read(count, batch_size, seq_len, world):
    draw = random.Random(count)
    seqs = [[draw.randrange(300) for _ in range(draw.choice([1, 2, 3, 9, 40, 150]))] for _ in range(count)]
    store = Sequences.from_arrays(seqs)
    for augment in (False, True):
        for rank in range(world):
            old, old_restart = reference_windows(store.tolist(), Shifting().augment if augment else None, batch_size,
                                                 seq_len, random.Random(7), rank, world)
            new = piece_batches(store, Shifting(), batch_size, seq_len, random.Random(7), augment, rank, world)
            assert new.inputs.shape == old.shape and torch.equal(new.mask, old != -100)
            assert torch.equal(new.inputs.long()[new.mask], old[old != -100])
            assert torch.equal(new.restart, old_restart)


class Strokes(Encoder):
    name, modality = "strokes-test", "toy"
    pad_value = (0.0, 0.0, 0.0, 0.0, 1.0)  # Sketch-RNN's end row: padding that counts


def test_feature_windows_pad_a_pieces_last_window_with_counted_end_rows():
    rng = np.random.default_rng(1)
    drawings = [np.c_[rng.normal(size=(n, 2)), np.tile([1.0, 0, 0], (n, 1))] for n in (12, 5, 30, 10)]
    store = Sequences.from_arrays(drawings)
    inputs, mask, restart, labels = piece_batches(store, Strokes(), batch_size=2, seq_len=8, rng=random.Random(0),
                                                  augment=False, labels=np.array([3, 1, 4, 1]))
    assert inputs.dtype == torch.float32 and inputs.shape[1:] == (2, 9, 5) and mask.shape == inputs.shape[:3]
    end_row = torch.tensor(Strokes.pad_value)
    seen, blank = 0, 0
    for step, row in np.ndindex(*inputs.shape[:2]):
        w, m = inputs[step, row], mask[step, row]
        if not m.any():  # a blank window of a row that ran out: zeros, not counted
            assert (w == 0).all() and restart[step, row] and labels[step, row] == 0
            blank += 1
            continue
        assert m.all()  # data, then end rows that count
        pen = w[:, 2:]
        ended = (pen == end_row[2:]).all(-1)
        if ended.any():  # the piece's last window: end rows to its close
            first_end = int(ended.nonzero()[0])
            assert (w[first_end:] == end_row).all()
            seen += 1
        assert int(labels[step, row]) in (3, 1, 4)
    # every piece (none fills its last window) ends in a window of end rows; cutting pieces for the two
    # rows adds none, and the row that ends first has blank windows
    assert seen == 4 and blank > 0


def test_window_labels_follow_their_pieces():
    seqs = [[k] * (5 + 7 * k) for k in range(6)]  # piece k holds only token k
    ids = np.array([10, 11, 12, 13, 14, 15])
    batches = piece_batches(seqs, Shifting(), batch_size=2, seq_len=4, rng=random.Random(3), augment=False, labels=ids)
    assert batches.labels.dtype == torch.long and batches.labels.shape == batches.restart.shape
    for step in range(batches.inputs.shape[0]):
        for row in range(2):
            m = batches.mask[step, row]
            if m.any():
                assert int(batches.labels[step, row]) == 10 + int(batches.inputs[step, row][m][0])
            else:
                assert int(batches.labels[step, row]) == 0


def test_padded_batches_hold_whole_pieces_with_their_positions_and_masks():
    seqs = Sequences.from_arrays([[5, 6, 7], [1, 2], [9] * 6, [4, 4, 4, 4]])
    batches = list(padded_batches(seqs, batch_size=3, labels=np.array([0, 1, 2, 3])))
    assert [b.index.tolist() for b in batches] == [[1, 0, 3], [2]]  # sorted by length
    first = batches[0]
    assert first.inputs.shape == (3, 4) and first.mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert first.inputs.tolist() == [[1, 2, 0, 0], [5, 6, 7, 0], [4, 4, 4, 4]] and first.labels.tolist() == [1, 0, 3]
    assert batches[1].labels.tolist() == [2] and batches[1].mask.all()
    rows = Sequences.from_arrays([np.ones((2, 5)), np.full((4, 5), 2.0)])
    (padded,) = padded_batches(rows, batch_size=2, pad_value=Strokes.pad_value)
    assert padded.inputs.shape == (2, 4, 5) and padded.mask.all() and padded.labels is None
    assert padded.inputs[0, 2:].tolist() == [list(Strokes.pad_value)] * 2
