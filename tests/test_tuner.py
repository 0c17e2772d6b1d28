"""The algorithm core on synthetic scores: choice rules, envelope, safety, state."""

import math

import pytest

from hf_lrtuner import LRTuner, LRTunerConfig

NOISE = [0.04, -0.03, 0.05, -0.06]  # per-probe-batch noise shared by all candidates (common random numbers)


def make_tuner(total_steps=1000, **overrides):
    settings = dict(tune_every=100, trial_steps=5, probe_batches=4, max_search_extensions=0, max_trial_fraction=1.0)
    settings.update(overrides)
    return LRTuner(LRTunerConfig(**settings), total_steps)


def scores_from(curve, noise_per_candidate=None):
    """A `run_trial` whose per-batch loss is `curve(lr_factor)` plus noise; records the factors it was asked for."""
    asked = []

    def run_trial(lr_factor):
        asked.append(lr_factor)
        extra = noise_per_candidate(lr_factor) if noise_per_candidate else [0.0] * 4
        return [curve(lr_factor) + n + e for n, e in zip(NOISE, extra)]

    run_trial.asked = asked
    return run_trial


REFERENCE = [2.0, 2.0, 2.0, 2.0]


def test_explore_picks_the_largest_candidate_equal_within_noise():
    # The smallest candidate has the lowest mean score, but only by less than the paired noise: a greedy
    # lowest-score rule would take it; LRTuner takes the largest one.
    jitter = {0.5: [0.0, 0.0, 0.0, 0.0], 1.0: [0.03, -0.02, 0.01, 0.0], 2.0: [0.05, -0.04, 0.03, -0.01]}
    tuner = make_tuner()
    record = tuner.tune(0, scores_from(lambda lr: 1.0, lambda lr: jitter[lr]), REFERENCE)
    assert record["scores"][0] == min(record["scores"])
    assert record["choice"] == 2.0
    assert tuner.multiplier == 2.0


def test_explore_picks_the_best_when_the_larger_is_clearly_worse():
    curve = {0.5: 1.0, 1.0: 0.9, 2.0: 1.4}
    tuner = make_tuner()
    record = tuner.tune(0, scores_from(lambda lr: curve[lr]), REFERENCE)
    assert record["choice"] == 1.0
    assert record["candidates"] == [0.5, 1.0, 2.0]


def test_explore_extends_the_search_beyond_the_edge():
    tuner = make_tuner(max_search_extensions=3)
    run_trial = scores_from(lambda lr: 1.0 / (1.0 + lr))  # larger is always better: keep climbing
    tuner.tune(0, run_trial, REFERENCE)
    assert run_trial.asked == [1.0, 2.0, 0.5, 4.0, 8.0, 16.0]  # current level first, then larger
    assert tuner.multiplier == 16.0


def test_explore_stays_within_lr_bounds():
    tuner = make_tuner(max_search_extensions=5, max_multiplier=3.0)
    run_trial = scores_from(lambda lr: 1.0 / (1.0 + lr))
    tuner.tune(0, run_trial, REFERENCE)
    assert max(run_trial.asked) == 3.0 and tuner.multiplier == 3.0


def test_candidates_that_do_not_improve_on_the_current_state_are_not_chosen():
    # 1.0 is equal to the best (0.5) within noise, but measurably worse than no update at all (the reference).
    per_batch = {0.5: [0.6, 1.2, 0.6, 1.2], 1.0: [1.05] * 4, 2.0: [1.4] * 4}
    tuner = make_tuner()
    record = tuner.tune(0, lambda lr: per_batch[lr], [1.0] * 4)
    assert record["choice"] == 0.5


def test_a_diverged_trial_marks_that_lr_and_larger_ones_unsafe_for_a_while():
    tuner = make_tuner(unsafe_tuning_points=2)
    curve = lambda lr: math.inf if lr >= 2.0 else 1.0 - 0.1 * lr  # noqa: E731
    record = tuner.tune(0, scores_from(curve), REFERENCE)
    assert record["diverged"] == [False, False, True] and record["choice"] == 1.0
    tuner.multiplier = 4.0  # even if the multiplier were pushed up, unsafe LRs are not tried again...
    run_trial = scores_from(lambda lr: 1.0 - 0.1 * lr)
    tuner.tune(100, run_trial, REFERENCE)
    assert max(run_trial.asked) < 2.0
    run_trial = scores_from(lambda lr: 1.0 - 0.1 * lr)
    tuner.tune(300, run_trial, REFERENCE)  # ...until the mark expires
    assert max(run_trial.asked) >= 2.0


def test_an_exploding_but_finite_trial_counts_as_diverged():
    tuner = make_tuner(divergence_ratio=1.5)
    curve = {0.5: 1.0, 1.0: 0.9, 2.0: 3.5}  # 3.5 > 1.5 * reference 2.0
    record = tuner.tune(0, scores_from(lambda lr: curve[lr]), REFERENCE)
    assert record["diverged"] == [False, False, True]
    assert not tuner.is_safe(2.0, 0) and tuner.is_safe(1.0, 0)


