"""The algorithm core on synthetic losses: races, margins, the plan, the schedule, the loss monitor, state."""

import io
import math

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from hf_lrtuner import LRTunerConfig
from hf_lrtuner.tuner import RULE_OF_0_3, ChallengerWatch, LossMonitor, LRTuner

NOISE = [0.03, -0.02, 0.04, -0.05, 0.01, -0.03, 0.02, 0.0, -0.01, 0.05]  # per-batch noise shared by every arm


def make_tuner(total_steps=1000, **overrides):
    settings = dict(race_horizon=20, down_horizon=10, warmup_steps=0)
    settings.update(overrides)
    return LRTuner(LRTunerConfig(**settings), total_steps)


def make_tuner_of_0_3(total_steps=1000, **overrides):
    """A tuner with release 0.3's rule: one factor per race, a margin on the loss level, no early stop."""
    return make_tuner(total_steps, **{**RULE_OF_0_3, "race_horizon": 20, **overrides})


def arm_losses(multiplier_loss, horizon=20, jitter=0.0, start=None):
    """Per-update losses of an arm whose late-race loss is `multiplier_loss`, with the batch noise every arm shares.

    With `start`, the run's first loss: the arm's loss falls from it to `multiplier_loss` over its first 5 updates (a
    run that makes progress, against which a margin on progress is measured)."""
    def level(i):
        if start is None:
            return multiplier_loss
        return multiplier_loss + (start - multiplier_loss) * max(0.0, 1 - i / 5)
    return [level(i) + NOISE[i % len(NOISE)] + jitter * ((-1) ** i) for i in range(horizon)]


def run_race(tuner, step, loss_of_multiplier, jitter_of_multiplier=lambda m: 0.0, start=None):
    """Drive one race as a runner would: the incumbent's losses, then each challenger's."""
    end = step + max(tuner.horizon_of(m) for m in tuner.next_challengers())
    tuner.start_race(step)
    incumbent = arm_losses(loss_of_multiplier(tuner.multiplier), end - step, start=start)
    for at in range(step + 1, end + 1):
        for m in tuner.challengers_due(at):
            losses = arm_losses(loss_of_multiplier(m), at - step, jitter_of_multiplier(m), start=start)
            tuner.score_challenger(m, losses, incumbent)
        if tuner.race_decided(at):
            return tuner.finish_race(at, incumbent[: at - step])


def test_a_tie_keeps_the_incumbent_and_settles_the_multiplier():
    tuner = make_tuner()
    record = run_race(tuner, 0, lambda m: 1.0, lambda m: 0.01 if m > 1 else 0.0)
    assert record["multipliers"] == [1.0, 0.5, 2.0] and record["multiplier"] == 1.0
    assert tuner.multiplier == 1.0 and tuner.settled
    assert not tuner.race_starts_at(20) and tuner.next_challengers() == []


def test_a_clearly_better_challenger_takes_over_and_the_next_race_goes_further_its_way():
    tuner = make_tuner()
    curve = {0.5: 1.3, 1.0: 1.2, 2.0: 1.0, 8.0: 0.9, 100.0: 3.0}
    record = run_race(tuner, 0, curve.get)
    assert record["multiplier"] == 2.0 and tuner.direction == 1
    assert tuner.next_challengers() == [8.0]  # one challenger, upward only, the factor squared: 4
    assert run_race(tuner, 20, curve.get)["multiplier"] == 8.0
    record = run_race(tuner, 40, curve.get)  # 8 * 16, clipped to max_multiplier, is worse: the multiplier settles
    assert record["multipliers"] == [8.0, 100.0] and record["multiplier"] == 8.0 and tuner.settled
    assert tuner.trial_updates == 10 + 3 * 20  # the downward challenger of the first race raced 10 updates


def test_the_rule_of_0_3_moves_one_factor_per_race():
    tuner = make_tuner_of_0_3()
    curve = {0.5: 1.3, 1.0: 1.2, 2.0: 1.0, 4.0: 0.95, 8.0: 0.96}
    assert run_race(tuner, 0, curve.get)["multiplier"] == 2.0
    assert tuner.next_challengers() == [4.0]
    assert run_race(tuner, 20, curve.get)["multiplier"] == 4.0
    record = run_race(tuner, 40, curve.get)
    assert record["multipliers"] == [4.0, 8.0] and record["multiplier"] == 4.0 and tuner.settled
    # Its margin is on the loss level: better by 0.004 on a loss of 1.0 is below 1% of it, whatever the progress.
    tuner = make_tuner_of_0_3(race_margin=0.0)
    assert run_race(tuner, 0, lambda m: 1.0 - 0.004 * (m > 1), start=1.4)["multiplier"] == 1.0


