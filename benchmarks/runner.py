"""Protocol of the tuner suite: a linear dev grid per task, then every method at guesses around the tuned LR.

1. dev stage: ``linear`` over the task's ``lr_grid`` x seeds on split "dev", each seed offset by `DEV_SEED_OFFSET`
   (dev seeds 1000, 1001, 1002 for test seeds 0, 1, 2: another initialisation, batch order and noise stream than
   any test run, so nothing chosen on dev has seen a test run's training; the synthetic tasks also train dev on
   their own data draw). The best level (highest mean metric;
   lowest for losses) is the tuned LR eta*. If it is at an edge of the grid, the grid is extended x2 beyond that edge
   and the new level run, until the best is interior (at most `max_extensions` times).
2. test stage: every method at lr = g * eta* for each guess g, on split "test", with the same seeds. LR-free methods
   (`suite.LR_FREE`) run once per seed with an empty guess.
3. One CSV row per run (`COLUMNS`, in this order), appended and flushed by the parent process as each run ends. A run
   whose (task, method, guess, lr, seed, split, updates) is already in the CSV is skipped, so the suite resumes.
   ``device`` is ``cpu`` or the GPU's name (`device_name`).
   Decision records and LR traces of non-linear methods go to a JSON-lines sidecar (``<csv stem>_records.jsonl``),
   and so do the training losses of every update of the linear runs of tasks that return them (the Trainer tiers):
   the arms that a decision rule can be replayed on.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import multiprocessing as mp
import os
import statistics as st
import time
import traceback
from dataclasses import dataclass
from typing import Optional

from . import LR_FREE, Task, parse_method

COLUMNS = [
    "task", "tier", "method", "guess", "lr", "seed", "split", "metric_name", "metric", "higher_is_better", "delta",
    "updates", "trial_updates", "probe_passes", "wall_s", "device",
]
KEY_COLUMNS = ("task", "method", "guess", "lr", "seed", "split", "updates")
GUESSES = (1 / 30, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
DEV_SEED_OFFSET = 1000  # dev runs use seed + 1000: disjoint from the test runs' seeds (see the module docstring)
TASK_MODULES = ("benchmarks.tasks_synthetic", "benchmarks.task_minilm", "benchmarks.task_squad")
# The tasks that decide, every one of them run on a CPU (the GPU tiers minilm_cls, squad_minilm stay as they are).
CPU_TASKS = ("nqm_sgd", "nqm_adam", "freshhead_adam", "freshhead_sgd", "scratch_sgd", "minilm_cls_cpu",
             "squad_minilm_cpu")
# Every method of the comparison (the report's `RANKED`).
ALL_METHODS = ("linear", "knee", "lrtuner", "prodigy", "schedulefree", "dadaptation", "lr_range_test", "greedy")
COMPARED_GUESSES = (0.1, 0.3, 1.0, 3.0, 10.0)


_REGISTERED: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make an ad-hoc task (e.g. a tiny test variant) known to `get_task`, in this process and forked workers."""
    _REGISTERED[task.name] = task
    return task


def _module_tasks(name: str) -> dict[str, Task]:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:  # the module itself is absent (not one of its imports)
            return {}
        raise
    tasks = getattr(module, "TASKS", {})
    if isinstance(tasks, dict):
        tasks = tasks.values()
    return {t.name: t for t in tasks}


def all_tasks() -> dict[str, Task]:
    """Tasks registered by the task modules that exist (each exposes ``TASKS``: a list of Task, or name -> Task)."""
    tasks = {}
    for name in TASK_MODULES:
        tasks.update(_module_tasks(name))
    return tasks


def get_task(name: str) -> Task:
    """One task, importing the task modules in order only until it is found (the MiniLM ones are slow to import)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    for module in TASK_MODULES:
        tasks = _module_tasks(module)
        if name in tasks:
            return tasks[name]
    raise KeyError(f"Unknown task {name!r}; known: {sorted(all_tasks())}")


def fmt_number(value: Optional[float]) -> str:
    """An LR or a guess as the CSV stores it (6 significant digits; empty for none)."""
    return "" if value is None else f"{value:.6g}"


def device_name(device: str) -> str:
    """What the CSV's ``device`` column says: ``cpu``, or the CUDA device's name (e.g. ``NVIDIA H100 80GB HBM3``)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return device


def records_path(csv_path: str) -> str:
    root, _ = os.path.splitext(csv_path)
    return root + "_records.jsonl"


@dataclass(frozen=True)
class Job:
    task: str
    method: str
    guess: str  # "" for the dev grid and LR-free methods
    lr: Optional[float]
    seed: int
    split: str
    updates: int
    device: str = "cpu"

    def key(self) -> tuple:
        return (self.task, self.method, self.guess, fmt_number(self.lr), str(self.seed), self.split, str(self.updates))

    def describe(self) -> str:
        g = f" x{self.guess}" if self.guess else ""
        lr = fmt_number(self.lr) or "-"
        return f"{self.task} {self.method}{g} lr={lr} seed={self.seed} {self.split} T={self.updates}"


