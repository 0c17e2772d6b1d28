#!/usr/bin/env bash
# The offline_cpu preset (pretrained MiniLM, 6 layers, 4,000 training questions, 1,000 held-out questions),
# linear-warmup-decay against LRTuner (same warmup and decay, its multiplier raced) at the preset's LR, seeds 0-2: two runs
# at a time, one CPU thread each.
# Usage: bash scripts/compare_preset.sh [OUTPUT_DIR]   (default outputs/preset; finished runs are skipped)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-outputs/preset}"
mkdir -p "$out"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
for seed in 0 1 2; do
  for schedule in linear lrtuner; do
    run="$out/${schedule}_s${seed}"
    [ -f "$run/metrics.json" ] || python scripts/run_squad.py --preset offline_cpu --lr_schedule "$schedule" \
        --seed "$seed" --output_dir "$run" --disable_tqdm true > "$run.log" 2>&1 &
  done
  wait
done
python - "$out" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])


def pm(values):
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


for schedule in ("linear", "lrtuner"):
    runs = [json.loads(p.read_text()) for p in sorted(out.glob(f"{schedule}_s*/metrics.json"))]
    if not runs:
        print(f"{schedule}: no finished run in {out}")
        continue
    f1 = [r["f1"] for r in runs]
    em = [r["exact_match"] for r in runs]
    total = statistics.mean(r["total_updates"] for r in runs)
    trials = statistics.mean(r["trial_updates"] for r in runs)
    multipliers = [round(r.get("final_multiplier", 1.0), 3) for r in runs]
    print(f"{schedule}: F1 {pm(f1)}, EM {pm(em)}, total updates {total:.0f} ({trials:.0f} trial), per seed F1 "
          f"{[round(v, 2) for v in f1]}" + (f", final multipliers {multipliers}" if schedule == "lrtuner" else ""))
PY
