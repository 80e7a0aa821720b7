"""Reading a user's input file with a bound: a regular file, no larger than ``data.max_file_mb``,
read in one pass that stops at the limit.

Every loader of user files (text, CSV, ``.ts``) reads through ``read_input``, so that a path to a
device (``/dev/zero``), a FIFO or a directory is refused before anything is read, and a file
that reports a wrong size (``/proc`` files report 0) or grows while it is read still cannot
take more memory than the limit.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from numbers import Real
from pathlib import Path

from rnnlab.utils.errors import ConfigError, DataError

# A generous default for one machine: a 1 GiB text or table already needs several GiB of memory
# once parsed (a character model keeps each character as an int64 id; pandas several objects
# per cell); raise data.max_file_mb for more.
DEFAULT_MAX_FILE_MB = 1024
_MIB = 1 << 20
_CHUNK = 8 * _MIB


def check_max_file_mb(value: object) -> float:
    """``data.max_file_mb`` as a number of MiB, refusing what is not a positive number."""
    plain = isinstance(value, Real) and not isinstance(value, bool)
    number = float(value) if plain else math.nan  # type: ignore[arg-type]
    if not (number > 0 and math.isfinite(number)):
        raise ConfigError(
            f"data.max_file_mb={value!r}: give the largest input file to read, in MiB (> 0)"
        )
    return number


def _size(nbytes: int) -> str:
    return f"{nbytes / _MIB:.1f} MiB" if nbytes >= _MIB // 10 else f"{nbytes} bytes"


RAISE_LIMIT = (
    "raise data.max_file_mb if this machine's memory holds it (several times the file's size)"
)
# for a file read with the limit a trained model's checkpoint stores (rnnlab.predict's input)
STORED_LIMIT = "give a shorter file (the limit was stored with this model)"


def too_large(
    setting: str, path: str | Path, nbytes: int | None, max_file_mb: float, advice: str
) -> str:
    """The refusal of a file over the limit; ``nbytes`` None when its reported size was below
    it (a file that grew while read, or a ``/proc`` file, which reports 0)."""
    size = f"is {_size(nbytes)}, over" if nbytes is not None else "holds more than"
    return f"{setting}={path} {size} data.max_file_mb={max_file_mb:g} MiB; {advice}"


def open_input(
    path: str | Path, setting: str, max_file_mb: float, limit_advice: str = RAISE_LIMIT
) -> int:
    """A blocking descriptor of the regular file at ``path``, refused in one line (naming it as
    ``setting``) where it is missing, unreadable, a directory, a device, pipe or socket, or over
    ``max_file_mb`` MiB by its size; the caller closes it."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise DataError(f"data file {path} does not exist; check {setting}") from exc
        raise DataError(f"cannot read {setting}={path}: {exc.strerror}; check the path") from exc
    try:  # checked before a file object is made of it (which refuses a directory itself)
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{setting}={path} is a directory; give a file")
        if not stat.S_ISREG(info.st_mode):
            raise DataError(
                f"{setting}={path} is not a regular file (a device, pipe or socket); "
                "give a file on disk"
            )
        if info.st_size > int(max_file_mb * _MIB):
            raise DataError(too_large(setting, path, info.st_size, max_file_mb, limit_advice))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_input(
    path: str | Path, setting: str, max_file_mb: float, limit_advice: str = RAISE_LIMIT
) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_file_mb`` MiB; ``setting`` is
    how the user named it (``data.file``, ``input``), for the one-line refusals, and
    ``limit_advice`` what to do about a file over the limit, where raising it is not the
    user's to do (a limit stored with a trained model)."""
    limit = int(max_file_mb * _MIB)
    fd = open_input(path, setting, max_file_mb, limit_advice)
    try:
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise DataError(too_large(setting, path, None, max_file_mb, limit_advice))
        return b"".join(chunks)
    except OSError as exc:
        raise DataError(f"cannot read {setting}={path}: {exc.strerror}; check the file") from exc
    finally:
        os.close(fd)
