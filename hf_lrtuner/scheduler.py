"""`LRTunerScheduler`: the tuner as a `torch.optim.lr_scheduler.LRScheduler`."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from .config import LRTunerConfig
from ._removed import RACES, removed_attribute
from .tuner import RULE_OF_0_3, LRTuner

_REMOVED = {  # LRTunerScheduler's names of earlier releases -> what replaced them
    "multiplier_at_step": "0.4 named it `lr_factor()`, the LR factor (the multiplier times the schedule's shape)",
    "is_tuning_point": RACES, "tune": RACES, "diverged_since_last_tuning": RACES,
    "back_off": f"{RACES}; `TrialRunner.roll_back()` restores the last safe point and lowers the LR",
}


class LRTunerScheduler(LRScheduler):
    """Sets every parameter group's LR to its initial LR times the tuner's multiplier.

    It holds the whole tuner (multiplier, races, safety state, records), so its `state_dict()` is everything a resumed
    run needs; Trainer saves it in `scheduler.pt`. Per-group LR ratios are kept. Races are run by [`LRTunerCallback`]
    (with `transformers.Trainer`) or [`TrialRunner`] (plain PyTorch loops).

    Args:
        optimizer (`torch.optim.Optimizer`): the optimizer; its current LRs are the initial guess.
        num_training_steps (`int`, *optional*): budget in optimizer updates. May be left `None` when
            [`LRTunerCallback`] is used: it is then taken from Trainer's `max_steps` at train begin.
        config (`LRTunerConfig`, *optional*): tuner settings; defaults to `LRTunerConfig()`.
        last_epoch (`int`, *optional*, defaults to -1): as in every torch scheduler.

    Example:

    ```python
    >>> import torch
    >>> from hf_lrtuner import LRTunerConfig, LRTunerScheduler
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    >>> scheduler = LRTunerScheduler(optimizer, num_training_steps=1000, config=LRTunerConfig(warmup_steps=100))
    >>> scheduler.get_last_lr()
    [0.0]
    ```
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        num_training_steps: Optional[int] = None,
        config: Optional[LRTunerConfig] = None,
        last_epoch: int = -1,
    ):
        if config is not None and not isinstance(config, LRTunerConfig):
            raise TypeError(f"config must be an LRTunerConfig, got {type(config).__name__}.")
        self.config = config if config is not None else LRTunerConfig()
        self.tuner: Optional[LRTuner] = None
        self._restored = False  # whether the tuner came from a checkpoint
        if num_training_steps is not None:
            self.tuner = LRTuner(self.config, num_training_steps)
        super().__init__(optimizer, last_epoch)

    @property
    def num_training_steps(self) -> Optional[int]:
        return None if self.tuner is None else self.tuner.total_steps

    def set_num_training_steps(self, num_training_steps: int):
        """Set the budget of a scheduler built without one, and apply the LR of the current step."""
        if self.tuner is not None:
            if self.tuner.total_steps != num_training_steps:
                if self._restored:
                    raise ValueError(_budget_differs(self.tuner.total_steps, num_training_steps))
                raise ValueError(
                    f"This LRTunerScheduler was built for {self.tuner.total_steps} updates but training runs "
                    f"{num_training_steps}. Build it with num_training_steps={num_training_steps}, or leave "
                    "num_training_steps=None and let LRTunerCallback take the budget from Trainer."
                )
            return
        self.tuner = LRTuner(self.config, num_training_steps)
        self.apply_lr()

    def lr_factor(self) -> float:
        """The LR factor of the update after the current step: the multiple of the initial LRs it trains at (the
        tuner's multiplier times the schedule's shape, `LRTuner.lr_factor_at`)."""
        if self.tuner is None:  # budget not known yet: hold the initial LR (after warmup, if any)
            return 0.0 if self.last_epoch < self.config.warmup_steps else 1.0
        return self.tuner.lr_factor_at(self.last_epoch)

    def __getattr__(self, name):  # only for names not found: those of earlier releases say what replaced them
        removed_attribute(self, name, _REMOVED)

    def get_lr(self) -> list[float]:
        lr_factor = self.lr_factor()
        return [base_lr * lr_factor for base_lr in self.base_lrs]

    def _write_lrs(self, lrs: Sequence[float]):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def apply_lr(self):
        """Write the LRs of the current step to the optimizer (after a race or a roll-back changed them)."""
        self._last_lr = self.get_lr()
        self._write_lrs(self._last_lr)

    def set_trial_lr(self, lr_factor: float):
        """Write `lr_factor` times the initial LRs, for a challenger's update; `apply_lr()` undoes it."""
        self._write_lrs([base_lr * lr_factor for base_lr in self.base_lrs])

    # -- checkpointing: plain Python types only, so Trainer's torch.load(weights_only=True) restores it
    STATE_FORMAT = 2  # 2: the race state is saved beside (hf_lrtuner.checkpoint); 0.2 and 0.3 wrote no "format"

    def state_dict(self) -> dict:
        return {
            "format": self.STATE_FORMAT,
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
            "config": self.config.to_dict(),
            "tuner": None if self.tuner is None else self.tuner.state_dict(),
        }

    def load_state_dict(self, state_dict: dict):
        """Continue from `state_dict()` of a scheduler of the same run (this version's, or hf_lrtuner 0.2's/0.3's).

        Raises:
            ValueError: the state is of a run with another `LRTunerConfig` (the message names the settings that
                differ; `snapshot_device` may differ) or another budget, or is not a scheduler state.
        """
        missing = {"last_epoch", "_step_count", "base_lrs", "_last_lr", "config", "tuner"} - set(state_dict)
        if missing:
            raise ValueError(f"This is not an LRTunerScheduler state: it lacks {sorted(missing)}.")
        saved = LRTunerConfig(**{**state_dict["config"], "snapshot_device": self.config.snapshot_device})
        # A state of 0.2 or 0.3 (no `accelerate`) continues with 0.3's rule whatever this scheduler's rule settings
        # (LRTuner.from_state_dict): those settings are not compared.
        kept = set(RULE_OF_0_3) if "accelerate" not in state_dict["config"] else set()
        differences = [f"{field.name}={getattr(saved, field.name)!r} (checkpoint) vs "
                       f"{getattr(self.config, field.name)!r} (this scheduler)"
                       for field in dataclasses.fields(LRTunerConfig)
                       if field.name not in kept and getattr(saved, field.name) != getattr(self.config, field.name)]
        if differences:
            raise ValueError(
                "The checkpoint was saved by a run with another LRTunerConfig: " + "; ".join(differences) + ". "
                "Resume with the checkpoint's settings, or start a new run (from its weights, without its scheduler)."
            )
        saved_budget = (state_dict["tuner"] or {}).get("total_steps")
        if self.tuner is not None and saved_budget is not None and saved_budget != self.tuner.total_steps:
            raise ValueError(_budget_differs(saved_budget, self.tuner.total_steps))
        self._restored = True
        self.last_epoch = state_dict["last_epoch"]
        self._step_count = state_dict["_step_count"]
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["_last_lr"])
        self.config = saved  # where snapshots live depends on the machine, not on the run: this scheduler's choice
        self.tuner = None
        if state_dict["tuner"] is not None:
            self.tuner = LRTuner.from_state_dict(state_dict["tuner"])
        # Building a scheduler writes the LR of step 0 to the optimizer; the next update must run at the saved LR.
        self._write_lrs(self._last_lr)


def _budget_differs(saved: int, this: int) -> str:
    return (
        f"The checkpoint's LRTuner state is for a budget of {saved} updates (num_training_steps), this run's is "
        f"{this}. The schedule and the races are planned for the budget, so a resumed run must keep it: resume with "
        f"max_steps={saved}, or start a new run (from the checkpoint's weights, without its scheduler)."
    )
