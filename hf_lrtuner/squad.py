"""SQuAD v1.1 extractive question answering with the Hugging Face Trainer.

Reads the official nested SQuAD v1.1 JSON into the `load_dataset("squad")` schema, splits it by article, turns
examples into features like the official `run_qa.py` example (without padding, so batches can be padded
dynamically), turns logits back into answer texts and provides a `Trainer` whose `evaluate()` reports exact match
and F1. The same code runs with `load_dataset("squad")` when the Hub is reachable.
"""

import collections
import gzip
import json
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value
from datasets import Sequence as SequenceFeature
from torch.utils.data import SequentialSampler
from transformers import PreTrainedTokenizerBase, Trainer
from transformers.trainer_utils import has_length, speed_metrics
from transformers.utils import logging

from .squad_metrics import squad_metrics


logger = logging.get_logger(__name__)

SQUAD_FEATURES = Features(
    {
        "id": Value("string"),
        "title": Value("string"),
        "context": Value("string"),
        "question": Value("string"),
        "answers": SequenceFeature({"text": Value("string"), "answer_start": Value("int32")}),
    }
)
"""The columns of `load_dataset("squad")`, which `load_squad_json` reproduces."""

_SQUAD_SHAPE = (
    '{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ..., "question": ..., '
    '"answers": [{"text": ..., "answer_start": ...}]}]}]}]}'
)


class SquadFormatError(ValueError):
    """Raised when a file or record is not valid SQuAD v1.1; the message names the file, the record and the fix."""


def read_squad_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official SQuAD v1.1 JSON file (nested format) without flattening it.

    Args:
        path (`str` or `os.PathLike`): A `.json` file, or a gzip-compressed `.json.gz` file.

    Returns:
        `dict`: The parsed JSON, with a `"data"` list of articles.

    Raises:
        `FileNotFoundError`: The file does not exist.
        `SquadFormatError`: The file cannot be decompressed or decoded, is not valid JSON (the message gives line and
            column) or has no `"data"` list of articles.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SQuAD file {path} does not exist. Pass the path of an official SQuAD v1.1 JSON file (.json or .json.gz),"
            " for example data/squad_offline/train.json.gz."
        )
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise SquadFormatError(
            f"Cannot read {path}: {error}. Files ending in .gz must be gzip-compressed and all files UTF-8 encoded."
        ) from error
    try:
        squad = json.loads(text)
    except json.JSONDecodeError as error:
        raise SquadFormatError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. Repair the file or "
            "download the official SQuAD v1.1 JSON again."
        ) from error
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise SquadFormatError(
            f'{path} has no top-level "data" list of articles. Expected the official nested SQuAD v1.1 format '
            f"{_SQUAD_SHAPE}; flat one-record-per-question files must be converted to it."
        )
    return squad


def _field(record: Any, key: str, expected_type: type, where: str, source: str) -> Any:
    """Return `record[key]`; raise a `SquadFormatError` saying where and how to fix it if missing or mistyped."""
    if not isinstance(record, dict) or key not in record:
        raise SquadFormatError(
            f"{source}: {where} has no {key!r} key. Official SQuAD v1.1 records look like {_SQUAD_SHAPE}; add the key "
            "or convert the file to this format."
        )
    value = record[key]
    # bool is an int subclass, but `"answer_start": true` is certainly a mistake.
    if not isinstance(value, expected_type) or isinstance(value, bool):
        raise SquadFormatError(
            f"{source}: {where} has {key!r} of type {type(value).__name__}, expected {expected_type.__name__}. "
            f"Fix the record to follow {_SQUAD_SHAPE}."
        )
    return value