def test_a_challenger_must_win_by_the_margin():
    # Better by 0.004 with a first loss of 1.4 and a late-race loss of 1.0: below min_improvement (1%) of the progress
    # (0.4), so the user's LR stays. Better by 0.006: above it.
    tuner = make_tuner(race_margin=0.0)
    assert run_race(tuner, 0, lambda m: 1.0 - 0.003 * (m > 1), start=1.4)["multiplier"] == 1.0
    tuner = make_tuner(race_margin=0.0)
    assert run_race(tuner, 0, lambda m: 1.0 - 0.006 * (m > 1), start=1.4)["multiplier"] == 2.0
    # Better by 2%, but with paired noise so large that it is within race_margin standard errors.
    tuner = make_tuner(min_improvement=0.0)
    noisy = run_race(tuner, 0, lambda m: 1.0 - 0.02 * (m > 1), lambda m: 0.3 if m > 1 else 0.0)
    assert noisy["multiplier"] == 1.0
    tuner = make_tuner(min_improvement=0.0)
    assert run_race(tuner, 0, lambda m: 1.0 - 0.02 * (m > 1))["multiplier"] == 2.0


def test_arms_are_scored_on_the_second_half_of_the_race_only():
    """A race is scored on its late window (`LRTuner._window`): the second half of each arm's updates. Early losses
    say more about an LR's speed than about where it ends: a larger LR that falls fast and ends higher loses, one that
    starts badly and ends lower wins, though scoring the whole race would decide both the other way."""
    incumbent = arm_losses(1.0, 20)

    def race(early, late):  # the upward challenger (x2): `early` over its first 10 updates, `late` over its last 10
        tuner = make_tuner(stop_behind=False)
        tuner.start_race(0)
        assert tuner.challengers_due(10) == [0.5] and tuner.challengers_due(20) == [2.0]
        assert not tuner.score_challenger(0.5, incumbent[:10], incumbent)  # the downward one ties: no leader
        challenger = arm_losses(early, 10) + arm_losses(late, 20)[10:]
        wins = tuner.score_challenger(2.0, challenger, incumbent)
        record = tuner.finish_race(20, incumbent)
        assert record["scores"][2] == pytest.approx(sum(challenger[10:]) / 10)  # the late window's mean
        assert record["scores"][0] == pytest.approx(sum(incumbent[10:]) / 10)
        return wins, record["multiplier"]

    # Fast early, 0.05 worse late: over the whole race it would lead by 0.225 (margin about 0.13); late, it is behind.
    assert race(early=0.5, late=1.05) == (False, 1.0)
    # Slow early, 0.1 better late: over the whole race it would trail by 0.45; late, it wins by more than the margin.
    assert race(early=2.0, late=0.9) == (True, 2.0)


def test_a_downward_challenger_is_judged_early_and_ends_the_race_when_it_wins():
    tuner = make_tuner()
    record = run_race(tuner, 0, {0.5: 0.8, 1.0: 1.0, 2.0: 0.9}.get)
    assert record["multiplier"] == 0.5 and tuner.direction == -1 and record["end_step"] == 10
    assert tuner.trial_updates == 10  # the upward challenger never ran
    assert tuner.next_challengers() == [0.125] and tuner.horizon_of(0.125) == 10  # further down: the factor squared


def test_a_diverged_challenger_loses_and_its_multiplier_and_above_stay_unsafe():
    tuner = make_tuner()
    tuner.start_race(0)
    incumbent = arm_losses(1.0)
    assert not tuner.score_challenger(0.5, arm_losses(1.0, 10), incumbent)  # a tie: the incumbent still leads
    assert not tuner.score_challenger(2.0, [1.0, 1.5, math.inf], incumbent)
    record = tuner.finish_race(20, incumbent)
    assert record["diverged"] == [False, False, True] and tuner.unsafe_from == 2.0
    assert tuner.trial_updates == 10 + 3  # a stopped challenger costs only the updates it ran
    tuner.direction, tuner.multiplier = 1, 1.0
    assert tuner.next_challengers() == []  # 2.0 is unsafe


