"""``fork_on_one_thread``: ``os.fork`` for the fuzzers, whose children run torch.

GNU OpenMP (the CPU wheel's ``libgomp``) does not survive ``fork``: once a process has run a
parallel region on two or more threads, a forked child that runs one more on two or more threads
waits forever for pool threads that were never copied. The fuzzers fork from processes that may
have computed already (pytest's, after earlier tests trained models), so each child computes on
one thread: torch's setting now, and ``OMP_NUM_THREADS`` for rnnlab's ``threads`` default, which
every command applies at the start of its job.
"""

from __future__ import annotations

import os


def fork_on_one_thread() -> int:
    """``os.fork()``; in the child, torch and every rnnlab command it runs use one thread."""
    pid = os.fork()
    if pid == 0:
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
    return pid
