"""Character n-gram baselines of a language model: add-one unigram and interpolated Kneser–Ney.

Both are fitted on the training text only and score a text one character at a time from the
characters before it, giving the negative log-likelihood (nats) of every character, so the
language model's bits per character can be compared with theirs on exactly the same positions.

Kneser–Ney (Chen & Goodman 1999, interpolated, one discount per order): the highest order uses
raw counts, each lower order *continuation* counts (in how many distinct contexts a string
follows), and the lowest interpolates with the uniform distribution over the vocabulary, so
every character of the vocabulary has a probability above zero.

Counting is done on arrays, never with a Python object per n-gram: each k-gram of the training
text is an integer key, ``rank of its first k - 1 characters * base + its last character``
(``base``: one more than the largest id), and ``np.unique`` ranks the distinct keys of each
order in sorted order, so a k-gram's context is its key ``// base`` and a text's k-grams are
found by ``np.searchsorted``. The probabilities are those of the definition, computed in the
same order of float64 operations, and the logarithm is Python's ``math.log`` (numpy's SIMD
``log`` may differ from it in the last bit), so the scores are bit for bit those of a
dictionary of counts.

A training text over ``sample_chars`` characters is fitted on a seeded sample of it
(``sample_blocks``): whole blocks of ``SAMPLE_BLOCK`` characters, with no n-gram counted across
the seam between two blocks.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rnnlab.data.cache import drop_pages

log = logging.getLogger(__name__)

# characters per block of a sampled training text (n-grams never span two blocks)
SAMPLE_BLOCK = 1 << 16
# positions scored at once: bounds the memory of scoring a long text
_CHUNK = 1 << 20

Text = str | np.ndarray


def _ids_of(text: Text, chars: dict[str, int] | None) -> np.ndarray:
    """A text as non-negative integer ids: arrays as they are, strings through ``chars`` (a
    character the training text lacks is 0)."""
    if isinstance(text, str):
        if chars is None:
            raise TypeError("this model was fitted on ids: score ids, not a string")
        return np.fromiter((chars.get(c, 0) for c in text), dtype=np.int64, count=len(text))
    ids = np.asarray(text)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError("a text is a string or a 1-D array of integer ids")
    if len(ids) and np.issubdtype(ids.dtype, np.signedinteger) and int(ids.min()) < 0:
        raise ValueError("character ids must be >= 0")
    return ids


def _char_ids(train: Text) -> dict[str, int] | None:
    """Ids of a training string's characters (1, 2, ... in sorted order; 0 is any other)."""
    return {c: i + 1 for i, c in enumerate(sorted(set(train)))} if isinstance(train, str) else None


def neg_log(probabilities: np.ndarray) -> np.ndarray:
    """``-math.log`` of each value, computed once per distinct value (texts repeat them)."""
    if not len(probabilities):
        return np.zeros(0)
    distinct, where = np.unique(probabilities, return_inverse=True)
    logs = np.fromiter(map(math.log, distinct.tolist()), dtype=np.float64, count=len(distinct))
    return -logs[where]


def unigram_nll(train: Text, text: Text, vocab_size: int) -> np.ndarray:
    """NLL of each character of ``text`` under add-one smoothed character frequencies of
    ``train`` over a vocabulary of ``vocab_size`` symbols."""
    chars = _char_ids(train)
    train_ids, ids = _ids_of(train, chars), _ids_of(text, chars)
    size = max(int(train_ids.max(initial=0)), int(ids.max(initial=0))) + 1
    # counted a chunk at a time: np.bincount widens its input to int64 (8 bytes a character)
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, len(train_ids), _CHUNK):
        counts += np.bincount(train_ids[start : start + _CHUNK], minlength=size)
    drop_pages(train)  # a memory-mapped text read through need not stay resident
    total = len(train_ids) + vocab_size
    per_id = np.fromiter(
        (-math.log((c + 1) / total) for c in counts.tolist()), dtype=np.float64, count=size
    )
    return per_id[ids]