def test_races_respect_the_plan_the_budget_and_race_until():
    tuner = make_tuner(total_steps=200, race_horizon=30, max_races=2, race_until=0.5)
    assert tuner.trial_budget == 10 + 2 * 30
    assert tuner.race_starts_at(0) and tuner.race_starts_at(70) and not tuner.race_starts_at(71)
    curve = {0.5: 2.0, 1.0: 1.5, 2.0: 1.0, 8.0: 0.5}
    run_race(tuner, 0, curve.get)
    run_race(tuner, 30, curve.get)
    assert tuner.races_run == 2 and not tuner.race_starts_at(60)  # max_races reached, though 8 * 16 may be better
    assert tuner.multiplier == 8.0


def test_a_race_is_not_started_when_its_challengers_do_not_fit_the_budget():
    tuner = make_tuner(max_races=1)
    tuner.trial_updates = tuner.trial_budget - 20  # room for the upward challenger, not for both
    assert not tuner.race_starts_at(0)


def test_multipliers_stay_within_the_bounds():
    tuner = make_tuner(max_multiplier=3.0)
    tuner.multiplier, tuner.direction = 2.0, 1
    assert tuner.next_challengers() == [3.0]
    tuner.multiplier = 3.0
    assert tuner.next_challengers() == []


def test_the_schedule_is_trainers_linear_warmup_decay_scaled_by_the_multiplier():
    tuner = make_tuner(total_steps=100, warmup_steps=10)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    linear = get_linear_schedule_with_warmup(optimizer, 10, 100)
    for step in range(101):
        assert tuner.lr_factor_at(step) == pytest.approx(linear.lr_lambdas[0](step), abs=1e-12)
    tuner.multiplier = 3.0
    assert tuner.lr_factor_at(50) == pytest.approx(3.0 * linear.lr_lambdas[0](50))
    knee = make_tuner(total_steps=100, warmup_steps=10, explore_fraction=0.5)
    assert [knee.phase(s) for s in (5, 10, 49, 50)] == ["warmup", "stable", "stable", "decay"]
    assert knee.lr_factor_at(30) == 1.0 and knee.lr_factor_at(75) == 0.5 and knee.lr_factor_at(100) == 0.0


def feed(monitor, losses):
    return [monitor.update(loss) for loss in losses]


def test_monitor_sees_a_collapse_to_a_constant_predictor():
    # A 10-class classifier learns (2.30 -> 0.6), then collapses back to the uniform prediction: loss ln 10, finite.
    monitor = LossMonitor(collapse_fraction=0.5)
    learning = [2.30 - 1.7 * min(1.0, i / 40) + 0.05 * NOISE[i % 10] for i in range(80)]
    assert not any(feed(monitor, learning))
    assert any(feed(monitor, [math.log(10)] * 20))


def test_monitor_is_well_conditioned_near_zero_loss():
    # The release's ratio test called 0.023-0.032 against 0.009 a divergence; against the progress from 2.3 it is not.
    monitor = LossMonitor(collapse_fraction=0.5)
    feed(monitor, [2.3 * 0.9**i + 0.009 for i in range(100)])
    assert not any(feed(monitor, [0.023, 0.032, 0.027, 0.03, 0.025] * 4))


def test_monitor_ignores_noise_and_flags_non_finite_losses():
    monitor = LossMonitor(collapse_fraction=0.5)
    flat = [1.0 + 0.2 * NOISE[i % 10] * 10 for i in range(300)]  # no progress, noisy: never a divergence
    assert not any(feed(monitor, flat))
    assert monitor.update(math.nan) and monitor.update(math.inf)


def test_monitor_sees_a_loss_that_climbs_from_the_start():
    monitor = LossMonitor(collapse_fraction=0.5)
    flags = feed(monitor, [1.0 + 0.01 * NOISE[i % 10] + (0.05 * (i - 15) if i > 15 else 0.0) for i in range(40)])
    assert not any(flags[:15]) and any(flags)


