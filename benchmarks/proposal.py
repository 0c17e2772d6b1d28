"""Can a run's own updates say how far its LR is from the best, without a race? One estimate, measured.

A proposal that costs no challenger updates, raced only when it disagrees with the guess, is what the compute target
needs (`wide-guesses.md`, designs 2 and 4). This measures the cheapest such estimate: the same-batch parabola along the
real update. For each update of a window right after warmup (at the peak LR), the linear baseline's run records the
batch's loss before the update (its training loss, free), the same batch's loss after it (one forward pass, a third
of an update) and the first-order change g.d (the gradient times the update the optimizer applied, momentum and Adam's
preconditioning included). Over the window, the parabola a*s + q*s^2 with a = sum(g.d) and q = sum(loss after - loss
before) - a is lowest at the step scale s* = -a / (2q): s* times the LR is the LR that would have lowered these
batches' losses most, and s* times the guess is that estimate as a multiple of the tuned LR. q <= 0 (no curvature
seen along the update) gives s* = inf.

The estimate could serve as a proposal only if it were (1) the same from every guess, so that it says where the best
LR is whatever the user guessed, and (2) at about the same ratio to the tuned LR on every task, so that one threshold
separates a right guess from a wrong one. The report gives both: s* from each guess (from x1 it is the estimate's
ratio to the tuned LR), the spread of the estimate over the guesses, and the range of s* over the tasks per guess.

Usage (75 linear runs of the synthetic tasks on the dev split and dev seeds; 27 s on one thread):

    python -m benchmarks.proposal --csv docs/results/proposal.csv --md docs/results/proposal.md

One CSV row per run (task, guess, seed, LR, window, a, q, s*, estimate, final dev metric); the table is computed from
the CSV (`--table-only` rewrites it without running anything).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import statistics as st
import sys
import time

import torch

from hf_lrtuner.files import write_atomically
from benchmarks import METHODS
from benchmarks.drivers import SchedulerDriver
from benchmarks.runner import DEV_SEED_OFFSET, get_task, tuned_lr

PROBE_METHOD = "parabola_probe"  # linear warmup-decay that also records the parabola; not a method of the suite
TASKS = ("nqm_sgd", "nqm_adam", "freshhead_adam", "freshhead_sgd", "scratch_sgd")
GUESSES = (0.1, 0.3, 1.0, 3.0, 10.0)
FIELDS = ("task", "guess", "seed", "lr", "window_start", "window_updates", "first_order", "curvature", "step_scale",
          "estimate", "metric")


def step_scale(first_order: float, curvature: float) -> float:
    """The scale s* of the update that minimises `first_order * s + curvature * s**2`; inf without curvature."""
    return -first_order / (2 * curvature) if curvature > 0 else math.inf


class ParabolaProbe(SchedulerDriver):
    """Linear warmup-decay, and over updates [warmup, warmup + window) the sums a = sum(g.d) and
    q = sum(loss after - loss before) - a of the same-batch parabola along each update (one extra forward pass each).

    Args:
        optimizer, updates, warmup: as for any driver of `train_loop`.
        loss_fn (`Callable`): the task's loss of a batch, evaluated again after the update.
        window (`float`): share of the budget the window lasts (at least 10 updates).
    """

    def __init__(self, optimizer, updates, warmup, loss_fn, window):
        from transformers import get_linear_schedule_with_warmup

        super().__init__(get_linear_schedule_with_warmup(optimizer, warmup, updates))
        self.loss_fn = loss_fn
        self.start, self.updates = warmup, max(10, round(window * updates))
        self.step, self.first_order, self.change = 0, 0.0, 0.0
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.before = None
        optimizer.register_step_pre_hook(self._keep_parameters)
        optimizer.register_step_post_hook(self._add_first_order)

    def _measuring(self) -> bool:
        return self.start <= self.step < self.start + self.updates

    def _keep_parameters(self, optimizer, args, kwargs):
        if self._measuring():
            self.before = [p.detach().clone() for p in self.params]

    def _add_first_order(self, optimizer, args, kwargs):  # the gradients are still there: zero_grad comes after
        if self._measuring():
            self.first_order += sum(float((p.grad.double() * (p.detach().double() - b.double())).sum())
                                    for p, b in zip(self.params, self.before) if p.grad is not None)
            self.before = None

    def after_update(self, batch, loss):
        if self._measuring():
            with torch.no_grad():
                self.change += float(self.loss_fn(batch)) - float(loss.detach())
        self.step += 1
        super().after_update(batch, loss)

    def records(self):
        curvature = self.change - self.first_order
        return [{"window_start": self.start, "window_updates": self.updates, "first_order": self.first_order,
                 "curvature": curvature, "step_scale": step_scale(self.first_order, curvature)}]


def _window_of(overrides) -> float:
    window = float(overrides.pop("window", 0.05))
    if overrides:
        raise ValueError(f"{PROBE_METHOD} takes only window=, got {overrides}")
    return window


# Importing this module makes the probe a method string of `train_loop`, which the tasks' `run` functions take.
METHODS[PROBE_METHOD] = lambda model, optimizer, train_step, updates, warmup, overrides, loss_fn=None, **data: \
    ParabolaProbe(optimizer, updates, warmup, loss_fn, _window_of(dict(overrides)))


def measure(tasks, guesses, seeds, window, suite_csv, log=print) -> list[dict]:
    """One row per (task, guess, seed): a linear run at the guess times the task's tuned LR (from `suite_csv`'s dev
    grid) on the dev split, with the probe's sums over `window` of the budget."""
    rows = []
    for name in tasks:
        task = get_task(name)
        eta = tuned_lr(task, task.updates, suite_csv)
        for guess in guesses:
            for seed in seeds:
                start = time.time()
                out = task.run(f"{PROBE_METHOD}:window={window}", eta * guess, seed, "dev", task.updates)
                probe = out["records"][0]
                rows.append({"task": name, "guess": guess, "seed": seed, "lr": eta * guess, **probe,
                             "estimate": probe["step_scale"] * guess, "metric": out["metric"]})
                log(f"{name} x{guess:g} seed {seed}: s* {probe['step_scale']:.3g}, estimate x{rows[-1]['estimate']:.3g}"
                    f" of the tuned LR ({time.time() - start:.1f} s)")
    return rows


