"""The schedule drivers of the suite's plain-PyTorch loop (`benchmarks.train_loop`), and method strings split into a
name and overrides. Their own module, so that `benchmarks.peers` builds on them without importing the package that
registers the peers."""

from __future__ import annotations

import ast
from typing import Any, Optional

__all__ = ["Driver", "SchedulerDriver", "split_method"]


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def split_method(method: str) -> tuple[str, dict]:
    """``"lrtuner:race_margin=0,arms=3"`` -> ``("lrtuner", {"race_margin": 0, "arms": 3})``, whatever the name
    (`benchmarks.parse_method` also checks that the method exists)."""
    base, _, rest = method.partition(":")
    overrides = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"Method override {part!r} in {method!r} is not key=value.")
        overrides[key.strip()] = _parse_value(value)
    return base, overrides


class Driver:
    """Called by `train_loop` around each ordinary update."""

    trial_updates = 0
    probe_passes = 0
    stop_on_nonfinite = True  # a non-finite training loss ends the run (a tuner may roll back instead)
    optimizer = None  # set by a method that replaces the task's optimizer (e.g. an LR-free one): train_loop uses it

    def current_lr(self) -> Optional[float]:  # the LR of the coming update, if not param_groups[0]["lr"]
        return None

    def finish(self):  # after the last update, before the task evaluates (e.g. Schedule-Free's optimizer.eval())
        pass

    def before_update(self):  # whatever the method does before an update (e.g. a tuning point)
        pass

    def after_update(self, batch, loss):  # scheduler step and whatever the method does after an update
        raise NotImplementedError

    def records(self) -> Optional[list]:
        return None


class SchedulerDriver(Driver):
    """Steps an LR scheduler after every update."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def after_update(self, batch, loss):
        self.scheduler.step()
