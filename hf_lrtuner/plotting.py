"""Plots of what the tuner did: the learning rate of every update of a run with its races, and one race in detail.

matplotlib is an optional dependency (`pip install hf_lrtuner[plot]`); it is imported when a plot is made.

Both plots take the tuner's records (`LRTuner.records`, i.e. `scheduler.tuner.records`, or the `records` that
`scripts/run_squad.py` writes to `metrics.json`, where non-finite numbers are strings such as `"nan"`, which
`float()` reads): races ([`~hf_lrtuner.records.RaceRecord`]) and roll-backs
([`~hf_lrtuner.records.RollbackRecord`]), as saved by this version or by hf_lrtuner 0.2.
"""

from __future__ import annotations

import math
from typing import List, Mapping, Optional, Sequence

from .records import RaceRecord, is_race, load_record, load_records

PHASE_COLORS = {"warmup": "tab:gray", "stable": "tab:orange", "decay": "tab:blue"}
RACE_COLOR = "tab:purple"
ROLLBACK_COLOR = "tab:red"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "hf_lrtuner.plotting needs matplotlib, which is not installed: pip install hf_lrtuner[plot]"
        ) from error
    return plt


def _new_axes(figsize):
    return _pyplot().subplots(figsize=figsize, layout="constrained")[1]


def _arrow(record: RaceRecord) -> str:
    multiplier, incumbent = float(record["multiplier"]), float(record["incumbent"])
    return "↑" if multiplier > incumbent else "↓" if multiplier < incumbent else "="


def plot_lr_trajectory(
    lrs: Sequence[float],
    records: Optional[Sequence[Mapping]] = None,
    warmup_steps: int = 0,
    decay_start: Optional[int] = None,
    losses: Optional[Sequence[float]] = None,
    ax=None,
    title: Optional[str] = None,
    log_scale: bool = False,
):
    """Plot the learning rate of every update, with the schedule's phases shaded and the tuner's races marked.

    Each race is a band at the top of the axes from its first update (`step`) to its end (`end_step`), labelled with
    the multiplier it left (of the initial LR; `↑`/`↓` when a challenger won, `=` when the incumbent kept its
    multiplier). The real run trains the race at the incumbent multiplier; when a challenger wins, training continues
    from the challenger's branch, so the LR that branch followed over the race is drawn dotted ("winning branch").
    Roll-backs after a divergence are red vertical lines, the updates they discarded hatched.

    Args:
        lrs (`Sequence[float]`):
            Learning rate applied to each update of the run, in order (e.g. `optimizer.param_groups[0]["lr"]` read
            before every update, or Trainer's logged `learning_rate` with `logging_steps=1`).
        records (`Sequence[Mapping]`, *optional*):
            The tuner's records (`scheduler.tuner.records`, or saved ones: see [`~hf_lrtuner.records.load_records`]).
        warmup_steps (`int`, *optional*, defaults to 0):
            Length of the warmup in updates (`LRTunerConfig.warmup_steps`, or `scheduler.tuner.config.warmup_steps`
            when Trainer's warmup was used).
        decay_start (`int`, *optional*):
            First update of the decay (`LRTuner.decay_start`: the end of warmup with Trainer's `linear` shape, later
            with `explore_fraction > 0`). Without it, only the warmup is shaded.
        losses (`Sequence[float]`, *optional*):
            Training loss of each update, drawn on a second y-axis.
        ax (`matplotlib.axes.Axes`, *optional*):
            Axes to draw on; a new figure is created when not given.
        title (`str`, *optional*):
            Title of the axes; defaults to "LRTuner: learning rate per update".
        log_scale (`bool`, *optional*, defaults to `False`):
            Whether the learning-rate axis is logarithmic (updates at LR 0 are then not drawn).

    Returns:
        `matplotlib.figure.Figure`: the figure holding `ax`.
    """
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs is empty: pass the learning rate of every update of the run.")
    records = load_records(records or [])
    ax = ax if ax is not None else _new_axes((9, 4))
    end = len(lrs)
    warmup_end = min(warmup_steps, end)
    phases = [("warmup", 0, warmup_end)]
    if decay_start is not None:
        decay_start = max(warmup_end, min(decay_start, end))
        phases += [("stable", warmup_end, decay_start), ("decay", decay_start, end)]
    for phase, start, stop in phases:
        if stop > start:
            span = ax.axvspan(start, stop, color=PHASE_COLORS[phase], alpha=0.12, linewidth=0, label=phase)
            span.set_gid(f"phase:{phase}")
    ax.plot(range(end), lrs, color="black", drawstyle="steps-post", label="learning rate")

    races = [record for record in records if is_race(record)]
    rollbacks = [record for record in records if not is_race(record)]
    for index, race in enumerate(races):
        start, stop = int(race["step"]), int(race["end_step"])
        band = ax.axvspan(start, stop, ymin=0.93, ymax=1.0, color=RACE_COLOR, alpha=0.35, linewidth=0,
                          label="race" if index == 0 else "_race")
        band.set_gid("race")
        # consecutive labels alternate between two heights, so that those of short races do not overlap
        ax.annotate(f"{_arrow(race)}{float(race['multiplier']):.3g}", ((start + stop) / 2, 0.92 - 0.05 * (index % 2)),
                    xycoords=ax.get_xaxis_transform(), ha="center", va="top", fontsize="x-small", color=RACE_COLOR)
    won = [race for race in races if float(race["multiplier"]) != float(race["incumbent"])]
    for index, race in enumerate(won):
        start, stop = int(race["step"]), min(int(race["end_step"]), end)
        ratio = float(race["multiplier"]) / float(race["incumbent"])
        steps = list(range(start, stop))
        if steps:
            ax.plot(steps, [lrs[step] * ratio for step in steps], color=RACE_COLOR, linestyle=":",
                    drawstyle="steps-post", label="winning branch" if index == 0 else "_winning branch")
    for index, rollback in enumerate(rollbacks):
        step, back_to = int(rollback["step"]), int(rollback["rollback_to"])
        ax.axvline(step, color=ROLLBACK_COLOR, linestyle="--", linewidth=1.2,
                   label="roll-back" if index == 0 else "_roll-back")
        if step > back_to:
            discarded = ax.axvspan(back_to, step, facecolor="none", edgecolor=ROLLBACK_COLOR, hatch="//",
                                   linewidth=0, alpha=0.25, label="_discarded")
            discarded.set_gid("discarded")

    if log_scale:
        ax.set_yscale("log")
    ax.set_xlim(-0.01 * end, end)  # keeps update 0 clear of the spine
    ax.set_xlabel("update")
    ax.set_ylabel("learning rate")
    ax.set_title(title if title is not None else "LRTuner: learning rate per update")
    legend_ax = ax
    if losses is not None:
        legend_ax = ax.twinx()  # drawn above `ax`, so it holds the legend
        legend_ax.plot(range(len(losses)), [float(loss) for loss in losses], color="tab:green", alpha=0.6,
                       linewidth=0.8, label="training loss")
        legend_ax.set_ylabel("training loss")
    handles, labels = ax.get_legend_handles_labels()
    if legend_ax is not ax:
        more_handles, more_labels = legend_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    # below the band of races at the top of the axes
    legend_ax.legend(handles, labels, loc="upper right", bbox_to_anchor=(1.0, 0.86), fontsize="small")
    return ax.figure


