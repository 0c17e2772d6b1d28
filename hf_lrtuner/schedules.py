"""Fixed learning-rate schedules used as baselines for the tuner.

`get_knee_schedule` is the explore-exploit "Knee" baseline: `transformers.get_wsd_schedule` (warmup, stable, decay)
with a linear decay to 0, its phases given as a fraction of the budget like `LRTunerConfig.explore_fraction`. It is
also the shape the tuner scales: an `LRTuner` with `LRTunerConfig(warmup_steps=w, explore_fraction=f)` follows
`get_knee_schedule(optimizer, w, T, f)` times its multiplier (with the default `explore_fraction=0`, Trainer's `linear`
schedule); both place the knee with `hf_lrtuner.config.decay_start`. `transformers` is imported only when a schedule
is built.
"""

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .config import decay_start


def get_knee_schedule(
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    explore_fraction: float = 0.5,
    last_epoch: int = -1,
) -> LambdaLR:
    """Create the "knee" schedule: linear warmup, constant learning rate, then linear decay to 0.

    The learning rate rises linearly from 0 to the optimizer's learning rate over `num_warmup_steps`, stays there
    until the knee at `round(explore_fraction * num_training_steps)` (at the earliest when warmup ends, see
    `hf_lrtuner.config.decay_start`) and then falls linearly to 0 at `num_training_steps`. It is
    `transformers.get_wsd_schedule` with `num_stable_steps = knee - num_warmup_steps`,
    `num_decay_steps = num_training_steps - knee` and `decay_type="linear"`; with `explore_fraction=0` it is Trainer's
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
    from transformers import get_wsd_schedule

    knee = decay_start(num_training_steps, num_warmup_steps, explore_fraction)
    return get_wsd_schedule(
        optimizer,
        num_warmup_steps=num_warmup_steps,
        num_stable_steps=knee - num_warmup_steps,
        num_decay_steps=num_training_steps - knee,
        decay_type="linear",
        last_epoch=last_epoch,
    )
