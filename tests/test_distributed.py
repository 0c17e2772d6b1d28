import json
import os
import subprocess
import sys

import accelerate
import pytest
import torch
from packaging.version import Version

from hf_lrtuner.checkpoint import last_complete_checkpoint, load_checkpoint_file
from trainer_task import needs_trainer_resume

HERE = os.path.dirname(__file__)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # PYTHONPATH: tests/conftest.py


# FSDP2 is torch's fully_shard (public from torch 2.6), which Trainer reaches through accelerate 1.6 and later.
needs_fsdp2 = pytest.mark.skipif(
    torch.__version__ < "2.6" or Version(accelerate.__version__) < Version("1.6"),
    reason="FSDP2 needs torch 2.6 and accelerate 1.6",
)


def launch(script, *args, env=None, check=True, processes=2):
    """`script args` under a 2-process launch on CPU (gloo); returns each rank's `rank<k>.json` (args[0] is the
    output directory), or with `check=False` the completed process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               os.path.join(HERE, script), *map(str, args)]
    completed = subprocess.run(command, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=300)
    if not check:
        return completed
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads((args[0] / f"rank{k}.json").read_text()) for k in (0, 1)]


def assert_same_records(records, expected):
    """Equal decisions, step for step; scores equal to 1e-6 relative, differences to 1e-6 absolute."""
    assert len(records) == len(expected)
    for record, reference in zip(records, expected):
        approximate = ("scores", "differences")
        assert {k: v for k, v in record.items() if k not in approximate} == \
            {k: v for k, v in reference.items() if k not in approximate}
        assert record["scores"] == pytest.approx(reference["scores"], rel=1e-6, nan_ok=True)
        for difference, expected_difference in zip(record["differences"], reference["differences"]):
            assert difference == pytest.approx(expected_difference, abs=1e-6, nan_ok=True)  # float32 losses near 1


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ddp")
    return directory, launch("ddp_train.py", directory, "ddp")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    """LRTunerTrainer under Trainer's FSDP2 (accelerate patched to allow FSDP on CPU, in ddp_train.py only), with
    snapshot_device="cpu"."""
    directory = tmp_path_factory.mktemp("fsdp2")
    return directory, launch("ddp_train.py", directory, "fsdp2")


@pytest.mark.slow
def test_two_process_ddp_ranks_apply_the_same_lr_at_every_step(ddp_run):
    """Ranks see different data; only the reduced losses can make their decisions agree."""
    ranks = ddp_run[1]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["lrs"]) == 30
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert ranks[0]["records"] == ranks[1]["records"] and len(ranks[0]["records"]) >= 2
    assert len(set(ranks[0]["lrs"])) > 5  # the tuner did change the LR


@pytest.mark.slow
@needs_fsdp2
def test_two_process_fsdp2_trainer_run_tunes_as_ddp_does_and_resumes_from_its_checkpoint(tmp_path, ddp_run, fsdp_run):
    directory, ranks = fsdp_run
    ddp_ranks = ddp_run[1]
    assert [(r["fsdp2"], r["sharded"]) for r in ranks] == [(True, True)] * 2  # really FSDP2, not a DDP fallback
    assert ranks[0]["lrs"] == ranks[1]["lrs"] and ranks[0]["records"] == ranks[1]["records"]
    # the same decisions as DDP from the same data: sharding changes where the state lives, not the run. The losses
    # may differ in their 8th digit (at x8 of the initial LR, sharded and replicated reductions part in the last bits)
    assert ranks[0]["lrs"] == ddp_ranks[0]["lrs"]
    assert_same_records(ranks[0]["records"], ddp_ranks[0]["records"])
    assert [r["step"] for r in ranks[0]["records"]] == [0, 5, 10]
    # checkpoint 12 (inside the race over 10-15) holds each rank's shards; the resumed run decides as the full one
    resumed = launch("ddp_train.py", tmp_path / "resumed", "fsdp2", directory / "checkpoint-12")
    assert resumed[0]["lrs"] == resumed[1]["lrs"] == ranks[0]["lrs"][12:]
    assert resumed[0]["records"] == ranks[0]["records"]


@pytest.mark.slow
@needs_trainer_resume
@pytest.mark.parametrize("mode", ["ddp", pytest.param("fsdp2", marks=needs_fsdp2)])
def test_one_process_killed_inside_a_race_and_both_resumed_is_the_uninterrupted_run(tmp_path, mode, request):
    full_dir, full = request.getfixturevalue(f"{mode[:4]}_run")
    killed = launch("ddp_train.py", tmp_path, mode, env={"LRTUNER_KILL": "1:14"}, check=False)
    assert killed.returncode != 0 and not (tmp_path / "rank0.json").exists()  # process 1 died; the launch stopped
    checkpoint = last_complete_checkpoint(str(tmp_path))
    assert checkpoint == str(tmp_path / "checkpoint-12")  # inside the race over 10-15
    snapshots = [load_checkpoint_file(f"{checkpoint}/lrtuner_rank{k}_of_2.pt")[0]["snapshot"] for k in (0, 1)]
    if mode == "fsdp2":  # each process saved its own shards of the race's snapshot
        local = torch.load(full_dir / "weights0.pt", weights_only=True)
        assert [t.shape for t in snapshots[0]["tensors"][: len(local)]] == [t.shape for t in local]
        assert not all(torch.equal(a, b) for a, b in zip(snapshots[0]["tensors"], snapshots[1]["tensors"]))
    else:  # process 0 saved the snapshot both hold
        assert snapshots[0] is not None and snapshots[1] is None
    resumed = launch("ddp_train.py", tmp_path / "resumed", mode, checkpoint)
    for rank in (0, 1):
        assert resumed[rank]["lrs"] == full[rank]["lrs"][12:]
        assert resumed[rank]["records"] == full[rank]["records"]
        assert resumed[rank]["trial_updates"] == full[rank]["trial_updates"]
        weights = [torch.load(d / f"weights{rank}.pt", weights_only=True) for d in (full_dir, tmp_path / "resumed")]
        assert all(torch.equal(a, b) for a, b in zip(*weights))
    if mode == "ddp":  # the per-process race state cannot be split over another number of processes
        alone = launch("ddp_train.py", tmp_path / "alone", "ddp", checkpoint, check=False, processes=1)
        assert "checkpoint-12 was saved by 2 processes, this run has 1" in alone.stderr


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
