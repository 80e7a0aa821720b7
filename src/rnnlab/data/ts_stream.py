"""A ``.ts`` file (the UCR/UEA archive's format) read one line at a time: the header, then each
data line into a sample's (time, channels) float64 values and its label, handed on in blocks
of about ``BLOCK_ROWS`` time steps, so memory stays flat in the file's size.

It reads what sktime's ``load_from_tsfile_to_dataframe`` reads, with the same numbers: each
line stripped and lower-cased, ``?`` read as NaN, channels split at ``:``, values at ``,`` and
parsed as Python's ``float`` parses them (numpy's parser for a whole channel at once, which
rounds the same way; a channel it does not read exactly, or that holds a NaN, is read again
value by value with ``float``). sktime builds a ``pd.Series`` per sample and channel (about
twice the file in memory); this keeps one block. Files with ``@timestamps true`` (values as
``(time, value)`` tuples) are not streamed: ``ucr.load_ts_file`` reads them with sktime.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from rnnlab.data.inputs import RAISE_LIMIT, open_input, too_large
from rnnlab.data.normalize import outside_float32
from rnnlab.utils.errors import DataError

# time steps gathered before a block is checked and handed on
BLOCK_ROWS = 1 << 18
_TAGS = ("@problemname", "@timestamps", "@univariate", "@classlabel", "@targetlabel")
_LAYOUT = (
    "write one sample a line: values separated by ',', channels by ':', then ':' and the label "
    "where the header declares labels (missing values as '?')"
)


@dataclass
class Header:
    """What a .ts header declares: ``kind`` of labels as ``ucr.label_kind`` reads it ('class',
    'target' or None), whether data lines end in a label (``labelled``, sktime's reading:
    the last of @classLabel/@targetLabel) and whether values carry timestamps."""

    kind: str | None = None
    labelled: bool = False
    timestamps: bool = False


@dataclass
class Block:
    """Consecutive samples: their time steps one after another (float64, time x channels), each
    one's length and label (the raw text; None for unlabelled files), the first one's index,
    and ``refused``: the first of them that training refuses (no time steps, a value not finite
    or outside float32's range), when ``TsStream`` checks."""

    values: np.ndarray
    lengths: np.ndarray
    labels: list[str] | None
    first: int
    refused: int | None = None


class TsStream:
    """An open .ts file whose header is read (``header``); ``blocks()`` reads its samples.
    ``where`` names the data in errors about a sample, ``setting`` the setting that named it."""

    def __init__(
        self,
        path: str | Path,
        setting: str,
        max_file_mb: float,
        limit_advice: str = RAISE_LIMIT,
        where: str | None = None,
        block_rows: int = BLOCK_ROWS,
    ) -> None:
        self.path, self.setting, self.where = path, setting, where or str(path)
        self.max_file_mb, self.limit_advice = max_file_mb, limit_advice
        self.block_rows = block_rows
        self.fd = open_input(path, setting, max_file_mb, limit_advice)
        # text mode, as sktime opens it: the same line ends ('\n', '\r\n', '\r') and decoding
        self.stream: IO[str] = open(self.fd, encoding="utf-8")  # noqa: SIM115 (closed by close)
        self.line = 0
        self.lines = self._lines()
        try:
            self.header, self.first_data = self._header()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> TsStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stream.close()

    def fail(self, problem: str, fix: str = _LAYOUT, line: int | None = None) -> DataError:
        where = f"line {line or self.line}: " if (line or self.line) else ""
        return DataError(f"cannot read {self.path} as a .ts file: {where}{problem}; {fix}")

    def _lines(self) -> Iterator[str]:
        """Each line stripped and lower-cased (as sktime reads it), empty ones skipped."""
        limit = int(self.max_file_mb * (1 << 20))
        try:
            for raw in self.stream:
                self.line += 1
                if self.line % 1024 == 0 and os.lseek(self.fd, 0, os.SEEK_CUR) > limit:
                    raise DataError(
                        too_large(
                            self.setting, self.path, None, self.max_file_mb, self.limit_advice
                        )
                    )
                text = raw.strip().lower()
                if text:
                    yield text
        except UnicodeDecodeError as exc:  # decoded a chunk at a time: find its line
            line = _first_undecodable_line(self.path)
            fix = "save the file as UTF-8"
            raise self.fail(f"not UTF-8 text ({exc.reason})", fix, line) from exc
        except OSError as exc:
            raise DataError(
                f"cannot read {self.setting}={self.path}: {exc.strerror}; check the file"
            ) from exc

    def _header(self) -> tuple[Header, str | None]:
        """The header's tags (sktime's rules) up to @data; the first data line, if any."""
        header, seen = Header(), set[str]()
        for text in self.lines:
            tokens = text.split(" ")
            tag = next((t for t in (*_TAGS, "@data") if text.startswith(t)), None)
            if tag is None:
                if "@data" in seen:
                    self._check_complete(seen)
                    return header, text
                continue  # sktime skips other lines before @data
            if "@data" in seen and tag != "@data":
                raise self.fail(f"{tag} after @data", "put every @tag line before @data")
            if tag == "@data" and text != "@data":
                raise self.fail("@data has a value", "write @data alone on its line")
            if tag in ("@timestamps", "@univariate") and (
                len(tokens) != 2 or tokens[1] not in ("true", "false")
            ):
                raise self.fail(f"{tag} needs true or false", f"write '{tag} false'")
            if tag in ("@problemname", "@classlabel", "@targetlabel") and len(tokens) == 1:
                raise self.fail(f"{tag} has no value", "give it one")
            if tag in ("@classlabel", "@targetlabel"):
                self._labels(header, tag, tokens)
            header.timestamps = tokens[1] == "true" if tag == "@timestamps" else header.timestamps
            seen.add(tag)
        if "@data" in seen:
            self._check_complete(seen)
        return header, None

    def _labels(self, header: Header, tag: str, tokens: list[str]) -> None:
        if tokens[1] not in ("true", "false"):
            raise self.fail(f"{tag} needs true or false", f"write '{tag} false'")
        header.labelled = tokens[1] == "true"
        if tag == "@classlabel" and header.labelled and len(tokens) == 2:
            raise self.fail("@classlabel true lists no classes", "list them after 'true'")
        if tag == "@targetlabel" and len(tokens) > 2:
            raise self.fail("@targetlabel takes true or false only", "drop what follows")
        kind = "class" if tag == "@classlabel" else "target"
        words = " ".join(tokens).split()
        if header.kind is None and words[:2] == [tag, "true"]:
            header.kind = kind

    def _check_complete(self, seen: set[str]) -> None:
        missing = [t for t in _TAGS[:3] if t not in seen]
        if not seen & {"@classlabel", "@targetlabel"}:
            missing.append("@classlabel or @targetlabel")
        if missing:
            raise self.fail(
                f"the header lacks {', '.join(missing)} before the data",
                "give the .ts header its @problemName, @timeStamps, @univariate and "
                "@classLabel (or @targetLabel) lines",
            )

    # --- the data --------------------------------------------------------------------------
    def blocks(self, check: bool = False) -> Iterator[Block]:
        """The samples, a block at a time; ``check``: find each block's first refused one."""
        if self.first_data is None:
            raise self.fail("it holds no samples", "add data lines after @data")
        labelled, channels = self.header.labelled, None
        rows: list[np.ndarray] = []
        lengths: list[int] = []
        labels: list[str] | None = [] if labelled else None
        first, held = 0, 0
        for text in self._data():
            dims = text.replace("?", "NaN").split(":")
            if labelled:
                labels.append(dims.pop().strip())  # type: ignore[union-attr]
            if channels is None:
                channels = len(dims)
                if channels == 0:
                    raise self.fail("a sample without channels")
            elif len(dims) != channels:
                raise self.fail(f"{len(dims)} channel(s), where the first sample has {channels}")
            sample = self._sample(dims, first + len(lengths))
            rows.append(sample)
            lengths.append(len(sample))
            held += len(sample)
            if held >= self.block_rows:
                yield self._block(rows, lengths, labels, first, check)
                first += len(lengths)
                rows, lengths, held = [], [], 0
                labels = [] if labelled else None
        if lengths:
            yield self._block(rows, lengths, labels, first, check)

    def _data(self) -> Iterator[str]:
        assert self.first_data is not None
        yield self.first_data
        for text in self.lines:
            if text.startswith(_TAGS):
                raise self.fail("a header tag after @data", "put every @tag line before @data")
            if text != "@data":  # sktime lets @data repeat
                yield text

    def _sample(self, dims: list[str], index: int) -> np.ndarray:
        columns = []
        for channel, dim in enumerate(dims):
            dim = dim.strip()
            numbers = _numbers(dim) if dim else np.zeros(0)
            if numbers is None:
                bad = next(t for t in dim.split(",") if not _is_number(t))
                raise self.fail(f"channel {channel + 1} holds {bad.strip()!r}, not a number")
            columns.append(numbers)
        lengths = sorted({len(c) for c in columns})
        if len(lengths) > 1:
            raise DataError(
                f"{self.where} sample {index}: channels have different lengths {lengths}; "
                "every channel of a sample must have the same number of time steps"
            )
        return np.concatenate(columns).reshape(len(columns), lengths[0]).T

    @staticmethod
    def _block(
        rows: list[np.ndarray],
        lengths: list[int],
        labels: list[str] | None,
        first: int,
        check: bool,
    ) -> Block:
        values = np.concatenate(rows)  # never empty: a block holds at least one sample
        block = Block(values, np.asarray(lengths, dtype=np.int64), labels, first)
        if check:
            empty = np.flatnonzero(block.lengths == 0)[:1].tolist()
            flagged = ~np.isfinite(values).all(axis=1) | outside_float32(values).any(axis=1)
            bad_rows = np.flatnonzero(flagged)[:1]
            ends = np.cumsum(block.lengths)
            found = empty + np.searchsorted(ends, bad_rows, side="right").tolist()
            block.refused = first + min(found) if found else None
        return block


def _first_undecodable_line(path: str | Path) -> int | None:
    """The number of the first line of the file that is not UTF-8 (a line at a time)."""
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _numbers(text: str) -> np.ndarray | None:
    """The comma-separated numbers of ``text`` as ``float`` reads each one; None if one is not
    a number."""
    try:
        values = np.fromstring(text, sep=",")
    except ValueError:
        values = None
    if values is not None and len(values) == text.count(",") + 1 and "n" not in text:
        return values
    # exactly as sktime reads them: numpy reads 'nan(...)', which float refuses, so text with
    # an 'n' (nan, inf) is read value by value too
    try:
        return np.array([float(t) for t in text.split(",")], dtype=np.float64)
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
