import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # PYTHONPATH: tests/conftest.py


@pytest.mark.slow
def test_two_process_ddp_ranks_apply_the_same_lr_at_every_step(tmp_path):
    """Ranks see different data; only the reduced losses can make their decisions agree."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               os.path.join(HERE, "ddp_train.py"), str(tmp_path)]
    completed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["lrs"]) == 30
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert ranks[0]["records"] == ranks[1]["records"] and len(ranks[0]["records"]) >= 2
    assert len(set(ranks[0]["lrs"])) > 5  # the tuner did change the LR


def run_accelerate_loop(tmp_path, mode):
    """The ranks' results of `accelerate_train.py` in `mode` under a 2-process launch."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               os.path.join(HERE, "accelerate_train.py"), str(tmp_path), mode]
    completed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]


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
