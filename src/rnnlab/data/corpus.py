"""A text corpus for character-level language models: the default one (the Python reference
documentation), reading a user's file, its fingerprint, and the character vocabulary."""

from __future__ import annotations

import codecs
import hashlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from rnnlab.batch import UNKNOWN_ID as UNK
from rnnlab.data.dedup import deduplicate
from rnnlab.data.inputs import (
    DEFAULT_MAX_FILE_MB,
    RAISE_LIMIT,
    open_input,
    read_input,
    too_large,
)
from rnnlab.utils.errors import ConfigError, DataError

# the first byte-order marks of UTF-32 before UTF-16's (UTF-32-LE's begins with UTF-16-LE's)
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def default_corpus() -> tuple[str, str]:
    """The reference documentation every CPython ships (``pydoc_data.topics``: ~465k characters
    of English prose and code in 3.11), topics in sorted order, without the paragraphs that
    mostly repeat earlier ones (``dedup``: ~377k characters left); and its description.

    The topics overlap (a chapter holds its sections word for word, and its sections are topics
    too), so a test part cut from them would be scored largely by copying the training part."""
    from pydoc_data.topics import topics

    version = ".".join(map(str, sys.version_info[:3]))
    joined = "\n\n".join(topics[key] for key in sorted(topics))
    return deduplicate(joined).text, f"pydoc_data.topics (Python {version}), de-duplicated"


def _byte_order_mark(raw: bytes) -> str | None:
    """The UTF-16/32 encoding whose byte-order mark ``raw`` begins with, if any."""
    return next((name for mark, name in _BYTE_ORDER_MARKS if raw.startswith(mark)), None)


def _check_encoding(encoding: str) -> codecs.CodecInfo:
    try:
        codec = codecs.lookup(encoding)
    except LookupError as exc:
        raise ConfigError(f"data.encoding={encoding!r} is not an encoding Python knows") from exc
    if not getattr(codec, "_is_text_encoding", True):  # base64, zlib, ...: bytes to bytes
        raise ConfigError(f"data.encoding={encoding!r} is not a text encoding")
    return codec


def _nul_is_one_zero_byte(codec: codecs.CodecInfo) -> bool:
    try:
        return "\x00".encode(codec.name) == b"\x00"
    except UnicodeError:
        return False


def read_text(
    path: str | Path,
    encoding: str,
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    encoding_advice: str | None = None,
    limit_advice: str = RAISE_LIMIT,
) -> str:
    """The text of ``path``, refusing what is not text in ``encoding`` (one line each): a file
    that is not regular or over ``max_file_mb`` MiB (``inputs.read_input``), bytes that do not
    decode, and a NUL character anywhere in it (the mark of a binary file).

    In encodings where NUL is one zero byte (UTF-8, Latin-1, ...) the bytes are searched first,
    so a binary file is named as such rather than as undecodable; in UTF-16/32, where zero
    bytes are part of ordinary characters, the decoded text is. ``encoding_advice`` and
    ``limit_advice`` replace the advice for an undecodable byte (set data.encoding) and for a
    file over the limit (raise it), where those settings are not the user's to change (a text
    scored with a trained model, which reads it as its training text was read)."""
    codec = _check_encoding(encoding)
    raw = read_input(path, "data.file", max_file_mb, limit_advice)
    if _nul_is_one_zero_byte(codec) and b"\x00" in raw:
        raise _nul_byte(path, raw.index(b"\x00"), raw)
    try:
        text = raw.decode(codec.name)
    except UnicodeError as exc:  # UnicodeDecodeError, or a codec's own (idna, punycode)
        raise _undecodable(path, encoding, exc, 0, encoding_advice) from exc
    del raw
    at = text.find("\x00")
    if at >= 0:
        raise _nul_character(path, at, encoding)
    return text


def _nul_byte(path: str | Path, offset: int, head: bytes) -> DataError:
    mark = _byte_order_mark(head)
    hint = (
        f"; it looks like {mark} text (it starts with a byte-order mark): set data.encoding={mark}"
        if mark
        else "; give a text file (UTF-16 or UTF-32 text needs data.encoding=utf-16 or utf-32)"
    )
    return DataError(f"data.file={path} looks binary (a NUL byte at offset {offset}){hint}")


def _undecodable(
    path: str | Path, encoding: str, exc: UnicodeError, offset: int, advice: str | None
) -> DataError:
    """The refusal of bytes that do not decode; ``offset``: where the bytes decoded began."""
    advice = advice or "set data.encoding to the file's encoding (e.g. latin-1)"
    start = getattr(exc, "start", None)
    where = f"the byte at offset {offset + start}" if start is not None else "the text"
    return DataError(f"data.file={path}: {where} is not valid {encoding}; {advice}")


def _nul_character(path: str | Path, at: int, encoding: str) -> DataError:
    return DataError(
        f"data.file={path} looks binary (a NUL character at character {at} in {encoding}); "
        "give a text file"
    )


# bytes read at once by the streaming readers: bounds their memory whatever the file's size
BLOCK_BYTES = 1 << 26


