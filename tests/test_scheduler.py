import io

import pytest
import torch

from hf_lrtuner import LRTunerConfig, LRTunerScheduler


def two_group_optimizer(lr=0.1):
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    return torch.optim.SGD([{"params": a.parameters()}, {"params": b.parameters(), "lr": lr / 10}], lr=lr)


def test_every_group_gets_its_base_lr_times_the_multiplier():
    optimizer = two_group_optimizer()
    scheduler = LRTunerScheduler(optimizer, num_training_steps=100, config=LRTunerConfig(warmup_steps=10))
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([0.05, 0.005])
    assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()
    scheduler.tuner.multiplier = 3.0  # as if a race chose it
    scheduler.apply_lr()
    assert scheduler.get_last_lr() == pytest.approx([0.15, 0.015])
    assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()


def test_tensor_lrs_are_updated_in_place():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], lr=torch.tensor(0.01))
    lr_tensor = optimizer.param_groups[0]["lr"]
    scheduler = LRTunerScheduler(optimizer, num_training_steps=10, config=LRTunerConfig(warmup_steps=2))
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr_tensor and float(lr_tensor) == pytest.approx(0.005)


def test_budget_can_be_set_later_but_not_changed():
    optimizer = two_group_optimizer()
    scheduler = LRTunerScheduler(optimizer, config=LRTunerConfig(warmup_steps=4))
    assert scheduler.num_training_steps is None and scheduler.get_last_lr() == [0.0, 0.0]
    scheduler.set_num_training_steps(40)
    assert scheduler.num_training_steps == 40
    with pytest.raises(ValueError, match="built for 40 updates but training runs 50"):
        scheduler.set_num_training_steps(50)


def test_state_dict_is_plain_and_loads_with_weights_only():
    optimizer = two_group_optimizer()
    config = LRTunerConfig(warmup_steps=10, race_margin=3.0)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=100, config=config)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    scheduler.tuner.back_off(12)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = LRTunerScheduler(two_group_optimizer(), num_training_steps=100, config=config)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == scheduler.state_dict()
    assert fresh.last_epoch == 12 and fresh.tuner.rollbacks == 1


def test_a_state_of_another_config_or_budget_is_refused_naming_what_differs():
    saved = LRTunerScheduler(two_group_optimizer(), 100, LRTunerConfig(warmup_steps=10, race_margin=3.0)).state_dict()
    other_config = LRTunerScheduler(two_group_optimizer(), 100, LRTunerConfig(warmup_steps=10))
    with pytest.raises(ValueError, match=r"another LRTunerConfig: race_margin=3.0 \(checkpoint\) vs 2.0 \(this "
                                         r"scheduler\)\. Resume with the checkpoint's settings"):
        other_config.load_state_dict(saved)
    other_budget = LRTunerScheduler(two_group_optimizer(), 80, LRTunerConfig(warmup_steps=10, race_margin=3.0))
    with pytest.raises(ValueError, match=r"for a budget of 100 updates \(num_training_steps\), this run's is 80.*"
                                         r"resume with max_steps=100"):
        other_budget.load_state_dict(saved)
    # the budget of a scheduler built without one (LRTunerCallback's) is checked when Trainer sets it
    no_budget = LRTunerScheduler(two_group_optimizer(), config=LRTunerConfig(warmup_steps=10, race_margin=3.0))
    no_budget.load_state_dict(saved)
    with pytest.raises(ValueError, match=r"for a budget of 100 updates \(num_training_steps\), this run's is 80"):
        no_budget.set_num_training_steps(80)
    with pytest.raises(ValueError, match=r"not an LRTunerScheduler state: it lacks \['tuner'\]"):
        no_budget.load_state_dict({k: v for k, v in saved.items() if k != "tuner"})


def test_a_resumed_scheduler_keeps_its_own_snapshot_device():
    """Where snapshots live depends on the machine: a run resumed elsewhere must not inherit the checkpoint's."""
    saved = LRTunerScheduler(two_group_optimizer(), 100, LRTunerConfig(race_margin=3.0, snapshot_device="cpu"))
    fresh = LRTunerScheduler(two_group_optimizer(), 100, LRTunerConfig(race_margin=3.0))
    fresh.load_state_dict(saved.state_dict())
    assert fresh.config.snapshot_device is None and fresh.config.race_margin == 3.0


def test_wrong_config_type_is_refused():
    with pytest.raises(TypeError, match="config must be an LRTunerConfig"):
        LRTunerScheduler(two_group_optimizer(), 10, config={"warmup_steps": 1})
