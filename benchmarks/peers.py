"""Peer methods of the tuner suite's plain-PyTorch loop, at the settings their authors recommend except where said.

Method strings (W = round(0.1 T) as for ``linear``; "guess LR" = the run's ``lr``):
    ``knee``           hf_lrtuner.schedules.get_knee_schedule(optimizer, W, T) at the guess LR: warmup, constant to
                       50% of T, linear to 0 (the default explore_fraction 0.5, the Knee paper's, per its docstring).
    ``greedy``         transformers' GreedyLR (``lr_scheduler_type="greedy"``) at the guess LR, stepped on the smoothed
                       training loss of every update (see `_GreedyDriver`). Our choice, not its authors': its
                       documented use steps it after evaluations, which the suite's tasks have none of during
                       training.
    ``lr_range_test``  torch-lr-finder's LRFinder range test from guess/100 to guess*100 (100 iterations, exponential,
                       its README's "tweaked version from fastai"), then linear warmup-decay at its steepest-gradient
                       suggestion. The range-test updates count as ``trial_updates``.
    ``schedulefree``   schedulefree's AdamWScheduleFree / SGDScheduleFree (by the task's optimizer) at the guess LR times
                       `SCHEDULEFREE_LR_SCALE`: its README puts its LR at 1x-10x (AdamW) and 10x-50x (SGD) the LR of a
                       schedule, so its guesses are centred on the geometric middle of that range (x3.16, x22.4).
    ``prodigy``        prodigyopt's Prodigy(lr=1.0) with cosine annealing (LR-free).
    ``dadaptation``    dadaptation's DAdaptAdam / DAdaptSGD(lr=1.0) with linear warmup-decay (LR-free; warmup starts at
                       1/W, not 0: see `_DAdaptationDriver`).

The last three replace the task's optimizer: the task builds Adam or SGD (momentum 0.9) as usual, the builder reads
the family (`optimizer_family`) and the parameters from it and returns a Driver whose ``optimizer`` attribute is the
replacement, which `train_loop` then trains with. The optional packages (``pip install .[bench]``) are imported only
when a method is built.

The Trainer tasks (``minilm_cls``, ``squad_minilm``) run the same Drivers inside `transformers.Trainer` through
`peer_trainer_class`: the task's optimizer (passed in, or Trainer's default AdamW) is handed to the builder in
`create_optimizer`, Trainer steps the Driver's scheduler after every update as it steps any LR scheduler, GreedyLR is
fed every logged training loss (``logging_steps=1``), the range test runs on the first batches of Trainer's own
training dataloader through Trainer's ``compute_loss``, and `Driver.finish` runs at ``on_train_end``.
"""

from __future__ import annotations

import contextlib
import io
import math

from .drivers import Driver, SchedulerDriver, split_method

__all__ = ["PEER_METHODS", "PEER_LR_FREE", "applied_lr", "lr_recorder", "optimizer_family", "peer_trainer_class"]


def optimizer_family(optimizer) -> tuple[str, dict]:
    """("adam", {}) or ("sgd", {"momentum": m}) for the optimizer a task built; other optimizers are not supported."""
    import torch

    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return "adam", {}
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd", {"momentum": float(optimizer.param_groups[0].get("momentum", 0.0))}
    raise ValueError(f"peer methods support Adam and SGD tasks, got {type(optimizer).__name__}")


def _params(optimizer) -> list:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _no_overrides(name, overrides):
    if overrides:
        raise ValueError(f"{name} takes no overrides, got {overrides}")


# --------------------------------------------------------------------------------------------------------------------
# knee


def _build_knee(model, optimizer, train_step, updates, warmup, overrides, **data):
    # hf_lrtuner/schedules.py, get_knee_schedule docstring: "The default 0.5 is the Knee paper's explore fraction".
    from hf_lrtuner.schedules import get_knee_schedule

    _no_overrides("knee", overrides)
    return SchedulerDriver(get_knee_schedule(optimizer, warmup, updates))


# --------------------------------------------------------------------------------------------------------------------
# greedy


