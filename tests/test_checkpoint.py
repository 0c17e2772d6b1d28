"""Checkpoints of a Trainer run with LRTuner: killed at any moment and resumed, the same run; damaged or mismatched
checkpoints refused with a message that says what differs; 0.2/0.3 checkpoints continued by the documented fallback."""

import json
import logging
import os
import random
import shutil

import pytest
import torch

import kill_resume
from hf_lrtuner import LRTunerConfig, LRTunerTrainer
from hf_lrtuner.checkpoint import CheckpointError, last_complete_checkpoint
from trainer_task import CountTask, needs_trainer_resume, tiny_args, tiny_bert

CONFIG = LRTunerConfig(race_horizon=10, race_margin=0.0, min_improvement=0.0)


@pytest.mark.slow  # about 15 subprocess runs of 30 updates
@needs_trainer_resume
def test_killed_at_random_moments_and_resumed_the_run_is_the_uninterrupted_one(tmp_path):
    settings = kill_resume.SETTINGS
    moments = kill_resume.reference_run(tmp_path / "reference", settings)
    result = json.loads((tmp_path / "reference" / "result.json").read_text())
    assert result["rollbacks"] == 1 and len(result["records"]) >= 3  # races before and after the roll-back
    points = kill_resume.categories(moments, result["records"])
    assert all(points.values())
    rng, killed = random.Random(0), []
    plans = [["in_race", "rollback"], ["replay", "save"], ["save", "between_races", "in_race"]]
    for index, plan in enumerate(plans):
        run = tmp_path / f"schedule{index}"
        killed += kill_resume.kill_and_resume(run, points, settings, len(plan), rng, plan=plan)
        assert kill_resume.differences(tmp_path / "reference", run) == []
    assert {category for category, _, _ in killed} == set(points)
    assert any(start != "start" for _, _, start in killed)  # some attempts resumed from a checkpoint and died again


def train(output_dir, resume=None, config=CONFIG, **args):
    settings = dict(max_steps=40, learning_rate=1e-4, seed=7, save_strategy="steps", save_steps=5, logging_steps=100)
    trainer = LRTunerTrainer(model=tiny_bert(), args=tiny_args(output_dir, **{**settings, **args}),
                             train_dataset=CountTask(), lrtuner_config=config)
    trainer.train(resume_from_checkpoint=resume)
    return trainer.lr_scheduler.tuner


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """An uninterrupted run with a checkpoint every 5 updates; checkpoint-15 falls inside the race over 10-20."""
    directory = tmp_path_factory.mktemp("saved")
    tuner = train(directory)
    assert [(r["step"], r["end_step"]) for r in tuner.records][:2] == [(0, 10), (10, 20)]
    return directory, tuner


@pytest.fixture
def checkpoint(saved_run, tmp_path):
    """A copy of checkpoint-15 (inside a race) to damage."""
    return shutil.copytree(saved_run[0] / "checkpoint-15", tmp_path / "checkpoint-15")


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def change_a_decision(path):
    """A scheduler.pt that still loads, with one number changed (bit rot, or a file of another run)."""
    state = torch.load(path, weights_only=True)
    state["tuner"]["records"][0]["scores"][0] += 1e-6
    torch.save(state, path)


@needs_trainer_resume
@pytest.mark.parametrize("damage,message", [
    (lambda c: truncate(c / "lrtuner_rank0_of_1.pt"), r"lrtuner_rank0_of_1.pt is corrupted: \d+ bytes with SHA-256"),
    (lambda c: flip_a_byte(c / "lrtuner_rank0_of_1.pt"), r"lrtuner_rank0_of_1.pt is corrupted"),
    (lambda c: os.remove(c / "lrtuner_rank0_of_1.json"), r"checkpoint-15 holds no LRTuner race state "
                                                         r"\(lrtuner_rank0_of_1.pt\): the run was stopped while saving"),
    (lambda c: [os.remove(c / f"lrtuner_rank0_of_1.{ext}") for ext in ("pt", "json")],
     r"checkpoint-15 holds no LRTuner race state .*last_complete_checkpoint"),
    (lambda c: truncate(c / "scheduler.pt"), r"scheduler.pt \(the LRTuner's state\) cannot be read: it is truncated or "
                                             r"corrupted"),
    (lambda c: change_a_decision(c / "scheduler.pt"), r"the LRTuner state in scheduler.pt does not match the race state "
                                                      r"saved with it"),
], ids=["truncated", "corrupted", "no_manifest", "no_race_state", "truncated_scheduler", "altered_scheduler"])
def test_a_damaged_checkpoint_is_refused_with_what_is_wrong(checkpoint, tmp_path, damage, message):
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        train(tmp_path / "resumed", resume=str(checkpoint))


@needs_trainer_resume
def test_a_checkpoint_of_another_config_or_budget_is_refused_naming_what_differs(checkpoint, tmp_path):
    other = LRTunerConfig(race_horizon=5, race_margin=0.0, min_improvement=0.0)
    with pytest.raises(ValueError, match=r"another LRTunerConfig: race_horizon=10 \(checkpoint\) vs 5 \(this scheduler\)"):
        train(tmp_path / "resumed", resume=str(checkpoint), config=other)
    with pytest.raises(ValueError, match=r"budget of 40 updates \(num_training_steps\), this run's is 50.*max_steps=40"):
        train(tmp_path / "resumed", resume=str(checkpoint), max_steps=50)


@needs_trainer_resume
def test_a_checkpoint_of_0_3_inside_a_race_abandons_it_with_a_warning(saved_run, checkpoint, tmp_path, caplog):
    """hf_lrtuner 0.2 and 0.3 wrote the scheduler's state without "format", and no race state beside it."""
    for ext in ("pt", "json"):
        os.remove(checkpoint / f"lrtuner_rank0_of_1.{ext}")
    state = torch.load(checkpoint / "scheduler.pt", weights_only=True)
    del state["format"]
    torch.save(state, checkpoint / "scheduler.pt")
    with caplog.at_level(logging.WARNING, logger="hf_lrtuner.callback"):
        tuner = train(tmp_path / "resumed", resume=str(checkpoint))
    assert "saved by hf_lrtuner 0.2/0.3, without the race state" in caplog.text
    assert "abandons the race it was in (started at update 10); races may start again from update 15" in caplog.text
    uninterrupted = saved_run[1]
    # the race over 10-20 is lost; one from 15 would end after race_until (60% of 40 updates): none is run
    assert tuner.records == uninterrupted.records[:1] and len(uninterrupted.records) == 2
    assert tuner.multiplier == uninterrupted.records[0]["multiplier"] != uninterrupted.multiplier


def test_last_complete_checkpoint_skips_folders_whose_writing_was_cut_short(saved_run, tmp_path):
    for step in (5, 10, 15):
        shutil.copytree(saved_run[0] / f"checkpoint-{step}", tmp_path / f"checkpoint-{step}")
    truncate(tmp_path / "checkpoint-15" / "trainer_state.json")  # killed while Trainer wrote it
    (tmp_path / "checkpoint-20").mkdir()  # killed before Trainer wrote anything
    (tmp_path / "checkpoint-10" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-5")
    assert last_complete_checkpoint(str(tmp_path / "checkpoint-20")) is None
