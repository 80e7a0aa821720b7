#!/usr/bin/env bash
# Creates .venv and installs rnnlab with its dev and docs extras. The CPU build of torch goes in first:
# rnnlab asks only for torch>=2.4, which that build satisfies, so pip never pulls a CUDA build.
# On a GPU machine, install the torch build you want first (or set TORCH_SPEC), then run this.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e '.[dev,docs]'
.venv/bin/python -c "import torch, rnnlab; print('rnnlab', rnnlab.__version__, 'torch', torch.__version__)"