def test_monitor_leaves_a_run_on_its_initial_plateau_alone():
    # A new binary head sits near ln 2, dips by 4% and comes back: no progress to collapse from (the release of this
    # monitor rolled such MiniLM runs back and halved their LR).
    monitor = LossMonitor(collapse_fraction=0.5)
    plateau = [0.693 + 0.002 * NOISE[i % 10] for i in range(40)]
    dip = [0.693 - 0.03 * min(1.0, i / 20) + 0.002 * NOISE[i % 10] for i in range(40)]
    assert not any(feed(monitor, plateau + dip + plateau))


def test_monitor_sees_a_loss_that_explodes_though_its_noise_grows_with_it():
    monitor = LossMonitor(collapse_fraction=0.5)
    feed(monitor, [1.0 + 0.05 * NOISE[i % 10] for i in range(30)])
    flags = feed(monitor, [1.0 * 2.0**i for i in range(1, 15)])
    assert any(flags[:5])


def test_back_off_lowers_the_multiplier_marks_it_unsafe_and_plans_a_race_downward():
    tuner = make_tuner()
    tuner.multiplier, tuner.settled = 4.0, True
    tuner.back_off(step=37)
    assert tuner.multiplier == 2.0 and tuner.unsafe_from == 4.0 and tuner.rollbacks == 1
    assert tuner.next_challengers() == [1.0]
    assert tuner.records[-1] == {"step": 37, "rollback_to": 0, "multiplier": 2.0}
    tuner.multiplier = tuner.config.min_multiplier
    with pytest.raises(FloatingPointError, match="lowest LR multiplier"):
        tuner.back_off(step=40)


def test_state_dict_round_trip_inside_a_race_with_weights_only():
    tuner = make_tuner()
    run_race(tuner, 0, {0.5: 1.3, 1.0: 1.2, 2.0: 1.0}.get)
    tuner.start_race(20)
    tuner.score_challenger(8.0, arm_losses(0.9), arm_losses(1.0))
    buffer = io.BytesIO()
    torch.save(tuner.state_dict(), buffer)
    buffer.seek(0)
    restored = LRTuner.from_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict() == tuner.state_dict()
    assert restored.racing and restored.race_start == 20
    for step in range(0, 1001, 50):
        assert restored.lr_factor_at(step) == tuner.lr_factor_at(step)


def test_a_state_saved_by_the_first_release_is_refused_with_a_reason():
    old = {"total_steps": 100, "config": {}, "multiplier": 2.0, "exploit_scale": 1.0, "records": []}
    with pytest.raises(ValueError, match="replaced by races"):
        LRTuner.from_state_dict(old)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget"):
        LRTuner(LRTunerConfig(), 0)
    with pytest.raises(ValueError, match="warmup_steps"):
        LRTuner(LRTunerConfig(warmup_steps=20), 10)


# ------------------------------------------------------------------------------------------------ safety after 0.3


def test_probation_sees_a_run_that_stops_learning_after_a_roll_back():
    collapsed = [2.19 + 0.02 * NOISE[i % 10] for i in range(80)]  # a constant predictor: no progress at all
    learning = [2.19 - 0.01 * i + 0.02 * NOISE[i % 10] for i in range(80)]
    for losses, stalls in ((collapsed, True), (learning, False)):
        monitor = LossMonitor(collapse_fraction=0.5)
        monitor.give_time(probation=30)
        verdicts = [monitor.update(loss) or monitor.stalled() for loss in losses]
        assert any(verdicts) == stalls
        if stalls:  # the verdict comes at the end of the probation: settle (20 updates) plus 30
            assert verdicts.index(True) == LossMonitor.SETTLE_UPDATES + 30 - 1
        assert not monitor.on_probation


def test_the_back_off_searches_down_until_training_makes_progress():
    tuner = make_tuner(total_steps=300)
    tuner.multiplier = 8.0
    flat = iter([2.19 + 0.02 * NOISE[i % 10] for i in range(1000)])
    tuner.back_off(step=25)  # a collapse seen at update 25
    assert tuner.multiplier == 4.0 and tuner.monitor.on_probation
    assert not tuner.race_starts_at(25) and not tuner.safe_point_due(100)  # nothing starts from a state on probation
    updates = next(i for i in range(200) if tuner.observe(next(flat))) + 1
    assert updates == LossMonitor.SETTLE_UPDATES + tuner.probation  # stalled: roll back again
    tuner.back_off(step=25 + updates)
    assert tuner.multiplier == 2.0 and tuner.rollbacks == 2
    learning = [2.19 - 0.01 * i + 0.02 * NOISE[i % 10] for i in range(100)]
    assert not any(tuner.observe(loss) for loss in learning)  # progress: the search stops here
    assert not tuner.monitor.on_probation and tuner.race_starts_at(100)
    # at the lowest multiplier a stall is not a divergence: nothing lower to try, and no error
    tuner.multiplier = tuner.config.min_multiplier
    tuner.monitor = LossMonitor(collapse_fraction=0.5)
    tuner.monitor.give_time(probation=tuner.probation)
    assert not any(tuner.observe(next(flat)) for _ in range(100))


