"""The offline replay of decision rules (benchmarks/replay.py) on a tiny hand-made per-arm log."""

import gzip
import json
import math

import pytest

from benchmarks import replay

T = 200
NOISE = [0.03, -0.02, 0.04, -0.05, 0.01, -0.03, 0.02, 0.0, -0.01, 0.05]  # per-batch noise every arm shares


def curve(level, diverge_at=None):
    """Online losses of an arm: from 2.0 towards `level`, with the batch noise of every arm; NaN from `diverge_at`."""
    losses = [level + (2.0 - level) * 0.97**t + 0.01 * NOISE[t % 10] for t in range(T)]
    if diverge_at is not None:
        losses = losses[:diverge_at] + [math.nan]
    return losses


def tiny_log(levels, metrics, diverging=()):
    """A log of one task and one seed: arms at 2^k (k = -4..4) of the tuned LR, each approaching `levels[k]`."""
    arms = [{"multiplier": 2.0**k, "seed": 1000, "lr": 0.1 * 2.0**k, "metric": metrics[k],
             "losses": curve(levels[k], 30 if k in diverging else None)} for k in range(-4, 5)]
    return {"tasks": {"tiny": {"updates": T, "warmup": 20, "tuned_lr": 0.1, "metric_name": "accuracy",
                               "higher_is_better": True, "delta": 0.5, "arms": arms}}}


def test_a_screen_proposes_the_smallest_tied_arm_and_a_won_verification_moves_there_in_one_decision():
    levels = {-4: 1.6, -3: 1.3, -2: 1.0, -1: 0.7, 0: 0.32, 1: 0.3, 2: 0.3, 3: 0.6, 4: 1.2}
    arms = replay.Arms(tiny_log(levels, {k: 60.0 + k for k in levels})["tasks"]["tiny"], 1000)
    # From x1/4 the screen sees x1/64 (not logged), x1/16, x1 and x4: x1 and x4 tie at the best, the lower one is
    # proposed, and it beats the incumbent from step 0.
    outcome = replay.rule_screen(arms, 0.25, factors=(1 / 16, 1 / 4, 4, 16), screen_share=0.1, verify_share=0.2)
    assert outcome.multiplier == 1.0
    assert outcome.trial_updates == 3 * 20 + 40  # three logged screen arms of 20 updates, one verification of 40
    argmin = replay.rule_screen(arms, 0.25, factors=(1 / 16, 1 / 4, 4, 16), screen_share=0.1, propose="argmin")
    assert argmin.multiplier == 4.0  # the best arm itself


def test_a_screen_at_a_good_guess_skips_the_verification_and_pays_only_the_screen():
    levels = {-4: 1.6, -3: 1.3, -2: 1.0, -1: 0.7, 0: 0.3, 1: 0.4, 2: 0.5, 3: 0.6, 4: 1.2}
    arms = replay.Arms(tiny_log(levels, {k: 60.0 - abs(k) for k in levels})["tasks"]["tiny"], 1000)
    outcome = replay.rule_screen(arms, 1.0, factors=(1 / 4, 4), screen_share=0.1)
    assert outcome.multiplier == 1.0 and outcome.trial_updates == 2 * 20 and "skip" in outcome.decisions


def test_a_diverged_arm_is_never_chosen_and_costs_only_its_updates():
    levels = {-4: 1.6, -3: 1.3, -2: 1.0, -1: 0.7, 0: 0.5, 1: 0.4, 2: 0.1, 3: 0.6, 4: 1.2}
    arms = replay.Arms(tiny_log(levels, {k: 60.0 for k in levels}, diverging=(2,))["tasks"]["tiny"], 1000)
    assert arms.diverged_at(4.0) == 31  # the monitor stops the arm at its first non-finite loss
    outcome = replay.rule_screen(arms, 1.0, factors=(1 / 4, 4), screen_share=0.2, propose="argmin")
    # x4 led until it diverged; of the others x1 is best: nothing to verify
    assert outcome.multiplier == 1.0 and outcome.trial_updates == 40 + 31 and "skip" in outcome.decisions


def test_v03_moves_one_factor_per_race_until_a_tie():
    levels = {-4: 1.6, -3: 1.3, -2: 1.0, -1: 0.8, 0: 0.6, 1: 0.4, 2: 0.2, 3: 0.2, 4: 1.2}
    arms = replay.Arms(tiny_log(levels, {k: 60.0 for k in levels})["tasks"]["tiny"], 1000)
    outcome = replay.rule_v03(arms, 1.0)
    # race 1 at step 0: x1/2 (20 updates) loses, x2 (40) wins; race 2 from 40: x4 wins at 80; race 3 from 80: x8 ties
    assert outcome.multiplier == 4.0 and outcome.decisions == ["2x@40", "4x@80", "tie@120"]
    assert outcome.trial_updates == 20 + 40 + 40 + 40


