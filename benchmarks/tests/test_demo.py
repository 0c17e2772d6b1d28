"""benchmarks/demo.py on finished runs: it resumes from their metrics.json (running nothing), writes one CSV row per
run, the race records by seed, and the table. The runs themselves are the README's command, tested in
tests/test_run_squad.py."""

import csv
import json

import pytest

from benchmarks import demo


def finished_run(work, schedule, seed, f1, trial_updates, multiplier):
    folder = work / f"{schedule}_s{seed}"
    folder.mkdir(parents=True)
    records = [{"step": 0, "multiplier": multiplier}] if schedule == "lrtuner" else None
    metrics = {"exact_match": f1 - 10, "f1": f1, "updates": 100, "trial_updates": trial_updates,
               "final_multiplier": multiplier, "train_seconds": 1.0, "schedule": {"records": records}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_finished_runs_are_collected_not_run_again(tmp_path, capsys):
    work = tmp_path / "work"
    for seed, (linear, tuned) in enumerate([(50.0, 56.0), (48.0, 55.0)]):
        finished_run(work, "linear", seed, linear, 0, 1.0)
        finished_run(work, "lrtuner", seed, tuned, 50, 2.0 * (seed + 1))
    path, records = tmp_path / "demo.csv", tmp_path / "records.json"
    assert demo.main(["--seeds", "0", "1", "--work", str(work), "--csv", str(path), "--records", str(records)]) == 0
    rows = list(csv.DictReader(path.open()))
    assert [(r["schedule"], r["seed"], float(r["f1"])) for r in rows] == [
        ("linear", "0", 50.0), ("lrtuner", "0", 56.0), ("linear", "1", 48.0), ("lrtuner", "1", 55.0)]
    assert json.loads(records.read_text()) == {"0": [{"step": 0, "multiplier": 2.0}], "1": [{"step": 0, "multiplier": 4.0}]}
    capsys.readouterr()
    assert demo.main(["--csv", str(path), "--table"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| schedule | seed 0 | seed 1 | mean F1")
    assert table[2] == "| linear | 50.00 | 48.00 | **49.00** | 39.00 | 100 | 1, 1 |"
    assert table[3] == "| lrtuner | 56.00 | 55.00 | **55.50** | 45.50 | 100 + 50 (1.50x) | 2, 4 |"


def test_a_missing_run_fails_with_its_log(tmp_path, monkeypatch):
    monkeypatch.setattr(demo.subprocess, "call", lambda *args, **kwargs: 1)  # the run exits 1 and writes nothing
    with pytest.raises(RuntimeError, match=r"linear seed 0 failed \(exit 1\): see .*linear_s0.log"):
        demo.main(["--seeds", "0", "--schedules", "linear", "--work", str(tmp_path), "--csv", str(tmp_path / "d.csv")])
    assert not (tmp_path / "d.csv").exists()  # nothing is written when a run fails


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--jobs", "0", "--work", str(tmp_path)])