def test_a_challenger_learning_below_a_collapsed_incumbent_is_not_stopped_as_diverged():
    # The run sits at the loss of a constant predictor (2.3) when a race starts. A lower-LR challenger learns (down to
    # 1.3), then its loss rises for a while (2.2): it gave back half of its own progress, which alone reads as a
    # divergence, but it is still below the collapsed incumbent.
    history = LossMonitor(collapse_fraction=0.5)
    feed(history, [2.3 + 0.01 * NOISE[i % 10] for i in range(40)])
    start = history.state_dict()
    incumbent = [2.3 + 0.01 * NOISE[i % 10] for i in range(100)]
    challenger = [2.3 - 0.025 * i + 0.01 * NOISE[i % 10] for i in range(40)] + [2.2] * 60
    assert any(feed(LossMonitor(0.5, start), challenger))  # on its own, the run's monitor stops it
    watch = ChallengerWatch(0.5, start)
    assert not any(watch.update(loss, own) for loss, own in zip(challenger, incumbent))
    # against an incumbent that learns (down to 1.3 and stays), the same challenger is stopped; a non-finite loss
    # always is
    healthy = [2.3 - 0.025 * min(i, 40) + 0.01 * NOISE[i % 10] for i in range(100)]
    watch = ChallengerWatch(0.5, start)
    assert any(watch.update(loss, own) for loss, own in zip(challenger, healthy))
    assert ChallengerWatch(0.5, start).update(math.nan, 2.3)


def test_an_upward_challenger_behind_the_incumbent_is_stopped_early_and_only_loses():
    tuner = make_tuner(race_horizon=40, down_horizon=20)
    tuner.start_race(0)
    incumbent = arm_losses(1.0, 40, start=2.0)
    behind = arm_losses(1.1, 40, start=2.0)
    stops = [k for k in range(1, 41) if tuner.challenger_behind(2.0, behind[:k], incumbent)]
    assert stops[0] == 20  # the first checkpoint, at half of the horizon
    assert not any(tuner.challenger_behind(0.5, behind[:k], incumbent) for k in range(1, 41))  # downward: never
    assert not tuner.score_challenger(0.5, arm_losses(1.0, 20, start=2.0), incumbent)
    assert not tuner.score_challenger(2.0, behind[:20], incumbent)
    record = tuner.finish_race(40, incumbent)
    assert record["horizons"] == [40, 20, 40] and record["updates"] == [40, 20, 20]
    assert record["diverged"] == [False, False, False] and tuner.unsafe_from is None  # behind is not unsafe
    assert tuner.trial_updates == 40 and record["multiplier"] == 1.0
    # an arm stopped before its horizon scores over what it ran; its difference is paired over the same updates
    assert record["scores"][2] == pytest.approx(sum(behind[10:20]) / 10)
    assert record["differences"][2][0] == pytest.approx(0.1)


def test_records_list_the_planned_horizon_of_an_arm_that_never_ran():
    tuner = make_tuner()
    record = run_race(tuner, 0, {0.5: 0.8, 1.0: 1.0, 2.0: 0.9}.get)  # the downward arm wins at 10: 2.0 never runs
    assert record["horizons"] == [10, 10, 20] and record["updates"] == [10, 10, 0]
    assert math.isnan(record["scores"][2]) and all(math.isnan(x) for x in record["differences"][2])
    assert record["diverged"] == [False, False, False]


