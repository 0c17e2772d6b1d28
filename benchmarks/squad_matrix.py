"""Benchmark LRTuner against linear-warmup-decay (and the fixed knee schedule) on the offline SQuAD setup.

Stages, each resumable (a run whose `metrics.json` exists is skipped):

1. **sweep**: the `linear` baseline at `--sweep_lrs`, scored on a *development* part held out from the training
   articles (never on the evaluation part); the best mean F1 picks the baseline's LR.
2. **matrix**: `linear`, `knee` and `lrtuner` at the best LR and at 10x lower and higher, `--seeds` each, full budget,
   scored on the held-out evaluation articles.
3. **budgets**: `lrtuner` at the best LR with `--budgets` (fractions of the full budget, trial updates excluded from
   the budget but counted in the compute), to find the compute at which it reaches the baseline's F1.

Then it writes `runs.csv`, `sweep.csv`, `trajectories.csv`, `lrtuner_records.json` (the races and roll-backs of the
first seed's lrtuner runs), `tables.md` and plots to `--results_dir`.

    python -m benchmarks.squad_matrix --output_dir outputs/squad_offline --results_dir docs/results

`lrtuner` runs with `LRTunerConfig`'s defaults unless `--lrtuner_options` says otherwise, and warms up over the same
`--warmup_steps` as the baselines. `--best_lr` skips the sweep; `--dry_run` checks and prints the commands instead of
running them. Every other argument after `--` goes to `scripts/run_squad.py` unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
from hf_lrtuner.files import write_json_gz
from hf_lrtuner.squad import read_squad_json, split_by_article

SCHEDULES = ("linear", "knee", "lrtuner")


@dataclass(frozen=True)
class Run:
    stage: str
    schedule: str
    lr: float
    seed: int
    budget: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.stage}/{self.schedule}_lr{self.lr:g}_b{self.budget:g}_s{self.seed}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/squad_offline", help="Per-run outputs (resumable).")
    parser.add_argument("--results_dir", default="docs/results", help="Aggregated CSVs, tables and plots.")
    parser.add_argument("--sweep_lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--sweep_seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.7, 0.85])
    parser.add_argument("--train_questions", type=int, default=800, help="Training questions (first N).")
    parser.add_argument("--dev_questions", type=int, default=300, help="Development questions for the sweep.")
    parser.add_argument("--eval_questions", type=int, default=500, help="Held-out evaluation questions.")
    parser.add_argument("--dev_articles", type=int, default=3, help="Training articles held out for the sweep.")
    parser.add_argument("--num_hidden_layers", type=int, default=3, help="Layers of MiniLM kept (6 in the model).")
    parser.add_argument("--per_device_train_batch_size", type=int, default=8)
    parser.add_argument("--lrtuner_options", default="",
                        help="run_squad.py options for the lrtuner runs only, e.g. '--lrtuner_race_horizon 10 "
                        "--lrtuner_max_races 2' (default: LRTunerConfig's defaults).")
    parser.add_argument("--best_lr", type=float, default=None,
                        help="The baseline's LR, instead of the one the sweep picks (the sweep stage is then skipped).")
    parser.add_argument("--workers", type=int, default=2, help="Runs in parallel, one CPU thread each.")
    parser.add_argument("--stages", nargs="+", default=["sweep", "matrix", "budgets", "report"],
                        choices=["sweep", "matrix", "budgets", "report"])
    parser.add_argument("--dry_run", action="store_true", help="Print the runs and exit.")
    args, run_squad_args = parser.parse_known_args(argv)
    run_squad_args = [a for a in run_squad_args if a != "--"]
    return args, run_squad_args


def prepare_data(args) -> dict:
    """Hold out `--dev_articles` training articles for the LR sweep; the evaluation part is the repo's eval file."""
    data_dir = Path(args.output_dir) / "data"
    paths = {"train": data_dir / "train.json.gz", "dev": data_dir / "dev.json.gz",
             "eval": REPO_ROOT / "data" / "squad_offline" / "eval.json.gz"}
    if not paths["train"].exists():
        train, dev = split_by_article(read_squad_json(REPO_ROOT / "data" / "squad_offline" / "train.json.gz"),
                                      n_eval_articles=args.dev_articles, seed=0)
        data_dir.mkdir(parents=True, exist_ok=True)
        for part, content in (("train", train), ("dev", dev)):
            write_json_gz(content, paths[part])
    return paths


