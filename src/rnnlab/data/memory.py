"""Will a data set fit? Before a file is read, the memory loading it will take (estimated from
its size and the settings) against what this process can still get: the machine's available
memory (``MemAvailable`` in ``/proc/meminfo``) and its cgroup's limit less what the cgroup
already uses (v2 ``memory.max`` / ``memory.current``, v1 ``memory.limit_in_bytes`` /
``memory.usage_in_bytes``). A data set that would not fit is refused in one line naming what to
change, rather than after minutes of parsing by the kernel's out-of-memory killer or a
``MemoryError`` deep inside a library.

The estimates are the measured peak memory per byte of input of each loader
(docs/benchmarks.md, Data at scale), rounded up.
"""

from __future__ import annotations

import os
from pathlib import Path

from rnnlab.utils.errors import DataError

_GIB = 1 << 30
CGROUP_ROOT = Path("/sys/fs/cgroup")
# peak bytes of memory per byte of the file, beyond the process itself, while reading it:
# pandas' table from a CSV (its values, then float copies per series and window tensors); a
# .ts file read into memory (``ucr.load_ts_file``): its float64 values, a tensor view per
# sample and the float32 copy (2.6 measured on the scale benchmark's sequences). A .ts file
# read through the disk cache (``ts_cache``) is not checked: its memory stays flat in its size;
# nor a CSV read into it (``series_cache``): about 30 bytes a row of arrays, not a table
PER_FILE_BYTE = {"csv": 6.0, "ts": 3.0}


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # 'max' (v2): no limit


def _cgroup_room(root: Path) -> int | None:
    """What this process's cgroup may still take (v2, else v1), None where it has no limit.
    Read at the root of the cgroup file system, which a container shows as its own cgroup."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        limit, usage = _number(root / limit_file), _number(root / usage_file)
        # v1 writes 'no limit' as a number near 2**63
        if limit is not None and limit < 1 << 60:
            return max(0, limit - (usage or 0))
    return None


def available_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = CGROUP_ROOT
) -> tuple[int, str] | None:
    """The bytes this process can still allocate and what limits them, None where unknown."""
    found = []
    machine = _meminfo_available(meminfo)
    if machine is not None:
        found.append((machine, "available on this machine"))
    room = _cgroup_room(cgroup_root)
    if room is not None:
        found.append((room, "left under this process's cgroup memory limit"))
    return min(found) if found else None


# bytes per character, measured: the file, its decoded text and the ids (a few per character);
# counting the n-gram baseline (np.unique's sorts of int64 keys); val's and test's baselines
TEXT_PER_CHAR, NGRAM_PER_CHAR, SCORED_PER_CHAR = 4.0, 60.0, 48.0


def text_need(nbytes: int, held_out: float, ngram_max_order: int, fit_chars: int) -> int:
    """The memory reading a text file of ``nbytes`` takes (about a character a byte), with
    ``held_out`` of it val and test, and the n-gram baseline's settings."""
    fit = min(nbytes * (1 - held_out), fit_chars) if ngram_max_order else 0
    return int(nbytes * TEXT_PER_CHAR + fit * NGRAM_PER_CHAR + nbytes * held_out * SCORED_PER_CHAR)


def check_file_fits(setting: str, path: str | Path, kind: str) -> None:
    """Refuse a CSV (``kind`` 'csv') or .ts ('ts') file that would not fit once parsed."""
    size = file_size(path)
    check_fits(
        f"{setting}={path} ({size / (1 << 20):.0f} MiB)",
        int(size * PER_FILE_BYTE[kind]),
        f"give a smaller {setting} (about {PER_FILE_BYTE[kind]:g} bytes of memory per byte of "
        "file), or run where more memory is free",
    )


def check_text_fits(
    path: str | Path, held_out: float, ngram_max_order: int, fit_chars: int
) -> None:
    """Refuse a text file whose ids and baselines would not fit."""
    size = file_size(path)
    need = text_need(size, held_out, ngram_max_order, fit_chars)
    without = text_need(size, held_out, 0, fit_chars)
    advice = (
        "set data.ngram_max_order=0 (no n-gram baseline) or a lower data.ngram_fit_chars"
        if ngram_max_order and available_within(without)
        else "give a shorter data.file, or run where more memory is free"
    )
    check_fits(f"data.file={path} ({size / (1 << 20):.0f} MiB)", need, advice)


def available_within(need: int) -> bool:
    room = available_memory()
    return room is None or need <= room[0]


def file_size(path: str | Path) -> int:
    """The size of a regular file, 0 for anything else (``inputs.read_input`` refuses those)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def check_fits(what: str, need: int, advice: str, room: tuple[int, str] | None = None) -> None:
    """Refuse, in one line, loading ``what`` when the ``need`` bytes it is estimated to take
    exceed what ``available_memory()`` (or ``room``) says this process can get."""
    room = available_memory() if room is None else room
    if room is None or need <= room[0]:
        return
    raise DataError(
        f"{what} needs about {need / _GIB:.1f} GiB of memory to load, more than the "
        f"{room[0] / _GIB:.1f} GiB {room[1]}; {advice}"
    )
