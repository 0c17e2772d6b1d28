"""Smoke tests of the tuner suite's plumbing (benchmarks/suite.py, benchmarks/, benchmarks/report.py).

Tiny runs only (tens of updates): the CSV has exactly the suite's columns, a rerun skips the rows already there, the
dev grid is extended when its best level is at an edge, and the report runs on the CSV.
"""

import csv
import dataclasses
import math
import os
import statistics
import sys

import pytest

from benchmarks import METHODS, parse_method, report, v01_available
from benchmarks.runner import DEV_SEED_OFFSET, COLUMNS, read_rows, records_path, register_task, run_suite
from benchmarks.tasks_synthetic import TASKS

EXPECTED_COLUMNS = [
    "task", "tier", "method", "guess", "lr", "seed", "split", "metric_name", "metric", "higher_is_better", "delta",
    "updates", "trial_updates", "probe_passes", "wall_s", "device",
]
GUESSES = (0.1, 1.0, 10.0)


def _tiny(name, base, updates, grid):
    return register_task(dataclasses.replace(TASKS[base], name=name, quick_updates=updates, updates=updates,
                                             lr_grid=grid))


@pytest.fixture(scope="module")
def tiny_tasks():
    return [
        _tiny("tiny_nqm", "nqm_sgd", 30, (0.08, 0.16, 0.32, 0.64)),
        _tiny("tiny_freshhead", "freshhead_adam", 20, (0.0032, 0.0064, 0.0128)),
    ]


def _silent(*args, **kwargs):
    pass


def test_method_strings():
    assert parse_method("linear") == ("linear", {})
    assert parse_method("lrtuner:race_margin=0, max_races=2,race_horizon=None") == (
        "lrtuner", {"race_margin": 0, "max_races": 2, "race_horizon": None})
    assert "linear" in METHODS and "lrtuner" in METHODS
    with pytest.raises(ValueError):
        parse_method("nosuchmethod")
    with pytest.raises(ValueError):
        parse_method("lrtuner:race_margin")


def test_columns_are_the_suites():
    assert COLUMNS == EXPECTED_COLUMNS


def test_linear_is_transformers_warmup_decay():
    out = TASKS["nqm_sgd"].run("linear", 0.1, 0, "dev", 20, "cpu")
    trace = out["lr_trace"]
    assert len(trace) == 20 and trace[0] == 0.0  # warmup round(0.1 * 20) = 2 updates from 0
    assert trace[2] == pytest.approx(0.1) and trace[-1] == pytest.approx(0.1 / 18)
    assert out["trial_updates"] == 0 and out["probe_passes"] == 0


@pytest.mark.skipif(not v01_available(), reason="commit of the first release not in this clone")
def test_lrtuner_v01_runs_the_first_release():
    import hf_lrtuner

    task = _tiny("tiny_freshhead_v01", "freshhead_adam", 40, (0.0064,))
    out = task.run("lrtuner_v01", 0.0064, 0, "test", task.quick_updates, "cpu")
    assert out["trial_updates"] > 0 and out["probe_passes"] > 0 and out["records"]
    assert math.isfinite(out["metric"]) and len(out["lr_trace"]) == 40
    assert sys.modules["hf_lrtuner_v01"].TrialRunner is not hf_lrtuner.TrialRunner
    assert parse_method("lrtuner_v01:noise_tolerance=0.5") == ("lrtuner_v01", {"noise_tolerance": 0.5})


def test_suite_writes_csv_resumes_and_reports(tiny_tasks, tmp_path):
    path = str(tmp_path / "suite.csv")
    names = [t.name for t in tiny_tasks]
    methods = ["linear", "lrtuner"]
    out = run_suite(names, methods, [0], path, quick=True, guesses=GUESSES, log=_silent)
    assert not out["errors"], out["errors"][0]["error"] if out["errors"] else ""
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == EXPECTED_COLUMNS
    rows = read_rows(path)
    for task in tiny_tasks:
        dev = [r for r in rows if r["task"] == task.name and r["split"] == "dev"]
        test = [r for r in rows if r["task"] == task.name and r["split"] == "test"]
        assert {float(r["lr"]) for r in dev} >= set(task.lr_grid)
        assert all(r["method"] == "linear" and r["guess"] == "" for r in dev)
        assert {r["seed"] for r in dev} == {str(DEV_SEED_OFFSET)} and {r["seed"] for r in test} == {"0"}
        assert {r["device"] for r in rows} == {"cpu"}
        assert len(test) == len(methods) * len(GUESSES)
        assert all(r["updates"] == str(task.quick_updates) and r["tier"] == task.tier for r in rows
                   if r["task"] == task.name)
        x1 = [r for r in test if r["guess"] == "1"]
        assert {float(r["lr"]) for r in x1} == {out["eta"][task.name]}
    assert os.path.exists(records_path(path))

    # resume: nothing new runs, nothing is appended
    logged = []
    run_suite(names, methods, [0], path, quick=True, guesses=GUESSES, log=logged.append)
    assert len(read_rows(path)) == len(rows)
    assert any("skipped" in line for line in logged)

    # report from the CSV alone
    md = str(tmp_path / "suite.md")
    page = tmp_path / "results.md"
    page.write_text("intro\n<!-- suite_report:targets -->\nold\n<!-- /suite_report:targets -->\n"
                    "<!-- suite_report:equal_compute --><!-- /suite_report:equal_compute -->\n"
                    "<!-- suite_report:ranking -->x<!-- /suite_report:ranking -->\n"
                    "<!-- suite_report:tasks --><!-- /suite_report:tasks -->\n"
                    "<!-- suite_report:metrics --><!-- /suite_report:metrics -->\n"
                    "<!-- suite_report:ablation --><!-- /suite_report:ablation -->\nend\n")
    assert report.main(["--csv", path, "--out", md, "--results_md", str(page), "--demo_csv", ""]) == 0
    filled = page.read_text()
    assert filled.startswith("intro\n") and filled.endswith("end\n") and "\nold\n" not in filled
    assert "| target | met | measured |" in filled and "linear best of k" in filled
    text = open(md).read()
    for task in tiny_tasks:
        assert task.name in text
        assert os.path.exists(str(tmp_path / f"suite_{task.name}_T{task.quick_updates}.png"))


