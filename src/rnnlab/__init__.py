"""rnnlab: recurrent networks on sequence data with Lightning and Hydra."""

import os

# OpenMP threads that finish a parallel region sleep until the next one instead of spinning:
# beside one busy process the default job took 1.4x its idle time so, 3.4x spinning (the
# Benchmarks page, "Threads on a shared machine"). OpenMP reads the policy once, when torch
# loads it, so it is set here, before any rnnlab module imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
