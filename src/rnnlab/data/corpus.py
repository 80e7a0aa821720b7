"""A text corpus for character-level language models: the default one (the Python reference
documentation), reading a user's file, its fingerprint, and the character vocabulary."""

from __future__ import annotations

import codecs
import hashlib
import sys
from pathlib import Path

import numpy as np

from rnnlab.batch import UNKNOWN_ID as UNK
from rnnlab.data.inputs import DEFAULT_MAX_FILE_MB, RAISE_LIMIT, read_input
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
    of English prose and code in 3.11), topics in sorted order; and its description."""
    from pydoc_data.topics import topics

    version = ".".join(map(str, sys.version_info[:3]))
    return "\n\n".join(
        topics[key] for key in sorted(topics)
    ), f"pydoc_data.topics (Python {version})"


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
        offset = raw.index(b"\x00")
        mark = _byte_order_mark(raw)
        hint = (
            f"; it looks like {mark} text (it starts with a byte-order mark): set "
            f"data.encoding={mark}"
            if mark
            else "; give a text file (UTF-16 or UTF-32 text needs data.encoding=utf-16 or utf-32)"
        )
        raise DataError(f"data.file={path} looks binary (a NUL byte at offset {offset}){hint}")
    try:
        text = raw.decode(codec.name)
    except UnicodeError as exc:  # UnicodeDecodeError, or a codec's own (idna, punycode)
        advice = encoding_advice or "set data.encoding to the file's encoding (e.g. latin-1)"
        where = f"the byte at offset {exc.start}" if hasattr(exc, "start") else "the text"
        raise DataError(f"data.file={path}: {where} is not valid {encoding}; {advice}") from exc
    del raw
    at = text.find("\x00")
    if at >= 0:
        raise DataError(
            f"data.file={path} looks binary (a NUL character at character {at} in {encoding}); "
            "give a text file"
        )
    return text


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Vocabulary:
    """Characters to ids and back; id 0 is ``<unk>``."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars
        self.ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        return np.fromiter((self.ids.get(c, UNK) for c in text), dtype=np.int64, count=len(text))

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
