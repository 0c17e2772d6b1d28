"""hf_lrtuner's benchmarks: the tuner suite, tasks that judge LR-tuning methods against a tuned linear-warmup-decay
baseline, its report and the measurements beside it. Run from the repository root (``pip install .[squad,bench]``):

    python -m benchmarks.suite --help      # the suite (`benchmarks.runner`, the tasks in `tasks_synthetic`,
                                           #   `task_minilm`, `task_squad`; outputs/ and docs/results/suite.csv)
    python -m benchmarks.report            # docs/results/suite.csv -> docs/results/suite.md and docs/results.md
    python -m benchmarks.horizon           # race horizons and the per-arm logs; `benchmarks.replay` replays them
    python -m benchmarks.dev_ablation      # settings of the rule on the synthetic tasks' dev split
    python -m benchmarks.proposal          # a race-free LR estimate from the run's own updates, per guess
    python -m benchmarks.squad_matrix      # release 0.1's SQuAD benchmark (scripts/run_squad.py, several schedules)
    python -m benchmarks.memory            # host (and GPU) memory of the tuner's snapshots
    python -m benchmarks.overhead          # the races' share of a run_squad.py run's time

Shared pieces of the suite (this module):

- `Task`: the interface every task module registers (tiers A/B in `tasks_synthetic`, C/D in `task_minilm` and
  `task_squad`).
- `METHODS`: method name -> schedule driver builder, used by the plain-PyTorch loop `train_loop`. A method string may
  carry overrides, e.g. ``"lrtuner:race_margin=0,horizon_fraction=0.2"`` (parsed by `parse_method`).
- `train_loop`: the plain-PyTorch training loop shared by the synthetic tasks (same batches for every method).

Method strings:
    ``linear``           transformers.get_linear_schedule_with_warmup(optimizer, W, T), W = round(0.1 T)
    ``lrtuner[:k=v,..]`` hf_lrtuner's LRTunerScheduler + TrialRunner with LRTunerConfig(warmup_steps=W, k=v, ...)
                         (release 0.3's rule: ``lrtuner:race_horizon=0.2,accelerate=False,improvement_of=loss,
                         stop_behind=False,stall_check=False``, `hf_lrtuner.tuner.RULE_OF_0_3`)
    ``lrtuner_v01[:k=v,..]`` the same from the first release (git commit 0d79354, `V01_COMMIT`): its search rule,
                         ``runner.maybe_tune()`` before each update on random batches of the run, ``check_loss`` after

Peers (``knee``, ``greedy``, ``lr_range_test``, ``schedulefree``, ``prodigy``, ``dadaptation``): `benchmarks.peers`. A
driver whose ``optimizer`` is set replaces the task's optimizer (LR-free methods get the task's Adam/SGD built with a
placeholder LR and read its family and parameters from it).

To add a method, write ``def _build_x(model, optimizer, train_step, updates, warmup, overrides, **data) -> Driver``
(``data``: ``loss_fn`` and ``batch_at`` of `train_loop`) and put it in `METHODS` (and in `LR_FREE` if it takes no LR).
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from hf_lrtuner.files import jsonable

from .drivers import Driver, SchedulerDriver, split_method
from .peers import PEER_LR_FREE, PEER_METHODS

__all__ = ["Task", "METHODS", "LR_FREE", "parse_method", "build_driver", "train_loop", "default_warmup", "jsonable",
           "V01_COMMIT", "v01_available", "load_lrtuner_v01", "DEV_ARTICLES", "cache_dir", "check_trainer_run"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_ARTICLES = 3  # the Trainer tiers' dev split: training articles held out (squad_matrix --dev_articles, seed 0)


def cache_dir() -> Path:
    """Where the Trainer tiers cache tokenized data and split files (``$HF_LRTUNER_SUITE_CACHE`` overrides it)."""
    return Path(os.environ.get("HF_LRTUNER_SUITE_CACHE") or REPO_ROOT / "outputs" / "suite_cache")


@dataclass(frozen=True)
class Task:
    """One task of the suite.

    ``run(method, lr, seed, split, updates, device) -> dict`` trains one run and returns at least ``metric``,
    ``trial_updates``, ``probe_passes`` (0 for linear), optionally ``lr_trace`` (LR of every update), ``records``
    (the tuner's decision records) and ``losses`` (online training loss of every update).
    """

    name: str  # e.g. "freshhead_adam"
    tier: str  # "A" noisy quadratic, "B" synthetic transfer / scratch, "C" MiniLM classification, "D" MiniLM SQuAD
    metric_name: str  # "accuracy", "f1", "loss"
    higher_is_better: bool
    delta: float  # no-harm margin, declared up front
    updates: int  # T of a full run
    quick_updates: int  # T in --quick mode
    lr_grid: tuple  # x2-spaced peak LRs for the linear dev grid
    run: Callable


def default_warmup(updates: int) -> int:
    """The warmup of both the baseline and the tuner: 10% of the run."""
    return int(round(0.1 * updates))


# --------------------------------------------------------------------------------------------------------------------
# Method strings


def parse_method(method: str) -> tuple[str, dict]:
    """``"lrtuner:race_margin=0,arms=3"`` -> ``("lrtuner", {"race_margin": 0, "arms": 3})``, for a known method."""
    base, overrides = split_method(method)
    if base not in METHODS:
        raise ValueError(f"Unknown method {base!r} (known: {sorted(METHODS)}).")
    return base, overrides


# --------------------------------------------------------------------------------------------------------------------
# Schedule drivers: what happens around each update of the training loop.


def _build_linear(model, optimizer, train_step, updates, warmup, overrides, **data):
    from transformers import get_linear_schedule_with_warmup

    if overrides:
        raise ValueError(f"linear takes no overrides, got {overrides}")
    return SchedulerDriver(get_linear_schedule_with_warmup(optimizer, warmup, updates))


class _LRTunerDriver(Driver):
    stop_on_nonfinite = False  # the tuner rolls back a diverged update itself

    def __init__(self, model, optimizer, train_step, updates, warmup, overrides):
        from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner

        config = LRTunerConfig(warmup_steps=warmup, **overrides)
        self.scheduler = LRTunerScheduler(optimizer, num_training_steps=updates, config=config)
        self.runner = TrialRunner(model, optimizer, self.scheduler, train_step)

    def after_update(self, batch, loss):
        self.scheduler.step()
        self.runner.after_update(batch, loss)

    @property
    def trial_updates(self):
        return int(self.scheduler.tuner.trial_updates)

    def records(self):  # races score the run's own losses: no probe passes
        return jsonable(list(self.scheduler.tuner.records))



def _build_lrtuner(model, optimizer, train_step, updates, warmup, overrides, **data):
    return _LRTunerDriver(model, optimizer, train_step, updates, warmup, overrides)


# The first release, for the ablation of the decision rule: its package is extracted from git into a cache and loaded
# as `hf_lrtuner_v01`, next to the current `hf_lrtuner`.
V01_COMMIT = "0d79354"
_REPO = str(REPO_ROOT)
_V01_DIR = os.path.join(_REPO, ".cache", "hf_lrtuner_v01")  # holds hf_lrtuner/ of V01_COMMIT


def v01_available() -> bool:
    """Whether this clone holds `V01_COMMIT`, from which `load_lrtuner_v01` extracts the first release."""
    try:
        found = subprocess.run(["git", "-C", _REPO, "cat-file", "-e", f"{V01_COMMIT}^{{commit}}"], capture_output=True)
    except OSError:
        return False
    return found.returncode == 0


def load_lrtuner_v01():
    """The `hf_lrtuner` package of `V01_COMMIT`, imported as `hf_lrtuner_v01` (extracted from git at first use).

    The extraction goes to a temporary folder renamed into place, so worker processes starting at once are safe."""
    name = "hf_lrtuner_v01"
    if name in sys.modules:
        return sys.modules[name]
    package = os.path.join(_V01_DIR, "hf_lrtuner")
    if not os.path.isdir(package):
        os.makedirs(os.path.dirname(_V01_DIR), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".hf_lrtuner_v01-", dir=os.path.dirname(_V01_DIR))
        try:
            os.chmod(tmp, 0o755)
            archive = subprocess.run(["git", "-C", _REPO, "archive", V01_COMMIT, "hf_lrtuner"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True, capture_output=True)
            os.rename(tmp, _V01_DIR)
        except OSError:
            if not os.path.isdir(package):  # not another process winning the rename
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    spec = importlib.util.spec_from_file_location(name, os.path.join(package, "__init__.py"),
                                                  submodule_search_locations=[package])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class _RandomBatches:
    """The batch source of the v01 TrialRunner: batches of the run at a random permutation of its steps (torch's RNG,
    which the runner seeds), as a shuffling DataLoader over the training batches would give."""

    def __init__(self, batch_at, updates):
        self.batch_at, self.updates = batch_at, updates

    def __iter__(self):
        import torch

        for k in torch.randperm(self.updates).tolist():
            yield self.batch_at(k)


class _LRTunerV01Driver(_LRTunerDriver):
    def __init__(self, model, optimizer, train_step, updates, warmup, overrides, loss_fn, batch_at):
        v01 = load_lrtuner_v01()
        config = v01.LRTunerConfig(warmup_steps=warmup, **overrides)
        self.scheduler = v01.LRTunerScheduler(optimizer, num_training_steps=updates, config=config)
        self.runner = v01.TrialRunner(model, optimizer, self.scheduler, train_step, loss_fn,
                                      _RandomBatches(batch_at, updates))

    def before_update(self):
        self.runner.maybe_tune()

    def after_update(self, batch, loss):
        self.scheduler.step()
        self.runner.check_loss(loss)

    @property
    def probe_passes(self):  # 0.1 scored its trials on probe batches: forward passes, counted as a third of an update
        return int(self.scheduler.tuner.probe_passes)


def _build_lrtuner_v01(model, optimizer, train_step, updates, warmup, overrides, **data):
    if data.get("loss_fn") is None or data.get("batch_at") is None:
        raise ValueError("lrtuner_v01 needs the loss_fn and batch_at of train_loop")
    return _LRTunerV01Driver(model, optimizer, train_step, updates, warmup, overrides, data["loss_fn"],
                             data["batch_at"])


# name -> builder(model, optimizer, train_step, updates, warmup, overrides, loss_fn=..., batch_at=...) -> Driver
METHODS: dict[str, Callable[..., Driver]] = {
    "linear": _build_linear, "lrtuner": _build_lrtuner, "lrtuner_v01": _build_lrtuner_v01,
}
# Methods that take no LR (run once per seed, with an empty guess).
LR_FREE: set[str] = set()

# Peers (knee, greedy, lr_range_test, schedulefree, prodigy, dadaptation): benchmarks/peers.py.
METHODS.update(PEER_METHODS)
LR_FREE.update(PEER_LR_FREE)


def check_trainer_run(task: str, method: str, lr: Optional[float], split: str) -> tuple[str, dict]:
    """Validate one run of a Trainer tier (`linear`, `lrtuner[:k=v,..]` or a peer); returns `parse_method(method)`."""
    if split not in ("dev", "test"):
        raise ValueError(f"{task} scores split 'dev' or 'test', got {split!r}.")
    base, overrides = parse_method(method)
    if base not in ("linear", "lrtuner", *PEER_METHODS):
        raise ValueError(f"{task} runs 'linear', 'lrtuner' and the peers {sorted(PEER_METHODS)}, got {method!r}.")
    if base == "linear" and overrides:
        raise ValueError(f"linear takes no overrides, got {method!r}.")
    if (lr is None) != (base in LR_FREE):
        raise ValueError(f"{base} takes {'no' if base in LR_FREE else 'an'} LR, got lr={lr!r}.")
    return base, overrides


def build_driver(method, model, optimizer, train_step, updates, warmup, loss_fn=None, batch_at=None) -> Driver:
    base, overrides = parse_method(method)
    return METHODS[base](model, optimizer, train_step, updates, warmup, overrides, loss_fn=loss_fn, batch_at=batch_at)


# --------------------------------------------------------------------------------------------------------------------
# The shared plain-PyTorch loop


def train_loop(model, optimizer, loss_fn, batch_at, updates, method, warmup=None):
    """Train `updates` updates; batch `batch_at(step)` is the same for every method of a seed.

    `loss_fn(batch)` returns the training loss (forward only). Returns a dict with ``losses`` (online loss of each
    update, computed in that update's forward pass, before the step), ``lr_trace``, ``trial_updates``,
    ``probe_passes``, ``records`` and ``diverged`` (a non-finite loss stopped the run).
    """
    warmup = default_warmup(updates) if warmup is None else warmup

    def train_step(batch):
        loss = loss_fn(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    driver = build_driver(method, model, optimizer, train_step, updates, warmup, loss_fn, batch_at)
    if driver.optimizer is not None:  # the method replaced the task's optimizer: train_step uses the replacement
        optimizer = driver.optimizer
    losses, lrs = [], []
    diverged = False
    for step in range(updates):
        batch = batch_at(step)
        driver.before_update()
        lr = driver.current_lr()
        lrs.append(float(optimizer.param_groups[0]["lr"] if lr is None else lr))
        loss = train_step(batch)
        value = float(loss.detach())
        losses.append(value)
        driver.after_update(batch, loss)
        if not math.isfinite(value):
            diverged = True
            if driver.stop_on_nonfinite:
                break
    driver.finish()
    return {
        "losses": losses,
        "lr_trace": lrs,
        "trial_updates": int(driver.trial_updates),
        "probe_passes": int(driver.probe_passes),
        "records": driver.records(),
        "diverged": diverged,
    }
