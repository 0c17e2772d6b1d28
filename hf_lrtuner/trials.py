"""`TrialRunner`: runs the tuner's races and divergence roll-backs in a plain PyTorch training loop."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, List, Optional

import torch

from ._accelerate_internals import unwrap_optimizer, unwrap_scheduler
from ._removed import RACES, removed_attribute
from .records import RollbackRecord, TuningRecord
from .scheduler import LRTunerScheduler
from .snapshot import TrainingSnapshot

_REMOVED = {  # TrialRunner's names of earlier releases -> what replaced them
    "maybe_tune": f"{RACES}: call `after_update(batch, loss)` after every update and `scheduler.step()`",
    "check_loss": "`after_update(batch, loss)` checks the loss (and rolls back a collapse) after every update",
    "tune": RACES, "draw_batches": RACES, "score": RACES, "loss_fn": RACES, "batches": RACES,
    "rollbacks": "the tuner counts them: `runner.tuner.rollbacks` (`scheduler.tuner.rollbacks`)",
}


def _as_float(loss: Any) -> float:
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


class TrialRunner:
    """Runs the races and roll-backs of an [`LRTunerScheduler`] around the updates of a training loop.

    Call `after_update(batch, loss)` after every update and `scheduler.step()`. When a race starts, the runner
    snapshots the training state and keeps the batches of the updates that follow. When a challenger's horizon is
    reached, it replays those same batches from the snapshot with `train_step` (under the schedule the run follows,
    warmup ramp included), and the tuner compares its losses with the real run's. Training continues from the winning branch, so the
    model, optimizer and scaler state may be replaced in place. A loss that is non-finite, or that shows training
    collapsing (see [`LossMonitor`]), rolls the state back to the last safe point and lowers the LR, at any update.
    The two snapshots (race start, leading branch) live where the scheduler's `LRTunerConfig.snapshot_device` says;
    under FSDP2 each process snapshots its own shards.

    Args:
        model (`torch.nn.Module`): the model being trained.
        optimizer (`torch.optim.Optimizer`): the optimizer `scheduler` drives (or accelerate's wrapper of it).
        scheduler (`LRTunerScheduler`): the tuner, with its budget set, stepped once per optimizer update. One that
            `accelerator.prepare` wrapped is accepted only where the wrapper steps it once per update (one process,
            `split_batches=True`, or `step_scheduler_with_optimizer=False`); otherwise a `ValueError` says what to
            do.
        train_step (`Callable[[Any], Any]`): performs one full training update on a batch (forward, backward,
            clipping, `optimizer.step()`, `optimizer.zero_grad()`) and returns its loss. The same function the
            training loop uses, so challengers go through the same autocast, clipping and accumulation.
        scaler (`torch.amp.GradScaler`, *optional*): the fp16 loss scaler, snapshotted with the rest of the state.
        reduce_scores (`Callable[[List[float]], List[float]]`, *optional*): averages losses over processes in a
            distributed run, so every rank takes the same decision.
        state (`dict`, *optional*): a `state_dict()` saved with the checkpoint the model, optimizer and scheduler were
            restored from: the run then continues exactly as it would have without the interruption, inside a race
            too. Without it, a resumed run abandons an open race and takes its roll-back point at the resumed step.

    What a plain loop must save at a checkpoint, for a resumed run to be the same run: the model's, optimizer's,
    scheduler's (and scaler's) `state_dict()`, this runner's `state_dict()` (see there), the random-number state
    (`torch.get_rng_state()`, and CUDA's), and where the data stands; [`~hf_lrtuner.checkpoint.save_checkpoint_file`]
    writes such a file atomically, with a checksum that [`~hf_lrtuner.checkpoint.load_checkpoint_file`] verifies.

    Example:

    ```python
    runner = TrialRunner(model, optimizer, scheduler, train_step)
    for batch in batches_for_budget:
        loss = train_step(batch)
        scheduler.step()
        runner.after_update(batch, loss)   # races and roll-backs; nothing most of the time
    ```
    """

    STATE_FORMAT = 1  # version of `state_dict()`'s layout

    def __getattr__(self, name):  # only for names not found: those of earlier releases say what replaced them
        removed_attribute(self, name, _REMOVED)

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: LRTunerScheduler,
        train_step: Callable[[Any], Any],
        scaler: Optional[Any] = None,
        reduce_scores: Optional[Callable[[List[float]], List[float]]] = None,
        state: Optional[dict] = None,
        **removed,
    ):
        # 0.1's TrialRunner(model, optimizer, scheduler, train_step, loss_fn, batches, ...): say what replaced them
        if set(removed) & {"loss_fn", "batches"} or (callable(scaler) and not hasattr(scaler, "unscale_")):
            raise TypeError(
                f"TrialRunner takes no loss_fn or batches since 0.2 ({RACES}): build it as TrialRunner(model, "
                "optimizer, scheduler, train_step) and call runner.after_update(batch, loss) after every update "
                "(CHANGELOG.md lists every change)."
            )
        if removed:
            raise TypeError(f"TrialRunner() got unexpected keyword arguments {sorted(removed)}")
        scheduler, steps_per_update = unwrap_scheduler(scheduler)
        if not isinstance(scheduler, LRTunerScheduler):
            raise TypeError(f"scheduler must be an LRTunerScheduler, got {type(scheduler).__name__}.")
        if steps_per_update > 1:
            raise ValueError(
                "accelerator.prepare wrapped the LRTunerScheduler in an AcceleratedScheduler, whose step() steps it "
                f"once per process ({steps_per_update} times) per update, so the tuner would run {steps_per_update}x "
                "too fast. Do not pass the scheduler to accelerator.prepare: call scheduler.step() on the "
                "LRTunerScheduler once per optimizer update (when accelerator.sync_gradients is True). Or create "
                "Accelerator(step_scheduler_with_optimizer=False), whose wrapper steps it once per call."
            )
        if scheduler.optimizer is not unwrap_optimizer(optimizer):
            raise ValueError(
                "The scheduler drives a different optimizer than the one passed to TrialRunner; build "
                "LRTunerScheduler on the optimizer that train_step steps."
            )
        if scheduler.tuner is None:
            raise ValueError(
                "The scheduler has no budget yet: build LRTunerScheduler with num_training_steps, or call "
                "scheduler.set_num_training_steps(...) before creating the TrialRunner."
            )
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_step = train_step
        self.reduce_scores = reduce_scores
        snapshot = dict(model=model, optimizer=scheduler.optimizer, scaler=scaler,
                        device=scheduler.config.snapshot_device)
        self.safe_point = TrainingSnapshot(**snapshot)  # race start, or the last healthy state
        self.leader = TrainingSnapshot(**snapshot)  # end state of the race's best arm so far
        self.race_batches: List[Any] = []
        self.race_losses: List[float] = []
        self.race_rng: Optional[tuple] = None  # random-number state at the race's start: every arm draws the same dropout
        self._last_step = self.step
        if state is not None:
            self._load_state_dict(state)
            return
        scheduler.tuner.abandon_race()  # a run resumed inside a race without the runner's state: it cannot go on
        self.safe_point.capture()
        scheduler.tuner.mark_safe_point(self.step)
        self._maybe_start_race()

    def state_dict(self, include_snapshot: bool = True) -> dict:
        """What the runner holds beyond the scheduler's state, for a checkpoint after an update: the snapshot a race
        replays from and a divergence returns to, the race's batches and the real run's losses so far, and the
        random-number state the race's arms start from. Tensors and plain Python types, as long as the batches are
        (tensors, dicts, lists, tuples): `torch.load(weights_only=True)` reads it back.

        It costs what the snapshot holds (the parameters, buffers and optimizer state: 12 bytes per parameter with
        fp32 AdamW) plus the batches of the updates of an open race.

        Args:
            include_snapshot (`bool`, *optional*, defaults to `True`): `False` leaves the snapshot out, for a process
                whose snapshot is a copy of another's (DDP); the `state` it resumes from must then have that
                process's snapshot put under `"snapshot"`.
        """
        return {
            "format": self.STATE_FORMAT,
            "step": self.step,
            "race_start": self.tuner.race_start,
            "safe_point_step": self.tuner.safe_point_step,
            "snapshot": self.safe_point.state_dict() if include_snapshot else None,
            "race_batches": list(self.race_batches),
            "race_losses": list(self.race_losses),
            "race_rng": self.race_rng,
        }

    def _load_state_dict(self, state: dict):
        tuner = self.tuner
        expected = {"format": self.STATE_FORMAT, "step": self.step, "race_start": tuner.race_start,
                    "safe_point_step": tuner.safe_point_step}
        differences = [f"{key} {state.get(key)!r} (runner state) vs {value!r} (scheduler)"
                       for key, value in expected.items() if state.get(key) != value]
        if differences:
            raise ValueError(
                "The TrialRunner state does not belong to the scheduler state it was loaded with: "
                f"{'; '.join(differences)}. Load both from the same checkpoint."
            )
        updates = self.step - tuner.race_start if tuner.racing else 0
        if len(state["race_batches"]) != updates or len(state["race_losses"]) != updates:
            raise ValueError(
                f"The TrialRunner state holds {len(state['race_batches'])} race batches and "
                f"{len(state['race_losses'])} losses where the open race has run {updates} updates: it is corrupted."
            )
        self.safe_point.load_state_dict(state["snapshot"])
        self.race_batches = list(state["race_batches"])
        self.race_losses = [float(loss) for loss in state["race_losses"]]
        self.race_rng = state["race_rng"]

    @property
    def tuner(self):
        return self.scheduler.tuner

    @property
    def step(self) -> int:
        """Completed updates, as the scheduler counts them (fp16-skipped updates do not count)."""
        return self.scheduler.last_epoch

    def after_update(self, batch: Any, loss: Any, reduced: bool = False) -> Optional[TuningRecord]:
        """Feed the update that just ran on `batch` with loss `loss` (after `scheduler.step()`).

        Pass `reduced=True` for a loss that is already the same on every process. Returns the record of a race that
        ended at this update, or of a roll-back (also after a race whose incumbent stalled, `stall_check`: that race's
        record is in `tuner.records`); `None` otherwise.
        """
        if self.step != self._last_step + 1:
            raise RuntimeError(
                f"TrialRunner.after_update expects one scheduler.step() per update before it, but the scheduler moved "
                f"from step {self._last_step} to {self.step}. Call scheduler.step() once per optimizer update, and "
                "after_update only for updates the optimizer made (not for fp16-skipped ones). A scheduler passed "
                "through accelerator.prepare is stepped once per process: step the LRTunerScheduler itself."
            )
        self._last_step = self.step
        value = _as_float(loss)
        if self.reduce_scores is not None and not reduced:
            value = self.reduce_scores([value])[0]
        tuner = self.tuner
        if tuner.racing:
            self.race_batches.append(batch)
            self.race_losses.append(value)
        if tuner.observe(value):
            return self.roll_back()
        record = None
        due = tuner.challengers_due(self.step)
        if due:
            self._race_challengers(due)
            if tuner.race_decided(self.step):
                record = tuner.finish_race(self.step, self.race_losses)
                self.scheduler.apply_lr()
                self.race_batches, self.race_losses = [], []
                if tuner.rollback_due:  # the incumbent stalled beside a diverged larger LR (`stall_check`)
                    return self.roll_back()
        self._maybe_start_race()
        return record

    # ------------------------------------------------------------------------------------------- races
    def _maybe_start_race(self):
        tuner, step = self.tuner, self.step
        if tuner.race_starts_at(step):
            self.safe_point.capture()
            tuner.start_race(step)
            self.race_batches, self.race_losses = [], []
            self.capture_race_random_state()
        elif tuner.safe_point_due(step):
            self.safe_point.capture()
            tuner.mark_safe_point(step)

    def capture_race_random_state(self):
        """Keep the random-number state the race's first update starts from, for the challengers to replay. Called at
        the race's start; call it again right before that update if something draws random numbers in between."""
        self.race_rng = (torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in _cuda_devices()])

    def _race_challengers(self, multipliers: List[float]):
        """Replay `multipliers` from the race's snapshot over the batches so far; leave the state of the leading arm."""
        tuner = self.tuner
        self.leader.capture()  # the real run: it leads until a challenger beats it
        leader_is_current = True
        for index, multiplier in enumerate(multipliers):
            self.safe_point.restore()
            losses = self._replay(multiplier, tuner.race_start)
            leads = tuner.score_challenger(multiplier, losses, self.race_losses)
            if leads and index < len(multipliers) - 1:
                self.leader.capture()
            leader_is_current = leads
        if not leader_is_current:
            self.leader.restore()

    def _replay(self, multiplier: float, start: int) -> List[float]:
        """Train the race's batches from its start at `multiplier`, as the run would have; stop at a divergence (judged
        against the real run over the same updates), or when the challenger is clearly behind (`challenger_behind`)."""
        tuner = self.tuner
        watch = tuner.challenger_monitor()
        losses: List[float] = []
        try:
            with self._race_random_numbers():
                for offset, batch in enumerate(self.race_batches):
                    self.scheduler.set_trial_lr(tuner.lr_factor_at(start + offset, multiplier))
                    loss = _as_float(self.train_step(batch))
                    if self.reduce_scores is not None:
                        loss = self.reduce_scores([loss])[0]
                    losses.append(loss)
                    if watch.update(loss, self.race_losses[offset]) or tuner.challenger_behind(
                            multiplier, losses, self.race_losses):
                        break
        finally:
            self.scheduler.apply_lr()
        return losses

    def roll_back(self) -> RollbackRecord:
        """Return the model, optimizer and scaler to the last safe point and lower the multiplier one factor.

        `after_update` calls it when the loss shows training diverging, or stalled after a roll-back (so the back-off
        goes on down until training makes progress); call it yourself for a divergence the loss cannot show (e.g. a
        failed validation check). Returns the roll-back's record.
        """
        self.safe_point.restore()
        record = self.tuner.back_off(self.step)
        self.scheduler.apply_lr()
        self.race_batches, self.race_losses = [], []
        self._maybe_start_race()
        return record

    @contextlib.contextmanager
    def _race_random_numbers(self):
        """The random numbers the real run drew from the race's start (same dropout masks for every arm), leaving the
        training run's random-number stream where it is."""
        cpu_state, cuda_states = self.race_rng
        devices = _cuda_devices()
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(cpu_state)
            for device, state in zip(devices, cuda_states):
                torch.cuda.set_rng_state(state, device)
            yield


def _cuda_devices() -> List[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
