"""Progress of the data's set-up steps: a step over a large input says when it starts and how
long it took, so a set-up that takes minutes is never silent. Small inputs log at debug level
only, unless a step still took longer than ``SLOW_S``."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger("rnnlab.data")

# items (characters, rows, values) from which a step is announced before it starts
LARGE = 2_000_000
# a step that took at least this many seconds is reported whatever its input's size
SLOW_S = 3.0


@contextlib.contextmanager
def setup_step(what: str, size: int) -> Iterator[None]:
    """Around one step of the set-up (``what``: 'fitting the n-gram baseline on 5,000,000
    characters'); ``size``: how many items it works through."""
    loud = size >= LARGE
    log.log(logging.INFO if loud else logging.DEBUG, "%s ...", what)
    started = time.perf_counter()
    yield
    took = time.perf_counter() - started
    level = logging.INFO if loud or took >= SLOW_S else logging.DEBUG
    log.log(level, "%s: done in %.1f s", what, took)
