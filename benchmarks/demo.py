"""The README's demo, every seed and schedule: `run_squad.py --preset offline_cpu`, linear and lrtuner, seeds 0-2.

Runs the README's command as written, `--jobs` at a time, and writes one CSV row per run (the columns
`python -m benchmarks.report --demo_csv` reads) and, with `--records`, LRTuner's race records per seed. Resumable: a
run whose `metrics.json` exists is not run again.

    python -m benchmarks.demo --jobs 2 --threads 1 --csv docs/results/demo_cpu.csv
    python -m benchmarks.demo --csv docs/results/demo_cpu.csv --table    # the table of the rows, no runs
"""

import argparse
import csv
import json
import os
import statistics
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


def table(rows: list) -> str:
    """Markdown: per schedule, F1 of each seed, mean F1 and EM, updates (+ trial updates) and final multipliers."""
    lines = ["| schedule | " + " | ".join(f"seed {r['seed']}" for r in rows if r["schedule"] == rows[0]["schedule"])
             + " | mean F1 | mean EM | updates + trial updates | final multiplier |",
             "|---|" + "---|" * (sum(r["schedule"] == rows[0]["schedule"] for r in rows) + 4)]
    for schedule in dict.fromkeys(r["schedule"] for r in rows):
        own = [r for r in rows if r["schedule"] == schedule]
        updates, trial = (statistics.mean(float(r[key]) for r in own) for key in ("updates", "trial_updates"))
        cost = f"{updates:.0f}" + (f" + {trial:.0f} ({(updates + trial) / updates:.2f}x)" if trial else "")
        lines.append(f"| {schedule} | " + " | ".join(f"{float(r['f1']):.2f}" for r in own)
                     + f" | **{statistics.mean(float(r['f1']) for r in own):.2f}**"
                     + f" | {statistics.mean(float(r['exact_match']) for r in own):.2f} | {cost} | "
                     + ", ".join(f"{float(r['final_multiplier']):g}" for r in own) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS of each run (0: torch's default); with --jobs 2 on 2 cores, 1")
    parser.add_argument("--work", default="outputs/demo", help="where the runs' output folders and logs go")
    parser.add_argument("--csv", default="docs/results/demo_cpu.csv", help="the rows, one per run")
    parser.add_argument("--records", default=None, help="a JSON file for LRTuner's race records, by seed")
    parser.add_argument("--table", action="store_true", help="print the table of --csv's rows and run nothing")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.csv, newline="") as f:
            print(table(list(csv.DictReader(f))))
        return 0
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
    print(table(rows))
    if args.records:
        records = {row["seed"]: metrics["schedule"].get("records") for row, metrics in results
                   if row["schedule"] == "lrtuner"}
        with open(args.records, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
