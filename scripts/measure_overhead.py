"""Measure what LRTuner costs inside a Trainer run: bookkeeping outside the trials, and the trials themselves.

It runs `scripts/run_squad.py` (any of its options after `--`) with timers around `LRTunerScheduler.step`, every
`LRTunerCallback` event and `TrialRunner.tune`, and writes a JSON report:

- bookkeeping = scheduler steps + callback events - trials, per update and as a share of an ordinary update;
- trials = time in `TrialRunner.tune` (trial updates, probes, snapshots) as a share of the training time, and trial
  updates as a share of all updates.

    python scripts/measure_overhead.py --output measure_overhead.json -- --preset offline_cpu --num_hidden_layers 3 \
        --max_train_examples 400 --max_eval_examples 50 --per_device_train_batch_size 8 --lr_schedule lrtuner \
        --lrtuner_tune_every 20 --lrtuner_trial_steps 3 --lrtuner_probe_batches 4 --lrtuner_max_trial_fraction 0.2 \
        --output_dir /tmp/measure_overhead
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_squad  # noqa: E402

from hf_lrtuner.callback import LRTunerCallback  # noqa: E402
from hf_lrtuner.scheduler import LRTunerScheduler  # noqa: E402
from hf_lrtuner.trials import TrialRunner  # noqa: E402

seconds = defaultdict(float)
calls = defaultdict(int)


def timed(owner, name, key):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start
            calls[key] += 1

    setattr(owner, name, wrapper)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="measure_overhead.json")
    args, run_squad_args = parser.parse_known_args()
    run_squad_args = [a for a in run_squad_args if a != "--"]

    timed(LRTunerScheduler, "step", "scheduler_step")
    for event in ("on_train_begin", "on_step_end", "on_log", "on_train_end"):
        timed(LRTunerCallback, event, "callback_events")
    timed(TrialRunner, "tune", "trials")
    metrics = run_squad.main(run_squad_args)

    updates = metrics["updates"]
    bookkeeping = seconds["scheduler_step"] + seconds["callback_events"] - seconds["trials"]
    ordinary = metrics["train_seconds"] - seconds["trials"]
    report = {
        "updates": updates,
        "trial_updates": metrics["trial_updates"],
        "train_seconds": metrics["train_seconds"],
        "trial_seconds": round(seconds["trials"], 2),
        "ordinary_update_ms": round(1000 * ordinary / updates, 2),
        "bookkeeping_ms_per_update": round(1000 * bookkeeping / updates, 3),
        "bookkeeping_share_of_update": round(bookkeeping / ordinary, 5),
        "trial_share_of_train_time": round(seconds["trials"] / metrics["train_seconds"], 4),
        "trial_share_of_updates": round(metrics["trial_updates"] / metrics["total_updates"], 4),
        "calls": dict(calls),
        "command": " ".join(run_squad_args),
    }
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
