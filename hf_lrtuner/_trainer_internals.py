"""Every use of a private or undocumented attribute of `transformers.Trainer` (and of the accelerate objects Trainer
holds), and every Trainer method that differs between the supported transformers versions, in one place. The
unwrapping of accelerate's optimizer and scheduler, which the plain-PyTorch `TrialRunner` needs too, is
`_accelerate_internals`; what differs in public `TrainingArguments`, and the helpers that scripts building their
own Trainer subclasses need, are the public `hf_lrtuner.compat`.

Races replay real updates exactly as Trainer makes them, which no public API offers; what that takes is here and
nowhere else in hf_lrtuner, so that a change in either library breaks one module, and this module picks the access
that the installed version needs. `TESTED_VERSIONS` holds the two ends of the supported range that
`scripts/version_matrix.sh` tests; `private_attributes()` lists what is used, and `tests/test_trainer_internals.py`
checks that all of it exists in the installed versions. Line numbers below are transformers 5.25.0's `trainer.py`
("5.x") and 4.57.1's ("4.x"; 4.57.1 to 4.57.6 have the same lines):

- `Trainer.training_step` is replaced on the instance for a run (the documented way is a subclass, which a callback
  cannot impose); `Trainer.current_gradient_accumulation_steps` (set per update, 5.x L1922, 4.x L2621) divides each
  micro-batch loss (5.x L2156, 4.x L4064), so a replay sets it to the replayed update's micro-batches.
- `Trainer.model_wrapped` (the DDP- or FSDP-wrapped model, 5.x L1796, 4.x L2494), `Trainer.accelerator` (its
  `scaler`, `optimizer_step_was_skipped`, `gradient_state`, `reduce`, and `state.fsdp_plugin.fsdp_version` as Trainer
  reads it at 5.x L1735, 4.x L2419; accelerate before 1.6 has no FSDP2 and no `fsdp_version`), `Trainer.is_fsdp_enabled`
  and `Trainer.is_deepspeed_enabled` (5.x L874-875, 4.x L5522-5523).
- The clipping of Trainer's own updates: `Trainer._clip_grad_norm` in 5.x (L2825: accelerate's `clip_grad_norm_`,
  which handles FSDP2's sharded gradients, or a norm per device mesh); 4.x has no such method and calls accelerate's
  `clip_grad_norm_` inline (L2697-2718; its other branches serve apex, SageMaker model parallelism and tensor
  parallelism, which LRTuner is not tested with).
- `GradientState._set_sync_gradients` (accelerate `state.py`): a replayed update is a complete one, so gradients sync.
- `Trainer._created_lr_scheduler` (5.x L1389, 4.x L1859): a scheduler made by `create_scheduler` is rebuilt by the
  next `train()`, as Trainer does with its own.
- `Trainer._memory_tracker` (in `evaluate`, 5.x L2849-2944, 4.x L4421-4521): `QuestionAnsweringTrainer.evaluate`
  reports memory metrics as `Trainer.evaluate` does (when `skip_memory_metrics=False`).
- `Trainer._save_optimizer_and_scheduler(output_dir)` (5.x L3565, 4.x L3422) and
  `Trainer._load_optimizer_and_scheduler(checkpoint)` (5.x L3938, 4.x L3487) are wrapped on the instance: every
  process calls them for each checkpoint it saves (in `_save_checkpoint`, before `trainer_state.json`, 5.x L3444,
  4.x L3345) or resumes from (before `on_train_begin`, 5.x L1854, 4.x L2510), with the checkpoint's folder,
  which no callback event gives (`on_save` comes after `trainer_state.json` and the rotation of old checkpoints).
- `Trainer._get_eval_sampler` (5.x L1162; 4.x has it too): `QuestionAnsweringTrainer` overrides it to keep
  evaluation in dataset order.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch


# The ends of the supported range, as `scripts/version_matrix.sh` installs them: "floor" equals the minimums in
# setup.cfg, "newest" what `scripts/setup_env.sh` installed when they were last tested (torch: the CPU wheel it pins).
TESTED_VERSIONS = {
    "floor": {"torch": "2.4.0", "transformers": "4.57.1", "accelerate": "1.3.0"},
    "newest": {"torch": "2.13.0", "transformers": "5.25.0", "accelerate": "1.16.0"},
}


@functools.lru_cache(maxsize=None)
def transformers_major_version() -> int:
    """The major version of the installed transformers (imported here, not by `import hf_lrtuner`)."""
    import transformers

    return int(transformers.__version__.split(".")[0])


def private_attributes() -> Dict[str, Tuple[str, ...]]:
    """The private or undocumented attributes this module uses, by the class that holds them (attributes set in
    `__init__` or during `train()` are attributes of its instances), for the installed versions."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    trainer = ("model_wrapped", "accelerator", "is_fsdp_enabled", "is_deepspeed_enabled",
               "current_gradient_accumulation_steps", "_created_lr_scheduler", "_memory_tracker", "_get_eval_sampler",
               "_save_optimizer_and_scheduler", "_load_optimizer_and_scheduler")
    if transformers_major_version() >= 5:
        trainer += ("_clip_grad_norm",)
    fsdp_fields = FullyShardedDataParallelPlugin.__dataclass_fields__
    return {
        "transformers.Trainer": trainer,
        "accelerate.Accelerator": ("scaler", "optimizer_step_was_skipped", "gradient_state"),
        "accelerate.state.GradientState": ("_set_sync_gradients",),
        # `sharding_backend` reads it with a default of 1: FSDP1 is all that an accelerate without the field has
        "accelerate.utils.FullyShardedDataParallelPlugin": ("fsdp_version",) if "fsdp_version" in fsdp_fields else (),
    }


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
            clip_gradients(trainer, model)
        trainer.optimizer.step()
        model.zero_grad()
    finally:
        trainer.current_gradient_accumulation_steps = accumulation_steps
        gradient_state._set_sync_gradients(sync_gradients)
    return loss


def clip_gradients(trainer, model) -> None:
    """Clip the gradients of `model` to `trainer.args.max_grad_norm`, as Trainer clips those of its own updates."""
    if transformers_major_version() >= 5:
        trainer._clip_grad_norm(model)
    else:
        trainer.accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)


def mean_over_processes(trainer, values: List[float]) -> List[float]:
    """`values` averaged over the processes of `trainer`'s run (the same list on every rank)."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(tensor, reduction="mean").tolist()
