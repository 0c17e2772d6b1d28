"""TrialRunner on small problems whose good LR range is known (measured with linear-warmup-decay runs of 300 updates)."""

import io
import json
import math

import pytest
import torch

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner
from hf_lrtuner.checkpoint import load_checkpoint_file, save_checkpoint_file
from hf_lrtuner.snapshot import TrainingSnapshot
from hf_lrtuner.tuner import LossMonitor, LRTuner
from task import (
    batch_at,
    classification_data,
    eval_loss,
    linear_model,
    linear_run,
    make_loss_fn,
    make_train_step,
    mlp_model,
    regression_data,
    train,
    tuned_run,
)

# Linear warmup-decay, 300 updates, 30 warmup: regression (SGD, momentum 0.9) reaches the noise floor 0.0097 from
# lr 3e-3 to 3e-2, 5.5 at 3e-4, diverges at 3.0; classification (Adam) 0.80 at 1e-3, 0.40 at 1e-2, 0.35 at 0.1.
STEPS = 300


def make_run(kind, lr, optimizer="adam", seed=0, dropout=0.0, classes=4):
    dataset = regression_data(seed=seed) if kind == "regression" else classification_data(classes=classes, seed=seed)
    if kind == "regression":
        model = linear_model(seed=seed)
    else:
        model = mlp_model(classes=classes, seed=seed)
        if dropout:
            model = torch.nn.Sequential(model[0], model[1], torch.nn.Dropout(dropout), model[2])
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    return dataset, model, opt


def test_with_an_unbeatable_margin_the_run_is_bit_identical_to_linear_warmup_decay():
    # Races run, but no challenger can win: the real run must be untouched by them, dropout included.
    dataset, model, optimizer = make_run("classification", 1e-2, dropout=0.2)
    torch.manual_seed(7)
    scheduler = LRTunerScheduler(optimizer, STEPS, LRTunerConfig(warmup_steps=30, race_horizon=20, race_margin=1e9))
    log = train(model, optimizer, scheduler, dataset, "classification", STEPS)
    assert len(log.records) == 1 and scheduler.tuner.trial_updates == 10 + 20

    dataset, reference, optimizer = make_run("classification", 1e-2, dropout=0.2)
    torch.manual_seed(7)
    linear_lrs = linear_run(reference, optimizer, dataset, "classification", STEPS, warmup_steps=30)
    assert log.lrs == pytest.approx(linear_lrs, rel=1e-12, abs=1e-15)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_a_challenger_at_the_incumbents_own_multiplier_reproduces_its_losses(monkeypatch):
    # The race identity: a replay of the race's batches from its snapshot at the incumbent's multiplier (dropout, Adam
    # state and the warmup ramp included) gives exactly the real run's losses, so any difference a race measures is
    # the LR's.
    monkeypatch.setattr(LRTuner, "next_challengers", lambda tuner: [] if tuner.races_run else [tuner.multiplier])
    dataset, model, optimizer = make_run("classification", 1e-2, dropout=0.2)
    torch.manual_seed(7)
    scheduler = LRTunerScheduler(optimizer, STEPS, LRTunerConfig(warmup_steps=30, race_horizon=20))
    log = train(model, optimizer, scheduler, dataset, "classification", steps=40)
    record = log.records[0]
    assert record["multipliers"] == [1.0, 1.0] and record["updates"] == [20, 20]
    assert record["scores"][1] == record["scores"][0] and record["differences"][1] == [0.0, 0.0]
    assert record["multiplier"] == 1.0 and scheduler.tuner.trial_updates == 20


def test_training_continues_from_the_winning_branch_as_if_it_had_run_at_its_multiplier():
    dataset, model, optimizer = make_run("classification", 1e-3)
    scheduler = LRTunerScheduler(optimizer, STEPS, LRTunerConfig(warmup_steps=30, race_horizon=20, max_races=1))
    log = train(model, optimizer, scheduler, dataset, "classification", steps=20)
    assert log.records[0]["multiplier"] == 2.0  # the upward challenger won the race over updates 0-19

    dataset, reference, optimizer = make_run("classification", 2e-3)  # the winner's LR from the start
    lambda_ = scheduler.tuner.shape
    train_step = make_train_step(reference, optimizer, make_loss_fn(reference, "classification"))
    for step in range(20):
        optimizer.param_groups[0]["lr"] = 2e-3 * lambda_(step)
        train_step(batch_at(dataset, step, 32))
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert scheduler.get_last_lr()[0] == pytest.approx(2e-3 * lambda_(20))


