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


def write_results(directory, trajectories=True, sweep=True, best_lr=1e-4, seeds=(0, 1, 2), updates=60):
    """Small benchmark results in the schema `scripts/benchmark_squad.py` writes (synthetic numbers, for tests)."""
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


def test_quickstart_notebook_runs():
    notebook = execute("01_quickstart.ipynb")
    text = text_of(notebook)
    assert "LRTuner from 1e-3 (10x low)" in text and "fixed 1e-2 (well chosen)" in text
    assert images_in(notebook) == 3  # trajectories, one tuning point, losses


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
    if synthetic:  # every file is there: every section ran
        assert "not found" not in text and images_in(notebook) == 3
    assert "RUN_LIVE is False" in text


def test_squad_comparison_notebook_without_optional_files(tmp_path, monkeypatch):
    write_results(tmp_path, trajectories=False, sweep=False)
    monkeypatch.setenv("HF_LRTUNER_RESULTS", str(tmp_path))
    text = text_of(execute("02_squad_comparison.ipynb"))
    assert "trajectories.csv: not found" in text and "no learning-rate trajectories to plot" in text
    assert "sweep.csv: not found" in text and "no LR sweep to show" in text
    assert "lrtuner − linear, paired by seed" in text


def test_squad_comparison_notebook_without_results(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LRTUNER_RESULTS", str(tmp_path / "missing"))
    notebook = execute("02_squad_comparison.ipynb")
    assert "No benchmark runs to show" in text_of(notebook)
    assert images_in(notebook) == 0
