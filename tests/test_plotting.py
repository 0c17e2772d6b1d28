"""Plots of real tuner runs: the expected artists are there and the figures save."""

import sys

import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner  # noqa: E402
from hf_lrtuner.plotting import plot_lr_trajectory, plot_race, plot_races  # noqa: E402

STEPS = 120
WARMUP = 10
HORIZON = 10


def tiny_run(lr, optimizer="adam", steps=STEPS, **config):
    """Linear regression (y = x @ w + noise, 16 inputs) trained through `TrialRunner`, batches of 32 in order.

    Returns (scheduler, lrs, losses): the LR applied to and the loss of every update."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g) + 0.1 * torch.randn(2048, 1, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 1)
    make_optimizer = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = make_optimizer(model.parameters(), lr=lr)
    config = LRTunerConfig(warmup_steps=WARMUP, race_horizon=HORIZON, **config)
    scheduler = LRTunerScheduler(opt, num_training_steps=steps, config=config)

    def train_step(batch):
        inputs, targets = batch
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.detach()

    runner = TrialRunner(model, opt, scheduler, train_step)
    lrs, losses = [], []
    for step in range(steps):
        index = torch.arange(step * 32, step * 32 + 32) % len(x)
        batch = (x[index], y[index])
        lrs.append(opt.param_groups[0]["lr"])
        loss = train_step(batch)
        scheduler.step()
        runner.after_update(batch, loss)
        losses.append(float(loss))
    return scheduler, lrs, losses


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def climbing_run():
    """Adam from an LR far too low: every race is won by the challenger one factor up (no acceleration)."""
    scheduler, lrs, losses = tiny_run(1e-2, accelerate=False)
    records = scheduler.tuner.records
    assert len(records) >= 2 and all(r["multiplier"] > r["incumbent"] for r in records)
    return scheduler, lrs, losses


@pytest.fixture(scope="module")
def settling_run():
    """Adam from an LR a little low: the first race moves up, the next one keeps the incumbent."""
    scheduler, lrs, losses = tiny_run(1e-1)
    records = scheduler.tuner.records
    assert records[0]["multiplier"] > records[0]["incumbent"] and records[-1]["multiplier"] == records[-1]["incumbent"]
    return scheduler, lrs, losses


@pytest.fixture(scope="module")
def rollback_run():
    """SGD above its stability limit: training diverges and is rolled back."""
    scheduler, lrs, losses = tiny_run(1.5, optimizer="sgd")
    assert any("rollback_to" in record for record in scheduler.tuner.records)
    return scheduler, lrs, losses


def line_labelled(ax, label):
    lines = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(lines) == 1, f"expected one line labelled {label!r}, got {len(lines)}"
    return lines[0]


def span_extents(ax, gid):
    """(x0, x1) in data coordinates, rounded, of every patch with this gid, whatever patch type this matplotlib uses."""
    to_data = ax.transData.inverted()
    extents = [patch.get_extents().transformed(to_data) for patch in ax.patches if patch.get_gid() == gid]
    return [(round(extent.x0, 3), round(extent.x1, 3)) for extent in extents]


def test_lr_trajectory_marks_phases_races_and_winning_branches(climbing_run, tmp_path):
    scheduler, lrs, losses = climbing_run
    tuner = scheduler.tuner
    assert tuner.decay_start == WARMUP  # Trainer's linear shape: the decay starts when warmup ends
    fig = plot_lr_trajectory(lrs, tuner.records, WARMUP, tuner.decay_start, losses, title="run")
    ax, loss_ax = fig.axes
    assert list(line_labelled(ax, "learning rate").get_ydata()) == pytest.approx(lrs)
    assert span_extents(ax, "phase:warmup") == [(0, WARMUP)]
    assert span_extents(ax, "phase:decay") == [(WARMUP, STEPS)]
    assert span_extents(ax, "phase:stable") == []  # empty with explore_fraction=0
    races = [(record["step"], record["end_step"]) for record in tuner.records]
    assert span_extents(ax, "race") == races
    assert [text.get_text() for text in ax.texts] == [f"↑{record['multiplier']:.3g}" for record in tuner.records]
    # the first race won: its challenger's branch, the incumbent's LR times the ratio of multipliers, is drawn over it
    first = tuner.records[0]
    branch = next(line for line in ax.get_lines() if line.get_label() == "winning branch")
    assert list(branch.get_xdata()) == list(range(first["step"], first["end_step"]))
    ratio = first["multiplier"] / first["incumbent"]
    assert list(branch.get_ydata()) == pytest.approx([lr * ratio for lr in lrs[first["step"] : first["end_step"]]])
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("update", "learning rate", "run")
    assert list(line_labelled(loss_ax, "training loss").get_ydata()) == pytest.approx(losses)
    legend = [text.get_text() for text in loss_ax.get_legend().get_texts()]
    assert legend == ["warmup", "decay", "learning rate", "race", "winning branch", "training loss"]
    fig.savefig(tmp_path / "trajectory.png")
    assert (tmp_path / "trajectory.png").stat().st_size > 0


def test_lr_trajectory_with_a_stable_phase_and_a_kept_incumbent(settling_run):
    scheduler, lrs, _ = settling_run
    tuner = scheduler.tuner
    ax = plot_lr_trajectory(lrs, tuner.records, WARMUP, decay_start=60).axes[0]
    assert span_extents(ax, "phase:stable") == [(WARMUP, 60)]
    assert span_extents(ax, "phase:decay") == [(60, STEPS)]
    texts = [text.get_text() for text in ax.texts]
    assert texts[0].startswith("↑") and texts[-1] == f"={tuner.records[-1]['multiplier']:.3g}"
    won = [record for record in tuner.records if record["multiplier"] != record["incumbent"]]
    assert len([line for line in ax.get_lines() if line.get_label().endswith("winning branch")]) == len(won)


def test_lr_trajectory_marks_rollbacks(rollback_run, tmp_path):
    scheduler, lrs, losses = rollback_run
    records = scheduler.tuner.records
    rollbacks = [record for record in records if "rollback_to" in record]
    fig = plot_lr_trajectory(lrs, records, WARMUP, scheduler.tuner.decay_start, log_scale=True)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label().endswith("roll-back")]
    assert [line.get_xdata()[0] for line in lines] == [record["step"] for record in rollbacks]
    assert span_extents(ax, "discarded") == [(r["rollback_to"], r["step"]) for r in rollbacks]
    assert "roll-back" in [text.get_text() for text in ax.get_legend().get_texts()]
    fig.savefig(tmp_path / "rollback.png")


def test_lr_trajectory_reads_records_from_metrics_json(settling_run):
    # run_squad.py writes non-finite numbers as strings; the plot reads them back
    scheduler, lrs, _ = settling_run
    records = [dict(record, multiplier=str(record["multiplier"]), incumbent=str(record["incumbent"]))
               for record in scheduler.tuner.records]
    ax = plot_lr_trajectory(lrs, records, WARMUP).axes[0]
    assert len(span_extents(ax, "race")) == len(records)


def test_lr_trajectory_on_given_axes_without_records_or_losses(climbing_run, tmp_path):
    _, lrs, _ = climbing_run
    fig, ax = plt.subplots()
    assert plot_lr_trajectory(lrs, ax=ax, log_scale=True) is fig
    assert fig.axes == [ax] and ax.get_yscale() == "log"
    assert [patch.get_label() for patch in ax.patches] == []  # no warmup, no decay start: nothing shaded
    assert [line.get_label() for line in ax.get_lines()] == ["learning rate"]
    fig.savefig(tmp_path / "trajectory.png")


def test_lr_trajectory_rejects_an_empty_run_and_old_records():
    with pytest.raises(ValueError, match="lrs is empty"):
        plot_lr_trajectory([])
    old = {"step": 0, "phase": "explore", "lr_factor": 1.0, "candidates": [0.5, 1.0, 2.0]}  # hf_lrtuner 0.1
    with pytest.raises(ValueError, match="neither a race nor a roll-back"):
        plot_lr_trajectory([1.0, 1.0], [old])


def test_race_highlights_incumbent_challengers_and_outcome(climbing_run, tmp_path):
    scheduler, _, _ = climbing_run
    base_lr = scheduler.base_lrs[0]
    record = scheduler.tuner.records[0]  # the first race: one challenger down, one up; the one up won
    fig = plot_race(record, base_lr=base_lr)
    (ax,) = fig.axes
    incumbent = line_labelled(ax, "incumbent")
    assert incumbent.get_xdata()[0] == pytest.approx(record["incumbent"] * base_lr)
    assert incumbent.get_ydata()[0] == pytest.approx(record["scores"][0])
    chosen = line_labelled(ax, "outcome")
    index = record["multipliers"].index(record["multiplier"])
    assert chosen.get_xdata()[0] == pytest.approx(record["multiplier"] * base_lr)
    assert chosen.get_ydata()[0] == pytest.approx(record["scores"][index])
    (challengers,) = [c for c in ax.containers if c.get_label().startswith("challenger")]
    assert list(challengers.lines[0].get_xdata()) == pytest.approx([lvl * base_lr for lvl in record["multipliers"][1:]])
    assert list(challengers.lines[0].get_ydata()) == pytest.approx(record["scores"][1:])
    # error bars: one paired standard error of each challenger's difference to the incumbent
    (bars,) = challengers.lines[2]
    heights = [segment[1][1] - segment[0][1] for segment in bars.get_segments()]
    assert heights == pytest.approx([2 * difference[1] for difference in record["differences"][1:]])
    # a challenger that raced fewer updates than the incumbent is read against the incumbent over its own updates
    horizons = record.get("horizons", [HORIZON] * len(record["multipliers"]))
    shorter = [i for i in range(1, len(horizons)) if horizons[i] < horizons[0]]
    hollow = [line for line in ax.get_lines() if line.get_label() == "incumbent over a shorter race"]
    assert [list(line.get_ydata()) for line in hollow] == (
        [pytest.approx([record["scores"][i] - record["differences"][i][0] for i in shorter])] if shorter else []
    )
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    assert ax.get_ylabel() == "mean loss, second half of the race"
    assert ax.get_title() == f"Race over updates 0-{HORIZON}: multiplier ↑ {record['multiplier']:.3g}"
    fig.savefig(tmp_path / "race.png")
    assert (tmp_path / "race.png").stat().st_size > 0


def test_race_kept_incumbent_is_the_outcome(settling_run):
    scheduler, _, _ = settling_run
    record = scheduler.tuner.records[-1]
    ax = plot_race(record).axes[0]
    assert ax.get_xlabel() == "multiplier (× initial LR)"
    assert line_labelled(ax, "outcome").get_xdata()[0] == pytest.approx(record["incumbent"])
    assert ax.get_title().endswith(f"multiplier = {record['multiplier']:.3g}")


def test_race_marks_a_diverged_challenger(settling_run, tmp_path):
    # A challenger stopped by its divergence monitor: the record of the same race with its last arm marked diverged
    # (its differences are then [nan, nan] and its score that of the updates it made).
    scheduler, _, _ = settling_run
    record = scheduler.tuner.records[0]
    record = dict(record, diverged=[False, False, True], differences=[*record["differences"][:2], ["nan", "nan"]],
                  multiplier=record["incumbent"])
    fig = plot_race(record)
    ax = fig.axes[0]
    assert list(line_labelled(ax, "diverged").get_xdata()) == pytest.approx([record["multipliers"][2]])
    assert [text.get_text() for text in ax.texts] == [f"{record['scores'][2]:.3g}"]
    (challengers,) = [c for c in ax.containers if c.get_label().startswith("challenger")]
    assert list(challengers.lines[0].get_xdata()) == pytest.approx([record["multipliers"][1]])
    fig.savefig(tmp_path / "diverged.png")


def test_race_marks_a_challenger_it_did_not_need(settling_run):
    # A race decided before a challenger's horizon (an earlier challenger already won) records it with a nan score
    scheduler, _, _ = settling_run
    record = scheduler.tuner.records[0]
    record = dict(record, scores=[*record["scores"][:2], "nan"], diverged=[False, False, False],
                  differences=[*record["differences"][:2], ["nan", "nan"]], multiplier=record["multipliers"][1])
    ax = plot_race(record).axes[0]
    assert list(line_labelled(ax, "not raced").get_xdata()) == pytest.approx([record["multipliers"][2]])
    assert line_labelled(ax, "outcome").get_xdata()[0] == pytest.approx(record["multipliers"][1])
    assert not [line for line in ax.get_lines() if line.get_label() == "diverged"] and not ax.texts


def test_races_one_panel_per_race(climbing_run, rollback_run):
    scheduler, _, _ = climbing_run
    races = scheduler.tuner.records
    fig = plot_races(races, columns=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(races)
    assert [ax.get_title().split(":")[0] for ax in visible] == [
        f"Race over updates {r['step']}-{r['end_step']}" for r in races
    ]
    records = rollback_run[0].tuner.records  # roll-backs are skipped
    assert len(plot_races(records).axes) == sum("multipliers" in r for r in records)
    with pytest.raises(ValueError, match="not a race"):
        plot_race(next(r for r in records if "rollback_to" in r))
    with pytest.raises(ValueError, match="No race"):
        plot_races([r for r in records if "rollback_to" in r])


def test_missing_matplotlib_names_the_extra(monkeypatch, climbing_run):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    record = climbing_run[0].tuner.records[0]
    for plot in (lambda: plot_race(record), lambda: plot_races([record]), lambda: plot_lr_trajectory([1.0])):
        with pytest.raises(ImportError, match=r"pip install hf_lrtuner\[plot\]"):
            plot()
