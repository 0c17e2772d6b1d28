import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


@pytest.mark.slow
def test_two_process_ddp_ranks_apply_the_same_lr_at_every_step(tmp_path):
    """Ranks see different data; only the reduced losses can make their decisions agree."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               os.path.join(HERE, "ddp_train.py"), str(tmp_path)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["lrs"]) == 30
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    assert ranks[0]["records"] == ranks[1]["records"] and len(ranks[0]["records"]) >= 2
    assert len(set(ranks[0]["lrs"])) > 5  # the tuner did change the LR
