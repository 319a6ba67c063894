import os
import random

import pytest

from composer import ComposerError, plugins
from composer.data import IGNORE, load_corpus, piece_batches, resolve, split


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
    assert second.sequences == first.sequences and second.names == first.names
    assert encoder.chars  # the fitted vocabulary comes back with the cache
    (toy_corpus / "new.toy").write_text("zzz")
    third = load_corpus(str(toy_corpus), toy_encoder(), corpora, progress=False)
    assert not third.cached and len(third.sequences) == len(first.sequences) + 1


def test_split_is_by_piece_seeded_and_reusable(toy, toy_corpus):
    corpus = load_corpus(str(toy_corpus), toy_encoder(), plugins.get_registry().corpora, progress=False)
    train, valid, names = split(corpus, 0.2, seed=1)
    assert len(valid) == round(len(corpus.sequences) * 0.2) and len(train) + len(valid) == len(corpus.sequences)
    again_train, again_valid, _ = split(corpus, 0.5, seed=9, valid_names=names)
    assert again_valid == valid and again_train == train


def test_small_corpus_validates_on_the_tail_of_each_piece(toy, tmp_path):
    (tmp_path / "one.toy").write_text("abcabcabcabcabcabcabcabcabcabc")
    corpus = load_corpus(str(tmp_path), toy_encoder(), plugins.get_registry().corpora, progress=False)
    train, valid, names = split(corpus, 0.1, seed=0)
    assert names == ["@tail:0.1"] and len(train[0]) == 28 and valid[0][0] == train[0][-1]
    assert split(corpus, 0.5, seed=3, valid_names=names)[1] == valid


def test_piece_batches_restart_the_state_where_each_piece_begins(toy):
    seqs = [list(range(100)), list(range(100, 130)), list(range(200, 212)), list(range(300, 390))]
    enc = toy_encoder()
    windows, restart = piece_batches(seqs, enc, batch_size=2, seq_len=10, rng=random.Random(0), augment=False)
    assert windows.shape[1:] == (2, 11) and restart.shape == windows.shape[:2]
    seen = []
    for row in range(2):
        for step in range(windows.shape[0]):
            w = windows[step, row]
            real = w[w != IGNORE].tolist()
            if restart[step, row] and real:
                seen.append(real[0])  # a piece starts here, from its first token
            if step + 1 < windows.shape[0] and not restart[step + 1, row]:
                assert windows[step + 1, row, 0] == w[-1]  # the next window continues this one
    # four pieces for two rows are cut into eight segments (each restarts); every piece's start is among them
    assert {0, 100, 200, 300} <= set(seen) and len(seen) == 8
    predicted = sorted(t for w in windows.reshape(-1, 11) for t in w[1:].tolist() if t != IGNORE)
    assert predicted == sorted(t for s in seqs for t in s[1:])  # every token but a piece's first is a target
    shard, shard_restart = piece_batches(seqs, enc, batch_size=2, seq_len=10, rng=random.Random(0), augment=False,
                                         rank=1, world=2)
    assert shard.shape[1] == 2 and shard_restart.shape[1] == 2


def test_piece_batches_end_the_epoch_before_rows_run_dry(toy):
    seqs = [list(range(1000))] + [list(range(50)) for _ in range(7)]
    windows, _ = piece_batches(seqs, toy_encoder(), batch_size=4, seq_len=10, rng=random.Random(0), augment=False)
    active = (windows[:, :, 1:] != IGNORE).any(-1).sum(-1)
    assert (active >= 2).all()  # never an update from fewer than half the rows


def test_a_small_corpus_is_cut_so_every_row_reads_and_long_tails_are_reached(toy):
    seqs = [list(range(400)), list(range(1000, 1040))]
    windows, restart = piece_batches(seqs, toy_encoder(), batch_size=4, seq_len=10, rng=random.Random(0),
                                     augment=False)
    assert (windows[0, :, 1:] != IGNORE).any(-1).all()  # no row sits empty
    predicted = {t for t in windows[:, :, 1:].reshape(-1).tolist() if t != IGNORE}
    assert 399 in predicted and 1039 in predicted  # the ends of both pieces are trained on
    assert int(restart.sum()) >= 16