def test_dev_grid_extends_past_an_edge(tmp_path):
    task = _tiny("tiny_nqm_edge", "nqm_sgd", 30, (0.01, 0.02))  # far below the best LR: extend upwards
    path = str(tmp_path / "edge.csv")
    out = run_suite([task.name], ["linear"], [0], path, quick=True, stage="dev", max_extensions=2, log=_silent)
    lrs = sorted({float(r["lr"]) for r in read_rows(path)})
    assert lrs == [0.01, 0.02, 0.04, 0.08]
    assert out["eta"][task.name] == 0.08


def test_regret_and_verdicts():
    rows = []
    base = dict(task="t", tier="B", metric_name="accuracy", higher_is_better="1", delta="0.5", updates="100",
                trial_updates="0", probe_passes="0", wall_s="0.1")
    for lr, m in ((0.5, 60.0), (1.0, 70.0), (2.0, 65.0)):
        rows += [dict(base, method="linear", guess="", lr=str(lr), seed=str(s), split="dev", metric=str(m))
                 for s in range(3)]
    for s, (lin, tun) in enumerate(((70.0, 69.0), (71.0, 70.5), (69.0, 68.0))):
        rows.append(dict(base, method="linear", guess="1", lr="1", seed=str(s), split="test", metric=str(lin)))
        rows.append(dict(base, method="tuner", guess="1", lr="1", seed=str(s), split="test", metric=str(tun),
                         trial_updates="30", probe_passes="30"))
    (t,) = report.analyse(rows)
    assert t["eta"] == 1.0 and t["interior"]
    cell = next(c for c in t["cells"] if c["method"] == "tuner")
    assert cell["regret"] == pytest.approx(2.5 / 3)
    assert cell["compute"] == pytest.approx(1.4)
    v = report.verdicts(t)["tuner"]
    assert v["no_harm"] is False and v["ub"] > 0.5
    # per-seed regrets 1.0, 0.5, 1.0: mean + t(0.95, df=2) x sd / sqrt(3)
    regrets = [1.0, 0.5, 1.0]
    assert v["ub"] == pytest.approx(statistics.mean(regrets) + 2.920 * statistics.stdev(regrets) / math.sqrt(3))


def _ranking_rows(task, regrets, delta=0.5):
    """Test rows of `task` whose paired regret against linear at x1 is `regrets[method][guess]` on both seeds."""
    base = dict(task=task, tier="B", metric_name="accuracy", higher_is_better="1", delta=str(delta), updates="100",
                probe_passes="0", wall_s="0.1", split="test")
    rows = []
    for method, by_guess in regrets.items():
        for guess, regret in by_guess.items():
            trial = "30" if method == "lrtuner" else "0"
            rows += [dict(base, method=method, guess=guess, lr="" if guess == "" else guess, seed=str(seed),
                          metric=str(70.0 - regret), trial_updates=trial) for seed in (0, 1)]
    return rows