class _GreedyDriver(Driver):
    """transformers.optimization.GreedyLR through ``get_scheduler("greedy", ...)``.

    How it is stepped: Trainer steps it (like ReduceLROnPlateau) with ``metrics["eval_" + metric_for_best_model]``
    after each evaluation (trainer.py, `_evaluate`); the plain loop has no evaluation set during training (the
    dev/test splits are for scoring only), and GreedyLR's docstring says it "responds to training metrics" and offers
    ``smooth=True`` (a streaming average over ``window_size`` values) for noisy ones. So it is stepped after EVERY
    update with the update's training loss and ``smooth=True`` (window 50, its default): one step per update, like a
    Trainer evaluating every step on a 50-batch running loss. Its defaults otherwise (factor 0.95, patience 10,
    threshold 1e-6 abs, cooldown 0, warmup 0, reset_start 500). Trainer applies no LR warmup with "greedy"
    (get_scheduler ignores num_warmup_steps for it): none here either. The LR bounds are absolute in GreedyLR
    (min_lr 1e-3, max_lr 1.0 by default); the default min_lr is above several Adam guesses (it would block every
    decrease there), so min_lr = 1e-3 x the guess (the defaults' max/min ratio of 1000 below the start), and
    max_lr = max(1.0, guess) (the default, never below the start).
    """

    def __init__(self, optimizer):
        from transformers import get_scheduler

        lr0 = float(optimizer.param_groups[0]["lr"])
        kwargs = {"smooth": True, "min_lr": 1e-3 * lr0, "max_lr": max(1.0, lr0)}
        self.scheduler = get_scheduler("greedy", optimizer, scheduler_specific_kwargs=kwargs)

    def after_update(self, batch, loss):
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if math.isfinite(value):
            self.scheduler.step(value)


def greedy_available() -> bool:
    """Whether the installed transformers has GreedyLR (``lr_scheduler_type="greedy"``, new in transformers 5.4)."""
    from transformers.trainer_utils import SchedulerType

    return "greedy" in {member.value for member in SchedulerType}


def _build_greedy(model, optimizer, train_step, updates, warmup, overrides, **data):
    _no_overrides("greedy", overrides)
    if not greedy_available():
        import transformers

        raise ValueError(f"peer 'greedy' is transformers' GreedyLR, new in transformers 5.4; this is transformers "
                         f"{transformers.__version__}: upgrade it, or leave 'greedy' out of the methods")
    return _GreedyDriver(optimizer)


# --------------------------------------------------------------------------------------------------------------------
# lr_range_test

RANGE_TEST_ITERS = 100  # torch-lr-finder README: range_test(trainloader, end_lr=100, num_iter=100) (exp mode)
RANGE_TEST_SPAN = 100.0  # guess / 100 .. guess * 100


def _range_test_lr(model, optimizer, loss_fn, batch_at, updates) -> tuple[float, int, dict]:
    """Run LRFinder on the run's first training batches; return (suggested LR, range-test updates, history).

    The model and optimizer are restored with LRFinder.reset() afterwards, and the gradients cleared."""
    import torch
    from matplotlib.figure import Figure
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    class LossModule(torch.nn.Module):  # LRFinder calls criterion(model(inputs), labels): the model returns the loss
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, batch):
            return loss_fn(batch)

    class Batches:
        def __iter__(self):
            return (batch_at(k % updates) for k in range(RANGE_TEST_ITERS))

    class BatchIter(TrainDataLoaderIter):
        def inputs_labels_from_batch(self, batch_data):
            return batch_data, None

    guess = float(optimizer.param_groups[0]["lr"])
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        finder = LRFinder(LossModule(), optimizer, lambda out, _labels: out)
        finder.range_test(BatchIter(Batches()), start_lr=guess / RANGE_TEST_SPAN, end_lr=guess * RANGE_TEST_SPAN,
                          num_iter=RANGE_TEST_ITERS, step_mode="exp")
        steps = len(finder.history["lr"])
        history = {"lr": list(finder.history["lr"]), "loss": list(finder.history["loss"])}
        # A non-finite loss (smoothed, so every later one too) ends the usable curve.
        n = next((i for i, v in enumerate(history["loss"]) if not math.isfinite(v)), steps)
        finder.history = {"lr": history["lr"][:n], "loss": history["loss"][:n]}
        # README: "lr_finder.plot() ... suggest_lr": 'steepest' = the point with the steepest gradient, with its
        # defaults skip_start=10, skip_end=5 (it needs at least 17 points; with fewer, skip nothing).
        skip = (10, 5) if n >= 17 else (0, 0)
        if n >= 2:
            _, suggested = finder.plot(skip_start=skip[0], skip_end=skip[1], ax=Figure().subplots(),
                                       suggest_lr=True)
        else:
            suggested = history["lr"][0] if history["lr"] else guess / RANGE_TEST_SPAN
        finder.reset()
    # reset() restores the weights and the optimizer state but not the gradients of the range test's last iteration
    # (taken at the top of the range, where the loss diverges): the run's first update would add onto them.
    model.zero_grad(set_to_none=True)
    optimizer.zero_grad(set_to_none=True)
    return float(suggested), steps, history


