"""Running a command in a fresh Python process as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Set by launchers in the processes they start (they skip the command's checks), and the switch
# that turns one-line errors into tracebacks: none of them is a user's.
_NOT_A_USERS = ("LOCAL_RANK", "SLURM_PROCID", "HYDRA_FULL_ERROR")


def python_process(
    args: list[str], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` with this checkout's ``src`` first on the path; the time limit only
    stops a hang."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_A_USERS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
