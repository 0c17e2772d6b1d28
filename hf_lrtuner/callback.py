"""`LRTunerCallback` and `LRTunerTrainer`: LRTuner inside `transformers.Trainer`."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

import torch
from transformers import Trainer, TrainerCallback

from . import _trainer_internals as internals
from . import checkpoint
from ._accelerate_internals import unwrap_optimizer
from .config import LRTunerConfig
from .records import TuningRecord, is_race
from .scheduler import LRTunerScheduler
from .trials import TrialRunner

logger = logging.getLogger(__name__)

class LRTunerCallback(TrainerCallback):
    """Runs the races of an [`LRTunerScheduler`] inside `transformers.Trainer` and logs what the tuner decided.

    It wraps the Trainer's `training_step` for the run, so that every update's loss (averaged over processes) reaches
    the tuner, and the micro-batches of the updates inside a race are kept. At the end of a race each challenger
    replays those same batches from the race's snapshot through Trainer's own `training_step` (autocast, loss
    scaling, gradient accumulation, DDP gradient sync), gradient clipping and optimizer; training continues from the
    winning branch. A non-finite or collapsing loss at any update rolls training back to the last safe point and
    lowers the LR, whatever `logging_steps` is. Races and roll-backs are logged with `Trainer.log` (so they reach
    every `report_to` integration) under `lrtuner/*` keys; the run's trial compute is logged at train end.

    Trainer gives its callbacks no reference to itself, so the callback is bound to its Trainer explicitly:
    `LRTunerCallback().bind(trainer)` (which also adds it to the trainer's callbacks), or `LRTunerTrainer` /
    `LRTunerTrainerMixin`, which do it. An unbound callback refuses to start training.

    Checkpoints: Trainer's `scheduler.pt` holds the tuner's decisions; the callback adds the race state beside it
    (`lrtuner_rank{r}_of_{w}.pt`, see [`hf_lrtuner.checkpoint`]), so that a run resumed from any checkpoint, inside a
    race too, continues exactly as the uninterrupted run. Resume from
    `hf_lrtuner.checkpoint.last_complete_checkpoint(output_dir)` after a process was killed: Trainer's
    `resume_from_checkpoint=True` takes the newest folder, even one whose writing was cut short.

    Under FSDP2 (`TrainingArguments(fsdp=..., fsdp_config={"version": 2})`) every process snapshots its own shards of
    the parameters and optimizer state. Trainer refuses `optimizers=` there, so use `LRTunerTrainer` or
    `LRTunerTrainerMixin`, which build the scheduler in `create_scheduler`. FSDP1 and DeepSpeed are refused at train
    begin, with the way to switch.

    Example:

    ```python
    from hf_lrtuner import LRTunerCallback, LRTunerConfig, LRTunerScheduler

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    scheduler = LRTunerScheduler(optimizer, config=LRTunerConfig(warmup_steps=100))
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, optimizers=(optimizer, scheduler))
    LRTunerCallback().bind(trainer)
    trainer.train()
    ```
    """

    def __init__(self):
        self.trainer: Optional[Trainer] = None
        self.scheduler: Optional[LRTunerScheduler] = None
        self.runner: Optional[TrialRunner] = None
        self._saved_scheduler_state: Optional[dict] = None  # scheduler.pt of the checkpoint being resumed from
        self._resume_state: Optional[dict] = None  # the runner's state saved with it

    def bind(self, trainer: Trainer) -> "LRTunerCallback":
        """Run inside `trainer`: keep a reference to it and add this callback to its callbacks unless it is there.

        Args:
            trainer (`transformers.Trainer`): the trainer this callback tunes; one callback per trainer.

        Returns:
            `LRTunerCallback`: this callback.
        """
        if not isinstance(trainer, Trainer):
            raise TypeError(f"LRTunerCallback.bind needs a transformers.Trainer, got {type(trainer).__name__}.")
        if self.trainer is not None and self.trainer is not trainer:
            raise ValueError("This LRTunerCallback is bound to another Trainer already: use one callback per Trainer.")
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        if self.trainer is None:
            internals.wrap_checkpoint_io(trainer, after_save=self._save_race_state,
                                         before_load=self._read_scheduler_file, after_load=self._load_race_state)
        self.trainer = trainer
        return self

    # ------------------------------------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        trainer = self.trainer
        if trainer is None:
            raise RuntimeError(
                "LRTunerCallback is not bound to a Trainer (Trainer gives callbacks no reference to itself). Call "
                "LRTunerCallback().bind(trainer) after building the Trainer (it adds the callback to the trainer), "
                "or use LRTunerTrainer."
            )
        self._check_supported(trainer)
        self.scheduler = self._check_scheduler(trainer, lr_scheduler)
        if state.max_steps is None or state.max_steps <= 0:
            raise ValueError(
                "LRTunerCallback needs the run's length in updates, but Trainer's max_steps is not known. With an "
                "IterableDataset (no length), set TrainingArguments(max_steps=...)."
            )
        self.scheduler.set_num_training_steps(state.max_steps)
        self._record_training_steps(trainer)
        self.runner = TrialRunner(
            model=trainer.model,
            optimizer=self.scheduler.optimizer,
            scheduler=self.scheduler,
            train_step=lambda micro_batches: internals.replay_update(trainer, self._training_step, micro_batches),
            scaler=internals.grad_scaler(trainer),
            reduce_scores=lambda values: internals.mean_over_processes(trainer, values),
            state=self._resume_state,
        )
        self._resume_state = None

    def on_step_end(self, args, state, control, **kwargs):
        micro_batches, losses = self._update_batches, self._update_losses
        self._update_batches, self._update_losses = [], []
        if internals.optimizer_step_was_skipped(self.trainer):  # an fp16 overflow: the scaler handled it
            return
        loss = float(sum(losses)) if losses else math.nan
        record = self.runner.after_update(micro_batches, loss)
        if record is not None:
            self._log_record(record, control, state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.runner is None:
            return
        internals.unwrap_training_step(self.trainer)
        tuner = self.scheduler.tuner
        total = state.global_step + tuner.trial_updates
        self.trainer.log(
            {
                "lrtuner/trial_updates": tuner.trial_updates,
                "lrtuner/total_updates": total,
                "lrtuner/overhead": tuner.trial_updates / total if total else 0.0,
                "lrtuner/rollbacks": tuner.rollbacks,
                "lrtuner/multiplier": tuner.multiplier,
            }
        )

    # ------------------------------------------------------------------------------------------- checkpoints
    def _process(self) -> dict:
        args = self.trainer.args
        return dict(rank=args.process_index, world_size=args.world_size,
                    sharded=internals.sharding_backend(self.trainer) == "FSDP2")

    def _save_race_state(self, folder: str):
        if self.runner is None:  # a checkpoint saved outside training
            return
        checkpoint.save_race_state(folder, self.runner, **self._process())
        internals.wait_for_every_process(self.trainer)  # Trainer's trainer_state.json marks a complete checkpoint

    def _read_scheduler_file(self, folder: str):
        self._saved_scheduler_state = None
        if isinstance(self.trainer.lr_scheduler, LRTunerScheduler):
            self._saved_scheduler_state = checkpoint.read_scheduler_file(folder)

    def _load_race_state(self, folder: str):
        saved, self._saved_scheduler_state = self._saved_scheduler_state, None
        if saved is None or saved["tuner"] is None:
            return
        self._resume_state = checkpoint.load_race_state(folder, saved, **self._process())
        if self._resume_state is None:
            tuner = self.trainer.lr_scheduler.tuner
            race = (f"abandons the race it was in (started at update {tuner.race_start}); races may start again from "
                    f"update {saved['last_epoch']}" if tuner.racing else
                    f"takes its roll-back point at update {saved['last_epoch']}")
            logger.warning(
                "LRTuner: %s was saved by hf_lrtuner 0.2/0.3, without the race state. The run keeps the tuner's "
                "decisions so far, but %s: deterministic, not the uninterrupted run's trajectory.", folder, race,
            )

    # ------------------------------------------------------------------------------------------- races
    def _record_training_steps(self, trainer: Trainer):
        """Wrap `trainer.training_step` so that every update's micro-batches and loss reach the runner: races replay
        the real batches, and divergence is checked at every update whatever the logging settings."""
        internals.unwrap_training_step(trainer)

        def recording(training_step):
            def recording_training_step(model, inputs, *args, **kwargs):
                racing = self.scheduler.tuner.racing
                if racing and not self.runner.race_batches and not self._update_batches:
                    # the race's first update: Trainer may have restored or drawn random numbers since the race started
                    self.runner.capture_race_random_state()
                loss = training_step(model, inputs, *args, **kwargs)
                # inputs is only kept while a race records its batches; the loss of every micro-batch, always
                if racing:
                    self._update_batches.append((dict(inputs), args, kwargs))
                self._update_losses.append(loss.detach().float())
                return loss

            return recording_training_step

        self._training_step = internals.wrap_training_step(trainer, recording)
        self._update_batches, self._update_losses = [], []

    def _log_record(self, record: TuningRecord, control, state):
        tuner = self.scheduler.tuner
        should_log = control.should_log  # Trainer.log clears it, which would drop this step's own log line
        logs = {"lrtuner/lr": self.scheduler.get_last_lr()[0], "lrtuner/multiplier": tuner.multiplier,
                "lrtuner/trial_updates": tuner.trial_updates, "lrtuner/rollbacks": tuner.rollbacks}
        if is_race(record):
            logs["lrtuner/challengers"] = len(record["multipliers"]) - 1
        self.trainer.log(logs)
        control.should_log = should_log
        if state.is_world_process_zero:
            if is_race(record):
                logger.info(
                    "LRTuner race %d-%d: multipliers %s, late-race losses %s -> multiplier %.4g", record["step"],
                    record["end_step"], [f"{m:.3g}" for m in record["multipliers"]],
                    [f"{s:.4g}" for s in record["scores"]], record["multiplier"],
                )
            else:
                logger.warning(
                    "LRTuner: training diverged at step %d; rolled back to step %d's state and lowered the multiplier "
                    "to %.3g.", record["step"], record["rollback_to"], record["multiplier"],
                )

    # ------------------------------------------------------------------------------------------- checks
    @staticmethod
    def _check_supported(trainer: Trainer):
        backend = internals.sharding_backend(trainer)
        if backend == "FSDP1":
            raise ValueError(
                "LRTuner supports FSDP2 (torch's fully_shard), not FSDP1, whose flat parameters its snapshots are "
                "not tested on. Set TrainingArguments(fsdp_config={'version': 2, ...}) (accelerate config: "
                "fsdp_version: 2; FSDP2 needs accelerate 1.6 and torch 2.6 or later)."
            )
        if backend == "DeepSpeed":
            raise ValueError(
                "LRTuner does not support DeepSpeed: its races snapshot and restore the optimizer state, which "
                "DeepSpeed's engine partitions and owns. Use FSDP2 instead (LRTunerTrainer with "
                "TrainingArguments(fsdp='full_shard', fsdp_config={'version': 2})), DDP, or a fixed schedule such as "
                "lr_scheduler_type='warmup_stable_decay' with DeepSpeed."
            )

    @staticmethod
    def _check_scheduler(trainer: Trainer, lr_scheduler) -> LRTunerScheduler:
        if not isinstance(lr_scheduler, LRTunerScheduler):
            fix = (
                "Trainer refuses optimizers=(...) under FSDP: use LRTunerTrainer, or LRTunerTrainerMixin on your "
                "Trainer subclass, which build the LRTunerScheduler in create_scheduler."
                if internals.sharding_backend(trainer) == "FSDP2"  # the only sharding that gets this far
                else "Pass optimizers=(optimizer, LRTunerScheduler(optimizer)) to Trainer, or use LRTunerTrainer, "
                "which builds it."
            )
            raise ValueError(
                f"LRTunerCallback needs Trainer's lr_scheduler to be an LRTunerScheduler, got "
                f"{type(lr_scheduler).__name__}. {fix}"
            )
        stepped = trainer.optimizer  # accelerate's wrapper; a scheduler may hold it or the optimizer it wraps
        if lr_scheduler.optimizer not in (stepped, unwrap_optimizer(stepped)):
            raise ValueError(
                "The LRTunerScheduler drives a different optimizer than the one Trainer steps. Build it on the "
                "optimizer passed in Trainer(optimizers=(optimizer, scheduler)), or use LRTunerTrainer."
            )
        return lr_scheduler


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
        (callback or LRTunerCallback()).bind(self)

    def create_scheduler(self, num_training_steps: int, optimizer: Optional[torch.optim.Optimizer] = None):
        if self.lr_scheduler is None:
            config = self.lrtuner_config
            if config.warmup_steps == 0:
                config = dataclasses.replace(config, warmup_steps=self.args.get_warmup_steps(num_training_steps))
            optimizer = self.optimizer if optimizer is None else optimizer
            self.lr_scheduler = LRTunerScheduler(unwrap_optimizer(optimizer), num_training_steps, config)
            internals.mark_scheduler_created(self)
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
