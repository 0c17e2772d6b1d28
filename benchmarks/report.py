"""Summarise a tuner-suite CSV (from `benchmarks/suite.py`) into a markdown report and one plot per task.

    python -m benchmarks.report   # docs/results/suite.csv -> docs/results/suite.md and docs/results.md's tables

Everything is computed from the CSV alone:

- the linear dev-grid curve per task (mean, sd, n per LR; the best level is the tuned LR eta*);
- per task, method and guess: mean and sd of the test metric, and the regret paired by seed against linear at x1,
  R = sign * (M(linear@x1) - M(method@g)), signed so that positive regret = worse than the tuned baseline;
- the one-sided 95% upper bound of the mean regret at x1 (t distribution over seeds);
- "no harm" at x1: upper bound < delta;
- "no sweep": mean regret <= delta at x0.3 and x3, and <= max(delta, 0.25 * linear's regret at the same guess) at
  x0.1 and x10;
- total compute = updates + trial_updates + probe_passes / 3, as a ratio to linear's;
- at equal compute: each method against linear's best of k = ceil(compute) adjacent guesses (`linear_best_of`), and
  the methods on the Pareto front of worst regret against compute;
- the release targets (`targets`) over the tasks that decide (test rows on a CPU);
- ``--results_md``: the same tables written into the marked sections of ``docs/results.md``.
LR-free methods (empty guess) are judged like a guess of x1.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics as st
import sys
from collections import defaultdict

from benchmarks.runner import best_lr

# One-sided 95% quantiles of Student's t, by degrees of freedom (scipy is not a dependency).
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812,
        11: 1.796, 12: 1.782, 13: 1.771, 14: 1.761, 15: 1.753, 16: 1.746, 17: 1.740, 18: 1.734, 19: 1.729, 20: 1.725,
        21: 1.721, 22: 1.717, 23: 1.714, 24: 1.711, 25: 1.708, 26: 1.706, 27: 1.703, 28: 1.701, 29: 1.699, 30: 1.697,
        40: 1.684, 60: 1.671, 120: 1.658}


def t95(df: int) -> float:
    if df <= 0:
        return math.inf
    if df in _T95:
        return _T95[df]
    larger = [k for k in _T95 if k > df]
    return _T95[min(larger)] if larger else 1.645


def mean_sd(values):
    vals = list(values)
    if not vals:
        return math.nan, math.nan
    if any(not math.isfinite(v) for v in vals):
        return (math.inf if any(v == math.inf for v in vals) else math.nan), math.nan
    return st.mean(vals), (st.stdev(vals) if len(vals) > 1 else math.nan)


def upper_bound(values):
    m, sd = mean_sd(values)
    n = len(values)
    if n < 2 or not math.isfinite(m):
        return math.inf if n < 2 or m != -math.inf else m
    return m + t95(n - 1) * sd / math.sqrt(n)


def f(x, digits=4):
    """Significant-digit formatting; '–' for missing values."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def guess_label(g: str) -> str:
    if g == "":
        return "(LR-free)"
    v = float(g)
    if v < 1 and abs(1 / v - round(1 / v)) < 1e-3 and round(1 / v) not in (10,):
        return f"x1/{round(1 / v)}"
    return f"x{v:g}"


