"""The array-counting Kneser–Ney baseline against a dictionary-counting one (the definition,
written out below as the reference): the same probabilities and NLLs bit for bit, on random
small texts and orders, on ids and on strings, on a sampled text's blocks, in chunks."""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import ngram
from rnnlab.data.corpus import default_corpus
from rnnlab.data.ngram import KneserNey, best_order, sample_blocks, unigram_nll
from rnnlab.data.text import TextDataModule
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.language import LanguageModel
from rnnlab.utils.errors import ConfigError

PROSE = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity. "
)


class _ReferenceLevel:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        total: defaultdict[str, int] = defaultdict(int)
        types: defaultdict[str, int] = defaultdict(int)
        for gram, count in counts.items():
            total[gram[:-1]] += count
            types[gram[:-1]] += 1
        self.total, self.types = dict(total), dict(types)
        of_count = Counter(counts.values())
        n1, n2 = of_count.get(1, 0), of_count.get(2, 0)
        if n2 and not n1:  # no singletons: counted as one, so D stays above 0
            n1 = 1
        self.discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5


class _Reference:
    """Kneser–Ney with a dictionary per order, counting within each of ``blocks``."""

    def __init__(self, blocks: list[str], order: int, vocab_size: int) -> None:
        self.order, self.vocab_size = order, vocab_size
        self.raw: list[_ReferenceLevel | None] = [None]
        self.continuation: list[_ReferenceLevel | None] = [None]
        for k in range(1, order + 1):
            grams = Counter(b[i : i + k] for b in blocks for i in range(len(b) - k + 1))
            self.raw.append(_ReferenceLevel(dict(grams)))
            longer = {b[i : i + k + 1] for b in blocks for i in range(len(b) - k)}
            self.continuation.append(_ReferenceLevel(dict(Counter(g[1:] for g in longer))))

    def probability(self, context: str, char: str) -> float:
        p = 1.0 / self.vocab_size
        for k in range(1, len(context) + 2):
            level = self.raw[k] if k == self.order else self.continuation[k]
            assert level is not None
            ctx = context[len(context) - k + 1 :]
            total = level.total.get(ctx, 0)
            if total == 0:
                break
            d = level.discount
            seen = max(level.counts.get(ctx + char, 0) - d, 0.0)
            p = (seen + d * level.types[ctx] * p) / total
        return p

    def nll(self, text: str, start: int = 0) -> np.ndarray:
        span = self.order - 1
        return np.array(
            [
                -math.log(self.probability(text[max(0, i - span) : i], text[i]))
                for i in range(start, len(text))
            ]
        )


def _same_nll(model: KneserNey, reference: _Reference, text: str | np.ndarray, shown: str) -> None:
    assert model.nll(text).tolist() == reference.nll(shown).tolist()


def _as_ids(text: str, chars: str) -> np.ndarray:
    return np.array([chars.index(c) + 1 if c in chars else 0 for c in text], dtype=np.uint8)


texts = st.text(alphabet="abcd ", min_size=1, max_size=120)


@given(train=texts, scored=st.text(alphabet="abcdz ", max_size=60), max_order=st.integers(1, 6))
@settings(max_examples=150, deadline=None)
def test_every_order_scores_as_the_dictionary_counts_do_bit_for_bit(train, scored, max_order):
    vocab = len(set(train)) + 1
    fit = KneserNey(train, max_order, vocab)
    chars = "".join(sorted(set(train)))
    from_ids = KneserNey(_as_ids(train, chars), max_order, vocab)
    # ids so large that a 2-gram's value overflows: its context counted by rank instead
    from_large = KneserNey(_as_ids(train, chars).astype(np.int64) << 31, max_order, vocab)
    assert from_ids.by_value and from_large.by_value == (max_order == 1)
    for order in range(1, max_order + 1):
        reference = _Reference([train], order, vocab)
        _same_nll(fit.with_order(order), reference, scored, scored)
        _same_nll(from_ids.with_order(order), reference, _as_ids(scored, chars), scored)
        large = _as_ids(scored, chars).astype(np.int64) << 31
        _same_nll(from_large.with_order(order), reference, large, scored)


