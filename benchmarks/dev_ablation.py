"""Compare LRTuner settings on the suite's dev split, to choose defaults without touching the test rows.

For each synthetic task, the tuned LR is the linear dev grid's best in the suite CSV; every setting runs from that LR
times 0.1, 0.3, 1, 3 and 10 with the dev seeds (1000-1002: the test rows' seeds are 0-2, so init, batch order and noise
streams differ from theirs) on the *dev* split, and linear runs at x1 as the paired reference. It prints the mean
regret per guess in units of the task's delta, their mean and worst, and the compute. Nothing is written.

    nice -n 10 python -m benchmarks.dev_ablation --jobs 1 lrtuner \
        "lrtuner:race_horizon=0.2,accelerate=False,improvement_of=loss,stop_behind=False,stall_check=False"
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics

from benchmarks.runner import read_rows, tuned_lr
from benchmarks.tasks_synthetic import TASKS

GUESSES = (0.1, 0.3, 1.0, 3.0, 10.0)
SEEDS = (1000, 1001, 1002)


def _run(job):
    task, method, guess, lr, seed = job
    import torch

    torch.set_num_threads(1)
    result = TASKS[task].run(method, lr, seed, "dev", TASKS[task].updates, "cpu")
    return job, result["metric"], result["trial_updates"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("methods", nargs="+", help='method strings, e.g. lrtuner "lrtuner:race_horizon=0.1"')
    parser.add_argument("--csv", default="docs/results/suite.csv", help="suite CSV holding the linear dev grids")
    parser.add_argument("--tasks", nargs="+", default=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    if not read_rows(args.csv):
        parser.error(f"{args.csv} has no rows: run the suite's dev stage first (benchmarks/suite.py --stage dev).")
    eta = {task: tuned_lr(TASKS[task], TASKS[task].updates, args.csv) for task in args.tasks}
    jobs = [(t, "linear", 1.0, eta[t], s) for t in args.tasks for s in args.seeds]
    jobs += [(t, m, g, eta[t] * g, s) for t in args.tasks for m in args.methods for g in GUESSES for s in args.seeds]
    with mp.get_context("fork").Pool(args.jobs) as pool:
        results = pool.map(_run, jobs)
    baseline = {(t, s): metric for (t, m, g, lr, s), metric, _ in results if m == "linear"}
    for task in args.tasks:
        spec = TASKS[task]
        sign = 1.0 if spec.higher_is_better else -1.0
        for method in args.methods:
            regrets, costs = [], []
            for guess in GUESSES:
                cell = [(s, metric, trial) for (t, m, g, lr, s), metric, trial in results
                        if (t, m, g) == (task, method, guess)]
                regrets.append(statistics.mean(sign * (baseline[(task, s)] - metric) for s, metric, _ in cell))
                costs.append(1 + statistics.mean(trial for _, _, trial in cell) / spec.updates)
            print(f"{task:15s} {method:50s} regret/delta " + " ".join(f"{r / spec.delta:7.1f}" for r in regrets)
                  + f"  mean {statistics.mean(regrets) / spec.delta:7.1f} worst {max(regrets) / spec.delta:7.1f}"
                  + "  compute " + " ".join(f"{c:.2f}" for c in costs), flush=True)


if __name__ == "__main__":
    main()
