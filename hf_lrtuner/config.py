"""Settings of the LRTuner algorithm."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

# Tuning points per run when `tune_every` is left to its default.
DEFAULT_TUNING_POINTS = 20


@dataclass
class LRTunerConfig:
    """Settings of the tuner. Every value is checked on construction.

    The defaults are this project's choices (see `docs/method.md`), not values from the LRTuner paper, whose
    full procedure is not public.

    Args:
        warmup_steps (`int`, *optional*, defaults to 0):
            Updates of linear warmup from 0 to the explore LR, as in the linear-warmup-decay baseline.
        explore_fraction (`float`, *optional*, defaults to 0.5):
            Share of the budget spent exploring at a high, tuned LR before the decay to zero starts (the
            explore-exploit "Knee" finding). In [0, 1].
        tune_every (`int`, *optional*):
            Updates between two tuning points. Defaults to the budget divided by 20 (at least `trial_steps + 1`).
        trial_steps (`int`, *optional*):
            Updates each candidate LR runs for during a trial. Defaults to 1% of the budget, between 2 and 10, so that
            short runs can afford their searches.
        probe_batches (`int`, *optional*, defaults to 4):
            Batches every candidate is scored on after its trial; at least 2, because the noise of a comparison
            is estimated from the per-batch differences between candidates.
        search_factor (`float`, *optional*, defaults to 2.0):
            Ratio between neighbouring candidates (`m / a, m, m * a`). Must be > 1.
        max_search_extensions (`int`, *optional*, defaults to 2):
            How many extra candidates an explore search may try beyond its neighbours when the choice lies on the
            edge of the tried range (this is what lets it fix an initial LR that is 10x off in one tuning point).
        noise_tolerance (`float`, *optional*, defaults to 1.0):
            A candidate is "measurably" worse (or better) than another only when the mean paired score difference
            exceeds this many standard errors.
        min_multiplier (`float`, *optional*, defaults to 0.01):
            Lowest multiplier of the initial LR the explore phase may reach, in (0, 1].
        max_multiplier (`float`, *optional*, defaults to 100.0):
            Highest multiplier of the initial LR the explore phase may reach, >= 1.
        divergence_ratio (`float`, *optional*, defaults to 1.5):
            A trial whose probe score exceeds this multiple of the score before the trial counts as exploding,
            like a non-finite one. Must be > 1.
        unsafe_tuning_points (`int`, *optional*, defaults to 3):
            For how many tuning points a diverged LR (and every larger one) stays excluded from the search.
        max_trial_fraction (`float`, *optional*, defaults to 0.1):
            Cap on trial updates as a share of the budget; tuning points that would exceed it are skipped. In [0, 1].
        tune_during_warmup (`bool`, *optional*, defaults to `True`):
            Whether tuning points run from step 0, during warmup (their trials run at the full candidate LRs), or only
            from the end of warmup. From step 0 did better in our SQuAD ablation (`docs/results.md`): waiting lets an
            initial LR that is too high do its damage during warmup.
        tune_in_exploit (`bool`, *optional*, defaults to `True`):
            Whether the exploit phase searches for a faster decay than the linear envelope.
        seed (`int`, *optional*, defaults to 0):
            Seed of the trial and probe batch draws and of the trials' random numbers (dropout), so that a resumed
            run repeats the same trials.
    """

    warmup_steps: int = 0
    explore_fraction: float = 0.5
    tune_every: Optional[int] = None
    trial_steps: Optional[int] = None
    probe_batches: int = 4
    search_factor: float = 2.0
    max_search_extensions: int = 2
    noise_tolerance: float = 1.0
    min_multiplier: float = 0.01
    max_multiplier: float = 100.0
    divergence_ratio: float = 1.5
    unsafe_tuning_points: int = 3
    max_trial_fraction: float = 0.1
    tune_during_warmup: bool = True
    tune_in_exploit: bool = True
    seed: int = 0

    def __post_init__(self):
        _check_int(self, "warmup_steps", minimum=0)
        _check_float(self, "explore_fraction", low=0.0, high=1.0, closed="[0, 1]")
        if self.trial_steps is not None:
            _check_int(self, "trial_steps", minimum=1)
        if self.tune_every is not None:
            _check_int(self, "tune_every", minimum=1)
            if self.trial_steps is not None and self.tune_every <= self.trial_steps:
                raise ValueError(
                    f"LRTunerConfig.tune_every={self.tune_every} is not longer than a trial "
                    f"(trial_steps={self.trial_steps}); it must be > trial_steps. Raise tune_every or lower trial_steps."
                )
        _check_int(self, "probe_batches", minimum=2)
        _check_float(self, "search_factor", low=1.0, high=math.inf, closed="(1, inf)", include_low=False)
        _check_int(self, "max_search_extensions", minimum=0)
        _check_float(self, "noise_tolerance", low=0.0, high=math.inf, closed="[0, inf)")
        _check_float(self, "min_multiplier", low=0.0, high=1.0, closed="(0, 1]", include_low=False)
        _check_float(self, "max_multiplier", low=1.0, high=math.inf, closed="[1, inf)")
        _check_float(self, "divergence_ratio", low=1.0, high=math.inf, closed="(1, inf)", include_low=False)
        _check_int(self, "unsafe_tuning_points", minimum=1)
        _check_float(self, "max_trial_fraction", low=0.0, high=1.0, closed="[0, 1]")
        for name in ("tune_during_warmup", "tune_in_exploit"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LRTunerConfig.{name}={getattr(self, name)!r} is invalid: it must be True or False.")
        _check_int(self, "seed", minimum=0)

    def resolve_trial_steps(self, total_steps: int) -> int:
        """Updates per trial for a budget of `total_steps` updates."""
        if self.trial_steps is not None:
            return self.trial_steps
        return max(2, min(10, total_steps // 100))

    def resolve_tune_every(self, total_steps: int) -> int:
        """Updates between tuning points for a budget of `total_steps` updates."""
        if self.tune_every is not None:
            return self.tune_every
        return max(self.resolve_trial_steps(total_steps) + 1, total_steps // DEFAULT_TUNING_POINTS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_int(config, name, minimum):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"LRTunerConfig.{name}={value!r} is invalid: it must be an integer >= {minimum}.")


def _check_float(config, name, low, high, closed, include_low=True):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"LRTunerConfig.{name}={value!r} is invalid: it must be a number in {closed}.")
    too_low = value < low or (value == low and not include_low)
    if too_low or value > high or math.isnan(value):
        raise ValueError(f"LRTunerConfig.{name}={value!r} is out of range: it must be in {closed}.")
