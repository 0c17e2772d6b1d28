"""`TrialRunner`: runs the tuner's candidate trials in a plain PyTorch training loop."""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any, Callable, Iterable, List, Optional, Sequence

import torch

from .scheduler import LRTunerScheduler
from .snapshot import TrainingSnapshot

# Offset between the trial seeds of two tuning points, so that their random draws do not overlap.
_SEED_STRIDE = 1_000_003


def _as_float(loss: Any) -> float:
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


class TrialRunner:
    """Runs the candidate trials of every tuning point of an [`LRTunerScheduler`].

    At a tuning point it draws trial and probe batches (the same for every candidate), snapshots the training state,
    scores the current state on the probe batches, then for each candidate the tuner asks for: sets the candidate LR,
    runs `trial_steps` updates with `train_step`, scores the probe batches with `loss_fn` (eval mode, no grad) and
    restores the state. Training never continues from a trial. The snapshot of the last tuning point is kept: if a
    training loss passed to `check_loss` is non-finite, the state is rolled back to it and the LR backed off.

    Args:
        model (`torch.nn.Module`): the model being trained.
        optimizer (`torch.optim.Optimizer`): the optimizer `scheduler` drives.
        scheduler (`LRTunerScheduler`): the tuner.
        train_step (`Callable[[Any], Any]`): performs one full training update on a batch (forward, backward,
            clipping, `optimizer.step()`, `optimizer.zero_grad()`) and returns its loss. The same function the
            training loop uses, so trials go through the same autocast, clipping and accumulation.
        loss_fn (`Callable[[Any], Any]`): forward pass only, returns the loss of a batch (used to score candidates).
        batches (`Iterable`): source of batches, e.g. a shuffling `DataLoader`. At each tuning point it is iterated
            afresh under a seed derived from the step, so a resumed run draws the same trial and probe batches.
        scaler (`torch.amp.GradScaler`, *optional*): the fp16 loss scaler, snapshotted with the rest of the state.
        reduce_scores (`Callable[[List[float]], List[float]]`, *optional*): averages probe losses over processes in
            a distributed run, so every rank takes the same decision.

    Example:

    ```python
    runner = TrialRunner(model, optimizer, scheduler, train_step, loss_fn, batches=train_loader)
    for batch in batches_for_budget:
        runner.maybe_tune()          # a search at tuning points; nothing otherwise
        loss = train_step(batch)
        scheduler.step()
        runner.check_loss(loss)      # rolls back a diverged update
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: LRTunerScheduler,
        train_step: Callable[[Any], Any],
        loss_fn: Callable[[Any], Any],
        batches: Iterable,
        scaler: Optional[Any] = None,
        reduce_scores: Optional[Callable[[List[float]], List[float]]] = None,
    ):
        if not isinstance(scheduler, LRTunerScheduler):
            raise TypeError(f"scheduler must be an LRTunerScheduler, got {type(scheduler).__name__}.")
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                "The scheduler drives a different optimizer than the one passed to TrialRunner; build "
                "LRTunerScheduler on the optimizer that train_step steps."
            )
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_step = train_step
        self.loss_fn = loss_fn
        self.batches = batches
        self.reduce_scores = reduce_scores
        self.snapshot = TrainingSnapshot(model, optimizer, scaler)
        self.snapshot.capture()  # the state to return to if training diverges before the first tuning point
        self.rollbacks = 0
        if scheduler.tuner is not None and scheduler.tuner.last_reference is None:
            self._score_initial_state()

    @property
    def config(self):
        return self.scheduler.config

    def maybe_tune(self) -> Optional[dict]:
        """Run a tuning point if the scheduler is at one; returns its record, or `None`."""
        if not self.scheduler.is_tuning_point():
            return None
        return self.tune()

    def tune(self) -> dict:
        """Run the tuning point at the scheduler's current step and apply the chosen LR."""
        step = self.scheduler.last_epoch
        with self._seeded(self._seed(step)):
            trial_batches, probe_batches = self.draw_batches()
        if self._diverged_since_last_tuning():
            self._roll_back()
        reference = self._count_probes(self.score(probe_batches))
        if not all(math.isfinite(s) for s in reference):  # diverged before the first tuning point
            self._roll_back()
            reference = self._count_probes(self.score(probe_batches))
        if not all(math.isfinite(s) for s in reference):
            raise FloatingPointError(
                f"The training state at step {step} gives non-finite losses, even after returning to the last finite "
                "state. Lower the initial learning rate or check the data and the loss."
            )
        self.snapshot.capture()

        def run_trial(lr_factor: float) -> List[float]:
            self.scheduler.set_trial_lr(lr_factor)
            try:
                with self._seeded(self._seed(step) + 1):
                    for batch in trial_batches:
                        if not self._finite_on_every_process(self.train_step(batch)):
                            return [math.inf] * len(probe_batches)
                return self.score(probe_batches)
            finally:
                self.snapshot.restore()

        return self.scheduler.tune(run_trial, reference)

    def check_loss(self, loss: Any, reduced: bool = False) -> bool:
        """Check an ordinary update's loss; a non-finite one rolls the state back to the last tuning point and backs
        off the LR. Pass `reduced=True` for a loss that is already the same on every process. Returns whether it
        rolled back."""
        value = _as_float(loss)
        if self.reduce_scores is not None and not reduced:
            value = self.reduce_scores([value])[0]
        if math.isfinite(value):
            return False
        self._roll_back()
        return True

    def _diverged_since_last_tuning(self) -> bool:
        """Score the previous tuning point's probe batches again (redrawn from its seed), so that the comparison with
        its reference is paired: different batches alone can differ by more than `divergence_ratio`."""
        tuner = self.scheduler.tuner
        if tuner.last_reference is None:
            return False
        with self._seeded(self._seed(tuner.last_tuned_step)):
            _, previous_probes = self.draw_batches()
        return self.scheduler.diverged_since_last_tuning(self._count_probes(self.score(previous_probes)))

    def _score_initial_state(self):
        """Give the initial state a reference score, as if it were a tuning point before step 0, so that the first
        tuning point can tell whether training diverged since (e.g. during warmup)."""
        tuner = self.scheduler.tuner
        with self._seeded(self._seed(tuner.last_tuned_step)):
            _, probe_batches = self.draw_batches()
        reference = self._count_probes(self.score(probe_batches))
        tuner.last_reference = sum(reference) / len(reference)

    def _roll_back(self):
        """Return to the last tuning point's state (training diverged since) and lower the LR."""
        self.snapshot.restore()
        self.rollbacks += 1
        self.scheduler.back_off()

    def _count_probes(self, scores: List[float]) -> List[float]:
        self.scheduler.tuner.probe_passes += len(scores)
        return scores

    def _finite_on_every_process(self, loss: Any) -> bool:
        """Whether a trial update's loss is finite on every process (a rank must not leave a trial alone)."""
        value = _as_float(loss)
        if self.reduce_scores is not None:
            value = self.reduce_scores([value])[0]
        return math.isfinite(value)

    def _seed(self, step: int) -> int:
        return self.config.seed + _SEED_STRIDE * (step + 1)

    def draw_batches(self) -> tuple[list, list]:
        trial_steps = self.scheduler.tuner.trial_steps
        needed = trial_steps + self.config.probe_batches
        drawn: list = []
        while len(drawn) < needed:
            before = len(drawn)
            drawn.extend(itertools.islice(iter(self.batches), needed - len(drawn)))
            if len(drawn) == before:
                raise ValueError("The batch source of TrialRunner is empty.")
        return drawn[:trial_steps], drawn[trial_steps:]

    @torch.no_grad()
    def score(self, probe_batches: Sequence[Any]) -> List[float]:
        """Per-batch losses of the current state, in eval mode (no dropout noise)."""
        was_training = self.model.training
        self.model.eval()
        try:
            scores = [_as_float(self.loss_fn(batch)) for batch in probe_batches]
        finally:
            self.model.train(was_training)
        return self.reduce_scores(scores) if self.reduce_scores is not None else scores

    @staticmethod
    @contextlib.contextmanager
    def _seeded(seed: int):
        """Fixed random numbers for a trial (same dropout for every candidate), leaving training's RNG untouched."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