def analyse(rows):
    """Nested summary per (task, updates)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], int(r["updates"]))].append(r)
    out = []
    for (task, updates), rs in sorted(groups.items()):
        info = rs[0]
        higher = info["higher_is_better"] in ("1", "True", "true")
        sign = 1.0 if higher else -1.0
        delta = float(info["delta"])
        dev = defaultdict(list)
        test = defaultdict(dict)  # (method, guess) -> seed -> row
        for r in rs:
            if r["split"] == "dev" and r["method"] == "linear":
                dev[float(r["lr"])].append(float(r["metric"]))
            elif r["split"] == "test":
                test[(r["method"], r["guess"])][r["seed"]] = r
        dev_stats = {lr: mean_sd(v) + (len(v),) for lr, v in sorted(dev.items())}
        eta = best_lr(dev, higher) if dev else None  # the runner's choice of the tuned LR
        interior = eta is not None and min(dev_stats) < eta < max(dev_stats)
        base = test.get(("linear", "1"), {})
        lin_regret = {}
        cells = []
        for (method, guess), seeds in test.items():
            metrics = [float(r["metric"]) for r in seeds.values()]
            m, sd = mean_sd(metrics)
            paired = [sign * (float(base[s]["metric"]) - float(r["metric"])) for s, r in seeds.items() if s in base]
            rm, rsd = mean_sd(paired) if paired else (math.nan, math.nan)
            compute = mean_sd([int(r["updates"]) + int(r["trial_updates"]) + int(r["probe_passes"]) / 3
                               for r in seeds.values()])[0]
            lr = st.mean(float(r["lr"]) for r in seeds.values()) if guess != "" else None
            cell = dict(method=method, guess=guess, lr=lr, n=len(metrics), mean=m, sd=sd, regret=rm, regret_sd=rsd,
                        n_paired=len(paired), ub=upper_bound(paired) if paired else math.nan,
                        compute=compute / updates, wall=st.mean(float(r["wall_s"]) for r in seeds.values()),
                        trial=st.mean(int(r["trial_updates"]) for r in seeds.values()))
            cells.append(cell)
            if method == "linear":
                lin_regret[guess] = rm
        cells.sort(key=lambda c: (c["method"] != "linear", c["method"], float(c["guess"]) if c["guess"] else 1.0))
        by_method = defaultdict(dict)  # method -> guess -> cell
        for c in cells:
            by_method[c["method"]][c["guess"]] = c
        devices = sorted({r.get("device") or "cpu" for r in rs if r["split"] == "test"})
        cpu = devices == ["cpu"]
        out.append(dict(task=task, tier=info["tier"], metric=info["metric_name"], higher=higher, delta=delta, cpu=cpu,
                        devices=devices, runs=len(rs), wall_s=sum(float(r["wall_s"]) for r in rs),
                        updates=updates, dev=dev_stats, eta=eta, interior=interior, cells=cells,
                        by_method=dict(by_method), lin_regret=lin_regret))
    return out


def verdicts(t):
    """Per method: no-harm and no-sweep checks."""
    res = {}
    delta = t["delta"]
    for method, cells in t["by_method"].items():
        at1 = cells.get("1") or cells.get("")
        v = {"no_harm": None, "ub": math.nan, "sweep": {}, "compute": math.nan}
        if at1 is not None and at1["n_paired"]:
            v["ub"] = at1["ub"]
            v["no_harm"] = at1["ub"] < delta
            v["compute"] = at1["compute"]
        for g in ("0.3", "3"):
            if g in cells and cells[g]["n_paired"]:
                v["sweep"][g] = cells[g]["regret"] <= delta
        for g in ("0.1", "10"):
            if g in cells and cells[g]["n_paired"]:
                lin = t["lin_regret"].get(g, math.nan)
                allowed = max(delta, 0.25 * lin) if math.isfinite(lin) else delta
                v["sweep"][g] = cells[g]["regret"] <= allowed
        if "" in cells:  # LR-free: one setting, judged at every guess like x1
            v["sweep"] = {"": cells[""]["regret"] <= delta} if cells[""]["n_paired"] else {}
        res[method] = v
    return res


GUESS_GRID = ("0.1", "0.3", "1", "3", "10")
# The methods of the peer comparison (issue 10's names), in the report's order.
RANKED = ("linear", "knee", "lrtuner", "prodigy", "schedulefree", "dadaptation", "lr_range_test", "greedy")


def method_color(method):
    """One color per compared method in every plot."""
    import matplotlib.pyplot as plt

    return plt.get_cmap("tab10")(RANKED.index(method) if method in RANKED else 9)


def regret_over_guesses(t):
    """Per method: mean and worst mean regret over the guesses x0.1..x10 (in units of delta), and mean compute."""
    res = {}
    for method, cells in t["by_method"].items():
        found = [cells[g] for g in GUESS_GRID if g in cells and cells[g]["n_paired"]] or (
            [cells[""]] if "" in cells and cells[""]["n_paired"] else [])
        if found:
            regrets = [c["regret"] / t["delta"] for c in found]
            res[method] = (st.mean(regrets), max(regrets), st.mean(c["compute"] for c in found), len(found))
    return res


def ranking(tasks):
    """Per task: the method with the lowest mean and the lowest worst regret over the guesses; over the tasks on which
    every method has rows: each method's mean rank on both, how often it is first, and its mean compute."""
    per_task = []
    for t in tasks:
        table = {m: v for m, v in regret_over_guesses(t).items() if m in RANKED}
        if table:
            per_task.append(dict(task=t["task"], table=table, best_mean=min(table, key=lambda m: table[m][0]),
                                 best_worst=min(table, key=lambda m: table[m][1]), complete=len(table) == len(RANKED)))
    complete = [row for row in per_task if row["complete"]]
    overall = {}
    for method in RANKED if complete else ():
        ranks = {"mean": [], "worst": []}
        for row in complete:
            for key, index in (("mean", 0), ("worst", 1)):
                ranks[key].append(1 + sum(v[index] < row["table"][method][index] for v in row["table"].values()))
        overall[method] = dict(mean_rank=st.mean(ranks["mean"]), worst_rank=st.mean(ranks["worst"]),
                               first_mean=sum(r == 1 for r in ranks["mean"]),
                               first_worst=sum(r == 1 for r in ranks["worst"]),
                               compute=st.mean(row["table"][method][2] for row in complete))
    return per_task, [row["task"] for row in complete], overall


