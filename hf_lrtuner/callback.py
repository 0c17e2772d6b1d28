"""`LRTunerCallback` and `LRTunerTrainer`: LRTuner inside `transformers.Trainer`."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from typing import Any, Iterator, List, Optional

import torch
from torch.utils.data import IterableDataset
from transformers import Trainer, TrainerCallback

from .config import LRTunerConfig
from .scheduler import LRTunerScheduler
from .trials import TrialRunner

logger = logging.getLogger(__name__)

_PHASE_IDS = {"warmup": 0, "explore": 1, "exploit": 2}


class _TrialBatches:
    """Random updates' worth of micro-batches from a map-style dataset: each iteration draws a fresh permutation from
    torch's RNG (seeded by `TrialRunner` per tuning point) and gives every process its own share of it."""

    def __init__(self, dataset, collate_fn, batch_size: int, accumulation_steps: int, rank: int, world_size: int):
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.accumulation_steps = accumulation_steps
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[List[Any]]:
        order = torch.randperm(len(self.dataset))[self.rank :: self.world_size].tolist()
        per_update = self.batch_size * self.accumulation_steps
        for start in range(0, len(order) - per_update + 1, per_update):
            indices = order[start : start + per_update]
            yield [
                self.collate_fn([self.dataset[i] for i in indices[k : k + self.batch_size]])
                for k in range(0, per_update, self.batch_size)
            ]