def run_command(run: Run, args, paths, run_squad_args, max_steps=None) -> list:
    evaluation = "dev" if run.stage == "sweep" else "eval"
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "run_squad.py"), "--preset", "offline_cpu",
        "--train_file", str(paths["train"]), "--validation_file", str(paths[evaluation]),
        "--max_train_examples", str(args.train_questions),
        "--max_eval_examples", str(args.dev_questions if evaluation == "dev" else args.eval_questions),
        "--num_hidden_layers", str(args.num_hidden_layers),
        "--per_device_train_batch_size", str(args.per_device_train_batch_size),
        "--lr_schedule", run.schedule, "--learning_rate", f"{run.lr:g}", "--seed", str(run.seed),
        "--output_dir", str(Path(args.output_dir) / run.name), "--disable_tqdm", "true",
    ]
    if max_steps is not None:
        command += ["--max_steps", str(max_steps)]
    if run.schedule == "lrtuner":
        command += shlex.split(args.lrtuner_options)
    return command + run_squad_args


def check_command(command: list) -> None:
    """Parse a run_squad.py command line and check its options as run_squad.py does before loading anything."""
    from scripts import run_squad

    _, data_args, schedule_args, training_args, _ = run_squad.parse_args(command[2:])
    run_squad.check_arguments(data_args, schedule_args, training_args)
    run_squad.SCHEDULES[schedule_args.lr_schedule].trainer_kwargs(schedule_args)  # LRTunerConfig: bad values fail