def test_ranking_over_guesses_and_tasks():
    def over(low, mid, high):
        return {"0.1": low, "1": mid, "10": high}

    regrets = {  # accuracy points; / delta 0.5 in the report
        "linear": over(4, 0, 8), "lrtuner": over(1, 0, 2), "knee": over(5, 1, 9), "schedulefree": over(2, 2, 2),
        "lr_range_test": over(0.5, 0.5, 6), "greedy": over(3, 3, 3), "prodigy": {"": 1.5}, "dadaptation": {"": 2.5},
    }
    rows = _ranking_rows("full", regrets)
    rows += _ranking_rows("partial", {"linear": over(4, 0, 8), "lrtuner": over(1, 0, 2)})
    tasks = report.analyse(rows)
    table = report.regret_over_guesses(next(t for t in tasks if t["task"] == "full"))
    assert table["lrtuner"] == pytest.approx((2.0, 4.0, 1.3, 3))  # mean, worst (x delta), compute, guesses
    assert table["prodigy"] == pytest.approx((3.0, 3.0, 1.0, 1))  # LR-free: its one setting counts for every guess
    assert table["lr_range_test"][:2] == pytest.approx((14 / 3, 12.0))

    per_task, complete, overall = report.ranking(tasks)
    full, partial = sorted(per_task, key=lambda row: row["task"])
    assert (full["best_mean"], full["best_worst"], full["complete"]) == ("lrtuner", "prodigy", True)
    assert (partial["best_mean"], partial["complete"]) == ("lrtuner", False)
    assert complete == ["full"]  # only a task with every compared method is ranked overall
    ranks = {method: (v["mean_rank"], v["worst_rank"]) for method, v in overall.items()}
    assert ranks == {"lrtuner": (1, 2), "prodigy": (2, 1), "schedulefree": (3, 2), "lr_range_test": (4, 6),
                     "dadaptation": (5, 4), "greedy": (6, 5), "linear": (7, 7), "knee": (8, 8)}
    assert overall["lrtuner"]["first_mean"] == 1 and overall["lrtuner"]["first_worst"] == 0
    assert overall["lrtuner"]["compute"] == pytest.approx(1.3)


def test_linear_best_of_k_and_the_pareto_front():
    """linear given k runs: the best of k adjacent guesses around each guess, averaged over the windows holding it."""
    grid = ("0.1", "0.3", "1", "3", "10")
    regrets = {"linear": dict(zip(grid, (8, 2, 0, 4, 10))), "lrtuner": dict(zip(grid, (1, 0, 0, 1, 2))),
               "prodigy": {"": 3}, "knee": dict(zip(grid, (9, 3, 1, 5, 11)))}
    (t,) = report.analyse(_ranking_rows("t", regrets, delta=1.0))
    assert report.linear_best_of(t, 1) == pytest.approx(dict(zip(grid, (8, 2, 0, 4, 10))))
    # k=2: 0.1 -> {0.1,0.3}: 2; 0.3 -> {0.1,0.3}: 2, {0.3,1}: 0 -> 1; 1 -> 0; 3 -> {1,3}: 0, {3,10}: 4 -> 2; 10 -> 4
    assert report.linear_best_of(t, 2) == pytest.approx(dict(zip(grid, (2, 1, 0, 2, 4))))
    assert report.linear_best_of(t, 9) == pytest.approx(dict.fromkeys(grid, 0))  # k capped at the grid
    compared = report.equal_compute(t)
    assert compared["lrtuner"]["k"] == 2 and compared["lrtuner"]["compute"] == pytest.approx(1.3)
    assert (compared["lrtuner"]["linear_mean"], compared["lrtuner"]["linear_worst"]) == pytest.approx((1.8, 4))
    assert compared["linear"]["k"] == 1 and compared["linear"]["linear_worst"] == compared["linear"]["worst"]
    # prodigy (worst 3, compute 1) and lrtuner (worst 2, compute 1.3) trade off; linear and knee are dominated
    assert report.pareto(report.regret_over_guesses(t)) == ["prodigy", "lrtuner"]


def test_targets_from_hand_made_rows():
    grid = ("0.1", "0.3", "1", "3", "10")
    peers = {m: {"": 6} if m in ("prodigy", "dadaptation") else dict.fromkeys(grid, 6)
             for m in report.PEERS if m != "linear"}
    rows = _ranking_rows("a", {"linear": dict(zip(grid, (8, 2, 0, 4, 10))), "lrtuner": dict(zip(grid, (1, 0.2, 0, 3, 2))),
                               **peers}, delta=1.0)
    rows += _ranking_rows("b", {"linear": dict(zip(grid, (8, 2, 0, 4, 10))), "lrtuner": dict(zip(grid, (9, 9, 0, 9, 9))),
                                **peers}, delta=1.0)
    gpu = _ranking_rows("gpu", {"linear": dict.fromkeys(grid, 0), "lrtuner": dict.fromkeys(grid, 50)}, delta=1.0)
    rows += [dict(r, device="NVIDIA H200") for r in gpu]  # GPU rows do not decide
    tasks = report.analyse(rows)
    assert [t["task"] for t in report.deciding(tasks)] == ["a", "b"]
    demo = [{"schedule": s, "seed": str(seed), "f1": str(f1)} for seed in range(3)
            for s, f1 in (("linear", 50.0), ("lrtuner", 49.5 - seed))]
    lines = [(name.split(":")[0], met, measured) for name, met, measured in report.targets(tasks, demo_rows=demo)]
    assert lines[0] == ("No harm", True, "2 of 2 tasks")
    assert lines[1:3] == [("First against the peers", False, "1 of 2 tasks with every peer")] * 2  # worst, mean
    assert lines[3] == ("Near guesses", False, "1 of 4 cells")  # only a's x0.3 is within delta
    assert lines[4][:2] == ("Compute", False)  # 1.3x at x1 (30 trial updates of 100)
    assert lines[5] == ("The demo", False, "-1.50 F1")