@pytest.mark.parametrize(
    "kind,optimizer,lr,linear_loss",
    [("regression", "sgd", 3e-4, 5.54), ("classification", "adam", 1e-3, 0.80)],
)
def test_an_lr_ten_times_too_low_is_raised(kind, optimizer, lr, linear_loss):
    model, scheduler, log, dataset = tuned_run(kind, lr, steps=STEPS, optimizer=optimizer)
    assert scheduler.tuner.multiplier >= 8.0
    assert len([r for r in log.records if r["multiplier"] != r["incumbent"]]) <= 2  # in two decisions: x2, then x4
    assert eval_loss(model, dataset, kind) < 0.55 * linear_loss  # classification: 0.42 (linear at 10x: 0.40)


def test_an_lr_ten_times_too_high_is_lowered():
    model, scheduler, log, dataset = tuned_run("regression", 0.3, steps=STEPS, optimizer="sgd")
    assert scheduler.tuner.multiplier <= 0.5 and all(log.params_finite)
    assert eval_loss(model, dataset, "regression") < 0.011  # linear at 0.3: 0.61


def test_a_divergent_lr_rolls_back_and_never_trains_on_from_a_diverged_state():
    model, scheduler, log, dataset = tuned_run("regression", 3.0, steps=STEPS, optimizer="sgd")
    tuner = scheduler.tuner
    assert tuner.rollbacks >= 1 and all(log.params_finite)  # checked after every update's after_update
    assert all(math.isfinite(loss) for loss in log.losses[log.records[-1]["step"] :])
    assert eval_loss(model, dataset, "regression") < 0.011  # linear at 3.0: NaN


def test_a_collapse_to_a_constant_predictor_is_rolled_back():
    # SGD with momentum at 0.8 on a 10-class MLP: the loss settles near ln 10 (linear: 2.05 final). It stays finite,
    # so only the comparison with the run's own progress can see it. No races here: the monitor alone acts.
    dataset, model, optimizer = make_run("classification", 0.8, optimizer="sgd", classes=10)
    scheduler = LRTunerScheduler(optimizer, STEPS, LRTunerConfig(max_races=0))
    train(model, optimizer, scheduler, dataset, "classification", STEPS)
    assert scheduler.tuner.rollbacks >= 1 and scheduler.tuner.multiplier <= 0.5
    assert eval_loss(model, dataset, "classification") < 1.0


def test_after_a_roll_back_the_back_off_goes_on_down_until_training_makes_progress(monkeypatch):
    # SGD with momentum at 3.2 on a 10-class MLP collapses; halved (1.6) it collapses again, and at 0.8 it learns only
    # a little before it stalls. Without a probation (0.3) the run stays there; with it, a third roll-back finds 0.4.
    def run():
        dataset, model, optimizer = make_run("classification", 3.2, optimizer="sgd", classes=10)
        scheduler = LRTunerScheduler(optimizer, STEPS, LRTunerConfig(max_races=0))
        log = train(model, optimizer, scheduler, dataset, "classification", STEPS)
        return scheduler.tuner, log, eval_loss(model, dataset, "classification")

    tuner, log, loss = run()
    assert [r["multiplier"] for r in log.records] == [0.5, 0.25, 0.125]
    stalled = log.records[-1]["step"] - log.records[-2]["step"]
    assert stalled == LossMonitor.SETTLE_UPDATES + tuner.probation  # the verdict at the end of the probation
    assert loss < 0.65
    monkeypatch.setattr(LRTuner, "PROBATION_SHARE", 0.0)
    tuner, log, loss_without = run()
    assert [r["multiplier"] for r in log.records] == [0.5, 0.25] and loss_without > 0.75


@pytest.mark.parametrize("kind,optimizer,lr", [("regression", "sgd", 3e-3), ("classification", "adam", 1e-2)])
def test_no_false_alarm_at_good_lrs_down_to_the_noise_floor(kind, optimizer, lr):
    _, scheduler, _, _ = tuned_run(kind, lr, steps=STEPS, optimizer=optimizer)
    assert scheduler.tuner.rollbacks == 0


