"""Tier D task ``squad_minilm``: the repo's SQuAD pipeline (``scripts/run_squad.py --preset offline_cpu``) in the suite.

Each run is one ``run_squad.py`` run in a child process (``python -m benchmarks.task_squad --child SPEC``), so
runs share no global state (loggers, seeds, CUDA context) and can run in parallel. The child imports
``scripts.run_squad`` and calls ``run_squad.main(args, trainer_factory=...)`` with a factory that (a) adds a callback
recording the LR of every real update, (b) for ``lrtuner:key=value,...`` builds ``LRTunerConfig(key=value, ...)``,
so any config field can be overridden, not only the script's ``--lrtuner_*`` options, and (c) for a peer
(``benchmarks/peers.py``) runs the script's ``linear`` set-up with the Trainer class of `peers.peer_trainer_class`,
which takes Trainer's optimizer over. Every method starts from the optimizer Trainer
builds (AdamW, no weight decay; the LR-free peers and Schedule-Free replace it) and the same seed; ``linear`` is
Trainer's own ``lr_scheduler_type="linear"``. Warmup is W = round(0.1 T) updates for every method, T =
``--max_steps``.

Data, as ``benchmarks/squad_matrix.py`` (its ``prepare_data``): training on the first questions of the
training articles minus 3 held-out ones (``split_by_article(..., seed=0)``); ``dev`` scores those held-out training
articles, ``test`` the preset's evaluation file (held-out articles). The split files live under `cache_dir()`.

Variants (chosen by ``updates``: ``quick`` when ``updates <= QUICK_UPDATES``, else ``full``):

- ``full``: the offline preset: MiniLM with its 6 layers, 4,000 training questions, batch 16, max_seq_length 384,
  up to 1,000 scored questions (the dev articles have 783);
- ``quick``: 2 layers, 320 training questions, batch 8, 100 scored questions (a smoke test of the pipeline; F1 is
  low at this size).

Task ``squad_minilm_large`` is the GPU check's larger scale (``scripts/gpu_check.sh``): all training questions
(7,366 questions: the 38 training articles minus the 3 dev ones), batch 32, T = `LARGE_UPDATES` (about one epoch of
their features), 6 layers, bf16 on CUDA, 1,000 scored questions. It has no dev grid of its own (device time): its
guesses are multiples of squad_minilm's tuned LR, passed with ``python -m benchmarks.suite --eta``.

Task ``squad_minilm_cpu`` is the tier that decides on a CPU (every method, 5 guesses, 3 seeds in the CPU suite):
the same pipeline cut to the ``cpu`` variant: MiniLM's first 2 layers, max_seq_length 128 with doc_stride 32, batch
8, T = `CPU_UPDATES` (800 of the features of the first 2,000 training questions), 150 scored questions. F1 is
low at this size (its dev grid: `docs/results/suite.md`), the price of a tier whose every method, guess and seed
fits in a CPU session.

The metric is F1 (percent) on the scored questions.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from . import DEV_ARTICLES, REPO_ROOT, Task, cache_dir, check_trainer_run, default_warmup
from .peers import PEER_METHODS, lr_recorder, peer_trainer_class
from .squad_matrix import prepare_data

UPDATES = 250  # about one epoch of 4,000 questions at batch 16 (the preset's 254 updates)
QUICK_UPDATES = 40
LR_GRID = (2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4, 8e-4)
LARGE_UPDATES = 240
CPU_UPDATES = 100
VARIANTS = {
    "full": {"num_hidden_layers": 6, "train_questions": 4000, "eval_questions": 1000, "batch_size": 16},
    "quick": {"num_hidden_layers": 2, "train_questions": 320, "eval_questions": 100, "batch_size": 8},
    "large": {"num_hidden_layers": 6, "train_questions": 100_000, "eval_questions": 1000, "batch_size": 32},
    "cpu": {"num_hidden_layers": 2, "train_questions": 2000, "eval_questions": 150, "batch_size": 8,
            "max_seq_length": 128, "doc_stride": 32},
}


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): parallel first runs may race
            pass
        yield


def data_paths() -> dict:
    """``{"train", "dev", "eval"}`` files, made once by ``squad_matrix.prepare_data`` (under a lock, since parallel
    runs may ask at the same time)."""
    output_dir = cache_dir() / "squad_minilm"
    with _file_lock(output_dir / ".prepare.lock"):
        return {k: str(v) for k, v in prepare_data(
            SimpleNamespace(output_dir=str(output_dir), dev_articles=DEV_ARTICLES)).items()}


def variant_for(updates: int) -> str:
    return "quick" if updates <= QUICK_UPDATES else "full"


def run_squad_arguments(method_base: str, lr: float, seed: int, split: str, updates: int, device: str,
                        output_dir: str, variant: str, paths: dict) -> list:
    """The ``run_squad.py`` command line of one run (the options after the script)."""
    settings = VARIANTS[variant]
    cuda = device.startswith("cuda")
    args = [
        "--preset", "offline_cpu",
        "--train_file", paths["train"], "--validation_file", paths["dev" if split == "dev" else "eval"],
        "--max_train_examples", str(settings["train_questions"]),
        "--max_eval_examples", str(settings["eval_questions"]),
        "--num_hidden_layers", str(settings["num_hidden_layers"]),
        "--per_device_train_batch_size", str(settings["batch_size"]),
        "--lr_schedule", method_base, "--learning_rate", repr(float(lr)), "--seed", str(seed),
        "--max_steps", str(updates), "--warmup_steps", str(default_warmup(updates)),
        "--output_dir", output_dir, "--disable_tqdm", "true", "--logging_steps", "1",
        "--log_level", "warning",
    ]
    for option in ("max_seq_length", "doc_stride"):  # the preset's 384 / 128 unless the variant sets them
        if option in settings:
            args += [f"--{option}", str(settings[option])]
    if cuda:
        args += ["--bf16", "true", "--dataloader_pin_memory", "true", "--per_device_eval_batch_size", "256"]
    else:
        args += ["--use_cpu", "true"]
    return args


def run_squad_minilm(method: str, lr: float | None, seed: int, split: str, updates: int, device: str = "cpu", *,
                     variant: str | None = None) -> dict:
    """One ``run_squad.py`` run in a child process; returns ``metric`` (F1), ``exact_match``, ``trial_updates``,
    ``probe_passes``, ``lr_trace``, ``losses``, ``records``, ``updates``, ``train_seconds``, ``eval_seconds``."""
    base, overrides = check_trainer_run("squad_minilm", method, lr, split)
    peer = method if base in PEER_METHODS else None
    variant = variant or variant_for(updates)
    paths = data_paths()
    output_dir = tempfile.mkdtemp(prefix=f"squad_minilm-{base}-")
    # A peer runs the script's linear set-up (Trainer's AdamW) and replaces its scheduler/optimizer in the child.
    spec = {
        "run_squad_args": run_squad_arguments("linear" if peer else base, 1.0 if lr is None else lr, seed, split,
                                              updates, device, output_dir, variant, paths),
        "overrides": overrides,
        "peer": peer,
        "output_dir": output_dir,
    }
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_EVALUATE_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    if not device.startswith("cuda"):
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
    elif ":" in device:  # cuda:N -> the child sees that GPU only, as "cuda"
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    spec_path = Path(output_dir) / "suite_spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = Path(output_dir) / "run.log"
    start = time.perf_counter()
    try:
        with open(log_path, "w") as log:
            code = subprocess.call([sys.executable, "-m", f"{__package__}.task_squad", "--child", str(spec_path)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))
        if code != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"run_squad.py failed (exit {code}) for {method} lr={lr!r} seed={seed}:\n{tail}")
        metrics = json.loads((Path(output_dir) / "metrics.json").read_text())
        extra = json.loads((Path(output_dir) / "suite_extra.json").read_text())
        with open(Path(output_dir) / "lr_loss.csv") as f:
            losses = [float(row["loss"]) for row in csv.DictReader(f)]
    finally:
        if not os.environ.get("HF_LRTUNER_SUITE_KEEP"):
            shutil.rmtree(output_dir, ignore_errors=True)
    return {
        "metric": float(metrics["f1"]),
        "exact_match": float(metrics["exact_match"]),
        "trial_updates": int(extra.get("trial_updates", metrics.get("trial_updates", 0)) or 0),
        "probe_passes": 0,  # races score the run's own losses; no peer runs probe passes
        "lr_trace": extra["lr_trace"],
        "losses": losses,
        "records": extra["records"] if peer else metrics["schedule"].get("records"),
        "diverged": any(not math.isfinite(v) for v in losses),
        "updates": int(metrics["updates"]),
        "variant": variant,
        "train_seconds": metrics.get("train_seconds"),
        "eval_seconds": metrics.get("eval_seconds"),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


# --------------------------------------------------------------------------------------------------------------------
# The child process


def _child(spec_path: str) -> None:
    from scripts import run_squad

    spec = json.loads(Path(spec_path).read_text())
    recorder = lr_recorder()

    def trainer_factory(trainer_class, **kwargs):
        if "lrtuner_config" in kwargs:  # the tuner takes Trainer's warmup (LRTunerTrainerMixin)
            from hf_lrtuner import LRTunerConfig

            kwargs["lrtuner_config"] = LRTunerConfig(**spec["overrides"])
        if spec["peer"]:
            trainer_class = peer_trainer_class(trainer_class, spec["peer"], int(kwargs["args"].warmup_steps))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), recorder]
        recorder.trainer = trainer_class(**kwargs)
        return recorder.trainer

    run_squad.main(spec["run_squad_args"], trainer_factory=trainer_factory)
    extra = {"lr_trace": recorder.lrs}
    peer = getattr(recorder.trainer, "peer", None)
    if peer is not None:
        extra.update(trial_updates=int(peer.trial_updates), records=peer.records())
    (Path(spec["output_dir"]) / "suite_extra.json").write_text(json.dumps(extra))


SQUAD_MINILM = Task(
    name="squad_minilm",
    tier="D",
    metric_name="f1",
    higher_is_better=True,
    delta=0.5,
    updates=UPDATES,
    quick_updates=QUICK_UPDATES,
    lr_grid=LR_GRID,
    run=run_squad_minilm,
)



def run_squad_minilm_large(method: str, lr: float | None, seed: int, split: str, updates: int,
                           device: str = "cpu") -> dict:
    """`run_squad_minilm` at the ``large`` variant, whatever `updates`."""
    return run_squad_minilm(method, lr, seed, split, updates, device, variant="large")


SQUAD_MINILM_LARGE = dataclasses.replace(SQUAD_MINILM, name="squad_minilm_large", updates=LARGE_UPDATES,
                                         quick_updates=QUICK_UPDATES, run=run_squad_minilm_large)



def run_squad_minilm_cpu(method: str, lr: float | None, seed: int, split: str, updates: int,
                         device: str = "cpu") -> dict:
    """`run_squad_minilm` at the ``cpu`` variant, whatever `updates`."""
    return run_squad_minilm(method, lr, seed, split, updates, device, variant="cpu")


SQUAD_MINILM_CPU = dataclasses.replace(SQUAD_MINILM, name="squad_minilm_cpu", updates=CPU_UPDATES,
                                       quick_updates=QUICK_UPDATES, lr_grid=(1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3, 3.2e-3),
                                       run=run_squad_minilm_cpu)

TASKS = [SQUAD_MINILM, SQUAD_MINILM_LARGE, SQUAD_MINILM_CPU]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.task_squad --child SPEC.json (the suite starts it; see the module "
                 "docstring)")