def plot_race(record: Mapping, base_lr: float = 1.0, ax=None):
    """Plot one race: the late-race mean loss of every multiplier it tried, the incumbent and the outcome marked.

    Each arm's score is its mean training loss over the second half of its race, on the same batches for every arm.
    Challengers carry error bars of one standard error of their paired per-update difference to the incumbent
    (`record["differences"]`, what the race's margin is compared against); the incumbent is a square, the multiplier the
    race left a star. When a challenger raced fewer updates than the incumbent (a shorter downward race), the
    incumbent's loss over that challenger's updates is a hollow square at the incumbent's LR, so that each challenger
    can be read against what it was compared with. A challenger that diverged (stopped early) is a cross at the top of
    the axes, labelled with its score; one the race did not need (decided before its horizon) a hollow circle at the
    bottom.

    Args:
        record (`Mapping`):
            One race record from `LRTuner.records` ([`~hf_lrtuner.records.RaceRecord`], or one saved by 0.2).
        base_lr (`float`, *optional*, defaults to 1.0):
            Initial learning rate of the run (e.g. `scheduler.base_lrs[0]`). With the default, the x-axis shows the
            multipliers themselves.
        ax (`matplotlib.axes.Axes`, *optional*):
            Axes to draw on; a new figure is created when not given.

    Returns:
        `matplotlib.figure.Figure`: the figure holding `ax`.
    """
    if not is_race(record):
        raise ValueError(f"The record at step {record.get('step')!r} is not a race (a roll-back has no arms to plot).")
    record = load_record(record)
    ax = ax if ax is not None else _new_axes((6, 4))
    lrs = [float(multiplier) * base_lr for multiplier in record["multipliers"]]
    scores = [float(score) for score in record["scores"]]
    means = [float(difference[0]) for difference in record["differences"]]
    stderrs = [float(difference[1]) for difference in record["differences"]]
    diverged = [bool(flag) for flag in record["diverged"]]
    incumbent = 0  # the arms list the incumbent first
    others = range(1, len(lrs))
    failed = [i for i in others if diverged[i]]
    unraced = [i for i in others if not diverged[i] and not math.isfinite(scores[i])]
    challengers = [i for i in others if i not in failed and i not in unraced]
    if challengers:
        ax.errorbar(
            [lrs[i] for i in challengers],
            [scores[i] for i in challengers],
            yerr=[stderrs[i] if math.isfinite(stderrs[i]) else 0.0 for i in challengers],
            fmt="o",
            color="tab:blue",
            capsize=3,
            label="challenger (± paired stderr)",
        )
    ax.plot([lrs[incumbent]], [scores[incumbent]], linestyle="none", marker="s", markersize=8, color="tab:gray",
            markeredgecolor="black", label="incumbent")
    # The incumbent over a shorter challenger's updates: the challenger's score minus its paired difference.
    paired = [(i, scores[i] - means[i]) for i in challengers if math.isfinite(means[i])]
    paired = [(i, y) for i, y in paired if not math.isclose(y, scores[incumbent], rel_tol=1e-6, abs_tol=1e-12)]
    if paired:
        ax.plot([lrs[incumbent]] * len(paired), [y for _, y in paired], linestyle="none", marker="s", markersize=8,
                markerfacecolor="none", markeredgecolor="tab:gray", label="incumbent over a shorter race")
    transform = ax.get_xaxis_transform()
    if failed:
        # Off the chart: a diverged arm's score would crush the scale of the others.
        ax.plot([lrs[i] for i in failed], [0.95] * len(failed), linestyle="none", marker="x", markersize=9,
                markeredgewidth=2, color="tab:red", transform=transform, label="diverged")
        for i in failed:
            ax.annotate(f"{scores[i]:.3g}", (lrs[i], 0.95), xycoords=transform, xytext=(6, -4),
                        textcoords="offset points", fontsize="small", color="tab:red")
    if unraced:
        ax.plot([lrs[i] for i in unraced], [0.05] * len(unraced), linestyle="none", marker="o", markersize=8,
                markerfacecolor="none", markeredgecolor="tab:blue", transform=transform, label="not raced")
    chosen_lr = float(record["multiplier"]) * base_lr
    tried = [i for i in [incumbent, *challengers] if math.isclose(lrs[i], chosen_lr, rel_tol=1e-9)]
    if tried:
        ax.plot([chosen_lr], [scores[tried[0]]], linestyle="none", marker="*", markersize=18, color="tab:orange",
                markeredgecolor="black", zorder=3, label="outcome")
    else:  # not an arm of this race (a hand-edited record): still show where the multiplier went
        ax.axvline(chosen_lr, color="tab:orange", linestyle="--", label="outcome (not raced)")
    ax.set_xscale("log")
    ticks = sorted(set(lrs))
    ax.set_xticks(ticks, [f"{lr:.3g}" for lr in ticks])  # label the multipliers tried, not the decades
    ax.minorticks_off()
    ax.set_xlabel("learning rate" if base_lr != 1.0 else "multiplier (× initial LR)")
    ax.set_ylabel("mean loss, second half of the race")
    ax.set_title(f"Race over updates {record['step']}-{record['end_step']}: multiplier {_arrow(record)} "
                 f"{float(record['multiplier']):.3g}")
    ax.legend(loc="best", fontsize="small")
    return ax.figure


def plot_races(records: Sequence[Mapping], base_lr: float = 1.0, columns: int = 3):
    """Plot every race of a run with [`plot_race`], one panel each (roll-back records are skipped).

    Args:
        records (`Sequence[Mapping]`): the tuner's records (`scheduler.tuner.records`, or saved ones).
        base_lr (`float`, *optional*, defaults to 1.0): initial learning rate of the run.
        columns (`int`, *optional*, defaults to 3): panels per row.

    Returns:
        `matplotlib.figure.Figure`: one panel per race.
    """
    races: List[RaceRecord] = [record for record in load_records(records) if is_race(record)]
    if not races:
        raise ValueError("No race among the records: the run raced nothing (a budget too short for a race?).")
    plt = _pyplot()
    columns = max(1, min(columns, len(races)))
    rows = math.ceil(len(races) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False,
                                layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax, race in zip(flat, races):
        plot_race(race, base_lr=base_lr, ax=ax)
    for ax in flat[len(races):]:
        ax.set_visible(False)
    return figure
