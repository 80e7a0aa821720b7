"""Character n-gram baselines of a language model: add-one unigram and interpolated Kneser–Ney.

Both are fitted on the training text only and score a text one character at a time from the
characters before it, giving the negative log-likelihood (nats) of every character, so the
language model's bits per character can be compared with theirs on exactly the same positions.

Kneser–Ney (Chen & Goodman 1999, interpolated, one discount per order): the highest order uses
raw counts, each lower order *continuation* counts (in how many distinct contexts a string
follows), and the lowest interpolates with the uniform distribution over the vocabulary, so
every character of the vocabulary has a probability above zero.
"""

from __future__ import annotations

import copy
import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np


def unigram_nll(train: str, text: str, vocab_size: int) -> np.ndarray:
    """NLL of each character of ``text`` under add-one smoothed character frequencies of
    ``train`` over a vocabulary of ``vocab_size`` symbols."""
    counts = Counter(train)
    total = len(train) + vocab_size
    return np.array([-math.log((counts.get(c, 0) + 1) / total) for c in text])


class _Level:
    """The counts of one order: per n-gram, and per context their total and distinct
    followers, with the order's absolute discount D = n1 / (n1 + 2 n2)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        total: defaultdict[str, int] = defaultdict(int)
        types: defaultdict[str, int] = defaultdict(int)
        for gram, count in counts.items():
            total[gram[:-1]] += count
            types[gram[:-1]] += 1
        self.context_total, self.context_types = dict(total), dict(types)
        of_count = Counter(counts.values())
        n1, n2 = of_count.get(1, 0), of_count.get(2, 0)
        self.discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5


class KneserNey:
    """Interpolated Kneser–Ney character models of every order up to ``max_order``, fitted on
    ``train``; ``order`` picks the one that ``probability`` and ``nll`` use.

    Lower orders' continuation counts do not depend on the top order, so one fit serves all
    orders. ``vocab_size`` counts every symbol a scored text may hold (unseen ones included),
    which the uniform floor spreads its mass over.
    """

    def __init__(self, train: str, max_order: int, vocab_size: int) -> None:
        if max_order < 1 or not train:
            raise ValueError(f"need a training text and max_order >= 1, got {max_order}")
        self.vocab_size = vocab_size
        self.order = max_order
        self.raw: list[_Level | None] = [None]
        self.continuation: list[_Level | None] = [None]
        for k in range(1, max_order + 1):
            grams = Counter(train[i : i + k] for i in range(len(train) - k + 1))
            self.raw.append(_Level(dict(grams)))
            # in how many distinct contexts of one character each k-gram occurs
            longer = {train[i : i + k + 1] for i in range(len(train) - k)}
            self.continuation.append(_Level(dict(Counter(g[1:] for g in longer))))
        self.max_order = max_order

    def with_order(self, order: int) -> KneserNey:
        """This fit, scoring with ``order`` (1 to ``max_order``)."""
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in 1..{self.max_order}, got {order}")
        view = copy.copy(self)
        view.order = order
        return view

    def probability(self, history: str, char: str) -> float:
        """P(char | the last ``order - 1`` characters of ``history``)."""
        span = self.order - 1
        return self._probability(history[len(history) - span :] if span else "", char)

    def _probability(self, context: str, char: str) -> float:
        # from the uniform floor up through ever longer contexts, while training saw them
        p = 1.0 / self.vocab_size
        for k in range(1, len(context) + 2):
            level = self.raw[k] if k == self.order else self.continuation[k]
            assert level is not None
            ctx = context[len(context) - k + 1 :]
            total = level.context_total.get(ctx, 0)
            if total == 0:
                break  # an unseen context: the shorter contexts' estimate stands
            d = level.discount
            seen = max(level.counts.get(ctx + char, 0) - d, 0.0)
            p = (seen + d * level.context_types[ctx] * p) / total
        return p

    def nll(self, text: str, start: int = 0) -> np.ndarray:
        """NLL of each character of ``text`` from ``start`` on, each given those before it."""
        span = self.order - 1
        return np.array(
            [
                -math.log(self._probability(text[max(0, i - span) : i], text[i]))
                for i in range(start, len(text))
            ]
        )


def best_order(
    train: str, val: str, vocab_size: int, orders: Iterable[int]
) -> tuple[KneserNey, float]:
    """The Kneser–Ney model among ``orders`` with the lowest mean NLL on ``val`` from its second
    character on (ties: the lower order), and that NLL."""
    orders = sorted(orders)
    if not orders:
        raise ValueError("no n-gram order to choose from")
    fit = KneserNey(train, orders[-1], vocab_size)
    best: tuple[KneserNey, float] | None = None
    for order in orders:
        model = fit.with_order(order)
        score = float(model.nll(val, start=1).mean())
        if best is None or score < best[1]:
            best = (model, score)
    assert best is not None
    return best
