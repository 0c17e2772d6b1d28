"""Every use of a private or undocumented attribute of `transformers.Trainer` or accelerate, in one place.

Races replay real updates exactly as Trainer makes them, which no public API offers; what that takes is here and
nowhere else in hf_lrtuner, so that a change in either library breaks one module. Tested with transformers 5.24.0,
accelerate 1.15.0 and torch 2.13.0 (line numbers below are transformers 5.24.0's `trainer.py` and accelerate
1.15.0's sources):

- `Trainer.training_step` is replaced on the instance for a run (the documented way is a subclass, which a callback
  cannot impose); `Trainer.current_gradient_accumulation_steps` (set per update, L1885) divides each micro-batch loss
  (L2119), so a replay sets it to the replayed update's micro-batches.
- `Trainer.model_wrapped` (the DDP- or FSDP-wrapped model, L1781), `Trainer.accelerator` (its `scaler`,
  `optimizer_step_was_skipped`, `gradient_state`, `reduce`, and `state.fsdp_plugin.fsdp_version` as Trainer reads it
  at L1720), `Trainer.is_fsdp_enabled` and `Trainer.is_deepspeed_enabled` (L874-875).
- `Trainer._clip_grad_norm` (L2781): the clipping of Trainer's own updates (accelerate's `clip_grad_norm_`, which
  handles FSDP2's sharded gradients, or a norm per device mesh).
- `GradientState._set_sync_gradients` (accelerate `state.py`): a replayed update is a complete one, so gradients sync.
- `Trainer._created_lr_scheduler` (L1374, L1725): a scheduler made by `create_scheduler` is rebuilt by the next
  `train()`, as Trainer does with its own.
- `Trainer._memory_tracker` (L2863, L2900, in `evaluate`): `QuestionAnsweringTrainer.evaluate` reports memory
  metrics as `Trainer.evaluate` does (when `skip_memory_metrics=False`).
- `Trainer._save_optimizer_and_scheduler(output_dir)` (L3565) and `Trainer._load_optimizer_and_scheduler(checkpoint)`
  (L3938) are wrapped on the instance: every process calls them for each checkpoint it saves (in `_save_checkpoint`,
  before `trainer_state.json`, L3444) or resumes from (before `on_train_begin`, L1854), with the checkpoint's folder,
  which no callback event gives (`on_save` comes after `trainer_state.json` and the rotation of old checkpoints).
- `AcceleratedOptimizer.optimizer` (the wrapped optimizer) and `AcceleratedScheduler.scheduler`,
  `.step_with_optimizer`, `.split_batches` (accelerate `scheduler.py`): its `step()` steps the wrapped scheduler once
  per process and update unless `split_batches` or `step_with_optimizer=False`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional, Tuple

import torch


# ------------------------------------------------------------------------------------------- accelerate
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


# ------------------------------------------------------------------------------------------- Trainer
def start_memory_tracking(trainer) -> None:
    """Start Trainer's memory tracker for an evaluation (a no-op unless `skip_memory_metrics=False`)."""
    trainer._memory_tracker.start()


def stop_memory_tracking(trainer, metrics: dict) -> None:
    """Stop Trainer's memory tracker and add its metrics to `metrics`."""
    trainer._memory_tracker.stop_and_update_metrics(metrics)


def sharding_backend(trainer) -> Optional[str]:
    """How `trainer` shards the model and optimizer state: "FSDP2" (torch's `fully_shard`), "FSDP1"
    (`FullyShardedDataParallel`), "DeepSpeed", or `None` (not sharded)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return f"FSDP{getattr(trainer.accelerator.state.fsdp_plugin, 'fsdp_version', 1)}"
    return "DeepSpeed" if getattr(trainer, "is_deepspeed_enabled", False) else None


def grad_scaler(trainer) -> Optional[Any]:
    """The fp16 loss scaler of `trainer`'s accelerator, if any."""
    return getattr(trainer.accelerator, "scaler", None)


def optimizer_step_was_skipped(trainer) -> bool:
    """Whether the update that just ended skipped its optimizer step (an fp16 overflow)."""
    return trainer.accelerator.optimizer_step_was_skipped


def mark_scheduler_created(trainer):
    """Tell `trainer` that it created its scheduler, so that its next `train()` builds a new one (Trainer's own
    `create_scheduler` does the same)."""
    trainer._created_lr_scheduler = True


def wrap_training_step(trainer, wrap: Callable[[Callable], Callable]) -> Callable:
    """Replace `trainer.training_step` on the instance by `wrap(original)`; returns the original."""
    original = trainer.training_step
    trainer.training_step = wrap(original)
    return original


def unwrap_training_step(trainer):
    """Undo `wrap_training_step` (nothing to undo when it was not called)."""
    if "training_step" in vars(trainer):
        del trainer.training_step


def wrap_checkpoint_io(trainer, after_save: Callable[[str], None], before_load: Callable[[str], None],
                       after_load: Callable[[str], None]):
    """Make every process call `after_save(folder)` once Trainer has saved the optimizer and scheduler of a checkpoint,
    and `before_load(folder)` / `after_load(folder)` around their loading from the checkpoint a run resumes from."""
    save, load = trainer._save_optimizer_and_scheduler, trainer._load_optimizer_and_scheduler

    def saving(output_dir: str) -> None:
        save(output_dir)
        after_save(output_dir)

    def loading(checkpoint: Optional[str]) -> None:
        if checkpoint is not None:
            before_load(checkpoint)
        load(checkpoint)
        if checkpoint is not None:
            after_load(checkpoint)

    trainer._save_optimizer_and_scheduler = saving
    trainer._load_optimizer_and_scheduler = loading


def wait_for_every_process(trainer):
    """A barrier over the processes of `trainer`'s run (nothing with one process)."""
    trainer.accelerator.wait_for_everyone()


def replay_update(trainer, training_step: Callable, micro_batches: List[Tuple[dict, tuple, dict]]) -> torch.Tensor:
    """Make one update again, exactly as Trainer made it: `training_step` on every micro-batch (autocast, loss
    scaling, DDP gradient sync or FSDP's reduce-scatter), gradient clipping, optimizer step. Returns the update's
    loss.

    Args:
        trainer (`transformers.Trainer`): the trainer whose model and optimizer are updated.
        training_step (`Callable`): Trainer's own `training_step` (not a wrapper that records batches).
        micro_batches (`List[Tuple[dict, tuple, dict]]`): the `(inputs, args, kwargs)` of each `training_step`
            call of the recorded update.
    """
    model = trainer.model_wrapped
    gradient_state = trainer.accelerator.gradient_state
    sync_gradients = gradient_state.sync_gradients
    gradient_state._set_sync_gradients(True)
    accumulation_steps = getattr(trainer, "current_gradient_accumulation_steps",
                                 trainer.args.gradient_accumulation_steps)
    trainer.current_gradient_accumulation_steps = len(micro_batches)
    try:
        loss = sum(training_step(model, dict(inputs), *args, **kwargs) for inputs, args, kwargs in micro_batches)
        if trainer.args.max_grad_norm is not None and trainer.args.max_grad_norm > 0:
            trainer._clip_grad_norm(model)
        trainer.optimizer.step()
        model.zero_grad()
    finally:
        trainer.current_gradient_accumulation_steps = accumulation_steps
        gradient_state._set_sync_gradients(sync_gradients)
    return loss


def mean_over_processes(trainer, values: List[float]) -> List[float]:
    """`values` averaged over the processes of `trainer`'s run (the same list on every rank)."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(tensor, reduction="mean").tolist()