@dataclass
class _Level:
    """The counts of one order: per distinct n-gram (by rank), and per context (by the rank
    of the n-gram's first n - 1 characters) their total and distinct followers, with the
    order's absolute discount D = n1 / (n1 + 2 n2)."""

    counts: np.ndarray
    context_total: np.ndarray
    context_types: np.ndarray
    discount: float

    @classmethod
    def of(cls, counts: np.ndarray, context: np.ndarray, contexts: int) -> _Level:
        """``counts`` per n-gram, ``context`` the rank of its first n - 1 characters (of
        ``contexts``)."""
        # float64 sums of integers stay exact below 2**53
        total = np.bincount(context, weights=counts, minlength=contexts)
        types = np.bincount(context[counts > 0], minlength=contexts)
        n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
        # without singletons the estimate is 0, which gives the shorter contexts (and, at the
        # lowest order, characters never seen in training) no probability at all: counted as
        # if one n-gram had been seen once instead
        discount = max(n1, 1) / (max(n1, 1) + 2 * n2) if n1 + n2 else 0.5
        return cls(counts, total, types, discount)


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The index of each of ``wanted`` in the sorted ``keys``, -1 where it is absent. The
    queries are searched for in sorted order: one pass through ``keys`` in memory order is
    several times faster than as many searches in random order, sorting included."""
    order = np.argsort(wanted)
    ordered = wanted[order]
    at = np.searchsorted(keys, ordered)
    found = at < len(keys)
    found[found] = keys[at[found]] == ordered[found]
    out = np.empty(len(wanted), dtype=np.int64)
    out[order] = np.where(found, at, -1)
    return out


class KneserNey:
    """Interpolated Kneser–Ney character models of every order up to ``max_order``, fitted on
    ``train`` (a string, or an array of ids >= 0); ``order`` picks the one that
    ``probability`` and ``nll`` use.

    Lower orders' continuation counts do not depend on the top order, so one fit serves all
    orders. ``vocab_size`` counts every symbol a scored text may hold (unseen ones included),
    which the uniform floor spreads its mass over. ``block``: ``train`` is blocks of this many
    characters laid end to end (a sample), and no n-gram spans two of them.
    """

    def __init__(
        self, train: Text, max_order: int, vocab_size: int, block: int | None = None
    ) -> None:
        if max_order < 1 or not len(train):
            raise ValueError(f"need a training text and max_order >= 1, got {max_order}")
        self.vocab_size = vocab_size
        self.order = self.max_order = max_order
        self.chars = _char_ids(train)
        ids = _ids_of(train, self.chars).astype(np.int64, copy=False)
        self.base = int(ids.max()) + 1
        if self.base * (len(ids) + 1) >= 1 << 62:
            raise ValueError(f"character ids up to {self.base - 1} are too large to count")
        # A k-gram's key is its value as a number in base ``base`` where the longest fits in
        # int64 (up to 511 symbols at order 7): its context is the key // base, its last k - 1
        # characters the key % base ** (k - 1), and sorting suffices to count. Otherwise its
        # first k - 1 characters are given by their rank, which needs an inverse per order.
        self.by_value = self.base**max_order < 1 << 62
        # keys[k]: the sorted keys of the distinct k-grams (a k-gram's rank is its index), and
        # contexts[k] the rank of each one's first k - 1 characters among keys[k - 1]
        self.keys: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self.contexts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self.raw: list[_Level | None] = [None]
        self.continuation: list[_Level | None] = [None] * (max_order + 1)
        previous = np.zeros(len(ids) + 1, dtype=np.int64)  # every 0-gram is the empty one
        for k in range(1, max_order + 1):
            log.debug("Kneser-Ney: counting %d-grams of %d characters", k, len(ids))
            keys, counts, code = self._grams(ids, k, previous, block)
            self.keys.append(keys)
            context = keys // self.base
            if self.by_value and k > 1:
                context = np.searchsorted(self.keys[k - 1], context)
            self.contexts.append(context)
            self.raw.append(_Level.of(counts, context, len(self.keys[k - 1])))
            if k > 1:  # now that k-grams are known: the (k-1)-grams' continuation counts
                self.continuation[k - 1] = self._continuation(k - 1, code, previous)
            previous = code

    def _grams(
        self, ids: np.ndarray, k: int, previous: np.ndarray, block: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sorted keys of the distinct k-grams, their counts, and each position's code for
        the next order (its key, or its rank: -1 where the k-gram would span two blocks)."""
        positions = len(ids) - k + 1
        if positions <= 0:
            return (np.zeros(0, dtype=np.int64),) * 3
        key = previous[:positions] * self.base + ids[k - 1 :]
        inside = None if block is None or k == 1 else np.arange(positions) % block <= block - k
        counted = key if inside is None else key[inside]
        if self.by_value:
            keys, counts = np.unique(counted, return_counts=True)
            return keys, counts, key
        keys, rank, counts = np.unique(counted, return_inverse=True, return_counts=True)
        if inside is None:
            return keys, counts, rank.astype(np.int64, copy=False)
        code = np.full(positions, -1, dtype=np.int64)
        code[inside] = rank
        return keys, counts, code

    def _continuation(self, k: int, longer_code: np.ndarray, code: np.ndarray) -> _Level:
        """Level ``k``'s continuation counts: in how many distinct (k+1)-grams each k-gram is
        the last k characters (the (k+1)-gram at position i ends with the k-gram at i + 1)."""
        keys = self.keys[k]
        counts = np.zeros(len(keys), dtype=np.int64)
        if self.by_value:
            ends, times = np.unique(self.keys[k + 1] % self.base**k, return_counts=True)
            counts[np.searchsorted(keys, ends)] = times
        else:
            follower = np.zeros(len(self.keys[k + 1]), dtype=np.int64)
            at = np.flatnonzero(longer_code >= 0)
            follower[longer_code[at]] = code[at + 1]
            counts = np.bincount(follower, minlength=len(keys))
        return _Level.of(counts, self.contexts[k], len(self.keys[k - 1]))

    def with_order(self, order: int) -> KneserNey:
        """This fit, scoring with ``order`` (1 to ``max_order``)."""
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in 1..{self.max_order}, got {order}")
        view = copy.copy(self)
        view.order = order
        return view

    # --- scoring -----------------------------------------------------------------------------
    def _ranks(self, ids: np.ndarray, top: int) -> list[np.ndarray]:
        """``ranks[k][j]``: the rank of the k-gram of ``ids`` at ``j`` among the training
        text's, -1 where training never saw it; for k = 0 to ``top``."""
        ids = ids.astype(np.int64, copy=False)
        ranks = [np.zeros(len(ids) + 1, dtype=np.int64)]
        code = ranks[0]  # the (k-1)-grams' codes as the fit made them: keys, or ranks
        for k in range(1, top + 1):
            positions = max(0, len(ids) - k + 1)
            last, before = ids[k - 1 : k - 1 + positions], code[:positions]
            key = before * self.base + last
            # an id past the training text's (or after one), or an unseen context's rank,
            # makes an unseen k-gram
            key[(before < 0) | (last >= self.base)] = -1
            ranks.append(_lookup(self.keys[k], key))
            code = key if self.by_value else ranks[k]
        return ranks

    def _probabilities(
        self, ranks: list[np.ndarray], offset: int, positions: np.ndarray, order: int
    ) -> np.ndarray:
        """P(character | context) at ``positions`` of a text whose ``ranks`` start at its
        character ``offset``: from the uniform floor up through ever longer contexts, while
        training saw them."""
        p = np.full(len(positions), 1.0 / self.vocab_size)
        alive = np.ones(len(positions), dtype=bool)
        for k in range(1, order + 1):
            level = self.raw[k] if k == order else self.continuation[k]
            assert level is not None
            start = positions - k + 1
            alive &= start >= 0  # the text's first characters have shorter contexts
            where = np.flatnonzero(alive)
            at = start[where] - offset
            context = ranks[k - 1][at]
            total = np.where(context >= 0, level.context_total[np.maximum(context, 0)], 0.0)
            seen_context = total > 0
            alive[where[~seen_context]] = False  # an unseen context: the shorter one's stands
            where, at, context, total = (a[seen_context] for a in (where, at, context, total))
            gram = ranks[k][at]
            count = np.where(gram >= 0, level.counts[np.maximum(gram, 0)], 0)
            d = level.discount
            seen = np.maximum(count - d, 0.0)
            p[where] = (seen + d * level.context_types[context] * p[where]) / total
        return p

    def probability(self, history: Text, char: Text) -> float:
        """P(char | the last ``order - 1`` characters of ``history``)."""
        span = self.order - 1
        history_ids = _ids_of(history, self.chars)
        context = history_ids[max(0, len(history_ids) - span) :] if span else history_ids[:0]
        text = np.concatenate([context, _ids_of(char, self.chars)])
        return float(self._chunk(text, len(text) - 1, len(text), self.order)[0])

    def _chunk(self, ids: np.ndarray, begin: int, end: int, order: int) -> np.ndarray:
        """Probabilities of the characters ``begin:end`` of ``ids`` under ``order``."""
        offset = max(0, begin - order + 1)
        ranks = self._ranks(ids[offset:end], order)
        return self._probabilities(ranks, offset, np.arange(begin, end), order)

    def nll(self, text: Text, start: int = 0) -> np.ndarray:
        """NLL of each character of ``text`` from ``start`` on, each given those before it."""
        ids = _ids_of(text, self.chars)
        out = np.zeros(max(0, len(ids) - start))
        for begin in range(start, len(ids), _CHUNK):
            end = min(begin + _CHUNK, len(ids))
            out[begin - start : end - start] = neg_log(self._chunk(ids, begin, end, self.order))
        return out

    def mean_nll(self, text: Text, orders: Sequence[int], start: int = 0) -> dict[int, float]:
        """The mean NLL of ``text`` from ``start`` on under each of ``orders``, scoring it once
        (each chunk's k-grams are looked up once for every order)."""
        ids = _ids_of(text, self.chars)
        top = max(orders)
        sums = dict.fromkeys(orders, 0.0)
        for begin in range(start, len(ids), _CHUNK):
            end = min(begin + _CHUNK, len(ids))
            offset = max(0, begin - top + 1)
            ranks = self._ranks(ids[offset:end], top)
            for order in orders:
                p = self._probabilities(ranks, offset, np.arange(begin, end), order)
                sums[order] += float(neg_log(p).sum())
        count = len(ids) - start
        return {order: s / count if count > 0 else math.nan for order, s in sums.items()}