# --------------------------------------------------------------------------------------------------------------------
# CSV


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def row_key(row: dict) -> tuple:
    return tuple(row[c] for c in KEY_COLUMNS)


class CsvSink:
    """Appends rows (parent process only) and the records sidecar; knows which keys exist."""

    def __init__(self, path: str):
        self.path = path
        self.records_path = records_path(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        existing = read_rows(path)
        if existing and list(existing[0].keys()) != COLUMNS:
            raise ValueError(f"{path} has columns {list(existing[0].keys())}, expected {COLUMNS}")
        self.keys = {row_key(r) for r in existing}
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(COLUMNS)

    def write(self, row: dict, extra: Optional[dict] = None):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row[c] for c in COLUMNS])
            f.flush()
        self.keys.add(row_key(row))
        if extra:
            with open(self.records_path, "a") as f:
                f.write(json.dumps({"key": dict(zip(KEY_COLUMNS, row_key(row))), **extra}) + "\n")
                f.flush()


# --------------------------------------------------------------------------------------------------------------------
# Running one job (in a worker or inline)


def _init_worker():
    import torch

    torch.set_num_threads(1)


def execute(job: Job) -> dict:
    """Run one job; returns {"row": ..., "extra": ...} or {"error": ...}. Never raises."""
    try:
        task = get_task(job.task)
        start = time.perf_counter()
        out = task.run(job.method, job.lr, job.seed, job.split, job.updates, job.device)
        wall = time.perf_counter() - start
        metric = float(out["metric"])
        row = {
            "task": task.name, "tier": task.tier, "method": job.method, "guess": job.guess, "lr": fmt_number(job.lr),
            "seed": str(job.seed), "split": job.split, "metric_name": task.metric_name, "metric": repr(metric),
            "higher_is_better": "1" if task.higher_is_better else "0", "delta": repr(float(task.delta)),
            "updates": str(job.updates), "trial_updates": str(int(out.get("trial_updates", 0))),
            "probe_passes": str(int(out.get("probe_passes", 0))), "wall_s": f"{wall:.3f}",
            "device": device_name(job.device),
        }
        extra = None
        if parse_method(job.method)[0] != "linear":
            extra = {"records": out.get("records"), "lr_trace": out.get("lr_trace")}
        elif out.get("losses") is not None:  # linear runs are the arms that decision rules are replayed on
            extra = {"losses": [float(f"{v:.5g}") for v in out["losses"]]}
        return {"row": row, "extra": extra}
    except Exception:  # noqa: BLE001 - a failed run is reported, the suite goes on
        return {"error": traceback.format_exc(), "job": job}


class Executor:
    """Runs batches of jobs inline (jobs=1) or in a process pool; writes rows as they finish, with progress."""

    def __init__(self, sink: CsvSink, jobs: int = 1, device: str = "cpu", log=print, progress: bool = False):
        self.sink, self.jobs, self.device, self.log, self.progress = sink, jobs, device, log, progress
        self.pool = None
        self.errors: list[dict] = []
        if jobs > 1:
            method = "spawn" if device.startswith("cuda") else "fork"
            self.pool = mp.get_context(method).Pool(jobs, initializer=_init_worker)
        else:
            _init_worker()

    def close(self):
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

    def run(self, jobs: list[Job]) -> int:
        todo = [j for j in jobs if j.key() not in self.sink.keys]
        todo = list(dict.fromkeys(todo))
        skipped = len(jobs) - len(todo)
        if skipped:
            self.log(f"  {skipped} run(s) already in {self.sink.path}, skipped")
        if not todo:
            return 0
        from tqdm.auto import tqdm

        # The bar (runs done, elapsed, ETA) on stderr; the per-run lines go above it when they go to stdout.
        bar = tqdm(total=len(todo), desc=todo[0].task, unit="run", disable=not self.progress, dynamic_ncols=True)
        log = tqdm.write if self.progress and self.log is print else self.log
        results = map(execute, todo) if self.pool is None else self.pool.imap_unordered(execute, todo)
        try:
            for done, res in enumerate(results, 1):
                bar.update()
                if "error" in res:
                    self.errors.append(res)
                    log(f"  [{done}/{len(todo)}] FAILED {res['job'].describe()}: "
                        f"{res['error'].strip().splitlines()[-1]}")
                    continue
                row = res["row"]
                self.sink.write(row, res["extra"])
                g = f" x{row['guess']}" if row["guess"] else ""
                log(f"  [{done}/{len(todo)}] {row['task']} {row['method']}{g} lr={row['lr'] or '-'} "
                    f"seed={row['seed']} {row['split']}: {row['metric_name']}={float(row['metric']):.4g}"
                    f" trial={row['trial_updates']} ({float(row['wall_s']):.1f}s)")
        finally:
            bar.close()
        return len(todo)


# --------------------------------------------------------------------------------------------------------------------
# Stages


