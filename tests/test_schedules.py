"""The knee schedule: warmup, constant, linear decay to 0; the shape the tuner scales."""

import pytest
import torch
from transformers import get_linear_schedule_with_warmup, get_wsd_schedule

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


def test_knee_equals_linear_warmup_stable_decay():
    ours = lr_factors(lambda optimizer: get_knee_schedule(optimizer, 7, 93, explore_fraction=0.6), 93)
    wsd = lr_factors(
        lambda optimizer: get_wsd_schedule(
            optimizer, num_warmup_steps=7, num_stable_steps=56 - 7, num_decay_steps=93 - 56, decay_type="linear"
        ),
        93,
    )
    assert ours == pytest.approx(wsd)


def test_knee_never_before_warmup_ends():
    factors = lr_factors(lambda optimizer: get_knee_schedule(optimizer, 20, 40, explore_fraction=0.0), 40)
    assert max(factors) == factors[20] == 1.0 and factors[30] == pytest.approx(0.5)


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