def best_order(
    train: Text, val: Text, vocab_size: int, orders: Iterable[int], block: int | None = None
) -> tuple[KneserNey, float]:
    """The Kneser–Ney model among ``orders`` with the lowest mean NLL on ``val`` from its second
    character on (ties: the lower order), and that NLL."""
    orders = sorted(orders)
    if not orders:
        raise ValueError("no n-gram order to choose from")
    fit = KneserNey(train, orders[-1], vocab_size, block)
    scores = fit.mean_nll(val, orders, start=1)
    best = orders[0]
    for order in orders[1:]:
        if scores[order] < scores[best]:  # strictly: a tie keeps the lower order
            best = order
    return fit.with_order(best), scores[best]


def sample_blocks(ids: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, int | None]:
    """``ids`` when it holds at most ``limit`` characters, or at most one block; else a seeded
    sample of about ``limit`` of them (one block at least): whole blocks of ``SAMPLE_BLOCK``
    characters drawn without replacement, in the text's order, and the block length (for
    ``KneserNey(block=...)``)."""
    if len(ids) <= max(limit, SAMPLE_BLOCK):  # a text shorter than a block has none to draw
        return ids, None
    blocks = len(ids) // SAMPLE_BLOCK
    wanted = max(1, min(blocks, limit // SAMPLE_BLOCK))
    chosen = np.sort(np.random.default_rng(seed).choice(blocks, size=wanted, replace=False))
    sample = np.concatenate([ids[b * SAMPLE_BLOCK : (b + 1) * SAMPLE_BLOCK] for b in chosen])
    drop_pages(ids)  # the pages read ahead around the blocks of a memory-mapped text
    return sample, SAMPLE_BLOCK