def test_a_margin_on_progress_ignores_the_irreducible_part_of_the_loss():
    # The same race, with an irreducible loss of 0 and of 20 added to every arm: on progress the challenger wins both;
    # on the loss level (0.3) the margin (1% of 21) swallows the effect in the second.
    for offset in (0.0, 20.0):
        curve = {0.5: 1.3 + offset, 1.0: 1.0 + offset, 2.0: 0.9 + offset}
        assert run_race(make_tuner(), 0, curve.get, start=2.0 + offset)["multiplier"] == 2.0
        old = run_race(make_tuner_of_0_3(), 0, curve.get, start=2.0 + offset)["multiplier"]
        assert old == (2.0 if offset == 0.0 else 1.0)


# ------------------------------------------------------------------------------------------------ a noisy quadratic

CURVATURES = [1 / (i + 1) for i in range(100)]
GRADIENT_NOISE = 2.0


def quadratic_update(state, lr):
    """One SGD update of a noisy quadratic (Wu et al. 2018) in expectation: per coordinate of curvature h,
    E[x^2] <- (1 - lr h)^2 E[x^2] + lr^2 noise h."""
    return [(1 - lr * h) ** 2 * x + lr * lr * GRADIENT_NOISE * h for x, h in zip(state, CURVATURES)]


def quadratic_loss(state):
    return 0.5 * sum(h * x for h, x in zip(CURVATURES, state))