def squad_json_to_dataset(
    squad: Mapping[str, Any], require_answers: bool = True, source: str = "SQuAD data"
) -> Dataset:
    """Flatten and validate nested SQuAD v1.1 data into one row per question, as `load_dataset("squad")` does.

    Args:
        squad (`Mapping[str, Any]`): The parsed official JSON, `{"data": [{"title", "paragraphs": [...]}]}`.
        require_answers (`bool`, *optional*, defaults to `True`): Reject questions without answers. Training and
            scoring need at least one answer per question; only prediction-only data can do without.
        source (`str`, *optional*, defaults to `"SQuAD data"`): Name of the data (usually its path), used in errors.

    Returns:
        `datasets.Dataset` with columns `id`, `title`, `context`, `question` and `answers`
        (`{"text": [...], "answer_start": [...]}`), features `SQUAD_FEATURES`.

    Raises:
        `SquadFormatError`: A key is missing or mistyped, a question id repeats, a question has no answer while
            `require_answers` is set, or an `answer_start` does not point at its answer text in the context.
    """
    columns = {name: [] for name in SQUAD_FEATURES}
    seen_ids = {}
    for article_index, article in enumerate(_field(squad, "data", list, "the top level", source)):
        title = _field(article, "title", str, f"article #{article_index}", source)
        where_article = f"article {title!r}"
        for paragraph_index, paragraph in enumerate(_field(article, "paragraphs", list, where_article, source)):
            where_paragraph = f"paragraph #{paragraph_index} of {where_article}"
            context = _field(paragraph, "context", str, where_paragraph, source)
            for qa_index, qa in enumerate(_field(paragraph, "qas", list, where_paragraph, source)):
                question_id = _field(qa, "id", str, f"question #{qa_index} of {where_paragraph}", source)
                where = f"question {question_id!r} ({where_article})"
                if question_id in seen_ids:
                    raise SquadFormatError(
                        f"{source}: {where} repeats the id of a question in article {seen_ids[question_id]!r}. "
                        "Question ids must be unique because predictions are keyed by id; rename one of them."
                    )
                seen_ids[question_id] = title
                question = _field(qa, "question", str, where, source)
                answers = _field(qa, "answers", list, where, source)
                if require_answers and not answers:
                    raise SquadFormatError(
                        f"{source}: {where} has no answers. SQuAD v1.1 training and scoring need at least one answer "
                        "per question (unanswerable SQuAD v2 questions are not supported); add an answer or remove "
                        "the question."
                    )
                texts, starts = [], []
                for answer_index, answer in enumerate(answers):
                    where_answer = f"answer #{answer_index} of {where}"
                    text = _field(answer, "text", str, where_answer, source)
                    start = _field(answer, "answer_start", int, where_answer, source)
                    found = context[start : start + len(text)] if start >= 0 else ""
                    if found != text:
                        raise SquadFormatError(
                            f"{source}: {where_answer}: answer_start={start} does not point at the answer {text!r}; "
                            f"the context there reads {found!r}. answer_start must be the 0-based character offset "
                            f"of the answer in the context (here it occurs at {context.find(text)}; -1 means nowhere)."
                        )
                    texts.append(text)
                    starts.append(start)
                for name, value in (
                    ("id", question_id),
                    ("title", title),
                    ("context", context),
                    ("question", question),
                ):
                    columns[name].append(value)
                columns["answers"].append({"text": texts, "answer_start": starts})
    return Dataset.from_dict(columns, features=SQUAD_FEATURES)


def load_squad_json(path: str | os.PathLike, require_answers: bool = True) -> Dataset:
    """Load an official nested SQuAD v1.1 JSON file (`.json` or `.json.gz`) with the `load_dataset("squad")` schema.

    Args:
        path (`str` or `os.PathLike`): Path of the file, e.g. `dev-v1.1.json` or `data/squad_offline/train.json.gz`.
        require_answers (`bool`, *optional*, defaults to `True`): Reject questions without answers (see
            `squad_json_to_dataset`).

    Returns:
        `datasets.Dataset` with one row per question: `id`, `title`, `context`, `question`, `answers`.

    Raises:
        `FileNotFoundError`: The file does not exist.
        `SquadFormatError`: The file is not valid SQuAD v1.1; the message names the file, the record and the fix.
    """
    return squad_json_to_dataset(read_squad_json(path), require_answers=require_answers, source=os.fspath(path))


