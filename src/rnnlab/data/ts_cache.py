"""A ``.ts`` file's samples built once into the disk cache (``data.cache_dir``) by one streaming
pass (``ts_stream``), and memory-mapped from there by every later run; the input normaliser
fitted on the training samples in a streaming pass over the mapped values.

An entry (``ts-<hash>/``) is keyed by the SHA-256 of the file's bytes, the labels the task reads
('class' or 'target') and ``TS_READER``; it holds ``values`` (float32, time steps x channels,
every sample one after another), ``offsets`` (int64, where each sample starts, then the end)
and the labels: ``codes`` (int32) into the class names its ``meta.json`` lists, or ``targets``
(float64). Each value is checked while the file is read, on the float64 numbers sktime's path
would hold (finite, within float32's range), then made float32: the arrays training sees are
those of ``ucr.load_ts_file`` after ``sequences.check_sequences``, bit for bit. A file with a
sample that training refuses is not cached: its error is raised where the in-memory path
raises it. Besides ``cache.load_entry``'s checks, an entry's offsets must start at 0, grow at
every sample (none is empty) and end at the number of rows, and its labels must be in range.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.data import cache
from rnnlab.data.inputs import open_input
from rnnlab.data.memory import file_size
from rnnlab.data.normalize import Normalizer, scale_sequence
from rnnlab.data.progress import setup_step
from rnnlab.data.ragged import MappedSequences
from rnnlab.data.ts_stream import BLOCK_ROWS, TsStream
from rnnlab.data.ucr import Split, check_label_kind, labels_of

log = logging.getLogger(__name__)

# bumped whenever the reading changes what an entry holds: older entries then miss
TS_READER = 1
# training values up to which the normaliser is fitted as on in-memory data (all steps in one
# float64 array, exactly today's numbers); above, a streaming pass of ``_CHUNK_ROWS`` at a time
EXACT_VALUES = 1 << 24
_CHUNK_ROWS = 1 << 20


def file_sha256(path: str | Path, setting: str, max_file_mb: float, limit_advice: str) -> str:
    """The SHA-256 of the file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    fd = open_input(path, setting, max_file_mb, limit_advice)
    with os.fdopen(fd, "rb", buffering=0) as stream:
        while raw := stream.read(1 << 20):
            digest.update(raw)
    return digest.hexdigest()


def cached_ts_file(
    folder: Path,
    path: str | Path,
    labels: str,
    setting: str,
    max_file_mb: float,
    limit_advice: str,
    where: str | None = None,
    block_rows: int = BLOCK_ROWS,
) -> tuple[Split, bool] | None:
    """The samples and labels of the .ts file at ``path`` from the cache in ``folder``, built
    there first if need be, and whether this call built it; None for a file that is not
    streamed (timestamps: ``ucr.load_ts_file`` reads it). A file with a sample training refuses
    gives no samples but that one (``MappedSequences.refused``), and is not cached."""
    where = where or str(path)
    with setup_step(f"{setting}={path}: its SHA-256, the cache's key", file_size(path)):
        sha = file_sha256(path, setting, max_file_mb, limit_advice)
    key = {"file_sha256": sha, "labels": labels, "reader": TS_READER}
    name = cache.entry_name("ts", key)
    found = cache.load_entry(folder, name, key, _check)
    if found is not None:
        log.info("%s=%s: samples read from the cache %s", setting, path, folder / name)
        return _split(*found), False
    building = f"{setting}={path}: reading its samples into the cache"
    with (
        setup_step(building, file_size(path)),
        TsStream(path, setting, max_file_mb, limit_advice, where, block_rows) as stream,
    ):
        check_label_kind(path, stream.header.kind, labels)
        if stream.header.timestamps:
            return None
        with cache.EntryWriter(folder, name, key) as writer:
            refused = _build(writer, stream, labels, where)
            if refused is not None:  # nothing cached: the run stops at the sample's check
                nothing = MappedSequences(np.zeros((0, 1), np.float32), np.zeros(1, np.int64))
                nothing.refused = refused
                return (nothing, np.zeros(0)), False
    log.info("%s=%s: samples cached in %s", setting, path, writer.final)
    return _split(*cache.load_written(folder, name, key, _check)), True


def _build(
    writer: cache.EntryWriter, stream: TsStream, labels: str, where: str
) -> tuple[int, np.ndarray] | None:
    """Stream the file's samples into the entry's arrays and commit it; the first refused
    sample (its index and float64 values) instead, if any."""
    arrays: list[cache.GrowingArray] = []
    try:
        refused, classes = _write(writer, stream, labels, where, arrays)
    finally:
        for array in arrays:
            array.close()
    if refused is None:
        writer.commit({"classes": classes})
    return refused


def _write(
    writer: cache.EntryWriter,
    stream: TsStream,
    labels: str,
    where: str,
    arrays: list[cache.GrowingArray],
) -> tuple[tuple[int, np.ndarray] | None, list[str]]:
    """The samples of ``stream`` appended to the ``arrays`` (opened at the first block); the
    first refused sample, and the class names in order of appearance."""
    classes: dict[str, int] = {}
    refused, rows = None, 0
    for block in stream.blocks(check=True):
        if not arrays:
            kind, dtype = ("codes", np.int32) if labels == "class" else ("targets", np.float64)
            arrays += [
                writer.open_growing("values", np.dtype(np.float32), block.values.shape[1:]),
                writer.open_growing("offsets", np.dtype(np.int64), ()),
                writer.open_growing(kind, np.dtype(dtype), ()),
            ]
            arrays[1].append(np.zeros(1))  # the first offset; each array casts to its dtype
        values, offsets, codes = arrays
        assert block.labels is not None
        if refused is None and block.refused is not None:
            at = block.refused - block.first
            start = int(block.lengths[:at].sum())
            refused = (block.refused, block.values[start : start + block.lengths[at]].copy())
        if refused is not None:
            continue  # read on for the file's own errors, but nothing more is kept
        values.append(block.values)  # made float32 as it is written
        offsets.append(rows + np.cumsum(block.lengths))
        rows += int(block.lengths.sum())
        if labels == "class":
            found = [classes.setdefault(label, len(classes)) for label in block.labels]
            codes.append(np.asarray(found))
        else:
            raw = np.asarray(block.labels, dtype=object)
            codes.append(labels_of(raw, "target", where, block.first))
    return refused, list(classes)


