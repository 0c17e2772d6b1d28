"""Run the tuner suite: a linear-warmup-decay dev grid per task, then every method at guesses around the tuned LR.

    python -m benchmarks.suite --tasks cpu --methods all --jobs 2   # the whole CPU suite (docs/results.md)
    python -m benchmarks.suite --tasks nqm_sgd freshhead_adam --methods linear lrtuner
    python -m benchmarks.suite --quick --tasks freshhead_adam --methods linear "lrtuner:race_margin=0"
    python -m benchmarks.suite --stage test --methods lrtuner --guesses 0.1 1 10   # reuses the dev rows
    python -m benchmarks.suite --stage test --tasks squad_minilm_large --eta 2e-4 --device cuda  # no dev grid

Rows go to one CSV (resumable: runs already in it are skipped); summarise it with `benchmarks/report.py`.
See `benchmarks/runner.py` for the protocol and `benchmarks/__init__.py` for method strings.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.runner import (
    ALL_METHODS, COMPARED_GUESSES, CPU_TASKS, GUESSES, _module_tasks, all_tasks, run_suite,
)


def parse_guess(text: str) -> float:
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return float(text)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}",
        description="Judge LR-tuning methods against a tuned linear-warmup-decay baseline.")
    p.add_argument("--tasks", nargs="+", default=None,
                   help="task names, or 'cpu' for the tasks that decide (default: every synthetic task)")
    p.add_argument("--methods", nargs="+", default=["linear", "lrtuner"],
                   help='method strings, e.g. linear lrtuner "lrtuner:race_margin=0", or \'all\' for every compared '
                        'method')
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="each task's quick_updates, and a separate default CSV")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (processes)")
    p.add_argument("--csv", default=None, help="default docs/results/suite.csv (--quick: docs/results/suite_quick.csv)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stage", choices=["dev", "test", "all"], default="all")
    p.add_argument("--guesses", type=parse_guess, nargs="+", default=None,
                   help="multiples of the tuned LR, e.g. 1/30 0.1 0.3 1 3 10 30 (default: x0.1-x10 with --tasks cpu, "
                        "else also x1/30 and x30)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar (the per-run lines remain)")
    p.add_argument("--eta", type=float, default=None,
                   help="with --stage test: the LR the guesses multiply, instead of the dev rows' tuned LR")
    p.add_argument("--max_extensions", type=int, default=4, help="dev-grid extensions when the best is at an edge")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    args = p.parse_args(argv)
    if args.eta is not None and (args.stage != "test" or not args.eta > 0):
        p.error("--eta takes a positive LR and replaces the dev stage: use it with --stage test")

    import torch

    torch.set_num_threads(1)
    if args.list:
        tasks = all_tasks()
        for t in tasks.values():
            print(f"{t.name:16s} tier {t.tier}  {t.metric_name:8s} T={t.updates} (quick {t.quick_updates})"
                  f" delta={t.delta} grid={[f'{x:.3g}' for x in t.lr_grid]}")
        return 0
    names = args.tasks or list(_module_tasks("benchmarks.tasks_synthetic"))
    if names == ["cpu"]:
        names = list(CPU_TASKS)
        args.guesses = args.guesses or list(COMPARED_GUESSES)
    methods = list(ALL_METHODS) if args.methods == ["all"] else args.methods
    csv_path = args.csv or ("docs/results/suite_quick.csv" if args.quick else "docs/results/suite.csv")
    out = run_suite(names, methods, args.seeds, csv_path, quick=args.quick, jobs=args.jobs, device=args.device,
                    stage=args.stage, guesses=args.guesses or list(GUESSES), max_extensions=args.max_extensions,
                    eta=args.eta, progress=not args.no_progress)
    print(f"tuned LRs: {', '.join(f'{k}={v:.3g}' for k, v in out['eta'].items())}; rows in {csv_path}")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
