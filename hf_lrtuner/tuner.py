"""The LRTuner algorithm: races that set the multiplier of a warmup-decay schedule, and divergence safety, in plain
Python.

Nothing here touches a model or imports `transformers`. The tuner sees per-update training losses (of the real run,
and of challenger branches replayed by a runner on the same batches) and decides from those numbers alone, so every
process of a distributed run that feeds it the same (reduced) numbers takes the same decisions.

A race, in short: at its start the runner snapshots the training state; the real run trains on at the incumbent
multiplier for `race_horizon` updates while the runner keeps those batches; then each challenger multiplier replays the
same batches from the snapshot, following the same schedule shape. The arms are compared on their losses over the second
half of the race, paired by batch. A challenger must beat the incumbent by a margin to take over, and then training
continues from the challenger's branch, so no race costs more than its challengers' updates. After a won race the next
one moves further (the factor squares), so a far guess is reached in two decisions.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

from .config import LRTunerConfig, decay_start
from ._removed import RACES, removed_attribute
from .records import RaceRecord, RollbackRecord, TuningRecord, load_records

_REMOVED = {  # LRTuner's names of earlier releases -> what replaced them
    "level": "0.3 named it `multiplier`",
    "multiplier_at": "0.4 named it `lr_factor_at(step, multiplier=None)`, the LR factor (the multiplier times the "
                     "schedule's shape)",
    "probe_passes": f"{RACES}, which run no probe passes (`trial_updates` counts the replayed updates)",
    "is_tuning_point": RACES, "tune": RACES, "diverged_since_last_tuning": RACES,
}

WARMUP, STABLE, DECAY = "warmup", "stable", "decay"
# The settings that give release 0.3's decision rule (its upward races lasted 20% of the budget, at least 20 updates).
RULE_OF_0_3 = {"race_horizon": 0.2, "accelerate": False, "improvement_of": "loss", "stop_behind": False,
               "stall_check": False}


def paired_difference(scores: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the per-item differences `scores - baseline` (common random numbers)."""
    diffs = [s - b for s, b in zip(scores, baseline)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, 0.0
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(variance / n)


class LossMonitor:
    """Smoothed training loss against the run's own progress: sees divergence and collapse at every update.

    A collapse to a constant predictor keeps a finite loss (ln 10 with 10 classes), and near zero loss a ratio test
    is ill-conditioned, so the test is additive and relative to progress. Training has diverged when the loss is
    non-finite, or when its exponential moving average, by more than 8 standard deviations of the average's noise,
    - has given back `collapse_fraction` of the progress from the initial loss to the best average so far, once that
      progress is a real one (`MIN_PROGRESS` of the initial loss: a run still on its initial plateau, such as a new
      classification head at ln 2, has nothing to collapse from), or
    - has risen above the initial loss by `MIN_PROGRESS` of it.
    The noise is the one measured when the best average was reached: a loss that explodes inflates its own noise
    estimate. The best of a noisy average over hundreds of updates sits a few standard deviations below its typical
    value, hence 8.

    After a roll-back the monitor can also put training on **probation** (`give_time(probation)`): a run that does not
    make progress then (its average not lower, by two of its noise standard deviations, at the end of the probation
    than at its start) has stalled, as a run collapsed to a constant predictor does, and `stalled()` says so.

    Args:
        collapse_fraction (`float`): share of the progress that, given back, counts as a collapse.
        state (`dict`, *optional*): a `state_dict()` to continue from.
    """

    SMOOTHING = 0.05  # EMA weight of the newest loss: about 20 updates of memory
    SETTLE_UPDATES = 20  # no verdict on fewer updates: the average and its noise are not known yet
    NOISE_SDS = 8.0
    MIN_PROGRESS = 0.1

    def __init__(self, collapse_fraction: float, state: Optional[dict] = None):
        self.collapse_fraction = collapse_fraction
        state = state or {"count": 0, "ema": 0.0, "variance": 0.0, "initial": 0.0, "best": math.inf, "best_noise": 0.0,
                          "quiet_until": self.SETTLE_UPDATES}
        self.count, self.ema, self.variance = state["count"], state["ema"], state["variance"]
        self.initial, self.best, self.best_noise = state["initial"], state["best"], state["best_noise"]
        self.quiet_until = state["quiet_until"]
        # probation: [update it ends at, average at its start (None until then)]; states of 0.3 have none
        self.probation = state.get("probation")

    def state_dict(self) -> dict:
        return {"count": self.count, "ema": self.ema, "variance": self.variance, "initial": self.initial,
                "best": self.best, "best_noise": self.best_noise, "quiet_until": self.quiet_until,
                "probation": None if self.probation is None else list(self.probation)}

    def give_time(self, probation: int = 0):
        """No finite-loss verdict for the next `SETTLE_UPDATES` updates: after a roll-back the average lags behind
        the restored state, and training at the lowered LR needs a few updates to show where it goes. Then, with
        `probation > 0`, training must make progress within `probation` updates (see `stalled`)."""
        self.quiet_until = self.count + self.SETTLE_UPDATES
        self.probation = [self.quiet_until + probation, None] if probation > 0 else None

    @property
    def on_probation(self) -> bool:
        """Whether training must still show progress after a roll-back (no safe point and no race meanwhile)."""
        return self.probation is not None

    def stalled(self) -> bool:
        """At the end of a probation: whether training made no progress during it. Ends the probation."""
        if self.probation is None:
            return False
        end, start_ema = self.probation
        if start_ema is None:
            if self.count >= self.quiet_until:
                self.probation[1] = self.ema
            return False
        if self.count < end:
            return False
        self.probation = None
        return self.ema > start_ema - 2 * self.noise()

    def update(self, loss: float) -> bool:
        """Add one update's loss; returns whether training has diverged."""
        if not math.isfinite(loss):
            return True
        if self.count == 0:
            self.ema = self.initial = loss
        else:
            deviation = loss - self.ema
            self.ema += self.SMOOTHING * deviation
            self.variance = (1 - self.SMOOTHING) * (self.variance + self.SMOOTHING * deviation**2)
        self.count += 1
        if self.ema <= self.best or self.count <= self.SETTLE_UPDATES:
            self.best = min(self.best, self.ema)
            self.best_noise = self.noise()
        return self.diverged()

    def noise(self) -> float:
        """Standard deviation of the moving average's noise (the variance average corrected for its zero start)."""
        if self.count < 2:
            return 0.0
        variance = self.variance / (1 - (1 - self.SMOOTHING) ** (self.count - 1))
        return math.sqrt(variance * self.SMOOTHING / (2 - self.SMOOTHING))

    def diverged(self) -> bool:
        if self.count < self.quiet_until:
            return False
        noise = self.NOISE_SDS * self.best_noise
        scale = self.MIN_PROGRESS * abs(self.initial)
        progress = max(0.0, self.initial - self.best)
        gave_back = progress >= scale and self.ema > self.best + max(self.collapse_fraction * progress, noise)
        return gave_back or self.ema > self.initial + max(scale, noise)

    def healthy(self) -> bool:
        """Whether the average is close to its best: a good state to come back to after a divergence."""
        return self.ema <= self.best + max(0.1 * max(0.0, self.initial - self.best), self.best_noise)


class ChallengerWatch:
    """Divergence of a challenger's replay, judged against the incumbent over the same updates.

    A challenger is stopped as diverged when its loss is non-finite, or when its own monitor (started from the run's,
    as it was at the race's start) sees a divergence **and** its smoothed loss is above the incumbent's over the same
    updates: a lower-LR challenger of a run that collapsed to a constant predictor learns, and its loss spikes while it
    does, but it is not worse than the collapsed incumbent.

    Args:
        collapse_fraction (`float`): as in [`LossMonitor`].
        state (`dict`): the run's monitor state at the race's start.
    """

    def __init__(self, collapse_fraction: float, state: dict):
        self.challenger = LossMonitor(collapse_fraction, state)
        self.incumbent = LossMonitor(collapse_fraction, state)

    def update(self, loss: float, incumbent_loss: float) -> bool:
        """Add the challenger's and the incumbent's loss of one update; returns whether to stop the challenger."""
        diverged = self.challenger.update(loss)
        self.incumbent.update(incumbent_loss)
        return not math.isfinite(loss) or (diverged and self.challenger.ema > self.incumbent.ema)


class LRTuner:
    """Decides the LR multiplier of every update of a run of `total_steps` updates.

    The schedule is Trainer's linear warmup-decay (or the knee shape with `explore_fraction > 0`) times
    `multiplier`, the tuned LR as a multiple of the initial LR. Races decide the multiplier: the first races the
    incumbent against one factor down and one up; each later race continues in the direction the previous one moved,
    with the square of its factor (`accelerate`), until the incumbent wins (with `refine`, a race lost at a squared
    factor is followed by one at its square root), the races run out, or they would end after `race_until` of the
    budget.

    The tuner owns its state: a runner ([`TrialRunner`]) drives it only through its public methods, and each counter
    (`races_run`, `trial_updates`, `rollbacks`) is advanced by exactly one of them. What it decided is in `records`
    (see [`~hf_lrtuner.records.RaceRecord`] and [`~hf_lrtuner.records.RollbackRecord`]).

    Args:
        config (`LRTunerConfig`): the tuner's settings.
        total_steps (`int`): the budget in optimizer updates.
    """

    PROBATION_SHARE = 0.1  # after a roll-back, training must make progress within this share of the budget (0: never)

    def __init__(self, config: LRTunerConfig, total_steps: int):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps={total_steps!r} is invalid: the budget must be an integer >= 1 update.")
        if config.warmup_steps > total_steps:
            raise ValueError(
                f"LRTunerConfig.warmup_steps={config.warmup_steps} exceeds the budget of {total_steps} updates."
            )
        self.config = config
        self.total_steps = total_steps
        self.horizon = config.resolve_race_horizon(total_steps)
        self.down_horizon = config.resolve_down_horizon(total_steps)
        self.decay_start = decay_start(total_steps, config.warmup_steps, config.explore_fraction)
        self.trial_budget = self.down_horizon + config.max_races * self.horizon
        self.probation = (max(LossMonitor.SETTLE_UPDATES, round(self.PROBATION_SHARE * total_steps))
                          if self.PROBATION_SHARE > 0 else 0)
        self.multiplier = 1.0
        self.factor = config.race_factor  # ratio of the next race's challenger to the incumbent
        self.direction = 0  # 0: the next race tries both directions; +1/-1: it continues upward/downward
        self.settled = False
        self.races_run = 0
        self._race: Optional[dict] = None
        self.unsafe_from: Optional[float] = None
        self.monitor = LossMonitor(config.collapse_fraction)
        self.safe_point_step = 0
        self.safe_point_monitor = self.monitor.state_dict()
        self.trial_updates = 0
        self.rollbacks = 0
        self.rollback_due = False  # set by `finish_race` (`stall_check`), cleared by `back_off`
        self.records: List[TuningRecord] = []

    def __getattr__(self, name):  # only for names not found: those of earlier releases say what replaced them
        removed_attribute(self, name, _REMOVED)

    # ----------------------------------------------------------------------------------------- schedule
    def phase(self, step: int) -> str:
        if step < self.config.warmup_steps:
            return WARMUP
        return STABLE if step < self.decay_start else DECAY

    def shape(self, step: int) -> float:
        """The schedule without its multiplier: Trainer's linear warmup-decay when `explore_fraction` is 0."""
        phase = self.phase(step)
        if phase == WARMUP:
            return step / self.config.warmup_steps
        if phase == STABLE:
            return 1.0
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.decay_start))

    def lr_factor_at(self, step: int, multiplier: Optional[float] = None) -> float:
        """The LR factor of the update that follows `step` completed updates, the multiple of the initial LR it
        trains at: `multiplier` (defaults to the tuned one) times the schedule's shape at `step`."""
        return (self.multiplier if multiplier is None else multiplier) * self.shape(step)

    # ----------------------------------------------------------------------------------------- races
    @property
    def racing(self) -> bool:
        """Whether a race is open: the runner keeps the batches of the updates it trains."""
        return self._race is not None

    @property
    def race_start(self) -> Optional[int]:
        """Step the open race started at (where its challengers replay from); `None` outside a race."""
        return None if self._race is None else self._race["start"]

    def next_challengers(self) -> List[float]:
        """Multipliers the next race would try against the incumbent (empty when the multiplier is settled)."""
        if self.settled or self.races_run >= self.config.max_races:
            return []
        steps = [-1, 1] if self.direction == 0 else [self.direction]
        multipliers = []
        for direction in steps:
            bounded = self.config.min_multiplier, self.config.max_multiplier
            multiplier = min(bounded[1], max(bounded[0], self.multiplier * self.factor**direction))
            if multiplier != self.multiplier and (self.unsafe_from is None or multiplier < self.unsafe_from):
                multipliers.append(multiplier)
        return multipliers

    def horizon_of(self, multiplier: float) -> int:
        """Updates a challenger at `multiplier` races for: downward challengers are judged earlier."""
        return self.down_horizon if multiplier < self.multiplier else self.horizon

    def race_starts_at(self, step: int) -> bool:
        """Whether a race starts before the update that follows `step` completed updates."""
        if self._race is not None:
            return False
        challengers = self.next_challengers()
        horizons = [self.horizon_of(multiplier) for multiplier in challengers]
        return (
            bool(challengers)
            and step + max(horizons) <= min(self.total_steps, self.config.race_until * self.total_steps)
            and self.trial_updates + sum(horizons) <= self.trial_budget
            and self.monitor.healthy()  # the race's start is also where a divergence returns to
            and not self.monitor.on_probation  # a run that must still show progress is no state to return to
        )

    def start_race(self, step: int):
        """Open a race at `step`; the runner snapshots the state and keeps the batches of the race's updates."""
        if not self.race_starts_at(step):
            raise RuntimeError(f"No race can start at step {step}.")
        challengers = self.next_challengers()
        self._race = {
            "start": step,
            "end": step + max(self.horizon_of(multiplier) for multiplier in challengers),
            "incumbent": self.multiplier,
            "challengers": challengers,
            "horizons": [self.horizon_of(multiplier) for multiplier in challengers],
            "monitor": self.monitor.state_dict(),
            "losses": [None] * len(challengers),  # per challenger: its per-update losses once it ran
            "outcomes": [None] * len(challengers),  # per challenger: "finished", "behind" (stopped) or "diverged"
            "leader": self.multiplier,
        }
        self.mark_safe_point(step)

    def challengers_due(self, step: int) -> List[float]:
        """Challengers whose race horizon ends at `step`: the runner replays them now."""
        race = self._race
        if race is None:
            return []
        return [m for m, h in zip(race["challengers"], race["horizons"]) if race["start"] + h == step]

    def race_decided(self, step: int) -> bool:
        """Whether the race is over at `step`: a challenger leads, or the longest horizon has been reached."""
        race = self._race
        return race is not None and (race["leader"] != race["incumbent"] or step >= race["end"])

    def challenger_monitor(self) -> ChallengerWatch:
        """A divergence watch for one challenger's replay, started from the run's monitor at the race's start: feed
        it the challenger's and the incumbent's loss of each update (see [`ChallengerWatch`])."""
        return ChallengerWatch(self.config.collapse_fraction, self._race["monitor"])

    def challenger_behind(self, multiplier: float, losses: Sequence[float], incumbent_losses: Sequence[float]) -> bool:
        """Whether to stop a challenger after `len(losses)` updates of its replay: at every eighth of its horizon from
        half of it on, it is behind the incumbent over the last quarter of its horizon by `race_margin` standard errors
        (an upward one, with `stop_behind`: short races favour the larger LR, so a larger LR that is behind has lost)
        or by `stop_down_margin` (a downward one)."""
        race = self._race
        upward = multiplier > race["incumbent"]
        margin = (self.config.race_margin if self.config.stop_behind else None) if upward else self.config.stop_down_margin
        if margin is None:
            return False
        horizon = race["horizons"][race["challengers"].index(multiplier)]
        done, span, every = len(losses), max(2, round(horizon / 4)), max(1, round(horizon / 8))
        if done >= horizon or done < max(span, round(horizon / 2)) or (done - round(horizon / 2)) % every:
            return False
        mean, stderr = paired_difference(losses[done - span : done], incumbent_losses[done - span : done])
        return mean > max(margin * stderr, 0.0)

    @staticmethod
    def _window(losses: Sequence[float]) -> List[float]:
        """The second half of an arm's race: its early losses say more about the LR's speed than its outcome."""
        return list(losses[len(losses) // 2 :])

    def _first_loss(self, incumbent_losses: Sequence[float]) -> float:
        """The run's first loss (for a race at step 0, the incumbent's first): what progress is measured from."""
        monitor = self._race["monitor"]
        return monitor["initial"] if monitor["count"] else incumbent_losses[0]

    def _beats(self, losses: Sequence[float], than: Sequence[float]) -> bool:
        mean, stderr = paired_difference(self._window(losses), self._window(than))
        late = _mean(self._window(than))
        if self.config.improvement_of == "progress":
            reference = max(0.0, self._first_loss(than) - late)
        else:
            reference = abs(late)
        return mean < -max(self.config.race_margin * stderr, self.config.min_improvement * reference)

    def score_challenger(self, multiplier: float, losses: Sequence[float], incumbent_losses: Sequence[float]) -> bool:
        """Record a challenger's per-update losses (fewer than its horizon when it was stopped: diverged, or behind by
        `challenger_behind`), against the incumbent's losses over the same updates; returns whether it now leads the
        race, so the runner keeps its branch."""
        race = self._race
        index = race["challengers"].index(multiplier)
        horizon = race["horizons"][index]
        losses = [float(loss) for loss in losses]
        incumbent_losses = [float(loss) for loss in incumbent_losses[:horizon]]
        self.trial_updates += len(losses)
        race["losses"][index] = losses
        finite = all(math.isfinite(loss) for loss in losses)
        if len(losses) < horizon and finite and self.challenger_behind(multiplier, losses, incumbent_losses):
            race["outcomes"][index] = "behind"
            return False
        if len(losses) < horizon or not finite:
            race["outcomes"][index] = "diverged"
            self._mark_unsafe(multiplier)
            return False
        race["outcomes"][index] = "finished"
        if not self._beats(losses, incumbent_losses):
            return False
        leader = race["leader"]
        if leader != race["incumbent"]:
            leading = race["losses"][race["challengers"].index(leader)]
            if _mean(self._window(losses)) >= _mean(self._window(leading)):
                return False
        race["leader"] = multiplier
        return True

    def finish_race(self, step: int, incumbent_losses: Sequence[float]) -> RaceRecord:
        """Close the race at `step`: adopt the leader's multiplier and record the race. Returns the record."""
        race = self._race
        incumbent_losses = [float(loss) for loss in incumbent_losses]
        leader = race["leader"]
        self.rollback_due = leader == race["incumbent"] and self._stalled_beside_diverged(incumbent_losses)
        if leader != race["incumbent"]:
            self.direction = 1 if leader > race["incumbent"] else -1
            self.multiplier = leader
            if self.config.accelerate:
                self.factor = self.factor**2
            self.monitor = LossMonitor(self.config.collapse_fraction, race["monitor"])
            for loss in race["losses"][race["challengers"].index(leader)]:
                self.monitor.update(loss)
        elif self.config.refine and self.direction != 0 and self.factor > self.config.race_factor:
            self.factor = math.sqrt(self.factor)  # the accelerated step may have jumped over the best LR
        elif not self.rollback_due:  # a stalled incumbent is not settled: the runner rolls back, `back_off` lowers it
            self.settled = True
        self.races_run += 1
        arms = [incumbent_losses, *race["losses"]]  # None: a challenger that never ran

        def compared(losses):
            if not losses:
                return [math.nan, math.nan]
            return list(paired_difference(self._window(losses), self._window(incumbent_losses[: len(losses)])))

        record = RaceRecord(
            step=race["start"],
            end_step=step,
            incumbent=race["incumbent"],
            multipliers=[race["incumbent"], *race["challengers"]],
            horizons=[step - race["start"], *race["horizons"]],
            updates=[len(losses) if losses else 0 for losses in arms],
            scores=[_mean(self._window(losses)) if losses else math.nan for losses in arms],
            differences=[compared(losses) for losses in arms],
            diverged=[False, *(outcome == "diverged" for outcome in race["outcomes"])],
            multiplier=self.multiplier,
            trial_updates=self.trial_updates,
        )
        self.records.append(record)
        self._race = None
        return record

    def _stalled_beside_diverged(self, incumbent_losses: Sequence[float]) -> bool:
        """With `stall_check`: whether the incumbent made no progress over the race (its late-race mean not below the
        run's first loss by `LossMonitor.MIN_PROGRESS` of it) while a larger-LR challenger diverged, above the lowest
        multiplier."""
        race = self._race
        if not self.config.stall_check:
            return False
        upward_diverged = any(m > race["incumbent"] and outcome == "diverged"
                              for m, outcome in zip(race["challengers"], race["outcomes"]))
        first = self._first_loss(incumbent_losses)
        progress = first - _mean(self._window(incumbent_losses))
        stalled = progress < LossMonitor.MIN_PROGRESS * abs(first)
        return upward_diverged and stalled and self.multiplier > self.config.min_multiplier

    def abandon_race(self):
        """Drop the open race, if any, whose snapshot and batches are gone (a run resumed inside it): the incumbent
        stays."""
        self._race = None

    # ----------------------------------------------------------------------------------------- safety
    def observe(self, loss: float) -> bool:
        """Feed the real run's loss of one update; returns whether training diverged, or stalled on its probation
        after a roll-back (above `min_multiplier`): the runner rolls back."""
        diverged = self.monitor.update(loss)
        stalled = self.monitor.stalled()
        return diverged or (stalled and self.multiplier > self.config.min_multiplier)

    def mark_safe_point(self, step: int):
        """The runner snapshotted the state at `step`: a divergence returns there."""
        self.safe_point_step = step
        self.safe_point_monitor = self.monitor.state_dict()

    def safe_point_due(self, step: int) -> bool:
        """Whether to refresh the state a divergence returns to (outside races, every horizon, when healthy and not on
        probation)."""
        return (self._race is None and step - self.safe_point_step >= self.horizon and self.monitor.healthy()
                and not self.monitor.on_probation)

    def back_off(self, step: int) -> RollbackRecord:
        """After a divergence (or a stall on probation, or `rollback_due`) and a roll-back to the safe point: mark the
        multiplier unsafe, lower it one `race_factor`, and put training on probation: it must make progress within
        `PROBATION_SHARE` of the budget, or the next roll-back lowers it again. Returns the roll-back's record."""
        if self.multiplier <= self.config.min_multiplier:
            raise FloatingPointError(
                f"Training diverged at step {step} even at the lowest LR multiplier "
                f"({self.config.min_multiplier}). Lower the initial learning rate or check the data and the loss."
            )
        self._mark_unsafe(self.multiplier)
        self.multiplier = max(self.config.min_multiplier, self.multiplier / self.config.race_factor)
        self.direction, self.settled, self._race, self.factor = -1, False, None, self.config.race_factor
        self.rollback_due = False
        self.monitor = LossMonitor(self.config.collapse_fraction, self.safe_point_monitor)
        self.monitor.give_time(self.probation)
        self.rollbacks += 1
        record = RollbackRecord(step=step, rollback_to=self.safe_point_step, multiplier=self.multiplier)
        self.records.append(record)
        return record

    def _mark_unsafe(self, multiplier: float):
        self.unsafe_from = multiplier if self.unsafe_from is None else min(self.unsafe_from, multiplier)

    # ----------------------------------------------------------------------------------------- state
    _STATE_KEYS = ("multiplier", "factor", "direction", "settled", "races_run", "unsafe_from", "safe_point_step",
                   "safe_point_monitor", "trial_updates", "rollbacks")

    def state_dict(self) -> dict:
        """All decisions and counters, in plain Python types (safe for `torch.load(weights_only=True)`)."""
        return {
            "total_steps": self.total_steps,
            "config": self.config.to_dict(),
            "monitor": self.monitor.state_dict(),
            "records": [dict(record) for record in self.records],
            "race": None if self._race is None else dict(self._race),
            **{key: getattr(self, key) for key in self._STATE_KEYS},
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "LRTuner":
        """A new tuner continuing from `state` (from `state_dict()` of this version, of 0.3 or of 0.2)."""
        if "races_run" not in state:
            raise ValueError(
                "This tuner state was saved by hf_lrtuner 0.1, whose search was replaced by races in 0.2; its "
                "decisions cannot be continued. Restart the run from its beginning (or from a checkpoint saved by 0.2)."
            )
        if "level" in state:  # 0.2 called the multiplier "level"
            state = {**state, "multiplier": state["level"]}
        config = state["config"]
        if "accelerate" not in config:  # 0.2 and 0.3 raced one factor per race, by a margin on the loss level
            config = {**config, **RULE_OF_0_3, "race_horizon": config.get("race_horizon") or RULE_OF_0_3["race_horizon"]}
        tuner = cls(LRTunerConfig(**config), state["total_steps"])
        for key in cls._STATE_KEYS:
            setattr(tuner, key, state.get(key, getattr(tuner, key)))
        if state["race"] is not None:
            tuner._race = _race_of_0_3(state["race"]) if "outcomes" not in state["race"] else dict(state["race"])
        tuner.monitor = LossMonitor(tuner.config.collapse_fraction, state["monitor"])
        tuner.records = load_records(state["records"])
        return tuner


def _race_of_0_3(race: dict) -> dict:
    """An open race saved by 0.2 or 0.3 (challengers' losses as [multiplier, losses] pairs) in the current form."""
    run = {multiplier: losses for multiplier, losses in race["losses"]}
    losses = [run.get(multiplier) for multiplier in race["challengers"]]
    outcomes = [None if arm is None else "diverged" if len(arm) < horizon else "finished"
                for arm, horizon in zip(losses, race["horizons"])]
    return {**race, "losses": losses, "outcomes": outcomes}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