def linear_best_of(t, k: int) -> dict:
    """Linear given k runs' compute: at each guess g of `GUESS_GRID`, the best mean test regret among k adjacent grid
    guesses that include g (a sweep of k runs around the guess, picked on the test metric: an upper bound on what
    such a sweep gets), averaged over the windows that include g (the user does not know which side to sweep).
    Returns guess -> regret / delta; k = 1 is linear itself."""
    cells = t["by_method"].get("linear", {})
    grid = [g for g in GUESS_GRID if g in cells and cells[g]["n_paired"]]
    regret = {g: cells[g]["regret"] / t["delta"] for g in grid}
    k = max(1, min(k, len(grid)))
    out = {}
    for i, g in enumerate(grid):
        windows = [grid[j:j + k] for j in range(max(0, i - k + 1), min(i, len(grid) - k) + 1)]
        out[g] = st.mean(min(regret[x] for x in window) for window in windows)
    return out


def equal_compute(t) -> dict:
    """Per method of `RANKED`: its mean compute over the guesses c, k = ceil(c), and the mean and worst regret over
    the guesses (units of delta) of the method and of `linear_best_of(t, k)`."""
    res = {}
    for method, (mean, worst, compute, n) in regret_over_guesses(t).items():
        if method not in RANKED:
            continue
        k = max(1, math.ceil(compute - 1e-9))
        sweep = list(linear_best_of(t, k).values())
        if sweep:
            res[method] = dict(compute=compute, k=k, mean=mean, worst=worst, linear_mean=st.mean(sweep),
                               linear_worst=max(sweep))
    return res


def pareto(table: dict) -> list:
    """Methods of a `regret_over_guesses` table that no other method beats on both worst regret and compute."""
    front = []
    for m, (_, worst, compute, _) in table.items():
        dominated = any(w <= worst and c <= compute and (w < worst or c < compute)
                        for other, (_, w, c, _) in table.items() if other != m)
        if not dominated:
            front.append(m)
    return sorted(front, key=lambda m: table[m][2])


PEERS = tuple(m for m in RANKED if m != "lrtuner")


def deciding(tasks):
    """The tasks that decide: every test row on a CPU (rows without a ``device`` column ran on one) and linear at
    every guess of `GUESS_GRID`."""
    return [t for t in tasks if t["cpu"] and all(g in t["by_method"].get("linear", {}) for g in GUESS_GRID)]