def test_when_every_candidate_diverges_the_lr_backs_off_below_them():
    tuner = make_tuner(max_search_extensions=2)
    run_trial = scores_from(lambda lr: math.inf if lr > 0.1 else 1.0)
    tuner.tune(0, run_trial, REFERENCE)
    assert run_trial.asked == [1.0, 2.0, 0.5, 0.25, 0.125]
    assert tuner.multiplier == 0.0625


def test_schedule_warmup_explore_exploit_and_zero_at_the_end():
    tuner = make_tuner(total_steps=100, warmup_steps=10, tune_every=20, explore_fraction=0.5)
    assert [tuner.multiplier_at(s) for s in (0, 5, 10, 49)] == [0.0, 0.5, 1.0, 1.0]
    assert tuner.multiplier_at(50) == 1.0 and tuner.multiplier_at(75) == 0.5
    assert tuner.multiplier_at(100) == 0.0
    assert [tuner.phase(s) for s in (0, 10, 50)] == ["warmup", "explore", "exploit"]


def test_exploit_never_goes_above_the_envelope_and_decays_faster_only_when_measurably_better():
    tuner = make_tuner(total_steps=1000, explore_fraction=0.5, max_search_extensions=2)
    # equal scores: keep the envelope
    record = tuner.tune(500, scores_from(lambda lr: 1.0), REFERENCE)
    assert record["choice"] == 1.0 and tuner.multiplier_at(600) == tuner.envelope(600)
    # a lower LR is clearly better: decay faster, by one factor per tuning point
    for step, expected_scale in ((600, 0.5), (700, 0.25)):
        run_trial = scores_from(lambda lr: 1.0 + lr)
        tuner.tune(step, run_trial, REFERENCE)
        assert all(lr <= tuner.envelope(step) for lr in run_trial.asked)
        assert tuner.exploit_scale == expected_scale
    assert all(tuner.multiplier_at(s) <= tuner.envelope(s) for s in range(500, 1001))


def test_exploit_backs_off_when_the_envelope_lr_diverges():
    tuner = make_tuner(total_steps=1000, explore_fraction=0.5)
    envelope = tuner.envelope(500)
    record = tuner.tune(500, scores_from(lambda lr: math.inf if lr > 0.6 * envelope else 1.0), REFERENCE)
    assert record["diverged"] == [False, True] and tuner.exploit_scale == 0.5


def test_tuning_points_respect_interval_trial_budget_and_end_of_run():
    tuner = make_tuner(total_steps=1000, tune_every=100, max_trial_fraction=0.055)  # 55 trial updates in all
    assert tuner.is_tuning_point(0) and not tuner.is_tuning_point(50)
    tuner.tune(0, scores_from(lambda lr: 1.0), REFERENCE)
    assert not tuner.is_tuning_point(0)  # already done at this step
    assert tuner.trial_updates == 15
    tuner.tune(100, scores_from(lambda lr: 1.0), REFERENCE)
    tuner.tune(200, scores_from(lambda lr: 1.0), REFERENCE)
    assert tuner.trial_updates == 45 and not tuner.is_tuning_point(300)  # 10 left: not enough for 3 candidates
    assert not make_tuner(total_steps=1000).is_tuning_point(998)  # a trial would run past the budget


def test_diverged_since_last_tuning_compares_reference_losses():
    tuner = make_tuner(divergence_ratio=1.5)
    tuner.tune(0, scores_from(lambda lr: 1.0), [1.0, 1.0, 1.0, 1.0])
    assert not tuner.diverged_since_last_tuning([1.4, 1.4, 1.4, 1.4])
    assert tuner.diverged_since_last_tuning([1.6, 1.6, 1.6, 1.6])
    assert tuner.diverged_since_last_tuning([1.0, math.nan, 1.0, 1.0])


def test_back_off_lowers_the_lr_marks_it_unsafe_and_forces_a_tuning_point():
    tuner = make_tuner()
    tuner.back_off(42)
    assert tuner.multiplier == 0.5 and not tuner.is_safe(1.0, 42)
    assert tuner.is_tuning_point(43)


def test_state_dict_round_trip_keeps_every_decision():
    tuner = make_tuner(max_search_extensions=2)
    tuner.tune(0, scores_from(lambda lr: math.inf if lr > 3 else 1.0 / (1.0 + lr)), REFERENCE)
    restored = make_tuner(total_steps=7)  # a different budget: the state carries its own
    restored.load_state_dict(tuner.state_dict())
    assert restored.state_dict() == tuner.state_dict()
    assert [restored.multiplier_at(s) for s in range(0, 1000, 50)] == [tuner.multiplier_at(s) for s in range(0, 1000, 50)]


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="total_steps=0"):
        LRTuner(LRTunerConfig(), 0)
    with pytest.raises(ValueError, match="warmup_steps=20 exceeds the budget of 10"):
        LRTuner(LRTunerConfig(warmup_steps=20), 10)


def test_tuning_points_start_at_step_0_or_at_the_end_of_warmup():
    tuner = make_tuner(total_steps=1000, warmup_steps=30, tune_during_warmup=False)
    assert [s for s in range(200) if tuner.is_tuning_point(s)] == [30, 130]
    tuner = make_tuner(total_steps=1000, warmup_steps=30)
    assert [s for s in range(200) if tuner.is_tuning_point(s)] == [0, 100]
