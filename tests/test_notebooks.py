"""The notebooks execute headless, top to bottom, without a cell error."""

import csv
import json
import math
import random
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.slow  # each test starts a kernel and executes a notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
REAL_RESULTS = REPO / "docs" / "results"
CELL_TIMEOUT = 60  # seconds; the slowest cell (training five tiny runs) takes a few


@pytest.fixture(autouse=True)
def this_interpreter_as_kernel(tmp_path, monkeypatch):
    """Run the notebooks' `python3` kernel with this interpreter (where hf_lrtuner is installed), whatever kernelspecs
    the machine has: a kernelspec first on JUPYTER_PATH wins."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (hf_lrtuner tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, which needs no display


def execute(name):
    """Execute a notebook from notebooks/ (its own directory, as Jupyter runs it); a failing cell raises."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return notebook


def text_of(notebook):
    """Everything the notebook printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images_in(notebook):
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def write_results(directory, trajectories=True, sweep=True, suite=False, best_lr=1e-4, seeds=(0, 1, 2), updates=60):
    """Small benchmark results in the schema `benchmarks/squad_matrix.py` writes (synthetic numbers, for tests), and
    with `suite` a tuner-suite CSV in the schema of `benchmarks/suite.py`."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    runs = [(s, lr, seed, 1.0) for s in ("linear", "knee", "lrtuner") for lr in (best_lr / 10, best_lr, best_lr * 10)
            for seed in seeds]
    runs += [("lrtuner", best_lr, seed, budget) for budget in (0.5, 0.7, 0.85) for seed in seeds]
    with open(directory / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["schedule", "lr", "seed", "budget", "em", "f1", "updates", "trial_updates", "total_updates",
                         "train_seconds", "eval_seconds"])
        for schedule, lr, seed, budget in runs:
            off = abs(math.log10(lr / best_lr)) * (20 if schedule == "linear" else 5)
            f1 = 70 - off - 10 * (1 - budget) + rng.gauss(0, 1)
            steps = round(budget * updates)
            trials = steps // 10 if schedule == "lrtuner" else 0
            writer.writerow([schedule, f"{lr:g}", seed, budget, f"{f1 - 10:.2f}", f"{f1:.2f}", steps, trials,
                             steps + trials, round(steps * 1.5, 1), 20.0])
    if trajectories:
        with open(directory / "trajectories.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["schedule", "lr", "seed", "budget", "step", "learning_rate", "loss"])
            for schedule, lr, seed, budget in runs:
                if seed != seeds[0]:
                    continue
                steps = round(budget * updates)
                for step in range(1, steps + 1):
                    warmup = min(1.0, step / (0.1 * steps))
                    rate = lr * warmup * (1 - step / steps) * (3 if schedule == "lrtuner" and step < steps / 2 else 1)
                    writer.writerow([schedule, f"{lr:g}", seed, budget, step, rate, 5 / (1 + step / 10)])
    if sweep:
        with open(directory / "sweep.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["lr", "seed", "em", "f1"])
            for lr in (best_lr / 3, best_lr, best_lr * 3):
                f1 = 70 - 10 * abs(math.log10(lr / best_lr))
                writer.writerow([f"{lr:g}", 0, f"{f1 - 10:.2f}", f"{f1:.2f}"])
    if suite:
        write_suite(directory / "suite.csv", seeds)


def write_suite(path, seeds):
    """A tuner-suite CSV: an accuracy task and a loss task whose linear run diverges at the largest guess."""
    rng = random.Random(1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "tier", "method", "guess", "lr", "seed", "split", "metric_name", "metric",
                         "higher_is_better", "delta", "updates", "trial_updates", "probe_passes", "wall_s"])
        for task, tier, name, higher in (("toy_acc", "B", "accuracy", 1), ("toy_loss", "A", "loss", 0)):
            for seed in seeds:
                for lr in (0.01, 0.02, 0.04):  # the dev grid: no guess
                    writer.writerow([task, tier, "linear", "", lr, seed, "dev", name, 0.5, higher, 0.5, 100, 0, 0, 0.1])
                for guess in (1 / 30, 0.1, 1, 10, 30):
                    off = abs(math.log10(guess))
                    for method, trials in (("linear", 0), ("lrtuner", 20)):
                        harm = off * (1.0 if method == "linear" else 0.3)
                        if higher:
                            metric = 70 - 20 * harm + rng.gauss(0, 1)
                        else:
                            metric = 1e79 if method == "linear" and guess == 30 else 0.05 * 10**harm
                        writer.writerow([task, tier, method, f"{guess:g}", 0.02 * guess, seed, "test", name, metric,
                                         higher, 0.5, 100, trials, 0, 0.1])
                metric = 66 + rng.gauss(0, 1) if higher else 0.08  # an LR-free peer: one run per seed, no guess
                writer.writerow([task, tier, "prodigy", "", "", seed, "test", name, metric, higher, 0.5, 100, 0, 0, 0.1])


def test_quickstart_notebook_runs():
    notebook = execute("01_quickstart.ipynb")
    text = text_of(notebook)
    assert "(10x low): multiplier" in text and "(10x high): multiplier" in text and "(well chosen)" in text
    assert "0-15" in text  # the first race, in the table of races
    assert images_in(notebook) == 3  # trajectories, the races, losses


def test_squad_comparison_notebook_runs_on_the_results(tmp_path, monkeypatch):
    """On the committed benchmark results once they exist, on a small synthetic set in their schema until then."""
    synthetic = not (REAL_RESULTS / "runs.csv").exists()
    if synthetic:
        write_results(tmp_path)
        monkeypatch.setenv("HF_LRTUNER_RESULTS", str(tmp_path))
    else:
        monkeypatch.delenv("HF_LRTUNER_RESULTS", raising=False)  # the notebook's default: ../docs/results
    notebook = execute("02_squad_comparison.ipynb")
    text = text_of(notebook)
    assert "lrtuner − linear, paired by seed" in text
    assert images_in(notebook) >= 2
    if synthetic:  # every file is there but suite.csv: every other section ran
        assert "suite.csv: not found" in text and images_in(notebook) == 3
    assert "RUN_LIVE is False" in text


def test_squad_comparison_notebook_without_optional_files(tmp_path, monkeypatch):
    write_results(tmp_path, trajectories=False, sweep=False)
    monkeypatch.setenv("HF_LRTUNER_RESULTS", str(tmp_path))
    text = text_of(execute("02_squad_comparison.ipynb"))
    assert "trajectories.csv: not found" in text and "no learning-rate trajectories to plot" in text
    assert "sweep.csv: not found" in text and "no LR sweep to show" in text
    assert "suite.csv: not found" in text
    assert "lrtuner − linear, paired by seed" in text


def test_squad_comparison_notebook_reads_the_tuner_suite(tmp_path, monkeypatch):
    write_results(tmp_path, suite=True)
    monkeypatch.setenv("HF_LRTUNER_RESULTS", str(tmp_path))
    notebook = execute("02_squad_comparison.ipynb")
    text = text_of(notebook)
    assert ("suite.csv: 66 test runs, tasks ['toy_acc', 'toy_loss'], methods ['linear', 'lrtuner', 'prodigy']"
            in text)
    assert "toy_acc (tier B): test accuracy, higher is better" in text and "x1/30" in text and "LR-free" in text
    assert "toy_loss (tier A): test loss, lower is better" in text and "1e+79" in text
    assert "lrtuner compute" in text and "1.20x" in text and "No lrtuner runs" not in text
    # the ranking of benchmarks/report.py: on toy_loss prodigy's regret is (0.08 - 0.05) / delta = 0.06 at every
    # guess, LRTuner's 0 at x1 and (0.05 * 10**0.3 - 0.05) / 0.5 = 0.0995 at x0.1 and x10: prodigy is first on both
    assert "Per task (regret / delta)" in text and "prodigy (0.06)" in text
    assert "Over the tasks with every method" not in text
    assert "No task has rows of every compared method" in text
    assert "not found" not in text and images_in(notebook) == 5  # the benchmark's three, the suite's two


def test_squad_comparison_notebook_without_results(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LRTUNER_RESULTS", str(tmp_path / "missing"))
    notebook = execute("02_squad_comparison.ipynb")
    assert "No benchmark runs to show" in text_of(notebook)
    assert images_in(notebook) == 0