def test_every_challenger_update_is_counted():
    _, scheduler, log, _ = tuned_run("classification", 1e-3, steps=STEPS, optimizer="adam")
    tuner = scheduler.tuner
    races = [r for r in log.records if "multipliers" in r]
    raced = [updates for r in races for updates in r["updates"][1:]]
    assert tuner.trial_updates == sum(raced) == races[-1]["trial_updates"]
    assert any(0 < u < h for r in races for u, h in zip(r["updates"][1:], r["horizons"][1:]))  # one stopped early
    assert tuner.trial_updates <= tuner.trial_budget


def resume_from(step, lr=1e-3):
    """Run to `step`, checkpoint through torch.save/torch.load(weights_only=True), continue in fresh objects."""
    config = LRTunerConfig(warmup_steps=30, race_horizon=20)
    dataset, model, optimizer = make_run("classification", lr)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=STEPS, config=config)
    first = train(model, optimizer, scheduler, dataset, "classification", steps=step)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    _, model, optimizer = make_run("classification", lr, seed=123)  # different init: all must come from the checkpoint
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler = LRTunerScheduler(optimizer, num_training_steps=STEPS, config=config)
    scheduler.load_state_dict(checkpoint["scheduler"])
    second = train(model, optimizer, scheduler, dataset, "classification", steps=STEPS, start=step)
    return first.lrs + second.lrs, scheduler.tuner


def test_resuming_between_races_gives_the_same_lr_sequence():
    dataset, model, optimizer = make_run("classification", 1e-3)
    scheduler = LRTunerScheduler(optimizer, STEPS, LRTunerConfig(warmup_steps=30, race_horizon=20))
    uninterrupted = train(model, optimizer, scheduler, dataset, "classification", steps=STEPS)
    assert [r["end_step"] for r in uninterrupted.records] == [20, 40, 60]  # checkpoint 40 falls between two races
    lrs, tuner = resume_from(40)
    assert lrs == uninterrupted.lrs and tuner.records == scheduler.tuner.records


def test_resuming_inside_a_race_without_the_runners_state_abandons_it_and_races_again_deterministically():
    lrs, tuner = resume_from(50)  # the race over 40-59 lost its snapshot and batches
    assert [r["step"] for r in tuner.records] == [0, 20, 50]
    assert resume_from(50)[0] == lrs


def checkpointed_run(directory, kind, optimizer, lr, dropout, steps=100, resume_at=None):
    """A plain loop that saves what the TrialRunner docstring lists after every update (with
    `save_checkpoint_file`), or resumes from the file of update `resume_at`. Returns the LRs it applied, its tuner
    and its model."""
    config = LRTunerConfig(warmup_steps=10, race_horizon=10, race_margin=0.0, min_improvement=0.0)
    dataset, model, optimizer = make_run(kind, lr, optimizer, dropout=dropout)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=steps, config=config)
    train_step = make_train_step(model, optimizer, make_loss_fn(model, kind))
    torch.manual_seed(3)
    saved = None
    if resume_at is not None:
        saved, _ = load_checkpoint_file(str(directory / f"{resume_at}.pt"))
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
    runner = TrialRunner(model, optimizer, scheduler, train_step, state=saved and saved["runner"])
    lrs = []
    for step in range(resume_at or 0, steps):
        lrs.append(scheduler.get_last_lr()[0])
        batch = batch_at(dataset, step, 32)
        loss = train_step(batch)
        scheduler.step()
        runner.after_update(batch, loss)
        if resume_at is None:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                     "scheduler": scheduler.state_dict(), "runner": runner.state_dict()}
            save_checkpoint_file(state, str(directory / f"{step + 1}.pt"))
    return lrs, scheduler.tuner, model


@pytest.mark.parametrize("kind,optimizer,lr,dropout", [("regression", "sgd", 3.0, 0.0),  # races and roll-backs
                                                       ("classification", "adam", 1e-3, 0.2)])  # dropout in races
