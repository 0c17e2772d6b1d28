"""Release 0.1, rebuilt from git history (`benchmarks.load_lrtuner_v01`), against this release's races on the suite's
fresh-head task."""

import pytest

from benchmarks import v01_available
from benchmarks.tasks_synthetic import TASKS


@pytest.mark.skipif(not v01_available(), reason="needs the first release's commit in the clone")
def test_the_first_release_overshoots_on_a_fresh_head_where_races_keep_the_good_lr():
    """Fresh-head transfer (a pretrained MLP encoder, a new head, Adam), 150 updates at the tuned LR: the first
    release's 2-update trials prefer a larger LR and cost accuracy; the race keeps the LR, and the run is linear's."""
    task = TASKS["freshhead_adam"]
    # split "test": the task's training draw, on which this behaviour was measured (dev trains on its own draw)
    runs = {method: task.run(method, 8e-3, 0, "test", 150, "cpu") for method in ("linear", "lrtuner", "lrtuner_v01")}
    assert max(record["choice"] for record in runs["lrtuner_v01"]["records"]) >= 2.0
    assert runs["lrtuner_v01"]["metric"] < runs["linear"]["metric"] - 3.0  # measured: 58.8 against 63.7
    assert [record["multiplier"] for record in runs["lrtuner"]["records"]] == [1.0]
    assert runs["lrtuner"]["metric"] == runs["linear"]["metric"]
