"""Settings of the LRTuner algorithm."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch

# Default race horizon: this share of the budget, but never fewer than MIN_DEFAULT_HORIZON updates. Races from step 0
# shorter than 0.1-0.2 of the budget pick 2-16x too large an LR on every synthetic task of the suite, and at 0.2 the
# noisy quadratic with Adam still prefers 2x its best (`docs/method.md`, sections 0 and 5; the replay of
# `benchmarks/replay.py`). A lower LR that wins a shorter race wins against that bias, so downward challengers race
# half as long.
DEFAULT_HORIZON_FRACTION = 0.3
MIN_DEFAULT_HORIZON = 20
DOWN_HORIZON_SHARE = 0.5
IMPROVEMENT_REFERENCES = ("progress", "loss")


@dataclass
class LRTunerConfig:
    """Settings of the tuner. Every value is checked on construction.

    The defaults are this project's choices, measured on the tuner suite (see `docs/method.md`), not values from the
    LRTuner paper, whose full procedure is not public.

    Args:
        warmup_steps (`int`, *optional*, defaults to 0):
            Updates of linear warmup from 0 to the tuned LR, as in the linear-warmup-decay baseline.
        explore_fraction (`float`, *optional*, defaults to 0.0):
            Share of the budget held at the tuned LR before the linear decay to zero starts (the explore-exploit "Knee"
            schedule). 0 gives Trainer's `linear` schedule: decay right after warmup. In [0, 1].
        race_horizon (`int` or `float`, *optional*):
            Updates an upward race lasts (a float in (0, 1): that share of the budget): the real run and a larger-LR
            challenger train this long on the same batches before they are compared. Defaults to 30% of the budget,
            at least 20 updates (0.3 used 20%).
        down_horizon (`int` or `float`, *optional*):
            Updates (or share of the budget) a downward race lasts. Short races favour larger LRs, so a smaller LR
            that wins a shorter one is better still; defaults to half of `race_horizon` (at least 5 updates).
        max_races (`int`, *optional*, defaults to 4):
            Races per run at most. The first race has two challengers (one factor down, judged at `down_horizon`, and
            one up, judged at `race_horizon`); each later one a single challenger that continues in the direction the
            previous race moved. A race the incumbent wins settles the LR (with `refine`, not one lost at an
            accelerated factor). The trial budget is the whole plan:
            `down_horizon + max_races * race_horizon` updates.
        race_factor (`float`, *optional*, defaults to 2.0):
            Ratio between the incumbent LR and a challenger in the first race. Must be > 1.
        accelerate (`bool`, *optional*, defaults to `True`):
            Each race that follows a won race uses the square of the previous race's factor (2, 4, 16, ...): a guess
            10x off is reached in two decisions instead of four. `False`: every race moves by `race_factor` (0.3).
        race_margin (`float`, *optional*, defaults to 2.0):
            A challenger replaces the incumbent only when its mean loss over the second half of the race is lower
            by more than this many standard errors of the paired per-update difference.
        min_improvement (`float`, *optional*, defaults to 0.01):
            ... and lower by more than this share of the reference `improvement_of` names: a tie keeps the user's LR.
        improvement_of (`str`, *optional*, defaults to `"progress"`):
            What `min_improvement` is a share of. `"progress"`: the run's progress, its first loss minus the
            incumbent's late-race mean loss, which does not depend on the loss's irreducible part. `"loss"`: the
            incumbent's late-race mean loss itself (0.3), a margin that grows with the irreducible part (1% of a
            language model's 7.3 nats is more than the effect of a factor of 2 in its LR).
        stop_behind (`bool`, *optional*, defaults to `True`):
            Stop an upward challenger early, from half of its horizon on, when it is behind the incumbent by
            `race_margin` standard errors over the last quarter of its horizon. Short races favour the larger LR, so
            a larger LR that is behind has lost; this saves challenger updates at a good guess.
        stop_down_margin (`float`, *optional*):
            Stop a downward challenger early, as `stop_behind` does an upward one, when it is behind the incumbent by
            this many standard errors. Short races disfavour the smaller LR, so only a wide margin is conclusive (4 in
            the replay of `docs/results/replay.md`). `None`: downward challengers race their whole horizon. A candidate,
            measured and not adopted as a default (`docs/method.md`).
        refine (`bool`, *optional*, defaults to `False`):
            When a race with an accelerated factor (`accelerate`) is lost, race once more in the same direction at the
            square root of that factor instead of settling: the accelerated step may have jumped over the best LR. A
            candidate, measured and not adopted as a default (`docs/method.md`).
        stall_check (`bool`, *optional*, defaults to `True`):
            A race the incumbent keeps although it made no progress during it (its late-race mean loss not below the
            run's first loss by a tenth of it) while a larger-LR challenger diverged counts as the run's own divergence:
            the runner rolls back to the race's start and the multiplier is lowered, with a probation, as after any
            roll-back. A run collapsed from its first updates to a constant predictor (SGD 10x too high) never gave
            back progress, so the loss monitor alone cannot see it. `False`: such a race settles the LR (0.3).
        race_until (`float`, *optional*, defaults to 0.6):
            No race ends later than this share of the budget: late changes cannot pay back their cost. In (0, 1].
        collapse_fraction (`float`, *optional*, defaults to 0.5):
            Training counts as diverged when its smoothed loss has given back this share of the progress made
            since the start (the best smoothed loss so far against the initial one), or is non-finite. A collapse to
            a constant predictor keeps a finite loss, so finiteness alone cannot see it. In (0, 1].
        min_multiplier (`float`, *optional*, defaults to 0.01):
            Lowest multiplier of the initial LR the tuner may reach, in (0, 1].
        max_multiplier (`float`, *optional*, defaults to 100.0):
            Highest multiplier of the initial LR the tuner may reach, >= 1.
        snapshot_device (`str`, *optional*):
            Where races keep their two snapshots of the training state (parameters, buffers, optimizer state).
            `None`: on the training device. `"cpu"`: in host memory (pinned when training on CUDA), which frees their
            GPU memory for the cost of copies over PCIe at each race start, switch and roll-back. Any
            `torch.device` string is accepted. Not part of the run's state: a resumed run keeps the value it is
            given, not the checkpoint's.
    """

    warmup_steps: int = 0
    explore_fraction: float = 0.0
    race_horizon: Optional[float] = None
    down_horizon: Optional[float] = None
    max_races: int = 4
    race_factor: float = 2.0
    accelerate: bool = True
    race_margin: float = 2.0
    min_improvement: float = 0.01
    improvement_of: str = "progress"
    stop_behind: bool = True
    stop_down_margin: Optional[float] = None
    refine: bool = False
    stall_check: bool = True
    race_until: float = 0.6
    collapse_fraction: float = 0.5
    min_multiplier: float = 0.01
    max_multiplier: float = 100.0
    snapshot_device: Optional[str] = None

    def __post_init__(self):
        _check_int(self, "warmup_steps", minimum=0)
        _check_float(self, "explore_fraction", low=0.0, high=1.0, closed="[0, 1]")
        for name in ("race_horizon", "down_horizon"):
            value = getattr(self, name)
            if isinstance(value, float) and not value.is_integer():
                _check_float(self, name, low=0.0, high=1.0, closed="(0, 1) as a share of the budget, or an integer >= 2",
                             include_low=False, include_high=False)
            elif value is not None:
                if isinstance(value, float):
                    setattr(self, name, int(value))
                _check_int(self, name, minimum=2)
        _check_int(self, "max_races", minimum=0)
        _check_float(self, "race_factor", low=1.0, high=math.inf, closed="(1, inf)", include_low=False)
        _check_float(self, "race_margin", low=0.0, high=math.inf, closed="[0, inf)")
        _check_float(self, "min_improvement", low=0.0, high=1.0, closed="[0, 1)", include_high=False)
        if self.improvement_of not in IMPROVEMENT_REFERENCES:
            raise ValueError(f"LRTunerConfig.improvement_of={self.improvement_of!r} is invalid: it must be one of "
                             f"{IMPROVEMENT_REFERENCES} (what min_improvement is a share of).")
        if self.stop_down_margin is not None:
            _check_float(self, "stop_down_margin", low=0.0, high=math.inf, closed="(0, inf), or None", include_low=False)
        for name in ("accelerate", "stop_behind", "refine", "stall_check"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LRTunerConfig.{name}={getattr(self, name)!r} is invalid: it must be True or False.")
        _check_float(self, "race_until", low=0.0, high=1.0, closed="(0, 1]", include_low=False)
        _check_float(self, "collapse_fraction", low=0.0, high=1.0, closed="(0, 1]", include_low=False)
        _check_float(self, "min_multiplier", low=0.0, high=1.0, closed="(0, 1]", include_low=False)
        _check_float(self, "max_multiplier", low=1.0, high=math.inf, closed="[1, inf)")
        _check_device(self, "snapshot_device")

    def resolve_race_horizon(self, total_steps: int) -> int:
        """Updates per upward race for a budget of `total_steps` updates."""
        return _updates(self.race_horizon, total_steps, DEFAULT_HORIZON_FRACTION, MIN_DEFAULT_HORIZON)

    def resolve_down_horizon(self, total_steps: int) -> int:
        """Updates per downward race for a budget of `total_steps` updates."""
        if self.down_horizon is None:
            return max(5, round(DOWN_HORIZON_SHARE * self.resolve_race_horizon(total_steps)))
        return _updates(self.down_horizon, total_steps, DEFAULT_HORIZON_FRACTION, 2)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def decay_start(total_steps: int, warmup_steps: int, explore_fraction: float) -> int:
    """First update of the linear decay to zero: `round(explore_fraction * total_steps)`, not before warmup ends.

    The one statement of the knee's switch step, for the tuner's schedule and the fixed knee baseline alike.

    Args:
        total_steps (`int`): the budget in updates.
        warmup_steps (`int`): updates of linear warmup.
        explore_fraction (`float`): share of the budget before the decay starts; 0 decays right after warmup.
    """
    return min(total_steps, max(warmup_steps, round(explore_fraction * total_steps)))


def _updates(value, total_steps: int, default_fraction: float, minimum: int) -> int:
    """A horizon given in updates (an int) or as a share of the budget (a float in (0, 1)), in updates."""
    if value is None:
        return max(minimum, round(default_fraction * total_steps))
    if isinstance(value, float):
        return max(minimum, round(value * total_steps))
    return value


def _check_device(config, name):
    """A device name or `torch.device`, kept as its string (the config is saved in plain Python types)."""
    value = getattr(config, name)
    if value is None:
        return
    try:
        setattr(config, name, str(torch.device(value)))
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"LRTunerConfig.{name}={value!r} is invalid: it must be None (the training device), 'cpu', or a "
            f"torch.device string such as 'cuda:1' ({error})."
        ) from None


def _check_int(config, name, minimum):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"LRTunerConfig.{name}={value!r} is invalid: it must be an integer >= {minimum}.")


def _check_float(config, name, low, high, closed, include_low=True, include_high=True):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"LRTunerConfig.{name}={value!r} is invalid: it must be a number in {closed}.")
    too_low = value < low or (value == low and not include_low)
    too_high = value > high or (value == high and not include_high)
    if too_low or too_high or math.isnan(value):
        raise ValueError(f"LRTunerConfig.{name}={value!r} is out of range: it must be in {closed}.")