def test_a_plain_loop_resumed_after_any_update_is_the_uninterrupted_run(tmp_path, kind, optimizer, lr, dropout):
    lrs, tuner, model = checkpointed_run(tmp_path, kind, optimizer, lr, dropout)
    assert len(tuner.records) >= 3 and tuner.trial_updates > 0
    assert (tuner.rollbacks > 0) == (kind == "regression")
    race_steps = {s for r in tuner.records if "end_step" in r for s in range(r["step"] + 1, r["end_step"])}
    for step in range(1, 100):
        resumed_lrs, resumed, resumed_model = checkpointed_run(tmp_path, kind, optimizer, lr, dropout, resume_at=step)
        assert resumed_lrs == lrs[step:], step
        assert json.dumps(resumed.records) == json.dumps(tuner.records), step  # NaN scores: compared as text
        assert resumed.trial_updates == tuner.trial_updates, step
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     resumed_model.state_dict().values())), step
    assert len(race_steps) >= 5  # several of those resumes fell inside a race (8 and 27 of them with 0.4's rule)


def test_a_runner_state_from_another_checkpoint_is_refused(tmp_path):
    checkpointed_run(tmp_path, "classification", "adam", 1e-3, 0.0, steps=30)
    dataset, model, optimizer = make_run("classification", 1e-3)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=30, config=LRTunerConfig(warmup_steps=10, race_horizon=10,
                                 race_margin=0.0, min_improvement=0.0))
    scheduler.load_state_dict(load_checkpoint_file(str(tmp_path / "15.pt"))[0]["scheduler"])
    other = load_checkpoint_file(str(tmp_path / "17.pt"))[0]["runner"]
    with pytest.raises(ValueError, match=r"does not belong to the scheduler state.*step 17 \(runner state\) vs 15 "
                                         r"\(scheduler\).*Load both from the same checkpoint"):
        TrialRunner(model, optimizer, scheduler, lambda batch: None, state=other)
    wrong_model = load_checkpoint_file(str(tmp_path / "15.pt"))[0]["runner"]
    wrong_model["snapshot"]["tensors"][0] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"snapshot's 0.weight is \(3, 3\) torch.float32, this run's \(64, 10\)"):
        TrialRunner(model, optimizer, scheduler, lambda batch: None, state=wrong_model)


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


def training_state(model, optimizer):
    """Copies of every tensor a snapshot must bring back: parameters, buffers, optimizer state."""
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [state[key] for state in optimizer.state.values() for key in sorted(state)]
    return [t.detach().clone() for t in tensors]


def same_state(saved, model, optimizer):
    current = training_state(model, optimizer)
    return len(saved) == len(current) and all(
        a.device == b.device and a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(saved, current)
    )


@pytest.mark.parametrize("device", [None, "cpu"])
def test_snapshot_buffers_are_allocated_once_and_restore_bit_identically(device):
    dataset, model, optimizer = make_run("classification", 1e-2)
    train_step = make_train_step(model, optimizer, make_loss_fn(model, "classification"))
    train_step(batch_at(dataset, 0, 32))
    snapshot = TrainingSnapshot(model, optimizer, device=device)
    snapshot.capture()
    params = sum(p.numel() for p in model.parameters())
    assert snapshot.nbytes == 4 * 3 * params + 4 * len(optimizer.state)  # weights, Adam's two moments, its steps
    buffers = [id(c.values) for c in snapshot._tensor_copies]
    for step in range(1, 4):
        train_step(batch_at(dataset, step, 32))
    saved = training_state(model, optimizer)
    snapshot.capture()  # into the same buffers
    assert [id(c.values) for c in snapshot._tensor_copies] == buffers
    optimizer.param_groups[0]["lr"] = 1.0
    for step in range(4, 7):
        train_step(batch_at(dataset, step, 32))
    snapshot.restore()
    assert same_state(saved, model, optimizer) and optimizer.param_groups[0]["lr"] == 1e-2


def test_optimizer_state_dropped_or_reshaped_during_a_trial_is_rebuilt_from_the_snapshot():
    dataset, model, optimizer = make_run("classification", 1e-2)
    train_step = make_train_step(model, optimizer, make_loss_fn(model, "classification"))
    train_step(batch_at(dataset, 0, 32))
    snapshot = TrainingSnapshot(model, optimizer, device="cpu")
    snapshot.capture()
    saved = training_state(model, optimizer)
    first, second = list(optimizer.state.values())[:2]
    del first["exp_avg"]
    second["exp_avg_sq"] = torch.zeros(3)
    snapshot.restore()
    assert same_state(saved, model, optimizer)


