"""The n-gram baselines (``data.ngram``) value by value on tiny inputs: ids and their refusals,
add-one unigram NLLs on ids, one order's counts and discount, sorted lookup, Kneser–Ney
probabilities worked out by hand and summing to 1 over the vocabulary, scoring from a start,
the choice of order and the block sample. Deterministic and fast; tests/test_ngram_arrays.py
compares the whole model with a dictionary-counting reference."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from rnnlab.data import ngram
from rnnlab.data.ngram import KneserNey, _Level, best_order, neg_log, sample_blocks, unigram_nll

PROSE = "the cat sat on the mat, the cat ate the rat; a bat sat on a hat. "


def test_ids_of_strings_and_arrays():
    chars = ngram._char_ids("cab")
    assert chars == {"a": 1, "b": 2, "c": 3}
    assert ngram._char_ids(np.array([3, 1])) is None
    ids = ngram._ids_of("abzc", chars)
    assert ids.dtype == np.int64 and ids.tolist() == [1, 2, 0, 3]
    array = np.array([0, 4, 2], dtype=np.uint8)
    assert ngram._ids_of(array, None) is array
    assert ngram._ids_of(np.zeros(0, dtype=np.int64), None).tolist() == []


@pytest.mark.parametrize(
    ("text", "chars", "error", "message"),
    [
        ("ab", None, TypeError, "this model was fitted on ids: score ids, not a string"),
        (np.zeros((2, 2), dtype=np.int64), None, TypeError, "a text is a string or a 1-D"),
        (np.array([1.0, 2.0]), None, TypeError, "a text is a string or a 1-D"),
        (np.array([2, -1]), None, ValueError, "character ids must be >= 0"),
    ],
)
def test_ids_of_refuses_exactly(text, chars, error, message):
    with pytest.raises(error) as caught:
        ngram._ids_of(text, chars)
    assert str(caught.value).startswith(message)
    if error is TypeError and chars is None and not isinstance(text, str):
        assert str(caught.value) == "a text is a string or a 1-D array of integer ids"


def test_neg_log_is_math_log_of_each_value():
    assert neg_log(np.zeros(0)).shape == (0,)
    values = np.array([0.5, 0.1, 0.5, 1.0])
    assert neg_log(values).tolist() == [-math.log(v) for v in values.tolist()]


def test_unigram_on_ids_counts_ids_the_train_part_never_holds_as_zero():
    nll = unigram_nll(np.array([1, 1, 2]), np.array([0, 1, 2, 5]), 6)  # 3 + 6 in the total
    expected = [-math.log(c / 9) for c in (1, 3, 2, 1)]
    assert nll.tolist() == expected
    assert (
        unigram_nll(np.zeros(0, dtype=np.int64), np.array([0, 2]), 4).tolist()
        == [-math.log(1 / 4)] * 2
    )
    assert unigram_nll("", "ab", 4).tolist() == [-math.log(1 / 4)] * 2
    assert unigram_nll("aab", np.zeros(0, dtype=np.int64), 4).tolist() == []


def test_a_level_counts_totals_types_and_its_discount():
    level = _Level.of(np.array([2, 1, 1, 3]), np.array([0, 0, 1, 1]), 3)
    assert level.context_total.tolist() == [3.0, 4.0, 0.0]
    assert level.context_types.tolist() == [2, 2, 0]
    assert level.discount == 2 / (2 + 2 * 1)
    zeros = _Level.of(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 0]), 2)
    assert zeros.context_types.tolist() == [1, 2]  # a count of 0 is no follower
    assert zeros.discount == 1 / (1 + 2 * 2)
    assert _Level.of(np.array([3, 4]), np.array([0, 0]), 1).discount == 0.5  # no 1s or 2s


def test_lookup_finds_each_key_or_minus_one():
    keys = np.array([2, 5, 9])
    wanted = np.array([9, 1, 5, 10, 2, 5, -1])
    assert ngram._lookup(keys, wanted).tolist() == [2, -1, 1, -1, 0, 1, -1]
    assert ngram._lookup(np.zeros(0, dtype=np.int64), np.array([0, 3])).tolist() == [-1, -1]
    assert ngram._lookup(keys, np.zeros(0, dtype=np.int64)).tolist() == []


def test_refusals_of_the_model_are_worded_exactly():
    for train, order in (("abc", 0), ("", 3)):
        with pytest.raises(ValueError) as caught:
            KneserNey(train, order, 4)
        assert str(caught.value) == f"need a training text and max_order >= 1, got {order}"
    with pytest.raises(ValueError) as caught:
        KneserNey(np.array([(1 << 61) - 1]), 1, 4)  # 2**61 * (1 + 1) = 2**62: too large
    assert str(caught.value) == f"character ids up to {(1 << 61) - 1} are too large to count"
    assert KneserNey(np.array([(1 << 60) - 1, 0]), 1, 4).base == 1 << 60  # 3 * 2**60
    model = KneserNey("abc", 3, 4)
    for order in (0, 4):
        with pytest.raises(ValueError) as caught:
            model.with_order(order)
        assert str(caught.value) == f"order must be in 1..3, got {order}"
    with pytest.raises(ValueError) as caught:
        best_order("abc", "ab", 4, [])
    assert str(caught.value) == "no n-gram order to choose from"


def test_keys_are_values_while_the_longest_fits_below_2_to_62():
    top = (1 << 31) - 1  # base 2**31: a 2-gram's value reaches 2**62
    assert KneserNey(np.array([top, 0, top]), 1, 4).by_value
    assert not KneserNey(np.array([top, 0, top]), 2, 4).by_value
    assert KneserNey(np.array([top - 1, 0, top - 1]), 2, 4).by_value


def test_kneser_ney_of_abab_worked_out_by_hand():
    # 2-grams ab (twice) and ba: D2 = 1 / (1 + 2) = 1/3; the 1-grams' continuation counts
    # (a after b, b after a) are 1 and 1: D1 = 1, so P1 is the uniform 1/3 over {<unk>, a, b}
    model = KneserNey("abab", 2, 3)
    expected = {
        ("a", "b"): (2 - 1 / 3 + 1 / 3 * 1 / 3) / 2,  # 8/9
        ("a", "a"): (1 / 3 * 1 / 3) / 2,
        ("a", "z"): (1 / 3 * 1 / 3) / 2,
        ("b", "a"): (1 - 1 / 3 + 1 / 3 * 1 / 3) / 1,  # 7/9
        ("b", "b"): 1 / 3 * 1 / 3,
        ("z", "a"): 1 / 3,  # an unseen context: the shorter one's
        ("", "b"): 1 / 3,
    }
    for (history, char), p in expected.items():
        assert math.isclose(model.probability(history, char), p, rel_tol=1e-12), (history, char)
    assert math.isclose(model.probability("xyzba", "b"), 8 / 9, rel_tol=1e-12)
    nll = model.nll("abba")
    assert np.allclose(nll, [-math.log(p) for p in (1 / 3, 8 / 9, 1 / 9, 7 / 9)], rtol=1e-12)


def test_order_1_alone_is_the_raw_counts_discounted_towards_the_uniform():
    # a twice, b once: D = 1 / (1 + 2); the uniform 1/3 over {<unk>, a, b} gets D * 2 types
    model = KneserNey("aab", 1, 3)
    expected = {"a": (2 - 1 / 3 + 2 / 9) / 3, "b": (1 - 1 / 3 + 2 / 9) / 3, "z": (2 / 9) / 3}
    for char, p in expected.items():
        assert math.isclose(model.probability("ba", char), p, rel_tol=1e-12), char
    assert math.isclose(sum(expected.values()), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_over_the_vocabulary(order):
    vocab = sorted(set(PROSE))
    model = KneserNey(PROSE, 4, len(vocab) + 1).with_order(order)
    for history in ("", "t", "th", "the", "at ", "zz", " a", "cat"):
        total = sum(model.probability(history, c) for c in vocab) + model.probability(
            history, "\x01"
        )
        assert math.isclose(total, 1.0, rel_tol=1e-12), history


def test_with_order_is_a_view_that_leaves_the_fit_alone():
    model = KneserNey(PROSE, 4, 30)
    view = model.with_order(2)
    assert (view.order, model.order, view.max_order) == (2, 4, 4)
    assert view.keys is model.keys
    assert view.nll(PROSE).tolist() == KneserNey(PROSE, 2, 30).nll(PROSE).tolist()


def test_scoring_from_a_start_and_the_mean():
    model = KneserNey(PROSE[:40], 3, 30)
    text = PROSE[30:]
    whole = model.nll(text)
    assert len(whole) == len(text)
    assert model.nll(text, start=5).tolist() == whole[5:].tolist()
    assert model.nll(text, start=len(text)).tolist() == []
    assert model.nll(text, start=len(text) + 3).tolist() == []
    means = model.mean_nll(text, [1, 3])
    assert means[3] == pytest.approx(whole.mean(), rel=1e-12)
    assert means[1] == pytest.approx(model.with_order(1).nll(text).mean(), rel=1e-12)
    assert model.mean_nll(text, [3], start=4)[3] == pytest.approx(whole[4:].mean(), rel=1e-12)
    for start in (len(text), len(text) + 2):
        assert all(math.isnan(v) for v in model.mean_nll(text, [2, 3], start=start).values())


def test_the_best_order_fits_within_the_blocks():
    blocks = ["abcabd", "dcbadc", "abdcab", "cdabcd"]
    val = "abcdabdcbadcab"
    model, score = best_order("".join(blocks), val, 5, [2, 3], block=6)
    within = KneserNey("".join(blocks), 3, 5, block=6).with_order(model.order)
    assert score == pytest.approx(within.nll(val, start=1).mean(), rel=1e-12)
    assert model.nll(val).tolist() == within.nll(val).tolist()
    across = best_order("".join(blocks), val, 5, [2, 3])[1]
    assert score != pytest.approx(across, rel=1e-9)


@pytest.mark.parametrize(
    ("scores", "best"),
    [
        ({2: 1.0, 3: 1.0, 4: 0.5, 5: 0.5}, 4),
        ({2: 1.0, 3: 1.0}, 2),
        ({2: 2.0, 3: 1.0, 4: 1.5}, 3),
        ({3: 0.5, 2: 1.0}, 3),
    ],
)
def test_the_best_order_is_the_lowest_score_ties_to_the_lower_order(monkeypatch, scores, best):
    monkeypatch.setattr(KneserNey, "mean_nll", lambda self, text, orders, start=0: scores)
    model, score = best_order(PROSE, "the cat", 30, scores)
    assert (model.order, score) == (best, scores[best])
    assert model.max_order == max(scores)


def test_a_sample_is_one_block_at_least_and_every_block_at_most():
    block = ngram.SAMPLE_BLOCK
    ids = np.arange(3 * block + 10, dtype=np.int64)
    sample, size = sample_blocks(ids, 100, seed=0)  # fewer than a block wanted: one block
    assert size == block and len(sample) == block and sample[0] % block == 0
    everything, size = sample_blocks(ids, 3 * block + 9, seed=0)
    assert size == block and everything.tolist() == ids[: 3 * block].tolist()
    for seed in range(4):
        drawn, _ = sample_blocks(ids, 2 * block, seed=seed)
        starts = drawn[::block]
        assert len(drawn) == 2 * block and starts[0] < starts[1]


def test_a_text_of_at_most_one_block_is_fitted_whole_whatever_the_limit():
    # a train part between ngram_fit_chars (>= 1000) and one block once asked numpy to draw a
    # block among none (a ValueError at set-up)
    short = np.arange(2000, dtype=np.int64)
    sample, block = sample_blocks(short, 1000, seed=0)
    assert block is None and sample is short
    one = np.arange(ngram.SAMPLE_BLOCK, dtype=np.int64)
    assert sample_blocks(one, 10, seed=0)[1] is None
    longer = np.arange(ngram.SAMPLE_BLOCK + 1, dtype=np.int64)
    sample, block = sample_blocks(longer, 10, seed=0)
    assert block == ngram.SAMPLE_BLOCK and sample.tolist() == one.tolist()


def test_every_id_training_never_saw_scores_alike_whatever_its_value():
    # ids 2 and 3 lie past the training text's (base 2): a 2-gram (0, 2) must not be read as
    # the key 0 * 2 + 2 of the seen (1, 0), nor a lone 2 as a seen id
    model = KneserNey(np.array([0, 1, 0, 1, 1, 0]), 3, 5)
    for order in (1, 2, 3):
        scored = model.with_order(order)
        assert scored.nll(np.array([0, 2])).tolist() == scored.nll(np.array([0, 3])).tolist()
        assert (
            scored.nll(np.array([1, 0, 2, 1])).tolist()
            == scored.nll(np.array([1, 0, 4, 1])).tolist()
        )


def test_ids_past_the_float_range_score_as_small_ones():
    # 2**59 + 1 is no float64: keys must stay integers all the way
    train = np.array([0, 1, 1, 0, 1, 1])
    scored = np.array([1, 0, 1, 1, 0])
    big = 1 << 59
    small_model, big_model = KneserNey(train, 3, 3), KneserNey(train + big, 3, 3)
    for order in (1, 2, 3):
        expected = small_model.with_order(order).nll(scored).tolist()
        assert big_model.with_order(order).nll(scored + big).tolist() == expected


def test_counting_each_order_is_logged_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="rnnlab.data.ngram")
    KneserNey("abab", 2, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "Kneser-Ney: counting 1-grams of 4 characters",
        "Kneser-Ney: counting 2-grams of 4 characters",
    ]


def test_ids_past_the_training_texts_score_as_an_unseen_character_of_a_string():
    # a string model's unseen characters are id 0, below its base; an id model's may lie past
    # it, and must not be read as any seen id (such as 1, the key an unseen one must not get)
    from_string = KneserNey("ababba", 3, 4)
    from_ids = KneserNey(np.array([1, 2, 1, 2, 2, 1]), 3, 4)
    for order in (1, 2, 3):
        expected = from_string.with_order(order).nll("azbay").tolist()
        assert from_ids.with_order(order).nll(np.array([1, 5, 2, 1, 7])).tolist() == expected