def quadratic_run(base_lr, total_steps=400, config=None):
    """Drive a tuner over the expected loss of plain SGD on a noisy quadratic. Races replay from the state at their
    start, as a runner would; the paired losses have no noise, so only `min_improvement` of the progress decides.
    Returns (tuner, final loss)."""
    tuner = LRTuner(config or LRTunerConfig(warmup_steps=total_steps // 10), total_steps)
    state, losses = [1.0] * len(CURVATURES), []
    for step in range(total_steps):
        if tuner.race_starts_at(step):
            tuner.start_race(step)
            start, losses, branch = state, [], None
        losses.append(quadratic_loss(state))
        state = quadratic_update(state, base_lr * tuner.lr_factor_at(step))
        assert not tuner.observe(losses[-1])
        for multiplier in tuner.challengers_due(step + 1):
            arm, replayed = start, []
            for at in range(tuner.race_start, step + 1):
                replayed.append(quadratic_loss(arm))
                arm = quadratic_update(arm, base_lr * tuner.lr_factor_at(at, multiplier))
                if tuner.challenger_behind(multiplier, replayed, losses):
                    break
            if tuner.score_challenger(multiplier, replayed, losses):
                branch = arm
        if tuner.race_decided(step + 1):
            record = tuner.finish_race(step + 1, losses)
            state = branch if record["multiplier"] != record["incumbent"] else state
    return tuner, quadratic_loss(state)


def test_on_a_noise_dominated_quadratic_short_races_favour_the_smaller_lr_and_the_rule_stays_within_a_factor_2():
    # Without a tuner (no races: max_races=0), 0.4 is the best of a x2 grid at the end of the run.
    static = {lr: quadratic_run(lr, config=LRTunerConfig(warmup_steps=40, max_races=0))[1] for lr in (0.1, 0.2, 0.4, 0.8)}
    assert min(static, key=static.get) == 0.4
    # Noise dominates: at the downward race's horizon (0.15 T from step 0) half the best LR is ahead. This is the sign
    # of the bias Wu et al. found on this model, opposite to the fresh-head and noisy-quadratic tasks of the suite,
    # where short races favour the larger LR.
    tuner = LRTuner(LRTunerConfig(warmup_steps=40), 400)
    tuner.start_race(0)
    assert tuner.challengers_due(tuner.down_horizon) == [0.5] and tuner.down_horizon == 60
    at_horizon = {lr: _static_losses(lr, tuner)[30:60] for lr in (0.2, 0.4)}
    assert sum(at_horizon[0.2]) < sum(at_horizon[0.4])
    # So the rule moves down from the best, by one factor and not further; from far below it moves up, towards it.
    ends = {guess: guess * quadratic_run(0.4 * guess)[0].multiplier for guess in (0.125, 1.0)}
    assert ends[1.0] == 0.5 and static[0.2] < 1.05 * static[0.4]  # its harm: 3.5% of the loss
    assert ends[0.125] > 0.125


def _static_losses(base_lr, tuner):
    """Losses of a run at `base_lr` under the tuner's schedule shape, without races."""
    state, losses = [1.0] * len(CURVATURES), []
    for step in range(tuner.total_steps):
        losses.append(quadratic_loss(state))
        state = quadratic_update(state, base_lr * tuner.shape(step))
    return losses


def test_a_downward_challenger_far_behind_is_stopped_only_with_stop_down_margin():
    incumbent = arm_losses(1.0, 40, start=2.0)
    far_behind, near = arm_losses(1.3, 20, start=2.0), arm_losses(1.02, 20, jitter=0.02, start=2.0)
    for margin, stops in ((None, False), (4.0, True)):
        tuner = make_tuner(race_horizon=40, down_horizon=20, stop_down_margin=margin)
        tuner.start_race(0)
        at = [k for k in range(1, 21) if tuner.challenger_behind(0.5, far_behind[:k], incumbent)]
        assert at[:1] == ([10] if stops else [])  # from the first checkpoint on, at half of its horizon
        assert not any(tuner.challenger_behind(0.5, near[:k], incumbent) for k in range(1, 21))  # within the margin
        assert not tuner.score_challenger(0.5, far_behind[:10] if stops else far_behind, incumbent)
        record = tuner.finish_race(40, incumbent)
        assert record["updates"][1] == (10 if stops else 20) and tuner.unsafe_from is None  # behind is not unsafe


def test_refine_races_again_at_the_square_root_of_an_accelerated_factor_that_lost():
    # Upward from a guess 4x too low: x2 wins; x8 (the factor squared) overshoots and loses; with refine, x4 races
    # next and wins, and the multiplier ends at the best; without, the run settles at x2.
    curve = {0.5: 1.6, 1.0: 1.5, 2.0: 1.2, 4.0: 1.0, 8.0: 1.4}
    for refine, end in ((False, 2.0), (True, 4.0)):
        tuner = make_tuner(refine=refine)
        assert run_race(tuner, 0, curve.get)["multiplier"] == 2.0
        record = run_race(tuner, 20, curve.get)
        assert record["multipliers"] == [2.0, 8.0] and record["multiplier"] == 2.0
        assert tuner.settled != refine
        if refine:
            assert tuner.next_challengers() == [4.0]
            assert run_race(tuner, 40, curve.get)["multiplier"] == 4.0
        assert tuner.multiplier == end
    # a lost race at the first factor settles with refine too: there is no step to halve
    tuner = make_tuner(refine=True)
    run_race(tuner, 0, lambda m: 1.0, lambda m: 0.01 if m > 1 else 0.0)
    assert tuner.settled and tuner.multiplier == 1.0


def test_with_stall_check_an_incumbent_that_stalls_beside_a_diverged_larger_lr_is_rolled_back():
    # A run at ln 10 from its first updates (SGD far too high collapses before it learns): it never gave back any
    # progress, so its monitor sees nothing. The race's larger LR diverges and the smaller one is no better.
    collapsed = [2.30 + 0.02 * NOISE[i % 10] for i in range(40)]
    diverged = [2.30, 2.6, 3.5, math.inf]
    for stall_check, incumbent, rolls_back in ((True, collapsed, True), (False, collapsed, False),
                                                (True, arm_losses(1.5, 40, start=2.3), False)):
        tuner = make_tuner(race_horizon=40, down_horizon=20, stall_check=stall_check)
        tuner.multiplier = 8.0
        tuner.start_race(0)
        assert not tuner.score_challenger(4.0, collapsed[:20], incumbent)
        assert not tuner.score_challenger(16.0, diverged, incumbent)
        tuner.finish_race(40, incumbent)
        assert tuner.rollback_due == rolls_back and tuner.settled != rolls_back
        if rolls_back:
            record = tuner.back_off(40)
            assert record["rollback_to"] == 0 and tuner.multiplier == 4.0 and tuner.monitor.on_probation
            assert not tuner.rollback_due and tuner.unsafe_from == 8.0
    # a stalled incumbent whose larger challenger did not diverge (a slow start at a good LR) settles
    tuner = make_tuner(race_horizon=40, down_horizon=20, stall_check=True)
    tuner.start_race(0)
    tuner.score_challenger(0.5, collapsed[:20], collapsed)
    tuner.score_challenger(2.0, collapsed, collapsed)
    tuner.finish_race(40, collapsed)
    assert not tuner.rollback_due and tuner.settled
