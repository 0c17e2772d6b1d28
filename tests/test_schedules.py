"""The knee schedule: warmup, constant, linear decay to 0, built on transformers' WSD schedule; the shape the tuner
scales."""

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from hf_lrtuner.config import decay_start
from hf_lrtuner.schedules import get_knee_schedule


def lr_factors(make_scheduler, steps):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer)
    factors = []
    for _ in range(steps + 1):
        factors.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return factors


def test_knee_shape():
    factors = lr_factors(lambda optimizer: get_knee_schedule(optimizer, 10, 100), 100)
    assert factors[0] == 0.0 and factors[5] == pytest.approx(0.5)
    assert factors[10:51] == [1.0] * 41  # constant from the end of warmup to the knee at 50% of the updates
    assert factors[75] == pytest.approx(0.5) and factors[100] == 0.0


def by_hand(warmup, steps, knee):
    """The knee schedule's factor after each of 0..steps updates, from its definition."""
    factors = []
    for step in range(steps + 1):
        if step < warmup:
            factors.append(step / warmup)
        elif step < knee:
            factors.append(1.0)
        else:
            factors.append((steps - step) / (steps - knee) if step < steps else 0.0)
    return factors


@pytest.mark.parametrize(
    "warmup, steps, explore_fraction, knee",
    [
        (7, 93, 0.6, 56),  # warmup, stable, decay
        (10, 100, 0.0, 10),  # no stable phase: Trainer's linear
        (20, 40, 0.3, 20),  # warmup longer than the explore fraction: the knee waits for warmup's end
        (10, 100, 1.0, 100),  # no decay: constant to the end, 0 after the last update
        (0, 50, 0.5, 25),  # no warmup: starts at the full LR
        (30, 30, 0.5, 30),  # warmup is the whole budget
    ],
)
def test_knee_maps_onto_transformers_wsd_phases(warmup, steps, explore_fraction, knee):
    assert decay_start(steps, warmup, explore_fraction) == knee
    factors = lr_factors(lambda optimizer: get_knee_schedule(optimizer, warmup, steps, explore_fraction), steps)
    assert factors == pytest.approx(by_hand(warmup, steps, knee))


def test_knee_resumes_from_last_epoch():
    uninterrupted = lr_factors(lambda optimizer: get_knee_schedule(optimizer, 10, 100), 100)

    def resumed_after_60_updates(optimizer):
        get_knee_schedule(optimizer, 10, 100)  # sets the groups' initial_lr, as the first run's scheduler did
        optimizer.param_groups[0]["lr"] = 123.0  # whatever the optimizer's state holds, the schedule sets it
        return get_knee_schedule(optimizer, 10, 100, last_epoch=59)

    assert lr_factors(resumed_after_60_updates, 40) == pytest.approx(uninterrupted[60:])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_warmup_steps": 0, "num_training_steps": 0}, "num_training_steps must be at least 1"),
        ({"num_warmup_steps": 11, "num_training_steps": 10}, "num_warmup_steps must be between 0 and"),
        ({"num_warmup_steps": 1, "num_training_steps": 10, "explore_fraction": 1.5}, "explore_fraction must be"),
    ],
)
def test_knee_rejects_bad_arguments(kwargs, message):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=message):
        get_knee_schedule(optimizer, **kwargs)


@pytest.mark.parametrize("warmup, explore_fraction", [(10, 0.0), (10, 0.5), (0, 0.3), (25, 0.1)])
def test_knee_is_the_shape_the_tuner_scales(warmup, explore_fraction):
    # A tuner that never changes its level (no races) follows the knee schedule exactly
    from hf_lrtuner import LRTunerConfig, LRTunerScheduler

    steps = 100
    knee = lr_factors(lambda optimizer: get_knee_schedule(optimizer, warmup, steps, explore_fraction), steps)
    config = LRTunerConfig(warmup_steps=warmup, explore_fraction=explore_fraction, max_races=0)
    tuner = lr_factors(lambda optimizer: LRTunerScheduler(optimizer, steps, config), steps)
    assert tuner == pytest.approx(knee)


def test_knee_without_explore_is_trainers_linear_schedule():
    linear = lr_factors(lambda optimizer: get_linear_schedule_with_warmup(optimizer, 10, 100), 100)
    assert lr_factors(lambda optimizer: get_knee_schedule(optimizer, 10, 100, explore_fraction=0.0), 100) == (
        pytest.approx(linear)
    )