def targets(tasks, method="lrtuner", demo_rows=None):
    """The release targets (0.4: issue 17) for `method` over the `deciding` tasks, each ``(target, met, measured)``;
    ``met`` is None where nothing was measured. `demo_rows`: the rows of the CPU demo with this release's rule
    (``docs/results/demo_cpu.csv``, as ``scripts/run_squad.py``'s metrics give them); None: not measured."""
    chosen = [t for t in deciding(tasks) if method in t["by_method"]]
    lines = []
    harm = {t["task"]: verdicts(t)[method]["ub"] / t["delta"] for t in chosen}
    failing = [f"{k} {f(v, 3)}" for k, v in harm.items() if not v < 1]
    lines.append(("No harm: UB95 of the paired regret at x1 below delta on every task", bool(harm) and not failing,
                  f"{len(harm) - len(failing)} of {len(harm)} tasks" + (f"; UB95/delta {', '.join(failing)}"
                                                                        if failing else "")))
    firsts = {"worst": [], "mean": []}
    for t in chosen:
        table = {m: v for m, v in regret_over_guesses(t).items() if m == method or m in PEERS}
        if method in table and all(m in table for m in PEERS):
            firsts["mean"].append(all(table[method][0] <= v[0] for v in table.values()))
            firsts["worst"].append(all(table[method][1] <= v[1] for v in table.values()))
    for key, name in (("worst", "worst-case regret"), ("mean", "mean regret")):
        won, n = sum(firsts[key]), len(firsts[key])
        lines.append((f"First against the peers: {name} over x0.1-x10 the lowest on >= 70% of the tasks",
                      (won >= 0.7 * n) if n else None, f"{won} of {n} tasks with every peer"))
    near = [t["by_method"][method][g]["regret"] <= t["delta"] for t in chosen for g in ("0.3", "3")
            if g in t["by_method"][method]]
    lines.append(("Near guesses: regret <= delta at x0.3 and x3 in >= half of the cells",
                  (sum(near) >= 0.5 * len(near)) if near else None, f"{sum(near)} of {len(near)} cells"))
    at1 = {t["task"]: t["by_method"][method]["1"]["compute"] for t in chosen if "1" in t["by_method"][method]}
    over = {t["task"]: regret_over_guesses(t)[method][2] for t in chosen}
    lines.append(("Compute: <= 1.10x at x1 on every task, <= 1.30x averaged over the five guesses",
                  (max(at1.values()) <= 1.10 and max(over.values()) <= 1.30) if at1 else None,
                  f"x1: {f(min(at1.values()), 3)}-{f(max(at1.values()), 3)}; over the guesses: "
                  f"{f(min(over.values()), 3)}-{f(max(over.values()), 3)}" if at1 else "no rows"))
    demo = defaultdict(dict)
    for r in demo_rows or []:
        demo[r["schedule"]][r["seed"]] = float(r["f1"])
    seeds = [s for s in ("0", "1", "2") if s in demo.get("linear", {}) and s in demo.get(method, {})]
    gap = st.mean(demo[method][s] - demo["linear"][s] for s in seeds) if len(seeds) == 3 else None
    lines.append(("The demo: within 1 F1 of linear or better, mean of seeds 0-2 on the CPU",
                  None if gap is None else gap >= -1.0,
                  f"{'+' if gap >= 0 else ''}{gap:.2f} F1" if gap is not None else
                  f"not measured with this rule (seeds with both schedules: {', '.join(seeds) or 'none'})"))
    return lines


