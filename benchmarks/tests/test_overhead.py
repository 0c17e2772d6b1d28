"""benchmarks/overhead.py on the tiny SQuAD run of tests/test_run_squad.py: the races' time and calls."""

import json

import pytest

from benchmarks import overhead
from test_run_squad import offline_metric, tiny_run_args, tiny_squad  # noqa: F401 - fixtures


def test_measure_overhead_times_the_races(tiny_squad, tmp_path):
    from hf_lrtuner.trials import TrialRunner

    replay = TrialRunner._replay
    tuner_options = ["--lr_schedule", "lrtuner", "--lrtuner_race_horizon", "2", "--lrtuner_max_races", "1"]
    report = overhead.main(["--output", str(tmp_path / "overhead.json"), "--",
                            *tiny_run_args(tiny_squad, tmp_path / "run", *tuner_options)])
    assert json.loads((tmp_path / "overhead.json").read_text()) == report
    assert report["races"] == 1 and report["calls"]["replays"] in (1, 2)  # one race: one or two challengers
    assert report["trial_updates"] > 0 and 0 < report["trial_share_of_updates"] < 1
    assert report["calls"]["scheduler_step"] >= report["updates"] and report["calls"]["snapshots"] >= 2
    assert report["trial_seconds"] == pytest.approx(report["replay_seconds"] + report["snapshot_seconds"], abs=0.02)
    assert TrialRunner._replay is replay  # the timers are removed after the run
    with pytest.raises(SystemExit):
        overhead.main(["--", *tiny_run_args(tiny_squad, tmp_path / "linear")])  # nothing to measure without lrtuner
