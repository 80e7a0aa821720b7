"""The baselines a language model is compared with, on exactly the characters it is scored on:
per-character NLLs of the val and test parts (from their second character on) under the
add-one unigram and the interpolated Kneser–Ney model, both fitted on the train part's ids.

The n-gram model's order is chosen on val among 2..``max_order`` (on its first
``ORDER_CHOICE_CHARS`` characters: scoring every order costs six scorings of val), or is the
one stored with a trained model; ``max_order`` 0 skips it. A train part over ``fit_chars``
characters fits it on a seeded sample of that many (``ngram.sample_blocks``); the unigram
always counts all of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from rnnlab.data.ngram import best_order, sample_blocks, unigram_nll
from rnnlab.data.progress import setup_step

log = logging.getLogger(__name__)

# the n-gram order is chosen on at most this many characters of val (all of a shipped corpus's)
ORDER_CHOICE_CHARS = 2_000_000


@dataclass
class TextBaselines:
    """The NLLs per part ('val', 'test') and baseline ('unigram', 'ngram': absent when
    skipped), the n-gram order, and how many training characters fitted it (``sampled``: a
    sample of the train part rather than all of it)."""

    nll: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    order: int | None = None
    fit_chars: int = 0
    sampled: bool = False

    def metrics(self, train_chars: int) -> dict[str, float]:
        """``data/ngram_fit_chars``: the training characters that fitted the n-gram baseline
        (fewer than ``data/train_chars`` when it was fitted on a sample; 0 when skipped)."""
        return {
            "data/train_chars": float(train_chars),
            "data/ngram_fit_chars": float(self.fit_chars),
        }


def fit_text_baselines(
    parts: dict[str, np.ndarray],
    vocab_size: int,
    max_order: int,
    stored_order: int | None,
    fit_chars: int,
    seed: int,
) -> TextBaselines:
    """The baselines of ``parts`` ('train', 'val', 'test' ids); see the module docstring."""
    train = parts["train"]
    result = TextBaselines()
    for name in ("val", "test"):
        result.nll[name] = {"unigram": unigram_nll(train, parts[name][1:], vocab_size)}
    if max_order == 0:
        log.info("n-gram baseline skipped (data.ngram_max_order=0): its bpc_ngram is NaN")
        return result
    sample, block = sample_blocks(train, fit_chars, seed)
    result.fit_chars, result.sampled = len(sample), block is not None
    if result.sampled:
        log.info(
            "the n-gram baseline is fitted on a sample of the train part: %d of its %d "
            "characters (data.ngram_fit_chars=%d, blocks drawn with data.seed=%d)",
            len(sample),
            len(train),
            fit_chars,
            seed,
        )
    orders = range(2, max_order + 1) if stored_order is None else [stored_order]
    what = f"fitting the n-gram baseline (orders {min(orders)}-{max(orders)})"
    choice = parts["val"][:ORDER_CHOICE_CHARS]
    with setup_step(f"{what} on {len(sample):,} characters and choosing on val", len(sample)):
        model, _ = best_order(sample, choice, vocab_size, orders, block)
    result.order = model.order
    chars = len(parts["val"]) + len(parts["test"])
    with setup_step(f"scoring val and test with the order-{model.order} n-gram", chars):
        for name in ("val", "test"):
            result.nll[name]["ngram"] = model.nll(parts[name], start=1)
    return result
