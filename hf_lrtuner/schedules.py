"""Fixed learning-rate schedules used as baselines for the tuner.

`get_knee_schedule` is the explore-exploit "Knee" baseline. It is also the shape the tuner scales: an `LRTuner` with
`LRTunerConfig(warmup_steps=w, explore_fraction=f)` follows `get_knee_schedule(optimizer, w, T, f)` times its multiplier
(with the default `explore_fraction=0`, Trainer's `linear` schedule).
"""

from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _knee_lr_lambda(current_step: int, *, num_warmup_steps: int, knee_step: int, num_training_steps: int) -> float:
    if current_step < num_warmup_steps:
        return current_step / max(1, num_warmup_steps)
    if current_step < knee_step:
        return 1.0
    return max(0.0, (num_training_steps - current_step) / max(1, num_training_steps - knee_step))


def get_knee_schedule(
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    explore_fraction: float = 0.5,
    last_epoch: int = -1,
) -> LambdaLR:
    """Create the "knee" schedule: linear warmup, constant learning rate, then linear decay to 0.

    The learning rate rises linearly from 0 to the optimizer's learning rate over `num_warmup_steps`, stays there
    until the knee at `round(explore_fraction * num_training_steps)` (at the earliest when warmup ends) and then
    falls linearly to 0 at `num_training_steps`. It is `transformers.get_wsd_schedule` with a linear decay, phrased
    by fraction of the budget like `LRTunerConfig.explore_fraction`; with `explore_fraction=0` it is Trainer's
    `linear` schedule. The default 0.5 is the Knee paper's explore fraction (the tuner's own default is 0).

    Args:
        optimizer (`torch.optim.Optimizer`): The optimizer whose learning rate is scheduled.
        num_warmup_steps (`int`): Number of warmup steps, at most `num_training_steps`.
        num_training_steps (`int`): Total number of training steps.
        explore_fraction (`float`, *optional*, defaults to 0.5): Fraction of the training steps, warmup included,
            spent before the decay starts. 0 decays right after warmup, 1 never decays.
        last_epoch (`int`, *optional*, defaults to -1): The index of the last step when resuming training.

    Returns:
        `torch.optim.lr_scheduler.LambdaLR` with the schedule.
    """
    if num_training_steps < 1:
        raise ValueError(f"num_training_steps must be at least 1, got {num_training_steps}.")
    if not 0.0 <= explore_fraction <= 1.0:
        raise ValueError(f"explore_fraction must be between 0 and 1, got {explore_fraction}.")
    if not 0 <= num_warmup_steps <= num_training_steps:
        raise ValueError(
            f"num_warmup_steps must be between 0 and num_training_steps ({num_training_steps}), got {num_warmup_steps}."
        )
    knee_step = max(num_warmup_steps, round(explore_fraction * num_training_steps))
    lr_lambda = partial(
        _knee_lr_lambda, num_warmup_steps=num_warmup_steps, knee_step=knee_step, num_training_steps=num_training_steps
    )
    return LambdaLR(optimizer, lr_lambda, last_epoch)
