import json
import os
import subprocess
import sys

import accelerate
import pytest
import torch
from packaging.version import Version

HERE = os.path.dirname(__file__)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # PYTHONPATH: tests/conftest.py


# FSDP2 is torch's fully_shard (public from torch 2.6), which Trainer reaches through accelerate 1.6 and later.
needs_fsdp2 = pytest.mark.skipif(
    torch.__version__ < "2.6" or Version(accelerate.__version__) < Version("1.6"),
    reason="FSDP2 needs torch 2.6 and accelerate 1.6",
)


def launch(script, *args):
    """`script args` under a 2-process launch on CPU (gloo); returns each rank's `rank<k>.json` (args[0] is the
    output directory)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               os.path.join(HERE, script), *map(str, args)]
    completed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads((args[0] / f"rank{k}.json").read_text()) for k in (0, 1)]


@pytest.fixture(scope="module")
def ddp_ranks(tmp_path_factory):
    return launch("ddp_train.py", tmp_path_factory.mktemp("ddp"), "ddp")


@pytest.mark.slow
def test_two_process_ddp_ranks_apply_the_same_lr_at_every_step(ddp_ranks):
    """Ranks see different data; only the reduced losses can make their decisions agree."""
    ranks = ddp_ranks
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["lrs"]) == 30
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert ranks[0]["records"] == ranks[1]["records"] and len(ranks[0]["records"]) >= 2
    assert len(set(ranks[0]["lrs"])) > 5  # the tuner did change the LR


@pytest.mark.slow
@needs_fsdp2
def test_two_process_fsdp2_trainer_run_tunes_as_ddp_does_and_resumes_from_its_checkpoint(tmp_path, ddp_ranks):
    """LRTunerTrainer under Trainer's FSDP2 (accelerate patched to allow FSDP on CPU, in ddp_train.py only), with
    snapshot_device="cpu"."""
    ranks = launch("ddp_train.py", tmp_path / "full", "fsdp2")
    assert [(r["fsdp2"], r["sharded"]) for r in ranks] == [(True, True)] * 2  # really FSDP2, not a DDP fallback
    assert ranks[0]["lrs"] == ranks[1]["lrs"] and ranks[0]["records"] == ranks[1]["records"]
    # the same decisions as DDP from the same data: sharding changes where the state lives, not the run
    assert ranks[0]["lrs"] == ddp_ranks[0]["lrs"] and ranks[0]["records"] == ddp_ranks[0]["records"]
    assert [r["step"] for r in ranks[0]["records"]] == [0, 5, 10]
    # checkpoint 10 (a race's start) holds each rank's shards; the resumed run races and decides as the full one
    resumed = launch("ddp_train.py", tmp_path / "resumed", "fsdp2", tmp_path / "full" / "checkpoint-10")
    assert resumed[0]["lrs"] == resumed[1]["lrs"] == ranks[0]["lrs"][10:]
    assert resumed[0]["records"] == ranks[0]["records"]


@pytest.mark.slow
@needs_fsdp2
def test_two_process_fsdp2_loop_restores_sharded_state_bit_identically_and_agrees_on_lrs(tmp_path):
    ranks = launch("fsdp_train.py", tmp_path)
    for rank in ranks:
        assert rank["world_size"] == 2 and rank["sharded"]
        # unbeatable races: after their trials, the sharded parameters and AdamW state are the reference run's
        assert rank["unbeatable_trial_updates"] > 0 and rank["unbeatable_equals_reference"]
        # the snapshot holds this rank's shards (half of each parameter) and rebuilds a DTensor the optimizer dropped
        assert rank["local_copies"] and rank["rebuilt_dtensor"] and rank["restored"]
    assert ranks[0]["nbytes"] == ranks[1]["nbytes"] > 0
    assert ranks[0]["lrs"] == ranks[1]["lrs"] and ranks[0]["records"] == ranks[1]["records"]
    assert len(ranks[0]["records"]) >= 2 and len(set(ranks[0]["lrs"])) > 5  # races ran and moved the LR


def run_accelerate_loop(tmp_path, mode):
    """The ranks' results of `accelerate_train.py` in `mode` under a 2-process launch."""
    return launch("accelerate_train.py", tmp_path, mode)


@pytest.mark.slow
def test_a_scheduler_prepared_by_accelerate_is_refused_where_it_would_step_once_per_process(tmp_path):
    for rank in run_accelerate_loop(tmp_path, "prepared"):
        assert rank["world_size"] == 2
        assert rank["error"].startswith("ValueError: accelerator.prepare wrapped the LRTunerScheduler")
        assert "once per process (2 times) per update" in rank["error"]
        assert "step_scheduler_with_optimizer=False" in rank["error"]


@pytest.mark.slow
def test_a_loop_that_steps_accelerates_wrapper_is_stopped_at_its_first_update(tmp_path):
    for rank in run_accelerate_loop(tmp_path, "stepped_wrapper"):
        assert rank["error"].startswith("RuntimeError: TrialRunner.after_update expects one scheduler.step()")
        assert "moved from step 0 to 2" in rank["error"]


@pytest.mark.slow
def test_a_wrapper_that_steps_once_per_update_tunes_identically_on_every_process(tmp_path):
    ranks = run_accelerate_loop(tmp_path, "once")
    assert [r["last_epoch"] for r in ranks] == [40, 40]  # one tuner step per update, on every process
    assert ranks[0]["lrs"] == ranks[1]["lrs"] and ranks[0]["records"] == ranks[1]["records"]
    # from a low LR, the races raised it
    assert ranks[0]["records"] and max(r["multiplier"] for r in ranks[0]["records"]) > 1.0