def regret_compute_plot(tasks, path=None):
    """One panel per task: mean regret over the guesses (units of delta, symlog, a bar up to the worst) against mean
    total compute. Saved to `path`, or left open for display when `path` is None; returns the figure."""
    import matplotlib.pyplot as plt

    chosen = [t for t in tasks if regret_over_guesses(t)]
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.0 * len(chosen), 3.2), squeeze=False)
    for ax, t in zip(axes[0], chosen):
        for method, (mean, worst, compute, _) in regret_over_guesses(t).items():
            if method in RANKED:
                ax.errorbar([compute], [mean], yerr=[[0], [worst - mean]], marker="o", capsize=3,
                            color=method_color(method), label=method)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(t["task"], fontsize=9)
        ax.set_xlabel("total compute / linear's")
    axes[0][0].set_ylabel("regret / delta (mean, bar to worst)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend([handles[m] for m in RANKED if m in handles], [m for m in RANKED if m in handles], fontsize=8,
               loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot(t, path):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 3.8))
    if t["dev"]:
        lrs = sorted(t["dev"])
        ax1.errorbar(lrs, [t["dev"][lr][0] for lr in lrs], yerr=[t["dev"][lr][1] if math.isfinite(t["dev"][lr][1])
                     else 0 for lr in lrs], marker="o", capsize=3, color="k")
        if t["eta"]:
            ax1.axvline(t["eta"], color="gray", ls=":")
        ax1.set_xscale("log")
        ax1.set_xlabel("peak LR (linear warmup-decay)")
        ax1.set_ylabel(f"dev {t['metric']}")
        ax1.set_title(f"{t['task']}: dev grid (T={t['updates']})")
    present = {c["method"] for c in t["cells"]}  # the comparison's methods (ablation variants stay in the tables)
    for method in [m for m in RANKED if m in present]:
        color = method_color(method)
        cs = [c for c in t["cells"] if c["method"] == method and c["guess"] != "" and math.isfinite(c["mean"])]
        if cs:
            ax2.errorbar([float(c["guess"]) for c in cs], [c["mean"] for c in cs],
                         yerr=[c["sd"] if math.isfinite(c["sd"]) else 0 for c in cs], marker="o", capsize=3,
                         label=method, color=color)
        free = [c for c in t["cells"] if c["method"] == method and c["guess"] == "" and math.isfinite(c["mean"])]
        for c in free:
            ax2.axhline(c["mean"], ls="--", label=f"{method} (LR-free)", color=color)
    ax2.set_xscale("log")
    ax2.set_xlabel("initial LR / tuned LR (guess)")
    ax2.set_ylabel(f"test {t['metric']}")
    ax2.set_title(f"{t['task']}: test metric vs guess")
    ax2.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overview_plot(tasks, names, path, methods=("linear", "lrtuner")):
    """One panel per task: test metric against the guess for `methods` (the README's figure)."""
    import matplotlib.pyplot as plt

    chosen = [t for name in names for t in tasks if t["task"] == name]
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 3.0), squeeze=False)
    for ax, t in zip(axes[0], chosen):
        for method in methods:
            cells = sorted((c for c in t["cells"] if c["method"] == method and c["guess"] and math.isfinite(c["mean"])),
                           key=lambda c: float(c["guess"]))
            ax.errorbar([float(c["guess"]) for c in cells], [c["mean"] for c in cells],
                        yerr=[c["sd"] if math.isfinite(c["sd"]) else 0 for c in cells], marker="o", capsize=3,
                        label=method, color=method_color(method))
        ax.set_xscale("log")
        ax.set_title(f"{t['task']} (T={t['updates']})", fontsize=9)
        ax.set_xlabel("initial LR / tuned LR")
        ax.set_ylabel(f"test {t['metric']}")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def targets_lines(tasks, demo_rows=None) -> list:
    rows = targets(tasks, demo_rows=demo_rows)
    names = ", ".join(t["task"] for t in deciding(tasks))
    lines = [f"LRTuner's release targets over the deciding tasks ({names}: test rows on a CPU, linear at every "
             "guess):", "", "| target | met | measured |", "|---|---|---|"]
    for target, met, measured in rows:
        lines.append(f"| {target} | {'–' if met is None else ('**met**' if met else '**missed**')} | {measured} |")
    return lines + [""]


