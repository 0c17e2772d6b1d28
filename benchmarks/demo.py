"""The README's demo, every seed and schedule: `run_squad.py --preset offline_cpu`, linear and lrtuner, seeds 0-2.

Runs the README's command as written, `--jobs` at a time, and writes one CSV row per run (the columns
`python -m benchmarks.report --demo_csv` reads) and, with `--records`, LRTuner's race records per seed. Resumable: a
run whose `metrics.json` exists is not run again.

    python -m benchmarks.demo --jobs 2 --threads 1 --csv docs/results/demo_cpu.csv
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

SCHEDULES = ("linear", "lrtuner")
COLUMNS = ("schedule", "seed", "exact_match", "f1", "updates", "trial_updates", "final_multiplier", "train_seconds")


def run_one(schedule: str, seed: int, work: str, threads: int) -> tuple[dict, dict]:
    """One run of the README's command; returns its row and its `metrics.json`."""
    output_dir = os.path.join(work, f"{schedule}_s{seed}")
    metrics_path = os.path.join(output_dir, "metrics.json")
    if not os.path.exists(metrics_path):
        command = [sys.executable, "scripts/run_squad.py", "--preset", "offline_cpu", "--lr_schedule", schedule,
                   "--output_dir", output_dir, "--seed", str(seed), "--disable_tqdm", "true"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
        os.makedirs(work, exist_ok=True)
        start = time.time()
        with open(os.path.join(work, f"{schedule}_s{seed}.log"), "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if code != 0 or not os.path.exists(metrics_path):
            raise RuntimeError(f"{schedule} seed {seed} failed (exit {code}): see {log.name}")
        print(f"{schedule} seed {seed}: done in {time.time() - start:.0f} s", flush=True)
    with open(metrics_path) as f:
        metrics = json.load(f)
    return {"schedule": schedule, "seed": seed, **{key: metrics[key] for key in COLUMNS[2:]}}, metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS of each run (0: torch's default); with --jobs 2 on 2 cores, 1")
    parser.add_argument("--work", default="outputs/demo", help="where the runs' output folders and logs go")
    parser.add_argument("--csv", default="docs/results/demo_cpu.csv", help="the rows, one per run")
    parser.add_argument("--records", default=None, help="a JSON file for LRTuner's race records, by seed")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    runs = [(schedule, seed) for seed in args.seeds for schedule in args.schedules]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda run: run_one(*run, args.work, args.threads), runs))
    rows = [row for row, _ in results]
    os.makedirs(os.path.dirname(args.csv) or ".", exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {args.csv}")
    if args.records:
        records = {row["seed"]: metrics["schedule"].get("records") for row, metrics in results
                   if row["schedule"] == "lrtuner"}
        with open(args.records, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