def execute(runs, args, paths, run_squad_args, max_steps_for=lambda run: None):
    todo = [run for run in runs if not (Path(args.output_dir) / run.name / "metrics.json").exists()]
    print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; running {len(todo)}.", flush=True)
    if args.dry_run:
        for run in todo:
            command = run_command(run, args, paths, run_squad_args, max_steps_for(run))
            check_command(command)
            print(shlex.join(command))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def one(item):
        index, run = item
        log_path = Path(args.output_dir) / f"{run.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with open(log_path, "w") as log:
            code = subprocess.call(run_command(run, args, paths, run_squad_args, max_steps_for(run)),
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
        status = "ok" if code == 0 else f"FAILED (exit {code}, see {log_path})"
        print(f"[{index + 1}/{len(todo)}] {run.name}: {status} in {time.time() - start:.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(one, enumerate(todo)))


def load_metrics(args, run: Run):
    path = Path(args.output_dir) / run.name / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def best_sweep_lr(args) -> float:
    scores = {}
    for lr in args.sweep_lrs:
        f1s = [m["f1"] for s in args.sweep_seeds if (m := load_metrics(args, Run("sweep", "linear", lr, s)))]
        if len(f1s) == len(args.sweep_seeds):
            scores[lr] = statistics.mean(f1s)
    if not scores:
        raise RuntimeError("No finished sweep runs: run the sweep stage first.")
    return max(scores, key=scores.get)


def matrix_runs(args, best_lr):
    return [Run("matrix", s, lr, seed) for s in SCHEDULES for lr in (best_lr / 10, best_lr, best_lr * 10)
            for seed in args.seeds]


def budget_runs(args, best_lr):
    return [Run("budgets", "lrtuner", best_lr, seed, budget) for budget in args.budgets for seed in args.seeds]


# ----------------------------------------------------------------------------------------------------- report
def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(args, best_lr):
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    sweep = [(lr, s, load_metrics(args, Run("sweep", "linear", lr, s))) for lr in args.sweep_lrs for s in args.sweep_seeds]
    with open(results / "sweep.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lr", "seed", "em", "f1"])
        for lr, seed, m in sweep:
            if m:
                writer.writerow([f"{lr:g}", seed, f"{m['exact_match']:.2f}", f"{m['f1']:.2f}"])

    runs = matrix_runs(args, best_lr) + budget_runs(args, best_lr)
    rows = []
    for run in runs:
        m = load_metrics(args, run)
        if m is None:
            continue
        rows.append({"schedule": run.schedule, "lr": run.lr, "seed": run.seed, "budget": run.budget,
                     "em": m["exact_match"], "f1": m["f1"], "updates": m["updates"],
                     "trial_updates": m["trial_updates"], "total_updates": m["total_updates"],
                     "train_seconds": m["train_seconds"], "eval_seconds": m["eval_seconds"], "run": run})
    columns = ["schedule", "lr", "seed", "budget", "em", "f1", "updates", "trial_updates", "total_updates",
               "train_seconds", "eval_seconds"]
    with open(results / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([f"{row[c]:g}" if c == "lr" else (f"{row[c]:.2f}" if c in ("em", "f1") else row[c])
                             for c in columns])
    with open(results / "trajectories.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["schedule", "lr", "seed", "budget", "step", "learning_rate", "loss"])
        for row in rows:
            run = row["run"]
            if run.seed != args.seeds[0]:
                continue
            with open(Path(args.output_dir) / run.name / "lr_loss.csv") as trajectory:
                for record in csv.DictReader(trajectory):
                    writer.writerow([run.schedule, f"{run.lr:g}", run.seed, run.budget, record["step"],
                                     record["learning_rate"], record["loss"]])
    records = {row["run"].name: load_metrics(args, row["run"])["schedule"]["records"]
               for row in rows if row["schedule"] == "lrtuner" and row["seed"] == args.seeds[0]}
    (results / "lrtuner_records.json").write_text(json.dumps(records, indent=1) + "\n")
    write_tables(results, args, best_lr, sweep, rows)
    write_plots(results, args, best_lr, rows)
    print(f"Wrote sweep.csv, runs.csv, trajectories.csv, tables.md and plots to {results}")


def write_tables(results, args, best_lr, sweep, rows):
    lines = [f"Baseline LR chosen by the sweep (dev part of the training articles): **{best_lr:g}**", "",
             "### LR sweep (linear, development articles)", "", "| lr | seeds | EM | F1 |", "|---|---|---|---|"]
    for lr in args.sweep_lrs:
        ems, f1s = zip(*[(m["exact_match"], m["f1"]) for l, _, m in sweep if l == lr and m]) or ((), ())
        if ems:
            lines.append(f"| {lr:g} | {len(ems)} | {statistics.mean(ems):.2f} | {statistics.mean(f1s):.2f} |")
    lines += ["", "### Full budget (held-out evaluation articles), mean ± std over seeds", "",
              "| schedule | initial lr | seeds | EM | F1 | updates | trial updates | total updates | overhead | train s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    full = [r for r in rows if r["budget"] == 1.0]
    for schedule in SCHEDULES:
        for lr in (best_lr / 10, best_lr, best_lr * 10):
            cell = [r for r in full if r["schedule"] == schedule and math.isclose(r["lr"], lr)]
            if not cell:
                continue
            em, em_sd = mean_std([r["em"] for r in cell])
            f1, f1_sd = mean_std([r["f1"] for r in cell])
            total = statistics.mean(r["total_updates"] for r in cell)
            trial = statistics.mean(r["trial_updates"] for r in cell)
            lines.append(
                f"| {schedule} | {lr:g} | {len(cell)} | {em:.2f} ± {em_sd:.2f} | {f1:.2f} ± {f1_sd:.2f} | "
                f"{statistics.mean(r['updates'] for r in cell):.0f} | {trial:.0f} | {total:.0f} | "
                f"{100 * trial / total:.1f}% | {statistics.mean(r['train_seconds'] for r in cell):.0f} |")
    lines += ["", "### Paired difference lrtuner − linear (F1, same seed and initial LR)", "",
              "| initial lr | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std |",
              "|---|" + "---|" * (len(args.seeds) + 1)]
    for lr in (best_lr / 10, best_lr, best_lr * 10):
        diffs = []
        for seed in args.seeds:
            a = [r["f1"] for r in full if r["schedule"] == "lrtuner" and math.isclose(r["lr"], lr) and r["seed"] == seed]
            b = [r["f1"] for r in full if r["schedule"] == "linear" and math.isclose(r["lr"], lr) and r["seed"] == seed]
            diffs.append(a[0] - b[0] if a and b else None)
        mean, sd = mean_std(diffs)
        cells = " | ".join("–" if d is None else f"{d:+.2f}" for d in diffs)
        lines.append(f"| {lr:g} | {cells} | {mean:+.2f} ± {sd:.2f} |")
    lines += ["", "### Reduced budgets (lrtuner at the baseline's LR) against the full-budget baseline", "",
              "| schedule | budget | seeds | F1 | EM | total updates (incl. trials) | compute vs baseline |",
              "|---|---|---|---|---|---|---|"]
    baseline = [r for r in full if r["schedule"] == "linear" and math.isclose(r["lr"], best_lr)]
    base_total = statistics.mean(r["total_updates"] for r in baseline) if baseline else math.nan
    curve = [("linear", 1.0, baseline)]
    for budget in sorted(set(args.budgets) | {1.0}):
        cell = [r for r in rows if r["schedule"] == "lrtuner" and math.isclose(r["lr"], best_lr)
                and math.isclose(r["budget"], budget)]
        curve.append(("lrtuner", budget, cell))
    for schedule, budget, cell in curve:
        if not cell:
            continue
        f1, f1_sd = mean_std([r["f1"] for r in cell])
        em, em_sd = mean_std([r["em"] for r in cell])
        total = statistics.mean(r["total_updates"] for r in cell)
        lines.append(f"| {schedule} | {budget:g} | {len(cell)} | {f1:.2f} ± {f1_sd:.2f} | {em:.2f} ± {em_sd:.2f} | "
                     f"{total:.0f} | {total / base_total:.2f}x |")
    (results / "tables.md").write_text("\n".join(lines) + "\n")


def write_plots(results, args, best_lr, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [r for r in rows if r["budget"] == 1.0]
    figure, axis = plt.subplots(figsize=(6, 4))
    for schedule in SCHEDULES:
        points = sorted({r["lr"] for r in full if r["schedule"] == schedule})
        stats = [mean_std([r["f1"] for r in full if r["schedule"] == schedule and r["lr"] == lr]) for lr in points]
        if points:
            axis.errorbar(points, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, label=schedule)
    axis.set_xscale("log")
    axis.set_xlabel("initial learning rate")
    axis.set_ylabel("F1 (held-out articles)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(results / "f1_vs_initial_lr.png", dpi=110)
    plt.close(figure)

    for column, filename, ylabel in (("learning_rate", "lr_trajectories.png", "learning rate"),
                                     ("loss", "loss_curves.png", "training loss")):
        figure, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=column == "learning_rate")
        for axis, lr in zip(axes, (best_lr / 10, best_lr, best_lr * 10)):
            for schedule in SCHEDULES:
                run = Run("matrix", schedule, lr, args.seeds[0])
                path = Path(args.output_dir) / run.name / "lr_loss.csv"
                if not path.exists():
                    continue
                with open(path) as f:
                    records = list(csv.DictReader(f))
                values = [float(r[column]) for r in records]
                if column == "loss":  # smooth the per-update loss over 10 updates
                    values = [statistics.mean(values[max(0, i - 9): i + 1]) for i in range(len(values))]
                axis.plot([int(r["step"]) for r in records], values, label=schedule)
            axis.set_title(f"initial lr {lr:g} (seed {args.seeds[0]})")
            axis.set_xlabel("update")
            if column == "learning_rate":
                axis.set_yscale("log")
        axes[0].set_ylabel(ylabel)
        axes[0].legend()
        figure.tight_layout()
        figure.savefig(results / filename, dpi=110)
        plt.close(figure)

    from hf_lrtuner.plotting import plot_lr_trajectory

    run = Run("matrix", "lrtuner", best_lr * 10, args.seeds[0])
    metrics = load_metrics(args, run)
    if metrics is not None:
        with open(Path(args.output_dir) / run.name / "lr_loss.csv") as f:
            trajectory = list(csv.DictReader(f))
        schedule = metrics["schedule"]
        figure = plot_lr_trajectory(
            [float(r["learning_rate"]) for r in trajectory], records=schedule["records"],
            warmup_steps=schedule["warmup_steps"], decay_start=schedule["decay_start"],
            losses=[float(r["loss"]) for r in trajectory],
            title=f"LRTuner on SQuAD (MiniLM), initial LR {run.lr:g} = 10x the baseline's", log_scale=True,
        )
        figure.savefig(results / "lrtuner_trajectory.png", dpi=110)
        plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    tuner = [r for r in rows if r["schedule"] == "lrtuner" and math.isclose(r["lr"], best_lr)]
    budgets = sorted({r["budget"] for r in tuner})
    stats = [(statistics.mean(r["total_updates"] for r in tuner if r["budget"] == b),
              mean_std([r["f1"] for r in tuner if r["budget"] == b])) for b in budgets]
    if stats:
        axis.errorbar([t for t, _ in stats], [m for _, (m, _) in stats], yerr=[s for _, (_, s) in stats],
                      marker="o", capsize=3, label="lrtuner (budget 0.5 … 1.0)")
    baseline = [r for r in rows if r["schedule"] == "linear" and math.isclose(r["lr"], best_lr) and r["budget"] == 1.0]
    if baseline:
        f1, sd = mean_std([r["f1"] for r in baseline])
        axis.axhline(f1, color="gray", linestyle="--", label=f"linear, full budget (F1 {f1:.1f} ± {sd:.1f})")
    axis.set_xlabel("total updates (trial updates included)")
    axis.set_ylabel("F1 (held-out articles)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(results / "f1_vs_compute.png", dpi=110)
    plt.close(figure)


def main(argv=None):
    args, run_squad_args = parse_args(argv)
    paths = prepare_data(args)
    if "sweep" in args.stages and args.best_lr is None:
        execute([Run("sweep", "linear", lr, s) for lr in args.sweep_lrs for s in args.sweep_seeds], args, paths,
                run_squad_args)
        if args.dry_run:  # the next stages need the sweep's results
            return
    best_lr = args.best_lr if args.best_lr is not None else best_sweep_lr(args)
    print(f"Baseline LR{'' if args.best_lr is not None else ' from the sweep'}: {best_lr:g}", flush=True)
    if "matrix" in args.stages:
        execute(matrix_runs(args, best_lr), args, paths, run_squad_args)
    if "budgets" in args.stages:
        full = load_metrics(args, Run("matrix", "linear", best_lr, args.seeds[0]))
        if full is None and args.dry_run:
            print("budgets: their max_steps come from the matrix stage's linear run, which has not run yet.")
        elif full is None:
            raise RuntimeError("The budgets stage needs the full-budget linear run of the matrix stage.")
        else:
            execute(budget_runs(args, best_lr), args, paths, run_squad_args,
                    max_steps_for=lambda run: max(1, round(run.budget * full["updates"])))
    if "report" in args.stages and not args.dry_run:
        report(args, best_lr)


if __name__ == "__main__":
    main()
