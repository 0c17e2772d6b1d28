"""Every use of an undocumented attribute of accelerate's wrappers, in one place: what the plain-PyTorch `TrialRunner`
and the Trainer integration need to reach the optimizer and scheduler that `accelerate.Accelerator.prepare` wrapped.

- `AcceleratedOptimizer.optimizer` (the wrapped optimizer) and `AcceleratedScheduler.scheduler`,
  `.step_with_optimizer`, `.split_batches` (accelerate `scheduler.py`): its `step()` steps the wrapped scheduler once
  per process and update unless `split_batches` or `step_with_optimizer=False`.

`private_attributes()` lists them; `tests/test_trainer_internals.py` checks that they exist in the installed accelerate
(its tested versions: `hf_lrtuner._trainer_internals.TESTED_VERSIONS`). Importing this module imports no accelerate.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Tuple


def private_attributes() -> Dict[str, Tuple[str, ...]]:
    """The undocumented attributes this module uses, by the class that holds them."""
    return {
        "accelerate.optimizer.AcceleratedOptimizer": ("optimizer",),
        "accelerate.scheduler.AcceleratedScheduler": ("scheduler", "step_with_optimizer", "split_batches"),
    }


def unwrap_optimizer(optimizer: Any) -> Any:
    """The torch optimizer an accelerate `AcceleratedOptimizer` wraps (the optimizer itself otherwise)."""
    return getattr(optimizer, "optimizer", optimizer)


def unwrap_scheduler(scheduler: Any) -> Tuple[Any, int]:
    """The scheduler an accelerate `AcceleratedScheduler` wraps, and how many times one of its `step()` calls per
    optimizer update steps it (1 for any other scheduler)."""
    accelerate_scheduler = sys.modules.get("accelerate.scheduler")  # not imported: no AcceleratedScheduler exists
    if accelerate_scheduler is None or not isinstance(scheduler, accelerate_scheduler.AcceleratedScheduler):
        return scheduler, 1
    from accelerate.state import AcceleratorState

    once = not scheduler.step_with_optimizer or scheduler.split_batches
    return scheduler.scheduler, 1 if once else AcceleratorState().num_processes
