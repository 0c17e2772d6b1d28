import pytest
import torch

from hf_lrtuner import LRTunerConfig

BAD_VALUES = [
    ("warmup_steps", -1),
    ("warmup_steps", 2.5),
    ("explore_fraction", -0.1),
    ("explore_fraction", 1.5),
    ("explore_fraction", float("nan")),
    ("race_horizon", 1),
    ("race_horizon", 1.5),
    ("race_horizon", "0.2"),
    ("down_horizon", 0),
    ("max_races", -1),
    ("race_factor", 1.0),
    ("race_factor", 0.5),
    ("race_factor", "2"),
    ("race_margin", -0.5),
    ("min_improvement", 1.0),
    ("race_until", 0.0),
    ("race_until", 1.5),
    ("collapse_fraction", 0.0),
    ("min_multiplier", 0.0),
    ("min_multiplier", 2.0),
    ("max_multiplier", 0.5),
    ("max_races", True),
    ("snapshot_device", "gpu0"),
    ("snapshot_device", 1.5),
    ("improvement_of", "level"),
    ("accelerate", 1),
    ("stop_behind", "yes"),
    ("stop_down_margin", 0.0),
    ("stop_down_margin", "4"),
    ("refine", 1),
    ("stall_check", 1),
]


@pytest.mark.parametrize("field,value", BAD_VALUES)
def test_bad_value_names_field_value_and_range(field, value):
    with pytest.raises(ValueError) as error:
        LRTunerConfig(**{field: value})
    message = str(error.value)
    assert f"LRTunerConfig.{field}={value!r}" in message
    assert "must be" in message


def test_default_horizon_follows_the_budget_with_a_floor():
    config = LRTunerConfig()
    assert (config.resolve_race_horizon(14_000), config.resolve_down_horizon(14_000)) == (4200, 2100)
    assert (config.resolve_race_horizon(50), config.resolve_down_horizon(50)) == (20, 10)
    assert LRTunerConfig(race_horizon=0.1, down_horizon=0.05).resolve_down_horizon(1000) == 50
    assert LRTunerConfig(race_horizon=30.0).race_horizon == 30
    assert LRTunerConfig(race_horizon=7).resolve_race_horizon(14_000) == 7
    assert LRTunerConfig(race_horizon=40, down_horizon=3).resolve_down_horizon(14_000) == 3


def test_snapshot_device_is_kept_as_a_device_string():
    assert LRTunerConfig().snapshot_device is None
    assert LRTunerConfig(snapshot_device=torch.device("cpu")).snapshot_device == "cpu"
    assert LRTunerConfig(snapshot_device="cuda:1").snapshot_device == "cuda:1"  # parsed, not checked against devices