def dev_curve(rows: list[dict], task: Task, updates: int) -> dict[float, list[float]]:
    """lr -> metrics of the linear dev runs of a task at `updates`."""
    curve: dict[float, list[float]] = {}
    for r in rows:
        if r["task"] == task.name and r["method"] == "linear" and r["split"] == "dev" and r["updates"] == str(updates):
            curve.setdefault(float(r["lr"]), []).append(float(r["metric"]))
    return curve


def _score(values: list[float], higher: bool) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values) or not finite:
        return -math.inf  # a diverged seed disqualifies the level
    m = st.mean(finite)
    return m if higher else -m


def best_lr(curve: dict[float, list[float]], higher: bool) -> float:
    return max(sorted(curve), key=lambda lr: _score(curve[lr], higher))


def dev_stage(task: Task, seeds, updates: int, executor: Executor, max_extensions: int = 4, log=print) -> float:
    """Run the linear dev grid (extended until the best is interior); returns eta*."""
    grid = sorted(task.lr_grid)
    # levels added by earlier (resumed) extensions count as part of the grid
    for lr in dev_curve(read_rows(executor.sink.path), task, updates):
        if not any(math.isclose(lr, g, rel_tol=1e-4) for g in grid):
            grid.append(lr)
    grid.sort()
    for attempt in range(max_extensions + 1):
        executor.run([Job(task.name, "linear", "", lr, s + DEV_SEED_OFFSET, "dev", updates, executor.device)
                      for lr in grid for s in seeds])
        curve = {lr: v for lr, v in dev_curve(read_rows(executor.sink.path), task, updates).items()
                 if any(math.isclose(lr, g, rel_tol=1e-4) for g in grid)}
        if not curve:
            raise RuntimeError(f"{task.name}: no dev runs succeeded")
        best = best_lr(curve, task.higher_is_better)
        levels = sorted(curve)
        sign = 1 if task.higher_is_better else -1
        summary = ", ".join(f"{lr:.3g}:{sign * _score(curve[lr], task.higher_is_better):.4g}" for lr in levels)
        log(f"{task.name} dev grid (T={updates}): {summary} -> best {best:.3g}")
        if levels[0] < best < levels[-1]:
            return best
        if attempt == max_extensions:
            log(f"WARNING {task.name}: best dev LR {best:.3g} still at the grid edge after {max_extensions} extensions")
            return best
        new = levels[0] / 2 if best == levels[0] else levels[-1] * 2
        log(f"{task.name}: best at the edge, extending the grid to {new:.3g}")
        grid.append(new)
        grid.sort()
    return best


def tuned_lr(task: Task, updates: int, csv_path: str) -> float:
    curve = dev_curve(read_rows(csv_path), task, updates)
    if not curve:
        raise RuntimeError(f"{task.name}: no dev rows at T={updates} in {csv_path}; run --stage dev first")
    return best_lr(curve, task.higher_is_better)


def test_jobs(task: Task, methods, guesses, seeds, eta: float, updates: int, device: str) -> list[Job]:
    jobs = []
    for method in methods:
        base, _ = parse_method(method)
        if base in LR_FREE:
            jobs += [Job(task.name, method, "", None, s, "test", updates, device) for s in seeds]
            continue
        for g in guesses:
            jobs += [Job(task.name, method, fmt_number(g), float(fmt_number(g * eta)), s, "test", updates, device)
                     for s in seeds]
    return jobs


def run_suite(task_names, methods, seeds, csv_path, quick=False, jobs=1, device="cpu", stage="all",
              guesses=GUESSES, max_extensions=4, eta: Optional[float] = None, log=print, progress=False) -> dict:
    """The whole protocol; returns {"eta": {task: eta*}, "errors": [...]}. A given `eta` replaces the dev stage's
    tuned LR in the test stage (a task without a dev grid of its own, e.g. ``squad_minilm_large``)."""
    if eta is not None and stage != "test":
        raise ValueError("a given eta replaces the dev stage: use it with stage='test'")
    registry = {}
    for name in task_names:
        try:
            registry[name] = get_task(name)
        except KeyError as e:
            raise ValueError(str(e)) from None
    for m in methods:
        parse_method(m)  # fail early on a bad method string
    sink = CsvSink(csv_path)
    executor = Executor(sink, jobs=jobs, device=device, log=log, progress=progress)
    etas = {}
    try:
        for name in task_names:
            task = registry[name]
            updates = task.quick_updates if quick else task.updates
            t0 = time.perf_counter()
            if stage in ("dev", "all"):
                etas[name] = dev_stage(task, seeds, updates, executor, max_extensions, log)
            if stage in ("test", "all"):
                etas[name] = eta or etas.get(name) or tuned_lr(task, updates, csv_path)
                log(f"{name}: test stage at eta*={etas[name]:.3g}, methods {list(methods)}, guesses "
                    f"{[fmt_number(g) for g in guesses]}")
                executor.run(test_jobs(task, methods, guesses, seeds, etas[name], updates, device))
            log(f"{name}: done in {time.perf_counter() - t0:.1f}s")
    finally:
        executor.close()
    if executor.errors:
        log(f"{len(executor.errors)} run(s) failed; first error:\n{executor.errors[0]['error']}")
    return {"eta": etas, "errors": executor.errors}
