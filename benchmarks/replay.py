"""Replay LR decision rules offline on the per-arm loss logs of `horizon.py --arms`: no training.

Each logged arm is a complete linear warmup-decay run from step 0 at one multiplier of the task's tuned LR, on the
same batches as every other arm of its seed. A race started at step 0 sees exactly these arms' first updates, and a
run that switches to the winner's branch at such a race ends exactly as the winner's arm does. So a rule whose races
all start at step 0 (the screen rules below) is replayed **exactly**: the multiplier it picks, the challenger updates it
pays, and the final metric of its run. 0.3's rule (`v03`) races again from where its previous race ended; those later
races are replayed on the arms' static runs over the same updates (an approximation: in a real run both arms branch
from the winner's state), and its final metric is that of the static run at its last multiplier. A divergence of the
run itself is replayed as a roll-back that halves the multiplier where the static arm diverged; the probation after a
roll-back and the comparison of a diverging challenger with the incumbent (`ChallengerWatch`) are not replayed.

For every rule, task, guess (x0.1, x0.3, x1, x3, x10 of the tuned LR) and dev seed it writes the chosen multiplier
(of the tuned LR), the compute (1 + challenger updates / T) and the regret against linear at x1 of the same seed, in
units of the task's delta, and against the arm best at the end (the best multiplier of the log, mean over seeds).
With `--suite-csv`, it also replays a guess of x1 on the CPU Trainer tiers, whose linear dev runs the suite keeps with
every update's training loss (`trainer_dev_log`).

    python -m benchmarks.replay docs/results/horizon_arms.json.gz --md docs/results/replay.md \\
        --csv docs/results/replay.csv --suite-csv docs/results/suite.csv
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import statistics as st
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from hf_lrtuner import LRTunerConfig
from hf_lrtuner.tuner import LossMonitor, paired_difference

from benchmarks import default_warmup
from benchmarks.runner import best_lr, dev_curve, get_task, read_rows, records_path

GUESSES = (0.1, 0.3, 1.0, 3.0, 10.0)
TRAINER_TASKS = ("minilm_cls_cpu", "squad_minilm_cpu")
COLLAPSE_FRACTION = LRTunerConfig().collapse_fraction


def load_log(path: str) -> dict:
    """The content of a `horizon.py --arms` file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def trainer_dev_log(suite_csv: str, tasks: Sequence[str] = TRAINER_TASKS) -> dict:
    """The Trainer tiers' linear dev grid as a log of arms (the format of `load_log`): the suite keeps every update's
    training loss of those runs in its records sidecar. The arms sit at the grid's multiples of the tuned LR (x1/8 ..
    x8 on the CPU tiers), so of the guesses only x1 can be replayed, with its first race's two challengers."""
    rows = [r for r in read_rows(suite_csv) if r["task"] in tasks and r["method"] == "linear" and r["split"] == "dev"]
    metrics = {(r["task"], r["lr"], r["seed"], r["updates"]): float(r["metric"]) for r in rows}
    log = {"tasks": {}}
    with open(records_path(suite_csv), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            key = record["key"]
            found = (key["task"], key["lr"], key["seed"], key["updates"])
            if found not in metrics or "losses" not in record:
                continue
            if key["task"] not in log["tasks"]:
                task, updates = get_task(key["task"]), int(key["updates"])
                tuned = best_lr(dev_curve(rows, task, updates), task.higher_is_better)  # the suite's tuned_lr
                log["tasks"][task.name] = {
                    "updates": updates, "warmup": default_warmup(updates), "tuned_lr": tuned,
                    "metric_name": task.metric_name, "higher_is_better": task.higher_is_better, "delta": task.delta,
                    "arms": []}
            entry = log["tasks"][key["task"]]
            multiplier = round(float(key["lr"]) / entry["tuned_lr"], 6)
            entry["arms"].append({"multiplier": multiplier, "seed": int(key["seed"]), "lr": float(key["lr"]),
                                  "metric": metrics[found], "losses": record["losses"]})
    return log


class Arms:
    """The logged arms of one task and seed: multiplier -> online losses and final metric.

    Args:
        task (`dict`): one task of the log (`updates`, `warmup`, `arms`, ...).
        seed (`int`): the seed whose arms to keep.
    """

    def __init__(self, task: dict, seed: int):
        self.updates = task["updates"]
        self.losses: Dict[float, List[float]] = {}
        self.metric: Dict[float, float] = {}
        for arm in task["arms"]:
            if arm["seed"] == seed:
                self.losses[arm["multiplier"]] = [float(x) for x in arm["losses"]]
                self.metric[arm["multiplier"]] = float(arm["metric"])

    def key(self, multiplier: float) -> Optional[float]:
        """The logged multiplier equal to `multiplier` (to 1e-4 relative), or `None` when it was not logged."""
        for logged in self.losses:
            if math.isclose(logged, multiplier, rel_tol=1e-4):
                return logged
        return None

    def run(self, multiplier: float, start: int, end: int) -> Optional[List[float]]:
        """The arm's losses of updates [start, end), cut at its first divergence (LRTuner's monitor over the arm from
        step 0, as a challenger's or the real run's own); `None` when the arm was not logged."""
        key = self.key(multiplier)
        if key is None:
            return None
        return self.losses[key][start:min(end, self.diverged_at(key))]

    def diverged_at(self, multiplier: float) -> int:
        """Updates the arm runs before LRTuner's monitor stops it (its length when it never does)."""
        monitor = LossMonitor(COLLAPSE_FRACTION)
        losses = self.losses[multiplier]
        for index, loss in enumerate(losses):
            if monitor.update(loss):
                return index + 1
        return len(losses)


@dataclass
class Outcome:
    """What a rule did on one run: the multiplier it ends at and the challenger updates it paid."""

    multiplier: float
    trial_updates: int
    decisions: List[str] = field(default_factory=list)


def window(losses: Sequence[float]) -> List[float]:
    """The second half of an arm's race, as `LRTuner` scores it."""
    return list(losses[len(losses) // 2:])


def beats(losses, than, race_margin: float, min_improvement: float, reference: float) -> bool:
    """Whether `losses` beat `than` over the second half by `race_margin` standard errors and by
    `min_improvement * reference`."""
    mean, stderr = paired_difference(window(losses), window(than))
    return mean < -max(race_margin * stderr, min_improvement * reference)


def progress(incumbent: Sequence[float]) -> float:
    """Loss decrease of an arm from its first update to its late-race mean: a margin that ignores the irreducible
    part of the loss."""
    return max(0.0, incumbent[0] - st.mean(window(incumbent)))


# --------------------------------------------------------------------------------------------------------------------
# 0.3's rule


def rule_v03(arms: Arms, guess: float, race_share=0.2, down_share=0.5, max_races=4, race_until=0.6,
             race_margin=2.0, min_improvement=0.01, margin_on="loss", accelerate=False,
             up_improvement=None, stop_behind=False, stop_down=None, refine=False, up_trend=None,
             stall_check=False) -> Outcome:
    """Release 0.3 (with the defaults): a race at step 0 of m/2 (judged at `down_share` of the race) and 2m (at
    `race_share` T); later races continue in the direction that won, until a tie, `max_races` or `race_until`.

    Variants: `margin_on="progress"` takes `min_improvement` of the run's progress (its first loss minus the
    incumbent's late-race mean) instead of the loss level; `accelerate` doubles the factor of each race after a won
    one (2, 4, 8, ...); `up_improvement` replaces `min_improvement` for upward challengers (short races favour
    them); `stop_behind` stops an upward challenger at half and three quarters of its horizon when it is behind the
    incumbent by `race_margin` standard errors over the second half of its updates so far (short races favour it, so
    that is conclusive); `stop_down` stops a downward challenger the same way when it is behind by this many standard
    errors (short races disfavour it, so only a wide margin is conclusive); `refine`: a race lost after an accelerated
    factor is followed by one in the same direction at the square root of that factor, instead of settling (an
    accelerated step can jump over the best LR); `up_trend`: an upward challenger that beats the incumbent wins only
    if its lead did not shrink from the third to the last quarter of its race by more than this many standard errors
    (the lead a larger LR takes early, which a smaller one catches up, is the short-horizon bias); `stall_check`: a
    race the incumbent keeps, in which it made no progress (its late-race mean not below its first loss by
    `LossMonitor.MIN_PROGRESS` of it) while a larger LR diverged, counts as the run's divergence: a roll-back halves
    the multiplier (the incumbent sits past the edge of stability, collapsed to a constant predictor)."""
    T = arms.updates
    up = max(20, round(race_share * T))
    down = max(5, round(down_share * up))
    budget = down + max_races * up
    m, direction, start, trial, races, factor = guess, 0, 0, 0, 0, 2.0
    unsafe, notes = math.inf, []
    while races < max_races:
        steps = [-1, 1] if direction == 0 else [direction]
        challengers = [m * factor**d for d in steps if m * factor**d < unsafe and arms.key(m * factor**d) is not None]
        horizons = [down if c < m else up for c in challengers]
        if not challengers or start + max(horizons) > race_until * T or trial + sum(horizons) > budget:
            break
        incumbent = arms.run(m, start, start + max(horizons))
        if len(incumbent) < max(horizons):  # the run itself diverged: a roll-back halves it (approximation)
            notes.append(f"rollback@{start + len(incumbent)}")
            unsafe, m, direction, start = min(unsafe, m), m / 2, -1, start + len(incumbent)
            continue
        leader, upward_diverged = m, False
        for c, h in sorted(zip(challengers, horizons)):
            run = arms.run(c, start, start + h)
            upward_diverged |= c > m and len(run) < h
            stop_margin = race_margin if stop_behind and c > m else stop_down if c < m else None
            if stop_margin is not None:
                run = run[:_behind_at(run, incumbent, stop_margin) or len(run)]
                if len(run) < h and all(math.isfinite(x) for x in run):  # stopped behind, not diverged
                    trial += len(run)
                    continue
            trial += len(run)
            if len(run) < h:
                unsafe = min(unsafe, c)
                continue
            own = incumbent[:h]
            reference = abs(st.mean(window(own))) if margin_on == "loss" else \
                max(0.0, arms.losses[arms.key(m)][0] - st.mean(window(own)))
            share = min_improvement if up_improvement is None or c < m else up_improvement
            if beats(run, own, race_margin, share, reference) and not (
                    c > m and up_trend is not None and lead_shrinks(run, own, up_trend)):
                leader, end = c, start + h
                break
        races += 1
        first = arms.losses[arms.key(m)][0]
        if leader == m and stall_check and upward_diverged and \
                first - st.mean(window(incumbent)) < LossMonitor.MIN_PROGRESS * abs(first):
            notes.append(f"stalled@{start + max(horizons)}")
            unsafe, m, direction, start = min(unsafe, m), m / 2, -1, start + max(horizons)
            continue
        if leader == m:
            notes.append(f"tie@{start + max(horizons)}")
            if refine and direction != 0 and factor > 2.0 + 1e-9:
                factor, start = math.sqrt(factor), start + max(horizons)
                continue
            break
        notes.append(f"{leader / guess:.3g}x@{end}")
        direction, m, start = (1 if leader > m else -1), leader, end
        factor = factor * 2 if accelerate == "double" else factor**2 if accelerate else factor
    return Outcome(m, trial, notes)


def lead_shrinks(run, incumbent, tolerance: float) -> bool:
    """Whether the paired difference `run - incumbent` rose from the third to the last quarter of the race by more
    than `tolerance` standard errors of that change."""
    h = len(run)
    third = paired_difference(run[h // 2:3 * h // 4], incumbent[h // 2:3 * h // 4])
    last = paired_difference(run[3 * h // 4:h], incumbent[3 * h // 4:h])
    return last[0] - third[0] > tolerance * math.hypot(third[1], last[1])


def _behind_at(run, incumbent, race_margin, first=0.5, every=0.125, recent=0.25) -> Optional[int]:
    """First update, from `first` of the horizon on and every `every` of it, at which `run` is behind `incumbent` by
    `race_margin` standard errors over its last `recent` of the horizon; `None` if never."""
    h = len(run)
    span = max(2, round(recent * h))
    for k in range(max(span, round(first * h)), h, max(1, round(every * h))):
        mean, stderr = paired_difference(run[k - span:k], incumbent[k - span:k])
        if mean > race_margin * stderr:
            return k
    return None


# --------------------------------------------------------------------------------------------------------------------
# Screen rules: every arm from the race at step 0 (replayed exactly)


def rule_screen(arms: Arms, guess: float, factors=(1 / 16, 1 / 4, 4, 16), screen_share=0.05, propose="lowtie",
                tie_se=2.0, tie_progress=0.05, verify_share=0.2, skip_factor=1.0, race_margin=2.0,
                min_improvement=0.01, refine=False) -> Outcome:
    """Screen wide at step 0, propose, verify once.

    Arms at `guess * factors` race the incumbent for `screen_share` of the budget (an arm the monitor stops costs
    only its updates). The proposal is the best arm (`"argmin"`), the smallest arm tied with the best (`"lowtie"`:
    within `tie_se` standard errors or `tie_progress` of the incumbent's progress), or the best arm moved by its drift
    between half the screen and the screen (`"drift"`). A proposal within `skip_factor` of the incumbent is not raced;
    otherwise it races the incumbent from step 0 for `verify_share` of the budget and takes over only if it wins by
    `race_margin` standard errors and `min_improvement` of the incumbent's progress. With `refine`, a won verification
    is followed by a second one, towards the incumbent by a factor of 2 (the screen's grid is coarser than 2).
    """
    T = arms.updates
    h = max(10, round(screen_share * T))
    incumbent = arms.run(guess, 0, h)
    trial, notes = 0, []
    scores = {}
    for f in factors:
        run = arms.run(guess * f, 0, h)
        if run is None:
            continue
        trial += len(run)
        if len(run) == h:
            scores[guess * f] = run
    if len(incumbent) == h:
        scores[guess] = incumbent
    if not scores:
        return Outcome(guess, trial, ["all diverged"])
    best = min(scores, key=lambda m: st.mean(window(scores[m])))
    if propose == "argmin":
        proposal = best
    elif propose == "lowtie":
        tolerance_ref = progress(scores[best])
        proposal = next(m for m in sorted(scores) if m == best or tied(scores[m], scores[best], tie_se,
                                                                       tie_progress * tolerance_ref))
    elif propose == "drift":
        early = {m: losses[: h // 2] for m, losses in scores.items()}
        first = min(early, key=lambda m: st.mean(window(early[m])))
        drift = best / first
        proposal = best * drift ** 2 if drift < 1 else best  # carry a downward drift on to the verify horizon
        proposal = nearest_logged(arms, guess, proposal)
    else:
        raise ValueError(f"unknown proposal rule {propose!r}")
    notes.append(f"proposal {proposal / guess:.3g}x")
    if max(proposal / guess, guess / proposal) <= skip_factor * (1 + 1e-9):
        return Outcome(guess, trial, notes + ["skip"])
    m = verify(arms, guess, proposal, verify_share, race_margin, min_improvement, notes)
    trial += _verify_cost(arms, proposal, verify_share)
    if refine and m != guess:
        towards = m / 2 if m > guess else m * 2
        if arms.key(towards) is not None:
            trial += _verify_cost(arms, towards, verify_share)
            m = verify(arms, m, towards, verify_share, race_margin, min_improvement, notes)
    return Outcome(m, trial, notes)


def tied(losses, best, tie_se: float, tolerance: float) -> bool:
    mean, stderr = paired_difference(window(losses), window(best))
    return mean <= max(tie_se * stderr, tolerance)


def nearest_logged(arms: Arms, guess: float, multiplier: float) -> float:
    """The logged arm `guess * 2^k` nearest to `multiplier` in log scale."""
    k = round(math.log2(multiplier / guess))
    for step in sorted(range(-8, 9), key=lambda j: abs(j - k)):
        if arms.key(guess * 2.0**step) is not None:
            return guess * 2.0**step
    return guess


def _verify_cost(arms: Arms, multiplier: float, share: float) -> int:
    run = arms.run(multiplier, 0, max(20, round(share * arms.updates)))
    return 0 if run is None else len(run)


def verify(arms, incumbent_m, challenger_m, share, race_margin, min_improvement, notes) -> float:
    """One race from step 0 of `challenger_m` against `incumbent_m` for `share` of the budget, margin on progress."""
    h = max(20, round(share * arms.updates))
    incumbent = arms.run(incumbent_m, 0, h)
    challenger = arms.run(challenger_m, 0, h)
    if challenger is None or len(challenger) < h:
        notes.append(f"{challenger_m:.3g} diverged")
        return incumbent_m
    if len(incumbent) < h:  # the incumbent diverged: the challenger is the only healthy arm
        notes.append(f"{challenger_m:.3g} over diverged incumbent")
        return challenger_m
    if beats(challenger, incumbent, race_margin, min_improvement, progress(incumbent)):
        notes.append(f"{challenger_m:.3g} won")
        return challenger_m
    notes.append(f"{challenger_m:.3g} lost")
    return incumbent_m


# --------------------------------------------------------------------------------------------------------------------
# The candidates


def candidates() -> Dict[str, Callable[[Arms, float], Outcome]]:
    """Rule name -> rule(arms, guess), the set the replay table compares. `(0.4)` is `LRTunerConfig()`'s race rule;
    with its stall check (`LRTunerConfig.stall_check`) it is `0.4, a stalled incumbent beside a diverged larger LR
    rolls back`."""
    rules: Dict[str, Callable[[Arms, float], Outcome]] = {"0.3": rule_v03}
    rules["0.3, margin on progress"] = _v03(margin_on="progress")
    rules["0.3, margin on progress, accelerate"] = _v03(margin_on="progress", accelerate=True)
    rules["0.3, margin on progress, accelerate, down 0.2 T"] = _v03(margin_on="progress", accelerate=True,
                                                                      down_share=1.0)
    rules["0.3, accelerate, up 0.3 T"] = _v03(accelerate=True, race_share=0.3)
    for share in (0.25, 0.3):
        settings = dict(margin_on="progress", accelerate=True, race_share=share)
        name = f"progress, accelerate, up {share} T, down half"
        rules[name] = _v03(**settings)
        rules[name + ", stop behind" + (" (0.4)" if share == 0.3 else "")] = _v03(stop_behind=True, **settings)
    rules["progress, accelerate, up 0.3 T, down 2/3, stop behind"] = _v03(
        margin_on="progress", accelerate=True, race_share=0.3, down_share=2 / 3, stop_behind=True)
    settings_04 = dict(margin_on="progress", accelerate=True, race_share=0.3, stop_behind=True)
    for margin in (4.0, 8.0):
        rules[f"0.4, stop down behind {margin:g} SE"] = _v03(stop_down=margin, **settings_04)
    rules["0.4, refine"] = _v03(refine=True, **settings_04)
    rules["0.4, refine, stop down behind 4 SE"] = _v03(refine=True, stop_down=4.0, **settings_04)
    for tolerance in (0.0, 1.0):
        rules[f"0.4, upward lead must not shrink ({tolerance:g} SE)"] = _v03(up_trend=tolerance, **settings_04)
    rules["0.4, a stalled incumbent beside a diverged larger LR rolls back"] = _v03(stall_check=True, **settings_04)
    for share in (0.025, 0.05):
        for propose in ("argmin", "lowtie", "drift"):
            rules[f"screen x1/16 x1/4 x4 x16 at {share} T, {propose}, verify 0.2 T"] = _screen(
                screen_share=share, propose=propose)
        rules[f"screen x1/4 x4 at {share} T, lowtie, verify 0.2 T"] = _screen(factors=(1 / 4, 4), screen_share=share)
        rules[f"screen x1/16..x16 (6 arms) at {share} T, lowtie, verify 0.2 T"] = _screen(
            factors=(1 / 16, 1 / 8, 1 / 4, 4, 8, 16), screen_share=share)
        rules[f"screen x1/16 x1/4 x4 x16 at {share} T, lowtie, verify 0.2 T, refine"] = _screen(
            screen_share=share, refine=True)
    return rules


def _v03(**settings):
    return lambda arms, guess: rule_v03(arms, guess, **settings)


def _screen(**settings):
    return lambda arms, guess: rule_screen(arms, guess, **settings)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(log: dict, rules: Dict[str, Callable], guesses=GUESSES) -> List[dict]:
    """One row per (rule, task, guess, seed): chosen multiplier (of the tuned LR), compute, regrets in deltas."""
    rows = []
    for name, task in log["tasks"].items():
        sign = 1.0 if task["higher_is_better"] else -1.0
        seeds = sorted({arm["seed"] for arm in task["arms"]})
        per_seed = {seed: Arms(task, seed) for seed in seeds}
        means = {m: st.mean(per_seed[s].metric[m] for s in seeds) for m in per_seed[seeds[0]].metric}
        best_arm = max(means, key=lambda m: sign * means[m] if math.isfinite(means[m]) else -math.inf)
        for rule_name, rule in rules.items():
            for guess in guesses:
                for seed in seeds:
                    arms = per_seed[seed]
                    if arms.key(guess) is None:
                        continue
                    outcome = rule(arms, arms.key(guess))
                    chosen = arms.key(outcome.multiplier)
                    metric = arms.metric[chosen]
                    rows.append({
                        "rule": rule_name, "task": name, "guess": guess, "seed": seed, "multiplier": chosen,
                        "compute": 1 + outcome.trial_updates / task["updates"],
                        "regret": _regret(sign, arms.metric[arms.key(1.0)], metric, task["delta"]),
                        "regret_vs_best": _regret(sign, arms.metric[best_arm], metric, task["delta"]),
                        "best_arm": best_arm, "decisions": " ".join(outcome.decisions),
                    })
    return rows


def _regret(sign, reference, metric, delta):
    if not math.isfinite(metric):
        return math.inf
    return sign * (reference - metric) / delta


def summarize(rows: List[dict]) -> List[dict]:
    """Per (rule, task): mean regret per guess, mean and worst over guesses, compute at x1 and mean."""
    out = []
    keys = list(dict.fromkeys((r["rule"], r["task"]) for r in rows))
    for rule, task in keys:
        cell = [r for r in rows if (r["rule"], r["task"]) == (rule, task)]
        guesses = sorted({r["guess"] for r in cell})
        regret = {g: st.mean(r["regret"] for r in cell if r["guess"] == g) for g in guesses}
        multiplier = {g: math.exp(st.mean(math.log(r["multiplier"]) for r in cell if r["guess"] == g))
                      for g in guesses}
        compute = {g: st.mean(r["compute"] for r in cell if r["guess"] == g) for g in guesses}
        out.append({"rule": rule, "task": task, "regret": regret, "multiplier": multiplier,
                    "mean": st.mean(regret.values()), "worst": max(regret.values()),
                    "compute_x1": compute.get(1.0, math.nan), "compute_mean": st.mean(compute.values())})
    return out


def markdown(summary: List[dict], rows: List[dict]) -> str:
    tasks = list(dict.fromkeys(s["task"] for s in summary))
    rules = list(dict.fromkeys(s["rule"] for s in summary))
    by = {(s["rule"], s["task"]): s for s in summary}
    lines = ["Mean / worst regret over the guesses x0.1-x10 (units of delta, against linear at x1, mean of the dev "
             "seeds). Harm at x1: tasks where the mean regret at x1 exceeds delta. Compute: 1 + challenger updates / "
             "T, at x1 (mean over tasks, worst task) and over all guesses.", "",
             "| rule | " + " | ".join(tasks) + " | harm at x1 | compute x1 (worst task) | compute mean |",
             "|---|" + "---|" * (len(tasks) + 3)]
    for rule in rules:
        cells = [f"{_fmt(by[rule, t]['mean'])} / {_fmt(by[rule, t]['worst'])}" for t in tasks]
        harmed = sum(by[rule, t]["regret"].get(1.0, 0.0) > 1.0 for t in tasks)
        cx1 = [by[rule, t]["compute_x1"] for t in tasks]
        cmean = st.mean(by[rule, t]["compute_mean"] for t in tasks)
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {harmed} of {len(tasks)} | {st.mean(cx1):.2f} "
                     f"({max(cx1):.2f}) | {cmean:.2f} |")
    lines += ["", "Multiplier chosen (of the tuned LR; geometric mean over seeds) and regret per guess:", ""]
    for task in tasks:
        best = next(r["best_arm"] for r in rows if r["task"] == task)
        lines += [f"**{task}** (arm best at the end: x{best:.3g})", "",
                  "| rule | " + " | ".join(f"x{g:g}" for g in GUESSES) + " |", "|---|" + "---|" * len(GUESSES)]
        for rule in rules:
            s = by[rule, task]
            lines.append(f"| {rule} | " + " | ".join(
                f"x{s['multiplier'][g]:.2g}: {_fmt(s['regret'][g])}" for g in GUESSES if g in s["regret"]) + " |")
        lines.append("")
    return "\n".join(lines)


def markdown_at_x1(rows: List[dict]) -> str:
    """Markdown: per rule and task, the multiplier each seed ends at from x1, the mean regret and the compute."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = ["| rule | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        cells = []
        for task in tasks:
            cell = [r for r in rows if r["rule"] == rule and r["task"] == task and r["guess"] == 1.0]
            chosen = " ".join(f"x{r['multiplier']:.3g}" for r in cell)
            cells.append(f"{chosen}: {_fmt(st.mean(r['regret'] for r in cell))} "
                         f"({st.mean(r['compute'] for r in cell):.2f}x)")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


HORIZON_SHARES = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # 1.0: the training loss over the run's second half


def winners_by_horizon(log: dict, shares=HORIZON_SHARES) -> str:
    """Markdown: per task, the arm (multiple of the tuned LR, on the grid 2^-4 .. 2^4, where logged) with the lowest
    mean loss over the second half of a race from step 0 of each share of the budget (mean over seeds; an arm the
    monitor stopped is out), and the arm best at the end."""
    lines = ["Race winner from step 0 by horizon (share of the budget) among the logged arms of x1/16 .. x16, and the "
             "arm best at the end (mean over the dev seeds; at 1 T the winner is the arm with the lowest training loss "
             "over the second half of the run):", "",
             "| task | " + " | ".join(f"{share:g} T" for share in shares) + " | best at the end |",
             "|---|" + "---|" * (len(shares) + 1)]
    for name, task in log["tasks"].items():
        sign = 1.0 if task["higher_is_better"] else -1.0
        seeds = sorted({arm["seed"] for arm in task["arms"]})
        per_seed = [Arms(task, seed) for seed in seeds]
        grid = [2.0**k for k in range(-4, 5) if all(arms.key(2.0**k) is not None for arms in per_seed)]
        cells = []
        for share in shares:
            h = round(share * task["updates"])
            scores = {}
            for m in grid:
                runs = [arms.run(m, 0, h) for arms in per_seed]
                if all(run is not None and len(run) == h for run in runs):
                    scores[m] = st.mean(st.mean(window(run)) for run in runs)
            cells.append(f"x{min(scores, key=scores.get):g}")
        final = {m: st.mean(arms.metric[arms.key(m)] for arms in per_seed) for m in grid}
        best = max(final, key=lambda m: sign * final[m] if math.isfinite(final[m]) else -math.inf)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | x{best:g} |")
    return "\n".join(lines)


def arms_at_the_end(log: dict) -> str:
    """Markdown: per task and arm, the training loss over the second half of the run (mean over seeds) beside the
    final metric of each seed and their mean: whether the loss ranks the arms as the metric does."""
    lines = ["| task | arm | training loss, second half of the run | metric per seed | mean metric |",
             "|---|---|---|---|---|"]
    for name, task in log["tasks"].items():
        seeds = sorted({arm["seed"] for arm in task["arms"]})
        per_seed = [Arms(task, seed) for seed in seeds]
        for m in sorted(per_seed[0].losses):
            loss = st.mean(st.mean(window(arms.losses[m])) for arms in per_seed)
            metrics = [arms.metric[m] for arms in per_seed]
            lines.append(f"| {name} | x{m:g} | {loss:.4f} | " + ", ".join(f"{v:.2f}" for v in metrics)
                         + f" | {st.mean(metrics):.2f} |")
    return "\n".join(lines)


def _grid_span(log: dict) -> str:
    """'x0.125 .. x4 (task)' for each task of a log: the range of its logged multipliers."""
    spans = []
    for name, task in log["tasks"].items():
        multipliers = [arm["multiplier"] for arm in task["arms"]]
        spans.append(f"x{min(multipliers):g} .. x{max(multipliers):g} (`{name}`)")
    return ", ".join(spans)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="a horizon.py --arms file (.json.gz)")
    parser.add_argument("--md", default=None, help="write the markdown tables here")
    parser.add_argument("--csv", default=None, help="write one row per (rule, task, guess, seed) here")
    parser.add_argument("--rules", nargs="+", default=None, help="rule names of candidates() to replay (default all)")
    parser.add_argument("--suite-csv", default=None,
                        help="also replay x1 on the Trainer tiers' linear dev grid of this suite CSV (and its records)")
    args = parser.parse_args(argv)
    rules = candidates()
    if args.rules:
        unknown = set(args.rules) - set(rules)
        if unknown:
            parser.error(f"unknown rules {sorted(unknown)}; known: {sorted(rules)}")
        rules = {name: rules[name] for name in args.rules}
    log = load_log(args.log)
    rows = evaluate(log, rules)
    text = winners_by_horizon(log) + "\n\n" + markdown(summarize(rows), rows)
    if args.suite_csv:
        trainer_log = trainer_dev_log(args.suite_csv)
        trainer_rows = evaluate(trainer_log, rules, guesses=(1.0,))
        rows += trainer_rows
        text += ("\n\n## The CPU Trainer tiers at x1 (their linear dev grid)\n\n"
                 f"The linear dev runs of the tasks in `{args.suite_csv}` (dev split, dev seeds) keep every update's "
                 f"training loss: arms at {_grid_span(trainer_log)} of the tuned LR, so only a guess of x1 and its "
                 "first race can be replayed (a later race's challenger that was not logged is not run).\n\n"
                 + winners_by_horizon(trainer_log) + "\n\nEach arm's training loss over the second half of the run "
                 "(what a race of the whole run would compare) and its dev metric:\n\n" + arms_at_the_end(trainer_log)
                 + "\n\nFrom x1: the multiplier each seed ends at, the mean regret "
                 "(units of delta, against linear at x1) and the compute:\n\n" + markdown_at_x1(trainer_rows))
    print(text)
    options = (("--md", args.md), ("--csv", args.csv), ("--suite-csv", args.suite_csv))
    given = [f"{name} {value}" for name, value in options if value]
    command = " ".join(["python -m benchmarks.replay", args.log, *given])
    if args.md:
        with open(args.md, "w") as f:
            f.write(f"# Replay of decision rules on the per-arm logs\n\n`{command}`\n\n{text}\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
