"""The fuzzers' fork (scripts/forking.py): a child forked from a process that already computed
on two threads must compute, and run an rnnlab job's thread set-up, without hanging (GNU
OpenMP's pool does not survive fork)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

PARENT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    from forking import fork_on_one_thread
    from rnnlab.utils.threads import apply_threads, resolve_threads

    torch.set_num_threads(2)
    a = torch.randn(400, 400)
    for _ in range(3):
        (a @ a).relu().sum()  # the parent's OpenMP pool now has threads
    pid = fork_on_one_thread()
    if pid == 0:
        code = 3
        try:
            threads = apply_threads(resolve_threads(None))  # as every command's job does
            b = torch.randn(1_000_000)
            (a @ a).relu().sum(), (b * 2).sum(), torch.nn.functional.relu(b).sum()
            code = 0 if threads == torch.get_num_threads() == 1 else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_a_child_forked_after_two_thread_work_computes_on_one_thread():
    # a hang guard only: the child takes well under a second
    done = subprocess.run(
        [sys.executable, "-c", PARENT, str(SCRIPTS)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