class _RangeTestDriver(SchedulerDriver):
    def __init__(self, model, optimizer, updates, warmup, loss_fn, batch_at):
        from transformers import get_linear_schedule_with_warmup

        self.suggested, self.trial_updates, self.history = _range_test_lr(model, optimizer, loss_fn, batch_at,
                                                                          updates)
        for group in optimizer.param_groups:
            group["lr"] = self.suggested
        super().__init__(get_linear_schedule_with_warmup(optimizer, warmup, updates))

    def records(self):
        return [{"suggested_lr": self.suggested, "range_test": self.history}]


def _build_lr_range_test(model, optimizer, train_step, updates, warmup, overrides, **data):
    _no_overrides("lr_range_test", overrides)
    if data.get("loss_fn") is None or data.get("batch_at") is None:
        raise ValueError("lr_range_test needs the loss_fn and batch_at of train_loop")
    return _RangeTestDriver(model, optimizer, updates, warmup, data["loss_fn"], data["batch_at"])


# --------------------------------------------------------------------------------------------------------------------
# Optimizer-replacing peers


# schedulefree README: "For SGD, a learning rate 10x-50x larger than classical rates seems to be a good starting point.
# For AdamW, learning rates in the range 1x-10x larger than with schedule-based approaches seem to work."
SCHEDULEFREE_LR_SCALE = {"adam": math.sqrt(1 * 10), "sgd": math.sqrt(10 * 50)}


class _ScheduleFreeDriver(Driver):
    """The guess LR times `SCHEDULEFREE_LR_SCALE` of the family (its README's range for a schedule's LR, see above).
    schedulefree README: warmup through ``warmup_steps`` ("Using learning rate warmup is recommended"), no LR
    scheduler ("There is no need to use a learning rate scheduler"), default betas/momentum 0.9, weight decay 0 as the
    task's optimizer; ``optimizer.train()`` where training starts and ``optimizer.eval()`` before evaluation ("at the
    same place you call model.eval()"): the tasks evaluate right after `train_loop`, so `finish` calls it. No
    BatchNorm in these models, so its BatchNorm caveat does not apply."""

    def __init__(self, optimizer, warmup):
        import schedulefree

        family, kw = optimizer_family(optimizer)
        lr = float(optimizer.param_groups[0]["lr"]) * SCHEDULEFREE_LR_SCALE[family]
        if family == "adam":
            self.optimizer = schedulefree.AdamWScheduleFree(_params(optimizer), lr=lr, warmup_steps=warmup,
                                                            weight_decay=0.0)
        else:
            self.optimizer = schedulefree.SGDScheduleFree(_params(optimizer), lr=lr, momentum=kw["momentum"],
                                                          warmup_steps=warmup, weight_decay=0.0)
        self.optimizer.train()

    def current_lr(self):
        group = self.optimizer.param_groups[0]  # the LR of the coming step, with schedulefree's internal warmup
        k, w = int(group["k"]), int(group["warmup_steps"])
        return float(group["lr"]) * ((k + 1) / w if k < w else 1.0)

    def after_update(self, batch, loss):
        pass

    def finish(self):
        self.optimizer.eval()  # the parameters become the averaged sequence x, where evaluation must happen


