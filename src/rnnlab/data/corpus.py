"""A text corpus for character-level language models: the default one (the Python reference
documentation), reading a user's file, its fingerprint, and the character vocabulary."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from rnnlab.batch import UNKNOWN_ID as UNK
from rnnlab.utils.errors import ConfigError, DataError

# stands for <unk> inside n-gram contexts: NUL never passes read_text, so never collides
UNK_CHAR = "\x00"


def default_corpus() -> tuple[str, str]:
    """The reference documentation every CPython ships (``pydoc_data.topics``: ~465k characters
    of English prose and code in 3.11), topics in sorted order; and its description."""
    from pydoc_data.topics import topics

    version = ".".join(map(str, sys.version_info[:3]))
    return "\n\n".join(
        topics[key] for key in sorted(topics)
    ), f"pydoc_data.topics (Python {version})"


def read_text(path: str | Path, encoding: str) -> str:
    """The text of ``path``, refusing what is not text in ``encoding`` (one line each)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read data.file={path}: {exc.strerror}; check the path") from exc
    if b"\x00" in raw[: 1 << 20]:
        offset = raw.index(b"\x00")
        raise DataError(
            f"data.file={path} looks binary (a NUL byte at offset {offset}); give a text file"
        )
    try:
        return raw.decode(encoding)
    except LookupError as exc:
        raise ConfigError(f"data.encoding={encoding!r} is not an encoding Python knows") from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data.file={path}: the byte at offset {exc.start} is not valid {encoding}; "
            "set data.encoding to the file's encoding (e.g. latin-1)"
        ) from exc


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

    def known(self, text: str) -> str:
        """``text`` with unseen characters replaced by one stand-in, as the model sees it."""
        return "".join(c if c in self.ids else UNK_CHAR for c in text)
