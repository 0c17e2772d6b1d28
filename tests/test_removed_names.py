"""Names of earlier releases raise an error that says what replaced them (CHANGELOG.md), as a user of 0.1-0.3 code
meets them, not a bare AttributeError or TypeError."""

import importlib
import sys

import pytest
import torch

import hf_lrtuner
from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner


@pytest.fixture
def runner():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = LRTunerScheduler(optimizer, 100, LRTunerConfig(warmup_steps=10))
    return TrialRunner(model, optimizer, scheduler, train_step=lambda batch: 0.0)


def test_trial_runner_of_0_1_with_loss_fn_and_batches(runner):
    model, optimizer, scheduler = runner.model, runner.optimizer, runner.scheduler
    loss_fn, batches = (lambda batch: 0.0), [None]
    for call in (lambda: TrialRunner(model, optimizer, scheduler, lambda b: 0.0, loss_fn=loss_fn, batches=batches),
                 lambda: TrialRunner(model, optimizer, scheduler, lambda b: 0.0, loss_fn, batches)):  # positional
        with pytest.raises(TypeError, match=r"no loss_fn or batches since 0.2 .*runner.after_update\(batch, loss\)"):
            call()
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['probe_batches'\\]"):
        TrialRunner(model, optimizer, scheduler, lambda b: 0.0, probe_batches=4)


@pytest.mark.parametrize(
    "name, replacement",
    [("maybe_tune", r"after_update\(batch, loss\)"), ("check_loss", r"after_update\(batch, loss\)"),
     ("rollbacks", r"runner.tuner.rollbacks")],
)
def test_trial_runner_names_of_0_1(runner, name, replacement):
    with pytest.raises(AttributeError, match=rf"TrialRunner.{name} was removed: .*{replacement}.*CHANGELOG.md"):
        getattr(runner, name)


@pytest.mark.parametrize(
    "owner, name, replacement",
    [("tuner", "probe_passes", "trial_updates"), ("tuner", "level", "multiplier"),
     ("tuner", "multiplier_at", r"lr_factor_at\(step, multiplier=None\)"),
     ("scheduler", "multiplier_at_step", r"lr_factor\(\)"), ("scheduler", "tune", "races")],
)
def test_tuner_and_scheduler_names_of_earlier_releases(runner, owner, name, replacement):
    target = runner.tuner if owner == "tuner" else runner.scheduler
    with pytest.raises(AttributeError, match=rf"\.{name} was removed: .*{replacement}"):
        getattr(target, name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):  # other names: the usual error
        target.no_such_name
    assert not hasattr(target, name)


def test_lr_factor_is_the_multiplier_times_the_schedule_shape(runner):
    scheduler = runner.scheduler
    scheduler.tuner.multiplier = 3.0
    for _ in range(4):
        scheduler.optimizer.step()
        scheduler.step()
    assert scheduler.lr_factor() == scheduler.tuner.lr_factor_at(4) == pytest.approx(3.0 * 0.4)
    assert scheduler.tuner.lr_factor_at(4, multiplier=1.0) == pytest.approx(0.4)


def test_top_level_internals_and_the_squad_metrics_module(monkeypatch):
    for name, module in (("LRTuner", "tuner"), ("LossMonitor", "tuner"), ("TrainingSnapshot", "snapshot")):
        with pytest.raises(AttributeError, match=f"from hf_lrtuner.{module} import {name}"):
            getattr(hf_lrtuner, name)
        assert getattr(importlib.import_module(f"hf_lrtuner.{module}"), name).__name__ == name
    assert set(hf_lrtuner.__all__) == {"LRTunerCallback", "LRTunerConfig", "LRTunerScheduler", "LRTunerTrainer",
                                       "LRTunerTrainerMixin", "RaceRecord", "RollbackRecord", "TrialRunner",
                                       "TuningRecord", "load_records"}
    monkeypatch.delitem(sys.modules, "hf_lrtuner.squad_metrics", raising=False)
    with pytest.raises(ImportError, match="from hf_lrtuner.squad"):
        importlib.import_module("hf_lrtuner.squad_metrics")