def _short(value: float) -> str:
    return f"{value:.3g}"


def _geomean(values) -> float:
    if any(math.isinf(v) for v in values):
        return math.inf
    return math.exp(st.mean(math.log(v) for v in values)) if all(v > 0 for v in values) else math.nan


def table(rows: list[dict]) -> str:
    """Per task, the step scale s* the run sees from each guess (geometric mean over seeds) and the spread of the
    estimate s* x guess over the guesses (largest over smallest); then, per guess, the range of s* over the tasks: a
    threshold on s* tells a right guess from a wrong one only where the ranges do not overlap."""
    guesses = sorted({float(r["guess"]) for r in rows})
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    scale = {(name, g): _geomean([float(r["step_scale"]) for r in rows if r["task"] == name and float(r["guess"]) == g])
             for name in tasks for g in guesses}
    head = ["task", *(f"s* from x{g:g}" for g in guesses), "spread of the estimate over the guesses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in tasks:
        estimates = [scale[name, g] * g for g in guesses]
        spread = max(estimates) / min(estimates) if all(map(math.isfinite, estimates)) else math.inf
        lines.append("| " + " | ".join([name, *(_short(scale[name, g]) for g in guesses), _short(spread)]) + " |")
    ranges = [f"x{g:g}: {_short(min(scale[n, g] for n in tasks))}-{_short(max(scale[n, g] for n in tasks))}"
              for g in guesses]
    lines += ["", "Range of s* over the tasks, per guess: " + "; ".join(ranges) + "."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proposal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--guesses", nargs="+", type=float, default=list(GUESSES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEV_SEED_OFFSET + s for s in range(3)],
                        help="dev seeds (the test rows use 0-2)")
    parser.add_argument("--window", type=float, default=0.05, help="share of the budget measured after warmup")
    parser.add_argument("--suite-csv", default="docs/results/suite.csv", help="where the tuned LRs come from")
    parser.add_argument("--csv", default="outputs/proposal.csv")
    parser.add_argument("--md", help="also write the table here")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from --csv without running")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.table_only:
        with open(args.csv, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = measure(args.tasks, args.guesses, args.seeds, args.window, args.suite_csv)
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)

        def write_csv(path):
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, FIELDS)
                writer.writeheader()
                writer.writerows({key: row[key] for key in FIELDS} for row in rows)

        write_atomically(args.csv, write_csv)
    text = table(rows)
    print(text)
    if args.md:
        command = "python -m benchmarks.proposal " + shlex.join(sys.argv[1:] if argv is None else argv)
        page = (f"# A zero-race proposal: the same-batch parabola\n\n`{command}`\n\n"
                "The step scale s* that the same-batch parabola along the run's own updates gives (a window of "
                f"{args.window:.0%} of the budget after warmup; linear runs, dev split, dev seeds; geometric mean over "
                "seeds): s* x the LR is the greedy LR. A usable proposal would give the same estimate s* x guess from "
                "every guess (spread 1), and s* ranges that do not overlap between x1 and the far guesses. See the "
                f"docstring of `benchmarks/proposal.py`.\n\n{text}\n")

        def write_page(path):
            with open(path, "w") as f:
                f.write(page)

        write_atomically(args.md, write_page)

if __name__ == "__main__":
    main()
