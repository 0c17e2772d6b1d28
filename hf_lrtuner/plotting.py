"""Plots of what the tuner did: the learning rate of every update of a run, and the local search of a tuning point.

matplotlib is an optional dependency (`pip install hf_lrtuner[plot]`); it is imported when a plot is made.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

PHASE_COLORS = {"warmup": "tab:gray", "explore": "tab:orange", "exploit": "tab:blue"}


def _new_axes(figsize):
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "hf_lrtuner.plotting needs matplotlib, which is not installed: pip install hf_lrtuner[plot]"
        ) from error
    return plt.subplots(figsize=figsize, layout="constrained")[1]


def plot_lr_trajectory(
    lrs: Sequence[float],
    records: Optional[Sequence[dict]] = None,
    switch_step: Optional[int] = None,
    warmup_steps: int = 0,
    losses: Optional[Sequence[float]] = None,
    ax=None,
    title: Optional[str] = None,
    log_scale: bool = False,
):
    """Plot the learning rate of every update, with the phases shaded and the tuning points marked.

    Args:
        lrs (`Sequence[float]`):
            Learning rate applied to each ordinary update, in order (e.g. `scheduler.get_last_lr()[0]` read before
            every update).
        records (`Sequence[dict]`, *optional*):
            Tuning-point records (`LRTuner.records`, i.e. `scheduler.tuner.records`); each is marked by a vertical
            tick at its `step`.
        switch_step (`int`, *optional*):
            First update of the exploit phase (`LRTuner.switch_step`). Without it, explore and exploit are not shaded.
        warmup_steps (`int`, *optional*, defaults to 0):
            Length of the warmup phase in updates (`LRTunerConfig.warmup_steps`).
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
    ax = ax if ax is not None else _new_axes((9, 4))
    end = len(lrs)
    phases = [("warmup", 0, min(warmup_steps, end))]
    if switch_step is not None:
        phases += [("explore", warmup_steps, min(switch_step, end)), ("exploit", switch_step, end)]
    for phase, start, stop in phases:
        if stop > start:
            ax.axvspan(start, stop, color=PHASE_COLORS[phase], alpha=0.15, linewidth=0, label=phase)
    ax.plot(range(end), lrs, color="black", drawstyle="steps-post", label="learning rate")
    if records:
        from matplotlib.markers import TICKUP

        # Ticks rising from the bottom of the axes (x in updates, y in axes coordinates): visible on any LR scale.
        ax.plot(
            [record["step"] for record in records],
            [0.0] * len(records),
            linestyle="none",
            marker=TICKUP,
            markersize=10,
            markeredgewidth=1.5,
            color="tab:red",
            transform=ax.get_xaxis_transform(),
            label="tuning point",
        )
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlim(-0.01 * end, end)  # keeps a tick at update 0 clear of the spine
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
    legend_ax.legend(handles, labels, loc="upper right", fontsize="small")
    return ax.figure


def plot_tuning_point(record: dict, base_lr: float = 1.0, ax=None):
    """Plot the local search of one tuning point: the probe score of every candidate learning rate.

    Candidates are drawn with error bars of one standard error of their paired per-batch difference to the best
    candidate (`record["noise"]`, the quantity the choice rule compares against `noise_tolerance`). Diverged
    candidates are marked with a cross at the top of the axes, labelled with their score; the chosen learning rate
    is highlighted (a dashed line when it was not tried, i.e. below every tried one after a divergence), the level
    before the search is a dotted line and the probe score before any trial (`record["reference"]`) a dashed one.

    Args:
        record (`dict`):
            One tuning-point record from `LRTuner.records`.
        base_lr (`float`, *optional*, defaults to 1.0):
            Initial learning rate that the record's factors multiply (e.g. `scheduler.base_lrs[0]`). With the default,
            the x-axis shows the factors themselves.
        ax (`matplotlib.axes.Axes`, *optional*):
            Axes to draw on; a new figure is created when not given.

    Returns:
        `matplotlib.figure.Figure`: the figure holding `ax`.
    """
    ax = ax if ax is not None else _new_axes((6, 4))
    lrs = [factor * base_lr for factor in record["lr_factors"]]
    scores, noise, diverged = record["scores"], record["noise"], record["diverged"]
    kept = [i for i in range(len(lrs)) if not diverged[i]]
    failed = [i for i in range(len(lrs)) if diverged[i]]
    if kept:
        ax.errorbar(
            [lrs[i] for i in kept],
            [scores[i] for i in kept],
            yerr=[noise[i] if math.isfinite(noise[i]) else 0.0 for i in kept],
            fmt="o",
            color="tab:blue",
            capsize=3,
            label="candidate (± paired noise)",
        )
    if failed:
        # Off the chart: a diverged score (often inf) would crush the scale of the others.
        transform = ax.get_xaxis_transform()
        ax.plot([lrs[i] for i in failed], [0.95] * len(failed), linestyle="none", marker="x", markersize=9,
                markeredgewidth=2, color="tab:red", transform=transform, label="diverged")
        for i in failed:
            ax.annotate(f"{scores[i]:.3g}", (lrs[i], 0.95), xycoords=transform, xytext=(6, -4),
                        textcoords="offset points", fontsize="small", color="tab:red")
    lr_scale = record["lr_factor"] / record["choice"]  # choice -> LR factor (the envelope in exploit, else 1)
    chosen_lr = record["lr_factor"] * base_lr
    tried = [i for i in kept if math.isclose(lrs[i], chosen_lr, rel_tol=1e-9)]
    if tried:
        ax.plot([chosen_lr], [scores[tried[0]]], linestyle="none", marker="*", markersize=18, color="tab:orange",
                markeredgecolor="black", zorder=3, label="chosen")
    else:
        ax.axvline(chosen_lr, color="tab:orange", linestyle="--", label="chosen (not tried)")
    ax.axvline(record["previous"] * lr_scale * base_lr, color="gray", linestyle=":", label="before the search")
    if math.isfinite(record["reference"]):
        ax.axhline(record["reference"], color="gray", linestyle="--", linewidth=1, label="probe score before trials")
    ax.set_xscale("log")
    ax.set_xticks(lrs, [f"{lr:.3g}" for lr in lrs])  # label the candidates, not the decades
    ax.minorticks_off()
    ax.set_xlabel("learning rate" if base_lr != 1.0 else "learning-rate factor (× initial LR)")
    ax.set_ylabel("probe loss after the trial")
    ax.set_title(f"Tuning point at update {record['step']} ({record['phase']})")
    ax.legend(loc="best", fontsize="small")
    return ax.figure
