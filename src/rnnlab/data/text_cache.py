"""A language model's text as character ids: read into memory (the shipped corpus, or
``data.cache_dir=null``), or built once into the disk cache (``data.cache``) by streaming passes
over the file and memory-mapped from there by later runs.

The cache entry of a text is keyed by the SHA-256 of the file's bytes, its encoding, the split
fractions (the training part's characters make the vocabulary) and the vocabulary when one is
given (a trained model's); it holds every character's id and repeats the text's length, its
fingerprint (the SHA-256 of its UTF-8, which a checkpoint stores) and the vocabulary. Three
passes build it, each a block of ``BLOCK_BYTES`` bytes at a time, so memory stays flat in the
file's size: count the characters (the split points are in characters, and must be known before
the vocabulary), find the training part's characters, write the ids. The ids are those the
in-memory path computes, character for character.

The baselines' per-character scores of val and test (``text_baselines``) have their own entry,
keyed by the text's entry and the n-gram settings, so a later run skips fitting and scoring.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.data import cache
from rnnlab.data.corpus import (
    BLOCK_BYTES,
    Vocabulary,
    code_points,
    file_blocks,
    fingerprint,
    text_blocks,
)
from rnnlab.data.memory import file_size
from rnnlab.data.progress import setup_step
from rnnlab.data.text_baselines import TextBaselines, fit_text_baselines

log = logging.getLogger(__name__)


@dataclass
class CorpusIds:
    """Every character's id (``ids``, compact: ``vocab.dtype``), the text's fingerprint and the
    points where val and test begin (characters)."""

    ids: np.ndarray
    digest: str
    vocab: Vocabulary
    val_at: int
    test_at: int


def split_points(length: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Where val and test begin in a text of ``length`` characters."""
    val_at = length - round(length * (val_fraction + test_fraction))
    return val_at, length - round(length * test_fraction)


def from_text(
    text: str,
    vocab: Vocabulary | None,
    val_fraction: float,
    test_fraction: float,
    where: str = "the text",
) -> CorpusIds:
    """The ids of a text held in memory (``vocab`` None: the training part's characters);
    ``where`` it came from, for the set-up's log."""
    with setup_step(f"{where}: checking {len(text):,} characters", len(text)):
        digest = fingerprint(text)
    val_at, test_at = split_points(len(text), val_fraction, test_fraction)
    if vocab is None:
        with setup_step("finding the training text's characters", val_at):
            vocab = Vocabulary.of(text, 0, val_at)
    with setup_step(f"encoding {len(text):,} characters as {vocab.dtype} ids", len(text)):
        ids = vocab.compact_ids(text)
    return CorpusIds(ids, digest, vocab, val_at, test_at)


def file_sha256(path: str, max_file_mb: float, block_bytes: int = BLOCK_BYTES) -> str:
    """The SHA-256 of the file's bytes (about 1 s a GiB), read a block at a time."""
    digest = hashlib.sha256()
    for raw in file_blocks(path, max_file_mb, block_bytes):
        digest.update(raw)
    return digest.hexdigest()


def _vocab_tag(vocab: Vocabulary | None) -> str | None:
    return None if vocab is None else hashlib.sha256("".join(vocab.chars).encode()).hexdigest()


