"""Tiny training problems with a known good LR range, and the plain-PyTorch loop the README shows.

The classification task uses the teacher and student MLPs of the README example (`examples/plain_pytorch.py`, on
pytest's pythonpath).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import TensorDataset

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner
from plain_pytorch import student_mlp, teacher_mlp


def regression_data(n=2048, dim=16, noise=0.1, seed=0):
    """Noisy linear regression: y = x @ w + noise. With x ~ N(0, I) the loss Hessian is 2I."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 1, generator=g)
    y = x @ w + noise * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def classification_data(n=2048, dim=10, classes=4, seed=0):
    """The README example's task with a sharper teacher: the example's `teacher_mlp`, its weights redrawn from N(0, 1)
    (the LR ranges measured in test_trials, and the collapse there, are this task's), labels for a `student_mlp`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    teacher = teacher_mlp(dim, classes)
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        y = teacher(x).argmax(-1)
    return TensorDataset(x, y)


def linear_model(dim=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(dim, 1)


def mlp_model(dim=10, classes=4, seed=0):
    torch.manual_seed(seed)
    return student_mlp(dim, classes)


@dataclass
class RunLog:
    lrs: list = field(default_factory=list)  # LR applied to each ordinary update
    losses: list = field(default_factory=list)  # loss of each ordinary update
    params_finite: list = field(default_factory=list)  # parameters finite after each update
    records: list = field(default_factory=list)


def make_loss_fn(model, kind):
    criterion = torch.nn.MSELoss() if kind == "regression" else torch.nn.CrossEntropyLoss()

    def loss_fn(batch):
        x, y = batch
        return criterion(model(x), y)

    return loss_fn


def make_train_step(model, optimizer, loss_fn):
    def train_step(batch):
        loss = loss_fn(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss

    return train_step


def batch_at(dataset, step, batch_size):
    """The ordinary training batch of update `step` (deterministic, so a resumed run sees the same data)."""
    n = len(dataset)
    start = (step * batch_size) % n
    idx = torch.arange(start, start + batch_size) % n
    return dataset[idx]


def train(model, optimizer, scheduler, dataset, kind, steps, batch_size=32, log=None, start=0):
    """Run updates `start..steps-1` with the tuner, as in the README's plain-PyTorch loop."""
    loss_fn = make_loss_fn(model, kind)
    train_step = make_train_step(model, optimizer, loss_fn)
    runner = TrialRunner(model, optimizer, scheduler, train_step)
    log = log if log is not None else RunLog()
    for step in range(start, steps):
        log.lrs.append(scheduler.get_last_lr()[0])
        batch = batch_at(dataset, step, batch_size)
        loss = train_step(batch)
        scheduler.step()
        record = runner.after_update(batch, loss)
        if record is not None:
            log.records.append(record)
        log.losses.append(float(loss.detach()))
        log.params_finite.append(all(torch.isfinite(p).all() for p in model.parameters()))
    return log


def linear_run(model, optimizer, dataset, kind, steps, warmup_steps, batch_size=32):
    """The same loop under transformers' linear warmup-decay schedule; returns the LR of every update."""
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, steps)
    train_step = make_train_step(model, optimizer, make_loss_fn(model, kind))
    lrs = []
    for step in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        train_step(batch_at(dataset, step, batch_size))
        scheduler.step()
    return lrs


def eval_loss(model, dataset, kind):
    with torch.no_grad():
        return float(make_loss_fn(model, kind)(dataset[:]))


def tuned_run(kind, lr, steps=300, config=None, optimizer="sgd", seed=0):
    """Train a fresh model on a task from initial LR `lr`; returns (model, scheduler, log, dataset)."""
    dataset = regression_data(seed=seed) if kind == "regression" else classification_data(seed=seed)
    model = linear_model(seed=seed) if kind == "regression" else mlp_model(seed=seed)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    config = config or LRTunerConfig(warmup_steps=30, race_horizon=20)
    scheduler = LRTunerScheduler(opt, num_training_steps=steps, config=config)
    log = train(model, opt, scheduler, dataset, kind, steps)
    return model, scheduler, log, dataset


def geometric_mean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))
