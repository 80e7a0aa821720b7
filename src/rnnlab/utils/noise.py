"""Known-benign library messages that every command would print, silenced here and nowhere
else. Each filter matches one message exactly; anything else a library says still shows."""

from __future__ import annotations

import logging
import re
import warnings

# Lightning announces the accelerators it did not find at every Trainer start ("GPU available:
# False, used: False", "TPU available: False, using: 0 TPU cores"; older versions also "HPU
# available: False, ..."): on a CPU machine that is every command. A present GPU's line ("GPU
# available: True (cuda), used: ...") and the "GPU available but not used" warning still show.
_ABSENT_ACCELERATOR = re.compile(r"(GPU|TPU|HPU) available: False\b")
# Lightning advertises add-on services at every start; batch logs don't need that.
_TIP = "💡 Tip"
_LIGHTNING_INFO = ("lightning.fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


def _is_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return message.startswith(_TIP) or _ABSENT_ACCELERATOR.match(message) is not None


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_noise(record)


def quiet_known_noise() -> None:
    """Install the filters (once per process; calling again adds nothing)."""
    # Lightning's own pytree helper still builds torch's LeafSpec, which torch deprecated: the
    # FutureWarning comes from inside Lightning at every fit and test, with nothing of ours to
    # change (pyproject.toml's pytest filterwarnings says the same for the test suite).
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    # On any machine with SLURM's client installed (a cluster's login node, this project's CI),
    # Lightning tells every run outside a job to prepend `srun`; rnnlab submits cluster jobs
    # through hydra/launcher=slurm instead, so the hint points the wrong way.
    warnings.filterwarnings(
        "ignore", message=r"The `srun` command is available on your system but is not used"
    )
    for name in _LIGHTNING_INFO:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