def split_by_article(
    squad: Mapping[str, Any],
    eval_fraction: float | None = None,
    n_eval_articles: int | None = None,
    seed: int = 42,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split nested SQuAD data into a training and an evaluation part with no article in both.

    Questions about the same article share a context, so splitting by question would leak evaluation contexts into
    training. The evaluation articles are drawn with `random.Random(seed)`; both parts keep the original article order.

    Args:
        squad (`Mapping[str, Any]`): Parsed official SQuAD JSON (`{"data": [...], "version": ...}`).
        eval_fraction (`float`, *optional*): Fraction of the articles to hold out, rounded to a whole number.
        n_eval_articles (`int`, *optional*): Number of articles to hold out. Pass exactly one of the two.
        seed (`int`, *optional*, defaults to 42): Seed of the draw; the same seed gives the same split.

    Returns:
        `tuple[dict, dict]`: `(train, eval)`, both in the nested format and with the other top-level keys (such as
        `"version"`) copied.
    """
    if (eval_fraction is None) == (n_eval_articles is None):
        raise ValueError("Pass exactly one of eval_fraction and n_eval_articles to split_by_article.")
    articles = squad["data"]
    if eval_fraction is not None:
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}.")
        n_eval_articles = round(eval_fraction * len(articles))
    if not 1 <= n_eval_articles < len(articles):
        raise ValueError(
            f"Cannot hold out {n_eval_articles} of {len(articles)} articles: both parts need at least one article."
        )
    eval_indices = set(random.Random(seed).sample(range(len(articles)), n_eval_articles))
    header = {key: value for key, value in squad.items() if key != "data"}
    train = {**header, "data": [article for i, article in enumerate(articles) if i not in eval_indices]}
    held_out = {**header, "data": [article for i, article in enumerate(articles) if i in eval_indices]}
    return train, held_out


def _tokenize_questions_and_contexts(
    examples: Mapping[str, Sequence], tokenizer: PreTrainedTokenizerBase, max_seq_length: int, doc_stride: int
):
    """Tokenize question/context pairs into overlapping windows, after checking that the context has room."""
    if not 0 <= doc_stride < max_seq_length:
        raise ValueError(
            f"doc_stride ({doc_stride}) must be at least 0 and smaller than max_seq_length ({max_seq_length})."
        )
    # Some questions start with whitespace, which wastes room in the window (the official run_qa.py does the same).
    questions = [question.lstrip() for question in examples["question"]]
    if not questions:
        return None
    question_lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    longest = int(np.argmax(question_lengths))
    num_special_tokens = tokenizer.num_special_tokens_to_add(pair=True)
    context_room = max_seq_length - question_lengths[longest] - num_special_tokens
    # Each window must hold more context tokens than the stride it overlaps by, or the tokenizer panics.
    if context_room <= doc_stride:
        raise ValueError(
            f"Question {examples['id'][longest]!r} has {question_lengths[longest]} tokens, so with "
            f"max_seq_length={max_seq_length} and {num_special_tokens} special tokens only {max(context_room, 0)} "
            f"context tokens fit in a feature, but more than doc_stride={doc_stride} are needed. Increase "
            "max_seq_length (--max_seq_length) or lower doc_stride (--doc_stride)."
        )
    pad_on_right = tokenizer.padding_side == "right"
    tokenized = tokenizer(
        questions if pad_on_right else examples["context"],
        examples["context"] if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    return tokenized


def prepare_train_features(
    examples: Mapping[str, Sequence],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, list]:
    """Tokenize a batch of SQuAD examples into training features, as the official `run_qa.py` does.

    Long contexts are split into several overlapping features (`doc_stride` tokens overlap). Each feature is labelled
    with the token positions of the first answer, or with the position of the CLS token when the answer is not
    (entirely) inside that feature's window. Features are not padded; pad per batch with `DataCollatorWithPadding`.
    Use with `Dataset.map(..., batched=True, remove_columns=...)` or call `build_train_features`.

    Args:
        examples (`Mapping[str, Sequence]`): A batch with the columns `id`, `question`, `context` and `answers`.
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer (offset mappings are needed).
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens, question included.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between consecutive windows of a context.

    Returns:
        `dict[str, list]`: The tokenizer outputs (`input_ids`, `attention_mask`, ...) plus `start_positions` and
        `end_positions`, one entry per feature.

    Raises:
        `ValueError`: A question is too long for `max_seq_length` to leave more than `doc_stride` context tokens.
    """
    tokenized = _tokenize_questions_and_contexts(examples, tokenizer, max_seq_length, doc_stride)
    if tokenized is None:
        return {"input_ids": [], "attention_mask": [], "start_positions": [], "end_positions": []}
    context_index = 1 if tokenizer.padding_side == "right" else 0
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"] = []
    tokenized["end_positions"] = []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = tokenized.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        start_position = end_position = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start = sequence_ids.index(context_index)
            token_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_index)
            if offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char:
                # Move inwards from both ends of the context to the tokens that hold the answer's first/last char.
                while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                    token_start += 1
                while offsets[token_end][1] >= end_char:
                    token_end -= 1
                start_position, end_position = token_start - 1, token_end + 1
        tokenized["start_positions"].append(start_position)
        tokenized["end_positions"].append(end_position)
    return dict(tokenized)


def prepare_validation_features(
    examples: Mapping[str, Sequence],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, list]:
    """Tokenize a batch of SQuAD examples into evaluation features, as the official `run_qa.py` does.

    Each feature keeps the id of its example (`example_id`) and an `offset_mapping` in which every token outside the
    context (question, special tokens) is `None`, so post-processing can only pick spans of the context. Features are
    not padded. Use with `Dataset.map(..., batched=True, remove_columns=...)` or call `build_validation_features`.

    Args:
        examples (`Mapping[str, Sequence]`): A batch with the columns `id`, `question` and `context`.
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer (offset mappings are needed).
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens, question included.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between consecutive windows of a context.

    Returns:
        `dict[str, list]`: The tokenizer outputs plus `example_id` and `offset_mapping`, one entry per feature.

    Raises:
        `ValueError`: A question is too long for `max_seq_length` to leave more than `doc_stride` context tokens.
    """
    tokenized = _tokenize_questions_and_contexts(examples, tokenizer, max_seq_length, doc_stride)
    if tokenized is None:
        return {"input_ids": [], "attention_mask": [], "example_id": [], "offset_mapping": []}
    context_index = 1 if tokenizer.padding_side == "right" else 0
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    tokenized["example_id"] = [examples["id"][sample_index] for sample_index in sample_mapping]
    tokenized["offset_mapping"] = [
        [
            offset if sequence_id == context_index else None
            for offset, sequence_id in zip(offsets, tokenized.sequence_ids(i))
        ]
        for i, offsets in enumerate(tokenized["offset_mapping"])
    ]
    return dict(tokenized)


def _build_features(prepare_fn, examples: Dataset, tokenizer, max_seq_length: int, doc_stride: int, purpose: str):
    features = examples.map(
        prepare_fn,
        batched=True,
        remove_columns=examples.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_seq_length": max_seq_length, "doc_stride": doc_stride},
        desc=f"Tokenizing {purpose} examples",
    )
    if len(features) == 0:
        raise ValueError(
            f"The {purpose} data gave no features because it has no questions ({len(examples)} examples). Check the "
            f"{purpose} file and the --max_{'train' if purpose == 'training' else 'eval'}_examples setting."
        )
    return features


def build_train_features(
    examples: Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_length: int = 384, doc_stride: int = 128
) -> Dataset:
    """Map `prepare_train_features` over a SQuAD dataset and check that it produced features.

    Args:
        examples (`datasets.Dataset`): SQuAD examples (`load_squad_json` or `load_dataset("squad")` schema).
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer.
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between windows of a long context.

    Returns:
        `datasets.Dataset` of unpadded training features with `start_positions` and `end_positions`.

    Raises:
        `ValueError`: No features (no examples), or a question too long for `max_seq_length`.
    """
    return _build_features(prepare_train_features, examples, tokenizer, max_seq_length, doc_stride, "training")


def build_validation_features(
    examples: Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_length: int = 384, doc_stride: int = 128
) -> Dataset:
    """Map `prepare_validation_features` over a SQuAD dataset and check that it produced features.

    Args:
        examples (`datasets.Dataset`): SQuAD examples (`load_squad_json` or `load_dataset("squad")` schema).
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer.
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between windows of a long context.

    Returns:
        `datasets.Dataset` of unpadded evaluation features with `example_id` and `offset_mapping`.

    Raises:
        `ValueError`: No features (no examples), or a question too long for `max_seq_length`.
    """
    return _build_features(prepare_validation_features, examples, tokenizer, max_seq_length, doc_stride, "evaluation")


def postprocess_qa_predictions(
    examples: Dataset | Sequence[Mapping[str, Any]],
    features: Dataset | Sequence[Mapping[str, Any]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Turn start/end logits of evaluation features into one answer text per example (SQuAD v1.1, always answers).

    For every feature of an example, the `n_best_size` highest start and end logits are combined; spans that end
    before they start, are longer than `max_answer_length` tokens or touch a token outside the context (question,
    special or padding tokens) are skipped. The span with the highest start + end logit over all features of the
    example wins; an example without any valid span gets the empty answer.

    Args:
        examples (`datasets.Dataset` or sequence of dicts): The examples, with `id` and `context`.
        features (`datasets.Dataset` or sequence of dicts): Their features from `prepare_validation_features`, with
            `example_id` and `offset_mapping`, in the same order as the logits.
        start_logits (`np.ndarray`): Start logits, shape `(num_features, seq_len)`; rows may be padded (e.g. with
            -100) beyond a feature's length.
        end_logits (`np.ndarray`): End logits, same shape.
        n_best_size (`int`, *optional*, defaults to 20): Number of start and of end candidates per feature.
        max_answer_length (`int`, *optional*, defaults to 30): Longest answer in tokens.

    Returns:
        `dict[str, str]`: Example id -> predicted answer text, in the order of `examples`.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    if not len(features) == len(start_logits) == len(end_logits):
        raise ValueError(
            f"Got {len(features)} features but {len(start_logits)} start and {len(end_logits)} end logit rows; pass "
            "the logits of exactly these features, in the same order."
        )
    example_ids = list(examples["id"]) if isinstance(examples, Dataset) else [example["id"] for example in examples]
    contexts = (
        list(examples["context"]) if isinstance(examples, Dataset) else [example["context"] for example in examples]
    )
    if isinstance(features, Dataset):
        feature_example_ids, all_offsets = list(features["example_id"]), list(features["offset_mapping"])
    else:
        feature_example_ids = [feature["example_id"] for feature in features]
        all_offsets = [feature["offset_mapping"] for feature in features]

    example_index = {example_id: index for index, example_id in enumerate(example_ids)}
    features_per_example = collections.defaultdict(list)
    for feature_index, example_id in enumerate(feature_example_ids):
        if example_id not in example_index:
            raise ValueError(f"Feature #{feature_index} belongs to example {example_id!r}, which is not in examples.")
        features_per_example[example_index[example_id]].append(feature_index)

    predictions = {}
    for index, (example_id, context) in enumerate(zip(example_ids, contexts)):
        best_score, best_text = -math.inf, ""
        for feature_index in features_per_example[index]:
            feature_start_logits, feature_end_logits = start_logits[feature_index], end_logits[feature_index]
            offsets = all_offsets[feature_index]
            start_candidates = np.argsort(feature_start_logits)[-1 : -n_best_size - 1 : -1]
            end_candidates = np.argsort(feature_end_logits)[-1 : -n_best_size - 1 : -1]
            for start in start_candidates:
                if start >= len(offsets) or offsets[start] is None:
                    continue
                for end in end_candidates:
                    if (
                        end >= len(offsets)
                        or offsets[end] is None
                        or end < start
                        or end - start + 1 > max_answer_length
                    ):
                        continue
                    score = feature_start_logits[start] + feature_end_logits[end]
                    if score > best_score:
                        best_score, best_text = score, context[offsets[start][0] : offsets[end][1]]
        predictions[example_id] = best_text
    return predictions


class QuestionAnsweringTrainer(Trainer):
    """A `Trainer` whose `evaluate()` answers SQuAD questions and reports exact match and F1.

    `eval_dataset` holds the features of `build_validation_features` (with `example_id` and `offset_mapping`) and
    `eval_examples` the examples they came from. `evaluate()` runs the evaluation loop over the features in length
    order (so dynamically padded batches waste little compute), post-processes the logits with
    `postprocess_qa_predictions`, scores them with `squad_metrics` and logs `eval_exact_match` and `eval_f1`. The
    answers are kept in `last_predictions` (question id -> text) for writing `predictions.json`.

    Metrics are computed on every process from the gathered logits, so all ranks see the same numbers.

    Args:
        *args: Positional arguments of `transformers.Trainer`.
        eval_examples (`datasets.Dataset`, *optional*): SQuAD examples of `eval_dataset`, with gold answers.
        n_best_size (`int`, *optional*, defaults to 20): Start/end candidates per feature in post-processing.
        max_answer_length (`int`, *optional*, defaults to 30): Longest answer in tokens.
        **kwargs: Keyword arguments of `transformers.Trainer`.
    """

    def __init__(
        self, *args, eval_examples: Dataset | None = None, n_best_size: int = 20, max_answer_length: int = 30, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.n_best_size = n_best_size
        self.max_answer_length = max_answer_length
        self.last_predictions: dict[str, str] | None = None

    def _get_eval_sampler(self, eval_dataset):
        # Logits are paired with features by position, so evaluation must keep the dataset order (Trainer would use a
        # shuffled LengthGroupedSampler under train_sampling_strategy="group_by_length").
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def evaluate(
        self,
        eval_dataset: Dataset | None = None,
        eval_examples: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Answer the evaluation questions and return exact match and F1 (in percent) plus speed metrics.

        Args:
            eval_dataset (`datasets.Dataset`, *optional*): Evaluation features; defaults to `self.eval_dataset`.
            eval_examples (`datasets.Dataset`, *optional*): Their examples; defaults to `self.eval_examples`.
            ignore_keys (`list[str]`, *optional*): Model output keys to ignore when gathering predictions.
            metric_key_prefix (`str`, *optional*, defaults to `"eval"`): Prefix of the metric names, e.g.
                `eval_exact_match`, `eval_f1`.

        Returns:
            `dict[str, float]`: `{prefix}_exact_match`, `{prefix}_f1`, runtime and throughput metrics.
        """
        features = eval_dataset if eval_dataset is not None else self.eval_dataset
        examples = eval_examples if eval_examples is not None else self.eval_examples
        if isinstance(features, dict):
            raise ValueError("QuestionAnsweringTrainer evaluates one set of features at a time, not a dict of them.")
        if features is None or examples is None:
            raise ValueError(
                "QuestionAnsweringTrainer.evaluate needs evaluation features and their examples: pass eval_dataset "
                "(from build_validation_features) and eval_examples to the trainer or to evaluate()."
            )
        missing = {"example_id", "offset_mapping"} - set(features.column_names)
        if missing:
            raise ValueError(
                f"The evaluation features lack {sorted(missing)}; build them with build_validation_features (or "
                "prepare_validation_features), not with the training feature function."
            )
        self._memory_tracker.start()
        lengths = [len(input_ids) for input_ids in features["input_ids"]]
        features = features.select(np.argsort(lengths, kind="stable"))
        dataloader = self.get_eval_dataloader(features.remove_columns(["example_id", "offset_mapping"]))
        start_time = time.time()
        output = self.evaluation_loop(
            dataloader,
            description="Evaluation",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        start_logits, end_logits = output.predictions[:2]
        predictions = postprocess_qa_predictions(
            examples, features, start_logits, end_logits, self.n_best_size, self.max_answer_length
        )
        metrics = {
            f"{metric_key_prefix}_{name}": value for name, value in squad_metrics(predictions, examples).items()
        }
        metrics.update(output.metrics)
        if f"{metric_key_prefix}_model_preparation_time" in output.metrics:
            start_time += output.metrics[f"{metric_key_prefix}_model_preparation_time"]
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=output.num_samples,
                num_steps=math.ceil(output.num_samples / total_batch_size),
            )
        )
        self.last_predictions = predictions
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics
