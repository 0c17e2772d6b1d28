"""The same-batch parabola of benchmarks/proposal.py on quadratics, where the greedy step is known exactly."""

import math

import pytest
import torch

from benchmarks import train_loop
from benchmarks.proposal import PROBE_METHOD, step_scale, table


class Quadratic(torch.nn.Module):
    """0.5 * h * |x - batch|^2, with every coordinate at curvature h."""

    def __init__(self, h):
        super().__init__()
        self.h = h
        self.x = torch.nn.Parameter(torch.linspace(1.0, 2.0, 5, dtype=torch.float64))

    def forward(self, target):
        return 0.5 * self.h * ((self.x - target) ** 2).sum()


def run(method, lr, h=2.0, updates=1000, momentum=0.0):
    model = Quadratic(h)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    zero = torch.zeros(5, dtype=torch.float64)
    return train_loop(model, optimizer, model, lambda step: zero, updates, method, warmup=0)


def test_step_scale_minimises_the_parabola_and_is_infinite_without_curvature():
    assert step_scale(-2.0, 1.0) == 1.0  # -2 s + s^2 is lowest at s = 1
    assert step_scale(-2.0, 0.0) == math.inf
    assert step_scale(-2.0, -1.0) == math.inf


@pytest.mark.parametrize("lr", [0.05, 0.5, 2.0])
def test_on_a_quadratic_the_probe_finds_the_greedy_step_from_any_lr(lr):
    # Plain SGD on 0.5 h |x|^2: the loss along the update is lowest at the LR 1/h, so s* = 1/(h lr), whatever the lr
    # (the linear decay changes the LR by under 1% over the 10-update window).
    probe = run(f"{PROBE_METHOD}:window=0.01", lr)["records"][0]
    assert probe["window_updates"] == 10 and probe["window_start"] == 0
    assert probe["step_scale"] == pytest.approx(1 / (2.0 * lr), rel=0.01)


def test_the_probe_trains_exactly_as_linear_does():
    probed = run(f"{PROBE_METHOD}:window=0.05", 0.3, updates=200, momentum=0.9)
    linear = run("linear", 0.3, updates=200, momentum=0.9)
    assert probed["losses"] == linear["losses"]
    assert probed["lr_trace"] == linear["lr_trace"]


def test_the_table_puts_the_guesses_side_by_side_and_their_ranges_over_the_tasks():
    rows = [{"task": task, "guess": guess, "step_scale": scale / guess}
            for task, scale in (("a", 2.0), ("b", 8.0)) for guess in (0.1, 1.0, 10.0)]
    text = table(rows)
    assert "| a | 20 | 2 | 0.2 | 1 |" in text  # the estimate s* x guess is the same from every guess: spread 1
    assert "x0.1: 20-80; x1: 2-8; x10: 0.2-0.8." in text


def test_the_probe_rejects_unknown_settings():
    with pytest.raises(ValueError, match="window"):
        run(f"{PROBE_METHOD}:horizon=3", 0.1, updates=20)