@given(train=texts, history=st.text(alphabet="abcdz ", max_size=6), order=st.integers(1, 5))
@settings(max_examples=80, deadline=None)
def test_probability_reads_the_last_order_minus_one_characters(train, history, order):
    model = KneserNey(train, 5, len(set(train)) + 1).with_order(order)
    reference = _Reference([train], order, len(set(train)) + 1)
    context = history[max(0, len(history) - order + 1) :] if order > 1 else ""
    for char in "abcdz ":
        assert model.probability(history, char) == reference.probability(context, char)


@given(train=texts, val=st.text(alphabet="abcdz ", min_size=2, max_size=60))
@settings(max_examples=60, deadline=None)
def test_the_best_order_and_its_score_are_the_dictionary_counts(train, val):
    vocab = len(set(train)) + 1
    references = [_Reference([train], o, vocab) for o in range(2, 6)]
    try:
        scores = {r.order: float(r.nll(val, start=1).mean()) for r in references}
    except ValueError:  # a discount of 0 (see _same_nll)
        with pytest.raises(ValueError, match="math domain error"):
            best_order(train, val, vocab, range(2, 6))
        return
    model, score = best_order(train, val, vocab, range(2, 6))
    best = min(scores, key=lambda o: (scores[o], o))
    assert model.order == best and score == scores[best]


@given(train=texts, text=st.text(alphabet="abcdz ", max_size=60))
@settings(max_examples=60, deadline=None)
def test_unigram_is_add_one_bit_for_bit(train, text):
    counts = Counter(train)
    total = len(train) + 7
    expected = [-math.log((counts.get(c, 0) + 1) / total) for c in text]
    assert unigram_nll(train, text, 7).tolist() == expected


@given(
    blocks=st.lists(st.text(alphabet="abc ", min_size=6, max_size=6), min_size=1, max_size=8),
    order=st.integers(1, 5),
    scored=st.text(alphabet="abcz ", max_size=40),
)
@settings(max_examples=80, deadline=None)
def test_a_sample_of_blocks_counts_no_ngram_across_their_seams(blocks, order, scored):
    vocab = 6
    reference = _Reference(blocks, order, vocab)
    _same_nll(KneserNey("".join(blocks), order, vocab, block=6), reference, scored, scored)
    chars = "".join(sorted(set("".join(blocks))))
    large = KneserNey(_as_ids("".join(blocks), chars).astype(np.int64) << 31, order, vocab, 6)
    _same_nll(large, reference, _as_ids(scored, chars).astype(np.int64) << 31, scored)


@pytest.mark.parametrize("order", [2, 3, 5])
def test_a_training_text_without_singletons_still_gives_every_character_a_probability(order):
    # every n-gram of "aabb..." is seen at least twice: the textbook discount n1 / (n1 + 2 n2)
    # is 0, which left 'c' (never in training) probability 0 and its logarithm undefined
    model = KneserNey("aabb" * 40, order, vocab_size=3)
    nll = model.nll("abcab")
    assert np.isfinite(nll).all()
    assert nll[2] > 2 * nll[1]  # the unseen 'c' costs more than a seen continuation
    for history in ("", "a", "ab", "abb", "bc"):
        total = sum(model.probability(history, char) for char in "abc")
        assert math.isclose(total, 1.0, rel_tol=1e-12), history


def test_a_long_text_is_scored_in_chunks_as_in_one_piece(monkeypatch):
    text, _ = default_corpus()
    train, val = text[:20000], text[20000:23000]
    vocab = len(set(text)) + 1
    model, score = best_order(train, val, vocab, range(2, 6))
    whole = model.nll(val, start=1)
    monkeypatch.setattr(ngram, "_CHUNK", 257)
    assert model.nll(val, start=1).tolist() == whole.tolist()
    assert math.isclose(best_order(train, val, vocab, range(2, 6))[1], score, rel_tol=1e-12)


def test_the_shipped_corpus_scores_as_the_dictionary_counts():
    text, _ = default_corpus()
    train, val = text[:30000], text[30000:32000]
    vocab = len(set(text)) + 1
    expected = _Reference([train], 7, vocab).nll(val, start=1)
    assert KneserNey(train, 7, vocab).nll(val, start=1).tolist() == expected.tolist()


