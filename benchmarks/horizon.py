"""Crossover horizon h*(T) of a race between LR levels on the tier-B fresh-head task.

For each run length T, linear-warmup-decay runs at a x2 grid of peak LRs (several seeds, the same batches for every
level of a seed) record the online training loss of every update (the loss of the batch in that update's forward
pass, before the step) and the final dev metric. A race of horizon h, started at step 0 with every level following its
real schedule, would keep the level with the lowest mean online loss over updates (h/2, h] (mean over seeds).

h*(T) is the smallest h from which the race winner at every h' >= h (h' < T, on the horizon list) is "within noise"
of the best level: the best level itself, or an adjacent level (x2) whose final metric is within `tol` of the best
(0.5 accuracy points; 0.01 nats for the loss).

Usage (about a minute on one thread):

    python -m benchmarks.horizon
    python -m benchmarks.horizon --seeds 10 --csv docs/results/horizon.csv

Writes `docs/results/horizon.csv` (T, h, winner_lr, winner_metric, best_lr, best_metric, spearman), the per-run grid
`docs/results/horizon_grid.csv` (T, lr, seed, dev accuracy, dev loss) and prints h*(T).

Per-arm loss logs for replaying decision rules offline (`benchmarks/replay.py`), 7 minutes on one thread (beside
another suite run on a 2-core machine):

    nice -n 10 python -m benchmarks.horizon --arms docs/results/horizon_arms.json.gz

`--arms` runs linear warmup-decay on each synthetic task of `ARM_TASKS` at the multipliers `arm_multipliers()` of the
task's tuned LR (the suite CSV's linear dev grid): every guess x0.1, x0.3, x1, x3, x10 times 2^-4 .. 2^4, so a rule
that starts from any of these guesses and moves by factors of 2 finds each arm it can reach. Dev seeds (`ARM_SEEDS`,
>= 1000: disjoint from the test seeds 0-2), split "dev". Each arm is a complete run from step 0, so its first updates
are exactly what a race started at step 0 sees of that multiplier, and its final metric is what a run that switches to
that multiplier at a race started at step 0 ends with. It writes one gzipped JSON: per task its budget, warmup, tuned
LR, metric and delta, and per arm (multiplier, seed) the LR, the final dev metric and the online training loss of
every update (7 significant digits; a run stopped by a non-finite loss is shorter than the budget).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import statistics as st
import time

import torch

from hf_lrtuner.files import write_atomically
from benchmarks import default_warmup
from benchmarks.runner import tuned_lr
from benchmarks.tasks_synthetic import TASKS, run_freshhead

# x2 grids of peak LRs (8 levels) bracketing the best level of each T (checked on the dev split; see the output).
GRIDS = {
    150: tuple(1e-3 * 2**k for k in range(8)),
    500: tuple(4e-4 * 2**k for k in range(8)),
    2000: tuple(2e-4 * 2**k for k in range(8)),
}
HORIZONS = (5, 10, 15, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000, 1500)


# Per-arm logs (`--arms`): the guesses of the suite, each times 2^-4 .. 2^4, on these tasks and dev seeds.
ARM_TASKS = ("freshhead_adam", "freshhead_sgd", "scratch_sgd", "nqm_sgd", "nqm_adam")
ARM_GUESSES = (0.1, 0.3, 1.0, 3.0, 10.0)
ARM_SEEDS = (1000, 1001, 1002)


def arm_multipliers(guesses=ARM_GUESSES, reach=4):
    """Multipliers of the tuned LR to log: every guess times 2^-reach .. 2^reach, sorted (no two coincide)."""
    return sorted({float(f"{g * 2.0**k:.6g}") for g in guesses for k in range(-reach, reach + 1)})


def log_arms(path, tasks=ARM_TASKS, seeds=ARM_SEEDS, multipliers=None, suite_csv="docs/results/suite.csv", log=print):
    """Write the per-arm loss logs (see the module docstring) to `path` (a .json.gz), atomically.

    Args:
        path (`str`): the gzipped JSON to write.
        tasks (`Sequence[str]`, *optional*, defaults to `ARM_TASKS`): synthetic task names.
        seeds (`Sequence[int]`, *optional*, defaults to `ARM_SEEDS`): run seeds (the suite's test seeds are 0-2).
        multipliers (`Sequence[float]`, *optional*): multiples of each task's tuned LR; defaults to `arm_multipliers()`.
        suite_csv (`str`, *optional*): the suite CSV whose linear dev grid gives each task's tuned LR.
    """
    multipliers = arm_multipliers() if multipliers is None else sorted(multipliers)
    content = {"seeds": list(seeds), "multipliers": multipliers, "split": "dev", "schedule": "linear", "tasks": {}}
    for name in tasks:
        task = TASKS[name]
        eta = tuned_lr(task, task.updates, suite_csv)
        arms = []
        start = time.perf_counter()
        for multiplier in multipliers:
            for seed in seeds:
                out = task.run("linear", eta * multiplier, seed, "dev", task.updates, "cpu", record_losses=True)
                arms.append({"multiplier": multiplier, "seed": seed, "lr": eta * multiplier,
                             "metric": float(out["metric"]), "losses": [float(f"{x:.7g}") for x in out["losses"]]})
        log(f"{name}: {len(arms)} arms in {time.perf_counter() - start:.0f}s (tuned LR {eta:.4g})", flush=True)
        content["tasks"][name] = {"updates": task.updates, "warmup": default_warmup(task.updates), "tuned_lr": eta,
                                  "metric_name": task.metric_name, "higher_is_better": task.higher_is_better,
                                  "delta": task.delta, "arms": arms}

    def write(temporary):
        with gzip.open(temporary, "wt", encoding="utf-8") as f:
            json.dump(content, f, allow_nan=True)

    write_atomically(path, write)


def ranks(values):
    """Average ranks (1 = smallest)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = st.mean(ra), st.mean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return num / den if den else float("nan")


def race_table(levels, losses, metric, higher_is_better, tol, T, horizons=HORIZONS):
    """Rows (h, winner, winner_metric, best, best_metric, spearman, ok) for each horizon h < T.

    losses[lr] = list over seeds of the online losses; metric[lr] = mean final metric.
    """
    sign = 1.0 if higher_is_better else -1.0
    best = max(levels, key=lambda lr: sign * metric[lr])
    rows = []
    for h in horizons:
        if h >= T:
            continue
        lo = h // 2
        race = {}
        for lr in levels:
            per_seed = [st.mean(x[lo:h]) if len(x) >= h else float("inf") for x in losses[lr]]
            v = st.mean(per_seed)
            race[lr] = v if math.isfinite(v) else float("inf")
        winner = min(levels, key=lambda lr: race[lr])
        adjacent = abs(math.log2(winner / best)) <= 1 + 1e-9
        ok = winner == best or (adjacent and sign * (metric[best] - metric[winner]) <= tol)
        rho = spearman([-race[lr] if math.isfinite(race[lr]) else -1e30 for lr in levels],
                       [sign * metric[lr] for lr in levels])
        rows.append((h, winner, metric[winner], best, metric[best], rho, ok))
    return rows


def first_ok(rows):
    """Smallest h whose race winner is ok (the upward short-horizon bias is over)."""
    return next((h for h, *_, ok in rows if ok), None)


def crossover(rows):
    """Smallest h from which every row is ok (None if the last row is not)."""
    h_star = None
    for h, *_, ok in reversed(rows):
        if not ok:
            break
        h_star = h
    return h_star


def main(argv=None):
    p = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__.split("\n")[0])
    p.add_argument("--Ts", type=int, nargs="+", default=sorted(GRIDS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seeds_long", type=int, default=None, help="seeds for T=2000 (default: --seeds)")
    p.add_argument("--csv", default="docs/results/horizon.csv")
    p.add_argument("--grid_csv", default="docs/results/horizon_grid.csv")
    p.add_argument("--summary", default=None, help="also write the printed summary to this file")
    p.add_argument("--arms", default=None, metavar="PATH",
                   help="instead: write the per-arm loss logs of ARM_TASKS to this .json.gz (see the docstring)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.arms:
        log_arms(args.arms)
        return None

    all_rows, summary = [], []
    grid_rows = []
    for T in args.Ts:
        levels = GRIDS[T]
        n_seeds = args.seeds_long if (T >= 2000 and args.seeds_long) else args.seeds
        losses, acc, nll = {}, {}, {}
        t0 = time.perf_counter()
        for lr in levels:
            losses[lr], accs, nlls = [], [], []
            for seed in range(n_seeds):
                out = run_freshhead("linear", lr, seed, "dev", T, record_losses=True)
                losses[lr].append(out["losses"])
                accs.append(out["metric"])
                nlls.append(out["eval_loss"])
                grid_rows.append((T, lr, seed, out["metric"], out["eval_loss"]))
            acc[lr], nll[lr] = st.mean(accs), st.mean(nlls)
            sd = st.stdev(accs) if len(accs) > 1 else 0.0
            print(f"T={T} lr={lr:.3g} dev acc {acc[lr]:.2f} (sd {sd:.2f}) dev loss {nll[lr]:.4f}", flush=True)
        print(f"T={T}: {time.perf_counter() - t0:.1f}s for {len(levels)} levels x {n_seeds} seeds", flush=True)
        rows_acc = race_table(levels, losses, acc, True, 0.5, T)
        rows_nll = race_table(levels, losses, nll, False, 0.01, T)
        for h, w, wm, b, bm, rho, ok in rows_acc:
            all_rows.append((T, h, w, wm, b, bm, rho))
        best_acc = max(levels, key=acc.get)
        best_nll = min(levels, key=nll.get)
        interior = levels[0] < best_acc < levels[-1]
        hs_acc, hs_nll = crossover(rows_acc), crossover(rows_nll)
        trail = " ".join(f"{h}:{w:.2g}{'' if ok else '*'}" for h, w, _, _, _, _, ok in rows_acc)
        print(f"\nT={T}  h  winner  acc  | best {best_acc:.3g} ({acc[best_acc]:.2f})  spearman  ok")
        for (h, w, wm, b, bm, rho, ok), (_, wn, *_r, okn) in zip(rows_acc, rows_nll):
            print(f"   {h:5d}  {w:.3g}  {wm:.2f}  {rho:+.2f}  {'ok' if ok else '--'}"
                  f"  (loss: {wn:.3g} {'ok' if okn else '--'})")
        summary.append((T, n_seeds, best_acc, acc[best_acc], interior, hs_acc, best_nll, nll[best_nll], hs_nll,
                        first_ok(rows_acc), trail, [(h, rho) for h, _, _, _, _, rho, _ in rows_acc]))

    os.makedirs(os.path.dirname(args.csv) or ".", exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["T", "h", "winner_lr", "winner_metric", "best_lr", "best_metric", "spearman"])
        for T, h, wl, wm, bl, bm, rho in all_rows:
            w.writerow([T, h, f"{wl:.6g}", f"{wm:.3f}", f"{bl:.6g}", f"{bm:.3f}", f"{rho:.3f}"])
    with open(args.grid_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["T", "lr", "seed", "dev_accuracy", "dev_loss"])
        for T, lr, seed, a, l in grid_rows:
            w.writerow([T, f"{lr:.6g}", seed, f"{a:.3f}", f"{l:.5f}"])

    lines = [
        "Crossover horizon h*(T), tier-B fresh-head task (freshhead_adam), linear warmup 10% + linear decay.",
        "Race winner at h = level with lowest mean online training loss over updates (h/2, h], mean over seeds.",
        "ok = the race winner is the dev-best level or an adjacent (x2) level within 0.5 acc points "
        "(0.01 nats for loss).",
        "h* = smallest h from which every later race winner is ok; first_ok = smallest ok h.",
        "",
        f"{'T':>5} {'seeds':>5} {'best_lr':>8} {'acc':>6} {'interior':>8} {'first_ok':>8} {'frac':>6}"
        f" {'h*(acc)':>8} {'h*/T':>6} {'best_lr(loss)':>13} {'loss':>7} {'h*(loss)':>8} {'h*/T':>6}",
    ]
    fmt = lambda h, T: f"{h / T:.3f}" if h else "n/a"
    for T, n, bl, ba, inter, hs, bn, bnl, hsn, fo, trail, rhos in summary:
        lines.append(f"{T:>5} {n:>5} {bl:>8.3g} {ba:>6.2f} {str(inter):>8} {str(fo):>8} {fmt(fo, T):>6}"
                     f" {str(hs):>8} {fmt(hs, T):>6} {bn:>13.3g} {bnl:>7.4f} {str(hsn):>8} {fmt(hsn, T):>6}")
    lines.append("")
    lines.append("Race winner by horizon (h:level, * = not ok) and Spearman(race ranking, final ranking):")
    for T, *_, trail, rhos in summary:
        lines.append(f"  T={T}: {trail}")
        lines.append(f"  T={T} spearman: " + " ".join(f"{h}:{r:+.2f}" for h, r in rhos))
    text = "\n".join(lines)
    print("\n" + text)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(text + "\n")
    return summary


if __name__ == "__main__":
    main()
