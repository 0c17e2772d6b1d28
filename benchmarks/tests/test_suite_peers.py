"""Smoke tests of the suite's peer methods (benchmarks/peers.py): each runs a few updates on tiny synthetic tasks.

The optional packages of the ``bench`` extra are skipped when absent; ``knee`` and ``greedy`` need only
hf_lrtuner and transformers (``greedy``: 5.4 or later, skipped before).
"""

import math

import pytest

from benchmarks import LR_FREE, METHODS
from benchmarks import runner
from benchmarks.peers import greedy_available
from benchmarks.tasks_synthetic import TASKS

UPDATES = 20
# method -> the optional package it needs (None: none beyond the suite's own requirements)
PEERS = {
    "knee": None, "greedy": None, "lr_range_test": "torch_lr_finder", "schedulefree": "schedulefree",
    "prodigy": "prodigyopt", "dadaptation": "dadaptation",
}
# an Adam task and an SGD-momentum task of each kind, at their tuned LRs (tasks_synthetic docstring)
TASK_LRS = {"nqm_sgd": 0.16, "nqm_adam": 0.032, "freshhead_adam": 6.4e-3, "freshhead_sgd": 0.02}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_peers_registered():
    assert set(PEERS) <= set(METHODS)
    assert {"prodigy", "dadaptation"} <= LR_FREE
    assert not {"knee", "greedy", "lr_range_test", "schedulefree"} & LR_FREE


@pytest.mark.parametrize("task", sorted(TASK_LRS))
@pytest.mark.parametrize("method", sorted(PEERS))
def test_peer_runs(method, task):
    if PEERS[method]:
        pytest.importorskip(PEERS[method])
    if method == "greedy" and not greedy_available():
        pytest.skip("GreedyLR is new in transformers 5.4")
    lr = None if method in LR_FREE else TASK_LRS[task]
    out = TASKS[task].run(method, lr, 0, "dev", UPDATES)
    assert math.isfinite(out["metric"])
    assert len(out["lr_trace"]) == UPDATES and all(math.isfinite(v) and v >= 0 for v in out["lr_trace"])
    assert out["probe_passes"] == 0
    if method == "lr_range_test":
        assert 0 < out["trial_updates"] <= 100
        suggested = out["records"][0]["suggested_lr"]
        assert lr / 100 <= suggested <= lr * 100
        assert max(out["lr_trace"]) == pytest.approx(suggested)  # linear warmup-decay peaks at the suggestion
    else:
        assert out["trial_updates"] == 0
    if method in ("prodigy", "dadaptation"):
        assert out["records"][0]["final_d"] > 0


def test_lr_range_test_resets_the_model():
    """The range test leaves neither its updates in the model nor its momentum in the optimizer (LRFinder.reset())."""
    pytest.importorskip("torch_lr_finder")
    import torch

    from benchmarks import peers
    from benchmarks.tasks_synthetic import NQM

    model = NQM()
    x0 = model.x.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.16, momentum=0.9)
    noise = torch.randn(UPDATES, model.x.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    suggested, steps, history = peers._range_test_lr(model, opt, model, lambda step: noise[step], UPDATES)
    assert 0 < steps <= peers.RANGE_TEST_ITERS and len(history["lr"]) == steps
    assert 0.16 / 100 <= suggested <= 0.16 * 100
    assert torch.equal(model.x.detach(), x0)
    assert not opt.state and opt.param_groups[0]["lr"] == 0.16


@pytest.mark.parametrize("task", ["scratch_sgd", "freshhead_adam"])
def test_lr_range_test_run_equals_linear_at_its_suggestion(task):
    """After the range test the run is linear warmup-decay at the suggested LR, to the last digit: no gradient of the
    range test's last (diverging) iteration leaks into the run's first update."""
    pytest.importorskip("torch_lr_finder")
    updates = 30
    lr = {"scratch_sgd": 0.4, "freshhead_adam": 6.4e-3}[task]
    tested = TASKS[task].run("lr_range_test", lr, 0, "dev", updates, record_losses=True)
    suggested = tested["records"][0]["suggested_lr"]
    linear = TASKS[task].run("linear", suggested, 0, "dev", updates, record_losses=True)
    assert tested["losses"] == linear["losses"]
    assert tested["metric"] == linear["metric"]


def test_schedulefree_switches_to_eval_before_evaluation(monkeypatch):
    """optimizer.train() before training, optimizer.eval() after the last update (the task evaluates at x)."""
    pytest.importorskip("schedulefree")
    import schedulefree
    import torch

    from benchmarks import build_driver, peers
    from benchmarks.tasks_synthetic import NQM

    model = NQM()
    opt = torch.optim.SGD(model.parameters(), lr=0.16, momentum=0.9)
    driver = build_driver("schedulefree", model, opt, None, UPDATES, 2)
    assert isinstance(driver.optimizer, schedulefree.SGDScheduleFree)
    # its README's 10x-50x for SGD: the guess 0.16 runs at 0.16 x sqrt(10 x 50)
    assert driver.optimizer.param_groups[0]["lr"] == pytest.approx(0.16 * math.sqrt(500))
    assert driver.optimizer.param_groups[0]["train_mode"]
    driver.finish()
    assert not driver.optimizer.param_groups[0]["train_mode"]

    finished = []
    monkeypatch.setattr(peers._ScheduleFreeDriver, "finish", lambda self: finished.append(self.optimizer))
    TASKS["nqm_adam"].run("schedulefree", 0.032, 0, "dev", UPDATES)
    assert len(finished) == 1 and isinstance(finished[0], schedulefree.AdamWScheduleFree)


def test_lr_free_jobs_have_no_guess():
    jobs = runner.test_jobs(TASKS["nqm_adam"], ["prodigy", "knee"], (0.1, 1.0), (0, 1), 0.032, UPDATES, "cpu")
    prodigy = [j for j in jobs if j.method == "prodigy"]
    assert len(prodigy) == 2 and all(j.guess == "" and j.lr is None for j in prodigy)
    assert len([j for j in jobs if j.method == "knee"]) == 4


@pytest.mark.skipif(greedy_available(), reason="this transformers has GreedyLR (5.4 or later)")
def test_greedy_before_transformers_5_4_names_the_version_it_needs():
    with pytest.raises(ValueError, match="peer 'greedy' is transformers' GreedyLR, new in transformers 5.4"):
        TASKS["nqm_sgd"].run("greedy", TASK_LRS["nqm_sgd"], 0, "dev", UPDATES)
