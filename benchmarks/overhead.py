"""Measure what LRTuner costs inside a Trainer run: its bookkeeping, and the races themselves.

It runs `scripts/run_squad.py` (any of its options after `--`) with timers around `LRTunerScheduler.step`, every
`LRTunerCallback` event, every challenger's replay of a race's batches (`TrialRunner._replay`) and every snapshot
capture and restore (`TrainingSnapshot`: race starts, safe points, switching to a race's winner, roll-backs), and
writes a JSON report:

- trials = replays + snapshots, as a share of the training time, and trial updates as a share of all updates;
- bookkeeping = scheduler steps + callback events - trials: the tuner's own work per update, and as a share of an
  ordinary update.

    python -m benchmarks.overhead --output outputs/overhead.json -- --preset offline_cpu --num_hidden_layers 3 \
        --max_train_examples 400 --max_eval_examples 50 --per_device_train_batch_size 8 --lr_schedule lrtuner \
        --lrtuner_race_horizon 10 --lrtuner_max_races 2 --output_dir /tmp/measure_overhead
"""

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from hf_lrtuner.callback import LRTunerCallback
from hf_lrtuner.scheduler import LRTunerScheduler
from hf_lrtuner.snapshot import TrainingSnapshot
from hf_lrtuner.trials import TrialRunner
from scripts import run_squad

seconds = defaultdict(float)
calls = defaultdict(int)


def timed(owner, name, key):
    """Time every call of `owner.name` under `key`; returns a function that puts the original back."""
    original = getattr(owner, name)
    own = name in vars(owner)  # not inherited: put it back, rather than delete the wrapper

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start
            calls[key] += 1

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original) if own else delattr(owner, name)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="outputs/overhead.json")
    args, run_squad_args = parser.parse_known_args(argv)
    run_squad_args = [a for a in run_squad_args if a != "--"]
    if run_squad.parse_args(run_squad_args)[2].lr_schedule != "lrtuner":  # (model, data, schedule, training, preset)
        parser.error("measure the tuner's run: pass --lr_schedule lrtuner to run_squad.py (after --).")
    seconds.clear()
    calls.clear()

    restore = [timed(LRTunerScheduler, "step", "scheduler_step")]
    for event in ("on_train_begin", "on_step_end", "on_train_end"):
        restore.append(timed(LRTunerCallback, event, "callback_events"))
    restore.append(timed(TrialRunner, "_replay", "replays"))
    restore.append(timed(TrainingSnapshot, "capture", "snapshots"))
    restore.append(timed(TrainingSnapshot, "restore", "snapshots"))
    try:
        metrics = run_squad.main(run_squad_args)
    finally:
        for undo in restore:
            undo()

    updates = metrics["updates"]
    seconds["trials"] = seconds["replays"] + seconds["snapshots"]
    bookkeeping = seconds["scheduler_step"] + seconds["callback_events"] - seconds["trials"]
    train_seconds = max(metrics["train_seconds"], 1e-9)  # rounded to 0.1 s in metrics.json
    ordinary = max(train_seconds - seconds["trials"], 1e-9)
    report = {
        "updates": updates,
        "trial_updates": metrics["trial_updates"],
        "train_seconds": metrics["train_seconds"],
        "trial_seconds": round(seconds["trials"], 2),
        "replay_seconds": round(seconds["replays"], 2),
        "snapshot_seconds": round(seconds["snapshots"], 2),
        "races": metrics["schedule"]["races"],
        "rollbacks": metrics["schedule"]["rollbacks"],
        "final_multiplier": metrics["final_multiplier"],
        "ordinary_update_ms": round(1000 * ordinary / updates, 2),
        "bookkeeping_ms_per_update": round(1000 * bookkeeping / updates, 3),
        "bookkeeping_share_of_update": round(bookkeeping / ordinary, 5),
        "trial_share_of_train_time": round(seconds["trials"] / train_seconds, 4),
        "trial_share_of_updates": round(metrics["trial_updates"] / metrics["total_updates"], 4),
        "calls": dict(calls),
        "command": " ".join(run_squad_args),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
