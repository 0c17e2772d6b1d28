"""The knee schedule: warmup, constant, linear decay to 0."""

import pytest
import torch
from transformers import get_wsd_schedule

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
