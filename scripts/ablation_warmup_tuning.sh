#!/usr/bin/env bash
# Ablation behind the default LRTunerConfig.tune_during_warmup=False: lrtuner with the first tuning point at step 0
# (during warmup) against at the end of warmup, on the benchmark's DEVELOPMENT articles (never the evaluation part),
# at the three initial LRs of the benchmark, seed 0. Needs benchmarks/squad_offline/data from benchmark_squad.py.
# Usage: bash scripts/ablation_warmup_tuning.sh [OUTPUT_DIR]   (default benchmarks/ablation_warmup_tuning)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/ablation_warmup_tuning}"
data=benchmarks/squad_offline/data
mkdir -p "$out"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
for lr in 3e-05 0.0003 0.003; do
  for during_warmup in true false; do
    run="$out/warmup_${during_warmup}_lr${lr}"
    [ -f "$run/metrics.json" ] || python scripts/run_squad.py --preset offline_cpu --train_file $data/train.json.gz \
        --validation_file $data/dev.json.gz --max_train_examples 800 --max_eval_examples 300 --num_hidden_layers 3 \
        --per_device_train_batch_size 8 --lr_schedule lrtuner --learning_rate $lr --seed 0 \
        --lrtuner_tune_every 20 --lrtuner_trial_steps 3 --lrtuner_probe_batches 4 --lrtuner_max_trial_fraction 0.2 \
        --lrtuner_tune_during_warmup $during_warmup --output_dir "$run" --disable_tqdm true > "$run.log" 2>&1 &
  done
  wait
done
for run in "$out"/warmup_*/metrics.json; do
  python -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-2], 'F1 %.2f EM %.2f' % (m['f1'], m['exact_match']), [(r['step'], round(r['lr_factor'], 3)) for r in m['schedule']['records']])" "$run"
done