def test_a_sample_is_whole_blocks_drawn_by_the_seed():
    ids = np.arange(10 * ngram.SAMPLE_BLOCK, dtype=np.int64)
    assert sample_blocks(ids, len(ids), seed=0) == (ids, None)
    sample, block = sample_blocks(ids, 3 * ngram.SAMPLE_BLOCK + 5, seed=1)
    assert block == ngram.SAMPLE_BLOCK and len(sample) == 3 * block
    starts = sample[::block]
    assert (starts % block == 0).all() and (np.diff(starts) > 0).all()
    assert (sample.reshape(3, block) == starts[:, None] + np.arange(block)).all()
    assert sample_blocks(ids, 3 * block, seed=1)[0].tolist() == sample.tolist()
    assert sample_blocks(ids, 3 * block, seed=2)[0].tolist() != sample.tolist()


def test_bad_texts_are_refused():
    with pytest.raises(ValueError, match="max_order"):
        KneserNey("", 3, 4)
    with pytest.raises(ValueError, match=">= 0"):
        KneserNey(np.array([1, -2]), 3, 4)
    with pytest.raises(ValueError, match="too large"):
        KneserNey(np.array([1, 1 << 61]), 3, 4)
    with pytest.raises(TypeError, match="fitted on ids"):
        KneserNey(np.array([1, 2]), 2, 4).nll("ab")


# --- the language model's data: skipping and sampling the n-gram baseline -------------------------


def _validate(data: TextDataModule) -> dict[str, float]:
    encoder = RNNEncoder(8, 8, cell="lstm", bidirectional=False)
    torch.manual_seed(0)
    assert data.vocab is not None
    model = LanguageModel(encoder, len(data.vocab), torch.optim.SGD, embedding_size=8)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (metrics,) = trainer.validate(model, data, verbose=False)
    return metrics


def test_ngram_max_order_0_skips_the_baseline_and_its_metric_is_nan(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(PROSE * 30, encoding="utf-8")
    data = TextDataModule(file=str(path), batch_size=4, bptt=16, ngram_max_order=0)
    data.setup()
    assert data.ngram_order is None and "ngram" not in data.baselines["val"]
    assert "ngram_order" not in data.state_dict()
    assert data.data_metrics()["data/ngram_fit_chars"] == 0
    metrics = _validate(data)
    assert math.isnan(metrics["val/bpc_ngram"]) and math.isfinite(metrics["val/bpc_unigram"])
    restored = TextDataModule(file=str(path), batch_size=4, bptt=16, ngram_max_order=0)
    restored.load_state_dict(data.state_dict())
    restored.setup()
    assert restored.ngram_order is None


@pytest.mark.parametrize("order", [1, -1])
def test_an_ngram_order_of_1_or_below_0_is_refused(order):
    with pytest.raises(ConfigError, match="ngram_max_order must be 0"):
        TextDataModule(ngram_max_order=order)


def test_a_long_train_part_fits_the_ngram_on_a_seeded_sample_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="rnnlab")
    whole = TextDataModule(batch_size=4, bptt=16, ngram_max_order=4)
    whole.setup()
    sampled = TextDataModule(batch_size=4, bptt=16, ngram_max_order=4, ngram_fit_chars=150_000)
    sampled.setup()
    assert "fitted on a sample of the train part: 131072 of its" in caplog.text
    train_chars = len(sampled.ids["train"])
    assert sampled.data_metrics() == {
        "data/train_chars": train_chars,
        "data/ngram_fit_chars": 2 * ngram.SAMPLE_BLOCK,
    }
    assert whole.data_metrics()["data/ngram_fit_chars"] == train_chars
    again = TextDataModule(batch_size=4, bptt=16, ngram_max_order=4, ngram_fit_chars=150_000)
    again.setup()
    scores = {
        name: data.baselines["val"]["ngram"].tolist()
        for name, data in (("whole", whole), ("sampled", sampled), ("again", again))
    }
    assert scores["sampled"] == scores["again"]  # the seed draws the same blocks
    assert scores["sampled"] != scores["whole"]
    # the unigram counts the whole train part either way
    assert (
        sampled.baselines["val"]["unigram"].tolist() == whole.baselines["val"]["unigram"].tolist()
    )


def test_the_text_is_kept_as_one_byte_ids_and_read_as_int64():
    data = TextDataModule(batch_size=4, bptt=16, ngram_max_order=2)
    data.setup()
    assert {ids.dtype for ids in data.ids.values()} == {np.dtype(np.uint8)}
    assert data.ids["val"].base is data.ids["train"].base  # views of one array
    assert data.parts["val"].dtype == np.int64
    assert data.parts["val"].tolist() == data.ids["val"].tolist()
    batch = next(iter(data.train_dataloader()))
    assert batch.x.dtype == batch.y.dtype == torch.int64