def test_snapshots_in_host_memory_train_exactly_as_snapshots_on_the_training_device():
    runs = [tuned_run("classification", 1e-3, steps=120, optimizer="adam",
                      config=LRTunerConfig(warmup_steps=10, race_horizon=20, snapshot_device=device))
            for device in (None, "cpu")]
    (model, scheduler, log, _), (model_cpu, scheduler_cpu, log_cpu, _) = runs
    assert len(log.records) >= 2 and log_cpu.records == log.records and log_cpu.lrs == log.lrs
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_cpu.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned host copies of CUDA tensors need CUDA")
def test_cuda_training_with_snapshots_pinned_in_host_memory():
    def run(device):
        dataset, model, optimizer = make_run("classification", 1e-3)
        model.cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        dataset = torch.utils.data.TensorDataset(*(t.cuda() for t in dataset.tensors))
        scheduler = LRTunerScheduler(optimizer, 120, LRTunerConfig(warmup_steps=10, race_horizon=20,
                                                                   snapshot_device=device))
        return model, optimizer, train(model, optimizer, scheduler, dataset, "classification", 120)

    model, optimizer, log = run(None)
    model_cpu, optimizer_cpu, log_cpu = run("cpu")
    assert len(log.records) >= 2 and log_cpu.records == log.records and log_cpu.lrs == log.lrs
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_cpu.parameters()))
    snapshot = TrainingSnapshot(model_cpu, optimizer_cpu, device="cpu")
    snapshot.capture()
    assert all(c.values.device.type == "cpu" and c.values.is_pinned() for c in snapshot._tensor_copies)
    saved = training_state(model_cpu, optimizer_cpu)
    make_train_step(model_cpu, optimizer_cpu, make_loss_fn(model_cpu, "classification"))(
        (torch.randn(32, 10, device="cuda"), torch.randint(0, 4, (32,), device="cuda")))
    snapshot.restore()
    assert same_state(saved, model_cpu, optimizer_cpu)


def test_runner_refuses_a_scheduler_of_another_optimizer_or_without_a_budget():
    model = linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="different optimizer"):
        TrialRunner(model, optimizer, LRTunerScheduler(other, num_training_steps=10), train_step=lambda b: 0.0)
    with pytest.raises(ValueError, match="no budget yet"):
        TrialRunner(model, optimizer, LRTunerScheduler(optimizer), train_step=lambda b: 0.0)


def test_roll_back_returns_to_the_safe_point_and_lowers_the_multiplier():
    dataset, model = regression_data(), linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scheduler = LRTunerScheduler(optimizer, 100, LRTunerConfig(race_horizon=10, max_races=0))  # no race
    train_step = make_train_step(model, optimizer, make_loss_fn(model, "regression"))
    runner = TrialRunner(model, optimizer, scheduler, train_step)
    for step in range(15):  # a safe point is taken at update 10, one race horizon after the start
        batch = batch_at(dataset, step, 32)
        loss = train_step(batch)
        scheduler.step()
        runner.after_update(batch, loss)
        if step == 9:
            at_safe_point = [p.detach().clone() for p in model.parameters()]
    record = runner.roll_back()
    assert record == scheduler.tuner.records[-1] == {"step": 15, "rollback_to": 10, "multiplier": 0.5}
    assert all(torch.equal(p, saved) for p, saved in zip(model.parameters(), at_safe_point))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5 * (100 - 15) / 100)
    assert scheduler.tuner.rollbacks == 1 and scheduler.last_epoch == 15  # the budget is not rolled back


def test_after_update_needs_exactly_one_scheduler_step_per_update():
    dataset, model = regression_data(), linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scheduler = LRTunerScheduler(optimizer, 100, LRTunerConfig(race_horizon=10))
    train_step = make_train_step(model, optimizer, make_loss_fn(model, "regression"))
    runner = TrialRunner(model, optimizer, scheduler, train_step)
    batch = batch_at(dataset, 0, 32)
    loss = train_step(batch)
    with pytest.raises(RuntimeError, match="moved from step 0 to 0"):  # scheduler.step() forgotten
        runner.after_update(batch, loss)
    scheduler.step()
    scheduler.step()
    with pytest.raises(RuntimeError, match="moved from step 0 to 2.*accelerator.prepare"):
        runner.after_update(batch, loss)
