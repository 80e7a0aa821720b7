"""How many threads a job computes with: the ``threads`` setting, whose default (``null``) is the
number of CPUs this process may actually use, not the number of cores the machine has.

A process may be held to fewer CPUs than ``os.cpu_count()`` says by its CPU affinity
(``taskset``, ``numactl``, a batch system's binding), by a cgroup CPU quota (containers,
systemd, Kubernetes limits: cgroup v2's ``cpu.max``, v1's ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``), or by what SLURM allocated (``SLURM_CPUS_PER_TASK``); and a user who
set ``OMP_NUM_THREADS`` asked for no more than that. Running more
compute threads than that makes them wait on each other at every parallel region: a job
beside one busy process ran several times slower with torch's default of one thread per core.
``usable_cpus`` takes the smallest of them; ``apply_threads`` gives the result to torch at the
start of every command's job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path

from rnnlab.utils.errors import ConfigError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return None


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """This process's cgroup per hierarchy from ``/proc/self/cgroup`` ('' for v2's unified
    hierarchy, else its controllers, e.g. 'cpu,cpuacct'): the path inside the hierarchy."""
    found: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            found[parts[1]] = parts[2]
    return found


def _folders(mount: Path, inside: str | None) -> list[Path]:
    """The cgroup folder of this process under ``mount`` and each above it, up to ``mount``
    (a limit on any of them binds); just ``mount`` where the path is unknown (a container's
    namespace shows its own cgroup as the root)."""
    folders = [mount]
    if inside:
        here = mount
        for name in Path(inside.lstrip("/")).parts:
            here = here / name
            folders.append(here)
    return folders


def _v2_quota(folder: Path) -> float | None:
    """CPUs that cgroup v2's ``cpu.max`` ('QUOTA PERIOD', or 'max PERIOD') allows."""
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    try:
        if fields[0] == "max":
            return None
        return int(fields[0]) / int(fields[1])
    except (ValueError, IndexError, ZeroDivisionError):
        return None


def _v1_quota(folder: Path) -> float | None:
    """CPUs that cgroup v1's ``cpu.cfs_quota_us`` (-1: none) over ``cpu.cfs_period_us`` allow."""
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        if quota is None or period is None or int(quota) <= 0:
            return None
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def cgroup_cpus(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPUs this process's cgroup quota allows (the tightest of its cgroup and those above
    it, v2 or v1), None where no quota is set or none can be read."""
    own = _own_cgroups(proc_cgroup)
    quotas = [_v2_quota(folder) for folder in _folders(root, own.get(""))]
    for controllers in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        mount = root / controllers
        if mount.is_dir():
            inside = next((path for names, path in own.items() if "cpu" in names.split(",")), None)
            quotas += [_v1_quota(folder) for folder in _folders(mount, inside)]
            break
    limits = [q for q in quotas if q is not None and q > 0]
    return min(limits) if limits else None


def _count(environ: Mapping[str, str], name: str) -> int | None:
    """A positive whole number set in the environment variable ``name``, else None."""
    value = environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def usable_cpus(
    environ: Mapping[str, str] | None = None,
    root: Path = CGROUP_ROOT,
    proc_cgroup: Path = Path("/proc/self/cgroup"),
) -> int:
    """The CPUs this process may use: the fewest its affinity, its cgroup quota (rounded down:
    a quota of 1.5 CPUs runs one thread without being throttled) and SLURM's allocation allow,
    and no more than ``OMP_NUM_THREADS`` where the user set it; at least 1."""
    environ = os.environ if environ is None else environ
    if hasattr(os, "sched_getaffinity"):
        counts = [len(os.sched_getaffinity(0))]
    else:  # macOS, Windows: no affinity to read
        counts = [os.cpu_count() or 1]
    quota = cgroup_cpus(root, proc_cgroup)
    if quota is not None:
        counts.append(math.floor(quota))
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        count = _count(environ, name)
        if count is not None:
            counts.append(count)
    return max(1, min(counts))


def resolve_threads(setting: object) -> int:
    """The ``threads`` setting as a number of threads: null (or 'auto') is ``usable_cpus()``;
    otherwise a whole number >= 1, refused in one line if it is not."""
    if setting is None or setting == "auto":
        return usable_cpus()
    if isinstance(setting, bool) or not isinstance(setting, Integral) or setting < 1:
        raise ConfigError(
            f"threads={setting!r}: give a whole number of threads >= 1, or null for the CPUs "
            "this process may use"
        )
    return int(setting)


def apply_threads(setting: object) -> int:
    """Give torch ``resolve_threads(setting)`` intra-op threads; return how many."""
    import torch

    threads = resolve_threads(setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