def _build_schedulefree(model, optimizer, train_step, updates, warmup, overrides, **data):
    _no_overrides("schedulefree", overrides)
    return _ScheduleFreeDriver(optimizer, warmup)


class _DLRDriver(SchedulerDriver):
    """An LR-free optimizer (``group["d"] * group["lr"]`` is its step size) with an LR scheduler stepped per update."""

    def current_lr(self):
        group = self.optimizer.param_groups[0]
        return float(group["d"]) * float(group["lr"])

    def records(self):
        return [{"final_d": float(self.optimizer.param_groups[0]["d"])}]


class _ProdigyDriver(_DLRDriver):
    """prodigyopt README: ``lr=1.`` ("We recommend using lr=1. (default) for all networks"), d_coef 1.0 (default),
    weight_decay 0 ("0 by default"; the tasks use none), "either no scheduler or cosine annealing ... T_max=total_steps"
    -> CosineAnnealingLR(T_max=T), no warmup (so safeguard_warmup, its remedy for warmup, stays at its default False;
    use_bias_correction=True is recommended for diffusion models only, default False here). prodigyopt has Adam-style
    Prodigy only: the SGD tasks get it too."""

    def __init__(self, optimizer, updates):
        import torch
        from prodigyopt import Prodigy

        self.optimizer = Prodigy(_params(optimizer), lr=1.0)
        super().__init__(torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=updates))


def _build_prodigy(model, optimizer, train_step, updates, warmup, overrides, **data):
    _no_overrides("prodigy", overrides)
    return _ProdigyDriver(optimizer, updates)


class _DAdaptationDriver(_DLRDriver):
    """dadaptation README: "Set the LR parameter to 1.0", "Use the same learning rate scheduler you would normally
    use on the problem" -> the baseline's linear warmup-decay (W = 10%); DAdaptAdam for Adam tasks (decouple=False
    and weight decay 0, as torch Adam without weight decay), DAdaptSGD with the task's momentum (0.9) for SGD tasks."""

    def __init__(self, optimizer, updates, warmup):
        import dadaptation
        import torch

        family, kw = optimizer_family(optimizer)
        if family == "adam":
            self.optimizer = dadaptation.DAdaptAdam(_params(optimizer), lr=1.0)
        else:
            self.optimizer = dadaptation.DAdaptSGD(_params(optimizer), lr=1.0, momentum=kw["momentum"])
        # transformers' linear warmup-decay, except that warmup step s has factor (s+1)/W instead of s/W: the first
        # step must not run at LR 0, where DAdaptSGD takes its initial gradient norm only over groups with lr > 0 and
        # divides by it (ZeroDivisionError, dadapt_sgd.py). Both families get the same schedule.
        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (updates - step) / max(1, updates - warmup))

        super().__init__(torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor))


def _build_dadaptation(model, optimizer, train_step, updates, warmup, overrides, **data):
    _no_overrides("dadaptation", overrides)
    return _DAdaptationDriver(optimizer, updates, warmup)


PEER_METHODS = {
    "knee": _build_knee, "greedy": _build_greedy, "lr_range_test": _build_lr_range_test,
    "schedulefree": _build_schedulefree, "prodigy": _build_prodigy, "dadaptation": _build_dadaptation,
}
PEER_LR_FREE = {"prodigy", "dadaptation"}


# --------------------------------------------------------------------------------------------------------------------
# Peers inside transformers.Trainer


