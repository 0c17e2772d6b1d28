"""The LRTuner algorithm: phases, local search and divergence safety, in plain Python.

Nothing here touches a model or imports `transformers`: the tuner asks a `run_trial(lr_factor)` function for the
per-batch probe losses of a candidate and decides from those numbers alone, so every process of a distributed run
that feeds it the same (reduced) numbers takes the same decisions.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

from .config import LRTunerConfig

WARMUP, EXPLORE, EXPLOIT = "warmup", "explore", "exploit"

RunTrial = Callable[[float], Sequence[float]]


def paired_difference(scores: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the per-batch differences `scores - baseline` (common random numbers)."""
    diffs = [s - b for s, b in zip(scores, baseline)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, 0.0
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(variance / n)


class LRTuner:
    """Decides the LR multiplier of every update of a run of `total_steps` updates.

    The multiplier scales the initial LR of every parameter group. Warmup ramps it linearly from 0; explore holds it
    at a level chosen by local search at every tuning point (the largest candidate not measurably worse than the
    best); exploit decays it linearly to zero from the switch point, and a search may only make that decay faster.

    Args:
        config (`LRTunerConfig`): the tuner's settings.
        total_steps (`int`): the budget in optimizer updates.
    """

    def __init__(self, config: LRTunerConfig, total_steps: int):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps={total_steps!r} is invalid: the budget must be an integer >= 1 update.")
        if config.warmup_steps > total_steps:
            raise ValueError(
                f"LRTunerConfig.warmup_steps={config.warmup_steps} exceeds the budget of {total_steps} updates."
            )
        self.config = config
        self.total_steps = total_steps
        self.trial_steps = config.resolve_trial_steps(total_steps)
        self.tune_every = config.resolve_tune_every(total_steps)
        if self.tune_every <= self.trial_steps:
            raise ValueError(
                f"LRTunerConfig.tune_every={self.tune_every} is not longer than a trial of {self.trial_steps} updates "
                f"(the default trial_steps for a budget of {total_steps}). Raise tune_every or set trial_steps."
            )
        self.switch_step = min(total_steps, max(config.warmup_steps, round(config.explore_fraction * total_steps)))
        self.multiplier = 1.0
        self.exploit_scale = 1.0
        self.unsafe_from: Optional[float] = None
        self.unsafe_until_step = -1
        self.last_tuned_step = -1
        self.last_reference: Optional[float] = None
        self.force_tuning = False
        self.trial_updates = 0
        self.probe_passes = 0
        self.records: List[dict] = []

    # ----------------------------------------------------------------------------------------- schedule
    def phase(self, step: int) -> str:
        if step < self.config.warmup_steps:
            return WARMUP
        return EXPLORE if step < self.switch_step else EXPLOIT

    def envelope(self, step: int) -> float:
        """Upper bound of the exploit multiplier: linear from the explore level to zero at the end of the budget."""
        if step >= self.total_steps:
            return 0.0
        return self.multiplier * (self.total_steps - step) / (self.total_steps - self.switch_step)

    def multiplier_at(self, step: int) -> float:
        """Multiplier of the initial LR for the update that follows `step` completed updates."""
        phase = self.phase(step)
        if phase == WARMUP:
            return self.multiplier * step / self.config.warmup_steps
        if phase == EXPLORE:
            return self.multiplier
        return self.envelope(step) * self.exploit_scale

    # ----------------------------------------------------------------------------------------- tuning points
    def is_tuning_point(self, step: int) -> bool:
        """Whether a search should run before the update that follows `step` completed updates."""
        if step == self.last_tuned_step or step + self.trial_steps >= self.total_steps:
            return False
        phase = self.phase(step)
        if (phase == EXPLOIT and not self.config.tune_in_exploit) or (
            phase == WARMUP and not self.config.tune_during_warmup
        ):
            return False
        # Tuning points every tune_every updates from the end of warmup (from step 0 when tuning during warmup).
        start = 0 if self.config.tune_during_warmup else self.config.warmup_steps
        if not self.force_tuning and (step - start) % self.tune_every != 0:
            return False
        candidates = 2 if phase == EXPLOIT else 3
        return self._trial_budget_left() >= candidates * self.trial_steps

    def tune(self, step: int, run_trial: RunTrial, reference: Sequence[float]) -> dict:
        """Run the local search of the tuning point at `step` and update the multiplier.

        Args:
            step (`int`): completed updates.
            run_trial (`Callable[[float], Sequence[float]]`): runs `trial_steps` updates at `lr_factor` times the
                initial LR from the current training state, returns the per-batch probe losses and restores the state.
            reference (`Sequence[float]`): per-batch probe losses of the current state, before any trial.

        Returns:
            `dict`: the record of this tuning point (also appended to `records`).
        """
        if len(reference) < 2:
            raise ValueError(f"reference holds {len(reference)} probe losses; at least 2 are needed to estimate noise.")
        phase = self.phase(step)
        search = _Search(self, step, run_trial, reference)
        previous = self.multiplier if phase != EXPLOIT else self.exploit_scale
        if phase == EXPLOIT:
            choice = search.exploit(self.exploit_scale, self.envelope(step))
            self.exploit_scale = choice
        else:
            choice = search.explore(self.multiplier)
            self.multiplier = choice
        self.last_tuned_step = step
        self.last_reference = search.reference_mean
        self.force_tuning = False
        record = search.record(phase, previous, choice)
        self.records.append(record)
        return record

    def diverged_since_last_tuning(self, reference: Sequence[float]) -> bool:
        """Whether probe losses before a search show that training diverged since the previous tuning point."""
        mean = sum(reference) / len(reference)
        if not math.isfinite(mean):
            return True
        return self.last_reference is not None and mean > self.config.divergence_ratio * self.last_reference

    def back_off(self, step: int):
        """Mark the current LR (and larger ones) unsafe, lower it by `search_factor` and tune at the next step."""
        if self.phase(step) == EXPLOIT:
            self._mark_unsafe(self.envelope(step) * self.exploit_scale, step)
            self.exploit_scale = max(self.config.min_multiplier, self.exploit_scale / self.config.search_factor)
        else:
            self._mark_unsafe(self.multiplier, step)
            self.multiplier = max(self.config.min_multiplier, self.multiplier / self.config.search_factor)
        self.force_tuning = True

    # ----------------------------------------------------------------------------------------- safety, budget
    def is_safe(self, lr_factor: float, step: int) -> bool:
        return self.unsafe_from is None or step > self.unsafe_until_step or lr_factor < self.unsafe_from

    def _mark_unsafe(self, lr_factor: float, step: int):
        if self.unsafe_from is None or step > self.unsafe_until_step or lr_factor < self.unsafe_from:
            self.unsafe_from = lr_factor
        self.unsafe_until_step = step + self.config.unsafe_tuning_points * self.tune_every

    def _trial_budget_left(self) -> int:
        return int(self.config.max_trial_fraction * self.total_steps) - self.trial_updates

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """All decisions and counters, in plain Python types (safe for `torch.load(weights_only=True)`)."""
        return {
            "total_steps": self.total_steps,
            "config": self.config.to_dict(),
            "multiplier": self.multiplier,
            "exploit_scale": self.exploit_scale,
            "unsafe_from": self.unsafe_from,
            "unsafe_until_step": self.unsafe_until_step,
            "last_tuned_step": self.last_tuned_step,
            "last_reference": self.last_reference,
            "force_tuning": self.force_tuning,
            "trial_updates": self.trial_updates,
            "probe_passes": self.probe_passes,
            "records": [dict(record) for record in self.records],
        }

    def load_state_dict(self, state: dict):
        self.__init__(LRTunerConfig(**state["config"]), state["total_steps"])
        for key in ("multiplier", "exploit_scale", "unsafe_from", "unsafe_until_step", "last_tuned_step",
                    "last_reference", "force_tuning", "trial_updates", "probe_passes"):
            setattr(self, key, state[key])
        self.records = [dict(record) for record in state["records"]]


class _Search:
    """One tuning point's local search: runs candidates, keeps their scores, applies the choice rules."""

    def __init__(self, tuner: LRTuner, step: int, run_trial: RunTrial, reference: Sequence[float]):
        self.tuner = tuner
        self.config = tuner.config
        self.step = step
        self.run_trial = run_trial
        self.reference = list(reference)
        self.reference_mean = sum(reference) / len(reference)
        self.lr_scale = 1.0  # candidate value -> LR factor (the envelope in exploit)
        self.scores: Dict[float, List[float]] = {}
        self.diverged: Dict[float, bool] = {}

    # -- trials
    def _can_afford_trial(self) -> bool:
        return self.tuner._trial_budget_left() >= self.tuner.trial_steps

    def _try(self, candidate: float):
        if candidate in self.scores or not self._can_afford_trial():
            return
        scores = [float(s) for s in self.run_trial(candidate * self.lr_scale)]
        if len(scores) != len(self.reference):
            raise ValueError(f"run_trial returned {len(scores)} probe losses; expected {len(self.reference)}.")
        self.tuner.trial_updates += self.tuner.trial_steps
        self.tuner.probe_passes += len(scores)
        mean = sum(scores) / len(scores)
        exploded = not math.isfinite(mean) or mean > self.config.divergence_ratio * self.reference_mean
        self.scores[candidate] = scores
        self.diverged[candidate] = exploded
        if exploded:
            self.tuner._mark_unsafe(candidate * self.lr_scale, self.step)

    def _safe(self, candidate: float) -> bool:
        return self.tuner.is_safe(candidate * self.lr_scale, self.step)

    def _finite(self) -> List[float]:
        return sorted(c for c in self.scores if not self.diverged[c])

    def _worse(self, candidate: float, than: float) -> bool:
        mean, stderr = paired_difference(self.scores[candidate], self.scores[than])
        return mean > self.config.noise_tolerance * stderr

    def _better(self, candidate: float, than: float) -> bool:
        mean, stderr = paired_difference(self.scores[candidate], self.scores[than])
        return mean < -self.config.noise_tolerance * stderr

    # -- explore: the largest candidate not measurably worse than the best, and not measurably worse than no update
    def _explore_choice(self) -> Optional[float]:
        finite = self._finite()
        if not finite:
            return None
        progressing = [c for c in finite if not self._worse_than_reference(c)] or finite
        best = min(progressing, key=lambda c: sum(self.scores[c]))
        return max(c for c in progressing if not self._worse(c, best))

    def _worse_than_reference(self, candidate: float) -> bool:
        mean, stderr = paired_difference(self.scores[candidate], self.reference)
        return mean > self.config.noise_tolerance * stderr

    def explore(self, multiplier: float) -> float:
        low, high, factor = self.config.min_multiplier, self.config.max_multiplier, self.config.search_factor
        clip = lambda value: min(high, max(low, value))  # noqa: E731
        candidates = sorted({clip(multiplier / factor), clip(multiplier), clip(multiplier * factor)})
        safe = [c for c in candidates if self._safe(c)]
        if not safe:  # everything around the current level diverged recently: start below the unsafe mark
            safe = [clip(self.tuner.unsafe_from / factor)]
        # The current level first, then larger: if the trial budget runs short, the search can still raise the LR.
        for candidate in sorted(safe, key=lambda c: (c != multiplier, -c)):
            self._try(candidate)
        for _ in range(self.config.max_search_extensions):
            choice = self._explore_choice()
            tried = sorted(self.scores)
            if choice is None:
                step_to = clip(tried[0] / factor)
            elif choice == tried[-1]:
                step_to = clip(choice * factor)
            elif choice == tried[0] and len(tried) > 1:
                step_to = clip(choice / factor)
            else:
                break
            if step_to in self.scores or not self._safe(step_to) or not self._can_afford_trial():
                break
            self._try(step_to)
        choice = self._explore_choice()
        if choice is None:  # every candidate diverged: back off below the smallest one tried
            choice = clip(min(self.scores, default=multiplier) / factor)
        return choice

    # -- exploit: decay faster than the envelope only where a lower LR is measurably better
    def exploit(self, scale: float, envelope: float) -> float:
        """One factor lower at most per tuning point: a lower LR that looks better over a few updates is the same
        short-horizon comparison that the explore rule distrusts, so the decay only speeds up step by step."""
        self.lr_scale = envelope
        lower = max(self.config.min_multiplier, scale / self.config.search_factor)
        self._try(scale)
        if lower == scale:
            return scale
        self._try(lower)
        if lower not in self.scores:  # the trial budget ran out
            return scale
        if self.diverged[lower]:
            return max(self.config.min_multiplier, lower / self.config.search_factor)
        return lower if self.diverged[scale] or self._better(lower, scale) else scale

    # -- record
    def record(self, phase: str, previous: float, choice: float) -> dict:
        candidates = sorted(self.scores)
        finite = self._finite()
        best = min(finite, key=lambda c: sum(self.scores[c])) if finite else None
        return {
            "step": self.step,
            "phase": phase,
            "previous": previous,
            "choice": choice,
            "lr_factor": choice * self.lr_scale,
            "candidates": candidates,
            "lr_factors": [c * self.lr_scale for c in candidates],
            "scores": [sum(self.scores[c]) / len(self.scores[c]) for c in candidates],
            "noise": [
                paired_difference(self.scores[c], self.scores[best])[1] if best is not None else math.nan
                for c in candidates
            ],
            "diverged": [self.diverged[c] for c in candidates],
            "reference": self.reference_mean,
            "trial_updates": self.tuner.trial_updates,
        }