def _check(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    values, offsets = arrays["values"], arrays["offsets"]
    if values.ndim != 2 or values.shape[1] < 1 or values.dtype != np.float32:
        raise cache.InvalidEntry(f"values.npy is {values.dtype} {values.shape}")
    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(values):
        raise cache.InvalidEntry("offsets.npy does not span values.npy")
    if (np.diff(offsets) <= 0).any():  # an empty sample is refused, never cached
        raise cache.InvalidEntry("offsets.npy has an empty or negative sample")
    labels = arrays.get("codes", arrays.get("targets"))
    if labels is None or labels.shape != (len(offsets) - 1,):
        raise cache.InvalidEntry("no labels, or not one a sample")
    if "codes" in arrays:
        classes = info["classes"]
        if not all(isinstance(c, str) for c in classes):
            raise cache.InvalidEntry("class names that are not text")
        if labels.min() < 0 or labels.max() >= len(classes):
            raise cache.InvalidEntry("a class code beyond the class names")
    elif not np.isfinite(labels).all():
        raise cache.InvalidEntry("a target that is not finite")


def _split(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> Split:
    sequences = MappedSequences(arrays["values"], np.asarray(arrays["offsets"]))
    if "codes" in arrays:
        return sequences, np.asarray(info["classes"], dtype=str)[arrays["codes"]]
    return sequences, np.array(arrays["targets"])


# --- the normaliser ----------------------------------------------------------------------------
def fit_normalizer(normalizer: Normalizer, sequences: Any, how: str) -> None:
    """Fit ``normalizer`` on the training ``sequences``, each scaled by ``data.sequence_scale``
    ``how``: held in one float64 array as ``Normalizer.fit`` does, or for mapped sequences of
    more than ``EXACT_VALUES`` values in streaming passes (float64 sums a chunk at a time, the
    same statistics up to rounding), so the training split is never copied whole."""
    if not isinstance(sequences, MappedSequences) or (
        int(sequences.lengths.sum()) * sequences.channels <= EXACT_VALUES
    ):
        normalizer.fit([scale_sequence(s, how) for s in sequences])
        return
    with setup_step("fitting the normaliser on the training values", int(sequences.lengths.sum())):
        shift, scale = _statistics(sequences, normalizer.method, how)
    normalizer.set_statistics(torch.from_numpy(shift), torch.from_numpy(scale))


def _chunks(sequences: MappedSequences, how: str, chunk_rows: int) -> Any:
    """Consecutive samples of the whole file, about ``chunk_rows`` steps at a time: their
    float64 steps (scaled as ``scale_sequence`` scales them), where each starts, and which
    are training samples. The mapped pages are given back after each chunk."""
    values, offsets = sequences.values, sequences.offsets
    member = np.zeros(len(offsets) - 1, dtype=bool)
    member[sequences.samples] = True
    start = 0
    while start < len(member):
        last = int(np.searchsorted(offsets, offsets[start] + chunk_rows, side="right")) - 1
        end = min(max(start + 1, last), len(member))
        rows = np.array(values[offsets[start] : offsets[end]], dtype=np.float32)
        cuts = offsets[start:end] - offsets[start]
        if how == "maxabs":
            peak = np.maximum.reduceat(np.abs(rows), cuts, axis=0)
            peak = np.where(peak > 0, peak, np.float32(1))
            rows = rows / np.repeat(peak, np.diff(offsets[start : end + 1]), axis=0)
        cache.drop_pages(values)
        if member[start:end].any():
            yield rows.astype(np.float64), cuts, member[start:end]
        start = end


def _statistics(sequences: MappedSequences, method: str, how: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) per channel as ``Normalizer.fit`` computes them, in passes over chunks."""
    channels = sequences.channels
    if method == "none":
        return np.zeros(channels), np.ones(channels)
    chunks = lambda: _chunks(sequences, how, _CHUNK_ROWS)  # noqa: E731
    if method == "minmax":
        low, high = np.full(channels, np.inf), np.full(channels, -np.inf)
        for rows, cuts, train in chunks():
            low = np.minimum(low, np.minimum.reduceat(rows, cuts, axis=0)[train].min(axis=0))
            high = np.maximum(high, np.maximum.reduceat(rows, cuts, axis=0)[train].max(axis=0))
        return low, high - low
    count = int(sequences.lengths.sum())
    total = np.zeros(channels)
    for rows, cuts, train in chunks():
        total += np.add.reduceat(rows, cuts, axis=0)[train].sum(axis=0)
    mean = total / count
    squares = np.zeros(channels)
    for rows, cuts, train in chunks():
        squares += np.add.reduceat((rows - mean) ** 2, cuts, axis=0)[train].sum(axis=0)
    return mean, np.sqrt(squares / count)
