"""TrialRunner on small problems whose good LR range is known (measured with fixed-LR runs of 300 updates)."""

import io

import pytest
import torch

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrainingSnapshot, TrialRunner
from task import (
    classification_data,
    eval_loss,
    geometric_mean,
    linear_model,
    mlp_model,
    make_loss_fn,
    make_train_step,
    regression_data,
    train,
    tuned_run,
)

# Fixed-LR final losses after 300 updates: regression (SGD, momentum 0.9) ~0.0097 for lr in [1e-3, 1e-2], 0.97 at
# 3e-4, divergent at >= 0.3; classification (Adam) <= 0.43 for lr in [3e-3, 3e-2], 0.55 at 1e-3.
REGRESSION_GOOD = (1e-3, 0.1)
CLASSIFICATION_GOOD = (3e-3, 5e-2)
STEPS = 300


def explore_lrs(scheduler, log):
    return log.lrs[: scheduler.tuner.switch_step]


@pytest.mark.parametrize(
    "kind,optimizer,lr,good",
    [("regression", "sgd", 3e-4, REGRESSION_GOOD), ("classification", "adam", 1e-3, CLASSIFICATION_GOOD)],
)
def test_an_lr_ten_times_too_low_is_raised_into_the_good_range_during_explore(kind, optimizer, lr, good):
    model, scheduler, log, dataset = tuned_run(kind, lr, steps=STEPS, optimizer=optimizer)
    late_explore = explore_lrs(scheduler, log)[scheduler.tuner.switch_step // 2 :]
    assert good[0] <= geometric_mean(late_explore) <= good[1]
    fixed_lr_loss = {"regression": 0.97, "classification": 0.55}[kind]
    assert eval_loss(model, dataset, kind) < 0.8 * fixed_lr_loss


@pytest.mark.parametrize("lr", [0.3, 3.0])
def test_an_lr_ten_times_too_high_backs_off_and_never_trains_from_a_diverged_state(lr):
    model, scheduler, log, dataset = tuned_run("regression", lr, steps=STEPS, optimizer="sgd")
    assert all(log.params_finite)
    late_explore = explore_lrs(scheduler, log)[scheduler.tuner.switch_step // 2 :]
    assert REGRESSION_GOOD[0] <= geometric_mean(late_explore) <= REGRESSION_GOOD[1]
    assert any(any(r["diverged"]) for r in log.records)
    assert eval_loss(model, dataset, "regression") < 0.05


def test_lr_is_zero_at_the_end_and_never_above_the_envelope_in_exploit():
    _, scheduler, log, _ = tuned_run("classification", 1e-2, steps=STEPS, optimizer="adam")
    tuner = scheduler.tuner
    assert scheduler.get_last_lr()[0] == 0.0  # after the last update of the budget
    base = scheduler.base_lrs[0]
    assert log.lrs[-1] <= 0.01 * base * tuner.multiplier  # the last update runs within 1% of the explore LR
    for step in range(tuner.switch_step, STEPS):
        assert log.lrs[step] <= base * tuner.envelope(step) * (1 + 1e-12)


def test_trial_and_probe_compute_is_counted():
    _, scheduler, log, _ = tuned_run("classification", 1e-2, steps=STEPS, optimizer="adam")
    tuner = scheduler.tuner
    tried = sum(len(r["candidates"]) for r in log.records)
    assert tuner.trial_updates == tried * 5 == log.records[-1]["trial_updates"]
    # each candidate's probes; the initial state's score; each tuning point's reference and divergence check
    assert tuner.probe_passes == tried * 4 + 4 + len(log.records) * 8


def resume_from(step, kind="classification", lr=1e-2):
    """Run to `step`, checkpoint through torch.save/torch.load(weights_only=True), continue in fresh objects."""
    config = LRTunerConfig(tune_every=30, trial_steps=5, probe_batches=4, max_trial_fraction=0.5)
    dataset = classification_data()
    model = mlp_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=STEPS, config=config)
    first = train(model, optimizer, scheduler, dataset, kind, steps=step)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    model = mlp_model(seed=123)  # different init: everything must come from the checkpoint
    model.load_state_dict(checkpoint["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler = LRTunerScheduler(optimizer, num_training_steps=STEPS, config=config)
    scheduler.load_state_dict(checkpoint["scheduler"])
    second = train(model, optimizer, scheduler, dataset, kind, steps=STEPS, start=step)
    return first.lrs + second.lrs


@pytest.mark.parametrize("step", [75, 91])  # mid-explore between tuning points, and right after tuning at 90
def test_resuming_from_a_state_dict_gives_the_same_lr_sequence(step):
    model = mlp_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    config = LRTunerConfig(tune_every=30, trial_steps=5, probe_batches=4, max_trial_fraction=0.5)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=STEPS, config=config)
    uninterrupted = train(model, optimizer, scheduler, classification_data(), "classification", steps=STEPS).lrs
    assert len(set(uninterrupted[step:])) > 10  # the tuner keeps changing the LR after the checkpoint
    assert resume_from(step) == uninterrupted


def test_snapshot_restores_parameters_optimizer_state_and_lazily_created_state():
    model = linear_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    dataset = regression_data()
    train_step = make_train_step(model, optimizer, make_loss_fn(model, "regression"))
    snapshot = TrainingSnapshot(model, optimizer)
    snapshot.capture()  # before the first update: Adam has no state yet
    before = [p.detach().clone() for p in model.parameters()]
    train_step(dataset[:32])
    snapshot.restore()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert len(optimizer.state) == 0
    train_step(dataset[:32])
    snapshot.capture()
    moments = {k: v.clone() for k, v in optimizer.state[next(model.parameters())].items()}
    optimizer.param_groups[0]["lr"] = 5.0
    train_step(dataset[32:64])
    snapshot.restore()
    assert all(torch.equal(moments[k], v) for k, v in optimizer.state[next(model.parameters())].items())
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_runner_refuses_a_scheduler_of_another_optimizer():
    model = linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = LRTunerScheduler(other, num_training_steps=10, config=LRTunerConfig(tune_every=5, trial_steps=2))
    with pytest.raises(ValueError, match="different optimizer"):
        TrialRunner(model, optimizer, scheduler, train_step=lambda b: 0.0, loss_fn=lambda b: 0.0, batches=[])


def test_explore_holds_the_lr_at_the_high_end_of_the_good_range():
    # Short-horizon bias: a greedy lowest-loss rule drifts to small LRs during explore (measured here: late-explore
    # geometric mean 0.019 over these seeds); LRTuner's rule keeps the largest LR that is not measurably worse
    # (measured: 0.036). The Adam task's good range is [3e-3, 5e-2].
    late = []
    for seed in (0, 1, 2):
        _, scheduler, log, _ = tuned_run("classification", 1e-2, steps=STEPS, optimizer="adam", seed=seed)
        late.extend(explore_lrs(scheduler, log)[scheduler.tuner.switch_step // 2 :])
    assert 0.025 <= geometric_mean(late) <= CLASSIFICATION_GOOD[1]


def test_divergence_during_warmup_rolls_back_to_the_initial_state():
    config = LRTunerConfig(warmup_steps=20, tune_every=30, trial_steps=5, probe_batches=4, max_trial_fraction=0.5,
                           tune_during_warmup=False)
    model, scheduler, log, dataset = tuned_run("regression", 3.0, steps=STEPS, config=config)
    assert log.losses[19] > 100 * log.losses[0]  # warmup towards 3.0 diverges...
    first = log.records[0]
    assert first["step"] == 20 and first["previous"] == 0.5  # ...the first tuning point rolled back and backed off
    assert first["reference"] < 2 * log.losses[0]  # it searched from the initial state, not the diverged one
    assert all(log.params_finite) and scheduler.tuner.multiplier < 0.1
    assert eval_loss(model, dataset, "regression") < 0.05