class LRTunerCallback(TrainerCallback):
    """Runs the trials of an [`LRTunerScheduler`] inside `transformers.Trainer` and logs what the tuner decided.

    At every tuning point (at train begin and after the scheduler's step), trial updates run through Trainer's own
    `training_step` (autocast, loss scaling, gradient accumulation, DDP gradient sync), gradient clipping and
    optimizer, from a snapshot of the model, optimizer and grad scaler that is restored afterwards. Probe losses are
    averaged over processes, so every rank takes the same decision. Each tuning point is logged with `Trainer.log`
    (so it reaches every `report_to` integration) under `lrtuner/*` keys; the run's trial compute is logged at train
    end. A non-finite gradient norm in the logs (Trainer logs it when `max_grad_norm > 0`, the default) rolls training
    back to the last tuning point's state and lowers the LR; set `logging_steps=1` to check every update. Tuning points
    always check the probe losses, and roll back when training diverged since the previous one.

    Args:
        trial_dataset (`torch.utils.data.Dataset`, *optional*):
            Map-style dataset to draw trial and probe batches from (collated by the training dataloader's
            `collate_fn`). Defaults to the training dataset; required when that is an `IterableDataset`.

    Example:

    ```python
    from hf_lrtuner import LRTunerCallback, LRTunerConfig, LRTunerScheduler

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    scheduler = LRTunerScheduler(optimizer, config=LRTunerConfig(warmup_steps=100))
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset,
                      optimizers=(optimizer, scheduler), callbacks=[LRTunerCallback()])
    trainer.train()
    ```
    """

    def __init__(self, trial_dataset: Optional[torch.utils.data.Dataset] = None):
        if trial_dataset is not None and (isinstance(trial_dataset, IterableDataset) or not hasattr(trial_dataset, "__len__")):
            raise ValueError("trial_dataset must be a map-style dataset (with __len__ and __getitem__).")
        self.trial_dataset = trial_dataset
        self.trainer: Optional[Trainer] = None
        self.scheduler: Optional[LRTunerScheduler] = None
        self.runner: Optional[TrialRunner] = None

    def bind(self, trainer: Trainer):
        """Attach to `trainer` (done by `LRTunerTrainer`; a plain `Trainer` is found at train begin)."""
        self.trainer = trainer

    # ------------------------------------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, lr_scheduler=None, train_dataloader=None, **kwargs):
        trainer = self.trainer if self.trainer is not None else self._find_trainer()
        self.trainer = trainer
        self._check_supported(trainer)
        self.scheduler = self._check_scheduler(trainer, lr_scheduler)
        if state.max_steps is None or state.max_steps <= 0:
            raise ValueError(
                "LRTunerCallback needs the run's length in updates, but Trainer's max_steps is not known. With an "
                "IterableDataset (no length), set TrainingArguments(max_steps=...)."
            )
        self.scheduler.set_num_training_steps(state.max_steps)
        self.runner = TrialRunner(
            model=trainer.model,
            optimizer=self.scheduler.optimizer,
            scheduler=self.scheduler,
            train_step=self._trial_update,
            loss_fn=self._probe_loss,
            batches=self._trial_batches(args, trainer, train_dataloader),
            scaler=getattr(trainer.accelerator, "scaler", None),
            reduce_scores=self._mean_over_processes,
        )
        self._tune_if_due(state, control)

    def on_step_end(self, args, state, control, **kwargs):
        self._tune_if_due(state, control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The gradient norm, not the loss: Trainer drops non-finite losses from the logged mean by default
        # (logging_nan_inf_filter), and once one is kept, every later logged loss stays NaN.
        grad_norm = (logs or {}).get("grad_norm")
        if self.runner is None or not isinstance(grad_norm, (int, float)) or math.isfinite(grad_norm):
            return
        if self.trainer.accelerator.optimizer_step_was_skipped:  # an fp16 overflow: the scaler handled it
            return
        self.runner.check_loss(math.nan, reduced=True)
        logger.warning(
            "LRTuner: non-finite gradient norm at step %d; rolled back to the last tuning point's state and lowered "
            "the LR to %.3g.", state.global_step, self.scheduler.get_last_lr()[0],
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self.runner is None:
            return
        tuner = self.scheduler.tuner
        total = state.global_step + tuner.trial_updates
        self.trainer.log(
            {
                "lrtuner/trial_updates": tuner.trial_updates,
                "lrtuner/probe_batches": tuner.probe_passes,
                "lrtuner/total_updates": total,
                "lrtuner/overhead": tuner.trial_updates / total if total else 0.0,
                "lrtuner/rollbacks": self.runner.rollbacks,
            }
        )

    # ------------------------------------------------------------------------------------------- tuning
    def _tune_if_due(self, state, control):
        if not self.scheduler.is_tuning_point():
            return
        trainer = self.trainer
        sync_gradients = trainer.accelerator.gradient_state.sync_gradients
        trainer.accelerator.gradient_state._set_sync_gradients(True)  # trial updates are complete updates
        try:
            record = self.runner.tune()
        finally:
            trainer.accelerator.gradient_state._set_sync_gradients(sync_gradients)
        tuner = self.scheduler.tuner
        best = min(range(len(record["scores"])), key=lambda i: record["scores"][i])
        should_log = control.should_log  # Trainer.log clears it, which would drop this step's own log line
        trainer.log(
            {
                "lrtuner/phase": _PHASE_IDS[record["phase"]],
                "lrtuner/lr": self.scheduler.get_last_lr()[0],
                "lrtuner/multiplier": tuner.multiplier,
                "lrtuner/exploit_scale": tuner.exploit_scale,
                "lrtuner/candidates": len(record["candidates"]),
                "lrtuner/diverged": sum(record["diverged"]),
                "lrtuner/best_score": record["scores"][best],
                "lrtuner/reference_score": record["reference"],
                "lrtuner/trial_updates": tuner.trial_updates,
            }
        )
        control.should_log = should_log
        if state.is_world_process_zero:
            logger.info(
                "LRTuner step %d (%s): candidates %s, scores %s -> LR factor %.4g",
                record["step"], record["phase"], [f"{c:.3g}" for c in record["lr_factors"]],
                [f"{s:.4g}" for s in record["scores"]], record["lr_factor"],
            )

    def _trial_update(self, micro_batches: List[Any]) -> torch.Tensor:
        """One update exactly as Trainer makes it: `training_step` per micro-batch, clipping, optimizer step."""
        trainer = self.trainer
        model = trainer.model_wrapped
        # Trainer divides each micro-batch loss by this (it is set per update, and not yet at train begin)
        accumulation_steps = getattr(trainer, "current_gradient_accumulation_steps", trainer.args.gradient_accumulation_steps)
        trainer.current_gradient_accumulation_steps = len(micro_batches)
        try:
            batches, num_items_in_batch = trainer.get_batch_samples(
                iter(micro_batches), len(micro_batches), trainer.args.device
            )
            loss = sum(trainer.training_step(model, inputs, num_items_in_batch) for inputs in batches)
        finally:
            trainer.current_gradient_accumulation_steps = accumulation_steps
        if trainer.args.max_grad_norm is not None and trainer.args.max_grad_norm > 0:
            trainer.accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        trainer.optimizer.step()
        model.zero_grad()
        return loss

    def _probe_loss(self, micro_batches: List[Any]) -> float:
        trainer = self.trainer
        losses = [trainer.prediction_step(trainer.model, inputs, prediction_loss_only=True)[0] for inputs in micro_batches]
        return sum(float(loss.float().mean()) for loss in losses) / len(losses)

    def _mean_over_processes(self, values: List[float]) -> List[float]:
        accelerator = self.trainer.accelerator
        if accelerator.num_processes == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
        return accelerator.reduce(tensor, reduction="mean").tolist()

    # ------------------------------------------------------------------------------------------- checks
    def _find_trainer(self) -> Trainer:
        """The Trainer whose callback handler is calling us (a plain `Trainer` gives callbacks no reference)."""
        frame = inspect.currentframe()
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, Trainer) and self in candidate.callback_handler.callbacks:
                return candidate
            frame = frame.f_back
        raise RuntimeError(
            "LRTunerCallback could not find the Trainer running it. Pass it in Trainer(callbacks=[...]) or use "
            "LRTunerTrainer."
        )

    @staticmethod
    def _check_supported(trainer: Trainer):
        if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
            backend = "FSDP" if getattr(trainer, "is_fsdp_enabled", False) else "DeepSpeed"
            raise ValueError(
                f"LRTuner does not support {backend}: its trials snapshot and restore the full model and optimizer "
                "state, which are sharded there. Use DDP (plain multi-process Trainer), or a fixed schedule such as "
                "lr_scheduler_type='warmup_stable_decay' with this backend."
            )

    @staticmethod
    def _check_scheduler(trainer: Trainer, lr_scheduler) -> LRTunerScheduler:
        if not isinstance(lr_scheduler, LRTunerScheduler):
            raise ValueError(
                f"LRTunerCallback needs Trainer's lr_scheduler to be an LRTunerScheduler, got "
                f"{type(lr_scheduler).__name__}. Pass optimizers=(optimizer, LRTunerScheduler(optimizer)) to Trainer, "
                "or use LRTunerTrainer, which builds it."
            )
        stepped = trainer.optimizer  # accelerate's wrapper; a scheduler may hold it or the optimizer it wraps
        if lr_scheduler.optimizer is not stepped and lr_scheduler.optimizer is not getattr(stepped, "optimizer", None):
            raise ValueError(
                "The LRTunerScheduler drives a different optimizer than the one Trainer steps. Build it on the "
                "optimizer passed in Trainer(optimizers=(optimizer, scheduler)), or use LRTunerTrainer."
            )
        return lr_scheduler

    def _trial_batches(self, args, trainer: Trainer, train_dataloader) -> _TrialBatches:
        dataset = self.trial_dataset if self.trial_dataset is not None else getattr(train_dataloader, "dataset", None)
        if dataset is None or isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            raise ValueError(
                "LRTunerCallback draws trial batches from a map-style dataset, but the training data is iterable. "
                "Pass LRTunerCallback(trial_dataset=...) with a map-style sample of the training data."
            )
        per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        if len(dataset) < per_update:
            raise ValueError(
                f"The trial dataset has {len(dataset)} examples, fewer than one update needs ({per_update})."
            )
        return _TrialBatches(
            dataset,
            train_dataloader.collate_fn,
            args.per_device_train_batch_size,
            args.gradient_accumulation_steps,
            args.process_index,
            args.world_size,
        )


class LRTunerTrainerMixin:
    """Makes a `Trainer` (sub)class build an [`LRTunerScheduler`] in `create_scheduler` and run [`LRTunerCallback`].

    This is the path that works where Trainer must create the optimizer and scheduler itself: `model_init` and
    `hyperparameter_search`, or a user-defined Trainer subclass (`class MyTrainer(LRTunerTrainerMixin, MyBase)`).
    Trainer's `warmup_steps` becomes the tuner's warmup unless `lrtuner_config.warmup_steps` is set.

    Args:
        lrtuner_config (`LRTunerConfig`, *optional*): tuner settings; defaults to `LRTunerConfig()`.
        *args, **kwargs: passed to the Trainer class.
    """

    def __init__(self, *args, lrtuner_config: Optional[LRTunerConfig] = None, **kwargs):
        if lrtuner_config is not None and not isinstance(lrtuner_config, LRTunerConfig):
            raise TypeError(f"lrtuner_config must be an LRTunerConfig, got {type(lrtuner_config).__name__}.")
        self.lrtuner_config = lrtuner_config if lrtuner_config is not None else LRTunerConfig()
        super().__init__(*args, **kwargs)
        callback = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, LRTunerCallback)), None)
        if callback is None:
            callback = LRTunerCallback()
            self.add_callback(callback)
        callback.bind(self)

    def create_scheduler(self, num_training_steps: int, optimizer: Optional[torch.optim.Optimizer] = None):
        if self.lr_scheduler is None:
            config = self.lrtuner_config
            if config.warmup_steps == 0:
                config = dataclasses.replace(config, warmup_steps=self.args.get_warmup_steps(num_training_steps))
            optimizer = self.optimizer if optimizer is None else optimizer
            self.lr_scheduler = LRTunerScheduler(getattr(optimizer, "optimizer", optimizer), num_training_steps, config)
            self._created_lr_scheduler = True
        return self.lr_scheduler


class LRTunerTrainer(LRTunerTrainerMixin, Trainer):
    """`transformers.Trainer` with LRTuner as its LR schedule: `LRTunerTrainer(..., lrtuner_config=LRTunerConfig())`.

    Example:

    ```python
    from hf_lrtuner import LRTunerConfig, LRTunerTrainer

    trainer = LRTunerTrainer(model=model, args=TrainingArguments(learning_rate=3e-5, warmup_steps=0.1, ...),
                             train_dataset=train_dataset, lrtuner_config=LRTunerConfig())
    trainer.train()
    ```
    """
