"""What differs between the supported transformers versions for code that builds `TrainingArguments` or its own
`Trainer` subclass (as `scripts/run_squad.py` does), as public helpers.

- A warmup given as a fraction of the updates is `warmup_steps=0.1` in transformers 5.x, which removed
  `warmup_ratio`, and `warmup_ratio=0.1` in 4.x, whose `warmup_steps` takes integers only (both round up).
- Batches of similar lengths are `train_sampling_strategy="group_by_length"` in 5.x, `group_by_length=True` in 4.x.
- A `create_scheduler` override that builds its own scheduler calls `mark_scheduler_created(trainer)`, as Trainer's
  own does, so that the next `train()` builds a new one (it sets a private attribute of Trainer, listed in
  `hf_lrtuner._trainer_internals`).
"""

from __future__ import annotations

from typing import Any, Dict

from ._trainer_internals import mark_scheduler_created, transformers_major_version

__all__ = ["group_by_length", "mark_scheduler_created", "train_sampling_strategy", "warmup_fraction"]


def warmup_fraction(fraction: float) -> Dict[str, float]:
    """The `TrainingArguments` keyword that warms up over `fraction` of the updates: `warmup_steps` in transformers
    5.x, `warmup_ratio` in 4.x.

    Args:
        fraction (`float`): the share of the updates to warm up over, in [0, 1).
    """
    return {"warmup_steps" if transformers_major_version() >= 5 else "warmup_ratio": fraction}


def group_by_length() -> Dict[str, Any]:
    """The `TrainingArguments` keyword that batches training examples of similar lengths together (less padding):
    `train_sampling_strategy="group_by_length"` in transformers 5.x, `group_by_length=True` in 4.x."""
    if transformers_major_version() >= 5:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def train_sampling_strategy(args) -> str:
    """How `args` (`TrainingArguments`) orders training examples, in transformers 5.x's terms: "random",
    "group_by_length" (4.x: `group_by_length=True`) or another 5.x strategy."""
    if transformers_major_version() >= 5:
        return args.train_sampling_strategy
    return "group_by_length" if args.group_by_length else "random"