def text_blocks(
    path: str | Path,
    encoding: str,
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[str]:
    """The text of ``path`` as ``read_text`` reads it (the same refusals, with the same
    offsets), decoded ``block_bytes`` bytes at a time: an incremental decoder keeps a character
    whose bytes a block boundary splits for the next block, so the blocks joined are the text."""
    codec = _check_encoding(encoding)
    zero_is_nul = _nul_is_one_zero_byte(codec)
    decoder = codec.incrementaldecoder()
    offset, characters, head = 0, 0, b""
    raws = file_blocks(path, max_file_mb, block_bytes)
    for raw in raws:
        head += raw[: 4 - len(head)]  # a byte-order mark's bytes, for the refusal's advice
        if zero_is_nul and b"\x00" in raw:
            raise _nul_byte(path, offset + raw.index(b"\x00"), head)
        pending = len(decoder.getstate()[0])  # bytes of the last block the decoder still holds
        try:
            text = decoder.decode(raw, final=not raw)
        except UnicodeError as exc:
            refusal = _undecodable(path, encoding, exc, offset - pending, None)
            at = offset + len(raw)
            for later in raws if zero_is_nul else ():  # read_text names a NUL byte first
                head += later[: 4 - len(head)]
                if b"\x00" in later:
                    raise _nul_byte(path, at + later.index(b"\x00"), head) from None
                at += len(later)
            raise refusal from exc
        at = text.find("\x00")
        if at >= 0:
            raise _nul_character(path, characters + at, encoding)
        offset, characters = offset + len(raw), characters + len(text)
        if text:
            yield text


def file_blocks(
    path: str | Path, max_file_mb: float, block_bytes: int = BLOCK_BYTES
) -> Iterator[bytes]:
    """The bytes of the regular file at ``path``, ``block_bytes`` at a time, then one empty
    block; the refusals of ``inputs.read_input`` (not a regular file, over ``max_file_mb``)."""
    limit = int(max_file_mb * (1 << 20))
    fd = open_input(path, "data.file", max_file_mb)
    with os.fdopen(fd, "rb", buffering=0) as stream:
        total = 0
        while True:
            try:
                raw = stream.read(block_bytes)
            except OSError as exc:
                raise DataError(
                    f"cannot read data.file={path}: {exc.strerror}; check the file"
                ) from exc
            total += len(raw or b"")
            if total > limit:
                raise DataError(too_large("data.file", path, None, max_file_mb, RAISE_LIMIT))
            yield raw or b""
            if not raw:
                return


# characters converted at once: bounds the temporary copies of a long text
_CHUNK = 1 << 24


def fingerprint(text: str) -> str:
    """The SHA-256 of the text's UTF-8 bytes (encoded a chunk at a time: no second copy)."""
    digest = hashlib.sha256()
    for start in range(0, len(text), _CHUNK):
        digest.update(text[start : start + _CHUNK].encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def code_points(text: str) -> np.ndarray:
    """The code point of each character (uint32)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def characters_of(text: str, start: int = 0, end: int | None = None) -> list[str]:
    """The distinct characters of ``text[start:end]``, sorted, read a chunk at a time."""
    end = len(text) if end is None else end
    seen = np.zeros(0, dtype=bool)
    for at in range(start, end, _CHUNK):
        codes = code_points(text[at : min(at + _CHUNK, end)])
        top = int(codes.max()) + 1
        if top > len(seen):
            seen = np.concatenate([seen, np.zeros(top - len(seen), dtype=bool)])
        seen[codes] = True
    return [chr(c) for c in np.flatnonzero(seen).tolist()]


class Vocabulary:
    """Characters to ids and back; id 0 is ``<unk>``."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars
        self.ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def of(cls, text: str, start: int = 0, end: int | None = None) -> Vocabulary:
        """The characters of ``text[start:end]``."""
        return cls(characters_of(text, start, end))

    def __len__(self) -> int:
        return len(self.chars) + 1

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        return np.dtype(
            np.uint8 if len(self) <= 1 << 8 else np.uint16 if len(self) <= 1 << 16 else np.uint32
        )

    def encode(self, text: str) -> np.ndarray:
        return np.fromiter((self.ids.get(c, UNK) for c in text), dtype=np.int64, count=len(text))

    def compact_ids(self, text: str, start: int = 0, end: int | None = None) -> np.ndarray:
        """The ids of ``text[start:end]`` (``<unk>`` for characters outside the vocabulary) in
        ``dtype``: one to four bytes a character, converted a chunk at a time."""
        end = len(text) if end is None else end
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        table = np.zeros(int(codes.max(initial=0)) + 2, dtype=self.dtype)  # last: any code beyond
        table[codes] = np.arange(1, len(codes) + 1)
        out = np.empty(max(0, end - start), dtype=self.dtype)
        for at in range(start, end, _CHUNK):
            chunk = code_points(text[at : min(at + _CHUNK, end)])
            out[at - start : at - start + len(chunk)] = table[np.minimum(chunk, len(table) - 1)]
        return out

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 1] if i > 0 else "\ufffd" for i in ids)

    @property
    def unknown(self) -> str:
        """The one character that stands for ``<unk>`` in ``known``: the first private-use code
        point the vocabulary lacks, so it never collides with a character of the text."""
        code = 0xE000
        while chr(code) in self.ids:
            code += 1
        return chr(code)

    def known(self, text: str) -> str:
        """``text`` with unseen characters replaced by one stand-in, as the model sees it."""
        stand_in = self.unknown
        return "".join(c if c in self.ids else stand_in for c in text)


class WideIds(Mapping[str, np.ndarray]):
    """Compact id arrays by name, read as int64 arrays (each converted when read)."""

    def __init__(self, ids: dict[str, np.ndarray]) -> None:
        self._ids = ids

    def __getitem__(self, name: str) -> np.ndarray:
        return self._ids[name].astype(np.int64)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
