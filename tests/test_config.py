import pytest

from hf_lrtuner import LRTunerConfig

BAD_VALUES = [
    ("warmup_steps", -1),
    ("warmup_steps", 2.5),
    ("explore_fraction", -0.1),
    ("explore_fraction", 1.5),
    ("explore_fraction", float("nan")),
    ("tune_every", 0),
    ("trial_steps", 0),
    ("probe_batches", 1),
    ("search_factor", 1.0),
    ("search_factor", 0.5),
    ("max_search_extensions", -1),
    ("noise_tolerance", -0.5),
    ("min_multiplier", 0.0),
    ("min_multiplier", 2.0),
    ("max_multiplier", 0.5),
    ("divergence_ratio", 1.0),
    ("unsafe_tuning_points", 0),
    ("max_trial_fraction", 1.2),
    ("max_trial_fraction", -0.1),
    ("tune_in_exploit", "yes"),
    ("seed", -3),
    ("trial_steps", True),
    ("search_factor", "2"),
]


@pytest.mark.parametrize("field,value", BAD_VALUES)
def test_bad_value_names_field_value_and_range(field, value):
    with pytest.raises(ValueError) as error:
        LRTunerConfig(**{field: value})
    message = str(error.value)
    assert f"LRTunerConfig.{field}={value!r}" in message
    assert "must be" in message


def test_tuning_interval_shorter_than_a_trial_is_refused():
    with pytest.raises(ValueError, match=r"tune_every=5 .*trial_steps=5.*must be > trial_steps"):
        LRTunerConfig(tune_every=5, trial_steps=5)


def test_defaults_are_valid_and_follow_the_budget():
    config = LRTunerConfig()
    assert (config.resolve_trial_steps(14_000), config.resolve_tune_every(14_000)) == (10, 700)
    assert (config.resolve_trial_steps(250), config.resolve_tune_every(250)) == (2, 12)
    assert (config.resolve_trial_steps(50), config.resolve_tune_every(50)) == (2, 3)
    assert LRTunerConfig(tune_every=40, trial_steps=5).resolve_tune_every(14_000) == 40


def test_an_explicit_tune_every_must_exceed_the_default_trial_length():
    from hf_lrtuner import LRTuner

    with pytest.raises(ValueError, match=r"tune_every=8 is not longer than a trial of 10 updates"):
        LRTuner(LRTunerConfig(tune_every=8), 14_000)
