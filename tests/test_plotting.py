"""Plots of real tuner runs: the expected artists are there and the figures save."""

import sys

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from task import tuned_run  # noqa: E402

from hf_lrtuner import LRTunerConfig  # noqa: E402
from hf_lrtuner.plotting import plot_lr_trajectory, plot_tuning_point  # noqa: E402

WARMUP = 20
BASE_LR = 1e-2


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def adam_run():
    """Adam on the teacher-MLP task with warmup: tuning points in warmup, explore and exploit."""
    config = LRTunerConfig(warmup_steps=WARMUP, tune_every=30, trial_steps=5, probe_batches=4, max_trial_fraction=0.5)
    _, scheduler, log, _ = tuned_run("classification", BASE_LR, steps=300, config=config, optimizer="adam")
    return scheduler, log


@pytest.fixture(scope="module")
def diverging_record():
    """The first tuning point of SGD on linear regression from an LR 2x above the stability limit."""
    _, _, log, _ = tuned_run("regression", 1.0, steps=40)
    record = log.records[0]
    assert any(record["diverged"])
    return record


def line_labelled(ax, label):
    lines = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(lines) == 1, f"expected one line labelled {label!r}, got {len(lines)}"
    return lines[0]


def test_lr_trajectory_marks_every_tuning_point_and_phase(adam_run, tmp_path):
    scheduler, log = adam_run
    assert {record["phase"] for record in log.records} == {"warmup", "explore", "exploit"}
    fig = plot_lr_trajectory(log.lrs, log.records, scheduler.tuner.switch_step, WARMUP, log.losses, title="run")
    ax, loss_ax = fig.axes
    ticks = line_labelled(ax, "tuning point")
    assert list(ticks.get_xdata()) == [record["step"] for record in log.records]
    assert list(line_labelled(ax, "learning rate").get_ydata()) == pytest.approx(log.lrs)
    to_data = ax.transData.inverted()  # span starts, whatever patch type this matplotlib version uses
    spans = {patch.get_label(): patch.get_extents().transformed(to_data).x0 for patch in ax.patches}
    assert spans == pytest.approx({"warmup": 0, "explore": WARMUP, "exploit": scheduler.tuner.switch_step})
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("update", "learning rate", "run")
    assert loss_ax.get_ylabel() == "training loss"
    assert list(line_labelled(loss_ax, "training loss").get_ydata()) == pytest.approx(log.losses)
    legend = [text.get_text() for text in loss_ax.get_legend().get_texts()]
    assert legend == ["warmup", "explore", "exploit", "learning rate", "tuning point", "training loss"]
    fig.savefig(tmp_path / "trajectory.png")
    assert (tmp_path / "trajectory.png").stat().st_size > 0


def test_lr_trajectory_on_given_axes_without_records_or_losses(adam_run, tmp_path):
    _, log = adam_run
    fig, ax = plt.subplots()
    assert plot_lr_trajectory(log.lrs, ax=ax, log_scale=True) is fig
    assert fig.axes == [ax] and ax.get_yscale() == "log"
    assert [patch.get_label() for patch in ax.patches] == []  # no warmup, no switch step: nothing shaded
    assert [line.get_label() for line in ax.get_lines()] == ["learning rate"]
    fig.savefig(tmp_path / "trajectory.png")


def test_lr_trajectory_rejects_an_empty_run():
    with pytest.raises(ValueError, match="lrs is empty"):
        plot_lr_trajectory([])


def test_tuning_point_highlights_the_chosen_candidate(adam_run, tmp_path):
    _, log = adam_run
    record = next(record for record in log.records if record["phase"] == "explore")
    fig = plot_tuning_point(record, base_lr=BASE_LR)
    (ax,) = fig.axes
    chosen = line_labelled(ax, "chosen")
    index = record["lr_factors"].index(record["lr_factor"])
    assert chosen.get_xdata()[0] == pytest.approx(record["lr_factor"] * BASE_LR)
    assert chosen.get_ydata()[0] == pytest.approx(record["scores"][index])
    assert line_labelled(ax, "probe score before trials").get_ydata()[0] == pytest.approx(record["reference"])
    assert line_labelled(ax, "before the search").get_xdata()[0] == pytest.approx(record["previous"] * BASE_LR)
    candidates = [container for container in ax.containers if container.get_label().startswith("candidate")]
    assert len(candidates) == 1 and len(candidates[0].lines[0].get_xdata()) == len(record["candidates"])
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    assert ax.get_ylabel() == "probe loss after the trial"
    assert ax.get_title() == f"Tuning point at update {record['step']} (explore)"
    fig.savefig(tmp_path / "tuning_point.png")
    assert (tmp_path / "tuning_point.png").stat().st_size > 0


def test_tuning_point_in_exploit_places_candidates_on_the_envelope(adam_run):
    _, log = adam_run
    record = next(record for record in log.records if record["phase"] == "exploit")
    ax = plot_tuning_point(record).axes[0]
    assert ax.get_xlabel() == "learning-rate factor (× initial LR)"
    candidates = next(container for container in ax.containers if container.get_label().startswith("candidate"))
    assert list(candidates.lines[0].get_xdata()) == pytest.approx(record["lr_factors"])
    envelope = record["lr_factor"] / record["choice"]
    assert line_labelled(ax, "before the search").get_xdata()[0] == pytest.approx(record["previous"] * envelope)


def test_tuning_point_marks_diverged_candidates(diverging_record, tmp_path):
    record = diverging_record
    fig = plot_tuning_point(record)
    ax = fig.axes[0]
    diverged = line_labelled(ax, "diverged")
    expected = [lr for lr, failed in zip(record["lr_factors"], record["diverged"]) if failed]
    assert list(diverged.get_xdata()) == pytest.approx(expected)
    assert len(ax.texts) == len(expected)  # each labelled with its score
    assert line_labelled(ax, "chosen").get_xdata()[0] == pytest.approx(record["lr_factor"])
    fig.savefig(tmp_path / "diverged.png")


def test_tuning_point_with_a_choice_below_every_tried_lr(diverging_record):
    # What the search records when every candidate diverged: the choice is one step below the smallest one tried.
    record = dict(diverging_record, diverged=[True] * len(diverging_record["candidates"]))
    record["choice"] = record["lr_factor"] = min(record["lr_factors"]) / 2
    ax = plot_tuning_point(record).axes[0]
    assert line_labelled(ax, "chosen (not tried)").get_xdata()[0] == pytest.approx(record["lr_factor"])
    assert not ax.containers  # no candidate left to draw with error bars
    assert len(line_labelled(ax, "diverged").get_xdata()) == len(record["candidates"])


def test_missing_matplotlib_names_the_extra(monkeypatch, diverging_record):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install hf_lrtuner\[plot\]"):
        plot_tuning_point(diverging_record)
    with pytest.raises(ImportError, match=r"pip install hf_lrtuner\[plot\]"):
        plot_lr_trajectory([1.0])