def peer_trainer_class(trainer_class, method: str, warmup: int):
    """A subclass of `trainer_class` that trains with the peer `method` (a name of `PEER_METHODS`) instead of the
    scheduler Trainer would build.

    The run's length is ``args.max_steps`` (Trainer tasks set it) and `warmup` is the warmup of the schedule-based
    peers (W = round(0.1 T), as for ``linear``). The Driver is the trainer's ``peer`` attribute once training starts:
    ``peer.trial_updates`` counts the range test's updates, ``peer.records()`` is what the suite's sidecar keeps, and
    `applied_lr` reads the LR of the coming update (the step size ``d * lr`` of the LR-free optimizers).
    """
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import TrainerCallback

    base, overrides = split_method(method)
    if base not in PEER_METHODS:
        raise ValueError(f"unknown peer method {method!r}; choose from {sorted(PEER_METHODS)}")
    _no_overrides(base, overrides)

    class PeerEvents(TrainerCallback):
        """GreedyLR steps on the training loss of every update (Trainer itself steps it only after evaluations);
        `Driver.finish` (Schedule-Free's ``optimizer.eval()``) when training ends."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_log(self, args, state, control, logs=None, **kwargs):
            if base == "greedy" and logs and "loss" in logs:
                self.trainer.peer.after_update(None, logs["loss"])

        def on_train_end(self, args, state, control, **kwargs):
            self.trainer.peer.finish()

    class PeerTrainer(trainer_class):
        peer = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.args.max_steps <= 0:
                raise ValueError(f"peer {base!r} needs the run's length: set TrainingArguments.max_steps")
            if base == "greedy" and self.args.logging_steps != 1:
                raise ValueError("peer 'greedy' steps on every update's logged loss: set logging_steps=1")
            self.add_callback(PeerEvents(self))

        def create_optimizer(self, *model):  # transformers 5.x may pass the prepared model, 4.x passes nothing
            if self.peer is None:
                task_optimizer = super().create_optimizer(*model)
                data = self._range_test_data() if base == "lr_range_test" else {}
                self.peer = PEER_METHODS[base](self.model, task_optimizer, None, self.args.max_steps, warmup, {},
                                               **data)
                self.optimizer = self.peer.optimizer or task_optimizer
            return self.optimizer

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:  # Schedule-Free has no scheduler: a constant one keeps Trainer's
                self.lr_scheduler = getattr(self.peer, "scheduler", None) or LambdaLR(self.optimizer, lambda _: 1.0)
            return self.lr_scheduler

        def _range_test_data(self) -> dict:
            """The first min(T, RANGE_TEST_ITERS) batches of Trainer's training dataloader, and its loss."""
            import itertools

            count = min(self.args.max_steps, RANGE_TEST_ITERS)
            batches = []
            while len(batches) < count:  # a dataloader shorter than the range test is cycled
                batches += list(itertools.islice(self.get_train_dataloader(), count - len(batches)))

            def loss_fn(batch):  # under the run's mixed precision (the model is not prepared by accelerate yet)
                with self.accelerator.autocast():
                    return self.compute_loss(self.model, batch)

            return {"loss_fn": loss_fn, "batch_at": lambda step: batches[step % count]}

    PeerTrainer.__name__ = PeerTrainer.__qualname__ = f"{base.title().replace('_', '')}{trainer_class.__name__}"
    return PeerTrainer


def applied_lr(trainer, optimizer=None) -> float:
    """The LR of `trainer`'s coming update: its peer's where the peer defines one (LR-free step sizes, Schedule-Free's
    warmup), else ``param_groups[0]["lr"]`` of `optimizer` (default: the trainer's)."""
    peer = getattr(trainer, "peer", None)
    lr = peer.current_lr() if peer is not None else None
    if lr is None:
        lr = (optimizer or trainer.optimizer).param_groups[0]["lr"]
    return float(lr)


def lr_recorder():
    """A `TrainerCallback` that records the LR of every real update (`applied_lr`; trial updates do not pass through
    Trainer's loop) and every logged training loss. Set its ``trainer`` once the Trainer exists."""
    from transformers import TrainerCallback

    class LRRecorder(TrainerCallback):
        def __init__(self):
            self.trainer = None
            self.lrs: list[float] = []
            self.losses: list[float] = []

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            self.lrs.append(applied_lr(self.trainer, optimizer))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return LRRecorder()