def equal_compute_lines(tasks) -> list:
    lines = ["Each method against linear given the same compute: k = ceil(the method's mean compute) linear runs "
             "at k adjacent guesses around each guess, the best one picked on the test metric (`linear_best_of`: "
             "an upper bound on such a sweep), averaged over the windows that hold the guess. Regret in units of "
             "delta over x0.1-x10; Pareto = not beaten on both worst regret and compute by another method.", "",
             "| task | method | compute | k | mean regret | linear best of k | worst regret | linear best of k | "
             "Pareto |", "|---|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        table = {m: v for m, v in regret_over_guesses(t).items() if m in RANKED}
        front = pareto(table)
        for method, v in sorted(equal_compute(t).items(), key=lambda kv: RANKED.index(kv[0])):
            lines.append(f"| {t['task']} | {method} | {f(v['compute'], 3)} | {v['k']} | {f(v['mean'], 3)} | "
                         f"{f(v['linear_mean'], 3)} | {f(v['worst'], 3)} | {f(v['linear_worst'], 3)} | "
                         f"{'yes' if method in front else ''} |")
    return lines + [""]


def ranking_lines(tasks) -> list:
    per_task, complete, overall = ranking(tasks)
    lines = ["Per task, the method with the lowest mean and the lowest worst regret over the guesses (LR-free "
             "methods: their one setting); LRTuner's gap to that method in units of delta. A task where a method of "
             "the comparison has no rows is marked incomplete.", "",
             "| task | lowest mean regret | its mean compute | LRTuner behind by | lowest worst regret | its mean "
             "compute | LRTuner behind by | complete |", "|---|---|---|---|---|---|---|---|"]
    for row in per_task:
        table, tuner = row["table"], row["table"].get("lrtuner")
        gap = [f(tuner[i] - table[row[key]][i], 3) if tuner else "–" for i, key in ((0, "best_mean"), (1, "best_worst"))]
        lines.append(f"| {row['task']} | {row['best_mean']} ({f(table[row['best_mean']][0], 3)}) | "
                     f"{f(table[row['best_mean']][2], 3)} | {gap[0]} | {row['best_worst']} "
                     f"({f(table[row['best_worst']][1], 3)}) | {f(table[row['best_worst']][2], 3)} | {gap[1]} | "
                     f"{'yes' if row['complete'] else 'no'} |")
    lines.append("")
    if overall:
        lines += [f"Over the {len(complete)} complete task(s) ({', '.join(complete)}): mean rank (1 = best) of each "
                  "method by mean and by worst regret over the guesses, how often it is first, mean total compute.",
                  "", "| method | mean rank (mean regret) | first | mean rank (worst regret) | first | mean compute |",
                  "|---|---|---|---|---|---|"]
        for method, v in sorted(overall.items(), key=lambda kv: (kv[1]["mean_rank"], kv[1]["worst_rank"])):
            lines.append(f"| {method} | {f(v['mean_rank'], 3)} | {v['first_mean']} | {f(v['worst_rank'], 3)} | "
                         f"{v['first_worst']} | {f(v['compute'], 3)} |")
        lines.append("")
    return lines


def tasks_lines(tasks) -> list:
    lines = ["| task | tier | T | metric | delta | tuned LR (dev) | interior | test rows ran on | runs | their wall "
             "time, summed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        lines.append(f"| `{t['task']}` | {t['tier']} | {t['updates']} | {t['metric']} | {f(t['delta'])} | "
                     f"{f(t['eta'], 3) if t['eta'] else '–'} | {'yes' if t['interior'] else 'NO'} | "
                     f"{', '.join(t['devices']) or '–'} | {t['runs']} | {t['wall_s'] / 60:.0f} min |")
    return lines + [""]


def metrics_lines(tasks, methods=("linear", "lrtuner")) -> list:
    """Mean test metric per guess, one column per guess, `methods` joined by arrows."""
    lines = [f"Mean test metric over the seeds, {' → '.join(methods)} (accuracy in %, F1, or the quadratic's loss, "
             "lower is better):", "", "| task | " + " | ".join(guess_label(g) for g in GUESS_GRID) + " |",
             "|---|" + "---|" * len(GUESS_GRID)]
    for t in tasks:
        cells = []
        for g in GUESS_GRID:
            values = [t["by_method"].get(m, {}).get(g) for m in methods]
            cells.append(" → ".join(f(c["mean"], 3) if c else "–" for c in values) if any(values) else "–")
        lines.append(f"| `{t['task']}` | " + " | ".join(cells) + " |")
    return lines + [""]


def ablation_lines(tasks, prefix="lrtuner") -> list:
    """LRTuner's variants (method strings starting with `prefix`) over the tasks that have them: UB95 of the regret
    at x1 and the mean regret over the guesses, both in units of delta, and the compute at x1."""
    variants = sorted({m for t in tasks for m in t["by_method"] if m.startswith(prefix)})
    chosen = [t for t in tasks if sum(m in t["by_method"] for m in variants) > 1]
    if not chosen:
        return ["No task has more than one LRTuner variant.", ""]
    lines = ["UB95 of the paired regret at x1 / mean regret over x0.1-x10, both in units of delta; compute at x1 "
             "(range over the tasks):", "",
             "| variant | " + " | ".join(f"`{t['task']}`" for t in chosen) + " | compute at x1 |",
             "|---|" + "---|" * (len(chosen) + 1)]
    for m in variants:
        cells, computes = [], []
        for t in chosen:
            v, table = verdicts(t).get(m), regret_over_guesses(t).get(m)
            if v is None or table is None:
                cells.append("–")
                continue
            cells.append(f"{f(v['ub'] / t['delta'], 3)} / {f(table[0], 3)}")
            if math.isfinite(v["compute"]):
                computes.append(v["compute"])
        span = f"{f(min(computes), 3)}-{f(max(computes), 3)}" if computes else "–"
        lines.append(f"| `{m}` | " + " | ".join(cells) + f" | {span} |")
    return lines + [""]


def fill_sections(path: str, sections: dict) -> None:
    """Replace the text between ``<!-- suite_report:NAME -->`` and ``<!-- /suite_report:NAME -->`` in the file at
    `path` by ``sections[NAME]`` (lines); a marker pair missing from the file is an error."""
    with open(path) as fh:
        text = fh.read()
    for name, lines in sections.items():
        start, end = f"<!-- suite_report:{name} -->", f"<!-- /suite_report:{name} -->"
        if start not in text or end not in text:
            raise ValueError(f"{path} has no {start} ... {end} section")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + "\n" + "\n".join(lines) + end + tail
    with open(path, "w") as fh:
        fh.write(text)


def render(tasks, csv_path, out_path, make_plots=True, demo_rows=None):
    lines = ["# Tuner suite report", "", f"Source: `{csv_path}` (computed from the CSV only by "
             "`benchmarks/report.py`).", "",
             "Regret R = sign x (M(linear@x1) - M(method@g)), paired by seed; positive = worse than the tuned "
             "baseline. UB95 = one-sided 95% t upper bound of the mean regret. No harm: UB95(x1) < delta. No sweep: "
             "mean regret <= delta at x0.3/x3, <= max(delta, 0.25 x linear's regret at that guess) at x0.1/x10. "
             "Compute = (updates + trial updates + probe passes / 3) / linear's updates.", ""]
    lines += ["## Targets", ""] + targets_lines(tasks, demo_rows)
    # Overview
    lines += ["## Overview", "",
              "| task | tier | T | metric | delta | eta* (dev) | interior | method | UB95 regret x1 | no harm | "
              "no sweep (x0.1, x0.3, x3, x10) | compute |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        for method, v in sorted(verdicts(t).items(), key=lambda kv: (kv[0] != "linear", kv[0])):
            sweep = ", ".join(f"{guess_label(g)}:{'pass' if ok else 'FAIL'}" for g, ok in sorted(
                v["sweep"].items(), key=lambda kv: float(kv[0]) if kv[0] else 1.0)) or "–"
            harm = "–" if v["no_harm"] is None else ("pass" if v["no_harm"] else "FAIL")
            lines.append(f"| {t['task']} | {t['tier']} | {t['updates']} | {t['metric']} | {f(t['delta'])} | "
                         f"{f(t['eta']) if t['eta'] else '–'} | {'yes' if t['interior'] else 'NO'} | {method} | "
                         f"{f(v['ub'])} | {harm} | {sweep} | {f(v['compute'])} |")
    lines.append("")
    lines += ["## Regret over the guesses", "",
              "Mean and worst regret over the guesses x0.1, x0.3, x1, x3, x10, in units of the task's delta (1 = the "
              "no-harm margin); compute averaged over the same guesses.", "",
              "| task | method | mean regret / delta | worst regret / delta | mean compute | guesses |",
              "|---|---|---|---|---|---|"]
    for t in tasks:
        for method, (mean, worst, compute, n) in sorted(regret_over_guesses(t).items(),
                                                        key=lambda kv: (kv[0] != "linear", kv[0])):
            lines.append(f"| {t['task']} | {method} | {f(mean, 3)} | {f(worst, 3)} | {f(compute, 3)} | {n} |")
    lines.append("")
    lines += ["## At equal compute", ""] + equal_compute_lines(tasks)
    lines += ["## Ranking", ""] + ranking_lines(tasks)
    if make_plots:
        png = os.path.splitext(out_path)[0] + "_regret_compute.png"
        regret_compute_plot(tasks, png)
        lines += [f"![regret against compute]({os.path.basename(png)})", ""]
    for t in tasks:
        name = t["task"]
        lines += [f"## {name} (tier {t['tier']}, T={t['updates']}, {t['metric']}, "
                  f"{'higher' if t['higher'] else 'lower'} is better, delta={f(t['delta'])})", ""]
        if t["dev"]:
            lines += ["Linear dev grid (split dev):", "", "| peak LR | mean | sd | n |", "|---|---|---|---|"]
            for lr, (m, sd, n) in t["dev"].items():
                mark = " **(best)**" if lr == t["eta"] else ""
                lines.append(f"| {lr:.3g}{mark} | {f(m, 5)} | {f(sd)} | {n} |")
            lines += ["", f"Tuned LR eta* = {f(t['eta'])} ({'interior' if t['interior'] else 'AT THE EDGE'}).", ""]
        if t["cells"]:
            lines += ["Test (split test):", "",
                      "| method | guess | lr | n | mean | sd | regret | regret sd | UB95 | trial upd. | compute "
                      "| wall s |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for c in t["cells"]:
                lines.append(f"| {c['method']} | {guess_label(c['guess'])} | {f(c['lr']) if c['lr'] else '–'} | "
                             f"{c['n']} | {f(c['mean'], 5)} | {f(c['sd'])} | {f(c['regret'])} | {f(c['regret_sd'])} | "
                             f"{f(c['ub'])} | {f(c['trial'], 5)} | {f(c['compute'])} | {f(c['wall'])} |")
            lines.append("")
        if make_plots and (t["dev"] or t["cells"]):
            png = os.path.splitext(out_path)[0] + f"_{name}_T{t['updates']}.png"
            plot(t, png)
            lines += [f"![{name}]({os.path.basename(png)})", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__.split("\n")[0])
    p.add_argument("--csv", default="docs/results/suite.csv")
    p.add_argument("--out", default="docs/results/suite.md")
    p.add_argument("--results_md", default="docs/results.md",
                   help="page whose suite_report sections (targets, tasks, metrics, equal_compute, ranking, "
                        "ablation) are "
                        "rewritten; '' skips")
    p.add_argument("--demo_csv", default="docs/results/demo_cpu.csv",
                   help="the CPU demo's rows with this release's rule (schedule, seed, f1), for the targets; absent: "
                        "not measured")
    p.add_argument("--no_plots", action="store_true")
    p.add_argument("--overview_png", default=None, help="also draw linear and lrtuner against the guess for --overview_tasks")
    p.add_argument("--overview_tasks", nargs="+",
                   default=["freshhead_adam", "scratch_sgd", "nqm_adam", "minilm_cls_cpu"])
    args = p.parse_args(argv)
    if not args.no_plots or args.overview_png:
        import matplotlib

        matplotlib.use("Agg")  # files only (the notebook imports this module and keeps its inline backend)
    with open(args.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    tasks = analyse(rows)
    demo_rows = None
    if args.demo_csv and os.path.exists(args.demo_csv):
        with open(args.demo_csv, newline="") as fh:
            demo_rows = list(csv.DictReader(fh))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    text = render(tasks, args.csv, args.out, make_plots=not args.no_plots, demo_rows=demo_rows)
    with open(args.out, "w") as fh:
        fh.write(text)
    print(f"wrote {args.out} ({len(tasks)} task(s))")
    if args.results_md:
        fill_sections(args.results_md, {"targets": targets_lines(tasks, demo_rows), "tasks": tasks_lines(tasks),
                                        "metrics": metrics_lines(tasks), "equal_compute": equal_compute_lines(tasks),
                                        "ranking": ranking_lines(tasks), "ablation": ablation_lines(tasks)})
        print(f"rewrote the suite_report sections of {args.results_md}")
    if args.overview_png:
        overview_plot(tasks, args.overview_tasks, args.overview_png)
        print(f"wrote {args.overview_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
