"""Character-level text for language models: the corpus, its vocabulary and the truncated-BPTT
layout of ``pytorch/examples``' word language model.

The text is split contiguously (train, then val, then test; no overlap). The vocabulary is the
training part's characters, plus ``<unk>`` (id 0) for characters first seen in val or test.

Training: the train part is cut into ``batch_size`` parallel streams per process (under DDP,
``world_size * batch_size`` streams, each rank its own contiguous block), and batch ``i`` holds
chunk ``i`` of every stream: ``bptt`` characters in, the same shifted by one as targets. The
model carries its state from one batch to the next, so each stream is read through in order.

Validation and test: the whole part is cut into ``eval_streams`` streams (padded at the end and
masked), whatever the number of processes, so the score is that of the whole text, the same on
one process or many. Every character from the second on is predicted exactly once, and the
n-gram baselines score the same characters.

Memory: the text is one array of character ids of the smallest unsigned type that holds the
vocabulary (a byte a character up to 255 distinct ones), the parts are views of it, and batches
are widened to int64 a window at a time. A ``file`` is read through the disk cache
(``data.cache_dir``, ``text_cache``): the ids are memory-mapped, never the whole text in memory.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnlab.batch import UNKNOWN_ID as UNK
from rnnlab.data.base import TaskDataModule
from rnnlab.data.cache import usable_folder
from rnnlab.data.corpus import Vocabulary, WideIds, default_corpus, read_text
from rnnlab.data.inputs import DEFAULT_MAX_FILE_MB, STORED_LIMIT, check_max_file_mb
from rnnlab.data.memory import check_text_fits
from rnnlab.data.streams import (
    Chunks,
    check_part_sizes,
    fixed_windows,
    one_batch,
    rank_rows,
    row_lengths,
    to_rows,
)
from rnnlab.data.text_cache import CorpusIds, baselines, cached_corpus, from_text
from rnnlab.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# The default data.ngram_fit_chars: a longer train part's n-gram baseline is fitted on a sample
# of this many characters (about 20 s and 0.6 GiB to fit on one core).
NGRAM_FIT_CHARS = 10_000_000


class TextDataModule(TaskDataModule):
    """A text file (``file``, ``encoding``; cached in ``cache_dir``) or, by default, the Python
    documentation every CPython carries; see the module docstring for the layout. Members of an
    ensemble may cache in different folders (``split_settings``).

    The vocabulary, the corpus's SHA-256 and the n-gram order chosen on val are this module's
    ``state_dict``: a restored module uses that vocabulary and refuses a corpus that changed.
    Loaders: this module builds its own ``train/val/test_dataloader`` instead of giving the
    base's ``loader`` a ``dataset`` of examples and a ``collate``. With the state carried from
    batch ``i`` to batch ``i + 1`` (truncated BPTT), a batch is not a draw of independent
    examples but window ``i`` of every stream, so the loader must hand over whole batches
    already built (``batch_size=None``; ``data.batch_size`` is the number of streams), in
    order (no sampler, shuffling or length buckets), from the main process (workers would
    each replay the streams), from this rank's contiguous block of streams under DDP, with
    window lengths that follow the epoch (``random_bptt``). None of the base's sampler, batch
    size or collate applies. No prediction file format: see ``instead_of_predict``.
    """

    split_settings = TaskDataModule.split_settings | {"cache_dir"}

    instead_of_predict = (
        "a language model samples text with rnnlab.generate ckpt_path=... and scores one with "
        "rnnlab.eval ckpt_path=... data.file=..."
    )

    def __init__(
        self,
        file: str | None = None,
        encoding: str = "utf-8",
        batch_size: int = 32,
        bptt: int = 128,
        random_bptt: bool = False,
        eval_streams: int = 8,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        ngram_max_order: int = 7,
        ngram_fit_chars: int = NGRAM_FIT_CHARS,
        max_file_mb: float = DEFAULT_MAX_FILE_MB,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        # the text is in memory; a worker process would only add latency
        super().__init__(batch_size, num_workers=0, seed=seed)
        for name, value, low in (
            ("bptt", bptt, 1),
            ("eval_streams", eval_streams, 1),
            ("ngram_fit_chars", ngram_fit_chars, 1000),
        ):
            if value < low:
                raise ConfigError(f"data.{name} must be >= {low}, got {value}")
        if ngram_max_order == 1 or ngram_max_order < 0:
            raise ConfigError(
                f"data.ngram_max_order must be 0 (no n-gram baseline) or >= 2, got "
                f"{ngram_max_order}"
            )
        if not (
            0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ConfigError(
                "data.val_fraction and data.test_fraction must be in (0, 1) with a sum below 1"
            )
        self.file, self.encoding = file, encoding
        self.max_file_mb = check_max_file_mb(max_file_mb)
        self.bptt, self.random_bptt = bptt, random_bptt
        self.eval_streams = eval_streams
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.ngram_max_order, self.ngram_fit_chars = ngram_max_order, ngram_fit_chars
        # the cache: its folder, the text's entry there, and whether this run built or reused it
        self.cache_dir, self.cache_state = cache_dir, "off"
        self.cache_folder: Path | None = None
        self.cache_entry: str | None = None
        self.vocab: Vocabulary | None = None
        self.sha256: str | None = None
        self.ngram_order: int | None = None
        self.test_file: str | None = None
        self.test_encoding: str | None = None
        # each part's character ids, compact (Vocabulary.dtype); views of one array
        self.ids: dict[str, np.ndarray] = {}
        self.baselines: dict[str, dict[str, np.ndarray]] = {}
        self.fitted: dict[str, float] = {}  # data_metrics: what fitted the n-gram baseline

    @property
    def parts(self) -> Mapping[str, np.ndarray]:
        """Each part's ids as int64 arrays (converted when read; ``ids`` holds them)."""
        return WideIds(self.ids)

    @parts.setter
    def parts(self, parts: Mapping[str, np.ndarray]) -> None:
        self.ids = dict(parts)

    # --- the corpus --------------------------------------------------------------------------
    def source(self) -> tuple[str, str]:
        """The corpus text and a description of where it came from."""
        if self.file is None:
            return default_corpus()
        held_out = self.val_fraction + self.test_fraction
        check_text_fits(self.file, held_out, self.ngram_max_order, self.ngram_fit_chars)
        return read_text(self.file, self.encoding, self.max_file_mb), f"data.file={self.file}"

    def _corpus(self) -> tuple[CorpusIds, str]:
        """Every character's id: a file's from the disk cache (built if need be), else read."""
        fractions = (self.val_fraction, self.test_fraction)
        if self.file is not None:
            self.cache_folder = usable_folder(self.cache_dir)
        if self.file is None or self.cache_folder is None:
            text, where = self.source()
            return from_text(text, self.vocab, *fractions, where), where
        check_text_fits(self.file, sum(fractions), self.ngram_max_order, self.ngram_fit_chars)
        corpus, self.cache_entry, built = cached_corpus(
            self.cache_folder, self.file, self.encoding, self.max_file_mb, fractions, self.vocab
        )
        self.cache_state = "built" if built else "reused"
        return corpus, f"data.file={self.file}"

    def setup(self, stage: str | None = None) -> None:
        if self.ids:
            return
        corpus, where = self._corpus()
        digest, val_at, test_at, ids = corpus.digest, corpus.val_at, corpus.test_at, corpus.ids
        if self.sha256 is not None and digest != self.sha256:
            raise DataError(
                f"{where} is not the text this model was trained on (SHA-256 {digest[:12]}, "
                f"expected {self.sha256[:12]}); restore that text, or train a new model"
            )
        test_text = None
        if self.test_file is not None:
            test_text, where = self._read_test_file(self.test_file), f"data.file={self.test_file}"
        sizes = {
            "train": val_at,
            "val": test_at - val_at,
            "test": len(ids) - test_at if test_text is None else len(test_text),
        }
        check_part_sizes(sizes, where, self.batch_size, self.bptt)
        if self.vocab is None:
            self.vocab, self.sha256 = corpus.vocab, digest
        vocab = self.vocab
        self.ids = {"train": ids[:val_at], "val": ids[val_at:test_at], "test": ids[test_at:]}
        if test_text is not None:
            self.ids["test"] = vocab.compact_ids(test_text)
        for name in ("val", "test"):
            if unseen := int((self.ids[name] == UNK).sum()):
                message = "%s: %d characters of the %s part are not in the training text (%s)"
                log.warning(message, where, unseen, name, "scored as <unk>")
        # the test part of another file (rnnlab.eval data.file=...) is scored, not cached
        entry = (self.cache_folder, self.cache_entry) if test_text is None else (None, None)
        settings = (self.ngram_max_order, self.ngram_order, self.ngram_fit_chars, self.seed)
        found = baselines(self.ids, len(vocab), *settings, entry)
        self.baselines, self.ngram_order = found.nll, found.order
        self.fitted = found.metrics(sizes["train"])
        counts = "/".join(str(sizes[name]) for name in ("train", "val", "test"))
        message = "%s: %s characters (train/val/test), %d symbols, SHA-256 %s"
        log.info(message, where, counts, len(vocab), digest[:12])

    # --- the task contract -------------------------------------------------------------------
    def model_settings(self) -> dict[str, Any]:
        assert self.vocab is not None, "setup() first"
        return {"vocab_size": len(self.vocab)}

    def baseline_names(self) -> tuple[str, ...]:
        return ("unigram", "ngram")

    def data_metrics(self) -> dict[str, float]:
        return dict(self.fitted)

    def opening(self, part: str, characters: int = 40) -> str:
        """The first ``characters`` of a part (after ``setup``), e.g. as a prompt."""
        assert self.vocab is not None, "setup() first"
        return self.vocab.decode(self.ids[part][:characters].tolist())

    def use_test_file(self, path: str, encoding: str | None = None) -> None:
        """Score ``path`` as the test text (``rnnlab.eval ... data.file=``), read in
        ``encoding`` (None: the encoding the training text was read in)."""
        self.test_file = str(Path(path).resolve())
        self.test_encoding = encoding
        self.ids = {}

    def _read_test_file(self, path: str) -> str:
        """The text to score, within the limit stored with the model; the advice for a file it
        cannot read is what the scoring command can do (its data settings came with the
        model, apart from those it names)."""
        if self.test_encoding is not None:
            return read_text(path, self.test_encoding, self.max_file_mb)
        return read_text(
            path,
            self.encoding,
            self.max_file_mb,
            encoding_advice=(
                f"this model reads texts as {self.encoding}, as its training text was: convert "
                f"the file to {self.encoding} (e.g. iconv -f latin-1 -t {self.encoding})"
            ),
            limit_advice=STORED_LIMIT,
        )

    def state_dict(self) -> dict[str, Any]:
        if self.vocab is None:
            return {}
        state: dict[str, Any] = {"vocab": [ord(c) for c in self.vocab.chars], "sha256": self.sha256}
        if self.ngram_order is not None:  # None: the n-gram baseline was skipped
            state["ngram_order"] = self.ngram_order
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        codes, sha, order = state["vocab"], state["sha256"], state.get("ngram_order")
        if not isinstance(codes, list) or not all(
            isinstance(c, int) and 0 < c <= sys.maxunicode for c in codes
        ):
            raise TypeError("vocab must be a list of code points")
        chars = [chr(c) for c in codes]
        # read_text refuses a NUL anywhere in a text, so no vocabulary rnnlab wrote holds one
        if len(set(chars)) != len(chars) or "\x00" in chars:
            raise ValueError("vocab holds a character twice, or NUL")
        if not isinstance(sha, str) or not isinstance(order, int | None):
            raise TypeError("sha256 must be a string and ngram_order an integer")
        if self.vocab is None or self.vocab.chars != chars or self.sha256 != sha:
            self.ids = {}  # encoded with another vocabulary: read again when next needed
        self.vocab, self.sha256, self.ngram_order = Vocabulary(chars), sha, order

    # --- loaders -----------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def window_plan(self, total: int, epoch: int) -> list[int]:
        """Truncation lengths covering ``total`` steps: ``bptt`` each, or with ``random_bptt``
        the word-language-model recipe (``bptt``, or half of it 5% of the time, plus N(0, 5)
        noise, at least 5), drawn from the seed and the epoch: every rank draws the same."""
        if not self.random_bptt:
            return fixed_windows(total, self.bptt)
        rng = np.random.default_rng([self.seed, epoch])
        sizes, done = [], 0
        while done < total:
            base = self.bptt if rng.random() < 0.95 else self.bptt / 2
            size = min(max(5, round(rng.normal(base, 5))), total - done)
            sizes.append(size)
            done += size
        return sizes

    def train_dataloader(self) -> DataLoader:
        self.setup()
        world, rank = self._world()
        ids = torch.from_numpy(self.ids["train"])
        streams = world * self.batch_size
        width = (len(ids) - 1) // streams
        if width < 1:
            raise DataError(
                f"the train part has {len(ids)} characters, too few for {world} processes x "
                f"data.batch_size={self.batch_size} streams; lower data.batch_size"
            )
        inputs = ids[: streams * width].view(streams, width)
        targets = ids[1 : streams * width + 1].view(streams, width)
        block = slice(rank * self.batch_size, (rank + 1) * self.batch_size)
        chunks = Chunks(
            inputs[block], targets[block], {}, lambda: self.window_plan(width, self._epoch())
        )
        return DataLoader(chunks, batch_size=None, collate_fn=one_batch)

    def _eval_loader(self, name: str) -> DataLoader:
        self.setup()
        world, rank = self._world()
        ids = self.ids[name]
        streams = max(1, min(self.eval_streams, len(ids) - 1))  # a row each, so <= characters
        inputs = rank_rows(to_rows(ids[:-1], streams, UNK), world, rank, UNK)
        # targets padded with any id: their row lengths say where each row's text ends
        targets = rank_rows(to_rows(ids[1:], streams, UNK), world, rank, UNK)
        lengths = rank_rows(row_lengths(len(ids) - 1, streams), world, rank, 0)
        baselines = {
            k: rank_rows(to_rows(v, streams, 0.0), world, rank, 0.0)
            for k, v in self.baselines[name].items()
        }
        if self.ngram_max_order == 0:  # skipped: NaN, without holding a value per character
            baselines["ngram"] = torch.tensor(float("nan"), dtype=torch.float64).expand(
                targets.shape
            )
        width = inputs.shape[1]
        chunks = Chunks(
            inputs, targets, baselines, lambda: fixed_windows(width, self.bptt), lengths
        )
        return DataLoader(chunks, batch_size=None, collate_fn=one_batch)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