def test_evaluate_reports_the_regret_against_x1_and_against_the_best_arm(tmp_path):
    levels = {-4: 1.6, -3: 1.3, -2: 1.0, -1: 0.7, 0: 0.4, 1: 0.3, 2: 0.3, 3: 0.6, 4: 1.2}
    metrics = {k: 60.0 + k if k <= 1 else 60.0 - k for k in levels}  # x2 is the best arm at the end
    path = tmp_path / "arms.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(tiny_log(levels, metrics), f)
    rows = replay.evaluate(replay.load_log(str(path)), {"v03": replay.rule_v03}, guesses=(0.25, 1.0))
    # from x1/4 three races reach x2 (the fourth would end after 0.6 T); from x1 one race, then x4 ties
    assert [(r["guess"], r["multiplier"]) for r in rows] == [(0.25, 2.0), (1.0, 2.0)]
    x1 = rows[1]
    assert x1["regret"] == pytest.approx((60.0 - 61.0) / 0.5) and x1["regret_vs_best"] == 0.0
    assert x1["best_arm"] == 2.0 and x1["compute"] == pytest.approx(1 + (20 + 40 + 40) / T)
    assert rows[0]["compute"] == pytest.approx(1 + (20 + 40 + 40 + 40) / T)
    summary = replay.summarize(rows)
    assert summary[0]["worst"] == pytest.approx(max(r["regret"] for r in rows))
    assert "| v03 |" in replay.markdown(summary, rows)
    # x2 and x4 reach the same level: the lower one wins every race from step 0, and x2 is also best at the end
    table = replay.winners_by_horizon(replay.load_log(str(path)), shares=(0.1, 0.5))
    assert "| tiny | x2 | x2 | x2 |" in table


def test_a_lead_that_shrinks_from_the_third_to_the_last_quarter_is_seen_and_a_steady_one_is_not():
    incumbent = [1.0 + 0.01 * NOISE[t % 10] for t in range(40)]
    steady = [x - 0.1 for x in incumbent]  # 0.1 ahead over the whole race
    fading = [x - (0.1 if t < 30 else 0.02) for t, x in enumerate(incumbent)]  # 0.1 ahead, then 0.02
    assert not replay.lead_shrinks(steady, incumbent, 1.0)
    assert replay.lead_shrinks(fading, incumbent, 1.0)


def test_the_trainer_tiers_dev_grid_is_read_as_arms_around_the_tuned_lr_and_x1_is_replayed(tmp_path):
    import csv

    from benchmarks.runner import COLUMNS

    suite_csv = tmp_path / "suite.csv"
    metrics = {0.0005: 68.0, 0.001: 72.0, 0.002: 50.0}  # the tuned LR is 0.001
    with open(suite_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for lr, metric in metrics.items():
            writer.writerow({"task": "minilm_cls_cpu", "tier": "C", "method": "linear", "guess": "", "lr": f"{lr:g}",
                             "seed": "1000", "split": "dev", "metric_name": "accuracy", "metric": metric,
                             "higher_is_better": "True", "delta": "0.5", "updates": str(T), "trial_updates": "0",
                             "probe_passes": "0", "wall_s": "1", "device": "cpu"})
    levels = {0.0005: 0.5, 0.001: 0.3, 0.002: 0.6}
    with open(tmp_path / "suite_records.jsonl", "w") as f:
        for lr, level in levels.items():
            key = {"task": "minilm_cls_cpu", "method": "linear", "guess": "", "lr": f"{lr:g}", "seed": "1000",
                   "split": "dev", "updates": str(T)}
            f.write(json.dumps({"key": key, "losses": curve(level)}) + "\n")
    log = replay.trainer_dev_log(str(suite_csv), tasks=("minilm_cls_cpu",))
    task = log["tasks"]["minilm_cls_cpu"]
    assert task["tuned_lr"] == 0.001 and task["warmup"] == 20
    assert sorted((arm["multiplier"], arm["metric"]) for arm in task["arms"]) == [(0.5, 68.0), (1.0, 72.0), (2.0, 50.0)]
    rule = replay.candidates()["progress, accelerate, up 0.3 T, down half, stop behind (0.4)"]
    rows = replay.evaluate(log, {"0.4": rule}, guesses=(1.0,))
    # x1's loss is the lowest: the race keeps it
    assert [(row["guess"], row["multiplier"], row["regret"]) for row in rows] == [(1.0, 1.0, 0.0)]
    assert "x1: 0.0" in replay.markdown_at_x1(rows)
    table = replay.arms_at_the_end(log)
    late = sum(curve(0.6)[T // 2:]) / (T - T // 2)  # x2's loss over the second half of its run
    assert f"| minilm_cls_cpu | x2 | {late:.4f} | 50.00 | 50.00 |" in table
