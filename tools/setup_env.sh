#!/usr/bin/env bash
# Create the project's virtual environment and install the package with its dev tools.
# torch is pinned to 2.13.0 (the CPU wheel on our machines; an unpinned torch pulls a CUDA build).
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip 2>/dev/null || true
"$venv/bin/python" -m pip install --quiet -e ".[dev]"
touch "$venv/.installed"
echo "environment ready: $venv ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