def _checked(vocab: Vocabulary, length: int, block: int) -> Any:
    """The check of a text entry's arrays: every id within the vocabulary (read through the
    file, not the mapping, so the pages are not kept in this process's memory)."""

    def check(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        ids = arrays["ids"]
        if ids.dtype != vocab.dtype or ids.shape != (length,):
            raise cache.InvalidEntry(f"ids.npy is {ids.dtype} {ids.shape}")
        size = max(ids.itemsize, block - block % ids.itemsize)  # whole ids in every read
        with open(ids.filename, "rb") as stream:  # type: ignore[attr-defined]
            stream.seek(ids.offset)  # type: ignore[attr-defined]
            while chunk := stream.read(size):
                values = np.frombuffer(chunk, ids.dtype)
                if int(values.max()) >= len(vocab):
                    raise cache.InvalidEntry("an id beyond the vocabulary")

    return check


def cached_corpus(
    folder: Path,
    path: str,
    encoding: str,
    max_file_mb: float,
    fractions: tuple[float, float],
    vocab: Vocabulary | None,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[CorpusIds, str, bool]:
    """The ids of the text file at ``path`` from the cache in ``folder``, built there first if
    need be; the entry's name and whether this call built it. A given ``vocab`` (a trained
    model's) uses the entry of the training part's own vocabulary when it is the same one."""
    with setup_step(f"data.file={path}: its SHA-256, the cache's key", file_size(path)):
        sha = file_sha256(path, max_file_mb, block_bytes)
    base = {"file_sha256": sha, "encoding": encoding, "fractions": list(fractions)}
    for tag in dict.fromkeys([None, _vocab_tag(vocab)]):
        key = {**base, "vocab": tag}
        name = cache.entry_name("text", key)
        found = _load(folder, name, key, block_bytes)
        if found is not None and (vocab is None or found.vocab.chars == vocab.chars):
            log.info("data.file=%s: character ids read from the cache %s", path, folder / name)
            return found, name, False
    with cache.EntryWriter(folder, name, key) as writer:
        built = _build(writer, path, encoding, max_file_mb, fractions, vocab, block_bytes)
    return built, name, True


def _load(folder: Path, name: str, key: dict[str, Any], block: int) -> CorpusIds | None:
    meta = cache.load_entry(folder, name, key)
    if meta is None:
        return None
    info, arrays = meta
    try:
        vocab = Vocabulary([chr(c) for c in info["vocab"]])
        length, digest = int(info["length"]), str(info["digest"])
        _checked(vocab, length, block)(info, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("the data cache %s is damaged (%s): rebuilding it", folder / name, exc)
        cache.discard(folder / name)
        return None
    val_at, test_at = split_points(length, *key["fractions"])
    return CorpusIds(arrays["ids"], digest, vocab, val_at, test_at)


def _build(
    writer: cache.EntryWriter,
    path: str,
    encoding: str,
    max_file_mb: float,
    fractions: tuple[float, float],
    vocab: Vocabulary | None,
    block: int,
) -> CorpusIds:
    """The three streaming passes (module docstring), writing the entry."""
    blocks = lambda: text_blocks(path, encoding, max_file_mb, block)  # noqa: E731
    counting = f"data.file={path}: counting its characters for the cache"
    with setup_step(counting, file_size(path)):
        length, digest = 0, hashlib.sha256()
        for text in blocks():
            length += len(text)
            digest.update(text.encode("utf-8", "surrogatepass"))  # corpus.fingerprint's bytes
    val_at, test_at = split_points(length, *fractions)
    if vocab is None:
        with setup_step("finding the training text's characters", val_at):
            vocab = Vocabulary(_characters(blocks(), val_at))
    encoding_step = setup_step(f"encoding {length:,} characters as {vocab.dtype} ids", length)
    with encoding_step, writer.open_array("ids", vocab.dtype, length) as stream:
        for text in blocks():
            vocab.compact_ids(text).tofile(stream)
    info: dict[str, Any] = {"length": length, "digest": digest.hexdigest()}
    info["vocab"] = [ord(c) for c in vocab.chars]
    writer.commit(info)
    log.info("data.file=%s: character ids cached in %s", path, writer.final)
    ids = np.load(writer.final / "ids.npy", mmap_mode="c", allow_pickle=False)
    return CorpusIds(ids, digest.hexdigest(), vocab, val_at, test_at)


def _characters(blocks: Any, end: int) -> list[str]:
    """The distinct characters of the first ``end`` characters of the text in ``blocks``."""
    seen = np.zeros(0, dtype=bool)
    done = 0
    for text in blocks:
        if done >= end:
            break
        codes = code_points(text[: end - done])
        done += len(text)
        if not len(codes):
            continue
        top = int(codes.max()) + 1
        if top > len(seen):
            seen = np.concatenate([seen, np.zeros(top - len(seen), dtype=bool)])
        seen[codes] = True
    return [chr(c) for c in np.flatnonzero(seen).tolist()]


# --- the baselines' scores -------------------------------------------------------------------
def baselines(
    parts: dict[str, np.ndarray],
    vocab_size: int,
    max_order: int,
    stored_order: int | None,
    fit_chars: int,
    seed: int,
    entry: tuple[Path | None, str | None],
) -> TextBaselines:
    """``text_baselines.fit_text_baselines``, or what it gave for the same text (``entry``: the
    cache folder and the text's entry there, None when not cached) and settings."""
    folder, text = entry
    if folder is None or text is None:
        return fit_text_baselines(parts, vocab_size, max_order, stored_order, fit_chars, seed)
    key = {
        "text": text,
        "ngram_max_order": max_order,
        "ngram_fit_chars": fit_chars,
        "seed": seed,
        "order": stored_order,
    }
    name = cache.entry_name("scores", key)
    lengths = {part: len(parts[part]) - 1 for part in ("val", "test")}
    meta = cache.load_entry(folder, name, key, _scores_check(lengths))
    if meta is not None:
        info, arrays = meta
        found = TextBaselines(
            order=info["order"], fit_chars=int(info["fit_chars"]), sampled=bool(info["sampled"])
        )
        for array, values in arrays.items():
            part, baseline = array.split("-")
            found.nll.setdefault(part, {})[baseline] = values
        log.info("the baselines' scores of val and test read from the cache %s", folder / name)
        return found
    found = fit_text_baselines(parts, vocab_size, max_order, stored_order, fit_chars, seed)
    with cache.EntryWriter(folder, name, key) as writer:
        for part, scores in found.nll.items():
            for baseline, values in scores.items():
                writer.save(f"{part}-{baseline}", values)
        info = {"order": found.order, "fit_chars": found.fit_chars, "sampled": found.sampled}
        writer.commit(info)
    # the scores mapped from the cache from now on, rather than held in memory for the run
    meta = cache.load_entry(folder, name, key, _scores_check(lengths))
    if meta is not None:
        for array, values in meta[1].items():
            part, baseline = array.split("-")
            found.nll[part][baseline] = values
    return found


def _scores_check(lengths: dict[str, int]) -> Any:
    """The check of a scores entry: float64 scores of every scored character of val and test,
    the unigram's always, the n-gram's where it was not skipped."""

    def check(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        names = {f"{part}-unigram" for part in lengths}
        if info["order"] is not None:
            if not isinstance(info["order"], int):
                raise cache.InvalidEntry("the n-gram order is not a number")
            names |= {f"{part}-ngram" for part in lengths}
        if set(arrays) != names:
            raise cache.InvalidEntry(f"it holds {sorted(arrays)}")
        for array, values in arrays.items():
            if values.dtype != np.float64 or values.shape != (lengths[array.split("-")[0]],):
                raise cache.InvalidEntry(f"{array}.npy is {values.dtype} {values.shape}")

    return check
