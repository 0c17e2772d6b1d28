"""`LRTunerConfig.stall_check` on a small real task: the suite's scratch_sgd (a 4-layer MLP from scratch, SGD with
momentum), 10x its tuned LR, dev split. On dev seed 1003 the run collapses to a constant predictor during warmup
without ever giving back progress, so the loss monitor sees nothing; the first race's larger LR diverges."""

import torch

from benchmarks.tasks_synthetic import SCRATCH_SGD

LR = 2.0  # 10x the tuned LR of scratch_sgd (docs/results/suite.csv, linear dev grid: 0.2)


def run(method, seed):
    with torch.random.fork_rng():
        return SCRATCH_SGD.run(method, LR, seed, "dev", SCRATCH_SGD.updates)


def test_the_stall_check_rolls_back_a_run_collapsed_from_its_start_and_the_back_off_finds_an_lr_that_learns():
    silent = run("lrtuner:stall_check=False", 1003)
    assert [("rollback_to" in r, r["multiplier"]) for r in silent["records"]] == [(False, 1.0)]  # the race kept x10
    assert silent["metric"] < 25  # chance is 19.9% (the majority class)
    checked = run("lrtuner", 1003)  # on by default
    race, rollback = checked["records"][:2]
    assert rollback["step"] == race["end_step"] and rollback["rollback_to"] == race["step"] == 0
    assert rollback["multiplier"] == 0.5 and checked["metric"] > 55


def test_the_stall_check_leaves_a_run_that_the_monitor_already_rolls_back_as_it_is():
    assert run("lrtuner", 1000) == run("lrtuner:stall_check=False", 1000)
